"""Exact enumeration of the blocks for small rank (formulation.md §8 and §11.2).

The first-layer masks are the open (full-dimensional) cells of the central hyperplane
arrangement ``{u : x_i^T u = 0}``; closures of open cells cover the space, so they are
enough.  At depth 3 each block is a set of m1 distinct (mask, sign) neurons plus one
open cell of the arrangement ``{w : b_i^T w = 0}`` (rows of ``B_t``) inside the product of
the neurons' first-layer cones.  Cells are found by a tree search over the rows in which
every branch is decided by Gordan's alternative (one small NNLS, with a maximum-margin LP
as fallback), and every cell comes with a verified interior point.

Dominated blocks are dropped (formulation.md §11.2): the all-zero first-layer mask, sign
vectors with all s_j = -1, neuron permutations and repeated neurons, and second-layer
masks that give the zero output.
"""

from itertools import combinations
from math import comb

import numpy as np
from scipy.optimize import linprog

from ._nnls import nnls
from ._validation import as_float_matrix, check_depth_width, check_int
from .arrangements import Arrangements
from .exceptions import TooManyArrangementsError

#: A cell is accepted only if an interior point has this verified margin (rows normalized).
_MIN_MARGIN = 1e-9
#: NNLS residual below which a half-space is taken to miss the cell (Gordan's alternative).
_GORDAN_TOL = 1e-10


def cover_bound(n_samples: int, rank: int) -> int:
    """Bound (14): at most ``2 sum_{k<r} C(n-1, k)`` cells for n hyperplanes of rank r."""
    if n_samples <= 0 or rank <= 0:
        return 1
    return 2 * sum(comb(n_samples - 1, k) for k in range(rank))


def estimate_n_blocks(X, depth=2, width=None) -> int:
    """Upper bound on the number of blocks :func:`enumerate_arrangements` would return.

    Depth 2 uses bound (14).  Depth 3 multiplies the number of neuron tuples (from (14))
    by the bound on second-layer cells in rank ``m1 r`` (the last factor of (15)), capped
    by ``2^n``.
    """
    X = as_float_matrix(X)
    depth, width = check_depth_width(depth, width)
    return _bound_n_blocks(X.shape[0], int(np.linalg.matrix_rank(X)), depth, width)


