"""The global solve: seeding, lifting, pricing, the global lower bound and the exact oracle.

References are independent: the program solved over every enumerated block, networks
trained from random restarts, exact per-block dual norms, brute-force maxima.
"""

import warnings

import numpy as np
import pytest
from conftest import tiny_data

import admmrelu as ar
from admmrelu.certificate import max_block_dual_norm
from admmrelu.cones import block_dual_norm
from admmrelu.lifting import lift_network
from admmrelu.nonconvex import train_network
from admmrelu.pricing import (
    ExactOracle,
    _trust_region_dual,
    ascent_pricing,
    dual_norm_upper_bound,
)


def _sine_data(n, seed):
    rng = np.random.default_rng(seed)
    X = np.hstack([rng.standard_normal((n, 2)), np.ones((n, 1))])
    y = np.sin(2 * X[:, 0]) - 0.5 * X[:, 1] + 0.1 * rng.standard_normal(n)
    return X, y


def _beta(X, y, frac, depth=2, width=None):
    arr = ar.sample_arrangements(X, 50, depth=depth, width=width, seed=0)
    return frac * ar.ConvexReLUProblem(X, y, 1.0, arr).beta_max


@pytest.fixture(scope="module")
def enumerable():
    """n=30, d=3 (with bias): every block enumerated (~900), and the optimum over them."""
    X, y = _sine_data(30, seed=0)
    beta = _beta(X, y, 0.05)
    full = ar.ConvexReLUProblem(X, y, beta, ar.enumerate_arrangements(X)).solve()
    assert full.status == "optimal"
    return X, y, beta, full


# --------------------------------------------------------------------- global solve
def test_generation_reaches_the_enumerated_optimum_with_few_blocks(enumerable):
    X, y, beta, full = enumerable
    res = ar.solve_global(X, y, beta, n_blocks=5, seed_units=5, seed=1)
    assert res.oracle == "exact" and res.globally_optimal
    tol = 1e-6 * full.objective
    assert abs(res.objective - full.objective) <= tol + full.gap + res.gap
    # the global lower bound is valid (below the enumerated optimum) and tight
    assert res.global_lower_bound <= full.objective + 1e-9 * full.objective
    assert res.objective - res.global_lower_bound <= tol
    assert res.arrangements.n_blocks < full.weights.shape[1] / 10
    net = res.network()
    assert net.objective(X, y, beta) == pytest.approx(res.objective, rel=1e-9)


def test_without_the_oracle_nothing_global_is_claimed(enumerable):
    X, y, beta, full = enumerable
    res = ar.solve_global(X, y, beta, n_blocks=5, seed_units=5, exact_oracle=False)
    assert res.oracle == "ascent" and not res.globally_optimal
    assert 0.0 <= res.global_lower_bound <= full.objective + 1e-9 * full.objective


def test_three_layer_generation_reaches_the_enumerated_optimum():
    X, y = tiny_data(7, 2, seed=3)
    arr = ar.enumerate_arrangements(X, depth=3, width=2)
    full = ar.ConvexReLUProblem(X, y, 1.0, arr)
    beta = 0.05 * full.beta_max
    full = full.with_beta(beta).solve()
    res = ar.solve_global(X, y, beta, depth=3, width=2, n_blocks=5, seed_units=3)
    assert res.globally_optimal
    assert res.objective == pytest.approx(full.objective, rel=1e-6, abs=1e-9)
    assert res.arrangements.n_blocks < arr.n_blocks


def test_lower_bound_below_every_restart_and_result_below_its_seed():
    X, y = tiny_data(200, 6, seed=4)
    beta = _beta(X, y, 0.1)
    res = ar.solve_global(X, y, beta, n_blocks=20, seed_units=30, seed_steps=200)
    assert res.oracle == "ascent"
    assert res.objective <= res.seed_objective
    assert res.global_lower_bound <= res.objective
    for seed in range(5):
        for units in (5, 40):
            net, _ = train_network(X, y, beta, n_units=units, steps=300, seed=seed)
            assert res.global_lower_bound <= net.objective(X, y, beta)


def test_a_given_seed_network_is_never_beaten_by_the_result():
    X, y = tiny_data(150, 5, seed=5)
    beta = _beta(X, y, 0.05)
    seed_net, _ = train_network(X, y, beta, n_units=60, steps=400, seed=7)
    for limits in ({}, {"time_limit": 0.05}, {"max_iter": 5, "max_rounds": 1}):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = ar.solve_global(X, y, beta, seed_network=seed_net, n_blocks=0, **limits)
        assert res.seed_objective == pytest.approx(seed_net.objective(X, y, beta))
        assert res.objective <= res.seed_objective * (1 + 1e-12)
        assert res.network().objective(X, y, beta) == pytest.approx(res.objective, rel=1e-9)


def test_time_limit_bounds_the_whole_solve():
    X, y = tiny_data(600, 12, seed=11)
    beta = _beta(X, y, 0.01)
    limit = 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = ar.solve_global(X, y, beta, time_limit=limit, seed_units=300, seed_steps=5000)
    assert res.total_time <= 3 * limit  # grace of the last certificate and of a round
    assert res.objective <= res.seed_objective
    assert res.global_lower_bound <= res.objective


