"""Hyperplane-arrangement blocks: the container, joint sampling and deduplication.

A *block* t of the convex program (formulation.md §4) is

* depth 2: one first-layer mask ``D_t = diag(1[X g >= 0])``;
* depth 3: ``m1`` first-layer masks ``D1_{t,j}``, one sign ``s_{t,j}`` per neuron and one
  second-layer mask ``D2_t``.

Masks are stored as boolean arrays of their diagonals, never as n x n matrices.
Exact enumeration lives in :mod:`admmrelu.enumeration`.
"""

import warnings
from dataclasses import dataclass

import numpy as np

from ._validation import as_float_matrix, check_depth_width, check_int
from .memory import check_memory, sampling_chunk, sampling_memory, sampling_remedies


@dataclass(frozen=True, eq=False)
class Arrangements:
    """A set of P blocks of the convex program.

    Parameters
    ----------
    masks1 : bool ndarray of shape (n_samples, P, m1)
        First-layer masks: ``masks1[i, t, j]`` is the i-th diagonal entry of D1_{t,j}.
    signs : ndarray of shape (P, m1)
        Second-layer signs s_{t,j} in {+1, -1}; all +1 at depth 2.
    masks2 : bool ndarray of shape (n_samples, P) or None
        Second-layer masks D2_t (depth 3); None at depth 2.
    generators : ndarray of shape (P, m1, n_features) or None
        A point of each block's cone C_t (the sampled network's ``|w2_j| w1_j``, or an
        interior point found by enumeration).  Used to check that the blocks belong to X.
    exact : bool, default=False
        True when the blocks are an exact enumeration of the full-dimensional cells, so
        that the convex optimum is the global optimum of the non-convex network.
    n_draws : int, default=0
        Random networks drawn to obtain the blocks (0 for enumeration).
    """

    masks1: np.ndarray
    signs: np.ndarray
    masks2: np.ndarray | None = None
    generators: np.ndarray | None = None
    exact: bool = False
    n_draws: int = 0

    def __post_init__(self):
        masks1 = np.asarray(self.masks1)
        if masks1.dtype != bool or masks1.ndim != 3:
            raise TypeError(
                "masks1 must be a boolean array of shape (n_samples, P, m1); "
                f"got dtype {masks1.dtype} and shape {masks1.shape}"
            )
        n, P, m1 = masks1.shape
        if P == 0:
            raise ValueError(
                "arrangements are empty (P = 0 blocks); sample or enumerate at least one block"
            )
        signs = np.asarray(self.signs, dtype=np.float64)
        if signs.shape != (P, m1) or not np.all(np.abs(signs) == 1):
            raise ValueError(f"signs must have shape (P, m1) = {(P, m1)} with entries +1 or -1")
        masks2 = self.masks2
        if masks2 is not None:
            masks2 = np.asarray(masks2)
            if masks2.dtype != bool or masks2.shape != (n, P):
                raise TypeError(
                    f"masks2 must be a boolean array of shape (n_samples, P) = {(n, P)}; "
                    f"got dtype {masks2.dtype} and shape {masks2.shape}"
                )
        elif m1 != 1 or np.any(signs != 1):
            raise ValueError(
                "depth-2 arrangements (masks2=None) need m1 = 1 and all signs +1; "
                "pass masks2 for three-layer blocks"
            )
        generators = self.generators
        if generators is not None:
            generators = np.asarray(generators, dtype=np.float64)
            if generators.ndim != 3 or generators.shape[:2] != (P, m1):
                raise ValueError(
                    f"generators must have shape (P, m1, n_features) with (P, m1) = {(P, m1)}; "
                    f"got {generators.shape}"
                )
        object.__setattr__(self, "masks1", np.ascontiguousarray(masks1))
        object.__setattr__(self, "signs", signs)
        object.__setattr__(self, "masks2", masks2)
        object.__setattr__(self, "generators", generators)

    @property
    def depth(self) -> int:
        """2 for two-layer blocks, 3 for three-layer blocks."""
        return 2 if self.masks2 is None else 3

    @property
    def n_samples(self) -> int:
        return self.masks1.shape[0]

    @property
    def n_blocks(self) -> int:
        """Number of blocks P."""
        return self.masks1.shape[1]

    @property
    def width(self) -> int:
        """Number m1 of first-layer neurons per block (1 at depth 2)."""
        return self.masks1.shape[2]

    @property
    def nbytes(self) -> int:
        """Memory held by the masks, signs and generators, in bytes."""
        arrays = (self.masks1, self.signs, self.masks2, self.generators)
        return sum(a.nbytes for a in arrays if a is not None)

    def subset(self, blocks) -> "Arrangements":
        """The arrangements restricted to the block indices (or boolean mask) ``blocks``."""
        idx = np.arange(self.n_blocks)[blocks]
        return Arrangements(
            masks1=self.masks1[:, idx],
            signs=self.signs[idx],
            masks2=None if self.masks2 is None else self.masks2[:, idx],
            generators=None if self.generators is None else self.generators[idx],
            exact=self.exact and np.unique(idx).size == self.n_blocks,
            n_draws=self.n_draws,
        )

    def __repr__(self) -> str:
        kind = "enumerated" if self.exact else "sampled"
        return (
            f"Arrangements(depth={self.depth}, width={self.width}, n_blocks={self.n_blocks}, "
            f"n_samples={self.n_samples}, {kind})"
        )


