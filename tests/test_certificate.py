"""Dual norms, the certified lower bound and beta_max (formulation.md §6).

The reference for ``sigma_t(z) = max {z^T w : w in C_t, ||w||_{2,1} <= 1}`` is a direct
cvxpy/Clarabel solve of that SOCP with the cone written densely from §4; the library
computes it through the dual ``min_{mu >= 0} max_j ||z_j + E_j mu||``.  Weak duality is
checked against objectives of feasible points and against cvxpy optima, so every
inequality here is a theorem up to rounding and solver tolerance.
"""

import warnings

import cvxpy as cp
import numpy as np
import pytest
from admmrelu.kernels import BoundOperators, get_backend
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import admmrelu as ar
import admmrelu.certificate as certificate_module
from admmrelu.certificate import (
    SHORT_REFINEMENTS,
    block_upper_bounds,
    improve_multipliers,
    largest_sufficient_gamma,
    max_block_dual_norm,
    scaled_dual_bound,
    short_refinements,
)
from admmrelu.cones import block_dual_norm

#: Clarabel at tight tolerances for the references
TIGHT = dict(tol_gap_abs=1e-10, tol_gap_rel=1e-10, tol_feas=1e-10)


def dense_G(prob, t):
    """G_t of formulation §4: [blkdiag_j((2 D1_j - I) X); (2 D2 - I) B_t] (rows, m1 d cols)."""
    X, arr = prob.X, prob.arrangements
    n, d, m1 = prob.n_samples, prob.n_features, prob.width
    rows = []
    for j in range(m1):
        block = np.zeros((n, m1 * d))
        block[:, j * d : (j + 1) * d] = (2.0 * arr.masks1[:, t, j] - 1.0)[:, None] * X
        rows.append(block)
    if arr.masks2 is not None:
        B = np.hstack([(arr.signs[t, j] * arr.masks1[:, t, j])[:, None] * X for j in range(m1)])
        rows.append((2.0 * arr.masks2[:, t] - 1.0)[:, None] * B)
    return np.vstack(rows)


def cvxpy_sigma(prob, t, z):
    """max z^T w  s.t.  G_t w >= 0, sum_j ||w_j|| <= 1 (z of shape (m1, d))."""
    m1, d = z.shape
    w = cp.Variable((m1, d))
    cons = [dense_G(prob, t) @ cp.vec(w, order="C") >= 0, cp.sum(cp.norm(w, 2, axis=1)) <= 1]
    model = cp.Problem(cp.Maximize(cp.sum(cp.multiply(z, w))), cons)
    model.solve(solver="CLARABEL", **TIGHT)
    assert model.status == "optimal"
    return model.value


def sampled_problem(n, d, P, depth, width, seed, beta=0.1):
    rng = np.random.default_rng(seed)
    X = np.hstack([rng.standard_normal((n, d - 1)), np.ones((n, 1))])
    y = rng.standard_normal(n)
    with warnings.catch_warnings():  # tiny data may have fewer cells than asked for
        warnings.simplefilter("ignore", UserWarning)
        arr = ar.sample_arrangements(X, P, depth=depth, width=width, seed=rng)
    return ar.ConvexReLUProblem(X, y, beta, arr), rng


def cvxpy_optimum(prob):
    model = prob.to_cvxpy()
    model.solve(solver="CLARABEL", **TIGHT)
    assert model.status == "optimal"
    return model.value


# ------------------------------------------------------------ polar generators
@pytest.mark.parametrize("depth, width", [(2, None), (3, 2), (3, 3)])
def test_polar_generators_are_the_columns_of_G_transpose(depth, width):
    """E_j mu = (G_t^T mu)_j: the stacked E equals G_t^T without its zero columns."""
    prob, _ = sampled_problem(9, 3, 5, depth, width, seed=1)
    for t in range(prob.n_blocks):
        E = prob.polar_generators(t)
        Gt = dense_G(prob, t).T
        Gt = Gt[:, np.any(Gt != 0, axis=0)]
        stacked = E.reshape(prob.width * prob.n_features, -1)
        assert stacked.shape == Gt.shape
        np.testing.assert_allclose(stacked, Gt, rtol=0, atol=1e-14)


