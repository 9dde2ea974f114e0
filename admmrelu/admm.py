r"""The ADMM solver of the convex program (13).

The solver works on the scaled program of :mod:`admmrelu.scaling` (unit-size data,
unit-norm cone rows ``G^``) and splits it as

    minimise  f(x) + g_z(z) + g_s(s)   subject to   x = z,   G^ x = s,

* depth 2: ``f(x) = 0.5 ||F~ x - y~||^2``, ``g_z = beta~ ||.||_{2,1}`` (d-groups),
  ``g_s = indicator(s >= 0)``;
* depth 3: ``f = 0`` and the loss moves onto the second-layer slacks, ``g_s(s) =
  indicator(s >= 0) + 0.5 ||sum_t h D2_t (s_t - s'_t) - y~||^2`` (the prediction of a
  feasible point is a linear function of its second-layer rows, see :mod:`admmrelu.prox`).

With one penalty rho on both consensus constraints, over-relaxation alpha and scaled
duals ``u = (u_z, u_s)``, one iteration is the Douglas-Rachford map ``w <- T(w)`` of the
point ``w = (z + u_z, s + u_s)``::

    z = prox_{g_z / rho}(w_z),   s = prox_{g_s / rho}(w_s),   u = w - (z, s)
    x = argmin f(x) + rho/2 ||x - z + u_z||^2 + rho/2 ||G^ x - s + u_s||^2   (linsys)
    T(w) = alpha (x, G^ x) + (1 - alpha) (z, s) + u

``T`` is firmly non-expansive for alpha < 2, so it is safe to accelerate with Anderson
(:mod:`admmrelu.anderson`).  Every ``check_every`` iterations the solver measures

* the primal residual ``r_p = ||(x - z, G^ x - s)||_inf``,
* the dual residual ``r_d = rho ||(x - z) + G^T (G^ x - s)||_inf``, which equals the
  gradient of the Lagrangian at ``(x, rho u)``, and their tolerances
  ``eps_abs + eps_rel * (size of their terms)`` (OSQP's rule),

adapts rho by residual balancing (by iteration count only, so runs are reproducible), and
tracks the set of non-zero blocks of z.  When the residuals are met, or the active set has
been stable for a while, it *finishes*: polish on the active blocks
(:mod:`admmrelu.polish`; otherwise project z onto the cones), add any block the
certificate shows to be violated (column generation), and certify the feasible point
(:mod:`admmrelu.certificate`).  The status is ``optimal`` only when that certified gap is
within ``eps_abs + eps_rel * objective`` and the point is cone-feasible to ``eps_feas``.
"""

import dataclasses
import time
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from .anderson import AndersonAccelerator
from .certificate import (
    bounds_from_products,
    certify,
    improve_multipliers,
    scaled_dual_bound,
)
from .kernels import BoundOperators, get_backend
from .kernels._reference import slack
from .linsys import BlockDiagonalSystem, KroneckerWoodburySystem
from .polish import polish
from .results import History, SolveResult
from .scaling import ScaledProblem
from .settings import ADMMSettings
from .solver_log import SolverLog
from .status import Status

#: Residual balancing changes rho only by a factor outside [1 / _RHO_BAND, _RHO_BAND].
_RHO_BAND = 5.0
#: rho stays within these bounds (of the scaled problem).
_RHO_MIN, _RHO_MAX = 1e-6, 1e6
#: The polish starts from the blocks of z above this fraction of its largest block norm
#: (the certificate adds any block that was missed; docs/solver.md §4 says why 1%).
_POLISH_FRACTION = 1e-2
#: Flops that one interior-point iteration of the polish may cost: a dense Cholesky of
#: 6000 variables (about 2 s on one core here, so a polish of up to about a minute and a
#: half).  Past it the ADMM alone must reach the tolerance, which at small beta costs far
#: more (its tail); with few samples the Woodbury path (n^2 N) allows more variables than
#: the dense one (N^3 / 3), see _max_polish_variables.
_POLISH_MAX_FLOPS = 6000**3 / 3
#: A finish is tried once the polish's blocks changed by at most _SETTLED_CHANGE of their
#: number (at least one block) over this many iterations ...
_STABLE_ITERATIONS = 50
_SETTLED_CHANGE = 0.1
#: ... and the residuals are within this factor of their tolerances.
_LOOSE_FACTOR = 1e5
#: An early finish (residuals not yet met) is tried only when the polish's estimated
#: flops (_IPM_ITERATIONS interior-point iterations) are below _CHEAP_POLISH_FLOPS (about
#: 0.3 s), or below _POLISH_COST_RATIO times the flops of the iterations so far, or when
#: the ADMM's gap estimate is within _EARLY_FINISH_GAP of its objective.
_IPM_ITERATIONS = 40
_CHEAP_POLISH_FLOPS = 1e10
_POLISH_COST_RATIO = 4.0
_EARLY_FINISH_GAP = 1e-2
#: Iterations to wait after a failed finish before the next (doubled after each failure).
_FIRST_WAIT = 50
#: Rounds of adding the blocks that the certificate finds violated, per finish.
_COLUMN_ROUNDS = 10
#: Fraction of the gap tolerance that the certificate may spend on unrefined blocks.
_CERTIFICATE_SHARE = 0.1
#: Exact dual-norm solves stop once the bound is within this fraction of the gap tolerance.
_SUFFICIENT_SHARE = 0.5
#: Accelerated gradient steps that improve the ADMM's multipliers before a certificate.
_DUAL_ITERATIONS = 50
#: Limits of the run: the final status relaxes the tolerances by this factor.
_INACCURATE_FACTOR = 10.0
#: Blocks below this fraction of the largest are zeroed in the returned point when that
#: costs at most _SPARSE_SLACK of the gap tolerance (see _Run._consider_sparser).
_SPARSE_FRACTION = 1e-6
_SPARSE_SLACK = 0.1
#: After time_limit, the certificate of the last iterate may take this fraction of the
#: limit plus these seconds (the documented bound on the overrun).
_GRACE_FRACTION = 0.05
_GRACE_SECONDS = 0.05


