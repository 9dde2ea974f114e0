"""Dual certificate: a lower bound on the optimum from any prediction (formulation.md §6).

For the block set of a problem, weak duality gives, for every v in R^n with
``sigma_t(+-A_t^T v) <= beta`` for all t,

    p  >=  d(v) = v^T y - 0.5 ||v||^2 .

Given a prediction yhat, take ``v = y - yhat``, compute ``gamma = max_t sigma_t(+-A_t^T v)``
(upper bounds, see :mod:`admmrelu.cones`), and scale v by the best feasible factor
``c in [0, beta / gamma]``; ``d(c v)`` is then a rigorous lower bound.  At an optimum
``gamma = beta`` and ``d(v*) = p``.

The per-block dual norms are refined lazily: blocks are visited in decreasing order of the
cheap bound ``max_j ||(A_t^T v)_j||`` (the value at mu = 0) and the exact solve stops as
soon as no remaining cheap bound exceeds the largest refined value.
"""

import math
import time
from dataclasses import dataclass

import numpy as np

from .cones import block_dual_norm
from .kernels import array_namespace

#: Exact solves that :func:`certify` spends on a prediction that cannot reach ``sufficient``:
#: at least SHORT_REFINEMENTS, more while they fit in _REFINEMENT_FLOPS (the blocks found
#: violated go to column generation, where each missed one can cost a whole reduced solve),
#: at most _MOST_REFINEMENTS (see :func:`short_refinements`).
SHORT_REFINEMENTS = 10
_MOST_REFINEMENTS = 50
_REFINEMENT_FLOPS = 1e9