# ----------------------------------------------------------------- dual norm
@pytest.mark.parametrize("depth, width", [(2, None), (3, 2), (3, 3)])
def test_block_dual_norm_matches_cvxpy(depth, width):
    """sigma_t(z) for z = +-A_t^T v: an upper bound, equal to the direct SOCP within 1e-6."""
    prob, rng = sampled_problem(10, 3, 6, depth, width, seed=2)
    for _trial in range(2):
        v = rng.standard_normal(prob.n_samples)
        Z = prob.adjoint(v)[0]
        for t in range(prob.n_blocks):
            for sign in (1.0, -1.0):
                z = sign * Z[t]
                lib = block_dual_norm(prob.polar_generators(t), z)
                ref = cvxpy_sigma(prob, t, z)
                scale = np.linalg.norm(z, axis=1).max()  # sigma_t(z) <= max_j ||z_j||
                assert lib <= scale * (1 + 1e-12)
                # upper bound: Clarabel's maximiser is feasible to ~1e-10, so its value can
                # exceed sigma by ~1e-10 * ||z||, never by more
                assert lib >= ref - 1e-8 * scale
                # and tight: the library's inner solve is accurate to ~1e-9
                assert lib <= ref + 1e-6 * scale


def test_block_dual_norm_of_trivial_cone_is_zero():
    """C_t = {0} (here: a mask that contradicts X g >= 0 for every g) gives sigma_t = 0."""
    X = np.array([[1.0], [-1.0]])  # d = 1: no g has X g >= 0 with both rows active
    arr = ar.Arrangements(masks1=np.ones((2, 1, 1), dtype=bool), signs=np.ones((1, 1)))
    prob = ar.ConvexReLUProblem(X, np.ones(2), 1.0, arr)
    z = np.array([[2.5]])
    assert cvxpy_sigma(prob, 0, z) == pytest.approx(0.0, abs=1e-8)
    assert block_dual_norm(prob.polar_generators(0), z) == pytest.approx(0.0, abs=1e-12)


# -------------------------------------------------------- weak duality
@st.composite
def certificate_cases(draw):
    depth = draw(st.sampled_from([2, 3]))
    width = None if depth == 2 else draw(st.integers(1, 3))
    n = draw(st.integers(3, 10))
    d = draw(st.integers(2, 3))
    P = draw(st.integers(1, 5))
    beta = draw(st.sampled_from([1e-3, 0.05, 0.5, 5.0]))
    seed = draw(st.integers(0, 2**32 - 1))
    kind = draw(st.sampled_from(["feasible", "random", "zero", "scaled_y"]))
    return sampled_problem(n, d, P, depth, width, seed, beta=beta), kind


@settings(max_examples=30)
@given(certificate_cases())
def test_dual_bound_of_any_prediction_is_a_lower_bound(case):
    (prob, rng), kind = case
    if kind == "feasible":
        yhat = prob.forward(prob.project(rng.standard_normal(prob.var_shape)))
    elif kind == "random":
        yhat = rng.standard_normal(prob.n_samples)
    elif kind == "zero":
        yhat = np.zeros(prob.n_samples)
    else:
        yhat = rng.uniform(-1, 2) * prob.y
    cert = ar.certify(prob, yhat)
    assert cert.scale >= 0 and cert.dual_ratio >= 0
    # rounding in the bound itself: a few eps of 0.5 ||y||^2
    slack = 1e-12 * (1 + 0.5 * prob.y @ prob.y)
    assert cert.dual_bound <= 0.5 * prob.y @ prob.y + slack  # objective of U = 0
    for _ in range(3):
        U = prob.project(rng.standard_normal(prob.var_shape) * rng.exponential())
        assert cert.dual_bound <= prob.objective(U) + slack
    # and below the true optimum (the cvxpy optimum is within 1e-9 relative of it)
    p_star = cvxpy_optimum(prob)
    assert cert.dual_bound <= p_star + 1e-8 * (1 + abs(p_star))