def test_three_layer_global_solve_improves_on_its_seed():
    X, y = tiny_data(60, 4, seed=6)
    beta = _beta(X, y, 0.1, depth=3, width=2)
    res = ar.solve_global(
        X, y, beta, depth=3, width=2, n_blocks=10, seed_units=8, seed_steps=200, max_rounds=3
    )
    assert res.objective <= res.seed_objective
    assert res.global_lower_bound <= res.objective
    net = res.network()
    assert net.objective(X, y, beta) == pytest.approx(res.objective, rel=1e-8)
    assert np.allclose(net.first_layer_norms(), 1.0)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"exact_oracle": "yes"}, "exact_oracle"),
        ({"warm_start": None}, "warm_start"),
        ({"seed_network": ar.TwoLayerReLUNetwork(np.ones((3, 1)), np.ones(1)), "depth": 3,
          "width": 2}, "seed_network"),
        ({"n_blocks": -1}, "n_blocks"),
        ({"pricing_starts": -5}, "pricing_starts"),
        ({"blocks_per_round": 0}, "blocks_per_round"),
        ({"pricing_tol": -1e-3}, "pricing_tol"),
        ({"seed_units": 0}, "seed_units"),
        ({"time_limit": 0}, "time_limit"),
    ],
)  # fmt: skip
def test_bad_options_are_named(kwargs, match):
    X, y = tiny_data(20, 3, seed=0)
    with pytest.raises((ValueError, TypeError), match=match):
        ar.solve_global(X, y, 0.1, **kwargs)


# ---------------------------------------------------------------------------- lifting
@pytest.mark.parametrize("depth", [2, 3])
def test_lifted_network_is_feasible_and_no_worse(depth):
    X, y = tiny_data(80, 4, seed=8)
    beta = 0.3
    net, _ = train_network(X, y, beta, depth=depth, width=2, n_units=12, steps=100, seed=1)
    arr, U = lift_network(X, net)
    prob = ar.ConvexReLUProblem(X, y, beta, arr)
    assert prob.constraint_violation(U, relative=True) <= 1e-12
    np.testing.assert_allclose(prob.forward(U), net.predict(X), rtol=1e-10, atol=1e-10)
    assert prob.objective(U) <= net.objective(X, y, beta) * (1 + 1e-12)
    # Proposition 1 maps the point back to a network of the same objective
    back = ar.recover_network(U, arr.signs, depth)
    assert back.objective(X, y, beta) == pytest.approx(prob.objective(U), rel=1e-10)


# ---------------------------------------------------------------------------- pricing
def test_priced_blocks_are_violated_by_their_exact_dual_norm():
    X, y = _sine_data(60, seed=2)
    arr = ar.sample_arrangements(X, 4, seed=0)
    prob = ar.ConvexReLUProblem(X, y, 1.0, arr)
    prob = prob.with_beta(0.05 * prob.beta_max)
    v = y - prob.forward(prob.solve().weights)
    found = ascent_pricing(X, v, prob.beta, 2, 1, current=arr, rng=0)
    assert found.arrangements is not None
    new = ar.ConvexReLUProblem(X, y, prob.beta, found.arrangements)
    Z = new.adjoint(v)
    exact = np.array(
        [max(block_dual_norm(new.polar_generators(t), Z[c, t]) for c in (0, 1))
         for t in range(new.n_blocks)]
    )  # fmt: skip
    assert np.all(exact >= found.ratios * prob.beta * (1 - 1e-9))
    assert np.all(found.ratios > 1)


@pytest.mark.parametrize("seed", range(4))
def test_dual_norm_upper_bound_exceeds_the_exact_maximum(seed):
    X, _ = _sine_data(25, seed=seed)
    oracle = ExactOracle(X, 2, 1, 5000)
    rng = np.random.default_rng(seed)
    for _ in range(3):
        v = rng.standard_normal(X.shape[0])
        gamma = max_block_dual_norm(oracle.problem, v)[0]
        assert dual_norm_upper_bound(X, v, 2) >= gamma * (1 - 1e-9)
        # the oracle's maximum is the exact one
        assert oracle.price(v, 1.0)[1] == pytest.approx(gamma, rel=1e-9)
        # and the ascent's estimate lies below the exact maximum
        assert ascent_pricing(X, v, 1.0, 2, 1, rng=0).best_ratio <= gamma * (1 + 1e-9)


def test_three_layer_upper_bound_exceeds_ascent_values():
    X, y = tiny_data(40, 3, seed=9)
    rng = np.random.default_rng(0)
    for _ in range(3):
        v = rng.standard_normal(40)
        found = ascent_pricing(X, v, 1.0, 3, 2, n_starts=512, rng=1)
        assert dual_norm_upper_bound(X, v, 3) >= found.best_ratio


@pytest.mark.parametrize("seed", range(5))
def test_trust_region_dual_bounds_the_maximum_from_above_and_is_tight(seed):
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((2, 2))
    M, b = A + A.T, rng.standard_normal(2)
    angles = np.linspace(0, 2 * np.pi, 20001)
    radii = np.linspace(0, 1, 201)
    H = (radii[:, None, None] * np.stack([np.cos(angles), np.sin(angles)], axis=-1)).reshape(-1, 2)
    brute = np.max(np.einsum("ki,ij,kj->k", H, M, H) + H @ b)
    bound = _trust_region_dual(M, b)
    assert brute <= bound * (1 + 1e-9) + 1e-12
    assert bound <= brute + 1e-4 * (1 + abs(brute))


# -------------------------------------------------------------------------- training
@pytest.mark.parametrize("depth", [2, 3])
def test_training_lowers_the_objective(depth):
    X, y = tiny_data(100, 4, seed=10)
    net, history = train_network(X, y, 0.1, depth=depth, width=2, n_units=10, steps=200)
    assert history[-1] < 0.5 * history[0]
    assert net.objective(X, y, 0.1) == pytest.approx(history.min(), rel=1e-9)
    if depth == 3:
        assert np.allclose(net.first_layer_norms(), 1.0)
