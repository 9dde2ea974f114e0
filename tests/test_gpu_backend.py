"""The GPU backend (``admmrelu.kernels._gpu``, cupy) against the numpy reference kernels.

Every kernel runs in float32 and float64 on device arrays and must return device arrays
(no host round trip) of the input dtype; its values are compared, on host copies, with
:mod:`admmrelu.kernels._reference` evaluated in float64 on the same (rounded) inputs.

Tolerances: each entry of the masked operators is a sum of at most ``d P m1`` products
(``n d`` for the adjoints) of entries of X and of the operand, so its rounding error in
the dtype is below a small multiple of ``eps`` times the bound ``_scale`` on those sums;
an indexing error is O(1) of that bound.  (float32 GEMMs must run in true float32: with
``CUPY_TF32=1`` cuBLAS rounds to 10-bit mantissas and these tolerances do not hold.)

The whole module is skipped, with the reason, where no usable GPU is present.
"""

import warnings

import numpy as np
import pytest
from admmrelu.kernels import _reference, get_backend, gpu_unavailable_reason
from conftest import make_problem
from hypothesis import given
from hypothesis import strategies as st

_REASON = gpu_unavailable_reason()
if _REASON is not None:
    pytest.skip(f"the GPU backend needs a usable CUDA GPU: {_REASON}", allow_module_level=True)

import cupy  # noqa: E402

pytestmark = [
    pytest.mark.gpu,
    # tiny data may have fewer cells than the blocks asked for: sampling then warns
    pytest.mark.filterwarnings("ignore:found only .* distinct non-trivial blocks"),
]
GPU = get_backend("gpu")
DTYPES = [np.float32, np.float64]
#: allowed rounding error of the masked operators, in units of eps * _scale
ROUNDING = 64


# ------------------------------------------------------------------------- helpers
@st.composite
def shapes(draw):
    """(n, d, P, m1, depth, seed), n = 1 and P = 1 included (the derandomized draws
    start from the smallest values)."""
    depth = draw(st.sampled_from([2, 3]))
    return (
        draw(st.integers(1, 40)),
        draw(st.integers(1, 5)),
        draw(st.integers(1, 6)),
        draw(st.integers(1, 3)),
        depth,
        draw(st.integers(0, 2**16)),
    )


def host_operands(shape, dtype):
    """Random host operands in ``dtype``: X, masks1, signs, masks2 (None at depth 2) and
    the operator inputs U, r, L, w_s, q (None at depth 2)."""
    n, d, P, m1, depth, seed = shape
    rng = np.random.default_rng(seed)
    R = m1 + (depth == 3)
    ops = {
        "X": rng.standard_normal((n, d)),
        "masks1": rng.random((n, P, m1)) < 0.5,
        "signs": rng.choice([-1.0, 1.0], size=(P, m1)),
        "masks2": rng.random((n, P)) < 0.5 if depth == 3 else None,
        "U": rng.standard_normal((2, P, m1, d)),
        "r": rng.standard_normal(n),
        "L": rng.standard_normal((n, 2, P, R)),
        "w_s": rng.standard_normal((n, 2, P, R)),
        "q": np.abs(rng.standard_normal((n, 2, P))) if depth == 3 else None,
    }
    return {k: v if v is None or v.dtype == bool else v.astype(dtype) for k, v in ops.items()}


def to_device(ops):
    return {k: None if v is None else GPU.asarray(v) for k, v in ops.items()}


def as_float64(ops):
    return {k: v if v is None or v.dtype == bool else v.astype(np.float64) for k, v in ops.items()}


def on_device(result, dtype, shape):
    """``result`` is a cupy array of ``dtype`` and ``shape``; returns its host copy."""
    assert isinstance(result, cupy.ndarray), type(result)
    assert result.dtype == dtype and result.shape == shape, (result.dtype, result.shape)
    host = GPU.to_host(result)
    assert isinstance(host, np.ndarray)
    return host


def _scale(ops, operand, adjoint=False):
    """A bound on the sum of the magnitudes of the terms of one output entry."""
    X = ops["X"]
    n, d = X.shape
    _, P, m1 = ops["masks1"].shape
    terms = n * d if adjoint else d * P * m1
    return float(np.abs(X).max() * terms * max(np.abs(operand).max(), 1.0) * 4)


