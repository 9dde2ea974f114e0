"""CUDA kernels of the GPU backend (``device="gpu"``, backend name ``"cupy"``).

Same signatures, shapes and dtypes as :mod:`._reference` (the math is documented there);
every input and output is a cupy array, so an ADMM iteration never leaves the device.
Imported by :func:`admmrelu.kernels.get_backend` only once a usable GPU was found.

Which mechanism does what
-------------------------
The products with ``X`` are cuBLAS GEMMs (cupy ``@``); the mask and sign work around
each one is a single fused kernel, so no ``n x P x m1`` product of masks, signs and data,
and no slack ``s`` or ``G x``, is ever stored:

* :func:`forward`: ``Z = X W^T`` (n, P m1), then the raw kernel ``masked_row_sums``: one
  warp per sample, the lanes stride along its row of ``Z`` and ``masks1`` (coalesced
  loads; ``Z`` is row-major), then a shuffle reduction.  256 threads (8 samples) a block.
* :func:`adjoint`: an elementwise kernel builds the GEMM operand ``s_j [D1] [D2] r``
  (n, P m1), then ``M^T X``; the ``-`` copy is a negated copy of the small result.
* :func:`cone`, :func:`relaxed_slack_update`: ``Z = X U^T`` (n, 2 P m1), then one
  elementwise kernel over the (n, 2, P, R) output that applies the signs ``2 D - I`` and,
  at depth 3, sums the m1 first-layer values of its (sample, copy, block) for the last row;
  the relaxed update forms the slack ``max(w_s, 0)`` (``q`` on the last row) on the fly.
* :func:`cone_adjoint`, :func:`reflected_cone_adjoint`: one elementwise kernel builds the
  GEMM operand (n, 2 P m1) from ``L`` (or from ``2 s - w_s``, computed on the fly), then
  ``M^T X``.
* :func:`loss_coupled_projection`: the raw kernel ``loss_coupled_projection``, one thread
  per sample running the reference's safeguarded Newton search (same steps, same stopping
  rule, same bracket) over its K coefficients; 128 threads a block.
* :func:`block_soft_threshold`: the reference itself, in cupy.  Its array has 2 P m1 d
  elements, small beside the n-sized arrays of the passes above, so a fused kernel would
  save a few launches per iteration at most.
* :func:`cho_factor` / :func:`cho_solve`: cuSOLVER ``potrf`` (``cupy.linalg.cholesky``)
  and two cuBLAS ``trsm`` (``cupyx.scipy.linalg.solve_triangular``).  The factor is kept in
  Fortran order, the layout ``trsm`` reads, so a solve does not copy it.

The elementwise kernels take ``raw`` operands and decompose the flat output index ``i``
into (sample, copy, block, neuron) themselves; their inputs are made C-contiguous first,
so cupy addresses the raw arrays directly.  Every kernel is generic in the float type
``T`` (float32 and float64; the raw kernels are C++ templates instantiated through
``name_expressions``) and accumulates in ``T``.  Depth 2 and depth 3 (with or without
``masks2`` and ``q``) are separate kernels generated from one source.

Products with the 0/1 masks are multiplications, not selections, as in the reference:
a NaN or inf under a zero mask gives NaN in both, and ``max(w, 0)`` keeps a NaN, like
``numpy.maximum``.

Masks are not bit-packed
------------------------
The masks stay bool arrays (one byte per entry).  Each pass reads a float operand of the
same size (4 or 8 bytes per entry) and writes one, and the GEMM next to it writes or reads
that operand once more, so the mask is at most 1/13 (float32) or 1/25 (float64) of a
pass's memory traffic: packing it 8 to a byte would save under 7% of that traffic (half
that or less of an iteration) while adding bit extraction and a packed layout that does
not line up with the (block, neuron) index when ``m1 > 1``.  It does not clearly pay.
"""

import cupy
import numpy as np

from . import Backend, _reference
from ._reference import MAX_NEWTON_STEPS, newton_floor

_CTYPES = {np.dtype(np.float32): "float", np.dtype(np.float64): "double"}

