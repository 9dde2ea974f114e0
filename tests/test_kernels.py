"""Every kernel of every accelerated backend against the numpy reference (``_reference``).

The backends are those of ``available_devices()`` except "numpy" (the reference itself):
"cpu" (numba) always, "gpu" (cupy) only where a usable GPU is present.  Inputs go through
``backend.asarray`` and results through ``backend.to_host``.

Tolerances.  The reference is evaluated in float64 on the same (rounded) inputs, so the
difference is the kernel's own rounding.  Every output is a sum of at most ``m`` products
(``m = d`` terms of a GEMM entry, times the ``P m1`` terms of a masked reduction, or the
``n`` terms of an adjoint), and summation of m terms in any order is off by at most
``m eps sum |terms|`` (the standard bound gamma_m).  ``sum |terms|`` is computed by the
reference itself on absolute values with all masks on (an upper bound on every masked
term pattern), so the check is ``|kernel - reference| <= 2 m eps scale`` with eps of the
kernel's dtype: ~1e-13 relative in float64 and ~1e-5 in float32 for these sizes, far below
the change a wrong sign or mask makes (a whole term, ~scale / m): see
test_a_wrong_sign_or_mask_is_caught.
"""

import numpy as np
import pytest
from admmrelu.kernels import _reference as ref
from admmrelu.kernels import available_devices, get_backend
from admmrelu.kernels._reference import newton_floor
from hypothesis import given
from hypothesis import strategies as st

BACKENDS = [pytest.param(d, id=d) for d in available_devices() if d != "numpy"]
DTYPES = (np.float64, np.float32)
MASKED = (
    "forward",
    "adjoint",
    "cone",
    "cone_adjoint",
    "reflected_cone_adjoint",
    "relaxed_slack_update",
)


# ------------------------------------------------------------------------------ data
def strided(a, layout):
    """``a`` (same values) as a C array, a step-2 slice, or a transposed (Fortran) copy."""
    if layout == "step":
        wide = np.empty((2 * a.shape[0], *a.shape[1:]), dtype=a.dtype)
        wide[::2] = a
        return wide[::2]
    if layout == "F":
        return np.asfortranarray(a)
    return np.ascontiguousarray(a)


@st.composite
def problems(draw):
    """Sizes (n = 1, P = 1, m1 = 1, d = 1 and odd sizes included), depth, dtype, layout."""
    return {
        "n": draw(st.sampled_from([1, 2, 3, 7, 16, 33])),
        "d": draw(st.integers(1, 6)),
        "P": draw(st.sampled_from([1, 2, 5, 9])),
        "m1": draw(st.integers(1, 3)),
        "depth": draw(st.sampled_from([2, 3])),
        "dtype": draw(st.sampled_from(DTYPES)),
        "layout": draw(st.sampled_from(["C", "step", "F"])),
        "seed": draw(st.integers(0, 2**16)),
    }


def operands(n, d, P, m1, depth, dtype, seed, **_):
    """X, masks1, signs, masks2 and every other kernel argument, rounded to ``dtype``."""
    rng = np.random.default_rng(seed)
    R = m1 + (depth == 3)

    def normal(*shape):
        return rng.standard_normal(shape).astype(dtype)

    return {
        "X": normal(n, d),
        "masks1": rng.random((n, P, m1)) < 0.5,
        "signs": rng.choice([-1.0, 1.0], size=(P, m1)).astype(dtype),
        "masks2": rng.random((n, P)) < 0.5 if depth == 3 else None,
        "U": normal(2, P, m1, d),
        "r": normal(n),
        "L": normal(n, 2, P, R),
        "w_s": normal(n, 2, P, R),
        "q": np.abs(normal(n, 2, P)) if depth == 3 else None,
        "alpha": 1.6,
    }


ARGUMENTS = {
    "forward": ("U",),
    "adjoint": ("r",),
    "cone": ("U",),
    "cone_adjoint": ("L",),
    "reflected_cone_adjoint": ("w_s", "q"),
    "relaxed_slack_update": ("U", "w_s", "q", "alpha"),
}


