"""cvxpy reference model of the convex program and a solve that returns a SolveResult."""

import time
import warnings

import numpy as np
from scipy import sparse

from ._validation import check_positive_float
from .certificate import certify
from .exceptions import ConvergenceWarning
from .results import SolveResult
from .status import SOLUTION_PRESENT, Status

#: cvxpy status string -> admmrelu Status; anything else is a solver error.
_STATUS_MAP = {
    "optimal": Status.OPTIMAL,
    "optimal_inaccurate": Status.OPTIMAL_INACCURATE,
    "user_limit": Status.MAX_ITER_REACHED,
}

SUPPORTED_CVXPY_SOLVERS = ("CLARABEL", "ECOS", "SCS")

#: Reference-grade Clarabel tolerances used unless the caller passes the option (its
#: defaults, 1e-8, often leave a relative certificate gap just above 1e-6).  ECOS stalls
#: below its defaults and SCS is a first-order method: both keep their own.
_DEFAULT_OPTIONS = {
    "CLARABEL": {"tol_gap_abs": 1e-10, "tol_gap_rel": 1e-10, "tol_feas": 1e-10},
    "ECOS": {},
    "SCS": {},
}


def to_cvxpy(problem):
    """Build the cvxpy model of ``problem``.

    The variable ``U`` (named "U") has shape (2 P m1, d): row ``(c P + t) m1 + j`` is
    neuron j of block t, copy c (c = 0 for w_t, 1 for w'_t), i.e. ``U.value`` reshapes to
    the (2, P, m1, d) layout of :class:`~admmrelu.problem.ConvexReLUProblem`.

    Returns
    -------
    (cvxpy.Problem, cvxpy.Variable)
    """
    import cvxpy as cp

    X, y = problem.X, problem.y
    arr = problem.arrangements
    n = problem.n_samples
    _, P, m1, d = problem.var_shape
    K = 2 * P * m1
    U = cp.Variable((K, d), name="U")
    XU = X @ U.T  # (n, K)
    masks1 = np.broadcast_to(arr.masks1[:, None], (n, 2, P, m1)).reshape(n, K)
    neuron_sign = np.broadcast_to(
        np.array([1.0, -1.0])[:, None, None] * arr.signs[None], (2, P, m1)
    ).reshape(K)
    forward_coef = masks1 * neuron_sign
    if arr.masks2 is not None:
        masks2 = np.broadcast_to(arr.masks2[:, None, :, None], (n, 2, P, m1)).reshape(n, K)
        forward_coef = forward_coef * masks2
    prediction = cp.sum(cp.multiply(forward_coef, XU), axis=1)
    constraints = [cp.multiply(2.0 * masks1 - 1.0, XU) >= 0]
    if arr.masks2 is not None:
        # second-layer pre-activation B_t w, one column per (copy, block)
        block_sum = sparse.csr_matrix(
            (np.ones(K), (np.arange(K), np.arange(K) // m1)), shape=(K, 2 * P)
        )
        B = cp.multiply(masks1 * np.tile(arr.signs.reshape(-1), 2), XU) @ block_sum
        side = 2.0 * np.tile(arr.masks2, (1, 2)) - 1.0
        constraints.append(cp.multiply(side, B) >= 0)
    objective = 0.5 * cp.sum_squares(prediction - y) + problem.beta * cp.sum(cp.norm(U, 2, axis=1))
    return cp.Problem(cp.Minimize(objective), constraints), U


def solve_cvxpy(problem, cvxpy_solver="CLARABEL", gap_tol=1e-6, verbose=False, **solver_options):
    """Solve ``problem`` with cvxpy and return the same record the ADMM returns.

    The cvxpy point is projected onto the cones (each violating block, exactly) so that
    the returned weights are feasible and ``res.network()`` attains ``res.objective``;
    then the dual certificate of formulation.md §6 is computed.

    Parameters
    ----------
    problem : ConvexReLUProblem
    cvxpy_solver : {"CLARABEL", "ECOS", "SCS"}, default="CLARABEL"
    gap_tol : float, default=1e-6
        The status is decided by the certificate, which is rigorous: ``optimal`` when the
        backend returned a solution (cvxpy "optimal" or "optimal_inaccurate") and the
        certified gap of the projected, feasible point is ``<= gap_tol * objective``;
        ``optimal_inaccurate`` (with a :class:`~admmrelu.exceptions.ConvergenceWarning`)
        when the gap is larger.  Backend failures give ``solver_error`` and the zero point.
    verbose : bool, default=False
        Passed to cvxpy (prints the backend's log).
    **solver_options
        Passed to ``cvxpy.Problem.solve``.  Clarabel defaults to ``tol_gap_abs``,
        ``tol_gap_rel`` and ``tol_feas`` of 1e-10 here; options given take precedence.
    """
    import cvxpy as cp

    if cvxpy_solver not in SUPPORTED_CVXPY_SOLVERS:
        raise ValueError(
            f"cvxpy_solver must be one of {SUPPORTED_CVXPY_SOLVERS}; got {cvxpy_solver!r}"
        )
    gap_tol = check_positive_float(gap_tol, "gap_tol")
    start = time.perf_counter()
    model, U = to_cvxpy(problem)
    setup_time = time.perf_counter() - start
    start = time.perf_counter()
    try:
        options = {**_DEFAULT_OPTIONS[cvxpy_solver], **solver_options}
        with warnings.catch_warnings():  # the certificate below decides, and warns if needed
            warnings.filterwarnings("ignore", "Solution may be inaccurate", UserWarning)
            model.solve(solver=cvxpy_solver, verbose=verbose, **options)
        solver_status = model.status
    except cp.error.SolverError as err:
        solver_status = f"solver_error: {err}"
    solve_time = time.perf_counter() - start
    compile_time = getattr(model, "compilation_time", None) or 0.0  # cvxpy's canonicalisation
    setup_time, solve_time = setup_time + compile_time, max(solve_time - compile_time, 0.0)

    start = time.perf_counter()
    if U.value is None:
        weights = np.zeros(problem.var_shape)
    else:
        weights = problem.project(np.asarray(U.value).reshape(problem.var_shape))
    objective = problem.objective(weights)
    prediction = problem.forward(weights)
    cert = certify(problem, prediction)
    certificate_time = time.perf_counter() - start

    gap = objective - cert.dual_bound
    status = _STATUS_MAP.get(solver_status, Status.SOLVER_ERROR)
    if status in SOLUTION_PRESENT:
        status = Status.OPTIMAL if gap <= gap_tol * objective else Status.OPTIMAL_INACCURATE
    stats = model.solver_stats
    result = SolveResult(
        status=status,
        objective=objective,
        dual_bound=cert.dual_bound,
        gap=gap,
        weights=weights,
        signs=problem.arrangements.signs,
        depth=problem.depth,
        arrangements_exact=problem.arrangements.exact,
        max_violation=problem.constraint_violation(weights),
        dual_ratio=cert.dual_ratio,
        iterations=int(stats.num_iters or 0) if stats is not None else 0,
        setup_time=setup_time,
        solve_time=solve_time,
        polish_time=0.0,
        certificate_time=certificate_time,
        solver=f"cvxpy:{cvxpy_solver}",
        solver_status=str(solver_status),
        dual_point=cert.scale * (problem.y - prediction),
    )
    if status != Status.OPTIMAL:
        warnings.warn(
            f"cvxpy:{cvxpy_solver} ended with status {solver_status!r}; the certified gap is "
            f"{gap:.3e} (relative {result.relative_gap:.3e}, tolerance {gap_tol:.1e}). "
            "Tighten the solver's tolerances, try cvxpy_solver='CLARABEL', or raise gap_tol.",
            ConvergenceWarning,
            stacklevel=3,
        )
    return result
