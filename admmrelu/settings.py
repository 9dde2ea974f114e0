"""Settings of the ADMM solver, with their documented defaults and checks."""

from dataclasses import dataclass, fields

from ._validation import check_int, check_positive_float


@dataclass(frozen=True)
class ADMMSettings:
    """Options of ``prob.solve(solver="admm", ...)``.

    Residuals and tolerances refer to the scaled problem of :mod:`admmrelu.scaling`, in
    which X has unit RMS row norm and y unit RMS, so eps_abs is comparable across data sets.

    Attributes
    ----------
    eps_abs : float, default=1e-8
        Absolute tolerance on the primal and dual residuals (infinity norms) and on the
        certified gap.
    eps_rel : float, default=1e-6
        Relative tolerance: residuals below ``eps_abs + eps_rel * (size of their terms)``,
        and the certified gap below ``eps_abs * b^2 + eps_rel * objective`` (b the RMS of
        y).  ``optimal`` means the returned point met the gap and ``eps_feas``.
    eps_feas : float, default=1e-8
        Largest cone violation of the returned point relative to the scale of X and of the
        point (``problem.constraint_violation(U, relative=True)``).  Returned points are
        projected or polished, so this is met far below the default.
    max_iter : int, default=10_000
        ADMM iterations allowed (polish solves do not count).
    time_limit : float or None, default=None
        Seconds allowed for the whole solve, setup included; None means no limit.
    rho : float or None, default=None
        Initial penalty of the scaled problem; None picks ``1.0``, or the warm start's
        final rho.
    alpha : float, default=1.6
        Over-relaxation, in (0, 2).
    adaptive_rho : bool, default=True
        Residual balancing: at the second check, then every ``adaptive_rho_interval``
        iterations, rho is multiplied by
        ``sqrt(relative primal residual / relative dual residual)`` when that factor is
        outside [1/5, 5].  Decided by iteration count only, so runs are reproducible.
    adaptive_rho_interval : int, default=50
    anderson_memory : int, default=0
        Memory of the safeguarded Anderson acceleration; 0 turns it off.  Off by default:
        the finish (polish) stops the ADMM long before its tail, and on the benchmark
        instances Anderson did not reduce the iterations to a finish while adding the cost
        of about one iteration per step (docs/solver.md).
    polish : bool, default=True
        Solve the reduced program on the identified blocks and rows (see
        :mod:`admmrelu.polish`) once the active set is stable or the residuals are met.
    check_every : int, default=10
        Iterations between termination checks (each costs a few extra matrix products).
    verbose : bool, default=False
        Print a table: iteration, objective, residuals, gap, rho, time.
    warm_start : SolveResult or None, default=None
        An earlier result on the same data and blocks (any beta): the ADMM restarts from
        its iterates and rho; a cvxpy result gives its weights.
    """

    eps_abs: float = 1e-8
    eps_rel: float = 1e-6
    eps_feas: float = 1e-8
    max_iter: int = 10_000
    time_limit: float | None = None
    rho: float | None = None
    alpha: float = 1.6
    adaptive_rho: bool = True
    adaptive_rho_interval: int = 50
    anderson_memory: int = 0
    polish: bool = True
    check_every: int = 10
    verbose: bool = False
    warm_start: object = None

    def __post_init__(self):
        check_positive_float(self.eps_abs, "eps_abs", allow_zero=True)
        check_positive_float(self.eps_rel, "eps_rel", allow_zero=True)
        if self.eps_abs == 0 and self.eps_rel == 0:
            raise ValueError("eps_abs and eps_rel cannot both be 0; set eps_rel=1e-6, say")
        check_positive_float(self.eps_feas, "eps_feas", allow_zero=True)
        check_int(self.max_iter, "max_iter", minimum=0)
        if self.time_limit is not None:
            check_positive_float(self.time_limit, "time_limit")
        if self.rho is not None:
            check_positive_float(self.rho, "rho")
        alpha = check_positive_float(self.alpha, "alpha")
        if not alpha < 2:
            raise ValueError(f"alpha (over-relaxation) must lie in (0, 2); got {alpha}")
        check_int(self.adaptive_rho_interval, "adaptive_rho_interval", minimum=1)
        check_int(self.anderson_memory, "anderson_memory", minimum=0)
        check_int(self.check_every, "check_every", minimum=1)
        for name in ("adaptive_rho", "polish", "verbose"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be True or False; got {getattr(self, name)!r}")

    @classmethod
    def from_options(cls, options: dict) -> "ADMMSettings":
        """Settings from ``solve`` keyword arguments, rejecting unknown names."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise TypeError(f"unknown ADMM option(s) {unknown}; the options are {sorted(known)}")
        return cls(**options)
