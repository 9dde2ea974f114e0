"""Completeness and correctness of exact enumeration (formulation.md §4, §8, §11.2).

Independent references used here:

* bound (14) written out with ``math.comb`` (tight for data in general position);
* brute force: every one of the 2^n sign patterns is tested with its own max-margin LP
  (no tree search), for the first layer and for the second layer of a neuron tuple;
* random networks drawn here (not through the library) whose blocks must all be present;
* the convex optimum over any other block set, which can only be larger (§4, §7).
"""

import time
from itertools import combinations
from math import comb

import numpy as np
import pytest
from conftest import tiny_data
from scipy.optimize import linprog

import admmrelu as ar
from admmrelu.enumeration import cover_bound

#: An LP margin above this (rows and u normalised) proves an open cell.  Cells of random
#: Gaussian data have margins of order 1e-3 or more, so the threshold is not delicate.
_OPEN_MARGIN = 1e-9


# --------------------------------------------------------------------------- helpers
def _max_margin(rows):
    """``max t`` s.t. ``rows u >= t``, ``|u|_inf <= 1`` (rows normalised); -inf if infeasible."""
    rows = rows / np.linalg.norm(rows, axis=1, keepdims=True)
    k, D = rows.shape
    c = np.zeros(D + 1)
    c[-1] = -1.0
    res = linprog(
        c,
        A_ub=np.hstack([-rows, np.ones((k, 1))]),
        b_ub=np.zeros(k),
        bounds=[(-1, 1)] * D + [(None, 1)],
        method="highs",
    )
    return -res.fun if res.status == 0 else -np.inf


def _patterns(n):
    """All 2^n boolean patterns, shape (2^n, n)."""
    return ((np.arange(2**n)[:, None] >> np.arange(n)) & 1).astype(bool)


def _mask_key(mask):
    return np.packbits(mask).tobytes()


def _block_keys(arr):
    """Each block as (frozenset of (mask, sign) neurons, second-layer mask or None)."""
    keys = []
    for t in range(arr.n_blocks):
        neurons = frozenset(
            (_mask_key(arr.masks1[:, t, j]), float(arr.signs[t, j])) for j in range(arr.width)
        )
        second = None if arr.masks2 is None else _mask_key(arr.masks2[:, t])
        keys.append((neurons, second))
    return keys


def _random_network_blocks(X, n_draws, width, depth, rng):
    """Blocks read off random networks drawn here, with the non-trivial ones flagged.

    Non-trivial (what exact enumeration must contain): distinct (mask, sign) neurons, no
    all-zero neuron mask, some positive sign and, at depth 3, a second-layer mask that is
    on for some row with an active neuron (otherwise the block's output is identically 0).
    """
    d = X.shape[1]
    W1 = rng.standard_normal((n_draws, width, d))
    w2 = np.ones((n_draws, width)) if depth == 2 else rng.standard_normal((n_draws, width))
    Z = np.einsum("nd,bjd->bjn", X, W1)
    masks1 = Z >= 0
    signs = np.where(w2 >= 0, 1.0, -1.0)
    pre = np.einsum("bjn,bj->bn", np.maximum(Z, 0.0), w2)
    masks2 = pre >= 0
    active_rows = masks1.any(axis=1)  # rows of B_t that are not identically zero
    blocks = set()
    for b in range(n_draws):
        neurons = [(_mask_key(masks1[b, j]), float(signs[b, j])) for j in range(width)]
        if len(set(neurons)) < width or not masks1[b].any(axis=1).all():
            continue
        if not (signs[b] > 0).any():
            continue
        if depth == 3 and not (masks2[b] & active_rows[b]).any():
            continue
        blocks.add((frozenset(neurons), None if depth == 2 else _mask_key(masks2[b])))
    return blocks


# ------------------------------------------------------------------- depth 2: counts
@pytest.mark.parametrize(
    ("n", "d", "seed"),
    [(4, 1, 0), (3, 3, 1), (5, 2, 2), (8, 2, 3), (6, 3, 4), (8, 3, 5), (12, 3, 6)],
)
def test_depth2_cell_count_is_cover_bound_minus_all_negative(n, d, seed):
    X, _ = tiny_data(n, d, seed)
    arr = ar.enumerate_arrangements(X, depth=2)
    r = np.linalg.matrix_rank(X)
    expected = 2 * sum(comb(n - 1, k) for k in range(r))  # bound (14), tight in general position
    assert cover_bound(n, r) == expected
    # the bias column makes u = -e_bias an all-negative cell, which enumeration drops
    assert arr.n_blocks == expected - 1
    assert arr.exact and arr.depth == 2 and arr.width == 1 and arr.masks2 is None
    np.testing.assert_array_equal(arr.signs, 1.0)

    masks = arr.masks1[:, :, 0]  # (n, P)
    assert masks.any(axis=0).all(), "the all-zero mask is dominated and must be dropped"
    assert len({_mask_key(masks[:, t]) for t in range(arr.n_blocks)}) == arr.n_blocks

    # every mask is reproduced by its generator, with a strict margin on every row
    g = arr.generators[:, 0, :]  # (P, d)
    Z = X @ g.T  # (n, P)
    np.testing.assert_array_equal(Z >= 0, masks)
    margin = np.abs(Z) / np.linalg.norm(X, axis=1)[:, None] / np.linalg.norm(g, axis=1)
    assert margin.min() > 1e-10