def sample_arrangements(
    X, n_blocks, depth=2, width=None, seed=None, max_draws=None, max_memory=None
):
    """Sample distinct, non-trivial blocks from random networks (formulation.md §7).

    Depth 2: ``g ~ N(0, I_d)`` gives ``D = diag(1[X g >= 0])``.  Depth 3: a random network
    ``W1 ~ N(0, I)`` (d x m1), ``w2 ~ N(0, I_m1)`` gives the whole block jointly,
    ``D1_j = 1[X w1_j >= 0]``, ``s_j = sign(w2_j)``, ``D2 = 1[(X W1)_+ w2 >= 0]``, so its cone
    contains the sample ``(|w2_j| w1_j)_j`` (independent pairing of D1 and D2 is avoided
    because it mostly yields trivial cones).

    Blocks are deduplicated (neurons within a block are ordered canonically, so neuron
    permutations count once).  Trivial blocks, whose sample gives the zero output
    (all-zero mask at depth 2; non-positive pre-activation at depth 3), are pruned.
    Networks are drawn in rounds until ``n_blocks`` distinct blocks are found or
    ``max_draws`` networks were drawn; fewer blocks come with a warning.

    Memory: the blocks' masks (``n P m1`` bytes, plus ``n P`` at depth 3) are filled in
    place, and each round's products ``X W`` are formed a chunk of networks at a time
    (:data:`admmrelu.memory.CHUNK_BYTES`), so the peak is about the result plus 32 MiB
    (:func:`admmrelu.memory.sampling_memory`).  Above the budget the call refuses before
    allocating, with :class:`~admmrelu.exceptions.MemoryBudgetError`.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        Training data (append a column of ones for a bias).
    n_blocks : int
        Number P of distinct blocks wanted.
    depth : {2, 3}, default=2
    width : int or None, default=None
        First-layer neurons m1 per sub-network (depth 3); must be 1 or None at depth 2.
    seed : int, numpy Generator or None
        Seed of the random draws; results are deterministic for an int seed.
    max_draws : int or None, default=None
        Cap on the number of random networks drawn; ``None`` means ``20 * n_blocks + 1000``.
    max_memory : float or None, default=None
        Memory budget in bytes (:func:`admmrelu.memory.memory_budget`); None: the
        environment variable ``ADMMRELU_MAX_MEMORY``, else 80% of the available memory.

    Returns
    -------
    Arrangements
    """
    X = as_float_matrix(X)
    n_blocks = check_int(n_blocks, "n_blocks", minimum=1)
    depth, width = check_depth_width(depth, width)
    if max_draws is None:
        max_draws = 20 * n_blocks + 1000
    max_draws = check_int(max_draws, "max_draws", minimum=1)
    n, d = X.shape
    estimate = sampling_memory(n, d, n_blocks, depth, width)
    check_memory(estimate, max_memory, sampling_remedies(n, d, n_blocks, depth, width, max_memory))
    rng = np.random.default_rng(seed)

    masks1 = np.empty((n, n_blocks, width), dtype=bool)
    masks2 = None if depth == 2 else np.empty((n, n_blocks), dtype=bool)
    signs = np.empty((n_blocks, width))
    generators = np.empty((n_blocks, width, d))
    found: set[bytes] = set()
    count = 0
    n_draws = 0
    chunk = sampling_chunk(n, width)
    while count < n_blocks and n_draws < max_draws:
        batch = min(max(2 * (n_blocks - count), 64), max_draws - n_draws)
        W1 = rng.standard_normal((batch, width, d))
        w2 = np.ones((batch, width)) if depth == 2 else rng.standard_normal((batch, width))
        n_draws += batch
        # the round's networks a chunk at a time: same draws, same blocks, bounded memory
        for start in range(0, batch, chunk):
            if count == n_blocks:
                break
            stop = min(start + chunk, batch)
            block = _blocks_from_networks(X, W1[start:stop], w2[start:stop], depth)
            for b in np.flatnonzero(block["nontrivial"]):
                key = _block_key(block, b)
                if key in found:
                    continue
                found.add(key)
                masks1[:, count] = block["masks1"][:, b]
                if masks2 is not None:
                    masks2[:, count] = block["masks2"][:, b]
                signs[count] = block["signs"][b]
                generators[count] = block["generators"][b]
                count += 1
                if count == n_blocks:
                    break
    if count == 0:
        raise ValueError(
            f"no non-trivial block found in {n_draws} random networks; check that X is not "
            "all zeros, or raise max_draws"
        )
    if count < n_blocks:
        warnings.warn(
            f"found only {count} distinct non-trivial blocks in {n_draws} random networks "
            f"(asked for {n_blocks}); the data may have fewer cells: use "
            "enumerate_arrangements for small data, or raise max_draws",
            stacklevel=2,
        )
        masks1 = masks1[:, :count]
        masks2 = None if masks2 is None else np.ascontiguousarray(masks2[:, :count])
        signs, generators = signs[:count], generators[:count]
    return Arrangements(
        masks1=masks1,
        signs=signs,
        masks2=masks2,
        generators=generators,
        exact=False,
        n_draws=n_draws,
    )