@dataclass(frozen=True)
class ADMMState:
    """What a warm start needs from an earlier ADMM solve (scaled problem).

    Attributes
    ----------
    w : ndarray
        The Douglas-Rachford point ``(z + u_z, s + u_s)``, flattened.
    rho : float
        The final penalty.
    beta : float
        The scaled beta it was computed for.
    polish_rows : ndarray or None
        (2, P, n R) bool: the cone rows the polishes needed; a warm-started solve keeps
        them from its first polish on.
    """

    w: np.ndarray
    rho: float
    beta: float
    polish_rows: np.ndarray | None = None


@dataclass(frozen=True)
class _Candidate:
    """A cone-feasible point of the original problem and its certificate."""

    weights: np.ndarray
    objective: float
    dual_bound: float
    dual_ratio: float
    max_violation: float
    relative_violation: float
    block_norms: np.ndarray  # exact sigma_t(+-A_t^T v) (2, P) where refined, NaN elsewhere
    dual_point: np.ndarray  # c v (n,): the dual-feasible point whose d(c v) is dual_bound

    @property
    def gap(self) -> float:
        return self.objective - self.dual_bound


class ADMMSolver:
    """ADMM for one problem's data and blocks; solve it for any beta.

    The setup (scaling, the x-update factorizations, the data on the device) depends on
    X and the blocks only, so :meth:`solve` can be called for many betas
    (:func:`solve_path`) and reuses it.

    Parameters
    ----------
    problem : ConvexReLUProblem
    device : {"cpu", "gpu", "auto", "numpy"}, default="cpu"
        Where the iterations run: ``"cpu"`` (numba kernels), ``"gpu"`` (cupy; every
        iterate stays on the GPU and only the checks every ``check_every`` iterations
        read scalars back), ``"auto"`` (the GPU when usable), ``"numpy"`` (the plain
        reference kernels, for comparisons).  The finish (polish, certificate) always
        runs on the host in float64.
    dtype : {"float64", "float32"}, default="float64"
        Precision of the iterations.  float32 halves memory and traffic; the returned
        point and its certificate are still computed in float64, so the statuses keep
        their meaning (float32 iterates just reach the finish less precisely).
    max_memory : float or None, default=None
        Memory budget in bytes (None: the environment variable ``ADMMRELU_MAX_MEMORY``,
        else 80% of the available memory; on the GPU, of its free memory).  The peak of
        the setup and the iterations is estimated first (:func:`admmrelu.memory.solve_memory`)
        and a solve above the budget raises :class:`~admmrelu.exceptions.MemoryBudgetError`
        before allocating (docs/memory.md).
    """

    def __init__(self, problem, device: str = "cpu", dtype: str = "float64", max_memory=None):
        from .memory import check_solve_memory

        start = time.perf_counter()
        if dtype not in ("float64", "float32"):
            raise ValueError(f"dtype must be 'float64' or 'float32'; got {dtype!r}")
        self.backend = get_backend(device)
        check_solve_memory(problem, self.backend.device, dtype, max_memory)
        self.dtype = dtype
        self.problem = problem
        self.scaled = ScaledProblem.from_problem(problem)
        arr = problem.arrangements
        to_device = self.backend.asarray
        masks1 = to_device(arr.masks1)
        signs = to_device(arr.signs, dtype)
        masks2 = None if arr.masks2 is None else to_device(arr.masks2)

        def operators(X):
            return BoundOperators(self.backend, to_device(X, dtype), masks1, signs, masks2)

        # the cone rows (unit rows X^), the loss (X~), and the original problem (X): the
        # certificate's multiplier improvement (100 products per finish) runs on the last
        self.cone_operators = operators(self.scaled.X_cone)
        self.loss_operators = operators(self.scaled.problem.X)
        self.original_operators = operators(problem.X)
        if problem.depth == 2:
            self.system = KroneckerWoodburySystem(self.loss_operators, self.cone_operators.X)
        else:
            self.system = BlockDiagonalSystem(self.cone_operators)
        self.setup_time = time.perf_counter() - start
        self._setup_pending = True  # the first solve reports the setup time

    def solve(self, beta: float | None = None, **options) -> SolveResult:
        """Solve at ``beta`` (default: the problem's) with the options of
        :class:`~admmrelu.settings.ADMMSettings`."""
        settings = ADMMSettings.from_options(options)
        problem = self.problem if beta is None else self.problem.with_beta(beta)
        scaled = self.scaled.with_beta(problem.beta)
        setup_time = self.setup_time if self._setup_pending else 0.0
        self._setup_pending = False
        run = _Run(self, problem, scaled, settings)
        return run.execute(setup_time)


