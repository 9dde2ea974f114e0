"""Problem scaling for the ADMM: unit-size data, unit-norm constraint rows.

The solver works on ``X~ = X / a`` and ``y~ = y / b`` with ``a`` the RMS row norm of X and
``b`` the RMS of y.  Because the loss is quadratic and the penalty homogeneous,

    objective(X, y, beta; U) = b^2 * objective(X~, y~, beta / (a b); a U / b),

so the scaled problem has the same minimisers (up to the factor ``a / b``) and its optimal
value is the original one divided by ``b^2``.  Each cone row ``(2D - I) x_i^T w >= 0`` is
further divided by ``h_i = ||x~_i||`` (row equilibration): the cone is unchanged, and all
constraint rows of the splitting have unit norm.
"""

from dataclasses import dataclass

import numpy as np

from .problem import ConvexReLUProblem


@dataclass(frozen=True)
class ScaledProblem:
    """The scaled program and the factors that map it back.

    Attributes
    ----------
    problem : ConvexReLUProblem
        The program on ``X~``, ``y~``, ``beta / (a b)`` with the same blocks.
    X_cone : ndarray (n, d)
        ``X~`` with unit rows (zero rows stay zero): the data of the constraint rows.
    row_norms : ndarray (n,)
        ``h_i = ||x~_i||`` (1 for a zero row), so ``X~ = h * X_cone``.
    x_scale, y_scale : float
        ``a`` and ``b``.
    """

    problem: ConvexReLUProblem
    X_cone: np.ndarray
    row_norms: np.ndarray
    x_scale: float
    y_scale: float

    @classmethod
    def from_problem(cls, problem: ConvexReLUProblem) -> "ScaledProblem":
        X, y = problem.X, problem.y
        a = _positive_or_one(np.sqrt(np.mean(np.sum(X * X, axis=1))))
        b = _positive_or_one(np.sqrt(np.mean(y * y)))
        X_loss = X / a
        h = np.linalg.norm(X_loss, axis=1)
        h[h == 0] = 1.0
        scaled = ConvexReLUProblem(X_loss, y / b, problem.beta / (a * b), problem.arrangements)
        return cls(scaled, X_loss / h[:, None], h, a, b)

    def to_original(self, U: np.ndarray) -> np.ndarray:
        """Weights of the original problem from scaled weights (multiply by b / a)."""
        return U * (self.y_scale / self.x_scale)

    def from_original(self, U: np.ndarray) -> np.ndarray:
        """Scaled weights from weights of the original problem (multiply by a / b)."""
        return U * (self.x_scale / self.y_scale)

    def with_beta(self, beta: float) -> "ScaledProblem":
        """The same scaling for the original problem at another beta."""
        scaled = self.problem.with_beta(beta / (self.x_scale * self.y_scale))
        return ScaledProblem(scaled, self.X_cone, self.row_norms, self.x_scale, self.y_scale)

    @property
    def objective_scale(self) -> float:
        """``b^2``: original objective (and dual bound) = b^2 * scaled value."""
        return self.y_scale**2


def _positive_or_one(value: float) -> float:
    return float(value) if value > 0 and np.isfinite(value) else 1.0
