"""Problem scaling for the ADMM: unit-size data, unit-norm constraint rows.

The solver works on ``X~ = X / a`` and ``y~ = y / b`` with ``a`` the RMS row norm of X and
``b`` the RMS of y.  Because the loss is quadratic and the penalty homogeneous,

    objective(X, y, beta; U) = b^2 * objective(X~, y~, beta / (a b); a U / b),

so the scaled problem has the same minimisers (up to the factor ``a / b``) and its optimal
value is the original one divided by ``b^2``.  Each cone row ``(2D - I) x_i^T w >= 0`` is
further divided by ``h_i = ||x~_i||`` (row equilibration): the cone is unchanged, and all
constraint rows of the splitting have unit norm.

The factors are computed without overflow or underflow (the data is first divided by a
power of two near its largest magnitude, which is exact), so the scaled program is the
same, to rounding, whatever the units of X and y: data at 1e-150 or 1e+150 gives unit-size
iterates.  What still depends on the units are the quantities reported in them; the
range in which those are representable is checked when the problem is built
(:func:`admmrelu._validation.check_representable`).
"""

from dataclasses import dataclass

import numpy as np

from ._validation import power_of_two_scale, stable_norm
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
        a = _rms(X, lambda Z: np.sum(Z * Z, axis=1))
        b = _rms(y, lambda z: z * z)
        X_loss = X / a
        h = stable_norm(X_loss, axis=1)  # per row: a row far below the RMS keeps its norm
        h[h == 0] = 1.0
        beta = _scaled_beta(problem.beta, a, b)
        scaled = ConvexReLUProblem(X_loss, y / b, beta, problem.arrangements)
        return cls(scaled, X_loss / h[:, None], h, a, b)

    def to_original(self, U: np.ndarray) -> np.ndarray:
        """Weights of the original problem from scaled weights (multiply by b / a)."""
        return U * (self.y_scale / self.x_scale)

    def from_original(self, U: np.ndarray) -> np.ndarray:
        """Scaled weights from weights of the original problem (multiply by a / b)."""
        return U * (self.x_scale / self.y_scale)

    def with_beta(self, beta: float) -> "ScaledProblem":
        """The same scaling for the original problem at another beta."""
        scaled = self.problem.with_beta(_scaled_beta(beta, self.x_scale, self.y_scale))
        return ScaledProblem(scaled, self.X_cone, self.row_norms, self.x_scale, self.y_scale)

    @property
    def objective_scale(self) -> float:
        """``b^2``: original objective (and dual bound) = b^2 * scaled value."""
        return self.y_scale**2


def _rms(a: np.ndarray, squares) -> float:
    """``sqrt(mean(squares(a)))`` computed on ``a / 2^k`` (exact) and multiplied back by
    ``2^k``: no overflow or underflow, and bit for bit the plain formula on data of
    ordinary size.  1.0 for all-zero data."""
    scale = float(power_of_two_scale(a))
    value = np.sqrt(np.mean(squares(a / scale))) * scale
    return float(value) if value > 0 and np.isfinite(value) else 1.0


def _scaled_beta(beta: float, a: float, b: float) -> float:
    """``beta / (a b)``, refused when it leaves float64's normal range (a beta that is
    not a number relative to the data)."""
    scaled = beta / (a * b)
    if not np.isfinite(scaled) or scaled < np.finfo(float).tiny:
        raise ValueError(
            f"beta = {beta!r} is {'above' if scaled > 1 else 'below'} float64's range "
            f"relative to the data's scale |X| |y| = {a * b:.3g} (beta / (|X| |y|) = "
            f"{scaled!r}); pass a beta of the order of problem.beta_max (e.g. 0.1 * beta_max)"
        )
    return scaled