def assert_close(got, want, dtype, scale):
    error = np.max(np.abs(got.astype(np.float64) - want), initial=0.0)
    assert error <= ROUNDING * np.finfo(dtype).eps * scale, (error, scale)


def operator_case(shape, dtype):
    host = host_operands(shape, dtype)
    return host, to_device(host), as_float64(host)


def masked(ops):
    return ops["X"], ops["masks1"], ops["signs"], ops["masks2"]


# ----------------------------------------------------------------------- operators
def test_backend_identity():
    assert GPU.name == "cupy" and GPU.device == "gpu" and GPU.xp is cupy
    assert get_backend("auto") is GPU


@pytest.mark.parametrize("dtype", DTYPES)
@given(shape=shapes())
def test_forward_and_adjoint(dtype, shape):
    host, dev, ref = operator_case(shape, dtype)
    n, d, P, m1, _, _ = shape
    got = on_device(GPU.forward(*masked(dev), dev["U"]), dtype, (n,))
    want = _reference.forward(*masked(ref), ref["U"])
    assert_close(got, want, dtype, 2 * _scale(host, host["U"]))
    got = on_device(GPU.adjoint(*masked(dev), dev["r"]), dtype, (2, P, m1, d))
    want = _reference.adjoint(*masked(ref), ref["r"])
    assert_close(got, want, dtype, _scale(host, host["r"], adjoint=True))


@pytest.mark.parametrize("dtype", DTYPES)
@given(shape=shapes())
def test_cone_and_cone_adjoint(dtype, shape):
    host, dev, ref = operator_case(shape, dtype)
    n, d, P, m1, depth, _ = shape
    R = m1 + (depth == 3)
    got = on_device(GPU.cone(*masked(dev), dev["U"]), dtype, (n, 2, P, R))
    want = _reference.cone(*masked(ref), ref["U"])
    assert_close(got, want, dtype, _scale(host, host["U"]))
    got = on_device(GPU.cone_adjoint(*masked(dev), dev["L"]), dtype, (2, P, m1, d))
    want = _reference.cone_adjoint(*masked(ref), ref["L"])
    assert_close(got, want, dtype, 2 * _scale(host, host["L"], adjoint=True))


@pytest.mark.parametrize("dtype", DTYPES)
@given(shape=shapes(), alpha=st.floats(0.1, 1.9))
def test_fused_iteration_products(dtype, shape, alpha):
    host, dev, ref = operator_case(shape, dtype)
    n, d, P, m1, depth, _ = shape
    R = m1 + (depth == 3)
    slack = max(np.abs(host["w_s"]).max(), 0 if host["q"] is None else np.abs(host["q"]).max())
    got = on_device(
        GPU.reflected_cone_adjoint(*masked(dev), dev["w_s"], dev["q"]), dtype, (2, P, m1, d)
    )
    want = _reference.reflected_cone_adjoint(*masked(ref), ref["w_s"], ref["q"])
    assert_close(got, want, dtype, 6 * _scale(host, slack, adjoint=True))
    got = on_device(
        GPU.relaxed_slack_update(*masked(dev), dev["U"], dev["w_s"], dev["q"], alpha),
        dtype,
        (n, 2, P, R),
    )
    want = _reference.relaxed_slack_update(*masked(ref), ref["U"], ref["w_s"], ref["q"], alpha)
    assert_close(got, want, dtype, 2 * _scale(host, host["U"]) + 4 * slack)


@pytest.mark.parametrize("dtype", DTYPES)
@given(
    n=st.integers(1, 40),
    d=st.integers(1, 5),
    groups=st.integers(1, 12),
    tau=st.floats(0.0, 3.0),
    seed=st.integers(0, 2**16),
)
def test_block_soft_threshold(dtype, n, d, groups, tau, seed):
    v = np.random.default_rng(seed).standard_normal((2, groups, n % 3 + 1, d)).astype(dtype)
    v[0, 0] = 0  # a zero group
    got = on_device(GPU.block_soft_threshold(GPU.asarray(v), tau), dtype, v.shape)
    want = _reference.block_soft_threshold(v.astype(np.float64), tau)
    # |z_g - z*_g| <= (rounding of ||v_g|| and of the shrink factor) ~ eps ||v_g||
    scale = 1 + np.linalg.norm(v.astype(np.float64), axis=-1).max()
    np.testing.assert_allclose(got, want, rtol=0, atol=16 * np.finfo(dtype).eps * scale)


