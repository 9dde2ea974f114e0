"""Pricing: blocks whose dual constraint a residual violates (formulation.md §3, §6).

For a residual ``v = y - yhat`` of the program over some blocks, weak duality over *all*
blocks needs (7)::

    max_{||W1||_F <= 1, ||w2|| <= 1}  |v^T ((X W1)_+ w2)_+|  <=  beta

(depth 2: ``m1 = 1``, ``w2 = 1``, so ``max_{||h|| <= 1} |v^T (X h)_+|``).  Any unit
``(W1, w2)`` with ``s v^T ((X W1)_+ w2)_+ > beta`` (s = +-1) exhibits a violated block: the
block read off it (masks ``1[X w1_j >= 0]``, signs ``sign w2_j``, second-layer mask
``1[(X W1)_+ w2 >= 0]``) contains the point ``u = (|w2_j| w1_j)_j`` with
``||u||_{2,1} <= ||w2|| ||W1||_F <= 1`` and ``s v^T A_t u`` equal to that value, so its
dual norm ``sigma_t(s A_t^T v)`` exceeds beta.  Adding the block lowers the optimum.

* :func:`ascent_pricing` is the heuristic: batched fixed-point ascent from many starts
  (random units, the active blocks' units and their perturbations, ``X^T v`` and the rows
  of largest residual).  Each step is two GEMMs with X for the whole batch.  It finds
  violations; it cannot prove there are none.
* :class:`ExactOracle` enumerates every block (low-rank or small data) and computes every
  block's dual norm exactly (:func:`admmrelu.certificate.max_block_dual_norm`).  When it
  finds no violation the certificate is global.
* :func:`dual_norm_upper_bound` is a cheap valid bound on the left side of (7), so that a
  lower bound on every network's objective exists even where nothing is enumerated
  (loose: 1.5-2x the true value in the cases measured).
"""

import time
from dataclasses import dataclass

import numpy as np

from .arrangements import Arrangements, _block_key
from .certificate import block_upper_bounds, improve_multipliers
from .cones import block_dual_norm
from .enumeration import enumerate_arrangements, estimate_n_blocks
from .exceptions import TooManyArrangementsError
from .lifting import network_blocks


@dataclass(frozen=True)
class PricingResult:
    """Blocks found violated by a residual.

    Attributes
    ----------
    arrangements : Arrangements or None
        The violated blocks not in the current set, most violated first (None if none).
    ratios : ndarray of shape (P_new,)
        For each, a lower bound on its dual norm divided by beta (> 1).
    best_ratio : float
        The largest ``s v^T ((X W1)_+ w2)_+ / beta`` found over all units tried, blocks
        already in the set included: a lower estimate of the left side of (7) over beta.
    exact : bool
        True when the ratios come from an exact search over every block.
    """

    arrangements: Arrangements | None
    ratios: np.ndarray
    best_ratio: float
    exact: bool = False


def ascent_pricing(
    X,
    v,
    beta,
    depth,
    width,
    current=None,
    active_units=None,
    n_starts=256,
    n_steps=30,
    max_new=50,
    tol=1e-6,
    rng=None,
) -> PricingResult:
    """Heuristic pricing by batched ascent on ``s v^T ((X W1)_+ w2)_+`` over unit balls.

    Parameters
    ----------
    X : ndarray (n, d); v : ndarray (n,) the residual; beta : float
    depth, width : the architecture (width = m1, 1 at depth 2)
    current : Arrangements or None
        Blocks already in the program: found again, they count toward ``best_ratio`` but
        are not returned.
    active_units : tuple (W1 (B, m1, d), w2 (B, m1), s (B,)) or None
        Units of the current solution (its non-zero blocks), started from as they are and
        perturbed: the neighbouring cells of the active ones.
    n_starts : int
        Random starts (besides the active units, their perturbations and the residual's
        own directions).
    n_steps : int
        Ascent steps per start.
    max_new : int
        At most this many blocks are returned.
    tol : float
        A block is violated when its value exceeds ``beta (1 + tol)``.
    rng : numpy Generator
    """
    rng = np.random.default_rng(rng)
    W1, w2, s = _starts(X, v, depth, width, active_units, n_starts, rng)
    W1, w2, s, values = _ascend(X, v, W1, w2, s, depth, n_steps)
    best_ratio = float(values.max()) / beta if values.size else 0.0
    violated = np.flatnonzero(values > beta * (1.0 + tol))
    violated = violated[np.argsort(-values[violated], kind="stable")]
    if violated.size == 0:
        return PricingResult(None, np.zeros(0), best_ratio)
    found, unit_block, _ = network_blocks(X, W1[violated], w2[violated], depth)
    if found is None:
        return PricingResult(None, np.zeros(0), best_ratio)
    # blocks come in the order of their first unit, the most violated first
    first_unit = np.unique(unit_block[unit_block >= 0], return_index=True)[1]
    known = set() if current is None else set(block_keys(current))
    picked = [t for t, key in enumerate(block_keys(found)) if key not in known][:max_new]
    if not picked:
        return PricingResult(None, np.zeros(0), best_ratio)
    ratios = values[violated[first_unit[picked]]] / beta
    return PricingResult(found.subset(np.array(picked)), ratios, best_ratio)


