"""Building blocks of the ADMM solver, each against an independent computation.

* x-update systems (admmrelu.linsys): the dense matrix ``M`` of the splitting (admm.py
  module doc) is assembled column by column from the masked operators applied to unit
  vectors, and ``np.linalg.solve(M, rhs)`` is the reference;
* proximal maps (admmrelu.prox): the closed-form group shrinkage and the prox optimality
  condition; for the loss-coupled projection, the KKT conditions of the per-sample program
  (strictly convex, so they characterise its unique minimiser), an exact active-set
  enumeration and the one-dimensional closed form;
* scaling (admmrelu.scaling): the objective identity of its module doc, with the factors
  ``a`` (RMS row norm of X) and ``b`` (RMS of y) recomputed here;
* Anderson acceleration (admmrelu.anderson): plain fixed-point iteration, the fixed point
  of a linear map from ``np.linalg.solve``, a direct least-squares implementation of the
  type-II step, and the safeguard rule fed by hand.
"""

import itertools
import warnings

import numpy as np
import pytest
from admmrelu.kernels import BoundOperators, get_backend
from admmrelu.kernels import _reference as ref
from admmrelu.kernels._reference import block_soft_threshold, loss_coupled_projection
from hypothesis import given
from hypothesis import strategies as st

import admmrelu as ar
from admmrelu.anderson import AndersonAccelerator
from admmrelu.linsys import BlockDiagonalSystem, KroneckerWoodburySystem
from admmrelu.scaling import ScaledProblem

EPS = np.finfo(np.float64).eps

# Tiny data may have fewer cells than the blocks asked for: sampling then warns.
pytestmark = pytest.mark.filterwarnings("ignore:found only .* distinct non-trivial blocks")


# ------------------------------------------------------------------ builders
@st.composite
def sampled_problems(draw, depth, max_n=8, max_d=4, max_P=5, max_width=3):
    """A problem on random X (any scale, maybe zero rows) with sampled blocks, and its RNG."""
    n = draw(st.integers(1, max_n))
    d = draw(st.integers(1, max_d))
    P = draw(st.integers(1, max_P))
    width = None if depth == 2 else draw(st.integers(1, max_width))
    x_scale = draw(st.sampled_from([1e-3, 1.0, 1e3]))
    y_scale = draw(st.sampled_from([1e-3, 1.0, 1e3]))
    zero_rows = draw(st.booleans())
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    X = x_scale * rng.standard_normal((n, d))
    if zero_rows:
        X[1:][rng.random(n - 1) < 0.4] = 0.0  # row 0 stays: X is never all zero
    y = y_scale * rng.standard_normal(n)
    arr = ar.sample_arrangements(X, n_blocks=P, depth=depth, width=width, seed=seed)
    return ar.ConvexReLUProblem(X, y, float(rng.uniform(0.01, 2.0)), arr), rng


def unit_vectors(shape):
    """The N standard basis vectors of a variable of ``shape``, stacked: (N, *shape)."""
    N = int(np.prod(shape))
    return np.eye(N).reshape(N, *shape)


def dense_loss_matrix(problem):
    """``F~`` (n x N): the columns are the predictions of the unit vectors."""
    F = np.stack([problem.forward(e) for e in unit_vectors(problem.var_shape)], axis=1)
    r = np.random.default_rng(0).standard_normal(problem.n_samples)
    # the adjoint the system uses is F^T (both are sums of < 100 products: 1e-12 is loose)
    np.testing.assert_allclose(
        problem.adjoint(r).ravel(),
        F.T @ r,
        rtol=0,
        atol=1e-12 * (1 + np.abs(F).sum()) * np.abs(r).max(),
    )
    return F


def dense_cone_matrix(scaled):
    """``G^`` (n 2 P R x N): the cone operator on X_cone applied to the unit vectors.

    Depth 2 passes masks2=None (first-layer rows only); depth 3 adds the second-layer rows
    ``(2 D2 - I) B^_t w``.
    """
    arr = scaled.problem.arrangements
    ops = (scaled.X_cone, arr.masks1, arr.signs, arr.masks2)
    E = unit_vectors(scaled.problem.var_shape)
    G = np.stack([ref.cone(*ops, e).ravel() for e in E], axis=1)
    L = np.random.default_rng(0).standard_normal(scaled.problem.cone_shape)
    # cone_adjoint is G^T (sums of < 10^3 products of unit-size numbers: 1e-12 is loose)
    np.testing.assert_allclose(
        ref.cone_adjoint(*ops, L).ravel(), G.T @ L.ravel(), rtol=0, atol=1e-12 * np.abs(L).sum()
    )
    return G


