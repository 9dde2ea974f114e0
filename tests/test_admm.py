"""The ADMM solver (admmrelu.admm): optimality, warm starts, limits, statuses, input checks.

Independent references used here:

* cvxpy + Clarabel at the library's reference tolerances (1e-10), ``solver="cvxpy"``;
* weak duality: every ``dual_bound`` (ADMM's or Clarabel's) is <= the optimum p*, and every
  returned objective is attained at a cone-feasible point, so it is >= p*;
* the objective, the cone violation and the network recomputed from the returned weights
  (``prob.objective``, ``prob.constraint_violation``, ``res.network().objective``);
* the zero network for ``beta >= beta_max`` (formulation.md §6);
* the documented gap tolerance ``eps_abs * b^2 + eps_rel * objective`` (b = RMS of y,
  :class:`admmrelu.settings.ADMMSettings`), recomputed here from y.
"""

import re
import time

import numpy as np
import pytest
from admmrelu.kernels import gpu_unavailable_reason
from conftest import make_problem
from hypothesis import example, given, settings
from hypothesis import strategies as st

import admmrelu as ar
import admmrelu.admm as admm_module

# Tiny data may have fewer cells than the blocks asked for: sampling then warns.
pytestmark = pytest.mark.filterwarnings("ignore:found only .* distinct non-trivial blocks")

#: ADMM defaults (ADMMSettings): the status "optimal" promises a certified gap below
#: EPS_ABS * b^2 + EPS_REL * objective and a relative cone violation below EPS_FEAS.
EPS_ABS, EPS_REL, EPS_FEAS = 1e-8, 1e-6, 1e-8
#: ... and after a limit, "optimal_inaccurate" promises the gap tolerance times this.
INACCURATE_FACTOR = 10.0


def reference(prob):
    """Clarabel at 1e-10 tolerances; its point is feasible and its bound rigorous."""
    ref = prob.solve(solver="cvxpy", cvxpy_solver="CLARABEL")
    # "optimal": certified gap <= 1e-6 objective (observed ~1e-10 at these tolerances)
    assert ref.status == "optimal", ref
    return ref


def expected_status(prob, res, limit_status):
    """The status a limited solve must report: it follows the certified gap (``optimal``
    within the tolerance, ``optimal_inaccurate`` within 10x of it, else the limit's)."""
    if res.gap <= gap_tolerance(prob, res.objective):
        return "optimal"
    if res.gap <= gap_tolerance(prob, res.objective, INACCURATE_FACTOR):
        return "optimal_inaccurate"
    return limit_status


def rounding(value):
    """Rounding scale of an objective evaluation (sums of O(n P) terms in float64)."""
    return 1e-12 * (1.0 + abs(value))


def gap_tolerance(prob, objective, factor=1.0):
    """The documented gap tolerance: eps_abs in units of b^2 (b = RMS of y) + eps_rel."""
    b2 = float(np.mean(prob.y**2))
    return factor * (EPS_ABS * b2 + EPS_REL * abs(objective))


def assert_same_optimum(prob, a, b):
    """Two certified objectives of the same program agree to the gap tolerance.

    Both are attained at feasible points (>= p*) and each solve certified its gap, so
    ``|a - b| <= max(gap_a, gap_b)``: at most 1e-6 of the objective plus eps_abs b^2 (the
    absolute part of the documented tolerance, 1e-8 mean(y^2), which matters only for
    near-interpolating fits with a tiny objective), plus rounding.
    """
    top = max(a, b)
    assert abs(a - b) <= gap_tolerance(prob, top) + rounding(top), (a, b)


