"""Numba kernels of the CPU backend (``device="cpu"``, backend name ``"numba"``).

Same signatures, shapes and dtypes as :mod:`._reference` (the math is documented there).
The GEMMs with ``X`` stay in BLAS (numpy ``@``); everything around them is one fused,
parallel numba pass, so no ``n x P x m1`` temporary of mask and sign products, and no
slack ``s`` or ``G x``, is ever stored.

The jitted passes take plain C-contiguous arrays and a ``depth3`` flag (``masks2`` and
``q`` are replaced by small placeholders at depth 2), so each pass compiles once per
dtype; the thin Python wrappers make their inputs contiguous.  The sums accumulate in
float64 whatever the dtype, except the cone's second-layer rows (in the output's dtype,
as the reference's).
"""

import numpy as np
from numba import njit, prange

from ._reference import MAX_NEWTON_STEPS, newton_floor

#: Every pass: parallel over samples (or groups), cached on disk; reassociation lets LLVM
#: vectorise the sums (no finite-math assumption: infinities and NaNs behave as in numpy).
_JIT = {"parallel": True, "cache": True, "nogil": True, "fastmath": {"reassoc", "contract"}}
_NO_MASKS2 = np.zeros((1, 1), dtype=np.bool_)


# ---------------------------------------------------------------------------- inputs
def _operands(X, masks1, signs, masks2):
    """C-contiguous X, and the mask operands of the passes: masks1 (n, P m1), signs
    (P m1,), masks2 (n, P) or a placeholder, depth3, and the column layout (blocks,
    width) of the passes: (P, m1) at depth 3, (P m1, 1) at depth 2."""
    X = np.ascontiguousarray(X)
    n, P, m1 = masks1.shape
    masks1 = np.ascontiguousarray(masks1, dtype=np.bool_).reshape(n, P * m1)
    signs = np.ascontiguousarray(signs, dtype=X.dtype).reshape(P * m1)
    if masks2 is None:
        return X, (masks1, signs, _NO_MASKS2, False, P * m1, 1)
    masks2 = np.ascontiguousarray(masks2, dtype=np.bool_)
    return X, (masks1, signs, masks2, True, P, m1)


def _workspace(shape, dtype):
    """An uninitialised array allocated by numpy, not inside a jitted function: numpy
    backs large arrays with transparent huge pages, numba's allocator does not, and the
    4 KiB page faults of a fresh 40 MB operand cost more than the pass that fills it
    (measured: 34 ms against 14 ms for numpy's cone_adjoint at n=5000, 2P=1000)."""
    return np.empty(shape, dtype=dtype)


def _rows(a, n, dtype):
    """``a`` as a C-contiguous (n, -1) matrix, or a one-element placeholder for None."""
    if a is None:
        return np.zeros((1, 1), dtype=dtype)
    return np.ascontiguousarray(a).reshape(n, -1)


# ---------------------------------------------------------------------------- passes
# The passes see every array as a matrix with one row per sample and, per copy, a run
# of ``blocks`` blocks of ``width`` columns: at depth 3 a block is one t (width m1, plus
# the second-layer column in the (n, 2, P, R) arrays); at depth 2 every neuron is a block
# of width 1.  The innermost loop runs over the blocks (P or P m1 iterations, contiguous
# at depth 2): a long loop that LLVM vectorises, never one of m1 iterations.
@njit(**_JIT)
def _forward_pass(Z, masks1, signs, masks2, depth3, blocks, width):
    """``sum_t [D2] sum_j s_j [D1_j] Z`` for every sample of Z (n, P m1)."""
    n = Z.shape[0]
    out = np.empty(n, dtype=Z.dtype)
    for i in prange(n):
        total = 0.0
        for j in range(width):
            for b in range(blocks):
                k = b * width + j
                term = masks1[i, k] * signs[k] * Z[i, k]
                total += masks2[i, b] * term if depth3 else term
        out[i] = total
    return out


@njit(**_JIT)
def _adjoint_operand(r, masks1, signs, masks2, depth3, blocks, width, M):
    """The GEMM operand of the adjoint, ``s_j [D1_j] [D2] r``, into M (n, P m1)."""
    n = masks1.shape[0]
    for i in prange(n):
        for j in range(width):
            for b in range(blocks):
                k = b * width + j
                scale = masks2[i, b] * r[i] if depth3 else r[i]
                M[i, k] = masks1[i, k] * signs[k] * scale