def call(module, name, ops, convert=lambda a: a):
    masks2 = None if ops["masks2"] is None else convert(ops["masks2"])
    head = (convert(ops["X"]), convert(ops["masks1"]), convert(ops["signs"]), masks2)
    args = [ops[key] for key in ARGUMENTS[name]]
    args = [a if a is None or np.isscalar(a) else convert(a) for a in args]
    return getattr(module, name)(*head, *args)


def in_float64(ops):
    return {k: v.astype(np.float64) if isinstance(v, np.ndarray) else v for k, v in ops.items()}


def scale(name, ops):
    """Sum of |terms| of every output of ``name`` (all masks on, absolute values)."""
    a = {k: np.abs(v) if isinstance(v, np.ndarray) else v for k, v in in_float64(ops).items()}
    a["masks1"] = np.ones_like(ops["masks1"])
    a["masks2"] = None if ops["masks2"] is None else np.ones_like(ops["masks2"])
    if name == "forward":
        a["U"] = np.stack([a["U"][0] + a["U"][1], np.zeros_like(a["U"][0])])
    if name in ("forward", "adjoint", "cone", "cone_adjoint"):
        return np.abs(call(ref, name, a))
    slack = ref.slack(a["w_s"], a["q"])  # |s| <= slack(|w_s|, |q|)
    if name == "reflected_cone_adjoint":  # |2 s - w_s| <= 2 |s| + |w_s|
        return call(ref, "cone_adjoint", {**a, "L": 2 * slack + a["w_s"]})
    return a["w_s"] + a["alpha"] * (call(ref, "cone", a) + slack)


def terms(name, n, d, P, m1):
    """The number m of summed terms behind one output (see the module docstring)."""
    return d * (P * m1 + 1 if name == "forward" else n if "adjoint" in name else m1 + 1) + 4


def check(backend, name, ops, layout="C"):
    """(kernel result, reference, tolerance) of ``name`` on ``ops``."""
    dtype = ops["X"].dtype
    laid = {k: strided(v, layout) if isinstance(v, np.ndarray) else v for k, v in ops.items()}
    result = backend.to_host(call(backend, name, laid, backend.asarray))
    expected = call(ref, name, in_float64(ops))
    assert result.shape == expected.shape and result.dtype == dtype
    n, d = ops["X"].shape
    _, P, m1 = ops["masks1"].shape
    tol = 2 * terms(name, n, d, P, m1) * np.finfo(dtype).eps * scale(name, ops)
    return result, expected, tol


# ----------------------------------------------------------------------------- tests
@pytest.mark.parametrize("device", BACKENDS)
@pytest.mark.parametrize("name", MASKED)
@given(problem=problems())
def test_masked_kernel_matches_reference(device, name, problem):
    result, expected, tol = check(
        get_backend(device), name, operands(**problem), problem["layout"]
    )
    np.testing.assert_array_less(np.abs(result - expected), tol + np.finfo(np.float64).tiny)


@pytest.mark.parametrize("device", BACKENDS)
@pytest.mark.parametrize("name", MASKED)
@pytest.mark.parametrize("depth", [2, 3])
def test_a_wrong_sign_or_mask_is_caught(device, name, depth):
    """The tolerance is tight: flipping one sign or one mask entry breaks the agreement."""
    backend = get_backend(device)
    sizes = {"n": 7, "d": 3, "P": 4, "m1": 2, "depth": depth, "dtype": np.float32}
    ops = operands(**sizes, seed=1)
    result, expected, tol = check(backend, name, ops)
    assert np.all(np.abs(result - expected) <= tol)
    wrong = [dict(ops, signs=ops["signs"].copy()), dict(ops, masks1=ops["masks1"].copy())]
    wrong[0]["signs"][1, 0] *= -1
    wrong[1]["masks1"][2, 1, 0] ^= True
    if depth == 3:
        wrong.append(dict(ops, masks2=ops["masks2"].copy()))
        wrong[2]["masks2"][3, 2] ^= True
    for bad in wrong:
        flipped = backend.to_host(call(backend, name, bad, backend.asarray))
        if np.array_equal(call(ref, name, in_float64(bad)), expected):
            continue  # e.g. the cone's first-layer rows do not use the signs
        assert np.any(np.abs(flipped - expected) > tol)


