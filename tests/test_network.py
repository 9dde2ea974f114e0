"""Proposition 1 (formulation.md §5, §9): the network recovered from a feasible convex point.

For any cone-feasible U the recovered network must (i) be feasible for (5) (unit first
layers at depth 3), (ii) reproduce ``prob.forward(U)`` on the training X and (iii) attain
``prob.objective(U)``.  Predictions on new inputs are checked against the weights-only
formula of §5, written out here with plain numpy.

Tolerances: feasible points come from ``prob.project`` (rounding-level violations,
~1e-16 relative) or exact generator multiples; the network evaluates the same sums in a
different order, so predictions and objectives agree to ~1e-14 relative to their scale.
We use 1e-10 relative to ``max_i ||x_i|| * sum of group norms`` (the natural scale of the
predictions, which can cancel) — far below any error from a wrong sign, mask or factor.
"""

import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import admmrelu as ar
from admmrelu.network import recover_network

RTOL = 1e-10


@st.composite
def feasible_points(draw):
    """(prob, U feasible, rng): sampled blocks on random data, U projected or from generators."""
    depth = draw(st.sampled_from([2, 3]))
    width = None if depth == 2 else draw(st.integers(1, 3))
    n = draw(st.integers(2, 12))
    d = draw(st.integers(1, 4))
    P = draw(st.integers(1, 6))
    how = draw(st.sampled_from(["project", "generators"]))
    zero_fraction = draw(st.sampled_from([0.0, 0.3, 0.7]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    X = rng.standard_normal((n, d))
    y = rng.standard_normal(n)
    with warnings.catch_warnings():  # tiny data may have fewer cells than asked for
        warnings.simplefilter("ignore", UserWarning)
        arr = ar.sample_arrangements(X, P, depth=depth, width=width, seed=rng)
    prob = ar.ConvexReLUProblem(X, y, float(rng.uniform(0.01, 1.0)), arr)
    if how == "project":
        U0 = rng.standard_normal(prob.var_shape)
        U = prob.project(U0)
        # a projection onto a trivial cone {0} comes back as rounding noise (~1e-16), which
        # violates its cone by as much as its own size: the exact projection is 0
        noise = np.linalg.norm(U, axis=(2, 3)) <= 1e-9 * np.linalg.norm(U0, axis=(2, 3))
        U[noise] = 0.0
    else:
        coef = rng.exponential(size=(2, arr.n_blocks, 1, 1))
        U = coef * np.stack([arr.generators, arr.generators])
    U[rng.random((2, arr.n_blocks)) < zero_fraction] = 0.0
    return prob, U, rng


def pred_scale(prob, U):
    return np.linalg.norm(prob.X, axis=1).max() * np.linalg.norm(U, axis=3).sum() + 1e-300


def formula_predict(U, signs, Xnew):
    """§5: y(x) = sum_t (sum_j s_j (x^T w_tj)_+)_+ - (sum_j s_j (x^T w'_tj)_+)_+ (depth 3);
    depth 2 is the same with m1 = 1, s = +1 (the outer ReLU is then the identity)."""
    out = np.zeros(Xnew.shape[0])
    for c, sign in ((0, 1.0), (1, -1.0)):
        for t in range(U.shape[1]):
            inner = sum(signs[t, j] * np.maximum(Xnew @ U[c, t, j], 0) for j in range(U.shape[2]))
            out += sign * np.maximum(inner, 0)
    return out


@given(feasible_points())
def test_recovered_network_reproduces_convex_point(case):
    prob, U, rng = case
    assert prob.constraint_violation(U) <= 1e-12 * pred_scale(prob, U)
    net = recover_network(U, prob.arrangements.signs, prob.depth)
    assert net.depth == prob.depth
    nonzero = np.linalg.norm(U, axis=3).sum(axis=2) > 0  # (2, P) blocks
    scale = pred_scale(prob, U)
    if prob.depth == 3:
        assert isinstance(net, ar.ThreeLayerReLUNetwork)
        assert net.n_subnetworks == nonzero.sum()
        # problem (5) holds the first layer on the unit sphere
        np.testing.assert_allclose(net.first_layer_norms(), 1.0, rtol=1e-12)
    else:
        assert isinstance(net, ar.TwoLayerReLUNetwork)
        assert net.n_neurons == nonzero.sum()
    np.testing.assert_allclose(net.predict(prob.X), prob.forward(U), rtol=0, atol=RTOL * scale)
    obj = prob.objective(U)
    loss_scale = 0.5 * (scale + np.linalg.norm(prob.y)) ** 2 * prob.n_samples
    assert abs(net.objective(prob.X, prob.y, prob.beta) - obj) <= RTOL * (
        loss_scale + prob.beta * prob.regularizer(U)
    )
    # weights only: new inputs follow the formula of §5 (no training masks involved)
    Xnew = 2.0 * rng.standard_normal((7, prob.n_features))
    new_scale = np.linalg.norm(Xnew, axis=1).max() * np.linalg.norm(U, axis=3).sum() + 1e-300
    expected = formula_predict(U, prob.arrangements.signs, Xnew)
    np.testing.assert_allclose(net.predict(Xnew), expected, rtol=0, atol=RTOL * new_scale)


@given(feasible_points())
def test_network_objective_matches_weight_decay_formula(case):
    """Depth 2: 0.5||f - y||^2 + beta/2 (||W1||_F^2 + ||w2||^2); depth 3: objective (5)."""
    prob, U, _ = case
    net = recover_network(U, prob.arrangements.signs, prob.depth)
    f = net.predict(prob.X)
    if prob.depth == 2:
        penalty = np.sum(net.W1**2) + np.sum(net.w2**2)
    else:
        penalty = np.sum(net.w2**2) + np.sum(net.w3**2)
    expected = 0.5 * np.sum((f - prob.y) ** 2) + 0.5 * prob.beta * penalty
    assert net.objective(prob.X, prob.y, prob.beta) == pytest.approx(expected, rel=1e-12)
    # and the penalty equals beta * ||U||_{2,1} (AM-GM is tight for the map)
    assert 0.5 * penalty == pytest.approx(prob.regularizer(U), rel=1e-12, abs=1e-300)


def test_two_layer_map_is_sqrt_scaling():
    """u = v / sqrt||v||, alpha = +sqrt||v|| for w_t and -sqrt||w'_t|| for w'_t (§9)."""
    rng = np.random.default_rng(0)
    U = rng.standard_normal((2, 5, 1, 3))
    U[0, 1] = 0.0
    U[1, 3] = 0.0
    net = recover_network(U, np.ones((5, 1)), depth=2)
    assert net.W1.shape == (3, 8) and net.w2.shape == (8,)
    expected = []
    for c, sign in ((0, 1.0), (1, -1.0)):
        for t in range(5):
            v = U[c, t, 0]
            if np.linalg.norm(v) > 0:
                root = np.sqrt(np.linalg.norm(v))
                expected.append((v / root, sign * root))
    matched = set()
    for u, alpha in expected:
        hits = [
            k
            for k in range(net.n_neurons)
            if np.allclose(net.W1[:, k], u, rtol=1e-13, atol=0)
            and net.w2[k] == pytest.approx(alpha)
        ]
        assert len(hits) == 1
        matched.add(hits[0])
    assert len(matched) == len(expected) == net.n_neurons


def test_three_layer_map_formula():
    """W1_kj = w_tj / sqrt(c_j S), w2_kj = s_j sqrt(c_j), w3_k = +-sqrt(S) (§5)."""
    rng = np.random.default_rng(1)
    U = rng.standard_normal((2, 1, 3, 4))
    U[1, 0, 1] = 0.0  # a zero neuron inside a non-zero block: W1 column 0, w2 entry 0
    signs = np.array([[1.0, -1.0, 1.0]])
    net = recover_network(U, signs, depth=3)
    assert net.n_subnetworks == 2
    for k, (c, sign) in enumerate(((0, 1.0), (1, -1.0))):
        cj = np.linalg.norm(U[c, 0], axis=1)
        S = cj.sum()
        assert net.w3[k] == pytest.approx(sign * np.sqrt(S), rel=1e-14)
        np.testing.assert_allclose(net.w2[k], signs[0] * np.sqrt(cj), rtol=1e-14)
        for j in range(3):
            want = U[c, 0, j] / np.sqrt(cj[j] * S) if cj[j] > 0 else np.zeros(4)
            np.testing.assert_allclose(net.W1[k][:, j], want, rtol=1e-13, atol=0)
    np.testing.assert_allclose(net.first_layer_norms(), 1.0, rtol=1e-14)


@pytest.mark.parametrize("depth, width", [(2, None), (3, 2)])
def test_tol_drops_small_blocks(depth, width):
    rng = np.random.default_rng(3)
    X = rng.standard_normal((15, 3))
    arr = ar.sample_arrangements(X, 6, depth=depth, width=width, seed=4)
    prob = ar.ConvexReLUProblem(X, rng.standard_normal(15), 0.1, arr)
    U = np.stack([arr.generators, arr.generators]) * rng.uniform(1, 2, (2, arr.n_blocks, 1, 1))
    tiny = np.zeros((2, arr.n_blocks), dtype=bool)
    tiny[0, 1] = tiny[1, 4] = tiny[1, 0] = True
    U[tiny] *= 1e-12 / np.linalg.norm(U[tiny], axis=(1, 2), keepdims=True).max()
    tol = 1e-9
    full = recover_network(U, arr.signs, depth)
    dropped = recover_network(U, arr.signs, depth, tol=tol)
    n_units = (lambda net: net.n_neurons) if depth == 2 else (lambda net: net.n_subnetworks)
    assert n_units(full) == 2 * arr.n_blocks
    assert n_units(dropped) == 2 * arr.n_blocks - tiny.sum()
    # the dropped blocks contribute at most their norm times max ||x_i|| to each prediction
    bound = np.linalg.norm(X, axis=1).max() * np.linalg.norm(U[tiny], axis=2).sum()
    assert np.abs(dropped.predict(X) - full.predict(X)).max() <= bound * (1 + 1e-9)
    kept = U.copy()
    kept[tiny] = 0.0
    np.testing.assert_allclose(
        dropped.predict(X), prob.forward(kept), rtol=0, atol=RTOL * pred_scale(prob, U)
    )


def test_solve_result_network_attains_objective(tiny_two_layer, tiny_three_layer):
    for X, y, arr in (tiny_two_layer, tiny_three_layer):
        prob = ar.ConvexReLUProblem(X, y, 0.05, arr)
        res = prob.solve(solver="cvxpy")
        net = res.network()
        scale = pred_scale(prob, res.weights)
        np.testing.assert_allclose(net.predict(X), prob.forward(res.weights), atol=RTOL * scale)
        assert net.objective(X, y, prob.beta) == pytest.approx(res.objective, rel=RTOL)
        # the certificate bounds the recovered network from below (weak duality)
        assert res.dual_bound <= net.objective(X, y, prob.beta) * (1 + 1e-12)


@pytest.mark.parametrize("depth", [2, 3])
def test_network_rejects_wrong_number_of_features(depth):
    rng = np.random.default_rng(0)
    U = rng.standard_normal((2, 3, 2 if depth == 3 else 1, 4))
    signs = np.ones((3, U.shape[2]))
    net = recover_network(U, signs, depth)
    X_bad = rng.standard_normal((5, 3))
    with pytest.raises(ValueError, match=r"X has 3 features .* trained on 4"):
        net.predict(X_bad)
    with pytest.raises(ValueError, match=r"bias column"):
        net.objective(X_bad, np.zeros(5), 0.1)
    with pytest.raises(ValueError, match=r"X must be a 2-D array"):
        net.predict(rng.standard_normal(4))