def _bound_n_blocks(n, r, depth, width) -> int:
    """The bound of :func:`estimate_n_blocks` for n samples of rank r."""
    p1 = cover_bound(n, r)
    if depth == 2:
        return p1
    n_neurons = 2 * max(p1 - 1, 1)
    n_tuples = comb(n_neurons, width) - comb(n_neurons // 2, width)
    return n_tuples * min(2**n, cover_bound(n, min(width * r, n)))


def enumerate_arrangements(X, depth=2, width=None, max_blocks=50_000, max_bytes=2**30):
    """Enumerate every full-dimensional block exactly.

    With these blocks the convex program's optimum equals the global optimum of the
    non-convex network (given enough sub-networks), and the certificate of a solve
    certifies global optimality.

    The count is estimated first with bounds (14)/(15) (see :func:`estimate_n_blocks`);
    the enumeration refuses with :class:`~admmrelu.exceptions.TooManyArrangementsError`,
    naming the estimate, when it exceeds ``max_blocks`` or the masks would exceed
    ``max_bytes``.  At depth 3 the bound is refined per neuron tuple after the first-layer
    cells are known, and the actual count is checked again as blocks are found.

    Cost: one small NNLS per (cell, row) pair that the tree search cannot decide from a
    known interior point, roughly ``n_samples * n_blocks`` of size ``m1 * d``.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
    depth : {2, 3}, default=2
    width : int or None, default=None
        First-layer neurons m1 per block (depth 3); 1 or None at depth 2.
    max_blocks : int, default=50_000
    max_bytes : int, default=2**30
        Limit on the memory of the masks and generators.

    Returns
    -------
    Arrangements
        With ``exact=True``; ``generators`` holds a verified interior point of each cone.
    """
    X = as_float_matrix(X)
    depth, width = check_depth_width(depth, width)
    max_blocks = check_int(max_blocks, "max_blocks", minimum=1)
    max_bytes = check_int(max_bytes, "max_bytes", minimum=1)
    n, d = X.shape
    limits = _Limits(n, d, width, depth, max_blocks, max_bytes)
    rank = int(np.linalg.matrix_rank(X))
    limits.check(
        _bound_n_blocks(n, rank, depth, width),
        "bound (14)" if depth == 2 else "bounds (14) and (15)",
    )

    patterns, points = _open_cells(X)
    fixed = _zero_rows(X)
    keep = (patterns & ~fixed[:, None]).any(axis=0)  # the all-negative cell is dominated
    patterns, points = patterns[:, keep], points[keep]
    if patterns.shape[1] == 0:
        raise ValueError("X has no non-zero row: every block is trivial")
    if depth == 2:
        limits.check(patterns.shape[1], "first-layer cells")
        return Arrangements(
            masks1=patterns[:, :, None],
            signs=np.ones((patterns.shape[1], 1)),
            generators=points[:, None, :],
            exact=True,
        )
    return _enumerate_three_layer(X, patterns, points, width, rank, limits)


class _Limits:
    """The refusal rule: estimated blocks against max_blocks and mask memory against max_bytes."""

    def __init__(self, n, d, width, depth, max_blocks, max_bytes):
        self.bytes_per_block = n * (width + (depth == 3)) + 8 * width * (d + 1)
        self.max_blocks, self.max_bytes = max_blocks, max_bytes

    def check(self, estimate: int, what: str) -> None:
        n_bytes = estimate * self.bytes_per_block
        if estimate > self.max_blocks or n_bytes > self.max_bytes:
            raise TooManyArrangementsError(
                f"exact enumeration would give up to {estimate:,} blocks ({what}), about "
                f"{n_bytes / 2**20:,.1f} MiB of masks; the limits are max_blocks="
                f"{self.max_blocks:,} and max_bytes={self.max_bytes:,}. Raise them, or use "
                "sample_arrangements(X, n_blocks, ...) for a sampled (restricted) problem."
            )


def _enumerate_three_layer(X, patterns, points, width, rank, limits):
    """Blocks (D1_j, s_j)_j + D2 over all tuples of distinct neurons with some s_j = +1."""
    n, d = X.shape
    neurons = [
        (patterns[:, c], s, points[c] / np.linalg.norm(points[c]))
        for s in (1.0, -1.0)
        for c in range(patterns.shape[1])
    ]
    tuples = [
        t for t in combinations(range(len(neurons)), width) if any(neurons[k][1] > 0 for k in t)
    ]
    if not tuples:
        raise ValueError(
            f"width={width} is larger than the {len(neurons)} distinct (mask, sign) neurons "
            "of this X; use a smaller width"
        )
    support = [np.logical_or.reduce([neurons[k][0] for k in t]) for t in tuples]
    estimate = sum(
        min(2 ** int(s.sum()), cover_bound(int(s.sum()), min(width * rank, n))) for s in support
    )
    limits.check(estimate, "per-tuple bound (15)")

    fixed_x = _zero_rows(X)
    blocks = []
    for t in tuples:
        masks = np.stack([neurons[k][0] for k in t], axis=1)  # (n, m1)
        signs = np.array([neurons[k][1] for k in t])
        B_rows = np.concatenate(
            [X * (signs[j] * masks[:, j])[:, None] for j in range(width)], axis=1
        )  # (n, m1 d): rows of B_t
        base = np.zeros((width * int((~fixed_x).sum()), width * d))
        for j in range(width):
            rows = X[~fixed_x] * (2.0 * masks[~fixed_x, j] - 1.0)[:, None]
            base[j * len(rows) : (j + 1) * len(rows), j * d : (j + 1) * d] = rows
        start = np.concatenate([neurons[k][2] for k in t])
        cells2, pts2 = _open_cells(B_rows, base=base, start=start)
        fixed2 = _zero_rows(B_rows)
        for c in np.flatnonzero((cells2 & ~fixed2[:, None]).any(axis=0)):
            blocks.append((masks, signs, cells2[:, c], pts2[c].reshape(width, d)))
        limits.check(len(blocks), "blocks found so far")
    return Arrangements(
        masks1=np.stack([b[0] for b in blocks], axis=1),
        signs=np.stack([b[1] for b in blocks]),
        masks2=np.stack([b[2] for b in blocks], axis=1),
        generators=np.stack([b[3] for b in blocks]),
        exact=True,
    )


def _zero_rows(H) -> np.ndarray:
    """Rows that are identically zero: their hyperplane is the whole space (mask fixed to 1)."""
    return ~np.any(H != 0, axis=1)


def _open_cells(H, base=None, start=None):
    """Open cells of ``{u : h_i^T u = 0}`` inside the open cone ``{u : base u > 0}``.

    H : (n, D) normals; base : (k, D) or None; start : (D,) strictly inside the base cone.
    Returns patterns (n, C) bool with ``1[h_i^T u >= 0]`` (zero rows fixed to True) and
    interior points (C, D) with verified margin.
    """
    n, D = H.shape
    base = np.zeros((0, D)) if base is None else _normalize(base)
    if start is None:
        start = np.random.default_rng(0).standard_normal(D)
    zero = _zero_rows(H)
    Hn = H.copy()
    Hn[~zero] = _normalize(H[~zero])
    # each cell: (signs so far, interior point, constraint rows)
    cells = [(np.ones(n, dtype=bool), start / np.linalg.norm(start), base)]
    for i in np.flatnonzero(~zero):
        h = Hn[i]
        children = []
        for signs, point, rows in cells:
            value = h @ point
            for side in (1.0, -1.0):
                new_rows = np.vstack([rows, side * h])
                if side * value > _MIN_MARGIN:
                    child_point = point
                else:
                    child_point = _interior_point(new_rows, point)
                    if child_point is None:
                        continue
                child_signs = signs.copy()
                child_signs[i] = side > 0
                children.append((child_signs, child_point, new_rows))
        cells = children
    patterns = np.stack([c[0] for c in cells], axis=1)
    points = np.stack([c[1] for c in cells])
    return patterns, points


def _interior_point(rows, hint):
    """A point u with ``min_i rows_i^T u / ||u||`` >= _MIN_MARGIN, or None if there is none.

    ``rows`` are normalized; all but the last define a cell with interior point ``hint``, the
    last is the new half-space.  Gordan's alternative decides it: the child is empty iff
    ``-h`` lies in the cone of the parent's rows.  The NNLS ``min_{lam >= 0} ||A^T lam + h||``
    either shows that (zero residual), or its residual ``r`` lies in the closed parent cone
    with ``h^T r = ||r||^2 > 0``, so ``r + eps * hint`` is an interior witness.  A witness is
    only returned after its margin is verified; unclear cases fall back to an LP.
    """
    parent, h = rows[:-1], rows[-1]
    if len(parent) == 0:
        return h.copy()
    lam, residual = nnls(parent.T, -h)
    if residual <= _GORDAN_TOL:
        return None
    r = parent.T @ lam + h
    r /= np.linalg.norm(r)
    slope = h @ hint
    eps = 1.0 if slope >= 0 else 0.5 * (h @ r) / -slope
    witness = _verified(rows, r + eps * hint)
    return witness if witness is not None else _max_margin_point(rows)


def _max_margin_point(rows):
    """LP fallback: ``max t  s.t.  rows u >= t, -1 <= u <= 1, t <= 1``, margin verified."""
    k, D = rows.shape
    c = np.zeros(D + 1)
    c[-1] = -1.0
    A_ub = np.hstack([-rows, np.ones((k, 1))])
    res = linprog(
        c, A_ub=A_ub, b_ub=np.zeros(k), bounds=[(-1, 1)] * D + [(None, 1)], method="highs"
    )
    return _verified(rows, res.x[:D]) if res.status == 0 else None


def _verified(rows, u):
    """``u / ||u||`` if ``min_i rows_i^T u >= _MIN_MARGIN ||u||`` (checked exactly), else None."""
    norm = np.linalg.norm(u)
    if norm == 0 or np.min(rows @ u) < _MIN_MARGIN * norm:
        return None
    return u / norm


def _normalize(rows):
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)
