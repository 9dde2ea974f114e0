"""Data in extreme units: a certified solve that agrees with the unit-scale one, or a clear
ValueError at construction, never a false certificate (issue 9).

Scaling y by c scales the objective and its bound by c^2 (with beta scaled by c, the same
weights times c); scaling X by c scales the weights by 1/c (with beta scaled by c, the same
objective).  Inside float64's range the scaled program the ADMM iterates on is the same
whatever c (admmrelu.scaling); outside it, ConvexReLUProblem refuses the data with a
message naming the argument and the rescaling (docs/memory.md, "Representable range").
"""

import warnings

import numpy as np
import pytest
from conftest import make_problem

import admmrelu as ar
from admmrelu._validation import log2_norm, stable_norm
from admmrelu.scaling import ScaledProblem

SCALES = [1e-150, 1e-100, 1e-20, 1.0, 1e20, 1e100, 1e150]
OUTSIDE = [1e-300, 1e-200, 1e-155, 1e154, 1e155, 1e200]
#: Agreement with the unit-scale solve: both are certified to the default eps_rel = 1e-6.
AGREE = 1e-6


def _solved(n, d, P, depth, width):
    """A unit-scale instance and its certified solve: the reference of the rescaled ones."""
    X, y, prob = make_problem(n, d, P, depth, width, 0, 0.1)
    res = prob.solve()
    assert res.status == "optimal"
    return X, y, prob, res


@pytest.fixture(scope="module")
def reference():
    return _solved(30, 3, 20, 2, 1)


def _rescaled(which, c, X, y, prob):
    """The problem with X or y multiplied by c and beta by c, and the factor of its
    objective relative to the reference."""
    if which == "X":
        return ar.ConvexReLUProblem(X * c, y, prob.beta * c, prob.arrangements), 1.0
    return ar.ConvexReLUProblem(X, y * c, prob.beta * c, prob.arrangements), c * c


def _check_no_false_certificate(res, ref, factor):
    """A certified result: optimal, bound below its objective, and consistent with the
    reference (its bound below the reference objective and vice versa)."""
    objective, bound = res.objective / factor, res.dual_bound / factor
    assert res.status == "optimal", res.status
    assert np.isfinite(res.objective) and np.isfinite(res.dual_bound)
    # rounding of two values that agree to ~1e-10 can make the gap a few ulps negative
    assert res.gap >= -1e-12 * abs(res.objective), (res.gap, res.objective)
    assert bound <= ref.objective * (1 + 1e-9)  # a lower bound never exceeds a feasible point
    assert objective >= ref.dual_bound * (1 - 1e-9)  # nor does a point go below a bound
    assert objective == pytest.approx(ref.objective, rel=AGREE)
    assert bound == pytest.approx(ref.dual_bound, rel=AGREE)


@pytest.mark.parametrize("which", ["X", "y"])
@pytest.mark.parametrize("c", SCALES)
def test_solve_in_any_units_is_certified_and_agrees(reference, which, c):
    X, y, prob, ref = reference
    scaled, factor = _rescaled(which, c, X, y, prob)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no overflow on the way
        res = scaled.solve()
    _check_no_false_certificate(res, ref, factor)
    # the weights: X * c -> weights / c; y * c -> weights * c
    weight_factor = 1.0 / c if which == "X" else c
    assert ar.ConvexReLUProblem(X, y, prob.beta, prob.arrangements).objective(
        res.weights / weight_factor
    ) == pytest.approx(ref.objective, rel=AGREE)
    # beta_max scales with c in both cases
    assert scaled.beta_max == pytest.approx(c * prob.beta_max, rel=1e-9)


@pytest.fixture(scope="module")
def reference3():
    return _solved(20, 3, 10, 3, 2)


@pytest.mark.parametrize("which", ["X", "y"])
@pytest.mark.parametrize("c", [1e-150, 1e150])
def test_three_layer_solve_in_extreme_units(reference3, which, c):
    X, y, prob, ref = reference3
    scaled, factor = _rescaled(which, c, X, y, prob)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        res = scaled.solve()
    _check_no_false_certificate(res, ref, factor)