def assert_feasible_and_certified(prob, res, upper=None):
    """Properties every returned point has, whatever the status.

    ``upper``: an objective attained by another feasible point (>= p*), so the certified
    bound must lie below it.
    """
    X, y, beta = prob.X, prob.y, prob.beta
    assert res.weights.shape == prob.var_shape
    assert np.all(np.isfinite(res.weights))
    # the objective is that of the returned weights (rounding only)
    assert res.objective == pytest.approx(prob.objective(res.weights), rel=1e-12, abs=1e-300)
    # returned points are projected or polished onto the cones: the relative violation is
    # at rounding level, far below the documented eps_feas = 1e-8
    assert prob.constraint_violation(res.weights, relative=True) <= EPS_FEAS
    assert res.max_violation == pytest.approx(prob.constraint_violation(res.weights), abs=1e-300)
    # gap bookkeeping and weak duality within the result (bound <= p* <= objective)
    assert res.gap == pytest.approx(res.objective - res.dual_bound, rel=1e-12, abs=1e-300)
    assert res.gap >= -rounding(res.objective)
    assert np.isfinite(res.dual_bound)
    if upper is not None:
        assert res.dual_bound <= upper + rounding(upper)
    # Proposition 1: on a cone-feasible point the network attains the convex objective;
    # the two evaluations differ by rounding (and the <= 1e-8 relative violation)
    assert res.network().objective(X, y, beta) == pytest.approx(res.objective, rel=1e-9)