@pytest.mark.parametrize(("n", "d", "seed"), [(8, 3, 1), (7, 2, 7), (6, 3, 8)])
def test_depth2_matches_brute_force_over_all_patterns(n, d, seed):
    """Every pattern with an open cell (found by one LP per pattern) is enumerated, and
    only those (plus the dropped all-negative cell)."""
    X, _ = tiny_data(n, d, seed)
    arr = ar.enumerate_arrangements(X, depth=2)
    brute = {
        _mask_key(h)
        for h in _patterns(n)
        if _max_margin(X * (2.0 * h - 1.0)[:, None]) > _OPEN_MARGIN
    }
    enumerated = {_mask_key(arr.masks1[:, t, 0]) for t in range(arr.n_blocks)}
    assert enumerated == brute - {_mask_key(np.zeros(n, dtype=bool))}
    assert _mask_key(np.zeros(n, dtype=bool)) in brute


# -------------------------------------------------------------- depth 3: structure
def _check_depth3_blocks(X, arr, width):
    n, d = X.shape
    assert arr.exact and arr.depth == 3 and arr.width == width
    keys = _block_keys(arr)
    assert len(set(keys)) == arr.n_blocks, "blocks (as neuron multisets + D2) are distinct"
    for t, (neurons, _) in enumerate(keys):
        assert len(neurons) == width, f"block {t} repeats a neuron"
    assert arr.masks1.any(axis=0).all(), "no neuron has the all-zero mask"
    assert (arr.signs > 0).any(axis=1).all(), "every block has a positive sign"
    active = arr.masks1.any(axis=2)  # (n, P): rows of B_t that are not identically zero
    assert (arr.masks2 & active).any(axis=0).all(), "no block has an identically zero output"
    assert arr.masks2[~active].all(), "rows with B_t row = 0 are fixed to mask 1"


def test_depth3_blocks_are_distinct_and_nontrivial(tiny_three_layer):
    X, _, arr = tiny_three_layer
    _check_depth3_blocks(X, arr, width=2)


def test_depth3_generators_lie_strictly_inside_their_cones(tiny_three_layer):
    X, y, arr = tiny_three_layer
    n, d = X.shape
    gens = arr.generators  # (P, m1, d)
    # cone values by hand: (2 D1_j - 1) X g_j and (2 D2 - 1) sum_j s_j D1_j X g_j
    Z = np.einsum("nd,tjd->ntj", X, gens)
    first = (2.0 * arr.masks1 - 1.0) * Z
    B = np.einsum("ntj,tj->nt", arr.masks1 * Z, arr.signs)
    second = (2.0 * arr.masks2 - 1.0) * B
    by_hand = np.concatenate([first, second[..., None]], axis=2)  # (n, P, m1 + 1)

    prob = ar.ConvexReLUProblem(X, y, 1.0, arr)
    G = prob.cone(np.stack([gens, np.zeros_like(gens)]))[:, 0]  # copy w_t holds the generator
    scale = np.linalg.norm(X, axis=1).max() * np.abs(gens).max()
    np.testing.assert_allclose(G, by_hand, rtol=0, atol=1e-13 * scale)

    # rows identically zero: first layer never (x_i != 0, bias), second layer iff no
    # neuron of the block is active at x_i
    nonzero_row = np.concatenate(
        [np.ones_like(arr.masks1), arr.masks1.any(axis=2, keepdims=True)], axis=2
    )
    row_norm = np.concatenate(
        [
            np.broadcast_to(np.linalg.norm(X, axis=1)[:, None, None], arr.masks1.shape),
            np.linalg.norm(arr.masks1[:, :, :, None] * X[:, None, None, :], axis=(2, 3))[
                ..., None
            ],
        ],
        axis=2,
    )
    gen_norm = np.linalg.norm(gens, axis=(1, 2))[None, :, None]
    relative = G[nonzero_row] / (row_norm * gen_norm)[nonzero_row]
    assert relative.min() > 1e-10
    np.testing.assert_array_equal(G[~nonzero_row], 0.0)
    # equivalently: the generator is a network that produces exactly this block
    np.testing.assert_array_equal(Z >= 0, arr.masks1)
    assert ((B > 0) == arr.masks2)[arr.masks1.any(axis=2)].all()