@pytest.mark.parametrize("dtype", DTYPES)
@given(
    n=st.integers(1, 40),
    P=st.integers(1, 6),
    log_rho=st.floats(-2.0, 2.0),
    start=st.sampled_from([0.0, 1.0, 100.0]),
    seed=st.integers(0, 2**16),
)
def test_loss_coupled_projection(dtype, n, P, log_rho, start, seed):
    """Both searches stop within ``floor (1 + |y| + sum |coef q|)`` of the same root theta
    (phi has slope >= 1), and q is Lipschitz in theta with constant max |coef| / rho."""
    rng = np.random.default_rng(seed)
    h = np.abs(rng.standard_normal(n)) + 0.1
    coef = h[:, None] * (rng.random((n, P)) < 0.6)  # rows with coef = 0: plain clipping
    coef = np.hstack([coef, -coef]).astype(dtype)
    a = (3 * rng.standard_normal((n, 2 * P))).astype(dtype)
    y = rng.standard_normal(n).astype(dtype)
    theta = (start * rng.standard_normal(n)).astype(dtype)
    rho = 10.0**log_rho
    q, th = GPU.loss_coupled_projection(
        GPU.asarray(a), GPU.asarray(coef), GPU.asarray(y), rho, GPU.asarray(theta)
    )
    q = on_device(q, dtype, (n, 2 * P))
    th = on_device(th, dtype, (n,))
    c64 = coef.astype(np.float64)
    q_ref, th_ref = _reference.loss_coupled_projection(
        a.astype(np.float64), c64, y.astype(np.float64), rho, theta.astype(np.float64)
    )
    size = 1 + np.abs(y.astype(np.float64)) + np.sum(np.abs(c64 * q_ref), axis=1)
    tol = 16 * _reference.newton_floor(dtype) * size * (1 + np.abs(c64).max(axis=1) / rho)
    assert np.all(np.abs(th - th_ref) <= tol * (1 + np.abs(c64).sum(axis=1)))
    assert np.all(np.max(np.abs(q - q_ref), axis=1) <= tol * (1 + np.abs(c64).max()))
    assert np.all(q >= 0)