@pytest.mark.parametrize("depth, width", [(2, None), (3, 2)])
def test_dual_bound_is_tight_at_the_optimum(depth, width):
    """d(v*) = p at an optimum (Euler identity, §6): the certificate closes the gap."""
    prob, _ = sampled_problem(20, 3, 8, depth, width, seed=5)
    prob = prob.with_beta(0.2 * prob.beta_max)
    res = prob.solve(solver="cvxpy", tol_gap_abs=1e-10, tol_gap_rel=1e-10, tol_feas=1e-10)
    cert = ar.certify(prob, prob.forward(res.weights))
    assert cert.dual_bound == pytest.approx(res.dual_bound, rel=1e-12)
    assert res.objective - 1e-6 * res.objective <= cert.dual_bound <= res.objective * (1 + 1e-12)
    assert cert.dual_ratio == pytest.approx(1.0, abs=1e-4)


def _network_from_params(theta, d, depth, width, K):
    """Unconstrained parameters -> network; depth 3 normalises W1_k onto the unit sphere."""
    if depth == 2:
        W1, w2 = theta[: d * K].reshape(d, K), theta[d * K :]
        return ar.TwoLayerReLUNetwork(W1=W1, w2=w2)
    size = K * d * width
    W1 = theta[:size].reshape(K, d, width)
    W1 = W1 / np.maximum(np.linalg.norm(W1, axis=(1, 2), keepdims=True), 1e-12)
    w2 = theta[size : size + K * width].reshape(K, width)
    return ar.ThreeLayerReLUNetwork(W1=W1, w2=w2, w3=theta[size + K * width :])


@pytest.mark.parametrize("fixture", ["tiny_two_layer", "tiny_three_layer"])
def test_exact_certificate_bounds_every_network(fixture, request):
    """With exactly enumerated blocks, d(v) bounds every network of the architecture (§4, §6).

    Neither random networks nor local minimisation (L-BFGS restarts on the non-convex
    objective (5) / its two-layer version) may go below the certified bound.  Both sides
    are exact objective evaluations, so the only slack is rounding (1e-12 relative).
    """
    from scipy.optimize import minimize

    X, y, arr = request.getfixturevalue(fixture)
    prob = ar.ConvexReLUProblem(X, y, 0.05, arr)
    res = prob.solve(solver="cvxpy")
    assert res.arrangements_exact
    rng = np.random.default_rng(11)
    d, depth, width, K = X.shape[1], arr.depth, arr.width, 4
    n_params = d * K + K if depth == 2 else K * d * width + K * width + K

    def objective(theta):
        return _network_from_params(theta, d, depth, width, K).objective(X, y, prob.beta)

    values = [objective(rng.standard_normal(n_params) * rng.exponential()) for _ in range(50)]
    for _ in range(4):
        fit = minimize(objective, rng.standard_normal(n_params), method="L-BFGS-B")
        values.append(objective(fit.x))
    lower = res.dual_bound - 1e-12 * abs(res.dual_bound)
    assert min(values) >= lower
    # the recovered network attains the convex objective, within gap of the bound
    net_obj = res.network().objective(X, y, prob.beta)
    assert lower <= net_obj <= res.dual_bound + res.gap + 1e-10 * res.objective


def test_max_block_dual_norm_matches_cvxpy():
    prob, rng = sampled_problem(8, 3, 4, 3, 2, seed=8)
    v = rng.standard_normal(prob.n_samples)
    gamma, exact = max_block_dual_norm(prob, v)
    Z = prob.adjoint(v)[0]
    refs = np.array(
        [[cvxpy_sigma(prob, t, s * Z[t]) for t in range(prob.n_blocks)] for s in (1, -1)]
    )
    scale = np.linalg.norm(Z, axis=2).max()
    assert refs.max() - 1e-8 * scale <= gamma <= refs.max() + 1e-6 * scale
    refined = ~np.isnan(exact)
    assert 1 <= refined.sum() <= 2 * prob.n_blocks
    np.testing.assert_allclose(exact[refined], refs[refined], atol=1e-6 * scale)