@njit(**_JIT)
def _cone_pass(Z, masks1, signs, masks2, depth3, blocks, width, w_s, q, alpha, relaxed, out):
    """Cone values ``G x`` from ``Z = X x^T`` (n, 2 P m1) into out (n, 2 P R).

    With ``relaxed``, writes ``w_s + alpha (G x - s)`` instead, where ``s`` is the slack
    of (w_s, q) computed on the fly.  ``out`` may be Z itself at depth 2.  At depth 3 the
    second-layer column accumulates ``B_t x`` before it is signed (and relaxed).
    """
    n = Z.shape[0]
    R = width + depth3
    for i in prange(n):
        for c in range(2):
            first = c * blocks
            if depth3:
                for cb in range(first, first + blocks):
                    out[i, cb * R + width] = 0.0
            for j in range(width):
                for b in range(blocks):
                    k = b * width + j
                    cb = first + b
                    z = Z[i, cb * width + j]
                    mask = masks1[i, k]
                    if depth3:
                        out[i, cb * R + width] += mask * signs[k] * z
                    g = (2 * mask - 1) * z
                    if relaxed:
                        w = w_s[i, cb * R + j]
                        g = w + alpha * (g - max(w, 0.0))
                    out[i, cb * R + j] = g
            if depth3:
                for b in range(blocks):
                    cb = first + b
                    g = (2 * masks2[i, b] - 1) * out[i, cb * R + width]
                    if relaxed:
                        g = w_s[i, cb * R + width] + alpha * (g - q[i, cb])
                    out[i, cb * R + width] = g


@njit(**_JIT)
def _cone_adjoint_operand(L, q, reflect, masks1, signs, masks2, depth3, blocks, width, M):
    """The GEMM operand of ``G^T L`` for L (n, 2 P R), into M (n, 2 P m1).

    With ``reflect``, L is w_s and the operand is that of ``2 s - w_s`` (``|w_s|`` on the
    first-layer rows, ``2 q - w_s`` on the second-layer rows), computed on the fly.
    """
    n = L.shape[0]
    R = width + depth3
    for i in prange(n):
        for c in range(2):
            for j in range(width):
                for b in range(blocks):
                    k = b * width + j
                    cb = c * blocks + b
                    value = L[i, cb * R + j]
                    if reflect:
                        value = abs(value)
                    mask = masks1[i, k]
                    value = (2 * mask - 1) * value
                    if depth3:
                        last = L[i, cb * R + width]
                        if reflect:
                            last = 2 * q[i, cb] - last
                        value += mask * signs[k] * (2 * masks2[i, b] - 1) * last
                    M[i, cb * width + j] = value


@njit(**_JIT)
def _block_soft_threshold(V, tau, tiny):
    """Every row of V (groups, d) scaled by ``max(0, ||v|| - tau) / max(||v||, tiny)``."""
    groups, d = V.shape
    out = np.empty_like(V)
    for g in prange(groups):
        squares = 0.0
        for k in range(d):
            squares += V[g, k] * V[g, k]
        norm = np.sqrt(squares)
        shrink = max(norm - tau, 0.0) / max(norm, tiny)
        for k in range(d):
            out[g, k] = V[g, k] * shrink
    return out


@njit(**_JIT)
def _loss_coupled_projection(a, coef, y, rho, theta, floor, eps, max_steps, q, residual):
    """Safeguarded Newton of :func:`._reference.loss_coupled_projection`, one sample per
    iteration of the parallel loop (same bracket, steps and stopping rule), into q and
    residual."""
    n, K = a.shape
    for i in prange(n):
        t = np.float64(theta[i])
        yi = np.float64(y[i])
        lo = -np.inf
        hi = np.inf
        for _ in range(max_steps):
            total = 0.0
            size = 0.0
            curvature = 0.0
            for k in range(K):
                c = coef[i, k]
                cq = c * max(a[i, k] - c * (t / rho), 0.0)
                total += cq
                size += abs(cq)
                if cq != 0.0:
                    curvature += c * c
            phi = t - total + yi
            if abs(phi) <= floor * (1.0 + abs(yi) + size):
                break
            slope = 1.0 + curvature / rho
            error = 4.0 * eps * (abs(t) + size + abs(yi))
            if phi < -error:
                lo = max(lo, t)
            if phi > error:
                hi = min(hi, t)
            lo = max(lo, t - abs(phi) - error)
            hi = min(hi, t + abs(phi) + error)
            newton = t - phi / slope
            t = newton if lo < newton < hi else 0.5 * (lo + hi)
        total = 0.0
        for k in range(K):
            c = coef[i, k]
            q[i, k] = max(a[i, k] - c * (t / rho), 0.0)
            total += c * q[i, k]
        residual[i] = total - yi


