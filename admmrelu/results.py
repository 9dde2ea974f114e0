"""The result record that every solver (ADMM and cvxpy) returns."""

from dataclasses import dataclass, field

import numpy as np

from .network import recover_network
from .status import Status


@dataclass(frozen=True)
class History:
    """Per-check solver trace: equal-length arrays, one entry per termination check."""

    iteration: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=int))
    objective: np.ndarray = field(default_factory=lambda: np.zeros(0))
    dual_bound: np.ndarray = field(default_factory=lambda: np.zeros(0))
    r_prim: np.ndarray = field(default_factory=lambda: np.zeros(0))
    r_dual: np.ndarray = field(default_factory=lambda: np.zeros(0))
    rho: np.ndarray = field(default_factory=lambda: np.zeros(0))
    time: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def __len__(self) -> int:
        return len(self.iteration)


@dataclass(frozen=True)
class SolveResult:
    """Outcome of ``ConvexReLUProblem.solve``.

    Attributes
    ----------
    status : Status
        ``optimal`` only when the solver's tolerances and the certificate gap tolerance
        were both met.
    objective : float
        Convex objective (13) at ``weights``, which is always cone-feasible.
    dual_bound : float
        Certified lower bound on the optimum over the same blocks (formulation.md §6).
    gap : float
        ``objective - dual_bound`` (>= 0 up to rounding).
    weights : ndarray of shape (2, P, m1, d)
        The primal blocks: ``weights[0, t]`` is w_t, ``weights[1, t]`` is w'_t.
    signs : ndarray of shape (P, m1)
        Second-layer signs of the blocks (needed by :meth:`network`).
    depth : int
    arrangements_exact : bool
        True when the blocks were enumerated exactly: then ``dual_bound`` bounds the
        objective of *every* network of this architecture from below, and ``gap``
        certifies global optimality of :meth:`network`.
    max_violation : float
        Largest cone-constraint violation ``max(0, -min G U)`` at ``weights``.
    dual_ratio : float
        ``max_t sigma_t(+-A_t^T v) / beta`` at the residual v (1 at an exact optimum).
    iterations : int
    setup_time, solve_time, polish_time, certificate_time : float
        Seconds spent building the model, solving, polishing and certifying.
    solver : str
        ``"admm"`` or ``"cvxpy:<SOLVER>"``.
    solver_status : str
        The backend's own status string.  For the ADMM: why the iterations stopped when
        a limit or a Ctrl-C stopped them (``"max_iter_reached"``, ``"time_limit_reached"``,
        ``"interrupted"``; ``status`` still follows the certified gap), else ``status``.
    history : History
        Per-check trace (empty for cvxpy).
    admm_state : ADMMState or None
        The ADMM's final iterate and rho, for ``warm_start`` (None for cvxpy).
    dual_point : ndarray of shape (n_samples,) or None
        The dual-feasible point ``c v`` whose ``d(c v)`` is ``dual_bound``
        (``max_t sigma_t(+-A_t^T dual_point) <= beta`` over the problem's blocks); pricing
        (:func:`admmrelu.solve_global`) checks it against the other blocks.  None when no
        bound was certified.
    """

    status: Status
    objective: float
    dual_bound: float
    gap: float
    weights: np.ndarray
    signs: np.ndarray
    depth: int
    arrangements_exact: bool
    max_violation: float
    dual_ratio: float
    iterations: int
    setup_time: float
    solve_time: float
    polish_time: float
    certificate_time: float
    solver: str
    solver_status: str
    history: History = field(default_factory=History)
    admm_state: object = field(default=None, repr=False)
    dual_point: np.ndarray | None = field(default=None, repr=False)

    @property
    def relative_gap(self) -> float:
        """``gap / objective`` (0 when the objective is 0)."""
        return self.gap / self.objective if self.objective > 0 else 0.0

    def network(self, tol: float = 0.0):
        """The non-convex network of Proposition 1 (formulation.md §5).

        Returns a :class:`~admmrelu.network.TwoLayerReLUNetwork` (depth 2) or
        :class:`~admmrelu.network.ThreeLayerReLUNetwork` (depth 3) whose objective on the
        training data equals ``objective``.  Blocks with norm <= ``tol`` are dropped.
        """
        return recover_network(self.weights, self.signs, self.depth, tol=tol)

    def to_dict(self) -> dict:
        """Scalars and the history as plain Python types (for JSON), without the weights."""
        scalars = {
            name: getattr(self, name)
            for name in (
                "objective",
                "dual_bound",
                "gap",
                "depth",
                "arrangements_exact",
                "max_violation",
                "dual_ratio",
                "iterations",
                "setup_time",
                "solve_time",
                "polish_time",
                "certificate_time",
                "solver",
                "solver_status",
            )
        }
        scalars = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in scalars.items()}
        scalars["status"] = str(self.status)
        scalars["relative_gap"] = self.relative_gap
        scalars["history"] = {
            k: getattr(self.history, k).tolist() for k in History.__dataclass_fields__
        }
        return scalars

    def __repr__(self) -> str:
        return (
            f"SolveResult(status={self.status.value!r}, objective={self.objective:.10g}, "
            f"gap={self.gap:.3e}, iterations={self.iterations}, solver={self.solver!r})"
        )