# --------------------------------------------------------- 1. agreement with Clarabel
@st.composite
def instances(draw, depth):
    width = draw(st.sampled_from([1, 2, 3])) if depth == 3 else 1
    n = draw(st.integers(6, 40))
    d = draw(st.integers(2, 5))
    # keep n P m1 small so each ADMM run stays well below a second
    P = draw(st.integers(1, 20 if depth == 2 else 16 // width))
    seed = draw(st.integers(0, 2**16))
    # beta between 1e-3 and 0.9 of beta_max, log-uniformly
    frac = 10 ** draw(st.floats(-3.0, float(np.log10(0.9))))
    return n, d, P, depth, width, seed, frac


def check_against_clarabel(case):
    n, d, P, depth, width, seed, frac = case
    X, y, prob = make_problem(n, d, P, depth, width, seed, frac)
    res = prob.solve(solver="admm", eps_rel=EPS_REL)
    ref = reference(prob)
    assert res.status == "optimal", (case, res)
    assert res.solver == "admm"
    assert_same_optimum(prob, res.objective, ref.objective)
    assert res.gap <= gap_tolerance(prob, res.objective) + rounding(res.objective)
    # the certificates hold across solvers (weak duality)
    assert ref.dual_bound <= res.objective + rounding(res.objective)
    assert_feasible_and_certified(prob, res, upper=ref.objective)


@settings(max_examples=25, deadline=None)
@given(instances(depth=2))
# the derandomized draws favour small shapes: add the largest sizes explicitly
@example(case=(60, 5, 20, 2, 1, 0, 1e-3))
@example(case=(60, 6, 20, 2, 1, 1, 0.02))
def test_two_layer_matches_clarabel(case):
    check_against_clarabel(case)


@settings(max_examples=25, deadline=None)
@given(instances(depth=3))
@example(case=(50, 4, 16, 3, 1, 2, 1e-3))
@example(case=(40, 4, 8, 3, 2, 3, 1e-3))
@example(case=(30, 3, 5, 3, 3, 5, 1e-3))
@example(case=(40, 4, 5, 3, 3, 6, 0.9))
def test_three_layer_matches_clarabel(case):
    check_against_clarabel(case)


# ------------------------------------------------------------------- 2. warm starts
@pytest.mark.parametrize("depth", [2, 3])
@pytest.mark.parametrize("seed", [0, 1])
def test_warm_start_cuts_iterations(depth, seed):
    # at 0.01 beta_max a cold solve needs a few hundred iterations (well above the ~60
    # that the active-set stability wait costs even from the optimum)
    X, y, prob = make_problem(40, 4, 15, depth, 2, seed, 0.01)
    first = prob.solve(solver="admm")
    assert first.status == "optimal"
    near = prob.with_beta(0.9 * prob.beta)
    cold = near.solve(solver="admm")
    warm = near.solve(solver="admm", warm_start=first)
    assert cold.status == warm.status == "optimal"
    assert warm.iterations < cold.iterations, (warm.iterations, cold.iterations)
    assert_same_optimum(near, warm.objective, cold.objective)
    assert_feasible_and_certified(near, warm, upper=cold.objective)
    assert_feasible_and_certified(near, cold, upper=warm.objective)


@pytest.mark.parametrize("depth", [2, 3])
def test_warm_start_from_cvxpy_result(depth):
    X, y, prob = make_problem(30, 3, 10, depth, 2, 3, 0.05)
    ref_far = reference(prob.with_beta(0.5 * prob.beta))  # another beta: no ADMM state
    assert ref_far.admm_state is None
    ref = reference(prob)
    res = prob.solve(solver="admm", warm_start=ref_far)
    assert res.status == "optimal"
    assert_same_optimum(prob, res.objective, ref.objective)
    assert_feasible_and_certified(prob, res, upper=ref.objective)
    # and from a cvxpy result at the same beta (the optimum itself)
    res_same = prob.solve(solver="admm", warm_start=ref)
    assert res_same.status == "optimal"
    assert_same_optimum(prob, res_same.objective, ref.objective)


class _CountingSystems:
    """Replaces the x-update system classes in admmrelu.admm and counts constructions."""

    def __init__(self, monkeypatch):
        self.count = 0
        for name in ("KroneckerWoodburySystem", "BlockDiagonalSystem"):
            original = getattr(admm_module, name)
            monkeypatch.setattr(admm_module, name, self._wrap(original))

    def _wrap(self, original):
        def build(*args, **kwargs):
            self.count += 1
            return original(*args, **kwargs)

        return build


@pytest.mark.parametrize("depth", [2, 3])
def test_solve_path_matches_cold_solves(depth, monkeypatch):
    X, y, prob = make_problem(40, 4, 12, depth, 2, 5, 0.5)
    fracs = [0.5, 0.2, 0.05, 0.01]
    betas = [f * prob.beta_max for f in fracs]
    systems = _CountingSystems(monkeypatch)
    path = ar.solve_path(prob, betas)
    # one setup (scaling, factorizations) serves the whole path; the first result reports
    # its time, the later ones none
    assert systems.count == 1
    assert len(path) == len(betas)
    assert path[0].setup_time > 0
    assert all(r.setup_time == 0.0 for r in path[1:])
    for beta, res in zip(betas, path, strict=True):
        sub = prob.with_beta(beta)
        cold = sub.solve(solver="admm")
        assert res.status == cold.status == "optimal"
        assert_same_optimum(sub, res.objective, cold.objective)
        assert_feasible_and_certified(sub, res, upper=cold.objective)
        assert cold.dual_bound <= res.objective + rounding(res.objective)
    # objectives decrease with beta (the optimum is monotone in beta)
    objectives = [r.objective for r in path]
    assert all(a >= b for a, b in zip(objectives, objectives[1:], strict=False))
    # the ADMMSolver used directly: the same setup reused across calls
    systems.count = 0
    solver = ar.ADMMSolver(prob)
    again = [solver.solve(beta) for beta in betas[:2]]
    assert systems.count == 1
    assert again[0].setup_time > 0 and again[1].setup_time == 0.0
    for res, ref, ref_beta in zip(again, path, betas, strict=False):
        assert_same_optimum(prob.with_beta(ref_beta), res.objective, ref.objective)


# ------------------------------------------------------------------- 3. time limit
#: Instances that need seconds without the polish (observed: thousands of iterations).
SLOW_WITHOUT_POLISH = [
    pytest.param(60, 5, 20, 2, 1, 0, id="d2-n60-P20"),
    pytest.param(60, 5, 20, 3, 2, 0, id="d3w2-n60-P20"),
]


@pytest.mark.parametrize(("n", "d", "P", "depth", "width", "seed"), SLOW_WITHOUT_POLISH)
def test_time_limit_is_honoured(n, d, P, depth, width, seed):
    X, y, prob = make_problem(n, d, P, depth, width, seed, 1e-3)
    time_limit = 0.1
    start = time.perf_counter()
    res = prob.solve(solver="admm", polish=False, time_limit=time_limit, max_iter=10**7)
    wall = time.perf_counter() - start
    ref = reference(prob)
    assert res.status in ("time_limit_reached", "optimal_inaccurate"), res
    assert 0 < res.iterations < 10**7
    # The loop checks the deadline before each iteration, so it overshoots by at most one
    # iteration and one check (milliseconds here); after it come the projection and the
    # certificate of the final point (~0.1 s measured at this size).  1 s leaves ~10x
    # headroom for a slow or loaded machine.
    assert wall <= time_limit + 1.0, wall
    if res.status == "optimal_inaccurate":  # the relaxed gap tolerance was met
        assert res.gap <= gap_tolerance(prob, res.objective, INACCURATE_FACTOR) + rounding(
            res.objective
        )
    else:
        assert res.gap > gap_tolerance(prob, res.objective, INACCURATE_FACTOR)
    assert_feasible_and_certified(prob, res, upper=ref.objective)
    assert ref.dual_bound <= res.objective + rounding(res.objective)


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"polish": False, "max_iter": 200},
        {"polish": False, "time_limit": 0.2, "max_iter": 10**7},
    ],
    ids=["optimal", "max-iter", "time-limit"],
)
def test_reported_times_account_for_the_wall_time(options):
    # setup_time + solve_time + polish_time + certificate_time is documented as the time
    # spent building, solving, polishing and certifying: nothing counted twice or missed.
    # This instance's final certificate after a limit costs ~0.03-0.06 s (measured).
    X, y, prob = make_problem(60, 5, 20, 3, 2, 0, 1e-3 if options else 0.1)
    start = time.perf_counter()
    res = prob.solve(solver="admm", **options)
    wall = time.perf_counter() - start
    parts = res.setup_time + res.solve_time + res.polish_time + res.certificate_time
    assert min(res.setup_time, res.solve_time, res.polish_time, res.certificate_time) >= 0
    assert parts <= wall
    # the untimed work (option checks, result assembly) takes ~0.2 ms (measured on
    # optimal solves); 10 ms + 2% allows for a slow machine
    assert parts >= wall - 0.01 - 0.02 * wall, (parts, wall, res)