# -------------------------------------------------------------- beta_max
@pytest.mark.parametrize("depth, width", [(2, None), (3, 2)])
def test_beta_max_matches_cvxpy_dual_norms(depth, width):
    prob, _ = sampled_problem(10, 3, 5, depth, width, seed=9)
    Z = prob.adjoint(prob.y)[0]
    ref = max(cvxpy_sigma(prob, t, s * Z[t]) for t in range(prob.n_blocks) for s in (1, -1))
    scale = np.linalg.norm(Z, axis=2).max()
    assert ref - 1e-8 * scale <= prob.beta_max <= ref + 1e-6 * scale


@pytest.mark.parametrize("depth, width", [(2, None), (3, 2), (3, 3)])
def test_zero_is_optimal_exactly_above_beta_max(depth, width):
    prob, _ = sampled_problem(15, 3, 8, depth, width, seed=10)
    beta_max = prob.beta_max
    assert beta_max > 0
    half_yy = 0.5 * prob.y @ prob.y
    # just above beta_max: the cvxpy optimum is 0.5 ||y||^2 (U = 0) ...
    above = prob.with_beta(beta_max * (1 + 1e-6))
    assert cvxpy_optimum(above) == pytest.approx(half_yy, rel=1e-7)
    # ... and the certificate of the zero prediction proves it: v = y is dual feasible
    cert = ar.certify(above, np.zeros(prob.n_samples))
    assert cert.dual_ratio < 1.0
    assert cert.dual_bound == pytest.approx(half_yy, rel=1e-12)
    # below beta_max a feasible point beats zero by more than rounding
    below = prob.with_beta(0.9 * beta_max)
    res = below.solve(solver="cvxpy")
    assert res.max_violation <= 1e-12 * np.abs(res.weights).max() * np.abs(prob.X).max() * 10
    assert below.objective(res.weights) < half_yy * (1 - 1e-6)
    assert cvxpy_optimum(below) < half_yy * (1 - 1e-6)
    assert ar.certify(below, np.zeros(prob.n_samples)).dual_ratio > 1.0


def test_with_beta_recomputes_nothing_but_beta():
    prob, _ = sampled_problem(12, 3, 6, 2, None, seed=12)
    bm = prob.beta_max
    other = prob.with_beta(3.0)
    assert other.beta == 3.0 and prob.beta == 0.1
    assert other.beta_max == pytest.approx(bm, rel=1e-12)  # beta_max does not depend on beta


@settings(max_examples=30)
@given(certificate_cases(), st.sampled_from([1e-8, 1e-4, 1e-2, 0.3]))
def test_sufficient_bound_spares_refinements_and_stays_rigorous(case, share):
    """``sufficient``: refinement stops once the scaled bound reaches it; the bound stays
    below the optimum, and it reaches ``sufficient`` unless every block was refined."""
    (prob, rng), kind = case
    yhat = prob.forward(prob.project(rng.standard_normal(prob.var_shape)))
    exact = ar.certify(prob, yhat)
    sufficient = exact.dual_bound - share * (1 + abs(exact.dual_bound))
    cert = ar.certify(prob, yhat, sufficient=sufficient)
    assert cert.n_refined <= exact.n_refined
    slack = 1e-12 * (1 + 0.5 * prob.y @ prob.y)
    assert cert.dual_bound <= exact.dual_bound + slack  # never above the exact bound
    assert cert.dual_bound >= sufficient - slack  # and as good as asked
    p_star = cvxpy_optimum(prob)
    assert cert.dual_bound <= p_star + 1e-8 * (1 + abs(p_star))