def block_keys(arrangements: Arrangements) -> list[bytes]:
    """The identifying bytes of each block (as :func:`sample_arrangements` dedupes)."""
    block = {
        "masks1": arrangements.masks1,
        "signs": arrangements.signs,
        "masks2": arrangements.masks2,
    }
    return [_block_key(block, t) for t in range(arrangements.n_blocks)]


def units_of_solution(weights, signs, depth):
    """The units ``(W1, w2, s)`` of a convex point's non-zero blocks, normalised as in
    Proposition 1 (``||W1||_F = ||w2|| = 1``): W1 (B, m1, d), w2 (B, m1), s (B,)."""
    c = np.linalg.norm(weights, axis=3)  # (2, P, m1)
    S = c.sum(axis=2)
    copy, t = np.nonzero(S > 0)
    if copy.size == 0:
        return None
    u, ck, Sk = weights[copy, t], c[copy, t], S[copy, t]  # (B, m1, d), (B, m1), (B,)
    scale = np.sqrt(ck * Sk[:, None])
    W1 = np.divide(u, scale[:, :, None], out=np.zeros_like(u), where=scale[:, :, None] > 0)
    w2 = signs[t] * np.sqrt(ck / Sk[:, None]) if depth == 3 else np.ones_like(ck)
    return W1, w2, np.where(copy == 0, 1.0, -1.0)


