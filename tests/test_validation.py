"""Bad input raises TypeError/ValueError whose message names the argument and says what to do.

Each case asserts the exception type, that the message contains the argument's name and
that it contains an instruction (``must``, ``use``, ``build``, ``convert``, ...), so a bare
"invalid input" fails.  The last tests check that no entry point mutates its inputs.
"""

import re

import numpy as np
import pytest

import admmrelu as ar

#: words that tell the user what to do (or what is required)
ADVICE = re.compile(
    r"\b(must|need|needs|use|build|convert|pass|remove|impute|reshape|raise|sample|"
    r"enumerate|one of|expected|supported)\b",
    re.IGNORECASE,
)


def check_message(excinfo, *names):
    msg = str(excinfo.value)
    for name in names:
        assert name in msg, f"message does not name {name!r}: {msg}"
    assert ADVICE.search(msg), f"message does not say what to do: {msg}"


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    X = np.hstack([rng.standard_normal((10, 2)), np.ones((10, 1))])
    y = rng.standard_normal(10)
    arr = ar.sample_arrangements(X, 5, seed=0)
    arr3 = ar.sample_arrangements(X, 5, depth=3, width=2, seed=0)
    return X, y, arr, arr3


# ----------------------------------------------------------------- X and y
def test_mismatched_shapes_of_X_and_y(data):
    X, y, arr, _ = data
    with pytest.raises(ValueError) as excinfo:
        ar.ConvexReLUProblem(X, y[:-1], 0.1, arr)
    check_message(excinfo, "X", "y")
    assert "10" in str(excinfo.value) and "(9,)" in str(excinfo.value)


def test_vector_y_is_rejected_with_advice(data):
    X, y, arr, _ = data
    with pytest.raises(ValueError) as excinfo:
        ar.ConvexReLUProblem(X, np.stack([y, y], axis=1), 0.1, arr)
    check_message(excinfo, "y")
    # a single column is fine and equals the 1-D problem
    p1 = ar.ConvexReLUProblem(X, y[:, None], 0.1, arr)
    np.testing.assert_array_equal(p1.y, y)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("which", ["X", "y"])
def test_non_finite_values(data, bad, which):
    X, y, arr, _ = data
    X, y = X.copy(), y.copy()
    if which == "X":
        X[3, 1] = bad
    else:
        y[2] = bad
    with pytest.raises(ValueError) as excinfo:
        ar.ConvexReLUProblem(X, y, 0.1, arr)
    check_message(excinfo, which)
    assert "NaN or infinite" in str(excinfo.value)
    if which == "X":
        with pytest.raises(ValueError) as excinfo:
            ar.sample_arrangements(X, 3, seed=0)
        check_message(excinfo, "X")


def test_one_dimensional_X(data):
    _, y, arr, _ = data
    x = np.linspace(-1, 1, 10)
    with pytest.raises(ValueError) as excinfo:
        ar.ConvexReLUProblem(x, y, 0.1, arr)
    check_message(excinfo, "X", "reshape")
    for call in (
        lambda: ar.sample_arrangements(x, 3),
        lambda: ar.enumerate_arrangements(x),
        lambda: ar.estimate_n_blocks(x),
    ):
        with pytest.raises(ValueError) as excinfo:
            call()
        check_message(excinfo, "X", "2-D")


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda a: a.astype(str), id="strings"),
        pytest.param(lambda a: a.astype(object), id="object"),
        pytest.param(lambda a: a.astype(complex), id="complex"),
        pytest.param(lambda a: a > 0, id="bool"),
    ],
)
@pytest.mark.parametrize("which", ["X", "y"])
def test_wrong_dtypes(data, make, which):
    X, y, arr, _ = data
    args = {"X": X, "y": y}
    args[which] = make(args[which])
    with pytest.raises(TypeError) as excinfo:
        ar.ConvexReLUProblem(args["X"], args["y"], 0.1, arr)
    check_message(excinfo, which)
    if which == "X":
        with pytest.raises(TypeError) as excinfo:
            ar.sample_arrangements(args["X"], 3, seed=0)
        check_message(excinfo, "X")