@pytest.mark.parametrize("depth", [2, 3])
def test_nan_and_inf_propagate_like_the_reference(depth):
    rng = np.random.default_rng(depth)
    host = host_operands((6, 3, 3, 2, depth, 7), np.float64)
    host["U"][1, 1, 0, 2] = np.nan
    host["L"][3, 0, 1, 0] = np.nan
    host["r"][1] = np.nan
    host["w_s"][2, 1, 0, 0] = np.nan
    host["w_s"][4, 0, 2, -1] = np.inf
    dev = to_device(host)
    cases = {
        "forward": (host["U"],),
        "adjoint": (host["r"],),
        "cone": (host["U"],),
        "cone_adjoint": (host["L"],),
        "reflected_cone_adjoint": (host["w_s"], host["q"]),
        "relaxed_slack_update": (
            rng.standard_normal(host["U"].shape),
            host["w_s"],
            host["q"],
            1.5,
        ),
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # numpy's invalid-value warnings
        for name, args in cases.items():
            want = getattr(_reference, name)(*masked(host), *args)
            device_args = [GPU.asarray(x) if isinstance(x, np.ndarray) else x for x in args]
            got = GPU.to_host(getattr(GPU, name)(*masked(dev), *device_args))
            assert np.array_equal(np.isnan(got), np.isnan(want)), name
            if name in ("cone", "relaxed_slack_update"):  # no GEMM after the kernel
                assert np.array_equal(np.isinf(got), np.isinf(want)), name
        a = rng.standard_normal((6, 4))
        coef = rng.standard_normal((6, 4))
        y = rng.standard_normal(6)
        a[2, 1] = np.nan
        y[4] = np.inf
        want = _reference.loss_coupled_projection(a, coef, y, 0.7, -y)
        got = GPU.loss_coupled_projection(*map(GPU.asarray, (a, coef, y)), 0.7, GPU.asarray(-y))
        for g, w in zip(got, want, strict=True):
            assert np.array_equal(np.isnan(GPU.to_host(g)), np.isnan(w))


# -------------------------------------------------------------- linear algebra, I/O
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("columns", [None, 3])
def test_cholesky_solves_match_numpy(dtype, columns):
    rng = np.random.default_rng(0)
    B = rng.standard_normal((30, 30))
    C = (B @ B.T + 30 * np.eye(30)).astype(dtype)  # condition number ~ 10
    b = rng.standard_normal(30 if columns is None else (30, columns)).astype(dtype)
    b_dev = GPU.asarray(b)
    factor = GPU.cho_factor(GPU.asarray(C))
    x = on_device(GPU.cho_solve(factor, b_dev), dtype, b.shape)
    want = np.linalg.solve(C.astype(np.float64), b.astype(np.float64))
    np.testing.assert_allclose(
        x, want, rtol=0, atol=1e3 * np.finfo(dtype).eps * np.abs(want).max()
    )
    assert np.array_equal(GPU.to_host(b_dev), b)  # the right-hand side is not overwritten
    # the factor is the lower Cholesky factor
    L = GPU.to_host(cupy.asarray(factor))
    np.testing.assert_allclose(np.triu(L, 1), 0)
    np.testing.assert_allclose(L @ L.T, C, rtol=0, atol=1e2 * np.finfo(dtype).eps * 60)


def test_asarray_and_to_host():
    a = np.arange(6.0).reshape(2, 3)
    dev = GPU.asarray(a, np.float32)
    assert isinstance(dev, cupy.ndarray) and dev.dtype == np.float32
    assert GPU.asarray(dev) is dev  # already a device array: no copy
    back = GPU.to_host(dev)
    assert isinstance(back, np.ndarray) and np.array_equal(back, a)


# ------------------------------------------------------------------------- solver
def gap_tolerance(prob, objective):
    """The documented certified gap of an "optimal" result (ADMMSettings defaults):
    eps_abs b^2 + eps_rel objective with b^2 = mean(y^2), eps_abs = 1e-8, eps_rel = 1e-6."""
    return 1e-8 * float(np.mean(prob.y**2)) + 1e-6 * abs(objective)


@pytest.mark.parametrize(
    "n, d, P, depth, width, seed",
    [
        pytest.param(20, 3, 6, 2, None, 0, id="d2-n20"),
        pytest.param(60, 5, 20, 2, None, 1, id="d2-n60"),
        pytest.param(20, 3, 6, 3, 2, 0, id="d3w2-n20"),
        pytest.param(60, 5, 10, 3, 2, 1, id="d3w2-n60"),
    ],
)
def test_gpu_solve_matches_cpu_solve(n, d, P, depth, width, seed):
    """GPU and CPU solves reach the same certified optimum, in float64 and float32.

    Every returned objective is attained at a cone-feasible point (>= p*) and an
    "optimal" status certifies objective - p* <= gap_tolerance, so two optimal solves
    differ by at most the larger of their tolerances: 1e-6 relative plus eps_abs b^2.
    float32 iterations do not loosen that: the finish recomputes the point and its
    certificate in float64, so the float32 solve is held to the same bound (its looser
    part is the path: more iterations, not a worse certified point)."""
    prob = make_problem(n, d, P, depth, width, seed, 0.1)[2]
    cpu = prob.solve(solver="admm", device="cpu")
    assert cpu.status == "optimal", cpu
    for dtype in ("float64", "float32"):
        gpu = prob.solve(solver="admm", device="gpu", dtype=dtype)
        assert gpu.status == "optimal", (dtype, gpu)
        assert isinstance(gpu.weights, np.ndarray) and gpu.weights.dtype == np.float64
        assert gpu.objective == pytest.approx(prob.objective(gpu.weights), rel=1e-12)
        top = max(cpu.objective, gpu.objective)
        assert abs(gpu.objective - cpu.objective) <= gap_tolerance(prob, top) + 1e-12 * top, (
            dtype,
            gpu.objective,
            cpu.objective,
        )
        # weak duality across devices: each certified bound lies below the other's point
        assert gpu.dual_bound <= cpu.objective * (1 + 1e-12)
        assert cpu.dual_bound <= gpu.objective * (1 + 1e-12)