def _starts(X, v, depth, width, active_units, n_starts, rng):
    """Initial units: random, the active ones and their perturbations, the residual's."""
    n, d = X.shape
    parts = []
    W1 = rng.standard_normal((n_starts, width, d))
    parts.append((W1, rng.standard_normal((n_starts, width)), rng.choice([-1.0, 1.0], n_starts)))
    # the residual's own directions: +-X^T v and the rows of largest |v|, one per neuron slot
    rows = np.argsort(-np.abs(v))[: max(1, min(n, n_starts // 8))]
    directions = np.vstack([X.T @ v, -(X.T @ v), X[rows]])
    k = directions.shape[0]
    W1 = np.repeat(directions[:, None, :], width, axis=1)
    W1 = W1 + 0.1 * rng.standard_normal(W1.shape) * np.linalg.norm(directions, axis=1)[
        :, None, None
    ] / np.sqrt(d) * (width > 1)
    sv = np.concatenate([[1.0, -1.0], np.sign(v[rows]) + (v[rows] == 0)])
    parts.append((W1, np.ones((k, width)), sv))
    if active_units is not None:
        aW1, aw2, a_s = active_units
        parts.append((aW1, aw2, a_s))
        for level in (0.05, 0.2, 0.5):
            noise = rng.standard_normal(aW1.shape) * level / np.sqrt(d * width)
            parts.append((aW1 + noise, aw2 + level * rng.standard_normal(aw2.shape), a_s))
    W1 = np.concatenate([p[0] for p in parts])
    w2 = np.concatenate([p[1] for p in parts])
    s = np.concatenate([p[2] for p in parts])
    if depth == 2:
        w2 = np.ones_like(w2)
    return _normalise(W1, w2, depth) + (s,)


def _normalise(W1, w2, depth):
    """``||W1||_F = 1`` per unit and ``||w2|| = 1`` (w2 stays 1 at depth 2)."""
    W1 = W1 / np.maximum(np.linalg.norm(W1, axis=(1, 2), keepdims=True), 1e-300)
    if depth == 3:
        w2 = w2 / np.maximum(np.linalg.norm(w2, axis=1, keepdims=True), 1e-300)
    return W1, w2


def _values(X, v, W1, w2, s):
    """``s v^T ((X W1)_+ w2)_+`` per unit (B,), and the pieces of its gradient: the
    first-layer pre-activations Z1 and outputs H1 (n, B, m1) and ``d value / d Z2`` (n, B)."""
    B, m1, d = W1.shape
    Z1 = (X @ W1.reshape(B * m1, d).T).reshape(X.shape[0], B, m1)  # one GEMM
    H1 = np.maximum(Z1, 0.0)
    Z2 = np.einsum("nbj,bj->nb", H1, w2)
    weighted = (v[:, None] * s[None, :]) * (Z2 > 0)
    return np.einsum("nb,nb->b", weighted, Z2), Z1, H1, weighted


def _ascend(X, v, W1, w2, s, depth, n_steps):
    """Fixed-point ascent: each unit moves to the maximiser of its value's linearisation
    on the unit balls (the normalised gradient), keeping the best iterate of each start."""
    values, Z1, H1, weighted = _values(X, v, W1, w2, s)
    best = (W1.copy(), w2.copy(), values.copy())
    B, m1, d = W1.shape
    for _ in range(n_steps):
        if depth == 3:
            w2 = np.einsum("nb,nbj->bj", weighted, H1)  # d value / d w2
        inner = weighted[:, :, None] * w2[None] * (Z1 > 0)  # (n, B, m1)
        W1 = (inner.reshape(X.shape[0], B * m1).T @ X).reshape(B, m1, d)  # d value / d W1
        W1, w2 = _normalise(W1, w2, depth)
        values, Z1, H1, weighted = _values(X, v, W1, w2, s)
        better = values > best[2]
        best[0][better], best[1][better], best[2][better] = W1[better], w2[better], values[better]
    return best[0], best[1], s, best[2]


def dual_norm_upper_bound(X, v, depth) -> float:
    """A valid upper bound on ``max |v^T ((X W1)_+ w2)_+|`` over all unit (W1, w2).

    Any depth: only rows with ``s v_i > 0`` add to ``s v^T (.)_+``; on those rows S,
    ``||(sum_j s_j (X_S w1_j)_+)_+|| <= sigma_max(X_S)`` under ``sum_j ||w1_j|| <= 1``
    (the group-l1 form (12) of the unit balls), so the value is at most
    ``||v_S|| sigma_max(X_S)``, and at most ``sum_{i in S} |v_i| ||x_i||``.

    Depth 2 also gets :func:`_quadratic_bound`, which keeps the rows of the other sign.
    """
    bound = 0.0
    for sign in (1.0, -1.0):
        w = sign * v
        rows = w > 0
        if not rows.any():
            continue
        vs, Xs = w[rows], X[rows]
        side = min(
            np.linalg.norm(vs) * np.linalg.norm(Xs, 2), float(vs @ np.linalg.norm(Xs, axis=1))
        )
        if depth == 2:
            side = min(side, _quadratic_bound(X, w))
        bound = max(bound, side)
    return float(bound)


def _quadratic_bound(X, w, n_tau=33) -> float:
    """Upper bound on ``max_{||h|| <= 1} w^T (X h)_+`` by a trust-region subproblem.

    With ``(a)_+ = (a + |a|) / 2`` and ``R_i = ||x_i|| >= |x_i^T h|``:

    * rows with ``w_i > 0``: ``sum w_i |x_i h| <= sqrt(c) sqrt(h^T Q_+ h)``
      (Cauchy-Schwarz; ``c = sum w_i R_i``, ``Q_+ = X^T diag(w_+ / R) X``), and
      ``sqrt(q) <= (q / tau + tau) / 2`` for every ``tau > 0``;
    * rows with ``w_i < 0``: ``-|w_i| |x_i h| <= -|w_i| (x_i h)^2 / R_i``.

    So ``w^T (X h)_+ <= (X^T w)^T h / 2 + h^T M_tau h + sqrt(c) tau / 4`` with
    ``M_tau = sqrt(c) Q_+ / (4 tau) - Q_- / 2``, whose maximum over the unit ball (a
    trust-region subproblem) has the exact dual
    ``min_{lam >= max(lambda_max(M), 0)} lam + b^T (lam I - M)^+ b / 4`` (b = X^T w / 2);
    every lam and tau give a valid bound, the best of a grid is returned.
    """
    R = np.maximum(np.linalg.norm(X, axis=1), 1e-300)
    pos, neg = w > 0, w < 0
    c = float(w[pos] @ R[pos])
    Q_pos = (X[pos] * (w[pos] / R[pos])[:, None]).T @ X[pos]
    Q_neg = (X[neg] * (-w[neg] / R[neg])[:, None]).T @ X[neg]
    b = 0.5 * (X.T @ w)
    top = float(np.linalg.eigvalsh(Q_pos)[-1]) if pos.any() else 0.0
    if top <= 0.0:
        return float(np.linalg.norm(b))  # no positive rows: the linear part only
    best = np.inf
    for tau in np.geomspace(1e-3, 1e3, n_tau) * np.sqrt(top):
        M = (np.sqrt(c) / (4.0 * tau)) * Q_pos - 0.5 * Q_neg
        best = min(best, _trust_region_dual(M, b) + 0.25 * np.sqrt(c) * tau)
    return float(best)


def _trust_region_dual(M, b, n_bisect=100) -> float:
    """An upper bound on ``max_{||h|| <= 1} h^T M h + b^T h``: the dual function
    ``g(lam) = lam + sum_k (q_k^T b)^2 / (4 (lam - mu_k))`` (M = sum mu_k q_k q_k^T) at a
    lam >= max(mu_max, 0) found by bisection on g' (g is convex there; any lam is valid)."""
    mu, Q = np.linalg.eigh(M)
    weights = (Q.T @ b) ** 2
    low = max(float(mu[-1]), 0.0)
    high = low + 1.0 + float(np.sqrt(weights.sum()))

    def g(lam):
        gaps = lam - mu
        with np.errstate(divide="ignore", invalid="ignore"):
            terms = np.where(weights > 0, weights / gaps, 0.0)
        return lam + 0.25 * float(terms.sum())

    for _ in range(n_bisect):
        mid = 0.5 * (low + high)
        slope = 1.0 - 0.25 * float(np.sum(weights / (mid - mu) ** 2))
        if slope > 0:
            high = mid
        else:
            low = mid
    return g(high)


#: Steps of the all-blocks multiplier ascent that tightens the oracle's cheap bounds
#: (each step is one cone product and its adjoint over every enumerated block).
_ORACLE_MULTIPLIER_STEPS = 50

#: How far above ``max_blocks`` the three-layer count bound (15) may lie for "auto".
THREE_LAYER_BOUND_SLACK = 40


class ExactOracle:
    """Every block of X enumerated once, every block's dual norm solved exactly.

    Affordable for low-rank or small data: :func:`affordable` compares the enumeration's
    count bound ((14)/(15)) with ``max_blocks``.
    """

    def __init__(self, X, depth, width, max_blocks):
        from .problem import ConvexReLUProblem

        width = width if depth == 3 else None
        bound = estimate_n_blocks(X, depth=depth, width=width)
        self.arrangements = enumerate_arrangements(
            X, depth=depth, width=width, max_blocks=max(max_blocks, bound)
        )
        self.keys = block_keys(self.arrangements)
        # y and beta do not enter the dual norms; the problem only carries the operators
        self.problem = ConvexReLUProblem(X, np.zeros(X.shape[0]), 1.0, self.arrangements)

    @staticmethod
    def affordable(X, depth, width, max_blocks) -> bool:
        """Whether the count bound allows the enumeration: (14) at depth 2 at most
        ``max_blocks``; (15) at depth 3 at most ``THREE_LAYER_BOUND_SLACK * max_blocks``
        (it overestimates: 20,748 for 571 blocks at n = 7, d = 2, m1 = 2)."""
        try:
            estimate = estimate_n_blocks(X, depth=depth, width=width if depth == 3 else None)
        except (ValueError, TooManyArrangementsError):
            return False
        return estimate <= max_blocks * (THREE_LAYER_BOUND_SLACK if depth == 3 else 1)

    def price(self, v, beta, current=None, max_new=50, tol=1e-6, deadline=None):
        """Exact pricing of ``v``: returns (PricingResult, gamma).

        Block copies are solved exactly in decreasing order of their cheap upper bound
        (:func:`admmrelu.certificate.block_upper_bounds`, with cone multipliers from
        :func:`admmrelu.certificate.improve_multipliers`) while a bound exceeds the
        largest exact value so far (so gamma is the exact maximum over every block), or
        exceeds ``beta (1 + tol)`` while fewer than ``max_new`` violated blocks not in
        ``current`` were found.  ``deadline`` (a ``time.perf_counter()`` value) stops
        the solves early; gamma then stays an upper bound (the largest unsolved bound).
        """
        Z = self.problem.adjoint(v)
        zeros = np.zeros(self.problem.cone_shape)
        multipliers = improve_multipliers(self.problem, v, zeros, _ORACLE_MULTIPLIER_STEPS)
        upper = block_upper_bounds(self.problem, v, multipliers)
        threshold = beta * (1.0 + tol)
        known = set() if current is None else set(block_keys(current))
        P = self.arrangements.n_blocks
        found: dict[int, float] = {}
        best = 0.0
        for flat in np.argsort(-upper, axis=None, kind="stable"):
            c, t = divmod(int(flat), P)
            bound = upper[c, t]
            wanted = bound > threshold and len(found) < max_new
            if bound <= best and not wanted:
                break
            if deadline is not None and time.perf_counter() >= deadline:
                best = max(best, bound)
                break
            value = block_dual_norm(self.problem.polar_generators(t), Z[c, t])
            best = max(best, value)
            if value > threshold and self.keys[t] not in known:
                found[t] = max(found.get(t, 0.0), value)
        picked = sorted(found, key=lambda t: -found[t])[:max_new]
        arrangements = self.arrangements.subset(np.array(picked)) if picked else None
        ratios = np.array([found[t] for t in picked]) / beta
        return PricingResult(arrangements, ratios, best / beta, exact=True), best