def _blocks_from_networks(X, W1, w2, depth):
    """Blocks read off random networks, neurons in canonical order within each block.

    W1 : (B, m1, d), w2 : (B, m1).  Returns arrays masks1 (n, B, m1), signs (B, m1),
    masks2 (n, B) or None, generators (B, m1, d) and nontrivial (B,).
    """
    B, m1, d = W1.shape
    Z = (X @ W1.reshape(B * m1, d).T).reshape(X.shape[0], B, m1)  # one GEMM
    masks1 = Z >= 0
    signs = np.where(w2 >= 0, 1.0, -1.0)
    generators = np.abs(w2)[:, :, None] * W1
    order = _canonical_neuron_order(masks1, signs)
    masks1 = np.take_along_axis(masks1, order[None], axis=2)
    signs = np.take_along_axis(signs, order, axis=1)
    generators = np.take_along_axis(generators, order[:, :, None], axis=1)
    pre = (np.maximum(Z, 0.0) * w2[None]).sum(axis=2)  # the sample's second-layer input
    return dict(
        masks1=masks1,
        signs=signs,
        masks2=None if depth == 2 else pre >= 0,
        generators=generators,
        nontrivial=(pre > 0).any(axis=0),
    )


def _canonical_neuron_order(masks1, signs):
    """Per block, the order (B, m1) that sorts neurons by (sign, packed mask bytes)."""
    n, B, m1 = masks1.shape
    if m1 == 1:
        return np.zeros((B, 1), dtype=np.intp)
    packed = np.packbits(masks1, axis=0)  # (ceil(n/8), B, m1)
    order = np.empty((B, m1), dtype=np.intp)
    for b in range(B):
        keys = [(signs[b, j], packed[:, b, j].tobytes()) for j in range(m1)]
        order[b] = sorted(range(m1), key=keys.__getitem__)
    return order


def _block_key(block, b) -> bytes:
    """Bytes that identify block b (masks, signs and second-layer mask)."""
    parts = [np.packbits(block["masks1"][:, b], axis=0).tobytes(), block["signs"][b].tobytes()]
    if block["masks2"] is not None:
        parts.append(np.packbits(block["masks2"][:, b]).tobytes())
    return b"|".join(parts)