# ---------------------------------------------------------------- 4. max_iter limit
@pytest.mark.parametrize("depth", [2, 3])
@pytest.mark.parametrize("polish", [True, False])
@pytest.mark.parametrize("max_iter", [0, 5])
def test_max_iter_status_follows_the_certified_gap(depth, polish, max_iter):
    X, y, prob = make_problem(40, 4, 15, depth, 2, 7, 0.01)
    ref = reference(prob)
    res = prob.solve(solver="admm", max_iter=max_iter, polish=polish)
    assert res.solver_status == "max_iter_reached"
    assert res.polish_time == 0.0  # a limit is never followed by a polish
    assert res.iterations == max_iter
    assert res.status == expected_status(prob, res, "max_iter_reached"), res
    assert_feasible_and_certified(prob, res, upper=ref.objective)
    assert ref.dual_bound <= res.objective + rounding(res.objective)
    if max_iter == 0:  # no iterate: the zero network, certified at v = y
        assert res.status == "max_iter_reached"
        assert not np.any(res.weights)
        assert res.objective == pytest.approx(0.5 * float(y @ y), rel=1e-14)
        assert len(res.history) == 0


# ------------------------------------------------------------------ 5. interrupted
@pytest.mark.parametrize("depth", [2, 3])
@pytest.mark.parametrize("after", [0, 25])
def test_keyboard_interrupt_returns_best_point(depth, after, monkeypatch):
    X, y, prob = make_problem(40, 4, 15, depth, 2, 11, 0.01)
    ref = reference(prob)
    original = admm_module._Splitting.step
    calls = []

    def interrupting_step(self, w, rho, alpha):
        calls.append(1)
        if len(calls) > after:
            raise KeyboardInterrupt
        return original(self, w, rho, alpha)

    monkeypatch.setattr(admm_module._Splitting, "step", interrupting_step)
    res = prob.solve(solver="admm")
    assert res.solver_status == "interrupted"
    assert res.status == expected_status(prob, res, "interrupted"), res
    assert res.iterations == after  # the interrupted step did not count
    assert res.objective == prob.objective(res.weights)
    assert_feasible_and_certified(prob, res, upper=ref.objective)
    assert ref.dual_bound <= res.objective + rounding(res.objective)
    if after == 0:  # nothing computed yet: the zero network
        assert not np.any(res.weights)
        assert res.objective == pytest.approx(0.5 * float(y @ y), rel=1e-14)
    else:  # some progress: better than the zero network
        assert res.objective < 0.5 * float(y @ y)


# ------------------------------------------------------------------ 6. bad input
@pytest.fixture(scope="module")
def small():
    return make_problem(20, 3, 6, 2, 1, 0, 0.1)[2]