@pytest.mark.parametrize("device", BACKENDS)
@given(
    groups=st.integers(1, 12),
    d=st.integers(1, 7),
    tau=st.sampled_from([0.0, 1e-3, 0.7, 3.0, 1e3]),
    dtype=st.sampled_from(DTYPES),
    layout=st.sampled_from(["C", "step", "F"]),
    seed=st.integers(0, 2**16),
)
def test_block_soft_threshold_matches_reference(device, groups, d, tau, dtype, layout, seed):
    """Zero groups (no NaN), tau = 0 (the identity) and tau above every norm (zero)."""
    backend = get_backend(device)
    rng = np.random.default_rng(seed)
    v = rng.standard_normal((2, groups, d)).astype(dtype)
    v[:, rng.random(groups) < 0.3] = 0
    z = backend.to_host(backend.block_soft_threshold(backend.asarray(strided(v, layout)), tau))
    expected = ref.block_soft_threshold(v.astype(np.float64), tau)
    assert z.shape == v.shape and z.dtype == dtype
    # the norm sums d squares: 2 (d + 2) eps relative to |v| per entry
    tol = 2 * (d + 2) * np.finfo(dtype).eps * np.abs(v)
    np.testing.assert_array_less(np.abs(z - expected), tol + np.finfo(np.float64).tiny)
    zero = np.all(v == 0, axis=-1)
    assert np.all(z[zero] == 0)
    if tau == 0:
        np.testing.assert_allclose(z, v, rtol=4 * np.finfo(dtype).eps)
    if tau == 1e3:
        assert np.all(z == 0)


@pytest.mark.parametrize("device", BACKENDS)
@given(
    n=st.sampled_from([1, 2, 5, 16]),
    K=st.sampled_from([1, 2, 6, 11]),
    rho=st.sampled_from([1e-2, 0.5, 3.0]),
    dtype=st.sampled_from(DTYPES),
    layout=st.sampled_from(["C", "step", "F"]),
    seed=st.integers(0, 2**16),
)
def test_loss_coupled_projection_matches_reference(device, n, K, rho, dtype, layout, seed):
    """Both stop where |phi| <= floor (1 + |y| + sum |coef q|), and phi' >= 1: each theta
    is within that of the root; q moves by |coef| / rho times as much (plus rounding)."""
    backend = get_backend(device)
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((n, K)).astype(dtype)
    coef = (rng.standard_normal((n, K)) * (rng.random((n, K)) < 0.7)).astype(dtype)
    y = rng.standard_normal(n).astype(dtype)
    theta0 = rng.standard_normal(n).astype(dtype)
    args = [strided(a, layout), strided(coef, layout), strided(y, layout), rho]
    q, theta = backend.loss_coupled_projection(
        *map(backend.asarray, args[:3]), rho, backend.asarray(strided(theta0, layout))
    )
    q, theta = backend.to_host(q), backend.to_host(theta)
    as64 = [x.astype(np.float64) for x in (a, coef, y, theta0)]
    q_ref, theta_ref = ref.loss_coupled_projection(*as64[:3], rho, as64[3])
    assert q.dtype == theta.dtype == dtype and q.shape == (n, K) and theta.shape == (n,)
    eps = np.finfo(dtype).eps
    size = np.sum(np.abs(coef * q_ref), axis=1) + np.abs(y)
    tol_theta = 2 * newton_floor(dtype) * (1 + size) + 4 * (K + 2) * eps * size
    c = np.abs(coef)
    tol_q = c * tol_theta[:, None] / rho + 4 * eps * (
        np.abs(a) + c * np.abs(theta_ref)[:, None] / rho
    )
    np.testing.assert_array_less(np.abs(theta - theta_ref), tol_theta)
    np.testing.assert_array_less(np.abs(q - q_ref), tol_q + np.finfo(np.float64).tiny)
    assert np.all(q >= 0)
