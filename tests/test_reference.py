"""The cvxpy reference solve: solver agreement, feasibility, the model, result fields, gap_tol.

Solver agreement is judged with the certificates: every objective is attained at a
cone-feasible point (so it is >= p*) and every dual bound is <= p* (weak duality), hence
for any two solves a, b

    dual_bound_a <= objective_b   and   |objective_a - objective_b| <= max(gap_a, gap_b),

which holds whatever the solvers' accuracies.  On top of that, the interior-point solvers
(Clarabel, ECOS; default gaps ~1e-8) must agree to 1e-5 relative, and SCS (first-order,
cvxpy's default eps 1e-5 on scaled residuals) to 1e-3.
"""

import json
import warnings

import cvxpy as cp
import numpy as np
import pytest

import admmrelu as ar
from admmrelu.status import SOLUTION_PRESENT

# cvxpy warns when a backend stops at reduced accuracy; the tests check the status instead
pytestmark = pytest.mark.filterwarnings("ignore:Solution may be inaccurate:UserWarning")

SOLVERS = ("CLARABEL", "ECOS", "SCS")
#: relative agreement with Clarabel expected from each solver's default accuracy
AGREEMENT = {"CLARABEL": 0.0, "ECOS": 1e-5, "SCS": 1e-3}


def sampled_problem(n, d, P, depth, width, seed, beta_frac=0.2):
    rng = np.random.default_rng(seed)
    X = np.hstack([rng.standard_normal((n, d - 1)), np.ones((n, 1))])
    W = rng.standard_normal((d, 3))
    y = np.maximum(X @ W, 0) @ rng.standard_normal(3) + 0.1 * rng.standard_normal(n)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        arr = ar.sample_arrangements(X, P, depth=depth, width=width, seed=seed)
    prob = ar.ConvexReLUProblem(X, y, 1.0, arr)
    return prob.with_beta(beta_frac * prob.beta_max)


def rounding(prob, res):
    """Rounding scale of an objective evaluation."""
    return 1e-12 * (1 + abs(res.objective))


CONFIGS = [
    pytest.param(40, 3, 15, 2, None, 0, id="d2-n40"),
    pytest.param(60, 4, 20, 2, None, 1, id="d2-n60"),
    pytest.param(30, 3, 12, 3, 2, 2, id="d3w2-n30"),
    pytest.param(24, 3, 8, 3, 3, 3, id="d3w3-n24"),
]


@pytest.mark.parametrize("n, d, P, depth, width, seed", CONFIGS)
def test_solvers_agree(n, d, P, depth, width, seed):
    prob = sampled_problem(n, d, P, depth, width, seed)
    results = {s: prob.solve(solver="cvxpy", cvxpy_solver=s) for s in SOLVERS}
    # Clarabel at the library's 1e-10 tolerances may stop at "almost solved"
    # (optimal_inaccurate) with a certified gap of 1e-11; SCS often stops inaccurate.
    for s in SOLVERS:
        assert results[s].status in SOLUTION_PRESENT
    for a in SOLVERS:
        ra = results[a]
        assert ra.solver == f"cvxpy:{a}"
        assert ra.objective == pytest.approx(prob.objective(ra.weights), rel=1e-14)
        assert ra.gap >= -rounding(prob, ra)
        for b in SOLVERS:
            rb = results[b]
            # weak duality across solvers
            assert ra.dual_bound <= rb.objective + rounding(prob, rb)
            assert abs(ra.objective - rb.objective) <= max(ra.gap, rb.gap) + rounding(prob, ra)
    ref = results["CLARABEL"].objective
    for s in SOLVERS:
        assert results[s].objective == pytest.approx(ref, rel=max(AGREEMENT[s], 1e-12))
        assert results[s].relative_gap <= max(AGREEMENT[s], 1e-6)


@pytest.mark.parametrize("n, d, P, depth, width, seed", CONFIGS)
@pytest.mark.parametrize("solver", SOLVERS)
def test_weights_are_cone_feasible(n, d, P, depth, width, seed, solver):
    """The returned weights satisfy G U >= 0 to rounding, whatever the raw solver point did."""
    prob = sampled_problem(n, d, P, depth, width, seed)
    res = prob.solve(solver="cvxpy", cvxpy_solver=solver)
    assert res.weights.shape == prob.var_shape
    assert res.max_violation == prob.constraint_violation(res.weights)
    scale = np.linalg.norm(prob.X, axis=1).max() * np.linalg.norm(res.weights, axis=3).max()
    assert res.max_violation <= 1e-13 * max(scale, 1.0)  # rounding of one GEMM
    # the raw solver point, for comparison: projection only removes its (small) violation
    model = prob.to_cvxpy()
    model.solve(solver=solver)
    raw = np.asarray(model.variables()[0].value).reshape(prob.var_shape)
    raw_violation = prob.constraint_violation(raw)
    assert raw_violation <= 1e-3 * scale  # a solver tolerance, not a wrong point
    # moving by the projection costs at most ~the violation (here: distance <= 1e-2 scale)
    assert np.linalg.norm(res.weights - raw) <= 1e-2 * (1 + np.linalg.norm(raw))