# ------------------------------------------------------------------- raw kernels
_RAW_SOURCE = r"""
// NaN-propagating maximum and minimum, as numpy.maximum and numpy.minimum.
template <typename T>
__device__ __forceinline__ T np_max(const T a, const T b) {
    return (a != a || a > b) ? a : b;
}

template <typename T>
__device__ __forceinline__ T np_min(const T a, const T b) {
    return (a != a || a < b) ? a : b;
}

template <typename T>
__device__ __forceinline__ T magnitude(const T a) {
    return a < T(0) ? -a : a;
}

// out[i] = sum_{t, j} Z[i, t, j] [D1_j(i)] s_{t, j} ([D2_t(i)] at depth 3), Z (n, P m1).
// One warp per sample: lane l reads the entries l, l + 32, ... of the sample's row.
template <typename T, bool DEPTH3>
__global__ void masked_row_sums(const T* __restrict__ Z, const bool* __restrict__ masks1,
                                const T* __restrict__ signs,
                                const bool* __restrict__ masks2, T* __restrict__ out,
                                const long long n, const int width, const int m1,
                                const int P) {
    const int lane = threadIdx.x & 31;
    const long long row = ((long long)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    if (row >= n) {
        return;  // blockDim.x is a multiple of 32: the whole warp leaves together
    }
    const T* z = Z + row * width;
    const bool* mask = masks1 + row * width;
    T total = T(0);
    for (int k = lane; k < width; k += 32) {
        T term = z[k] * (T)mask[k] * signs[k];
        if (DEPTH3) {
            term = term * (T)masks2[row * P + k / m1];
        }
        total += term;
    }
    for (int offset = 16; offset > 0; offset >>= 1) {
        total += __shfl_down_sync(0xffffffffu, total, offset);
    }
    if (lane == 0) {
        out[row] = total;
    }
}

// The safeguarded Newton search of _reference.loss_coupled_projection, one thread per
// sample; a, coef, q are (n, K) row-major.
template <typename T>
__global__ void loss_coupled_projection(const T* __restrict__ a,
                                        const T* __restrict__ coef,
                                        const T* __restrict__ y,
                                        const T* __restrict__ theta_in,
                                        T* __restrict__ q, T* __restrict__ theta_out,
                                        const long long n, const int K, const T rho,
                                        const T floor, const T error_scale, const T inf,
                                        const int max_steps) {
    const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) {
        return;
    }
    const T* ai = a + i * K;
    const T* ci = coef + i * K;
    const T yi = y[i];
    T t = theta_in[i];
    T lo = -inf;
    T hi = inf;
    for (int step = 0; step < max_steps; ++step) {
        const T shift = t / rho;
        T sum = T(0);
        T size = T(0);
        T curvature = T(0);
        for (int k = 0; k < K; ++k) {
            const T c = ci[k];
            const T cq = c * np_max(ai[k] - c * shift, T(0));
            sum += cq;
            size += magnitude(cq);
            curvature += c * c * (T)(cq != T(0));
        }
        const T phi = t - sum + yi;
        const bool done = magnitude(phi) <= floor * (T(1) + magnitude(yi) + size);
        const T slope = T(1) + curvature / rho;
        // phi is increasing with slope >= 1: the root lies within |phi| of t (up to the
        // rounding error of the computed phi)
        const T error = error_scale * (magnitude(t) + size + magnitude(yi));
        T low = phi < -error ? np_max(lo, t) : lo;
        T high = phi > error ? np_min(hi, t) : hi;
        low = np_max(low, t - magnitude(phi) - error);
        high = np_min(high, t + magnitude(phi) + error);
        lo = low;
        hi = high;
        if (done) {
            break;
        }
        const T newton = t - phi / slope;
        t = (newton > low && newton < high) ? newton : T(0.5) * (low + high);
    }
    const T shift = t / rho;
    T residual = T(0);
    for (int k = 0; k < K; ++k) {
        const T c = ci[k];
        const T qk = np_max(ai[k] - c * shift, T(0));
        q[i * K + k] = qk;
        residual += c * qk;
    }
    theta_out[i] = residual - yi;
}
"""