# --------------------------------------------------------------------------- kernels
def forward(X, masks1, signs, masks2, U):
    """Predictions (n,): BLAS ``Z = X (w - w')^T``, then one fused masked reduction."""
    X, ops = _operands(X, masks1, signs, masks2)
    _, P, m1, d = U.shape
    return _forward_pass(X @ (U[0] - U[1]).reshape(P * m1, d).T, *ops)


def adjoint(X, masks1, signs, masks2, r):
    """Adjoint of :func:`forward` (2, P, m1, d): one fused pass builds the operand
    ``s [D1] [D2] r``, then BLAS ``M^T X``."""
    X, ops = _operands(X, masks1, signs, masks2)
    n, d = X.shape
    _, P, m1 = masks1.shape
    M = _workspace((n, P * m1), X.dtype)
    _adjoint_operand(np.ascontiguousarray(r, dtype=X.dtype), *ops, M)
    out = np.empty((2, P * m1, d), dtype=X.dtype)
    np.matmul(M.T, X, out=out[0])
    np.negative(out[0], out=out[1])
    return out.reshape(2, P, m1, d)


def cone(X, masks1, signs, masks2, U):
    """Cone values ``G U`` (n, 2, P, R): BLAS ``Z = X U^T``, then one fused pass that
    signs Z (in place at depth 2) and, at depth 3, appends the second-layer rows."""
    return _cone(X, masks1, signs, masks2, U, None, None, 0.0, False)


def relaxed_slack_update(X, masks1, signs, masks2, x, w_s, q, alpha):
    """``w_s + alpha (G x - s)`` (n, 2, P, R): BLAS ``Z = X x^T``, then the pass of
    :func:`cone` with the update fused in (``s`` and ``G x`` are never stored)."""
    return _cone(X, masks1, signs, masks2, x, w_s, q, alpha, True)


def _cone(X, masks1, signs, masks2, U, w_s, q, alpha, relaxed):
    X, ops = _operands(X, masks1, signs, masks2)
    n, d = X.shape
    _, P, m1, _ = U.shape
    R = m1 + (masks2 is not None)
    Z = X @ U.reshape(2 * P * m1, d).T
    out = Z if R == m1 else np.empty((n, 2 * P * R), dtype=X.dtype)
    w_s, q = _rows(w_s, n, X.dtype), _rows(q, n, X.dtype)
    _cone_pass(Z, *ops, w_s, q, float(alpha), relaxed, out)
    return out.reshape(n, 2, P, R)


def cone_adjoint(X, masks1, signs, masks2, L):
    """``G^T L`` (2, P, m1, d): one fused pass builds the GEMM operand from L and the
    masks, then BLAS ``M^T X``."""
    return _cone_adjoint(X, masks1, signs, masks2, L, None, False)


def reflected_cone_adjoint(X, masks1, signs, masks2, w_s, q):
    """``G^T (2 s - w_s)`` (2, P, m1, d): the pass of :func:`cone_adjoint` computes the
    reflection from w_s and q on the fly."""
    return _cone_adjoint(X, masks1, signs, masks2, w_s, q, True)


def _cone_adjoint(X, masks1, signs, masks2, L, q, reflect):
    X, ops = _operands(X, masks1, signs, masks2)
    n, d = X.shape
    _, P, m1 = masks1.shape
    M = _workspace((n, 2 * P * m1), X.dtype)
    _cone_adjoint_operand(_rows(L, n, X.dtype), _rows(q, n, X.dtype), reflect, *ops, M)
    return (M.T @ X).reshape(2, P, m1, d)


def block_soft_threshold(v, tau):
    """Group soft-thresholding over the last axis: one parallel pass over the groups."""
    v = np.ascontiguousarray(v)
    tiny = float(np.finfo(v.dtype).tiny)
    return _block_soft_threshold(v.reshape(-1, v.shape[-1]), float(tau), tiny).reshape(v.shape)


def loss_coupled_projection(a, coef, y, rho, theta):
    """(q, theta) of the reference's safeguarded Newton, samples in parallel."""
    a = np.ascontiguousarray(a)
    dtype = a.dtype
    q, residual = _workspace(a.shape, dtype), _workspace(a.shape[:1], dtype)
    _loss_coupled_projection(
        a,
        np.ascontiguousarray(coef, dtype=dtype),
        np.ascontiguousarray(y, dtype=dtype),
        float(rho),
        np.ascontiguousarray(theta, dtype=dtype),
        newton_floor(dtype),
        float(np.finfo(dtype).eps),
        MAX_NEWTON_STEPS,
        q,
        residual,
    )
    return q, residual
