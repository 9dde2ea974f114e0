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
  lower bound on every network's objective exists even where nothing is enumerated.
"""

from dataclasses import dataclass

import numpy as np

from .arrangements import Arrangements, _block_key, _blocks_from_networks
from .certificate import max_block_dual_norm
from .enumeration import enumerate_arrangements, estimate_n_blocks
from .exceptions import TooManyArrangementsError


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
    block = _blocks_from_networks(X, W1[violated], w2[violated], depth)
    known = set() if current is None else set(block_keys(current))
    picked = []
    for b in range(violated.size):
        key = _block_key(block, b)
        if block["nontrivial"][b] and key not in known:
            known.add(key)
            picked.append(b)
        if len(picked) == max_new:
            break
    if not picked:
        return PricingResult(None, np.zeros(0), best_ratio)
    arrangements = Arrangements(
        masks1=block["masks1"][:, picked],
        signs=block["signs"][picked],
        masks2=None if depth == 2 else block["masks2"][:, picked],
        generators=block["generators"][picked],
        n_draws=int(values.size),
    )
    return PricingResult(arrangements, values[violated[picked]] / beta, best_ratio)


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


def dual_norm_upper_bound(X, v) -> float:
    """A valid upper bound on ``max |v^T ((X W1)_+ w2)_+|`` over all unit (W1, w2), any m1.

    Only rows with ``s v_i > 0`` can add to ``s v^T (.)_+``; on those rows S,
    ``||(sum_j s_j (X_S w1_j)_+)_+|| <= sum_j ||X_S w1_j|| <= sigma_max(X_S)`` under
    ``sum_j ||w1_j|| <= 1`` (the group-l1 form (12) of the unit balls), so the value is at
    most ``||v_S|| sigma_max(X_S)``, and also at most ``sum_{i in S} |v_i| ||x_i||``.
    """
    bound = 0.0
    for sign in (1.0, -1.0):
        rows = sign * v > 0
        if not rows.any():
            continue
        vs, Xs = np.abs(v[rows]), X[rows]
        spectral = np.linalg.norm(vs) * np.linalg.norm(Xs, 2)
        rowwise = float(vs @ np.linalg.norm(Xs, axis=1))
        bound = max(bound, min(spectral, rowwise))
    return float(bound)


class ExactOracle:
    """Every block of X enumerated once, every block's dual norm solved exactly.

    Affordable for low-rank or small data: :func:`affordable` compares the enumeration's
    count bound ((14)/(15)) with ``max_blocks``.
    """

    def __init__(self, X, depth, width, max_blocks):
        from .problem import ConvexReLUProblem

        self.arrangements = enumerate_arrangements(
            X, depth=depth, width=width if depth == 3 else None, max_blocks=max_blocks
        )
        self.keys = block_keys(self.arrangements)
        # y and beta do not enter the dual norms; the problem only carries the operators
        self.problem = ConvexReLUProblem(X, np.zeros(X.shape[0]), 1.0, self.arrangements)

    @staticmethod
    def affordable(X, depth, width, max_blocks) -> bool:
        try:
            estimate = estimate_n_blocks(X, depth=depth, width=width if depth == 3 else None)
        except (ValueError, TooManyArrangementsError):
            return False
        return estimate <= max_blocks

    def price(self, v, beta, current=None, max_new=50, tol=1e-6, deadline=None):
        """Exact pricing of ``v``: returns (PricingResult, gamma) with gamma an upper bound
        on ``max_t sigma_t(+-A_t^T v)`` over every block (exact up to the inner solves
        unless ``deadline`` cut them short)."""
        gamma, norms = max_block_dual_norm(self.problem, v, deadline=deadline)
        block_max = np.nan_to_num(norms, nan=0.0).max(axis=0)  # (P,)
        known = set() if current is None else set(block_keys(current))
        order = np.argsort(-block_max, kind="stable")
        picked = [
            t for t in order if block_max[t] > beta * (1.0 + tol) and self.keys[t] not in known
        ][:max_new]
        arrangements = self.arrangements.subset(np.array(picked, dtype=int)) if picked else None
        result = PricingResult(arrangements, block_max[picked] / beta, gamma / beta, exact=True)
        return result, gamma