_ROW_SUMS = "masked_row_sums<{T}, {depth3}>"
_PROJECTION = "loss_coupled_projection<{T}>"
_RAW_MODULE = cupy.RawModule(
    code=_RAW_SOURCE,
    name_expressions=[
        *(_ROW_SUMS.format(T=T, depth3=d) for T in _CTYPES.values() for d in ("false", "true")),
        *(_PROJECTION.format(T=T) for T in _CTYPES.values()),
    ],
)
_ROW_SUMS_BLOCK = 256  # threads (8 warps, so 8 samples) a block
_PROJECTION_BLOCK = 128


def _ctype(dtype) -> str:
    try:
        return _CTYPES[np.dtype(dtype)]
    except KeyError:
        raise TypeError(f"the GPU kernels take float32 or float64 arrays; got {dtype}") from None


# -------------------------------------------------------------- elementwise kernels
# The flat output index i is decomposed by hand; the operands are C-contiguous (n, ...)
# arrays: Z (n, 2, P, m1) or (n, P, m1), masks1 (n, P, m1), signs (P, m1), masks2 (n, P),
# L and w_s (n, 2, P, R), q (n, 2, P).  R = m1 + 1 at depth 3, else m1.

# masks1 (as mk, same shape as the output) -> coef (n, P, m1) = [D1] s_j r ([D2])
_ADJOINT_OPERAND = """
const ptrdiff_t row = (ptrdiff_t)i / m1;  // (sample, block)
const int j = (int)((ptrdiff_t)i - row * m1);
const int t = (int)(row % P);
const ptrdiff_t sample = row / P;
T value = (T)mk * signs[t * m1 + j] * r[sample];
{depth3}value = value * (T)masks2[row];
coef = value;
"""

# Z (n, 2, P, m1) -> out (n, 2, P, R): G x, or w_s + alpha (G x - s) when relaxed
_CONE = """
const int R = m1 + {extra};
const ptrdiff_t row = (ptrdiff_t)i / R;  // (sample, copy, block)
const int k = (int)((ptrdiff_t)i - row * R);
const int t = (int)(row % P);
const ptrdiff_t sample = row / (2 * P);
const ptrdiff_t mrow = (sample * P + t) * m1;
const ptrdiff_t zrow = row * m1;
T gx;
if (k < m1) {{
    gx = Z[zrow + k] * (T)(2 * (int)masks1[mrow + k] - 1);
}}{second_layer}
{finish}
"""
_CONE_SECOND_LAYER = """ else {  // the second-layer row (2 D2 - I) B_t x
    T second = T(0);
    for (int j = 0; j < m1; ++j) {
        second += Z[zrow + j] * (T)masks1[mrow + j] * signs[t * m1 + j];
    }
    gx = second * (T)(2 * (int)masks2[sample * P + t] - 1);
}"""
_CONE_FINISH = "out = gx;"
_RELAXED_FINISH = """
const T clipped = w < T(0) ? T(0) : w;  // max(w_s, 0), a NaN kept
const T s = k < m1 ? clipped : {last_slack};
out = w + alpha * (gx - s);
"""

# L (or w_s and q) (n, 2, P, R) -> M (n, 2, P, m1), the operand of G^T L = M^T X
_CONE_ADJOINT_OPERAND = """
const int R = m1 + {extra};
const ptrdiff_t row = (ptrdiff_t)i / m1;  // (sample, copy, block)
const int j = (int)((ptrdiff_t)i - row * m1);
const int t = (int)(row % P);
const ptrdiff_t sample = row / (2 * P);
const ptrdiff_t lrow = row * R;
const bool mk = masks1[(sample * P + t) * m1 + j];
{first}
T value = first * (T)(2 * (int)mk - 1);
{second}
M = value;
"""
_FIRST_PLAIN = "const T first = L[lrow + j];"
_FIRST_REFLECTED = """
const T w = w_s[lrow + j];
const T first = T(2) * (w < T(0) ? T(0) : w) - w;  // 2 s - w_s, s = max(w_s, 0)
"""
_SECOND = """
const T second = {last} * (T)(2 * (int)masks2[sample * P + t] - 1);
value = value + (T)mk * signs[t * m1 + j] * second;
"""
_LAST_PLAIN = "L[lrow + m1]"
_LAST_REFLECTED = "(T(2) * q[row] - w_s[lrow + m1])"