def short_refinements(problem) -> int:
    """How many exact solves a hopeless candidate gets: an NNLS over the block's n
    generators in R^d costs about ``n d^2`` flops (d=20, n=800: 0.3 Mflop, so
    _MOST_REFINEMENTS; d=784, n=5000, about 25 s each here: SHORT_REFINEMENTS).  Wider
    blocks (a Clarabel SOCP each, measured at 30-300 ms) get SHORT_REFINEMENTS."""
    if problem.width > 1:
        return SHORT_REFINEMENTS  # each a Clarabel SOCP (tens of ms at n=500, d=20)
    per_solve = problem.n_samples * float(problem.n_features) ** 2
    return int(min(_MOST_REFINEMENTS, max(SHORT_REFINEMENTS, _REFINEMENT_FLOPS // per_solve)))


@dataclass(frozen=True)
class Certificate:
    """A certified lower bound.

    Attributes
    ----------
    dual_bound : float
        ``d(c v)``, a lower bound on the optimum over the problem's blocks.
    dual_ratio : float
        ``gamma / beta`` for ``v = y - yhat`` (<= 1 means v itself is dual feasible).
    scale : float
        The factor c applied to v.
    n_refined : int
        Exact (NNLS or SOCP) dual-norm solves: block copies whose bound was not enough.
    block_norms : ndarray of shape (2, P)
        ``sigma_t(+-A_t^T v)`` where refined (copy 0: +, copy 1: -), NaN for the block
        copies whose upper bound was small enough to skip.
    """

    dual_bound: float
    dual_ratio: float
    scale: float
    n_refined: int
    block_norms: np.ndarray


def block_upper_bounds(problem, v, multipliers=None) -> np.ndarray:
    """Upper bounds (2, P) on ``sigma_t(+-A_t^T v)`` without any inner solve.

    ``max_j ||(A_t^T v)_j||`` (the value at mu = 0), and, when cone ``multipliers``
    (n, 2, P, R) >= 0 are given (for instance a solver's duals),
    ``max_j ||(A_t^T v + G_t^T mu)_j||`` where that is smaller.
    """
    return _upper_bounds(problem, problem.adjoint(v), multipliers)


def _upper_bounds(problem, Z, multipliers) -> np.ndarray:
    """:func:`block_upper_bounds` from ``Z = problem.adjoint(v)`` (2, P, m1, d)."""
    if multipliers is None:
        return bounds_from_products(Z)
    return bounds_from_products(Z, Z + problem.cone_adjoint(np.maximum(multipliers, 0.0)))


def bounds_from_products(Z, shifted=None):
    """Upper bounds (2, P) on the block dual norms from ``Z = (+-A_t^T v)_t`` and, when
    given, ``shifted = Z + G^T mu`` (mu >= 0), both (2, P, m1, d), numpy or cupy:
    ``max_j ||Z_j||``, or the smaller of it and ``max_j ||shifted_j||``."""
    xp = array_namespace(Z)
    bound = xp.max(xp.linalg.norm(Z, axis=3), axis=2)
    if shifted is not None:
        bound = xp.minimum(bound, xp.max(xp.linalg.norm(shifted, axis=3), axis=2))
    return bound


def max_block_dual_norm(
    problem, v, multipliers=None, target=0.0, max_refined=None, deadline=None
) -> tuple[float, np.ndarray]:
    """An upper bound on ``max_t max(sigma_t(A_t^T v), sigma_t(-A_t^T v))``, and the
    refined norms (2, P).

    Each copy (sign) of each block is refined (solved exactly) in decreasing order of its
    upper bound (:func:`block_upper_bounds`) until no remaining bound exceeds the largest
    refined value or ``target``.  With ``target = 0`` the value is the exact maximum (up to
    the inner solver's accuracy); a positive ``target`` (say ``beta (1 + 1e-7)``) spares the
    exact solves of blocks already known to lie below it, and the value returned is then the
    larger of the refined maximum and the largest unrefined bound: still an upper bound.
    ``max_refined`` caps the number of exact solves, and ``deadline`` (a
    ``time.perf_counter()`` value) their time: the same kind of upper bound results.
    """
    Z = problem.adjoint(v)  # (2, P, m1, d): A_t^T v and -A_t^T v
    upper = _upper_bounds(problem, Z, multipliers)
    exact = np.full((2, problem.n_blocks), np.nan)
    best = 0.0
    for rank, flat in enumerate(np.argsort(-upper, axis=None, kind="stable")):
        c, t = divmod(int(flat), problem.n_blocks)
        out_of_time = deadline is not None and time.perf_counter() >= deadline
        if upper[c, t] <= max(best, target) or rank == max_refined or out_of_time:
            best = max(best, upper[c, t])  # the largest bound left unrefined
            break
        exact[c, t] = block_dual_norm(problem.polar_generators(t), Z[c, t])
        best = max(best, exact[c, t])
    return best, exact


def improve_multipliers(operators, v, multipliers, iterations, deadline=None):
    """Better cone multipliers for the bounds of :func:`block_upper_bounds`, all blocks at once.

    Accelerated projected gradient (FISTA) on the smooth surrogate

        min_{mu >= 0}  0.5 sum_{c, t, j} ||(+-A_t^T v + G_t^T mu)_j||^2

    (separable over the block copies, exact NNLS at width 1), from ``multipliers``.  Each
    step is one ``cone`` and one ``cone_adjoint`` product over all blocks; the step size is
    ``1 / ((1 + m1) lambda_max(X^T X))``, an upper bound on ``||G_t||^2``.  Any result is a
    valid multiplier (it is >= 0); the caller keeps whichever bound is smaller.

    ``operators``: a ``ConvexReLUProblem``, or :class:`admmrelu.kernels.BoundOperators` of
    the same data on a device (then v and the multipliers are that device's arrays, in
    any float dtype: the result only steers the rigorous float64 bound computed later).
    ``deadline`` (a ``time.perf_counter()`` value) stops the steps early.
    """
    xp = array_namespace(v)
    Z = operators.adjoint(v)
    X = operators.X
    lipschitz = (1 + operators.width) * float(xp.linalg.eigvalsh(X.T @ X)[-1])
    mu = xp.maximum(multipliers, 0)
    previous, extrapolated, momentum = mu, mu, 1.0
    for _ in range(iterations):
        if deadline is not None and time.perf_counter() >= deadline:
            break
        gradient = operators.cone(Z + operators.cone_adjoint(extrapolated))
        mu = xp.maximum(extrapolated - gradient / lipschitz, 0)
        next_momentum = 0.5 * (1.0 + math.sqrt(1.0 + 4.0 * momentum**2))  # a Python float
        extrapolated = mu + ((momentum - 1.0) / next_momentum) * (mu - previous)
        previous, momentum = mu, next_momentum
    return mu


def certify(
    problem, yhat, multipliers=None, target_ratio=0.0, sufficient=None, deadline=None
) -> Certificate:
    """Certified lower bound from a prediction ``yhat`` of shape (n_samples,).

    ``multipliers`` (n, 2, P, R), optional: cone multipliers (for instance a solver's
    duals) that tighten the per-block bounds and so spare exact solves; any values are
    valid (negative ones are clipped), only the speed depends on them.
    ``target_ratio``: blocks whose bound is already below ``target_ratio * beta`` are not
    refined (see :func:`max_block_dual_norm`).  The bound stays rigorous; it loses at most
    about ``(target_ratio - 1) * beta * regularizer`` against the exact one.
    ``sufficient``: a bound that is good enough (say the objective minus the gap
    tolerance).  Refinement then also stops at the largest gamma whose scaled bound
    (:func:`scaled_dual_bound`) still reaches it (:func:`largest_sufficient_gamma`), so a
    loose tolerance or good multipliers spare every exact solve.  When not even
    ``gamma = beta`` (every block exactly feasible) reaches it, no refinement can, and at
    most :func:`short_refinements` blocks (those of largest bound) are refined: enough to
    find blocks that column generation should add, without solving for all of them.
    ``deadline`` (a ``time.perf_counter()`` value): no exact solve starts after it (the
    bound stays rigorous, only looser).
    """
    y, beta = problem.y, problem.beta
    yhat = np.asarray(yhat, dtype=np.float64)
    if yhat.shape != y.shape:
        raise ValueError(
            f"yhat must be a prediction of shape (n_samples,) = {y.shape}; got shape "
            f"{yhat.shape}. Use problem.forward(U) for the prediction of a point U."
        )
    v = y - yhat
    target, max_refined = target_ratio * beta, None
    if sufficient is not None:
        target = max(target, largest_sufficient_gamma(v, y, beta, sufficient))
        if scaled_dual_bound(v, y, beta, beta)[0] < sufficient:
            max_refined = short_refinements(problem)
    gamma, exact = max_block_dual_norm(problem, v, multipliers, target, max_refined, deadline)
    n_refined = int(np.count_nonzero(~np.isnan(exact)))
    bound, scale = scaled_dual_bound(v, y, beta, gamma)
    return Certificate(bound, gamma / beta, scale, n_refined, exact)


def scaled_dual_bound(v, y, beta, gamma) -> tuple[float, float]:
    """``max_{0 <= c <= beta / gamma} d(c v)`` and its maximiser c.

    ``gamma`` must bound ``max_t sigma_t(+-A_t^T v)`` from above; then c v is dual
    feasible and ``d(c v) = c v^T y - 0.5 c^2 ||v||^2`` a lower bound on the optimum.
    """
    vy, vv = float(v @ y), float(v @ v)
    if vv == 0.0 or vy <= 0.0:
        return 0.0, 0.0
    scale = vy / vv  # unconstrained maximiser of d(c v) over c
    if gamma > 0:
        scale = min(scale, beta / gamma)
    return scale * vy - 0.5 * scale**2 * vv, scale


def largest_sufficient_gamma(v, y, beta, sufficient) -> float:
    """The largest ``gamma`` for which :func:`scaled_dual_bound` still reaches
    ``sufficient`` (0 when no gamma does).

    ``d(c v) = c v^T y - 0.5 c^2 ||v||^2`` is increasing for ``c <= v^T y / ||v||^2``; it
    reaches ``sufficient`` from ``c_min``, the smaller root of ``d(c v) = sufficient``, so
    any ``gamma <= beta / c_min`` does (with c = beta / gamma, or the maximiser).
    """
    vy, vv = float(v @ y), float(v @ v)
    if vv == 0.0 or vy <= 0.0:
        return 0.0
    if sufficient <= 0.0:
        return np.inf  # c -> 0 gives d -> 0 >= sufficient
    discriminant = vy * vy - 2.0 * vv * sufficient
    if discriminant < 0.0:
        return 0.0  # even the best c falls short
    c_min = (vy - np.sqrt(discriminant)) / vv
    return beta / c_min