def test_none_and_empty_X(data):
    _, y, arr, _ = data
    with pytest.raises(TypeError) as excinfo:
        ar.ConvexReLUProblem(None, y, 0.1, arr)
    check_message(excinfo, "X")
    with pytest.raises(ValueError) as excinfo:
        ar.sample_arrangements(np.zeros((0, 3)), 3)
    check_message(excinfo, "X")


def test_integer_X_is_accepted(data):
    X, y, _, _ = data
    Xi = np.round(3 * X).astype(np.int64)
    arr = ar.sample_arrangements(Xi, 4, seed=1)
    prob = ar.ConvexReLUProblem(Xi, y, 0.1, arr)
    assert prob.X.dtype == np.float64


# -------------------------------------------------------------------- beta
@pytest.mark.parametrize("beta", [0.0, -1.0, np.nan, np.inf])
def test_beta_must_be_positive_and_finite(data, beta):
    X, y, arr, _ = data
    with pytest.raises(ValueError) as excinfo:
        ar.ConvexReLUProblem(X, y, beta, arr)
    check_message(excinfo, "beta", "> 0")
    prob = ar.ConvexReLUProblem(X, y, 0.1, arr)
    with pytest.raises(ValueError) as excinfo:
        prob.with_beta(beta)
    check_message(excinfo, "beta")


@pytest.mark.parametrize("beta", ["0.1", None, True, [0.1], 1j])
def test_beta_must_be_a_number(data, beta):
    X, y, arr, _ = data
    with pytest.raises(TypeError) as excinfo:
        ar.ConvexReLUProblem(X, y, beta, arr)
    check_message(excinfo, "beta", "real number")


# ------------------------------------------------------------ arrangements
def test_empty_arrangements():
    with pytest.raises(ValueError) as excinfo:
        ar.Arrangements(masks1=np.zeros((5, 0, 1), dtype=bool), signs=np.zeros((0, 1)))
    check_message(excinfo, "arrangements", "P = 0")


def test_bad_arrangement_arrays():
    with pytest.raises(TypeError) as excinfo:
        ar.Arrangements(masks1=np.zeros((5, 2, 1)), signs=np.ones((2, 1)))
    check_message(excinfo, "masks1", "bool")
    with pytest.raises(TypeError) as excinfo:
        ar.Arrangements(masks1=np.zeros((5, 2), dtype=bool), signs=np.ones((2, 1)))
    check_message(excinfo, "masks1")
    with pytest.raises(ValueError) as excinfo:
        ar.Arrangements(masks1=np.zeros((5, 2, 1), dtype=bool), signs=np.zeros((2, 1)))
    check_message(excinfo, "signs")
    with pytest.raises(TypeError) as excinfo:
        ar.Arrangements(
            masks1=np.zeros((5, 2, 2), dtype=bool),
            signs=np.ones((2, 2)),
            masks2=np.zeros((4, 2), dtype=bool),
        )
    check_message(excinfo, "masks2")
    with pytest.raises(ValueError) as excinfo:
        ar.Arrangements(masks1=np.zeros((5, 2, 2), dtype=bool), signs=np.ones((2, 2)))
    check_message(excinfo, "masks2")
    with pytest.raises(ValueError) as excinfo:
        ar.Arrangements(
            masks1=np.zeros((5, 2, 1), dtype=bool),
            signs=np.ones((2, 1)),
            generators=np.zeros((3, 1, 4)),
        )
    check_message(excinfo, "generators")


def test_arrangements_must_be_an_arrangements_object(data):
    X, y, arr, _ = data
    with pytest.raises(TypeError) as excinfo:
        ar.ConvexReLUProblem(X, y, 0.1, arr.masks1)
    check_message(excinfo, "arrangements", "sample_arrangements")


def test_arrangements_from_another_n(data):
    X, y, arr, _ = data
    rng = np.random.default_rng(1)
    X2 = rng.standard_normal((12, 3))
    with pytest.raises(ValueError) as excinfo:
        ar.ConvexReLUProblem(X2, rng.standard_normal(12), 0.1, arr)
    check_message(excinfo, "arrangements", "X")
    assert "10" in str(excinfo.value) and "12" in str(excinfo.value)


def test_arrangements_from_another_number_of_features(data):
    X, y, arr, _ = data
    X4 = np.hstack([X, X[:, :1]])
    with pytest.raises(ValueError) as excinfo:
        ar.ConvexReLUProblem(X4, y, 0.1, arr)
    check_message(excinfo, "arrangements", "X")


