"""Polish: solve the program exactly on a working set of blocks and cone rows.

Once the ADMM has found which blocks are non-zero, the optimum over the full program is
(very likely) the optimum of the *reduced* program on those blocks alone, and of those
blocks only the cone rows near their boundary matter.  The reduced program

    min_u  0.5 || F_W u - y ||^2 + beta sum_g ||u_g||
    s.t.   G_r u >= 0          (kept rows r of the working blocks)

has a few hundred to a few thousand variables.  It is degenerate (an active block sits on
an extreme ray of its cone, with about d active rows), which defeats a plain
Newton/active-set polish, so it is solved by an interior-point method
(:mod:`admmrelu.conic_ipm`).  Rows that the polished point violates are reported to the
caller, which projects the point, certifies it and, when needed, solves again with those
rows and with the blocks the certificate shows violated (column generation).
"""

import time
from dataclasses import dataclass

import numpy as np

from .conic_ipm import BlockRows, solve_qp_socp

#: A row is kept from the start when its value is below this fraction of the norm of the
#: weights it involves (see :func:`_relative`).
_KEEP_FRACTION = 5e-2
#: A dropped row is added back when its value falls below this fraction of the block norm
#: at the reduced solution (violated rows, and the rows close to violation with them, which
#: saves rounds).
_ADD_FRACTION = 1e-3
#: Dropped rows violated by less than this fraction of their block's norm are left to the
#: exact projection that follows the polish (it moves the objective by about as much).
_VIOLATION_FRACTION = 1e-9
#: Row values within this fraction of the block norm count as zero (rounding).
_ZERO_FRACTION = 1e-10
#: Interior-point tolerance (relative residuals and gap) of the reduced solve.  The
#: certificate checks the result independently; 1e-8 leaves the 1e-6 gap budget intact
#: and stops before the slow tail of degenerate programs (zero blocks at a cone's apex).
_IP_TOLERANCE = 1e-8
#: ... and at most this fraction of the caller's eps_rel (a tighter eps_rel needs a
#: tighter reduced solve, or no finish could ever meet it).
_IP_SHARE = 0.1


@dataclass(frozen=True)
class PolishResult:
    """Reduced-program solution in the scaled variables.

    Attributes
    ----------
    weights : ndarray (2, P, m1, d)
        Zero outside the working blocks.
    multipliers : ndarray (n, 2, P, R)
        The interior point's cone multipliers on the kept unit-norm rows (zero elsewhere).
    n_rows : int
        Cone rows in the last reduced solve.
    rows : bool ndarray (2, P, n R)
        Those rows (row ``r n + i`` of a block: first-layer row of neuron r < m1, or the
        second-layer row for r = m1), for the next polish to start from.
    missing_rows : bool ndarray (2, P, n R)
        Rows left out that the solution violates (with those near their boundary): the
        weights are then projected onto the cones by the caller, and the next polish
        should keep these rows too.
    """

    weights: np.ndarray
    multipliers: np.ndarray
    n_rows: int
    rows: np.ndarray
    missing_rows: np.ndarray


def polish(
    scaled, blocks, directions, time_limit=None, known_rows=None, eps_rel=None
) -> PolishResult | None:
    """Solve the reduced program of ``scaled`` on the (2, P) bool mask ``blocks``.

    ``directions`` (2, P, m1, d), non-zero on the working blocks (e.g. the ADMM's point
    before the soft-threshold), chooses the rows kept at first: those whose value there
    is below ``_KEEP_FRACTION`` of the weights they involve.  Identically zero rows (depth 3,
    samples where no first-layer neuron is on) are never kept.  ``known_rows`` (2, P, n R),
    optional: rows an earlier polish needed, kept from the start too (after column
    generation adds a block, the re-solve then needs no new rounds for the old ones).
    One reduced solve: rows it violates are reported in ``PolishResult.missing_rows``
    for the caller's next round (which also adds any blocks).  ``eps_rel``:
    the caller's relative gap tolerance; the reduced solve's tolerance is the smaller of
    ``_IP_TOLERANCE`` and ``_IP_SHARE * eps_rel``.
    Returns None when the interior-point solve fails or runs past ``time_limit`` seconds
    (None: no limit).
    """
    deadline = None if time_limit is None else time.perf_counter() + time_limit
    tolerance = _IP_TOLERANCE if eps_rel is None else min(_IP_TOLERANCE, _IP_SHARE * eps_rel)
    problem = scaled.problem
    pairs = np.argwhere(blocks)  # (K, 2): (copy, block)
    rows_all = _block_rows(scaled, pairs)  # (K, n R, m1 d)
    width, d = problem.width, problem.n_features
    nonzero = np.any(rows_all != 0, axis=2)
    start = directions[pairs[:, 0], pairs[:, 1]]
    keep = nonzero & (_relative(rows_all, start, problem.n_samples)[0] <= _KEEP_FRACTION)
    if known_rows is not None:
        keep |= nonzero & known_rows[pairs[:, 0], pairs[:, 1]]
    design = _design_matrix(scaled, pairs)
    left = None if deadline is None else deadline - time.perf_counter()
    if left is not None and left <= 0:
        return None
    solution = _solve_reduced(problem, design, rows_all, keep, left, tolerance)
    if solution is None:
        return None
    u, duals = solution
    u_blocks = u.reshape(len(pairs), width, d)
    values, raw = _relative(rows_all, u_blocks, problem.n_samples)
    dropped = nonzero & ~keep
    block_norms = np.linalg.norm(u_blocks, axis=2).sum(axis=1, keepdims=True)
    missing = np.zeros_like(keep)
    if np.any(dropped & (raw < -_VIOLATION_FRACTION * block_norms)):
        # the violated rows, and the dropped rows close to their boundary with them; rows
        # at zero to rounding (those of a neuron whose weights vanish) are satisfied.  A
        # violation below _VIOLATION_FRACTION is left to the exact projection alone.
        near = (values < -_ZERO_FRACTION) | ((values > _ZERO_FRACTION) & (values <= _ADD_FRACTION))
        missing = dropped & near
    weights = np.zeros(problem.var_shape)
    weights[pairs[:, 0], pairs[:, 1]] = u_blocks
    multipliers = np.zeros((len(pairs),) + keep.shape[1:])
    multipliers[keep] = duals
    n, R = problem.n_samples, problem.cone_shape[3]
    full = np.zeros(problem.cone_shape)
    full[:, pairs[:, 0], pairs[:, 1], :] = multipliers.reshape(len(pairs), R, n).transpose(2, 0, 1)
    rows = np.zeros((2, problem.n_blocks, keep.shape[1]), dtype=bool)
    rows[pairs[:, 0], pairs[:, 1]] = keep
    missing_rows = np.zeros_like(rows)
    missing_rows[pairs[:, 0], pairs[:, 1]] = missing
    return PolishResult(weights, full, int(keep.sum()), rows, missing_rows)