def solve_admm(
    problem, device: str = "cpu", dtype: str = "float64", max_memory=None, **options
) -> SolveResult:
    """``problem.solve(solver="admm", ...)``: set up (see :class:`ADMMSolver` for
    ``device``, ``dtype`` and ``max_memory``) and solve once."""
    return ADMMSolver(problem, device, dtype, max_memory).solve(**options)


def solve_path(
    problem, betas, device: str = "cpu", dtype: str = "float64", max_memory=None, **options
) -> list[SolveResult]:
    """Solve ``problem`` for each beta in ``betas``, each warm-started from the previous.

    One setup (scaling, factorizations) serves the whole path, and each solve starts
    from the previous solution and rho.  Betas are solved in the order given; a
    decreasing sequence (from near ``problem.beta_max`` down) keeps the early solves
    sparse and cheap.  Options are those of ``problem.solve(solver="admm", ...)``
    except ``warm_start``.

    Returns
    -------
    list of SolveResult, one per beta, in the order of ``betas``; after a Ctrl-C, the
    results up to the interrupted solve (its ``solver_status`` is ``"interrupted"``).
    """
    if "warm_start" in options:
        raise TypeError("solve_path chains warm starts itself; drop the warm_start option")
    betas = list(np.atleast_1d(np.asarray(betas, dtype=np.float64)))
    if not betas:
        raise ValueError("betas must hold at least one value")
    solver = ADMMSolver(problem, device, dtype, max_memory)
    results, previous = [], None
    for beta in betas:
        previous = solver.solve(beta, warm_start=previous, **options)
        results.append(previous)
        if previous.solver_status == Status.INTERRUPTED:
            break  # Ctrl-C stops the path, not only the solve it came in
    return results


class _Splitting:
    """The scaled program at one beta, split as f(x) + g_z(z) + g_s(s) (module doc).

    Its arrays live on the solver's device; the point ``w`` is a pair ``(w_z, w_s)`` of
    shapes (2, P, m1, d) and (n, 2, P, R).
    """

    def __init__(self, solver: ADMMSolver, scaled: ScaledProblem):
        problem = scaled.problem
        arr = problem.arrangements
        backend = solver.backend
        self.backend = backend
        self.xp = backend.xp
        self.system = solver.system
        self.scaled = scaled
        self.beta = problem.beta
        self.var_shape = problem.var_shape
        self.cone_shape = problem.cone_shape
        self.cone_operators = solver.cone_operators
        self.loss_operators = solver.loss_operators
        self.dtype = solver.dtype
        self.depth = problem.depth
        self.y = backend.asarray(problem.y, self.dtype)
        if self.depth == 2:
            self.loss_gradient_at_zero = self.loss_operators.adjoint(self.y)  # F~^T y~
            self.loss_coef = None
        else:
            self.loss_gradient_at_zero = None
            coef = scaled.row_norms[:, None] * arr.masks2  # (n, P): h_i [D2_t(i) = 1]
            # copy-major, as (n, 2, P) reshapes
            self.loss_coef = backend.asarray(np.hstack([coef, -coef]), self.dtype)
            self.theta = -self.y  # residuals of the loss-coupled prox, warm-started

    def second_layer_slacks(self, w_s, rho):
        """q (n, 2, P): the prox of the loss-coupled second-layer rows (depth 3), else None."""
        if self.depth == 2:
            return None
        n, _, P, R = self.cone_shape
        a = w_s[..., R - 1].reshape(n, 2 * P)
        q, self.theta = self.backend.loss_coupled_projection(
            a, self.loss_coef, self.y, rho, self.theta
        )
        return q.reshape(n, 2, P)

    # ------------------------------------------------------------------- step
    def step(self, w, rho, alpha):
        """One ADMM iteration ``T(w)`` (two fused passes over the slacks, module doc)."""
        cone = self.cone_operators
        w_z, w_s = w
        z = self.backend.block_soft_threshold(w_z, self.beta / rho)
        q = self.second_layer_slacks(w_s, rho)
        # rho ((z - u_z) + G^T (s - u_s)) with u = w - (z, s)
        rhs = rho * ((2 * z - w_z) + cone.reflected_cone_adjoint(w_s, q))
        if self.loss_gradient_at_zero is not None:
            rhs += self.loss_gradient_at_zero
        x = self.system.solve(rhs, rho)
        Tw = (
            w_z + alpha * (x - z),  # alpha x + (1 - alpha) z + u_z
            cone.relaxed_slack_update(x, w_s, q, alpha),
        )
        return _Step(self, w, z, q, x, Tw)

    def rescale_duals(self, step, factor):
        """The point w after the scaled duals are multiplied by ``factor`` (new rho)."""
        return (step.z + factor * step.u_z, step.s + factor * step.u_s)

    # ---------------------------------------------------------- host transfers
    def to_host(self, a) -> np.ndarray:
        """A device array as a float64 numpy array."""
        return np.asarray(self.backend.to_host(a), dtype=np.float64)

    def pack(self, w):
        """The point as one flat array on the device (Anderson, warm-start state)."""
        return self.xp.concatenate([w[0].ravel(), w[1].ravel()])

    def unpack(self, flat):
        """Inverse of :meth:`pack` (views of ``flat``)."""
        size_z = int(np.prod(self.var_shape))
        return flat[:size_z].reshape(self.var_shape), flat[size_z:].reshape(self.cone_shape)

    def initial_point(self, warm_start, problem, settings):
        """(w, rho) from a warm start, or the origin and the default rho."""
        default_rho = settings.rho or 1.0
        xp = self.xp
        if warm_start is None:
            zeros = (
                xp.zeros(self.var_shape, dtype=self.dtype),
                xp.zeros(self.cone_shape, dtype=self.dtype),
            )
            return zeros, default_rho
        _check_warm_start(warm_start, problem)
        state = warm_start.admm_state
        size = int(np.prod(self.var_shape)) + int(np.prod(self.cone_shape))
        if state is not None and state.w.shape == (size,):
            # the duals of the z-part scale with beta (u_z lies in beta/rho times a unit ball)
            w_z, w_s = self.unpack(self.backend.asarray(state.w, self.dtype))
            z = self.backend.block_soft_threshold(w_z, state.beta / state.rho)
            w_z = z + (w_z - z) * (self.beta / state.beta)
            return (w_z, w_s), settings.rho or state.rho
        z = self.backend.asarray(self.scaled.from_original(warm_start.weights), self.dtype)
        return (z, self.cone_operators.cone(z)), default_rho


