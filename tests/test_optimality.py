"""Global optimality on tiny data with exactly enumerated arrangements (formulation.md §4-§6, §12).

Independent references used here:

* the cvxpy model ``prob.to_cvxpy()`` solved separately with tight Clarabel tolerances;
* the prediction formula of §5 evaluated directly from the weights and the signs;
* random-restart Adam on the *non-convex* network (numpy, hand-written gradients): no
  network may beat the certified lower bound ``res.dual_bound``, and the best restart must
  come close to it;
* the two-layer program versus the three-layer program of width 1 (§4, last paragraph);
* the zero network for ``beta >= beta_max`` (§6).
"""

import cvxpy as cp
import numpy as np
import pytest
from conftest import tiny_data

import admmrelu as ar

#: Fractions of beta_max per depth.  On the three-layer fixture a single sub-network is
#: already optimal at 0.05 beta_max, so 0.02 is used where the number K of sub-networks
#: should matter (K = 1 gets stuck 1e-3 above the optimum there).
FRACTIONS = {2: (0.05, 0.2), 3: (0.02, 0.1)}


def _solve(prob, beta):
    return prob.with_beta(beta).solve(solver="cvxpy", cvxpy_solver="CLARABEL")


@pytest.fixture(scope="module")
def problems(tiny_two_layer, tiny_three_layer):
    out = {}
    for depth, (X, y, arr) in ((2, tiny_two_layer), (3, tiny_three_layer)):
        out[depth] = (X, y, ar.ConvexReLUProblem(X, y, 1.0, arr))
    return out


@pytest.fixture(scope="module")
def solved(problems):
    """(X, y, problem at beta, result) for each (depth, fraction of beta_max)."""
    out = {}
    for depth, fractions in FRACTIONS.items():
        X, y, prob = problems[depth]
        for frac in fractions:
            beta = frac * prob.beta_max
            out[depth, frac] = (X, y, prob.with_beta(beta), _solve(prob, beta))
    return out


CASES = [(depth, frac) for depth, fractions in FRACTIONS.items() for frac in fractions]


def _formula_prediction(X, weights, signs):
    """§5: sum_t [(sum_j s_tj (x^T w_tj)_+)_+ - (sum_j s_tj (x^T w'_tj)_+)_+]."""
    Z = np.einsum("nd,ctjd->nctj", X, weights)
    inner = np.einsum("nctj,tj->nct", np.maximum(Z, 0.0), signs)
    outer = np.maximum(inner, 0.0)
    return outer[:, 0].sum(axis=1) - outer[:, 1].sum(axis=1)


# ------------------------------------------------------------- 1. objective values
@pytest.mark.parametrize(("depth", "frac"), CASES)
def test_network_attains_the_convex_optimum(depth, frac, solved):
    X, y, prob, res = solved[depth, frac]
    net = res.network()
    assert net.depth == depth
    beta = prob.beta
    # Proposition 1 is exact on a cone-feasible point: only rounding separates the values
    assert net.objective(X, y, beta) == pytest.approx(res.objective, rel=1e-8)
    if depth == 3:  # (5) holds the first layer on the unit sphere
        np.testing.assert_allclose(net.first_layer_norms(), 1.0, rtol=1e-12)
    # the convex objective recomputed by hand from the weights
    fit = 0.5 * np.sum((prob.forward(res.weights) - y) ** 2)
    reg = beta * np.sum(np.linalg.norm(res.weights, axis=3))
    assert res.objective == pytest.approx(fit + reg, rel=1e-12)
    assert res.max_violation <= 1e-12 * np.abs(res.weights).max() * np.abs(X).max()


@pytest.mark.parametrize(("depth", "frac"), CASES)
def test_objective_agrees_with_independent_cvxpy_solve(depth, frac, solved):
    X, y, prob, res = solved[depth, frac]
    model = prob.to_cvxpy()
    model.solve(solver=cp.CLARABEL, tol_gap_abs=1e-11, tol_gap_rel=1e-11, tol_feas=1e-11)
    assert model.status == cp.OPTIMAL
    value = model.value
    # With gaps and feasibility at 1e-11 the model value is the optimum to ~1e-10
    # relative; res.objective is feasible (>= optimum) and res.dual_bound is a rigorous
    # lower bound, so the model value must lie between them up to that slack.
    slack = 1e-9 * abs(value)
    assert res.dual_bound - slack <= value <= res.objective + slack
    # res came from default Clarabel tolerances (1e-8) followed by a projection; its
    # status 'optimal' promises a certified relative gap of 1e-6
    assert res.objective == pytest.approx(value, rel=1e-6)