def assert_solves(system, M_of_rho, rhos, shape, rng):
    """``system.solve(rhs, rho)`` against ``np.linalg.solve(M(rho), rhs)`` for each rho."""
    for rho in rhos:
        M = M_of_rho(rho)
        rhs = rng.standard_normal(shape)
        x = system.solve(rhs, rho)
        assert x.shape == shape
        expected = np.linalg.solve(M, rhs.ravel())
        # forward error of a backward-stable solve is ~ eps cond(M) per solve (both the
        # reference's and the library's; observed <= 1.3 eps cond(M) over ~4000 random
        # cases); 1e3 leaves margin, while a wrong factor, mask or rho is off by O(1).
        tol = 1e3 * EPS * np.linalg.cond(M) * np.linalg.norm(expected)
        assert np.linalg.norm(x.ravel() - expected) <= tol, (rho, np.linalg.cond(M))


#: rho sequence: 1.0 is revisited while still cached, 1e-6 after four other values pushed
#: it out of the 4-entry factor cache; the extremes are the solver's rho bounds.
RHOS = (1.0, 1e-6, 1e6, 1e-3, 1.0, 37.0, 0.01, 5.0, 1e-6, 1e-6)


# -------------------------------------------------------- x-update systems
@pytest.mark.parametrize("device", ["numpy", "cpu"])
@given(sampled_problems(depth=2))
def test_kronecker_woodbury_system_matches_dense_solve(device, case):
    prob, rng = case
    scaled = ScaledProblem.from_problem(prob)
    arr = prob.arrangements
    F = dense_loss_matrix(scaled.problem)
    G = dense_cone_matrix(scaled)
    N = F.shape[1]
    FtF, GtG = F.T @ F, G.T @ G
    loss = BoundOperators(get_backend(device), scaled.problem.X, arr.masks1, arr.signs, None)
    system = KroneckerWoodburySystem(loss, scaled.X_cone)
    assert_solves(
        system, lambda rho: FtF + rho * (np.eye(N) + GtG), RHOS, scaled.problem.var_shape, rng
    )


@pytest.mark.parametrize("device", ["numpy", "cpu"])
@given(sampled_problems(depth=3, max_n=6, max_d=3, max_P=4))
def test_block_diagonal_system_matches_dense_solve(device, case):
    prob, rng = case
    scaled = ScaledProblem.from_problem(prob)
    arr = prob.arrangements
    G = dense_cone_matrix(scaled)  # includes the second-layer rows (masks2)
    N = G.shape[1]
    GtG = G.T @ G
    cone = BoundOperators(get_backend(device), scaled.X_cone, arr.masks1, arr.signs, arr.masks2)
    system = BlockDiagonalSystem(cone)
    # depth 3: no loss term in the x-update (it moved to the s-update)
    assert_solves(system, lambda rho: rho * (np.eye(N) + GtG), RHOS, scaled.problem.var_shape, rng)


# ------------------------------------------------------- block soft-threshold
@st.composite
def grouped_arrays(draw):
    """v of shape (a, b, d) with some exactly-zero groups, and tau (0, small, large)."""
    shape = (draw(st.integers(1, 3)), draw(st.integers(1, 4)), draw(st.integers(1, 5)))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    v = rng.standard_normal(shape) * 10.0 ** rng.uniform(-3, 3, size=shape[:2] + (1,))
    v[rng.random(shape[:2]) < 0.3] = 0.0
    tau = draw(st.sampled_from([0.0, 1e-3, 0.5, 1.0, 10.0, 1e4]))
    return v, tau