class _Step:
    """One iteration's results; the pieces only the checks need are computed on demand."""

    def __init__(self, split, w, z, q, x, Tw):
        self._split = split
        self.w, self.z, self.q, self.x, self.Tw = w, z, q, x, Tw

    @cached_property
    def s(self):
        return slack(self.w[1], self.q)

    @cached_property
    def u_z(self):
        return self.w[0] - self.z

    @cached_property
    def u_s(self):
        return self.w[1] - self.s

    @cached_property
    def Gx(self):
        return self._split.cone_operators.cone(self.x)


def _check_warm_start(warm_start, problem):
    if not isinstance(warm_start, SolveResult):
        raise TypeError(
            "warm_start must be a SolveResult of an earlier solve of this problem (any "
            f"solver, any beta); got {type(warm_start).__name__}"
        )
    if warm_start.weights.shape != problem.var_shape:
        raise ValueError(
            f"warm_start has weights of shape {warm_start.weights.shape} but this problem's "
            f"variable has shape {problem.var_shape}; warm-start only from a solve on the "
            "same data and blocks"
        )


class _Run:
    """One solve: the iteration loop, its checks, finishes and the final result."""

    def __init__(self, solver, problem, scaled, settings):
        self.problem = problem
        self.scaled = scaled
        self.settings = settings
        self.split = _Splitting(solver, scaled)
        self.original_operators = solver.original_operators
        self.log = SolverLog(settings.verbose)
        self.history = {k: [] for k in History.__dataclass_fields__}
        self.best: _Candidate | None = None  # the feasible point of lowest objective
        self.best_bound = -np.inf  # the highest certified lower bound
        self.best_dual_point = None  # the dual-feasible point that certified it
        self.polish_time = 0.0
        self.certificate_time = 0.0
        self.deadline = None  # perf_counter time at which time_limit runs out
        # (2, P): blocks that column generation added; every later polish keeps them
        self.generated = np.zeros((2, problem.n_blocks), dtype=bool)
        n, _, P, R = problem.cone_shape
        self.known_rows = np.zeros((2, P, n * R), dtype=bool)  # rows earlier polishes needed
        self._inherit(settings.warm_start)

    def _inherit(self, warm_start):
        """From a warm start of the same problem (any beta): its non-zero blocks join every
        polish (like generated ones) and its polishes' rows are kept from the start; a
        path of nearby betas then polishes once per solve, with no column or row rounds."""
        if not isinstance(warm_start, SolveResult):
            return  # (None, or a bad warm start, which the initial point reports)
        if warm_start.weights.shape != self.problem.var_shape:
            return
        self.generated |= np.linalg.norm(warm_start.weights, axis=3).sum(axis=2) > 0
        state = warm_start.admm_state
        rows = None if state is None else state.polish_rows
        if rows is not None and rows.shape == self.known_rows.shape:
            self.known_rows |= rows

    # ---------------------------------------------------------------- driver
    def _time_left(self) -> float | None:
        return None if self.deadline is None else max(self.deadline - time.perf_counter(), 0.0)

    def execute(self, setup_time: float) -> SolveResult:
        s = self.settings
        start = time.perf_counter()
        if s.time_limit is not None:
            self.deadline = start - setup_time + s.time_limit
        w, rho = self.split.initial_point(s.warm_start, self.problem, s)
        self.log.header(self.problem, s, rho)
        accel = AndersonAccelerator(s.anderson_memory)
        status, step, iteration = None, None, 0
        stop_reason = None  # why the loop stopped, when not by converging
        recent_sets, next_finish, wait = {}, 0, _FIRST_WAIT  # iteration -> polish blocks
        try:
            while status is None:
                if iteration >= s.max_iter:
                    status = Status.MAX_ITER_REACHED
                    break
                if self.deadline is not None and time.perf_counter() >= self.deadline:
                    status = Status.TIME_LIMIT_REACHED
                    break
                step = self.split.step(w, rho, s.alpha)
                iteration += 1
                if iteration % s.check_every == 0:
                    if not all(bool(self.split.xp.isfinite(part).all()) for part in step.Tw):
                        status = Status.NUMERICAL_ERROR
                        break
                    check = self._check(step, rho, iteration, start)
                    recent_sets[iteration] = self._polish_blocks(self.split.to_host(step.z))
                    stable = _settled(recent_sets, iteration)
                    loose = check.within(_LOOSE_FACTOR)
                    early = s.polish and stable and loose
                    if early and not self._early_finish_pays(recent_sets[iteration], iteration):
                        early = False
                    if iteration >= next_finish and (check.within(1.0) or early):
                        if self._finish(step, rho, tolerance_factor=1.0):
                            status = Status.OPTIMAL
                            break
                        next_finish, wait = iteration + wait, 2 * wait
                    if s.adaptive_rho and _adapt_now(iteration, s):
                        new_rho = check.balanced_rho(rho)
                        if new_rho != rho:
                            w = self.split.rescale_duals(step, rho / new_rho)
                            rho = new_rho
                            accel.reset()
                            continue
                w = self._next_point(accel, w, step.Tw)
        except KeyboardInterrupt:
            status = Status.INTERRUPTED
        if status not in (Status.OPTIMAL, Status.NUMERICAL_ERROR) and step is not None:
            stop_reason = status
            status = self._grade_after_limit(status, step, rho)
        if self.best is None:  # no usable iterate (max_iter=0, a numerical error at once)
            self._consider(self._candidate(np.zeros(self.problem.var_shape), None))
        solve_end = time.perf_counter()
        state = ADMMState(
            w=self.split.to_host(self.split.pack(w)),
            rho=rho,
            beta=self.split.beta,
            polish_rows=self.known_rows,
        )
        result = self._result(status, iteration, setup_time, solve_end - start, state, rho)
        if stop_reason is not None:
            result = dataclasses.replace(result, solver_status=str(stop_reason))
        return result

    def _early_finish_pays(self, blocks, iteration) -> bool:
        """Whether a finish before the residuals are met is worth its cost now.

        A polish costs about ``_IPM_ITERATIONS`` interior-point iterations on the
        ``blocks`` (2, P) of z, each ``min(N^3 / 3, n^2 N + n^3 / 3)`` flops; it is tried
        when that is at most ``_POLISH_COST_RATIO`` times the flops the ADMM iterations
        have cost so far, when it is small in itself (``_CHEAP_POLISH_FLOPS``), or when
        the ADMM's own gap estimate (the verbose table's) is within
        ``_EARLY_FINISH_GAP`` of the objective.  Flops, not seconds, so the schedule is
        reproducible.  (On Friedman-1, n=3000 at small beta, a polish of 333 blocks costs
        about 4000 iterations' worth; started after 60 iterations at a 94% gap estimate,
        it could not certify and was repeated.)"""
        problem = self.problem
        n, d, m1 = problem.n_samples, problem.n_features, problem.width
        N = float(np.count_nonzero(blocks)) * m1 * (d + 1)
        ipm_iteration = min(N**3 / 3.0, n * n * N + n**3 / 3.0)
        polish_flops = _IPM_ITERATIONS * ipm_iteration
        if polish_flops <= _CHEAP_POLISH_FLOPS:
            return True
        admm_iteration = 16.0 * n * d * problem.n_blocks * m1
        admm_iteration += (
            4.0 * n * n if problem.depth == 2 else 4.0 * problem.n_blocks * (m1 * d) ** 2
        )
        if polish_flops <= _POLISH_COST_RATIO * iteration * admm_iteration:
            return True
        objective = self.history["objective"][-1]
        gap = objective - self.history["dual_bound"][-1]
        return abs(gap) <= _EARLY_FINISH_GAP * abs(objective)

    def _next_point(self, accel, w, Tw):
        """``T(w)``, or its Anderson extrapolation when acceleration is on."""
        if accel.memory == 0:
            return Tw
        split = self.split
        return split.unpack(accel.step(split.pack(w), split.pack(Tw)))

    def _grade_after_limit(self, status, step, rho):
        """After a limit or an interrupt: certify the projected last iterate (no polish:
        a limit is never followed by unbounded work), then grade the best point against
        the best bound.  The status follows the certified gap: ``optimal`` when it meets
        the tolerances, ``optimal_inaccurate`` when it meets them relaxed by
        ``_INACCURATE_FACTOR``, else the limit's own status.

        After ``time_limit`` this work gets ``_GRACE_FRACTION`` of the limit plus
        ``_GRACE_SECONDS``; a second Ctrl-C skips it."""
        if status == Status.TIME_LIMIT_REACHED:
            limit = self.settings.time_limit
            self.deadline = self.deadline + _GRACE_FRACTION * limit + _GRACE_SECONDS
        try:
            self._finish(step, rho, 1.0, use_polish=False)
        except KeyboardInterrupt:
            pass
        if self._meets(self.best, 1.0, self.best_bound):
            return Status.OPTIMAL
        if self._meets(self.best, _INACCURATE_FACTOR, self.best_bound):
            return Status.OPTIMAL_INACCURATE
        return status

    # ----------------------------------------------------------------- checks
    def _check(self, step, rho, iteration, start):
        split = self.split
        r_prim = max(_inf_norm(step.x - step.z), _inf_norm(step.Gx - step.s))
        cone = split.cone_operators
        r_dual = rho * _inf_norm((step.x - step.z) + cone.cone_adjoint(step.Gx - step.s))
        prim_scale = max(
            _inf_norm(step.x), _inf_norm(step.z), _inf_norm(step.Gx), _inf_norm(step.s)
        )
        dual_terms = [rho * _inf_norm(step.u_z), rho * _inf_norm(cone.cone_adjoint(step.u_s))]
        if split.loss_gradient_at_zero is not None:
            dual_terms.append(_inf_norm(split.loss_gradient_at_zero))
        dual_scale = max(dual_terms)
        check = _Check(r_prim, r_dual, prim_scale, dual_scale, self.settings)
        objective, bound = self._estimate(step, rho)
        elapsed = time.perf_counter() - start
        for key, value in (
            ("iteration", iteration),
            ("objective", objective),
            ("dual_bound", bound),
            ("r_prim", r_prim),
            ("r_dual", r_dual),
            ("rho", rho),
            ("time", elapsed),
        ):
            self.history[key].append(value)
        self.log.row(iteration, objective, r_prim, r_dual, objective - bound, rho, elapsed)
        return check

    def _estimate(self, step, rho):
        """Objective at z (which may violate the cones slightly) and a cheap dual bound,
        both in the original scale: the verbose table's and the history's values.

        Computed on the device.  The bound takes the ADMM's cone multipliers; on the
        scaled rows ``G~ = h G^`` the multiplier ``mu^ / h`` gives ``G~^T (mu^ / h) =
        G^^T mu^``, so they enter through the unit-row operator directly.
        """
        split, xp = self.split, self.split.xp
        v = split.y - split.loss_operators.forward(step.z)
        regularizer = float(xp.sum(xp.linalg.norm(step.z, axis=3)))
        objective = 0.5 * float(v @ v) + split.beta * regularizer
        Z = split.loss_operators.adjoint(v)
        shifted = Z + split.cone_operators.cone_adjoint(self._admm_multipliers(step, rho))
        gamma = float(xp.max(bounds_from_products(Z, shifted)))
        bound, _ = scaled_dual_bound(v, split.y, split.beta, gamma)
        factor = self.scaled.objective_scale
        return factor * objective, factor * bound

    def _admm_multipliers(self, step, rho):
        """Cone multipliers of the scaled rows from the ADMM duals: ``max(0, -rho u_s)``."""
        return self.split.xp.maximum(-rho * step.u_s, 0)

    # ----------------------------------------------------------------- finish
    def _finish(self, step, rho, tolerance_factor, use_polish=True) -> bool:
        """Polish (or project), certify, keep the best point; True when it meets the
        tolerances multiplied by ``tolerance_factor``.

        The best point and the highest bound may come from different candidates (both
        bound the same optimum), so the test is on the best objective minus that bound.
        """
        to_host = self.split.to_host
        admm_mu = to_host(self._admm_multipliers(step, rho))
        z, w_z = to_host(step.z), to_host(step.w[0])
        candidate, capped = None, False
        if use_polish and self.settings.polish:
            working, capped = self._working_blocks(z)
            for _ in range(_COLUMN_ROUNDS):
                if self._time_left() == 0.0 or not working.any():
                    break
                start = time.perf_counter()
                result = polish(
                    self.scaled,
                    working,
                    w_z,
                    self._time_left(),
                    self.known_rows,
                    eps_rel=self.settings.eps_rel,
                )
                self.polish_time += time.perf_counter() - start
                if result is None:
                    self.log.message(f"polish on {working.sum()} blocks failed")
                    break
                self.known_rows |= result.rows | result.missing_rows
                mu = np.where(working[None, :, :, None], result.multipliers, admm_mu)
                weights = self.scaled.to_original(result.weights)
                candidate = self._candidate(weights, mu, exact_blocks=working)
                self._consider(candidate)  # kept at once: a Ctrl-C may come next round
                violated = self._violated_blocks(candidate) & ~working
                self.log.message(
                    f"polish on {working.sum()} blocks, {result.n_rows} rows: objective "
                    f"{candidate.objective:.10g}, gap {candidate.gap:.3e}"
                    + (f", adding {violated.sum()} blocks" if violated.any() else "")
                    + (f", {result.missing_rows.sum()} rows" if result.missing_rows.any() else "")
                )
                self.generated |= violated
                working_size = (working | violated).sum() * z.shape[2] * z.shape[3]
                if (
                    self._meets(candidate, tolerance_factor)
                    or not (violated.any() or result.missing_rows.any())
                    or working_size > 2 * _max_polish_variables(self.problem.n_samples)
                ):
                    break
                working |= violated
        if candidate is not None:
            met = self._meets(candidate, tolerance_factor)
            if met:
                self._consider_sparser(candidate, mu, working, tolerance_factor)
            if met or not capped:
                return met
        # The ADMM iterate itself, projected: the candidate when there is no polish, and a
        # second one when the polish was capped at _max_polish_variables (many active
        # blocks, large d) and so may have left out blocks the solution needs.
        self._consider(self._candidate(self.scaled.to_original(z), admm_mu))
        warm = self.settings.warm_start
        if not use_polish and warm is not None and warm.weights.shape == z.shape:
            # after a limit: never return worse than the point the solve started from
            self._consider(self._candidate(warm.weights, admm_mu))
        return self._meets(self.best, tolerance_factor, self.best_bound)

    def _consider_sparser(self, candidate, scaled_mu, exact_blocks, tolerance_factor):
        """The interior point leaves the blocks that are zero at the optimum at about its
        tolerance; with those below ``_SPARSE_FRACTION`` of the largest block set to
        zero, the point (a network with fewer neurons) replaces the best point when it
        still meets the tolerances and its objective is at most ``_SPARSE_SLACK`` of the
        gap tolerance higher."""
        U = candidate.weights
        norms = np.linalg.norm(U, axis=3).sum(axis=2)
        small = (norms > 0) & (norms <= _SPARSE_FRACTION * norms.max())
        if not small.any():
            return
        sparse_U = np.where(small[:, :, None, None], 0.0, U)
        sparse = self._candidate(sparse_U, scaled_mu, exact_blocks)
        self._raise_bound(sparse)
        slack = _SPARSE_SLACK * self._gap_tolerance(candidate.objective)
        if sparse.objective <= self.best.objective + slack and self._meets(
            sparse, tolerance_factor, self.best_bound
        ):
            self.best = sparse

    @staticmethod
    def _polish_blocks(z):
        """(2, P): the blocks of z above ``_POLISH_FRACTION`` of the largest block norm."""
        norms = np.linalg.norm(z, axis=3).sum(axis=2)
        return norms > _POLISH_FRACTION * norms.max()

    def _working_blocks(self, z):
        """(2, P): the blocks of the polish, and whether its size cap dropped any.

        The blocks of z above ``_POLISH_FRACTION`` of the largest (by norm), then those
        that column generation added earlier (or a warm start's); at most
        ``_max_polish_variables(n) / (m1 d)`` of them.  (Adding the blocks whose dual
        ratio at z was near 1 was measured too: it spared column-generation rounds at
        small beta but doubled the polish of sparse solutions, and cost more in sum.)"""
        norms = np.linalg.norm(z, axis=3).sum(axis=2)
        selected = norms > _POLISH_FRACTION * norms.max()
        wanted = selected | self.generated
        _, _, m1, d = z.shape
        most = max(1, _max_polish_variables(self.problem.n_samples) // (m1 * d))
        # selected blocks first, by norm; then the generated ones
        order = np.lexsort((-norms.ravel(), ~selected.ravel()))
        order = order[wanted.ravel()[order]]
        working = np.zeros(wanted.size, dtype=bool)
        working[order[:most]] = True
        capped = np.count_nonzero(selected) > most
        return working.reshape(wanted.shape), capped

    def _candidate(self, U, scaled_mu, exact_blocks=None) -> _Candidate:
        """Objective and certificate of the original-problem point U (made feasible).

        ``scaled_mu``: cone multipliers of the scaled rows (None: none known);
        ``exact_blocks`` (2, P): blocks whose multipliers are already accurate (the
        polish's); the others are improved first (:func:`improve_multipliers`), which
        spares most exact dual-norm solves.
        """
        start = time.perf_counter()
        problem = self.problem
        U = problem.project(U, self.deadline)
        prediction = problem.forward(U)
        mu = None
        if scaled_mu is not None:  # scaled row multipliers -> original rows: b mu^ / h
            h = self.scaled.row_norms[:, None, None, None]
            mu = scaled_mu * (self.scaled.y_scale / h)
            improved = self._improved_multipliers(problem.y - prediction, mu)
            if exact_blocks is None:
                exact_blocks = np.zeros((2, problem.n_blocks), dtype=bool)
            mu = np.where(exact_blocks[None, :, :, None], mu, improved)
        objective = problem.objective(U)
        target = 1.0 + _CERTIFICATE_SHARE * self.settings.eps_rel
        sufficient = objective - _SUFFICIENT_SHARE * self._gap_tolerance(objective)
        cert = certify(
            problem,
            prediction,
            mu,
            target_ratio=target,
            sufficient=sufficient,
            deadline=self.deadline,
        )
        self.certificate_time += time.perf_counter() - start
        return _Candidate(
            weights=U,
            objective=objective,
            dual_bound=cert.dual_bound,
            dual_ratio=cert.dual_ratio,
            max_violation=problem.constraint_violation(U),
            relative_violation=problem.constraint_violation(U, relative=True),
            block_norms=cert.block_norms,
            dual_point=cert.scale * (problem.y - prediction),
        )

    def _improved_multipliers(self, v, mu):
        """:func:`improve_multipliers` on the solver's device and dtype, back on the host."""
        split = self.split
        device_mu = improve_multipliers(
            self.original_operators,
            split.backend.asarray(v, split.dtype),
            split.backend.asarray(mu, split.dtype),
            _DUAL_ITERATIONS,
            self.deadline,
        )
        return split.to_host(device_mu)

    def _violated_blocks(self, candidate):
        """(2, P): blocks whose exact dual norm exceeds beta beyond the certificate's slack
        (adding them to the polish can lower the objective)."""
        target = self.problem.beta * (1.0 + _CERTIFICATE_SHARE * self.settings.eps_rel)
        return np.nan_to_num(candidate.block_norms, nan=0.0) > target

    def _gap_tolerance(self, objective) -> float:
        """``eps_abs b^2 + eps_rel |objective|``: the certified gap that "optimal" needs."""
        s = self.settings
        return s.eps_abs * self.scaled.objective_scale + s.eps_rel * abs(objective)

    def _meets(self, candidate, factor, bound=None) -> bool:
        """Whether ``candidate``'s gap to its own bound (or to ``bound``, another
        candidate's, when given) and its violation meet the tolerances times ``factor``."""
        tolerance = factor * self._gap_tolerance(candidate.objective)
        gap = candidate.gap if bound is None else candidate.objective - bound
        return gap <= tolerance and candidate.relative_violation <= self.settings.eps_feas

    def _consider(self, candidate):
        """Keep the lowest objective and the highest dual bound seen: every candidate's
        bound is valid for the same problem, so the returned gap is the smallest proven."""
        if self.best is None or candidate.objective < self.best.objective:
            self.best = candidate
        self._raise_bound(candidate)

    def _raise_bound(self, candidate):
        """Keep the highest certified bound, and the dual point that gave it."""
        if candidate.dual_bound > self.best_bound:
            self.best_bound, self.best_dual_point = candidate.dual_bound, candidate.dual_point

    # ----------------------------------------------------------------- result
    def _result(self, status, iterations, setup_time, solve_time, state, rho) -> SolveResult:
        best = self.best
        bound = self.best_bound
        history = History(**{k: np.asarray(v) for k, v in self.history.items()})
        solve_time = max(solve_time - self.polish_time - self.certificate_time, 0.0)
        result = SolveResult(
            status=status,
            objective=best.objective,
            dual_bound=bound,
            gap=best.objective - bound,
            weights=best.weights,
            signs=self.problem.arrangements.signs,
            depth=self.problem.depth,
            arrangements_exact=self.problem.arrangements.exact,
            max_violation=best.max_violation,
            dual_ratio=best.dual_ratio,
            iterations=iterations,
            setup_time=setup_time,
            solve_time=solve_time,
            polish_time=self.polish_time,
            certificate_time=self.certificate_time,
            solver="admm",
            solver_status=str(status),
            history=history,
            admm_state=state,
            dual_point=self.best_dual_point,
        )
        self.log.footer(result, rho)
        return result


@dataclass(frozen=True)
class _Check:
    """Residuals of one check and their tolerances (OSQP's mixed rule)."""

    r_prim: float
    r_dual: float
    prim_scale: float
    dual_scale: float
    settings: ADMMSettings

    def within(self, factor: float) -> bool:
        s = self.settings
        return self.r_prim <= factor * (s.eps_abs + s.eps_rel * self.prim_scale) and (
            self.r_dual <= factor * (s.eps_abs + s.eps_rel * self.dual_scale)
        )

    def balanced_rho(self, rho: float) -> float:
        """Residual balancing: ``rho sqrt((r_p / prim_scale) / (r_d / dual_scale))`` when
        that moves rho by more than a factor ``_RHO_BAND``; else rho unchanged."""
        tiny = np.finfo(float).tiny
        prim = self.r_prim / max(self.prim_scale, tiny)
        dual = self.r_dual / max(self.dual_scale, tiny)
        if prim <= 0 or dual <= 0:
            return rho
        factor = float(np.sqrt(prim / dual))
        if 1.0 / _RHO_BAND <= factor <= _RHO_BAND:
            return rho
        return float(np.clip(rho * factor, _RHO_MIN, _RHO_MAX))


def _max_polish_variables(n_samples: int, flops: float = _POLISH_MAX_FLOPS) -> int:
    """Most variables N of a polish whose interior-point iteration costs at most
    ``flops``: the dense Cholesky costs ``N^3 / 3``, the Woodbury path
    ``n^2 N + n^3 / 3`` (:mod:`admmrelu.conic_ipm`); the cheaper one sets the cap."""
    dense = (3.0 * flops) ** (1.0 / 3.0)
    n = float(n_samples)
    woodbury = (flops - n**3 / 3.0) / n**2
    return int(max(dense, woodbury))


def _settled(recent_sets: dict, iteration: int) -> bool:
    """Whether the polish's blocks now and ``_STABLE_ITERATIONS`` ago differ by at most
    ``max(1, _SETTLED_CHANGE * count)`` blocks (older entries are dropped).  In degenerate
    problems (many blocks represent nearly one neuron) the set keeps drifting by a block or
    two while the polish would already succeed; a strict "unchanged" test waits far longer.
    """
    then = iteration - _STABLE_ITERATIONS
    for old in [k for k in recent_sets if k < then]:
        del recent_sets[old]
    if then not in recent_sets:
        return False
    now = recent_sets[iteration]
    changed = int(np.count_nonzero(now != recent_sets[then]))
    return changed <= max(1, _SETTLED_CHANGE * int(now.sum()))


def _adapt_now(iteration: int, settings: ADMMSettings) -> bool:
    """rho is re-balanced at the second check (the initial rho is only a guess) and then
    every ``adaptive_rho_interval`` iterations."""
    return iteration == 2 * settings.check_every or iteration % settings.adaptive_rho_interval == 0


def _inf_norm(a) -> float:
    """``max |a|`` of a numpy or cupy array (0 when empty), as a host float."""
    return float(abs(a).max()) if a.size else 0.0