# ------------------------------------------------------------------ 2. predictions
@pytest.mark.parametrize(("depth", "frac"), CASES)
def test_predictions_on_training_and_new_inputs(depth, frac, solved):
    X, y, prob, res = solved[depth, frac]
    net = res.network()
    scale = max(1.0, np.abs(y).max())
    np.testing.assert_allclose(net.predict(X), prob.forward(res.weights), rtol=0, atol=1e-9)
    # on the training data the formula equals A_t(w_t - w'_t) because the weights are
    # cone-feasible (the masks are the ReLU patterns of the weights)
    np.testing.assert_allclose(
        _formula_prediction(X, res.weights, res.signs), prob.forward(res.weights), atol=1e-9
    )
    # new inputs, also far outside the training range: the masks play no role
    rng = np.random.default_rng(7)
    d = X.shape[1]
    X_new = np.hstack([3.0 * rng.standard_normal((200, d - 1)), np.ones((200, 1))])
    expected = _formula_prediction(X_new, res.weights, res.signs)
    np.testing.assert_allclose(net.predict(X_new), expected, rtol=1e-10, atol=1e-10 * scale)
    # and the prediction on new inputs is not a masked (gated) model: it reacts to x
    assert np.ptp(expected) > 1e-3 * scale


# ----------------------------------------------------------------- 3. certificate
@pytest.mark.parametrize(("depth", "frac"), CASES)
def test_certificate_closes_the_gap(depth, frac, solved):
    X, y, prob, res = solved[depth, frac]
    assert res.status == "optimal"
    assert res.arrangements_exact is True
    assert res.dual_bound <= res.objective * (1 + 1e-12)
    assert res.dual_bound == pytest.approx(res.objective, rel=1e-6)
    assert res.dual_ratio == pytest.approx(1.0, abs=1e-4)
    # a few neurons / sub-networks are active (beta well below beta_max)
    assert np.count_nonzero(np.linalg.norm(res.weights, axis=(2, 3)) > 1e-6) >= 1
    assert res.objective < 0.5 * float(y @ y) * (1 - 1e-3)


# ----------------------------------------------------- 4. non-convex random restarts
def _relu(z):
    return np.maximum(z, 0.0)


def _two_layer_value_and_grad(X, y, beta, W, a):
    """Batched over restarts R: W (R, d, K), a (R, K).

    0.5 ||(X W)_+ a - y||^2 + beta/2 (||W||_F^2 + ||a||^2) and its (sub)gradient.
    """
    Z = np.einsum("nd,rdk->rnk", X, W)
    H = _relu(Z)
    r = np.einsum("rnk,rk->rn", H, a) - y
    value = 0.5 * np.sum(r**2, axis=1) + 0.5 * beta * (
        np.sum(W**2, axis=(1, 2)) + np.sum(a**2, axis=1)
    )
    grad_a = np.einsum("rnk,rn->rk", H, r) + beta * a
    dZ = r[:, :, None] * a[:, None, :] * (Z > 0)
    grad_W = np.einsum("nd,rnk->rdk", X, dZ) + beta * W
    return value, (grad_W, grad_a)