@given(grouped_arrays())
def test_block_soft_threshold_closed_form_and_optimality(case):
    v, tau = case
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # zero groups: no division warnings
        z = block_soft_threshold(v, tau)
    assert z.shape == v.shape
    norms = np.linalg.norm(v, axis=-1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        expected = np.where(norms > tau, v * (1.0 - tau / norms), 0.0)
    # two formulas for the same factor, each a few roundings of numbers <= |v|
    np.testing.assert_allclose(z, expected, rtol=0, atol=8 * EPS * np.abs(v).max())
    zero_in = np.all(v == 0, axis=-1)
    assert np.all(z[zero_in] == 0.0)
    # prox optimality: v - z in tau * subdifferential of ||.|| at z
    z_norms = np.linalg.norm(z, axis=-1)
    r = v - z
    r_norms = np.linalg.norm(r, axis=-1)
    # rounding of the norms (relative eps per term) and of v - z
    slack = 8 * EPS * (tau + norms[..., 0])
    is_zero = z_norms == 0
    assert np.all(r_norms[is_zero] <= tau + slack[is_zero])
    nz = ~is_zero
    np.testing.assert_allclose(
        r[nz],
        tau * z[nz] / z_norms[nz][:, None],
        rtol=0,
        atol=8 * EPS * np.abs(v).max() + 8 * EPS * tau,
    )


def test_block_soft_threshold_zero_input_and_tau_zero():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for tau in (0.0, 1.0):
            np.testing.assert_array_equal(block_soft_threshold(np.zeros((2, 3, 4)), tau), 0.0)
    v = np.random.default_rng(1).standard_normal((3, 2, 4))
    # tau = 0 is the identity up to one rounding of the factor (norm - 0) / norm
    np.testing.assert_allclose(block_soft_threshold(v, 0.0), v, rtol=2 * EPS, atol=0)
    # a group of norm 5 and tau 5 - 1e-12: a shrink factor 1e-12 / 5, not zero
    z = block_soft_threshold(np.array([[3.0, 4.0]]), 5.0 - 1e-12)
    np.testing.assert_allclose(z, np.array([[3.0, 4.0]]) * (1e-12 / 5), rtol=1e-3)
    np.testing.assert_array_equal(block_soft_threshold(np.array([[3.0, 4.0]]), 5.0), 0.0)


# ------------------------------------------------- loss-coupled projection
def lcp_objective(q, a, c, y, rho):
    return 0.5 * (c @ q - y) ** 2 + 0.5 * rho * np.sum((q - a) ** 2)


def lcp_reference(a, c, y, rho):
    """Exact minimiser over q >= 0 by enumerating supports (K <= 4: 16 linear solves).

    The minimiser is the unconstrained minimiser on its own support, so it is the
    feasible candidate (q_S >= 0) of lowest objective.
    """
    K = a.size
    best, best_value = None, np.inf
    for size in range(K + 1):
        for S in itertools.combinations(range(K), size):
            q = np.zeros(K)
            if S:
                S = list(S)
                cs = c[S]
                q[S] = np.linalg.solve(
                    rho * np.eye(len(S)) + np.outer(cs, cs), rho * a[S] + y * cs
                )
                if np.any(q[S] < 0):
                    continue
            value = lcp_objective(q, a, c, y, rho)
            if value < best_value:
                best, best_value = q, value
    return best


@st.composite
def lcp_cases(draw, max_K=6, wide=True):
    """(a, coef, y, rho, theta0): zeros and all-zero rows in coef, any scales when wide."""
    n = draw(st.integers(1, 6))
    K = draw(st.integers(1, max_K))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    lo, hi = (-3, 3) if wide else (-1, 1)
    coef = rng.standard_normal((n, K)) * 10.0 ** rng.uniform(lo, hi, size=(n, 1))
    coef[rng.random((n, K)) < 0.3] = 0.0
    coef[rng.random(n) < 0.25] = 0.0  # pure clipping rows
    a_hi = 6 if wide else 2  # large |a| up to 1e6
    a = rng.standard_normal((n, K)) * 10.0 ** rng.uniform(-3, a_hi, size=(n, 1))
    y = rng.standard_normal(n) * 10.0 ** rng.uniform(-2, 3 if wide else 1, size=n)
    rho = 10.0 ** draw(st.floats(-6, 6) if wide else st.floats(-2, 2))
    # starting residuals from tiny to 1e8 (far larger ones: the test after the next)
    theta0 = rng.standard_normal(n) * 10.0 ** rng.uniform(-3, 8)
    return a, coef, y, rho, theta0


@given(lcp_cases())
def test_loss_coupled_projection_kkt(case):
    a, coef, y, rho, theta0 = case
    q, theta = loss_coupled_projection(a, coef, y, rho, theta0)
    assert q.shape == a.shape and theta.shape == y.shape
    assert np.all(q >= 0)
    # theta is the residual at q (one dot product: K roundings of its terms)
    K = a.shape[1]
    ac = np.abs(coef)
    dot_scale = np.sum(ac * q, axis=1) + np.abs(y)
    np.testing.assert_array_less(
        np.abs(theta - (np.sum(coef * q, axis=1) - y)), 2 * (K + 1) * EPS * dot_scale + 1e-300
    )
    # rows with coef = 0 are plain clipping, exactly
    zero = np.all(coef == 0, axis=1)
    np.testing.assert_array_equal(q[zero], np.maximum(a[zero], 0.0))
    np.testing.assert_array_equal(theta[zero], -y[zero])
    # KKT of min_{q >= 0} 0.5 (c.q - y)^2 + rho/2 ||q - a||^2, gradient c theta + rho (q - a):
    # zero where q > 0, >= 0 where q = 0.  Tolerance: the rounding of q = max(0, a - c theta
    # / rho) (eps (|a| + |c theta| / rho) per entry) carried through theta = c.q - y and the
    # gradient, times 4 (K + 2), plus the library's Newton stopping rule
    # |phi| <= 1e-14 (1 + |y| + sum |c q|) (phi' >= 1 bounds the theta error by it, and it
    # enters the gradient twice: through c theta and through rho q).
    grad = coef * theta[:, None] + rho * (q - a)
    size = np.sum(ac * (np.abs(a) + q), axis=1) + np.abs(y)
    size += np.abs(theta) * np.sum(coef**2, axis=1) / rho
    entries = ac * size[:, None] + rho * (np.abs(a) + q) + ac * np.abs(theta)[:, None]
    stop = 1e-14 * (1.0 + np.abs(y) + np.sum(np.abs(coef * q), axis=1))
    tol = 4 * (K + 2) * EPS * entries + 2 * ac * stop[:, None]
    violation = np.where(q > 0, np.abs(grad), np.maximum(-grad, 0.0))
    assert np.all(violation <= tol), np.max(violation / (tol + 1e-300))


@given(lcp_cases(max_K=4, wide=False))
def test_loss_coupled_projection_matches_enumeration(case):
    a, coef, y, rho, theta0 = case
    q, theta = loss_coupled_projection(a, coef, y, rho, theta0)
    for i in range(a.shape[0]):
        expected = lcp_reference(a[i], coef[i], y[i], rho)
        c2 = float(coef[i] @ coef[i])
        scale = np.linalg.norm(a[i]) + abs(y[i]) * np.sqrt(c2) / rho + 1.0
        # both are solutions of rho I + c c^T systems (cond <= 1 + |c|^2 / rho < 1e5 here)
        # plus the library's 1e-14 stopping rule on theta (moved by up to |c| / rho times
        # it into q); 1e-10 relative leaves margin, a wrong active set is off by O(scale)
        tol = 1e-10 * (1 + c2 / rho) * scale
        assert np.linalg.norm(q[i] - expected) <= tol, (i, q[i], expected)
        # and the library's point is no worse than the reference (rounding of the objective)
        f_ref = lcp_objective(expected, a[i], coef[i], y[i], rho)
        f_lib = lcp_objective(q[i], a[i], coef[i], y[i], rho)
        assert f_lib <= f_ref + 1e-12 * (f_ref + rho * scale**2 + 1)


@pytest.mark.parametrize("c", [1.0, -1.0, 0.0, 1e-4, 300.0])
@pytest.mark.parametrize("a0", [-1e6, -1.0, 0.0, 0.3, 1e6])
@pytest.mark.parametrize("rho", [1e-6, 1.0, 1e6])
def test_loss_coupled_projection_one_dimensional_closed_form(c, a0, rho):
    """K = 1: q = max(0, (rho a + c y) / (rho + c^2)), for several starting residuals."""
    y = 0.7
    expected = max(0.0, (rho * a0 + c * y) / (rho + c * c))
    for theta0 in (0.0, -y, 1e3, -1e5):
        q, theta = loss_coupled_projection(
            np.array([[a0]]), np.array([[c]]), np.array([y]), rho, np.array([theta0])
        )
        # closed form vs the library: a few roundings of terms as large as |a0| + |c y| / rho,
        # plus the library's theta stopping rule 1e-14 (1 + |y| + |c q|) times |c| / rho
        scale = abs(a0) + abs(c * y) / rho + abs(expected)
        stop = 1e-14 * (1 + y + abs(c * expected)) * abs(c) / rho
        assert abs(q[0, 0] - expected) <= 16 * EPS * scale + 2 * stop, (theta0, q, expected)
        assert abs(theta[0] - (c * q[0, 0] - y)) <= 4 * EPS * (abs(c * q[0, 0]) + y)


@pytest.mark.parametrize("theta0", [1e17, -1e17, 1e100, -1e100])
def test_loss_coupled_projection_far_starting_residual(theta0):
    """min_{q >= 0} 0.5 (q - 1)^2 + 0.5 q^2 has q = 0.5 whatever the starting residual
    (a bracket built from a phi whose rounding exceeded the distance to the root once
    excluded the root and returned q = 0)."""
    q, theta = loss_coupled_projection(
        np.array([[0.0]]), np.array([[1.0]]), np.array([1.0]), 1.0, np.array([theta0])
    )
    assert q[0, 0] == pytest.approx(0.5, rel=1e-12)
    assert theta[0] == pytest.approx(-0.5, rel=1e-12)


# ---------------------------------------------------------------- scaling
@given(st.sampled_from([2, 3]).flatmap(lambda depth: sampled_problems(depth=depth, max_P=3)))
def test_scaled_problem_identities(case):
    prob, rng = case
    X, y = prob.X, prob.y
    scaled = ScaledProblem.from_problem(prob)
    # the factors, recomputed: a = RMS row norm of X, b = RMS of y
    a = np.sqrt(np.mean(np.sum(X * X, axis=1)))
    b = np.sqrt(np.mean(y * y))
    assert scaled.x_scale == pytest.approx(a, rel=4 * EPS)  # one sum and sqrt apart
    assert scaled.y_scale == pytest.approx(b, rel=4 * EPS)
    assert scaled.objective_scale == pytest.approx(b * b, rel=8 * EPS)
    assert scaled.problem.beta == pytest.approx(prob.beta / (a * b), rel=8 * EPS)
    np.testing.assert_allclose(scaled.problem.X, X / a, rtol=4 * EPS, atol=0)
    np.testing.assert_allclose(scaled.problem.y, y / b, rtol=4 * EPS, atol=0)
    # X_cone: unit rows, zero rows stay zero; X~ = h * X_cone with h = ||x~_i|| (1 if zero)
    zero = np.all(X == 0, axis=1)
    row_norms = np.linalg.norm(scaled.X_cone, axis=1)
    np.testing.assert_allclose(row_norms[~zero], 1.0, rtol=0, atol=4 * EPS * X.shape[1])
    np.testing.assert_array_equal(scaled.X_cone[zero], 0.0)
    h = np.linalg.norm(X / a, axis=1)
    np.testing.assert_allclose(scaled.row_norms[~zero], h[~zero], rtol=4 * EPS, atol=0)
    np.testing.assert_array_equal(scaled.row_norms[zero], 1.0)
    np.testing.assert_allclose(
        scaled.row_norms[:, None] * scaled.X_cone, scaled.problem.X, rtol=4 * EPS, atol=0
    )
    # objective(X, y, beta; U) = b^2 objective(X~, y~, beta / (a b); a U / b)
    U = rng.standard_normal(prob.var_shape) * 10.0 ** rng.uniform(-2, 2)
    U[rng.random(prob.var_shape[:3]) < 0.2] = 0.0
    V = scaled.from_original(U)
    np.testing.assert_allclose(V, U * (a / b), rtol=4 * EPS, atol=0)
    # to_original inverts from_original up to the roundings of a / b, b / a and 2 products
    np.testing.assert_allclose(scaled.to_original(V), U, rtol=4 * EPS, atol=0)
    lhs = prob.objective(U)
    rhs = scaled.objective_scale * scaled.problem.objective(V)
    # objectives are sums of < 10^3 non-negative terms whose residual inside may cancel:
    # 1e-12 of the scale (|F| |U| + |y|)^2 + beta reg is far above the rounding
    fu = np.sum(np.abs(X)) * np.sum(np.abs(U)) + np.sum(np.abs(y))
    assert abs(lhs - rhs) <= 1e-12 * (fu**2 + prob.beta * prob.regularizer(U))
    # with_beta keeps the factors and the data, and scales beta by 1 / (a b)
    beta2 = float(rng.uniform(0.01, 5.0))
    other = scaled.with_beta(beta2)
    assert (other.x_scale, other.y_scale) == (scaled.x_scale, scaled.y_scale)
    np.testing.assert_array_equal(other.X_cone, scaled.X_cone)
    np.testing.assert_array_equal(other.row_norms, scaled.row_norms)
    np.testing.assert_array_equal(other.problem.X, scaled.problem.X)
    np.testing.assert_array_equal(other.problem.y, scaled.problem.y)
    assert other.problem.arrangements is prob.arrangements
    assert other.problem.beta == pytest.approx(beta2 / (a * b), rel=8 * EPS)
    assert scaled.problem.beta == pytest.approx(prob.beta / (a * b), rel=8 * EPS)  # unchanged
    lhs2 = prob.with_beta(beta2).objective(U)
    rhs2 = other.objective_scale * other.problem.objective(V)
    assert abs(lhs2 - rhs2) <= 1e-12 * (fu**2 + beta2 * prob.regularizer(U))


def test_scaled_problem_zero_targets_keep_unit_y_scale():
    """y = 0 has RMS 0: b falls back to 1 (no division by zero, y~ = 0)."""
    rng = np.random.default_rng(3)
    X = rng.standard_normal((5, 3))
    arr = ar.sample_arrangements(X, 3, seed=0)
    prob = ar.ConvexReLUProblem(X, np.zeros(5), 0.5, arr)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        scaled = ScaledProblem.from_problem(prob)
    assert scaled.y_scale == 1.0
    np.testing.assert_array_equal(scaled.problem.y, 0.0)
    a = np.sqrt(np.mean(np.sum(X * X, axis=1)))
    assert scaled.problem.beta == pytest.approx(0.5 / a, rel=8 * EPS)


# ----------------------------------------------------------------- Anderson
def linear_contraction(N, seed, radius=0.99):
    """T(w) = A w + b, A symmetric with spectrum in [-radius, radius] (radius attained)."""
    rng = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(rng.standard_normal((N, N)))
    lam = rng.uniform(-radius, radius, N)
    lam[0] = radius
    A = (Q * lam) @ Q.T
    b = rng.standard_normal(N)
    return A, b, rng


def iterate(T, w, step, tol=1e-10, max_steps=10_000):
    """Steps until ||T(w) - w|| <= tol; returns (w, steps)."""
    for k in range(max_steps):
        Tw = T(w)
        if np.linalg.norm(Tw - w) <= tol:
            return w, k
        w = step(w, Tw)
    raise AssertionError(f"no convergence in {max_steps} steps")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_anderson_accelerates_linear_contraction(seed):
    N = 30
    A, b, rng = linear_contraction(N, seed)
    T = lambda w: A @ w + b  # noqa: E731
    w0 = rng.standard_normal(N)
    _, plain = iterate(T, w0, lambda w, Tw: Tw)
    accel = AndersonAccelerator(memory=10)
    w, fast = iterate(T, w0, accel.step)
    # plain iteration needs ~log(1e-10 / r0) / log(0.99) ~ 2000+ steps; Anderson (observed
    # 50-300 steps) must do better than a third of that
    assert plain > 1500
    assert fast < plain / 3, (fast, plain)
    # ||w - w*|| <= ||(I - A)^-1|| ||T(w) - w|| <= 100 * 1e-10 (1 - 0.99 is the smallest
    # eigenvalue of I - A), plus rounding ~1e-15 ||w||
    expected = np.linalg.solve(np.eye(N) - A, b)
    assert np.linalg.norm(w - expected) <= 1.01e-8 + 1e-13 * np.linalg.norm(expected)


def test_anderson_memory_above_dimension_terminates_like_gmres():
    """With memory > N on a linear map, the step is GMRES-like: done in about N + 1 steps."""
    N = 10
    A, b, rng = linear_contraction(N, seed=7)
    accel = AndersonAccelerator(memory=N + 2)
    w, steps = iterate(lambda w: A @ w + b, rng.standard_normal(N), accel.step)
    # exact arithmetic: N + 1 steps; rounding and the 1e-10 regularization cost a few more
    assert steps <= 2 * N, steps


def test_anderson_memory_zero_returns_plain_step():
    rng = np.random.default_rng(0)
    accel = AndersonAccelerator(memory=0)
    for k in range(5):
        w = rng.standard_normal(7)
        Tw = rng.standard_normal(7) * 10.0**k  # residuals growing: no safeguard either
        before = Tw.copy()
        out = accel.step(w, Tw)
        np.testing.assert_array_equal(out, before)
        np.testing.assert_array_equal(Tw, before)  # not modified in place
    assert accel.n_rejected == 0


@pytest.mark.parametrize("memory", [1, 3, 5])
def test_anderson_step_matches_least_squares(memory):
    """The accelerated point from a direct lstsq over the last ``memory`` differences.

    Residual norms decrease along the fed sequence, so the safeguard never fires, and
    twice as many steps as the memory exercise the ring buffer's wrap-around.
    """
    rng = np.random.default_rng(memory)
    N = 12
    accel = AndersonAccelerator(memory, regularization=0.0)
    ws, gs = [], []
    for k in range(3 * memory + 4):
        w = rng.standard_normal(N)
        g = rng.standard_normal(N)
        g *= 0.8**k / np.linalg.norm(g)
        out = accel.step(w, w + g)
        ws.append(w)
        gs.append(g)
        m = min(k, memory)
        if m == 0:
            np.testing.assert_array_equal(out, w + g)
            continue
        dW = np.diff(np.array(ws[-m - 1 :]), axis=0)  # (m, N), oldest first
        dG = np.diff(np.array(gs[-m - 1 :]), axis=0)
        gamma, *_ = np.linalg.lstsq(dG.T, g, rcond=None)
        expected = w + g - (dW + dG).T @ gamma
        # random differences are well conditioned (cond(dG) < 10): normal equations vs
        # lstsq differ by ~eps cond^2 times the terms' size
        scale = np.linalg.norm(w) + np.abs(gamma).sum() * (np.abs(dW).max() + np.abs(dG).max())
        np.testing.assert_allclose(out, expected, rtol=0, atol=1e-11 * scale)
    assert accel.n_rejected == 0


def test_anderson_safeguard_rule():
    """A residual that grew at the new point: return T(previous point), forget the memory."""
    rng = np.random.default_rng(11)
    N = 6
    accel = AndersonAccelerator(memory=3)
    w0 = rng.standard_normal(N)
    T0 = w0 + 1.0 * rng.standard_normal(N)
    np.testing.assert_array_equal(accel.step(w0, T0), T0)  # no history yet: plain step
    r0 = np.linalg.norm(T0 - w0)
    w1 = T0
    g1 = rng.standard_normal(N)
    g1 *= 0.5 * r0 / np.linalg.norm(g1)  # residual shrank: accepted, accelerated
    T1 = w1 + g1
    out1 = accel.step(w1, T1)
    assert accel.n_rejected == 0
    assert not np.array_equal(out1, T1)  # one difference stored: an accelerated point
    w2 = out1
    g2 = rng.standard_normal(N)
    g2 *= 3.0 * np.linalg.norm(g1) / np.linalg.norm(g2)  # residual grew at the new point
    out2 = accel.step(w2, w2 + g2)
    assert accel.n_rejected == 1
    np.testing.assert_array_equal(out2, T1)  # the plain step from the point it came from
    # memory cleared: from here on the accelerator acts exactly like a fresh one
    fresh = AndersonAccelerator(memory=3)
    w = out2
    for _ in range(6):
        Tw = w + rng.standard_normal(N) * 0.1 * np.linalg.norm(g1)
        np.testing.assert_array_equal(accel.step(w, Tw), fresh.step(w, Tw))
        w = Tw + 0.01 * rng.standard_normal(N)
    assert accel.n_rejected == 1 + fresh.n_rejected


def test_anderson_safeguard_fires_on_nonlinear_map_and_still_converges():
    """T(w) = |R w| + c, R a rotation times 0.99: a contraction (| |u| - |v| | <= |u - v|)
    whose kinks make accelerated steps overshoot, so the safeguard fires before convergence
    (5 times here), and the iteration still converges to the unique fixed point."""
    rng = np.random.default_rng(0)
    N = 10
    Q, _ = np.linalg.qr(rng.standard_normal((N, N)))
    R = 0.99 * Q
    c = 0.1 * rng.standard_normal(N)
    T = lambda w: np.abs(R @ w) + c  # noqa: E731
    accel = AndersonAccelerator(memory=10)
    w, steps = iterate(T, 5.0 * rng.standard_normal(N), accel.step, max_steps=2000)
    assert accel.n_rejected > 0  # counted only up to convergence: iterate stops there
    # fixed point unique and within ||T(w) - w|| / (1 - 0.99) = 1e-8 of w; 3000 plain steps
    # from w reach it to 0.99^3000 ~ 1e-13 of their start
    w_plain = w.copy()
    for _ in range(3000):
        w_plain = T(w_plain)
    assert np.linalg.norm(w - w_plain) <= 1.01e-8