@pytest.mark.parametrize("depth", [2, 3])
@pytest.mark.parametrize("other", ["negated", "fresh"])
def test_arrangements_from_same_n_but_other_data(data, depth, other):
    """Generator check: a block's generator violates its own cone on the wrong X."""
    X, y, arr2, arr3 = data
    arr = arr2 if depth == 2 else arr3
    if other == "negated":
        # every non-zero row of X g flips sign: each generator leaves its cone
        X_other = -X
    else:
        X_other = np.random.default_rng(7).standard_normal(X.shape)
    with pytest.raises(ValueError) as excinfo:
        ar.ConvexReLUProblem(X_other, y, 0.1, arr)
    check_message(excinfo, "arrangements", "X")
    assert "generator" in str(excinfo.value)
    # the arrangements of the right X pass the same check
    ar.ConvexReLUProblem(X, y, 0.1, arr)


def test_generator_check_is_skipped_without_generators(data):
    """Arrangements built by hand (generators=None) cannot be checked, and are accepted."""
    X, y, arr, _ = data
    bare = ar.Arrangements(masks1=arr.masks1, signs=arr.signs)
    ar.ConvexReLUProblem(-X, y, 0.1, bare)


# ------------------------------------------------- depth, width, n_blocks
@pytest.mark.parametrize(
    "depth, width, exc, names",
    [
        (2, 2, ValueError, ("width", "depth=3")),
        (4, None, ValueError, ("depth", "2 or 3")),
        (1, None, ValueError, ("depth",)),
        (3, 0, ValueError, ("width", ">= 1")),
        (3, -2, ValueError, ("width",)),
        (2.0, None, TypeError, ("depth", "integer")),
        (3, 1.5, TypeError, ("width", "integer")),
        ("3", 2, TypeError, ("depth",)),
    ],
)
def test_wrong_depth_width(data, depth, width, exc, names):
    X = data[0]
    for call in (
        lambda: ar.sample_arrangements(X, 3, depth=depth, width=width, seed=0),
        lambda: ar.enumerate_arrangements(X, depth=depth, width=width),
        lambda: ar.estimate_n_blocks(X, depth=depth, width=width),
    ):
        with pytest.raises(exc) as excinfo:
            call()
        check_message(excinfo, *names)


@pytest.mark.parametrize("n_blocks, exc", [(0, ValueError), (-3, ValueError), (2.5, TypeError)])
def test_bad_n_blocks(data, n_blocks, exc):
    with pytest.raises(exc) as excinfo:
        ar.sample_arrangements(data[0], n_blocks, seed=0)
    check_message(excinfo, "n_blocks")


def test_bad_max_draws(data):
    with pytest.raises(ValueError) as excinfo:
        ar.sample_arrangements(data[0], 3, seed=0, max_draws=0)
    check_message(excinfo, "max_draws")


def test_bad_enumeration_limits(data):
    for kwargs, name in (({"max_blocks": 0}, "max_blocks"), ({"max_bytes": 0}, "max_bytes")):
        with pytest.raises(ValueError) as excinfo:
            ar.enumerate_arrangements(data[0], **kwargs)
        check_message(excinfo, name)


# ----------------------------------------------------- loss and solvers
def test_unknown_loss(data):
    X, y, arr, _ = data
    with pytest.raises(ValueError) as excinfo:
        ar.ConvexReLUProblem(X, y, 0.1, arr, loss="hinge")
    check_message(excinfo, "loss", "squared")


def test_unknown_solver(data):
    X, y, arr, _ = data
    prob = ar.ConvexReLUProblem(X, y, 0.1, arr)
    with pytest.raises(ValueError) as excinfo:
        prob.solve(solver="newton")
    check_message(excinfo, "solver", "cvxpy")


def test_unknown_cvxpy_solver(data):
    X, y, arr, _ = data
    prob = ar.ConvexReLUProblem(X, y, 0.1, arr)
    with pytest.raises(ValueError) as excinfo:
        prob.solve(solver="cvxpy", cvxpy_solver="MOSEK_FAKE")
    check_message(excinfo, "cvxpy_solver", "CLARABEL")