def _relative(rows_all, blocks_u, n_samples):
    """Row values per working block, (K, n R), relative to the weights each involves, and
    the raw values.

    A first-layer row of neuron j (rows ``j n .. j n + n - 1``) is divided by ``||u_j||``;
    a second-layer row (depth 3, rows from ``m1 n`` on) by ``||u||_{2,1}``.  A row whose
    weights vanish gets 0.  (Against the block norm alone, every row of a weak neuron would
    count as near its boundary.)
    """
    K, n_rows, width_d = rows_all.shape
    raw = (rows_all @ blocks_u.reshape(K, width_d, 1))[..., 0]
    neuron_norms = np.linalg.norm(blocks_u, axis=2)  # (K, m1)
    per_kind = np.hstack([neuron_norms, neuron_norms.sum(axis=1, keepdims=True)])
    scale = np.repeat(per_kind[:, : n_rows // n_samples], n_samples, axis=1)
    return raw / np.maximum(scale, np.finfo(float).tiny), raw


def _block_rows(scaled, pairs) -> np.ndarray:
    """Unit-norm cone rows of each working block, shape (K, R n, m1 d).

    Row ``r n + i``: for r < m1 the first-layer row ``(2 D1_r(i) - 1) x^_i`` on neuron r;
    at depth 3, r = m1 is the second-layer row ``(2 D2(i) - 1) s_j D1_j(i) x^_i`` on each j.
    """
    arr = scaled.problem.arrangements
    X = scaled.X_cone
    n, d = X.shape
    m1 = arr.width
    R = m1 + (arr.masks2 is not None)
    rows = np.zeros((len(pairs), R, n, m1, d))
    for k, t in enumerate(pairs[:, 1]):
        for j in range(m1):
            rows[k, j, :, j] = X * (2.0 * arr.masks1[:, t, j] - 1.0)[:, None]
            if arr.masks2 is not None:
                coef = (2.0 * arr.masks2[:, t] - 1.0) * arr.signs[t, j] * arr.masks1[:, t, j]
                rows[k, m1, :, j] = X * coef[:, None]
    return rows.reshape(len(pairs), R * n, m1 * d)


def _design_matrix(scaled, pairs) -> np.ndarray:
    """``F_W`` of shape (n, K m1 d): the prediction of the working blocks."""
    arr = scaled.problem.arrangements
    X = scaled.problem.X
    copy_sign = np.where(pairs[:, 0] == 0, 1.0, -1.0)
    coef = arr.masks1[:, pairs[:, 1], :] * arr.signs[pairs[:, 1]] * copy_sign[:, None]
    if arr.masks2 is not None:
        coef = coef * arr.masks2[:, pairs[:, 1], None]
    return (coef[..., None] * X[:, None, None, :]).reshape(X.shape[0], -1)


def _solve_reduced(problem, design, rows_all, keep, time_limit, tolerance):
    """The reduced program on ``x = (u, tau)`` by the dense interior-point method of
    :mod:`admmrelu.conic_ipm`: ``min 0.5 ||F_W u - y||^2 + beta sum tau_g`` subject to the
    kept rows ``G_r u >= 0`` and ``||u_g|| <= tau_g``.  Returns (u, multipliers of the kept
    rows) or None when it did not converge."""
    n_pairs, _, width_d = rows_all.shape
    d = problem.n_features
    n_u = n_pairs * width_d
    n_groups = n_u // d
    q = np.concatenate([-(design.T @ problem.y), np.full(n_groups, problem.beta)])
    L = BlockRows(
        [rows_all[k][keep[k]] for k in range(n_pairs)],
        np.arange(n_pairs) * width_d,
        n_u + n_groups,
    )
    groups = np.arange(n_groups)
    cones = np.hstack([n_u + groups[:, None], groups[:, None] * d + np.arange(d)])
    offset = 0.5 * float(problem.y @ problem.y)  # the loss's constant, left out of q
    F = np.hstack([design, np.zeros((design.shape[0], n_groups))])  # P = F^T F
    result = solve_qp_socp(
        None, q, L, cones, tolerance, time_limit=time_limit, offset=offset, P_factor=F
    )
    if not result.converged:
        return None
    return result.x[:n_u], result.z_linear
