"""From a network to the convex program: its blocks and a feasible point (the (>=) half of
the equivalence, formulation.md §4).

A depth-2 neuron ``(u, alpha)`` lies in the block of mask ``D = 1[X u >= 0]``; the point
``|alpha| u`` of that block's cone (copy w if alpha > 0, else w') gives the same output,
``D X (|alpha| u) = sign(alpha) (X u)_+ |alpha|``, and a regulariser
``|alpha| ||u|| <= (||u||^2 + alpha^2) / 2``.  A depth-3 sub-network
``(W1_k, w2_k, w3_k)`` with ``||W1_k||_F <= 1`` gives ``|w3_k| (|w2_kj| w1_kj)_j`` in the
block ``(1[X w1_kj >= 0], sign w2_kj, 1[(X W1_k)_+ w2_k >= 0])`` in the same way.
Units that share a block are summed.  So the convex objective at the lifted point is at
most the network's objective, and the convex optimum over these blocks is never worse.
"""

import numpy as np

from .arrangements import Arrangements, _block_key, _blocks_from_networks


def network_blocks(X, W1, w2, depth):
    """Blocks of a network's units, and each unit's block.

    Parameters
    ----------
    X : ndarray of shape (n, d)
    W1 : ndarray of shape (B, m1, d)
        First-layer weights of each unit (depth 2: ``m1 = 1``, one neuron per unit).
    w2 : ndarray of shape (B, m1)
        Second-layer weights (ones at depth 2).
    depth : {2, 3}

    Returns
    -------
    arrangements : Arrangements or None
        The distinct non-trivial blocks (None when every unit is trivial: dead, or with a
        non-positive second-layer input everywhere).
    unit_block : ndarray of shape (B,)
        Index of each unit's block, -1 for trivial units.
    generators : ndarray of shape (B, m1, d)
        Each unit's point ``(|w2_j| w1_j)_j`` in its block's cone, neurons in the block's
        (canonical) order.
    """
    block = _blocks_from_networks(X, np.asarray(W1, float), np.asarray(w2, float), depth)
    index: dict[bytes, int] = {}
    unit_block = np.full(W1.shape[0], -1)
    kept = []
    for b in np.flatnonzero(block["nontrivial"]):
        key = _block_key(block, b)
        if key not in index:
            index[key] = len(kept)
            kept.append(b)
        unit_block[b] = index[key]
    if not kept:
        return None, unit_block, block["generators"]
    arrangements = Arrangements(
        masks1=block["masks1"][:, kept],
        signs=block["signs"][kept],
        masks2=None if depth == 2 else block["masks2"][:, kept],
        generators=block["generators"][kept],
        n_draws=W1.shape[0],
    )
    return arrangements, unit_block, block["generators"]


def lift_network(X, network):
    """The blocks of ``network`` and its point U (2, P, m1, d) in the convex program.

    ``network``: a :class:`~admmrelu.network.TwoLayerReLUNetwork` or a
    :class:`~admmrelu.network.ThreeLayerReLUNetwork` (each ``||W1_k||_F <= 1``).  The
    point is cone-feasible, predicts ``network.predict(X)`` on X, and its convex objective
    is at most ``network.objective(X, y, beta)`` for every y and beta.

    Returns (arrangements, U), or (None, None) when no unit has a non-trivial block (the
    network is the zero function on X).
    """
    if network.depth == 2:
        W1 = network.W1.T[:, None, :]  # (m, 1, d)
        w2 = np.ones((W1.shape[0], 1))
        out = np.asarray(network.w2, float)
    else:
        W1 = np.transpose(network.W1, (0, 2, 1))  # (K, m1, d)
        w2 = network.w2
        out = np.asarray(network.w3, float)
    arrangements, unit_block, generators = network_blocks(X, W1, w2, network.depth)
    if arrangements is None:
        return None, None
    U = np.zeros((2, arrangements.n_blocks, *generators.shape[1:]))
    for unit in np.flatnonzero(unit_block >= 0):
        copy = 0 if out[unit] > 0 else 1
        U[copy, unit_block[unit]] += abs(out[unit]) * generators[unit]
    return arrangements, U