@pytest.fixture(scope="module")
def small3():
    return make_problem(20, 3, 6, 3, 2, 0, 0.1)[2]


def test_unknown_option_is_named(small):
    with pytest.raises(TypeError, match="max_iters"):
        small.solve(solver="admm", max_iters=10)
    with pytest.raises(TypeError, match="tolerance"):
        ar.ADMMSolver(small).solve(tolerance=1e-3)
    with pytest.raises(TypeError, match="foo"):
        ar.solve_path(small, [small.beta], foo=1)


@pytest.mark.parametrize(
    ("options", "error", "name"),
    [
        ({"alpha": 2}, ValueError, "alpha"),
        ({"alpha": 0}, ValueError, "alpha"),
        ({"eps_rel": -1}, ValueError, "eps_rel"),
        ({"eps_abs": float("nan")}, ValueError, "eps_abs"),
        ({"eps_abs": 0, "eps_rel": 0}, ValueError, "eps_abs and eps_rel"),
        ({"max_iter": -1}, ValueError, "max_iter"),
        ({"max_iter": 2.5}, TypeError, "max_iter"),
        ({"rho": 0}, ValueError, "rho"),
        ({"rho": "big"}, TypeError, "rho"),
        ({"time_limit": 0}, ValueError, "time_limit"),
        ({"time_limit": -1.0}, ValueError, "time_limit"),
        ({"polish": "yes"}, TypeError, "polish"),
        ({"verbose": 1}, TypeError, "verbose"),
        ({"adaptive_rho": None}, TypeError, "adaptive_rho"),
        ({"anderson_memory": -1}, ValueError, "anderson_memory"),
        ({"check_every": 0}, ValueError, "check_every"),
        ({"adaptive_rho_interval": 0}, ValueError, "adaptive_rho_interval"),
    ],
)
def test_invalid_option_values_name_the_argument(small, options, error, name):
    with pytest.raises(error, match=re.escape(name)):
        small.solve(solver="admm", **options)
    with pytest.raises(error, match=re.escape(name)):
        ar.solve_path(small, [small.beta], **options)


def test_bad_warm_starts(small):
    with pytest.raises(TypeError, match="warm_start"):
        small.solve(solver="admm", warm_start=np.zeros(small.var_shape))
    with pytest.raises(TypeError, match="warm_start"):
        small.solve(solver="admm", warm_start={"weights": np.zeros(small.var_shape)})
    # a result of a problem with other blocks (another P) on other data
    other = make_problem(20, 3, 4, 2, 1, 1, 0.1)[2]
    assert other.var_shape != small.var_shape
    res_other = other.solve(solver="admm", max_iter=20)
    with pytest.raises(ValueError, match="warm_start"):
        small.solve(solver="admm", warm_start=res_other)
    # a three-layer result (width 2) on the same data has another variable shape
    X, y = small.X, small.y
    arr3 = ar.sample_arrangements(X, n_blocks=6, depth=3, width=2, seed=0)
    res3 = ar.ConvexReLUProblem(X, y, small.beta, arr3).solve(solver="admm", max_iter=20)
    with pytest.raises(ValueError, match="warm_start"):
        small.solve(solver="admm", warm_start=res3)
    # solve_path chains its own warm starts
    with pytest.raises(TypeError, match="warm_start"):
        ar.solve_path(small, [small.beta], warm_start=res_other)


def test_bad_solver_device_dtype_and_betas(small):
    with pytest.raises(ValueError, match="foo"):
        small.solve(solver="foo")
    with pytest.raises(ValueError, match="device"):
        small.solve(solver="admm", device="tpu")
    with pytest.raises(ValueError, match="dtype"):
        small.solve(solver="admm", dtype="float16")
    with pytest.raises(ValueError, match="betas"):
        ar.solve_path(small, [])
    with pytest.raises(ValueError, match="beta"):
        ar.ADMMSolver(small).solve(-1.0)


@pytest.mark.skipif(gpu_unavailable_reason() is None, reason="a usable GPU is present")
def test_gpu_request_without_gpu_names_the_reason(small):
    for call in (lambda: small.solve(device="gpu"), lambda: ar.ADMMSolver(small, device="gpu")):
        with pytest.raises(RuntimeError, match="device='gpu' is not usable here: .*device='cpu'"):
            call()
    # "auto" falls back to the CPU and solves normally
    assert small.solve(solver="admm", device="auto").status == "optimal"