def test_depth3_second_layer_cells_match_brute_force(tiny_two_layer, tiny_three_layer):
    """All neuron tuples with a positive sign appear; for some tuples the second-layer
    cells equal those found by one LP per pattern over all 2^n patterns."""
    X, _, arr3 = tiny_three_layer
    n, d = X.shape
    arr2 = ar.enumerate_arrangements(X, depth=2)
    neurons = [(arr2.masks1[:, c, 0], s) for s in (1.0, -1.0) for c in range(arr2.n_blocks)]
    tuples = [t for t in combinations(range(len(neurons)), 2) if any(neurons[k][1] > 0 for k in t)]
    keys = _block_keys(arr3)
    by_tuple = {}
    for neuron_set, second in keys:
        by_tuple.setdefault(neuron_set, set()).add(second)
    tuple_keys = [frozenset((_mask_key(neurons[k][0]), neurons[k][1]) for k in t) for t in tuples]
    assert set(by_tuple) == set(tuple_keys)

    rng = np.random.default_rng(0)
    for i in rng.choice(len(tuples), size=10, replace=False):
        masks = np.stack([neurons[k][0] for k in tuples[i]], axis=1)  # (n, 2)
        signs = np.array([neurons[k][1] for k in tuples[i]])
        # rows of the first-layer cone (block diagonal) and of B_t (pre-activation)
        first = np.zeros((2 * n, 2 * d))
        for j in range(2):
            first[j * n : (j + 1) * n, j * d : (j + 1) * d] = (
                X * (2.0 * masks[:, j] - 1.0)[:, None]
            )
        B = np.hstack([X * (signs[j] * masks[:, j])[:, None] for j in range(2)])
        active = masks.any(axis=1)
        brute = set()
        for h in _patterns(int(active.sum())):
            mask2 = np.ones(n, dtype=bool)
            mask2[active] = h
            if not h.any():  # identically zero output: dominated, not enumerated
                continue
            rows = np.vstack([first, B[active] * (2.0 * h - 1.0)[:, None]])
            if _max_margin(rows) > _OPEN_MARGIN:
                brute.add(_mask_key(mask2))
        assert by_tuple[tuple_keys[i]] == brute


# ------------------------------------------------------------ completeness by sampling
def test_depth2_complete_under_random_networks(tiny_two_layer):
    X, _, arr = tiny_two_layer
    enumerated = set(_block_keys(arr))
    drawn = _random_network_blocks(X, 20_000, width=1, depth=2, rng=np.random.default_rng(3))
    assert drawn <= enumerated, f"{len(drawn - enumerated)} sampled cells are missing"
    assert len(drawn) >= 0.8 * len(enumerated)  # the draws do explore the arrangement

    with pytest.warns(UserWarning, match="found only"):  # there are only P cells to find
        sampled = ar.sample_arrangements(X, 10 * arr.n_blocks, seed=4, max_draws=20_000)
    assert set(_block_keys(sampled)) <= enumerated


@pytest.mark.parametrize("case", ["fixture", "n5_d3"])
def test_depth3_complete_under_random_networks(case, tiny_three_layer):
    if case == "fixture":
        X, _, arr = tiny_three_layer
    else:
        X, _ = tiny_data(5, 3, seed=11)
        arr = ar.enumerate_arrangements(X, depth=3, width=2)
    _check_depth3_blocks(X, arr, width=2)
    enumerated = set(_block_keys(arr))
    drawn = _random_network_blocks(X, 60_000, width=2, depth=3, rng=np.random.default_rng(5))
    missing = drawn - enumerated
    assert not missing, (
        f"{len(missing)} blocks of random networks are missing, e.g. {missing.pop()}"
    )
    assert len(drawn) >= 0.3 * len(enumerated)  # the draws do explore the blocks

    with pytest.warns(UserWarning, match="found only"):
        sampled = ar.sample_arrangements(
            X, 10 * arr.n_blocks, depth=3, width=2, seed=6, max_draws=60_000
        )
    # sampling may keep a block with a repeated neuron or a dead (all-zero mask) neuron;
    # both are dominated and not enumerated (§11.2), so compare the others
    keep = sampled.masks1.any(axis=0).all(axis=1)
    sampled_keys = {k for k, ok in zip(_block_keys(sampled), keep, strict=True) if ok}
    sampled_keys = {k for k in sampled_keys if len(k[0]) == 2}
    assert len(sampled_keys) >= 0.3 * len(enumerated)
    assert sampled_keys <= enumerated