@pytest.mark.parametrize("which", ["X", "y"])
@pytest.mark.parametrize("c", OUTSIDE)
def test_unrepresentable_units_raise_a_clear_error(reference, which, c):
    X, y, prob, _ = reference
    with pytest.raises(ValueError) as excinfo:
        _rescaled(which, c, X, y, prob)
    msg = str(excinfo.value)
    assert msg.startswith(f"{which} has magnitude ~1e"), msg
    assert f"rescale {which}" in msg and "beta" in msg, msg
    assert ("overflows" in msg) == (c > 1), msg
    exponent = int(msg.split("~1e")[1].split(" ")[0])
    assert abs(exponent - np.log10(c)) <= 1, msg  # the magnitude is stated


def test_x_and_y_far_out_together_name_both(reference):
    """Each within range, but beta_max ~ |X| |y| (and its square) is not."""
    X, y, prob, _ = reference
    with pytest.raises(ValueError, match=r"X \(~1e\+100\) and y \(~1e\+100\) together") as info:
        ar.ConvexReLUProblem(X * 1e100, y * 1e100, prob.beta, prob.arrangements)
    assert "beta_max" in str(info.value) and "rescale X" in str(info.value)
    with pytest.raises(ValueError, match=r"weights ~ \|y\| / \|X\| ~ 1e\+2\d\d"):
        ar.ConvexReLUProblem(X * 1e-110, y * 1e110, prob.beta, prob.arrangements)


@pytest.mark.parametrize("c", [2.0**-490, 1e-150, 1e150, 2.0**490])
def test_scaled_program_does_not_depend_on_the_units(reference, c):
    """The ADMM's program (X~, y~, beta~, the unit rows) is the unit-scale one to rounding."""
    X, y, prob, _ = reference
    base = ScaledProblem.from_problem(prob)
    for which in ("X", "y"):
        scaled = ScaledProblem.from_problem(_rescaled(which, c, X, y, prob)[0])
        np.testing.assert_allclose(scaled.problem.X, base.problem.X, rtol=1e-14)
        np.testing.assert_allclose(scaled.problem.y, base.problem.y, rtol=1e-14)
        np.testing.assert_allclose(scaled.X_cone, base.X_cone, rtol=1e-14)
        np.testing.assert_allclose(scaled.row_norms, base.row_norms, rtol=1e-14)
        assert scaled.problem.beta == pytest.approx(base.problem.beta, rel=1e-14)
        factor = base.x_scale * c if which == "X" else base.y_scale * c
        assert (scaled.x_scale if which == "X" else scaled.y_scale) == pytest.approx(
            factor, rel=1e-14
        )


def test_norms_of_extreme_values_neither_overflow_nor_underflow():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((4, 5))
    for c in (1e-300, 1e-160, 1e160, 1e300):
        np.testing.assert_allclose(stable_norm(a * c, axis=1), c * np.linalg.norm(a, axis=1))
        assert stable_norm(a * c) == pytest.approx(c * np.linalg.norm(a), rel=1e-14)
        assert log2_norm(a * c) == pytest.approx(np.log2(c * np.linalg.norm(a)), abs=1e-12)
    # bit for bit np.linalg.norm on data of ordinary size
    assert np.array_equal(stable_norm(a, axis=0), np.linalg.norm(a, axis=0))
    assert stable_norm(np.zeros(3)) == 0.0 and log2_norm(np.zeros(3)) == -np.inf


def test_regularizer_and_violation_of_huge_or_tiny_weights(reference):
    X, y, prob, ref = reference
    U = ref.weights
    for c in (1e-200, 1e200):
        assert prob.regularizer(U * c) == pytest.approx(c * prob.regularizer(U), rel=1e-13)
        V = U * c
        V[0, 0, 0, :] = -np.abs(V).max()  # a violated block
        assert 0 < prob.constraint_violation(V, relative=True) < np.inf


def test_zero_targets_are_representable(reference):
    """y = 0 has no scale to check: the optimum is U = 0, certified."""
    X, _, prob, _ = reference
    zero = ar.ConvexReLUProblem(X, np.zeros(X.shape[0]), prob.beta, prob.arrangements)
    res = zero.solve()
    assert res.status == "optimal" and res.objective == 0.0 and res.dual_bound == 0.0
