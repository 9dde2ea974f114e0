"""ConvexReLURegressor: scikit-learn compliance and agreement with the package's own pipeline.

Reference computations are independent of the estimator: the ones column, the blocks
(``sample_arrangements`` with the same seed), the convex program (``ConvexReLUProblem`` at
``n * beta``, solved by cvxpy + Clarabel) and the network's output (plain numpy ReLUs).

Tolerances: a solve with status ``optimal`` has a certified gap (objective minus a rigorous
lower bound) of at most ~1e-6 of its objective (ADMM: ``eps_rel=1e-6``; cvxpy:
``gap_tol=1e-6``).  Two such solves of the same program therefore have objectives within
the sum of their two gaps, and each objective is >= the other's lower bound (up to
rounding, 1e-12 relative).  Predictions recomputed from the weights differ only by the
order of the sums: 1e-10 relative to the scale of the outputs.
"""

import doctest
import pickle
import warnings

import numpy as np
import pytest
from admmrelu.kernels import gpu_unavailable_reason
from hypothesis import given
from hypothesis import strategies as st
from sklearn.base import clone
from sklearn.exceptions import DataConversionWarning, NotFittedError
from sklearn.utils.estimator_checks import parametrize_with_checks

import admmrelu as ar
import admmrelu.estimators
from admmrelu.estimators import ConvexReLURegressor
from admmrelu.exceptions import ConvergenceWarning

ROUND = 1e-12  # relative rounding allowance on an objective or a bound