def _elementwise(inputs, output, body, name):
    return cupy.ElementwiseKernel(", ".join(inputs), output, body, name)


def _masks_params(depth3):
    """The mask and sign operands of the cone kernels (signs enter the depth-3 rows only)."""
    return ["raw bool masks1"] + (["raw T signs", "raw bool masks2"] if depth3 else [])


_ADJOINT_KERNELS = {
    depth3: _elementwise(
        ["bool mk", "raw T signs", "raw T r"]
        + (["raw bool masks2"] if depth3 else [])
        + ["int32 P", "int32 m1"],
        "T coef",
        _ADJOINT_OPERAND.format(depth3="" if depth3 else "// "),
        f"admmrelu_adjoint_operand_d{3 if depth3 else 2}",
    )
    for depth3 in (False, True)
}

_CONE_KERNELS = {
    (depth3, relaxed): _elementwise(
        (["T w"] if relaxed else [])
        + ["raw T Z"]
        + _masks_params(depth3)
        + (["raw T q"] if relaxed and depth3 else [])
        + (["T alpha"] if relaxed else [])
        + ["int32 P", "int32 m1"],
        "T out",
        _CONE.format(
            extra=int(depth3),
            second_layer=_CONE_SECOND_LAYER if depth3 else "",
            finish=_RELAXED_FINISH.format(last_slack="q[row]" if depth3 else "clipped")
            if relaxed
            else _CONE_FINISH,
        ),
        f"admmrelu_{'relaxed_slack_update' if relaxed else 'cone'}_d{3 if depth3 else 2}",
    )
    for depth3 in (False, True)
    for relaxed in (False, True)
}

_CONE_ADJOINT_KERNELS = {
    (depth3, reflected): _elementwise(
        (["raw T w_s"] + (["raw T q"] if depth3 else []) if reflected else ["raw T L"])
        + _masks_params(depth3)
        + ["int32 P", "int32 m1"],
        "T M",
        _CONE_ADJOINT_OPERAND.format(
            extra=int(depth3),
            first=_FIRST_REFLECTED if reflected else _FIRST_PLAIN,
            second=_SECOND.format(last=_LAST_REFLECTED if reflected else _LAST_PLAIN)
            if depth3
            else "",
        ),
        f"admmrelu_{'reflected_' if reflected else ''}cone_adjoint_operand_d{3 if depth3 else 2}",
    )
    for depth3 in (False, True)
    for reflected in (False, True)
}


# ------------------------------------------------------------------------ operands
def _operands(X, masks1, signs, masks2):
    """C-contiguous operands in X's dtype (masks bool); masks2 None at depth 2."""
    X = cupy.ascontiguousarray(X)
    _ctype(X.dtype)
    masks1 = cupy.ascontiguousarray(masks1, dtype=cupy.bool_)
    signs = cupy.ascontiguousarray(signs, dtype=X.dtype)
    if masks2 is not None:
        masks2 = cupy.ascontiguousarray(masks2, dtype=cupy.bool_)
    return X, masks1, signs, masks2


def _masks_args(masks1, signs, masks2):
    """The arguments of :func:`_masks_params`."""
    return (masks1,) if masks2 is None else (masks1, signs, masks2)


def _gemm_rows(X, V):
    """``X V^T`` for V (..., d): the GEMM (n, size / d), C-contiguous."""
    d = X.shape[1]
    return X @ cupy.ascontiguousarray(V, dtype=X.dtype).reshape(-1, d).T