# -------------------------------------------------------------------------- refusal
def _large_data():
    rng = np.random.default_rng(0)
    return np.hstack([rng.standard_normal((200, 9)), np.ones((200, 1))])


@pytest.mark.parametrize(("depth", "width"), [(2, None), (3, 2)])
def test_refuses_large_data_quickly(depth, width):
    X = _large_data()
    assert ar.estimate_n_blocks(X, depth=depth, width=width) > 50_000
    start = time.perf_counter()
    with pytest.raises(ar.TooManyArrangementsError, match="sample_arrangements") as info:
        ar.enumerate_arrangements(X, depth=depth, width=width)
    assert time.perf_counter() - start < 5.0, "refusal must come before any enumeration"
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(("depth", "width"), [(2, None), (3, 2)])
def test_refusal_message_names_the_estimate(depth, width):
    """The message must state estimate_n_blocks for the requested depth (the docstring:
    "refuses ..., naming the estimate").  At depth 3 a first-layer count is not an upper
    bound on the number of blocks and must not be presented as one."""
    X = _large_data()
    estimate = ar.estimate_n_blocks(X, depth=depth, width=width)
    with pytest.raises(ar.TooManyArrangementsError) as info:
        ar.enumerate_arrangements(X, depth=depth, width=width)
    message = str(info.value)
    assert f"{estimate:,}" in message or str(estimate) in message, message


def test_max_blocks_below_true_count_refuses(tiny_two_layer, tiny_three_layer):
    for X, depth, width, arr in (
        (tiny_two_layer[0], 2, None, tiny_two_layer[2]),
        (tiny_three_layer[0], 3, 2, tiny_three_layer[2]),
    ):
        with pytest.raises(ar.TooManyArrangementsError, match="sample_arrangements"):
            ar.enumerate_arrangements(X, depth=depth, width=width, max_blocks=arr.n_blocks - 1)
        with pytest.raises(ar.TooManyArrangementsError):
            ar.enumerate_arrangements(X, depth=depth, width=width, max_bytes=arr.nbytes // 2)
        # the documented limit: an estimate <= max_blocks never refuses
        estimate = ar.estimate_n_blocks(X, depth=depth, width=width)
        again = ar.enumerate_arrangements(X, depth=depth, width=width, max_blocks=estimate)
        assert set(_block_keys(again)) == set(_block_keys(arr))


@pytest.mark.parametrize(
    ("n", "d", "depth", "width", "seed"),
    [
        (8, 3, 2, None, 1),
        (12, 3, 2, None, 2),
        (6, 2, 3, 1, 3),
        (6, 2, 3, 2, 2),
        (5, 3, 3, 2, 4),
        (5, 2, 3, 3, 5),
    ],
)
def test_estimate_bounds_the_count(n, d, depth, width, seed):
    X, _ = tiny_data(n, d, seed)
    arr = ar.enumerate_arrangements(X, depth=depth, width=width)
    assert ar.estimate_n_blocks(X, depth=depth, width=width) >= arr.n_blocks
    if depth == 3:
        _check_depth3_blocks(X, arr, width)


# ------------------------------------------------- exact optimum <= restricted optimum
@pytest.mark.parametrize("depth", [2, 3])
def test_exact_optimum_is_below_every_restricted_optimum(depth, tiny_two_layer, tiny_three_layer):
    X, y, arr = tiny_two_layer if depth == 2 else tiny_three_layer
    width = None if depth == 2 else 2
    prob = ar.ConvexReLUProblem(X, y, 1.0, arr)
    beta = (0.05 if depth == 2 else 0.02) * prob.beta_max
    exact = prob.with_beta(beta).solve(solver="cvxpy", cvxpy_solver="CLARABEL")
    assert exact.status == "optimal"
    rng = np.random.default_rng(1)
    restricted = [
        arr.subset(rng.choice(arr.n_blocks, size=arr.n_blocks // 4, replace=False)),
        ar.sample_arrangements(X, 10, depth=depth, width=width, seed=2),
        ar.sample_arrangements(X, 30, depth=depth, width=width, seed=3),
    ]
    for sub in restricted:
        assert not sub.exact
        res = ar.ConvexReLUProblem(X, y, beta, sub).solve(solver="cvxpy", cvxpy_solver="CLARABEL")
        assert not res.arrangements_exact
        # exact.dual_bound bounds every network from below (rigorous up to rounding), and the
        # restricted solution maps to a network attaining its objective (§4 (>=), §5)
        net_value = res.network().objective(X, y, beta)
        assert exact.dual_bound <= net_value + 1e-12 * net_value
        # both solves are accurate to a relative gap of 1e-6 ('optimal' status)
        assert exact.objective <= res.objective * (1 + 2e-6)