def relu_data(n=30, d=2, seed=0, offset=0.0):
    """X ~ N(0, 1) without a bias column; y = offset + a small ReLU network + noise."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    y = offset + np.maximum(X[:, 0] - 0.3, 0) - 0.5 * np.maximum(X[:, -1], 0)
    return X, y + 0.05 * rng.standard_normal(n)


def with_ones(X):
    return np.hstack([X, np.ones((X.shape[0], 1))])


@pytest.fixture(scope="module")
def data():
    return relu_data()


@pytest.fixture(scope="module")
def fitted(data):
    X, y = data
    return ConvexReLURegressor(arrangements="sample", n_blocks=20, beta=1e-3, random_state=3).fit(
        X, y
    )


# ---------------------------------------------------------------- scikit-learn
@parametrize_with_checks(
    [
        ConvexReLURegressor(n_blocks=20, random_state=0, solver_options={"max_rounds": 2}),
        ConvexReLURegressor(arrangements="sample", n_blocks=20, random_state=0),
    ]
)
def test_sklearn_compatible(estimator, check):
    with warnings.catch_warnings():  # tiny check data has fewer cells than n_blocks
        warnings.filterwarnings("ignore", "found only", UserWarning)
        check(estimator)


@pytest.mark.slow
@parametrize_with_checks(
    [
        ConvexReLURegressor(
            depth=3, width=2, n_blocks=8, random_state=0, solver_options={"max_rounds": 1}
        )
    ]
)
def test_sklearn_compatible_three_layer(estimator, check):
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "found only", UserWarning)
        check(estimator)


def test_get_set_params_and_clone_round_trip():
    options = {"max_iter": 500}
    est = ConvexReLURegressor(depth=3, width=2, n_blocks=7, beta=0.5, solver_options=options)
    params = est.get_params()
    assert params["depth"] == 3 and params["width"] == 2 and params["n_blocks"] == 7
    assert params["solver_options"] is options
    twin = clone(est)
    assert twin is not est and twin.get_params()["beta"] == 0.5
    assert twin.get_params().keys() == params.keys()
    assert twin.set_params(depth=2, width=1) is twin
    assert (twin.depth, twin.width) == (2, 1) and (est.depth, est.width) == (3, 2)
    with pytest.raises(ValueError, match="Invalid parameter"):
        est.set_params(alpha=1.0)


def test_init_stores_parameters_unchecked():
    est = ConvexReLURegressor(depth=4, width=-1, beta=-1.0, device="tpu", solver="x")
    assert (est.depth, est.width, est.beta, est.device) == (4, -1, -1.0, "tpu")


def test_predict_before_fit_raises():
    with pytest.raises(NotFittedError):
        ConvexReLURegressor().predict(np.zeros((2, 2)))


# ------------------------------------------------------ agreement with the package
def test_blocks_are_those_of_sample_arrangements(data, fitted):
    X, _ = data
    ref = ar.sample_arrangements(with_ones(X), 20, depth=2, seed=3)
    np.testing.assert_array_equal(fitted.arrangements_.masks1, ref.masks1)
    np.testing.assert_array_equal(fitted.arrangements_.generators, ref.generators)


def test_objective_matches_cvxpy_reference_on_same_blocks(data, fitted):
    X, y = data
    n = X.shape[0]
    assert fitted.problem_beta_ == pytest.approx(n * 1e-3, rel=1e-15)
    problem = ar.ConvexReLUProblem(with_ones(X), y, n * 1e-3, fitted.arrangements_)
    ref = problem.solve(solver="cvxpy")
    res = fitted.result_
    assert ref.status == "optimal" and res.status == "optimal"
    tol = ROUND * ref.objective
    assert res.objective >= ref.dual_bound - tol  # neither beats the other's lower bound
    assert ref.objective >= res.dual_bound - tol
    assert abs(res.objective - ref.objective) <= res.gap + ref.gap + tol
    # the estimator's objective is the package's divided by n
    assert fitted.objective_ == pytest.approx(res.objective / n, rel=1e-15)
    assert fitted.dual_gap_ == pytest.approx(res.gap / n, rel=1e-15)
    # and the weights attain it: the convex objective of result_.weights, recomputed
    assert problem.objective(res.weights) == pytest.approx(res.objective, rel=1e-10)


def test_objective_is_the_mean_loss_network_objective(data, fitted):
    """objective_ = (1/2n)||f(X) - y||^2 + beta/2 (||W1||^2 + ||w2||^2), by hand."""
    X, y = data
    W1, w2 = fitted.network_.W1, fitted.network_.w2
    pred = np.maximum(with_ones(X) @ W1, 0) @ w2
    by_hand = 0.5 * np.mean((pred - y) ** 2) + 0.5e-3 * (np.sum(W1**2) + np.sum(w2**2))
    assert fitted.objective_ == pytest.approx(by_hand, rel=1e-10)


def test_cvxpy_solver_gives_the_same_optimum(data, fitted):
    X, y = data
    est = clone(fitted).set_params(solver="cvxpy").fit(X, y)
    assert est.result_.solver.startswith("cvxpy")
    a, b = est.result_, fitted.result_
    assert abs(a.objective - b.objective) <= a.gap + b.gap + ROUND * a.objective


def test_predict_is_the_network_on_augmented_input(data, fitted):
    X, _ = data
    X_new = np.random.default_rng(9).standard_normal((11, X.shape[1]))
    pred = fitted.predict(X_new)
    np.testing.assert_array_equal(pred, fitted.network_.predict(with_ones(X_new)))
    W1, w2 = fitted.network_.W1, fitted.network_.w2
    by_hand = np.maximum(with_ones(X_new) @ W1, 0) @ w2
    scale = np.abs(with_ones(X_new)).max() * np.abs(W1).sum() * np.abs(w2).max()
    np.testing.assert_allclose(pred, by_hand, rtol=0, atol=1e-10 * scale)


def test_score_is_r2(data, fitted):
    X, y = data
    pred = fitted.predict(X)
    r2 = 1 - np.sum((y - pred) ** 2) / np.sum((y - y.mean()) ** 2)
    assert fitted.score(X, y) == pytest.approx(r2, rel=1e-12)
    assert r2 > 0.8  # a ReLU target with little noise is fitted well


def test_three_layer_fit(data):
    X, y = data
    est = ConvexReLURegressor(depth=3, width=2, n_blocks=10, beta=1e-3, random_state=0)
    est.fit(X, y)
    net = est.network_
    assert isinstance(net, ar.ThreeLayerReLUNetwork) and net.W1.shape[1:] == (3, 2)
    np.testing.assert_allclose(net.first_layer_norms(), 1.0, rtol=1e-12)
    assert est.result_.objective == pytest.approx(
        net.objective(with_ones(X), y, est.problem_beta_), rel=1e-10
    )


def test_exact_arrangements_match_enumeration():
    X, y = relu_data(n=8, d=1, seed=4)
    est = ConvexReLURegressor(arrangements="exact", beta=1e-2).fit(X, y)
    ref_arr = ar.enumerate_arrangements(with_ones(X), depth=2)
    assert est.arrangements_.exact and est.result_.arrangements_exact
    assert est.arrangements_.n_blocks == ref_arr.n_blocks
    ref = ar.ConvexReLUProblem(with_ones(X), y, 8 * 1e-2, ref_arr).solve(solver="cvxpy")
    res = est.result_
    assert abs(res.objective - ref.objective) <= res.gap + ref.gap + ROUND * ref.objective


def test_beta_is_per_sample(data):
    """Mean-loss convention: duplicating every sample leaves the problem unchanged.

    With the same seed the duplicated data gives the same blocks (the draws do not depend
    on n), and (1/2n) loss + beta * penalty is the same function, so the certified optima
    agree; under the package's sum-loss convention the loss would double.
    """
    X, y = relu_data(n=20, seed=5)
    est = ConvexReLURegressor(arrangements="sample", n_blocks=15, beta=1e-2, random_state=1)
    a = clone(est).fit(X, y)
    b = clone(est).fit(np.vstack([X, X]), np.concatenate([y, y]))
    assert b.problem_beta_ == pytest.approx(2 * a.problem_beta_)
    assert b.arrangements_.n_blocks == a.arrangements_.n_blocks
    gaps = a.dual_gap_ + b.dual_gap_ + ROUND * a.objective_
    assert abs(a.objective_ - b.objective_) <= gaps
    sum_loss = a.result_.objective  # the package's objective: n times the mean one
    assert sum_loss == pytest.approx(20 * a.objective_, rel=1e-15)


# --------------------------------------------------------------- fit_intercept
def test_fit_intercept_false_is_positively_homogeneous(data):
    X, y = data
    est = ConvexReLURegressor(n_blocks=20, fit_intercept=False, random_state=0).fit(X, y)
    assert est.network_.W1.shape[0] == X.shape[1] and est.arrangements_.generators.shape[2] == 2
    np.testing.assert_array_equal(est.predict(np.zeros((1, 2))), [0.0])


@given(c=st.floats(0.01, 100.0), seed=st.integers(0, 1000))
def test_no_intercept_prediction_scales_with_input(c, seed):
    est = _no_intercept_estimator()
    X_new = np.random.default_rng(seed).standard_normal((5, 2))
    scale = np.abs(est.predict(X_new)).max() + 1e-300
    np.testing.assert_allclose(
        est.predict(c * X_new), c * est.predict(X_new), atol=1e-12 * c * scale
    )


_CACHE = {}


def _no_intercept_estimator():
    if "est" not in _CACHE:
        X, y = relu_data()
        _CACHE["est"] = ConvexReLURegressor(n_blocks=20, fit_intercept=False, random_state=0)
        _CACHE["est"].fit(X, y)
    return _CACHE["est"]


def test_fit_intercept_fits_an_offset():
    X, y = relu_data(offset=3.0, seed=2)
    with_bias = ConvexReLURegressor(n_blocks=20, random_state=0).fit(X, y)
    without = ConvexReLURegressor(n_blocks=20, fit_intercept=False, random_state=0).fit(X, y)
    assert with_bias.network_.W1.shape[0] == X.shape[1] + 1
    assert with_bias.score(X, y) > 0.9
    assert without.score(X, y) < with_bias.score(X, y) - 0.1


# ---------------------------------------------------------------- random_state
def test_random_state_reproducible(data):
    X, y = data
    a = ConvexReLURegressor(n_blocks=15, random_state=7).fit(X, y)
    b = ConvexReLURegressor(n_blocks=15, random_state=7).fit(X, y)
    c = ConvexReLURegressor(n_blocks=15, random_state=8).fit(X, y)
    np.testing.assert_array_equal(a.arrangements_.masks1, b.arrangements_.masks1)
    np.testing.assert_array_equal(a.predict(X), b.predict(X))
    assert not np.array_equal(a.arrangements_.generators, c.arrangements_.generators)
    r1 = ConvexReLURegressor(n_blocks=15, random_state=np.random.RandomState(0)).fit(X, y)
    r2 = ConvexReLURegressor(n_blocks=15, random_state=np.random.RandomState(0)).fit(X, y)
    np.testing.assert_array_equal(r1.predict(X), r2.predict(X))


def test_pickle_round_trip(data, fitted):
    X, _ = data
    again = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_array_equal(again.predict(X), fitted.predict(X))


# -------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"depth": 4}, "depth must be 2 or 3"),
        ({"depth": 2.0}, "depth must be 2 or 3"),
        ({"width": 2}, "width=2 needs depth=3"),
        ({"depth": 3, "width": 0}, "width must be an integer >= 1"),
        ({"n_blocks": 0}, "n_blocks must be an integer >= 1"),
        ({"beta": -1.0}, "beta must be > 0"),
        ({"beta": 0}, "beta must be > 0"),
        ({"beta": float("nan")}, "beta must be a finite number"),
        ({"beta": "1"}, "beta must be a finite number"),
        ({"fit_intercept": "yes"}, "fit_intercept must be True or False"),
        ({"arrangements": "all"}, "arrangements must be 'generate', 'sample' or 'exact'"),
        ({"solver": "cvxpy"}, "arrangements='generate' needs solver='admm'"),
        ({"random_state": "seed"}, "random_state must be None"),
        ({"solver": "sgd"}, "solver must be 'admm' or 'cvxpy'"),
        ({"device": "tpu"}, "device must be 'cpu', 'gpu' or 'auto'"),
        ({"device": "gpu", "solver": "cvxpy"}, "device='gpu' needs solver='admm'"),
        ({"solver_options": [1]}, "solver_options must be a dict"),
        ({"solver_options": {"device": "cpu"}}, r"solver_options\['device'\].*parameter"),
        ({"solver_options": {"verbose": True}}, r"solver_options\['verbose'\]"),
    ],
)
def test_bad_parameter_names_it(data, params, match):
    X, y = data
    est = ConvexReLURegressor(**params)
    with pytest.raises(ValueError, match=match):
        est.fit(X, y)
    for name, value in params.items():  # fit leaves the parameters as given
        assert est.get_params()[name] is value


def test_unknown_solver_option_is_the_solvers_error(data):
    X, y = data
    with pytest.raises(TypeError, match="unknown ADMM option"):
        ConvexReLURegressor(n_blocks=5, solver_options={"tolerance": 1e-3}).fit(X, y)


@pytest.mark.parametrize(
    ("X", "y", "match"),
    [
        ([[0.0, np.nan], [1.0, 2.0]], [1.0, 2.0], "NaN"),
        ([[0.0, np.inf], [1.0, 2.0]], [1.0, 2.0], "infinity"),
        ([[0.0, 1.0], [1.0, 2.0]], [1.0, np.nan], "NaN"),
        ([[0.0, 1.0], [1.0, 2.0]], [1.0, 2.0, 3.0], "inconsistent numbers of samples"),
        ([0.0, 1.0, 2.0], [1.0, 2.0, 3.0], "Expected 2D array"),
        (np.zeros((4, 2)), np.zeros((4, 2)), "MultiOutputRegressor"),
    ],
)
def test_bad_data_raises_value_error(X, y, match):
    with pytest.raises(ValueError, match=match):
        ConvexReLURegressor(n_blocks=5).fit(X, y)


def test_predict_checks_features(fitted):
    with pytest.raises(ValueError, match="features"):
        fitted.predict(np.zeros((3, 5)))


def test_column_vector_y_is_accepted_with_a_warning(data):
    X, y = data
    est = ConvexReLURegressor(n_blocks=5, random_state=0)
    with pytest.warns(DataConversionWarning):
        est.fit(X, y[:, None])
    ref = clone(est).fit(X, y)
    np.testing.assert_array_equal(est.predict(X), ref.predict(X))


# -------------------------------------------------------- solver and device
def test_convergence_warning_when_not_optimal(data):
    X, y = data
    est = ConvexReLURegressor(
        n_blocks=20, random_state=0, solver_options={"max_iter": 1, "polish": False}
    )
    with pytest.warns(ConvergenceWarning, match="status 'max_iter_reached'.*max_iter"):
        est.fit(X, y)
    assert est.result_.status == "max_iter_reached"
    assert est.predict(X).shape == (30,)  # the returned point is still a network


def test_no_warning_and_options_untouched_when_optimal(data):
    X, y = data
    options = {"eps_rel": 1e-7}
    est = ConvexReLURegressor(n_blocks=10, random_state=0, solver_options=options)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        est.fit(X, y)
    assert options == {"eps_rel": 1e-7} and est.result_.status == "optimal"
    assert est.n_iter_ == est.result_.iterations


def test_verbose_prints_the_solver_log(data, capsys):
    X, y = data
    ConvexReLURegressor(arrangements="sample", n_blocks=5, random_state=0, verbose=True).fit(X, y)
    assert "iter" in capsys.readouterr().out
    ConvexReLURegressor(n_blocks=5, random_state=0, verbose=True).fit(X, y)
    assert "round" in capsys.readouterr().out  # the global solve prints its rounds


def test_device_cpu_and_auto_agree(data):
    X, y = data
    cpu = ConvexReLURegressor(n_blocks=10, random_state=0, device="cpu").fit(X, y)
    auto = ConvexReLURegressor(n_blocks=10, random_state=0, device="auto").fit(X, y)
    a, b = cpu.result_, auto.result_
    assert abs(a.objective - b.objective) <= a.gap + b.gap + ROUND * a.objective


@pytest.mark.skipif(gpu_unavailable_reason() is None, reason="a usable GPU is present")
def test_device_gpu_without_gpu_raises_the_backend_error(data):
    X, y = data
    with pytest.raises(RuntimeError, match="device='gpu' is not usable here"):
        ConvexReLURegressor(n_blocks=5, device="gpu").fit(X, y)


@pytest.mark.gpu
@pytest.mark.skipif(gpu_unavailable_reason() is not None, reason="no usable GPU")
def test_device_gpu_matches_cpu(data):
    X, y = data
    cpu = ConvexReLURegressor(n_blocks=20, random_state=0).fit(X, y)
    gpu = ConvexReLURegressor(n_blocks=20, random_state=0, device="gpu").fit(X, y)
    a, b = cpu.result_, gpu.result_
    assert abs(a.objective - b.objective) <= a.gap + b.gap + 1e-9 * a.objective


def test_docstring_example():
    failures, _ = doctest.testmod(admmrelu.estimators, verbose=False)
    assert failures == 0
