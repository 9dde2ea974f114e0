"""Solver statuses shared by every backend (ADMM and cvxpy)."""

from enum import StrEnum


class Status(StrEnum):
    """Outcome of a solve.

    Because ``Status`` is a ``StrEnum``, ``res.status == "optimal"`` holds.

    ``optimal`` always means that the returned point is cone-feasible and its
    *certified* gap (objective minus a rigorous dual bound) met the gap
    tolerance: for the ADMM, ``eps_abs b^2 + eps_rel * objective`` with the
    point feasible to ``eps_feas``; for cvxpy, ``gap_tol * objective`` on a
    point the backend returned as a solution (its own "optimal" or
    "optimal_inaccurate": the certificate, not the backend's flag, decides).
    A solve that only met relaxed tolerances is ``optimal_inaccurate``.
    """

    OPTIMAL = "optimal"
    OPTIMAL_INACCURATE = "optimal_inaccurate"
    MAX_ITER_REACHED = "max_iter_reached"
    TIME_LIMIT_REACHED = "time_limit_reached"
    INTERRUPTED = "interrupted"
    NUMERICAL_ERROR = "numerical_error"
    SOLVER_ERROR = "solver_error"

    def __str__(self) -> str:
        return self.value


#: Statuses whose point is a solution to the stated tolerances (or relaxed ones).
SOLUTION_PRESENT = frozenset({Status.OPTIMAL, Status.OPTIMAL_INACCURATE})
#: Statuses that met only relaxed tolerances, or none.
INACCURATE = frozenset(
    {
        Status.OPTIMAL_INACCURATE,
        Status.MAX_ITER_REACHED,
        Status.TIME_LIMIT_REACHED,
        Status.INTERRUPTED,
    }
)