def test_default_solver_is_the_admm(data):
    X, y, arr, _ = data
    prob = ar.ConvexReLUProblem(X, y, 0.1, arr)
    assert prob.solve(max_iter=20).solver == "admm"


# ------------------------------------------------------- operator shapes
@pytest.mark.parametrize("which", [2, 3])
def test_U_of_the_wrong_shape(data, which):
    X, y, arr2, arr3 = data
    prob = ar.ConvexReLUProblem(X, y, 0.1, arr2 if which == 2 else arr3)
    good = np.zeros(prob.var_shape)
    for bad in (good[0], good[:, :-1], np.zeros(prob.var_shape[::-1]), good.ravel()):
        for method in (
            prob.forward,
            prob.cone,
            prob.objective,
            prob.regularizer,
            prob.project,
            prob.constraint_violation,
        ):
            with pytest.raises(ValueError) as excinfo:
                method(bad)
            check_message(excinfo, "U", str(prob.var_shape))
    with pytest.raises(ValueError) as excinfo:
        prob.adjoint(np.zeros(prob.n_samples + 1))
    check_message(excinfo, "r")
    with pytest.raises(ValueError) as excinfo:
        prob.cone_adjoint(np.zeros(prob.cone_shape[1:]))
    check_message(excinfo, "L", str(prob.cone_shape))


@pytest.mark.parametrize("shape", ["longer", "single", "column"])
def test_certify_rejects_wrong_prediction_shape(data, shape):
    """certify is public: a prediction of the wrong shape must not broadcast silently."""
    X, y, arr, _ = data
    prob = ar.ConvexReLUProblem(X, y, 0.1, arr)
    yhat = {
        "longer": np.zeros(prob.n_samples + 2),
        "single": np.zeros(1),
        "column": np.zeros((prob.n_samples, 2)),
    }[shape]
    with pytest.raises(ValueError) as excinfo:
        ar.certify(prob, yhat)
    check_message(excinfo, "yhat")


# ---------------------------------------------------------- no mutation
def test_inputs_are_never_mutated():
    rng = np.random.default_rng(3)
    X = np.hstack([rng.standard_normal((9, 2)), np.ones((9, 1))])
    y = rng.standard_normal(9)
    X0, y0 = X.copy(), y.copy()
    for depth, width in ((2, None), (3, 2)):
        arr = ar.sample_arrangements(X, 6, depth=depth, width=width, seed=0)
        saved = [a.copy() for a in (arr.masks1, arr.signs, arr.generators)]
        prob = ar.ConvexReLUProblem(X, y, 0.1, arr)
        U = rng.standard_normal(prob.var_shape)
        U0 = U.copy()
        prob.forward(U), prob.cone(U), prob.objective(U), prob.project(U)
        prob.constraint_violation(U, relative=True)
        res = prob.solve(solver="cvxpy")
        ar.certify(prob, prob.forward(res.weights))
        res.network().predict(X)
        res.network().objective(X, y, 0.1)
        np.testing.assert_array_equal(U, U0)
        for a, b in zip(saved, (arr.masks1, arr.signs, arr.generators), strict=True):
            np.testing.assert_array_equal(a, b)
        # the problem holds its own copies: editing the caller's arrays later changes nothing
        X_view = X.copy()
        prob2 = ar.ConvexReLUProblem(X_view, y, 0.1, arr)
        X_view[:] = 0.0
        np.testing.assert_array_equal(prob2.X, X)
    ar.enumerate_arrangements(X[:6, [0, 2]])
    np.testing.assert_array_equal(X, X0)
    np.testing.assert_array_equal(y, y0)


def test_list_inputs_are_accepted(data):
    X, y, arr, _ = data
    prob = ar.ConvexReLUProblem(X.tolist(), y.tolist(), 0.1, arr)
    np.testing.assert_array_equal(prob.X, X)


@pytest.mark.parametrize("gap_tol", [0.0, -1e-6, float("nan")])
def test_gap_tol_must_be_positive(gap_tol):
    X = np.random.default_rng(0).standard_normal((10, 3))
    prob = ar.ConvexReLUProblem(X, X[:, 0], 0.1, ar.sample_arrangements(X, 4, seed=0))
    with pytest.raises(ValueError, match="gap_tol must be a finite number > 0"):
        prob.solve(solver="cvxpy", gap_tol=gap_tol)