def _transposed_gemm(M, X, shape):
    """``M^T X`` (cuBLAS reads M transposed in place) reshaped to ``shape``."""
    return (M.reshape(M.shape[0], -1).T @ X).reshape(shape)


# ----------------------------------------------------------------------- operators
def forward(X, masks1, signs, masks2, U):
    """Predictions ``sum_t A_t (w_t - w'_t)``, shape (n,)."""
    X, masks1, signs, masks2 = _operands(X, masks1, signs, masks2)
    n, _ = X.shape
    _, P, m1 = masks1.shape
    out = cupy.empty(n, dtype=X.dtype)
    if n == 0:
        return out
    Z = _gemm_rows(X, U[0] - U[1])  # (n, P m1)
    depth3 = masks2 is not None
    kernel = _RAW_MODULE.get_function(
        _ROW_SUMS.format(T=_ctype(X.dtype), depth3="true" if depth3 else "false")
    )
    threads = n * 32
    kernel(
        ((threads + _ROW_SUMS_BLOCK - 1) // _ROW_SUMS_BLOCK,),
        (_ROW_SUMS_BLOCK,),
        (
            Z,
            masks1,
            signs,
            masks2 if depth3 else masks1,  # a placeholder the depth-2 kernel never reads
            out,
            np.int64(n),
            np.int32(P * m1),
            np.int32(m1),
            np.int32(P),
        ),
    )
    return out


def adjoint(X, masks1, signs, masks2, r):
    """Adjoint of :func:`forward`: ``(A_t^T r, -A_t^T r)_t``, shape (2, P, m1, d)."""
    X, masks1, signs, masks2 = _operands(X, masks1, signs, masks2)
    n, d = X.shape
    _, P, m1 = masks1.shape
    r = cupy.ascontiguousarray(r, dtype=X.dtype)
    coef = cupy.empty((n, P, m1), dtype=X.dtype)
    depth3 = masks2 is not None
    extra = (masks2,) if depth3 else ()
    _ADJOINT_KERNELS[depth3](masks1, signs, r, *extra, P, m1, coef)
    G = _transposed_gemm(coef, X, (P, m1, d))
    out = cupy.empty((2, P, m1, d), dtype=X.dtype)
    out[0] = G
    cupy.negative(G, out=out[1])
    return out


def cone(X, masks1, signs, masks2, U):
    """Cone-constraint values ``G U``, shape (n, 2, P, R) with R = m1 (+1 at depth 3)."""
    return _cone(X, masks1, signs, masks2, U, None, None, None)


def relaxed_slack_update(X, masks1, signs, masks2, x, w_s, q, alpha):
    """``w_s + alpha (G x - s)`` with ``s = slack(w_s, q)``; returns (n, 2, P, R)."""
    return _cone(X, masks1, signs, masks2, x, w_s, q, alpha)


def _cone(X, masks1, signs, masks2, U, w_s, q, alpha):
    X, masks1, signs, masks2 = _operands(X, masks1, signs, masks2)
    n, _ = X.shape
    _, P, m1 = masks1.shape
    depth3 = masks2 is not None
    R = m1 + int(depth3)
    Z = _gemm_rows(X, U)  # (n, 2 P m1)
    out = cupy.empty((n, 2, P, R), dtype=X.dtype)
    masks = _masks_args(masks1, signs, masks2)
    if w_s is None:
        _CONE_KERNELS[depth3, False](Z, *masks, P, m1, out)
        return out
    w_s = cupy.ascontiguousarray(w_s, dtype=X.dtype)
    slack = (cupy.ascontiguousarray(q, dtype=X.dtype),) if depth3 else ()
    step = X.dtype.type(alpha)
    _CONE_KERNELS[depth3, True](w_s, Z, *masks, *slack, step, P, m1, out)
    return out


def cone_adjoint(X, masks1, signs, masks2, L):
    """Adjoint of :func:`cone`: ``G^T L`` for L (n, 2, P, R); returns (2, P, m1, d)."""
    X, masks1, signs, masks2 = _operands(X, masks1, signs, masks2)
    L = cupy.ascontiguousarray(L, dtype=X.dtype)
    return _cone_adjoint(X, masks1, signs, masks2, (L,), reflected=False)


def reflected_cone_adjoint(X, masks1, signs, masks2, w_s, q):
    """``G^T (2 s - w_s)`` with ``s = slack(w_s, q)``; returns (2, P, m1, d)."""
    X, masks1, signs, masks2 = _operands(X, masks1, signs, masks2)
    slack = (cupy.ascontiguousarray(w_s, dtype=X.dtype),)
    if masks2 is not None:
        slack += (cupy.ascontiguousarray(q, dtype=X.dtype),)
    return _cone_adjoint(X, masks1, signs, masks2, slack, reflected=True)


def _cone_adjoint(X, masks1, signs, masks2, values, reflected):
    n, d = X.shape
    _, P, m1 = masks1.shape
    depth3 = masks2 is not None
    M = cupy.empty((n, 2, P, m1), dtype=X.dtype)
    masks = _masks_args(masks1, signs, masks2)
    _CONE_ADJOINT_KERNELS[depth3, reflected](*values, *masks, P, m1, M)
    return _transposed_gemm(M, X, (2, P, m1, d))


# -------------------------------------------------------------------- proximal maps
#: The group-lasso prox: the reference's few cupy calls on a small (2, P, m1, d) array.
block_soft_threshold = _reference.block_soft_threshold


def loss_coupled_projection(a, coef, y, rho, theta):
    """Per-sample prox of the loss on the second-layer rows (depth 3); see
    :func:`._reference.loss_coupled_projection`.  Returns ``(q, theta)``."""
    a = cupy.ascontiguousarray(a)
    dtype = a.dtype
    T = _ctype(dtype)
    n, K = a.shape
    coef = cupy.ascontiguousarray(coef, dtype=dtype)
    y = cupy.ascontiguousarray(y, dtype=dtype)
    theta = cupy.ascontiguousarray(theta, dtype=dtype)
    q = cupy.empty((n, K), dtype=dtype)
    theta_out = cupy.empty(n, dtype=dtype)
    if n == 0:
        return q, theta_out
    scalar = dtype.type
    kernel = _RAW_MODULE.get_function(_PROJECTION.format(T=T))
    kernel(
        ((n + _PROJECTION_BLOCK - 1) // _PROJECTION_BLOCK,),
        (_PROJECTION_BLOCK,),
        (
            a,
            coef,
            y,
            theta,
            q,
            theta_out,
            np.int64(n),
            np.int32(K),
            scalar(rho),
            scalar(newton_floor(dtype)),
            scalar(4 * float(np.finfo(dtype).eps)),
            scalar(np.inf),
            np.int32(MAX_NEWTON_STEPS),
        ),
    )
    return q, theta_out


# ------------------------------------------------------------------- linear algebra
def cho_factor(C):
    """Lower Cholesky factor of the symmetric positive definite C, in Fortran order."""
    return cupy.asfortranarray(cupy.linalg.cholesky(C))


def cho_solve(factor, b):
    """``C^-1 b`` for ``factor = cho_factor(C)``; b a vector or a matrix."""
    from cupyx.scipy.linalg import solve_triangular

    half = solve_triangular(factor, b, lower=True)
    return solve_triangular(factor, half, trans="T", lower=True, overwrite_b=True)


def asarray(a, dtype=None):
    """A host or device array as a cupy array (no copy when it is one already)."""
    return cupy.asarray(a, dtype=dtype)


BACKEND = Backend(
    name="cupy",
    device="gpu",
    xp=cupy,
    forward=forward,
    adjoint=adjoint,
    cone=cone,
    cone_adjoint=cone_adjoint,
    reflected_cone_adjoint=reflected_cone_adjoint,
    relaxed_slack_update=relaxed_slack_update,
    block_soft_threshold=block_soft_threshold,
    loss_coupled_projection=loss_coupled_projection,
    cho_factor=cho_factor,
    cho_solve=cho_solve,
    asarray=asarray,
    to_host=cupy.asnumpy,
)