@pytest.mark.parametrize("depth", [2, 3])
def test_devices_and_precisions_agree(depth, request):
    """The numpy reference kernels, the numba kernels and float32 iterations give the same
    certified optimum: the finish recomputes the point and its certificate in float64."""
    prob = request.getfixturevalue("small" if depth == 2 else "small3")
    results = {
        (device, dtype): prob.solve(device=device, dtype=dtype)
        for device in ("numpy", "cpu")
        for dtype in ("float64", "float32")
    }
    reference = results["numpy", "float64"]
    for key, res in results.items():
        assert res.status == "optimal", key
        assert res.objective == pytest.approx(reference.objective, rel=2e-6), key
        assert res.dual_bound <= reference.objective * (1 + 1e-12), key
    # the two float64 backends run the same iteration up to rounding
    assert results["cpu", "float64"].iterations == reference.iterations


# --------------------------------------------------------- 7. verbose and history
_ROW = re.compile(r"^\s*(\d+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s*$")


@pytest.mark.parametrize("depth", [2, 3])
def test_verbose_table_and_history(depth, capsys):
    X, y, prob = make_problem(40, 4, 15, depth, 2, 2, 0.01)
    quiet = prob.solve(solver="admm")
    assert capsys.readouterr().out == ""  # verbose=False prints nothing
    res = prob.solve(solver="admm", verbose=True)
    out = capsys.readouterr().out
    assert res.status == "optimal"
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if "objective" in line and "iter" in line)
    titles = ["iter", "objective", "prim res", "dual res", "gap", "rho", "time"]
    positions = [lines[header].find(t) for t in titles]
    assert all(p >= 0 for p in positions) and positions == sorted(positions), lines[header]
    rows = [_ROW.match(line) for line in lines[header + 1 :]]
    rows = [m for m in rows if m is not None]
    h = res.history
    # one row per check, each with the history's values
    assert len(rows) == len(h) > 0
    np.testing.assert_array_equal([int(m.group(1)) for m in rows], h.iteration)
    np.testing.assert_allclose([float(m.group(2)) for m in rows], h.objective, rtol=1e-8)
    np.testing.assert_allclose([float(m.group(3)) for m in rows], h.r_prim, rtol=1e-2)
    np.testing.assert_allclose([float(m.group(6)) for m in rows], h.rho, rtol=1e-2)
    # the footer reports the status and the final values
    assert re.search(r"status optimal\b", out)
    assert f"iterations {res.iterations}" in out
    assert f"objective {res.objective:.10g}" in out
    # the same run as without verbose (printing does not change the math)
    assert res.iterations == quiet.iterations
    assert res.objective == quiet.objective
    # history arrays: equal lengths, checks every check_every (10) iterations, time moves on
    lengths = {k: len(getattr(h, k)) for k in ar.History.__dataclass_fields__}
    assert set(lengths.values()) == {len(h)}, lengths
    assert np.all(np.diff(h.iteration) > 0) and np.all(h.iteration % 10 == 0)
    assert h.iteration[-1] <= res.iterations
    assert np.all(np.diff(h.time) >= 0) and np.all(h.time >= 0)
    assert np.all(h.r_prim >= 0) and np.all(h.r_dual >= 0) and np.all(h.rho > 0)
    assert np.all(np.isfinite(h.objective)) and np.all(np.isfinite(h.dual_bound))
    # the history's bounds are rigorous too (cheap certificates at the iterates)
    assert np.all(h.dual_bound <= res.objective + rounding(res.objective))