def _three_layer_value_and_grad(X, y, beta, V, w2, w3):
    """Batched over restarts R: V (R, K, d, m1), w2 (R, K, m1), w3 (R, K).

    Objective (5) with W1_k = V_k / ||V_k||_F (so ||W1_k||_F = 1 exactly):
    0.5 ||sum_k ((X W1_k)_+ w2_k)_+ w3_k - y||^2 + beta/2 sum_k (||w2_k||^2 + w3_k^2).
    """
    norm = np.sqrt(np.sum(V**2, axis=(2, 3)))[:, :, None, None]
    W = V / norm
    Z = np.einsum("nd,rkdj->rnkj", X, W)
    H = _relu(Z)
    pre = np.einsum("rnkj,rkj->rnk", H, w2)
    G = _relu(pre)
    r = np.einsum("rnk,rk->rn", G, w3) - y
    value = 0.5 * np.sum(r**2, axis=1) + 0.5 * beta * (
        np.sum(w2**2, axis=(1, 2)) + np.sum(w3**2, axis=1)
    )
    grad_w3 = np.einsum("rnk,rn->rk", G, r) + beta * w3
    dpre = r[:, :, None] * w3[:, None, :] * (pre > 0)
    grad_w2 = np.einsum("rnkj,rnk->rkj", H, dpre) + beta * w2
    dZ = dpre[..., None] * w2[:, None] * (Z > 0)
    dW = np.einsum("nd,rnkj->rkdj", X, dZ)
    # through the normalisation: d(V/|V|) = (I - W W^T) dV / |V|
    grad_V = (dW - W * np.sum(W * dW, axis=(2, 3))[:, :, None, None]) / norm
    return value, (grad_V, grad_w2, grad_w3)


def _adam(value_and_grad, params, steps, lr):
    """Adam with cosine step decay; returns the final values and the lowest value seen
    at any iterate, per restart."""
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    lowest = np.inf
    for it in range(steps):
        value, grads = value_and_grad(*params)
        lowest = np.minimum(lowest, value)
        step = lr * 0.5 * (1.0 + np.cos(np.pi * it / steps))
        for p, g, m_i, v_i in zip(params, grads, m, v, strict=True):
            m_i *= 0.9
            m_i += 0.1 * g
            v_i *= 0.999
            v_i += 0.001 * g * g
            p -= (
                step
                * (m_i / (1 - 0.9 ** (it + 1)))
                / (np.sqrt(v_i / (1 - 0.999 ** (it + 1))) + 1e-12)
            )
    final, _ = value_and_grad(*params)
    return final, np.minimum(lowest, final)


def _init(depth, X, restarts, K, rng):
    d = X.shape[1]
    if depth == 2:
        return [rng.standard_normal((restarts, d, K)), rng.standard_normal((restarts, K))]
    return [
        rng.standard_normal((restarts, K, d, 2)),
        rng.standard_normal((restarts, K, 2)),
        rng.standard_normal((restarts, K)),
    ]


def _value_and_grad(depth, X, y, beta):
    f = _two_layer_value_and_grad if depth == 2 else _three_layer_value_and_grad
    return lambda *params: f(X, y, beta, *params)


@pytest.mark.parametrize("depth", [2, 3])
def test_hand_gradients_match_finite_differences(depth, tiny_two_layer, tiny_three_layer):
    X, y, _ = tiny_two_layer if depth == 2 else tiny_three_layer
    rng = np.random.default_rng(0)
    params = _init(depth, X, restarts=2, K=3, rng=rng)
    f = _value_and_grad(depth, X, y, beta=0.3)
    _, grads = f(*params)
    h = 1e-6
    for p, g in zip(params, grads, strict=True):
        for idx in zip(*(rng.integers(0, s, size=6) for s in p.shape), strict=True):
            old = p[idx]
            p[idx] = old + h
            plus = f(*params)[0][idx[0]]
            p[idx] = old - h
            minus = f(*params)[0][idx[0]]
            p[idx] = old
            assert (plus - minus) / (2 * h) == pytest.approx(g[idx], rel=1e-5, abs=1e-6)