@given(
    st.floats(0.1, 10.0),
    st.floats(0.01, 5.0),
    st.floats(0.05, 0.95),
    st.integers(0, 2**32 - 1),
)
def test_largest_sufficient_gamma_is_the_boundary(beta, spread, fraction, seed):
    """At gamma_max the scaled bound equals ``sufficient``; 1% beyond it falls short.
    Beyond the best bound no gamma is enough; a non-positive target any gamma meets."""
    rng = np.random.default_rng(seed)
    y = rng.standard_normal(7)
    v = y + spread * rng.standard_normal(7)
    best, _ = scaled_dual_bound(v, y, beta, 0.0)  # gamma = 0: the unconstrained maximum
    assume(best > 0)
    gamma = largest_sufficient_gamma(v, y, beta, fraction * best)
    at, _ = scaled_dual_bound(v, y, beta, gamma)
    assert at == pytest.approx(fraction * best, rel=1e-9)
    beyond, _ = scaled_dual_bound(v, y, beta, 1.01 * gamma)
    assert beyond < fraction * best
    assert largest_sufficient_gamma(v, y, beta, 1.001 * best) == 0.0
    assert largest_sufficient_gamma(v, y, beta, 0.0) == np.inf


@pytest.mark.parametrize("device", ["numpy", "cpu"])
@pytest.mark.parametrize("depth, width", [(2, None), (3, 2)])
def test_improve_multipliers_on_bound_operators_matches_the_problem(device, depth, width):
    """The solver improves multipliers on its device (BoundOperators); in float64 that is
    the same computation as on the problem's own operators, and in float32 it still
    lowers the block bounds it started from."""
    prob, rng = sampled_problem(30, 3, 6, depth, width, seed=11)
    arr = prob.arrangements
    v = prob.y - prob.forward(prob.project(rng.standard_normal(prob.var_shape)))
    mu0 = np.abs(rng.standard_normal(prob.cone_shape))
    on_problem = improve_multipliers(prob, v, mu0, 30)
    for dtype, rtol in ((np.float64, 1e-10), (np.float32, None)):
        ops = BoundOperators(
            get_backend(device),
            prob.X.astype(dtype),
            arr.masks1,
            arr.signs.astype(dtype),
            arr.masks2,
        )
        mu = improve_multipliers(ops, v.astype(dtype), mu0.astype(dtype), 30)
        assert mu.dtype == dtype and np.all(mu >= 0)
        if rtol is not None:
            np.testing.assert_allclose(mu, on_problem, rtol=rtol, atol=1e-12 * np.abs(mu0).max())
        else:
            before = block_upper_bounds(prob, v, mu0)
            after = block_upper_bounds(prob, v, mu.astype(np.float64))
            assert np.all(after <= before * (1 + 1e-5))


@pytest.mark.parametrize("most", [SHORT_REFINEMENTS, 15])
def test_unreachable_sufficient_bound_caps_the_exact_solves(most, monkeypatch):
    """A target no refinement can reach (above the gamma = beta bound) spends at most
    short_refinements(problem) exact solves, on the blocks of largest bound; the bound
    stays valid."""
    monkeypatch.setattr(certificate_module, "_MOST_REFINEMENTS", most)
    prob, rng = sampled_problem(40, 3, 30, 2, None, seed=4, beta=1e-3)
    assert short_refinements(prob) == most  # tiny blocks: the flop budget allows the most
    yhat = np.zeros(prob.n_samples)
    full = ar.certify(prob, yhat)
    assert full.n_refined > most  # otherwise the cap would not show
    unreachable = 2.0 * (0.5 * prob.y @ prob.y)  # above any dual value
    capped = ar.certify(prob, yhat, sufficient=unreachable)
    assert capped.n_refined == most
    # the refined blocks are those of largest cheap bound, with the exact values
    refined = ~np.isnan(capped.block_norms)
    upper = block_upper_bounds(prob, prob.y - yhat)
    assert upper[refined].min() >= upper[~refined].max()
    np.testing.assert_allclose(capped.block_norms[refined], full.block_norms[refined])
    assert capped.dual_bound <= full.dual_bound + 1e-12 * (1 + abs(full.dual_bound))