# ---------------------------------------------------------------- 8. beta_max
@pytest.mark.parametrize("depth", [2, 3])
@pytest.mark.parametrize("factor", [1.0, 1.5])
def test_zero_is_optimal_from_beta_max(depth, factor):
    X, y, prob = make_problem(30, 3, 10, depth, 2, 4, 1.0)
    prob = prob.with_beta(factor * prob.beta_max)
    res = prob.solve(solver="admm")
    zero_value = 0.5 * float(y @ y)
    assert res.status == "optimal"
    # zero is optimal: p* = 0.5 ||y||^2, so the feasible objective is >= it (rounding) and
    # within the certified 1e-6 gap tolerance of it
    assert res.objective >= zero_value - rounding(zero_value)
    assert res.objective <= zero_value + gap_tolerance(prob, zero_value)
    assert res.dual_bound <= zero_value + rounding(zero_value)
    assert_feasible_and_certified(prob, res, upper=zero_value)
    assert np.abs(res.network().predict(X)).max() <= 1e-3 * np.abs(y).max()


# ------------------------------------------------------------------ 9. variants
@pytest.mark.parametrize("depth", [2, 3])
@pytest.mark.parametrize(
    "options",
    [
        {"anderson_memory": 0},
        {"adaptive_rho": False},
        {"polish": False},
        {"alpha": 1.0, "check_every": 1},
        {"rho": 10.0, "anderson_memory": 10},
    ],
    ids=["no-anderson", "fixed-rho", "no-polish", "alpha1-check1", "rho10-anderson10"],
)
def test_variants_reach_optimal(depth, options):
    X, y, prob = make_problem(30, 3, 10, depth, 2, 1, 0.1)
    ref = reference(prob)
    res = prob.solve(solver="admm", max_iter=50_000, **options)
    assert res.status == "optimal", res
    assert_same_optimum(prob, res.objective, ref.objective)
    assert res.gap <= gap_tolerance(prob, res.objective) + rounding(res.objective)
    assert_feasible_and_certified(prob, res, upper=ref.objective)
    if options.get("polish") is False:
        assert res.polish_time == 0.0


@pytest.mark.parametrize("depth", [2, 3])
def test_capped_polish_falls_back_on_the_projected_iterate(depth, monkeypatch):
    """With more active blocks than the polish may take (large d), the polish alone cannot
    certify; the projected ADMM iterate is tried too and the solve still ends optimal."""
    X, y, prob = make_problem(40, 4, 10, depth, 2, 3, 0.05)
    ref = reference(prob)
    active = int(np.count_nonzero(np.linalg.norm(ref.weights, axis=3).sum(axis=2) > 0))
    assert active >= 4  # enough active blocks that a two-block cap drops some
    cap = 2 * prob.width * prob.n_features
    monkeypatch.setattr(admm_module, "_max_polish_variables", lambda n_samples: cap)

    # no column generation either, so the polish stays on two blocks at every finish
    def no_blocks(run, candidate):
        return np.zeros((2, prob.n_blocks), dtype=bool)

    monkeypatch.setattr(admm_module._Run, "_violated_blocks", no_blocks)
    res = prob.solve(eps_rel=1e-5, max_iter=20_000)
    assert res.status == "optimal", res
    assert res.objective == pytest.approx(ref.objective, rel=2e-5)
    assert_feasible_and_certified(prob, res, upper=ref.objective)


@pytest.mark.parametrize("device", ["numpy", "cpu"])
@pytest.mark.parametrize("depth", [2, 3])
def test_iterates_keep_the_requested_dtype(device, depth, request):
    """dtype="float32" means float32 iterates: no silent promotion to float64 (it would
    double the memory and the traffic the option is there to halve)."""
    prob = request.getfixturevalue("small" if depth == 2 else "small3")
    for dtype in ("float32", "float64"):
        solver = ar.ADMMSolver(prob, device=device, dtype=dtype)
        split = admm_module._Splitting(solver, solver.scaled)
        w, rho = split.initial_point(None, prob, ar.ADMMSettings())
        for _ in range(3):
            step = split.step(w, rho, 1.6)
            w = step.Tw
        pieces = [*w, step.z, step.x, step.s, step.u_s, step.Gx]
        assert {str(piece.dtype) for piece in pieces} == {dtype}


def test_anderson_buffers_follow_the_iterates(small):
    """Anderson's ring buffers take the iterates' dtype (and array module): a float32 solve
    with acceleration ends at the float64 solve's certified optimum."""
    reference_res = small.solve(anderson_memory=5)
    res = small.solve(anderson_memory=5, dtype="float32")
    assert reference_res.status == res.status == "optimal"
    assert res.objective == pytest.approx(reference_res.objective, rel=2e-6)