@pytest.mark.parametrize(("depth", "Ks"), [(2, (1, 2, 4, 8, 16)), (3, (1, 2, 4, 8))])
def test_random_restarts_never_beat_the_certified_optimum(depth, Ks, solved):
    frac = FRACTIONS[depth][0]
    X, y, prob, res = solved[depth, frac]
    beta = prob.beta
    lower = res.dual_bound
    # the dual bound is rigorous (a scaled dual-feasible point, §6); its only error is
    # floating-point rounding, far below 1e-10 relative
    tiny = 1e-10 * lower
    f = _value_and_grad(depth, X, y, beta)
    rng = np.random.default_rng(2024)
    best = {}
    for K in Ks:
        params = _init(depth, X, restarts=32, K=K, rng=rng)
        final, lowest = _adam(f, params, steps=3000, lr=0.02)
        assert np.all(lowest >= lower - tiny), (K, lowest.min() - lower)
        best[K] = final.min()
        # the library's network class evaluates the same objective
        r = int(np.argmin(final))
        if depth == 2:
            net = ar.TwoLayerReLUNetwork(W1=params[0][r], w2=params[1][r])
        else:
            V = params[0][r]
            W1 = V / np.linalg.norm(V, axis=(1, 2))[:, None, None]
            net = ar.ThreeLayerReLUNetwork(W1=W1, w2=params[1][r], w3=params[2][r])
        assert net.objective(X, y, beta) == pytest.approx(final[r], rel=1e-12)
    # GD does optimise: with enough sub-networks the best restart reaches the optimum
    # (observed: within 1e-4 relative at depth 2 for K >= 4, 1e-9 at depth 3 for K >= 2)
    assert best[max(Ks)] <= lower * (1 + 2e-2), best
    assert min(best[K] for K in Ks if K >= 4) <= lower * (1 + 1e-3), best
    assert min(best.values()) >= lower - tiny


# ------------------------------------------------------ 5. width 1 is the two-layer net
def test_three_layer_width_one_equals_two_layer(tiny_two_layer):
    X, y, arr2 = tiny_two_layer
    arr3 = ar.enumerate_arrangements(X, depth=3, width=1)
    assert arr3.n_blocks == arr2.n_blocks  # one second-layer cell per first-layer cell
    prob2 = ar.ConvexReLUProblem(X, y, 1.0, arr2)
    prob3 = ar.ConvexReLUProblem(X, y, 1.0, arr3)
    assert prob3.beta_max == pytest.approx(prob2.beta_max, rel=1e-8)
    for frac in (0.05, 0.3):
        beta = frac * prob2.beta_max
        res2, res3 = _solve(prob2, beta), _solve(prob3, beta)
        assert res2.status == res3.status == "optimal"
        assert res3.objective == pytest.approx(res2.objective, rel=1e-6)
        # and each optimum is certified by the other's bound
        assert res3.dual_bound <= res2.objective * (1 + 1e-12)
        assert res2.dual_bound <= res3.objective * (1 + 1e-12)


# ------------------------------------------------------------- 6. beta >= beta_max
@pytest.mark.parametrize("depth", [2, 3])
def test_zero_network_is_optimal_exactly_from_beta_max(depth, problems):
    X, y, prob = problems[depth]
    zero_value = 0.5 * float(y @ y)
    for factor in (1.0, 1.5):
        res = _solve(prob, factor * prob.beta_max)
        # solver tolerances 1e-8 relative; the certificate at v = y is exact here
        assert res.objective == pytest.approx(zero_value, rel=1e-7)
        assert res.dual_bound == pytest.approx(zero_value, rel=1e-7)
        net = res.network()
        assert np.abs(net.predict(X)).max() <= 1e-4 * np.abs(y).max()
    # just below beta_max a non-zero network does strictly better (its objective is
    # attained by an actual network, so this is not a solver-tolerance artefact)
    beta = 0.9 * prob.beta_max
    res = _solve(prob, beta)
    net = res.network()
    assert net.objective(X, y, beta) < zero_value * (1 - 1e-5)
    assert np.abs(net.predict(X)).max() > 1e-3 * np.abs(y).max()


# ---------------------------------------------------------------- bigger variant
@pytest.mark.slow
def test_random_restarts_bigger_three_layer_case():
    X, y = tiny_data(5, 3, seed=3)
    arr = ar.enumerate_arrangements(X, depth=3, width=2)
    prob = ar.ConvexReLUProblem(X, y, 1.0, arr)
    beta = 0.03 * prob.beta_max
    res = _solve(prob, beta)
    assert res.status == "optimal"
    f = _value_and_grad(3, X, y, beta)
    rng = np.random.default_rng(5)
    best = np.inf
    for K in (1, 2, 4, 8, 16):
        params = _init(3, X, restarts=48, K=K, rng=rng)
        final, lowest = _adam(f, params, steps=4000, lr=0.02)
        assert np.all(lowest >= res.dual_bound * (1 - 1e-10))
        best = min(best, final.min())
    assert best <= res.dual_bound * (1 + 1e-3)