@pytest.mark.parametrize("depth, width", [(2, None), (3, 2)])
def test_to_cvxpy_model_matches_problem(depth, width):
    prob = sampled_problem(30, 3, 10, depth, width, seed=7)
    res = prob.solve(solver="cvxpy")
    model = prob.to_cvxpy()
    assert isinstance(model, cp.Problem)
    (U,) = model.variables()
    assert U.name() == "U"
    assert U.shape == (2 * prob.n_blocks * prob.width, prob.n_features)
    # the model's objective and constraints at our weights: same layout, same value
    U.value = res.weights.reshape(U.shape)
    assert model.objective.value == pytest.approx(res.objective, rel=1e-12)
    for con in model.constraints:
        assert con.violation().max() <= res.max_violation + 1e-13
    # at a random point too (objective only: the point is infeasible)
    V = np.random.default_rng(0).standard_normal(prob.var_shape)
    U.value = V.reshape(U.shape)
    assert model.objective.value == pytest.approx(prob.objective(V), rel=1e-12)
    # the constraints of the model are exactly G U >= 0: the two minima agree
    worst = min(float(np.min(-con.violation())) for con in model.constraints)
    assert worst == pytest.approx(-prob.constraint_violation(V), rel=1e-12)
    # and the model's optimum equals the result's objective within the certified gap
    model.solve(solver="CLARABEL")
    assert abs(model.value - res.objective) <= res.gap + 1e-8 * res.objective


def test_result_fields(tiny_two_layer):
    X, y, arr = tiny_two_layer
    prob = ar.ConvexReLUProblem(X, y, 0.05, arr)
    res = prob.solve(solver="cvxpy", cvxpy_solver="CLARABEL")
    assert isinstance(res, ar.SolveResult)
    assert isinstance(res.status, ar.Status) and res.status == "optimal"
    assert res.solver == "cvxpy:CLARABEL"
    assert res.solver_status == "optimal"
    assert res.iterations > 0
    for name in ("setup_time", "solve_time", "polish_time", "certificate_time"):
        assert getattr(res, name) >= 0.0
    assert res.depth == 2 and res.arrangements_exact
    np.testing.assert_array_equal(res.signs, arr.signs)
    assert res.gap == pytest.approx(res.objective - res.dual_bound, rel=1e-12, abs=1e-15)
    assert res.relative_gap == pytest.approx(res.gap / res.objective, rel=1e-12)
    assert res.dual_ratio > 0
    assert len(res.history) == 0
    d = res.to_dict()
    text = json.dumps(d)
    assert json.loads(text)["status"] == "optimal"
    assert d["solver"] == "cvxpy:CLARABEL" and d["objective"] == res.objective
    assert "weights" not in d
    assert "optimal" in repr(res) and "cvxpy:CLARABEL" in repr(res)
    # a sampled problem is not exact
    sub = ar.ConvexReLUProblem(X, y, 0.05, arr.subset(np.arange(5)))
    assert not sub.solve(solver="cvxpy").arrangements_exact


def test_solver_options_are_passed_through(tiny_two_layer):
    X, y, arr = tiny_two_layer
    prob = ar.ConvexReLUProblem(X, y, 0.05, arr)
    res = prob.solve(solver="cvxpy", cvxpy_solver="SCS", max_iters=5)
    assert res.iterations <= 5
    assert res.status != "optimal"
    assert res.max_violation <= 1e-12 * max(1.0, np.abs(res.weights).max()) * 10


def test_gap_tol_decides_optimal():
    prob = sampled_problem(40, 3, 15, 3, 2, seed=4)
    loose = prob.solve(solver="cvxpy", cvxpy_solver="CLARABEL", gap_tol=1e3)
    assert loose.status == "optimal"
    with pytest.warns(ar.ConvergenceWarning, match="certified gap"):
        tight = prob.solve(solver="cvxpy", cvxpy_solver="SCS", gap_tol=1e-14)
    assert tight.gap > 1e-14 * tight.objective
    assert tight.status == "optimal_inaccurate"


def test_certificate_not_backend_decides_optimal():
    """Clarabel at 1e-10 may stop at "almost solved" (cvxpy: optimal_inaccurate) although the
    certified gap is ~1e-11: the rigorous certificate, not the backend's flag, decides."""
    rng = np.random.default_rng(1)
    n, d = 60, 4
    X = np.hstack([rng.standard_normal((n, d - 1)), np.ones((n, 1))])
    W = rng.standard_normal((d, 3))
    y = np.maximum(X @ W, 0) @ rng.standard_normal(3) + 0.1 * rng.standard_normal(n)
    prob = ar.ConvexReLUProblem(X, y, 1.0, ar.sample_arrangements(X, 20, seed=1))
    prob = prob.with_beta(0.2 * prob.beta_max)
    res = prob.solve(solver="cvxpy")
    assert res.solver_status in ("optimal", "optimal_inaccurate")
    assert res.status == "optimal" and res.relative_gap <= 1e-6


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("gap_tol", [1e-14, 1e-9, 1e-6, 1e-3])
def test_optimal_never_exceeds_gap_tol(solver, gap_tol):
    prob = sampled_problem(30, 3, 10, 2, None, seed=6)
    res = prob.solve(solver="cvxpy", cvxpy_solver=solver, gap_tol=gap_tol)
    assert res.status in SOLUTION_PRESENT
    if res.status == "optimal":
        assert res.gap <= gap_tol * res.objective
