"""Sampled arrangements (formulation.md §7) and the Arrangements container.

Every property is recomputed here from the stored generators with plain numpy:
depth 2 ``D = 1[X g >= 0]``; depth 3 ``D1_j = 1[X g_j >= 0]``, ``D2 = 1[sum_j s_j (X g_j)_+ >= 0]``
(the generators are ``|w2_j| w1_j``, so the signs of ``X g_j`` are those of ``X w1_j`` and
``sum_j s_j (X g_j)_+ = (X W1)_+ w2``).
"""

import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import admmrelu as ar


def random_X(rng, n, d, bias=True):
    X = rng.standard_normal((n, d))
    if bias:
        X[:, -1] = 1.0
    return X


def sample_quietly(*args, **kwargs):
    with warnings.catch_warnings():  # tiny data may have fewer cells than asked for
        warnings.simplefilter("ignore", UserWarning)
        return ar.sample_arrangements(*args, **kwargs)


def network_output(X, arr, t):
    """The generator's second-layer pre-activation sum_j s_j (X g_j)_+ = (X W1)_+ w2."""
    return sum(
        arr.signs[t, j] * np.maximum(X @ arr.generators[t, j], 0.0) for j in range(arr.width)
    )


def block_keys(arr, canonical):
    """Hashable identity of each block; with ``canonical`` the neurons form a multiset."""
    keys = []
    for t in range(arr.n_blocks):
        neurons = [
            (float(arr.signs[t, j]), arr.masks1[:, t, j].tobytes()) for j in range(arr.width)
        ]
        if canonical:
            neurons = sorted(neurons)
        second = b"" if arr.masks2 is None else arr.masks2[:, t].tobytes()
        keys.append((tuple(neurons), second))
    return keys


@st.composite
def sampling_cases(draw):
    depth = draw(st.sampled_from([2, 3]))
    width = None if depth == 2 else draw(st.integers(1, 3))
    n = draw(st.integers(1, 15))
    d = draw(st.integers(1, 4))
    P = draw(st.integers(1, 25))
    seed = draw(st.integers(0, 2**31 - 1))
    X = random_X(np.random.default_rng(seed), n, d, bias=draw(st.booleans()))
    return X, P, depth, width, seed


# ------------------------------------------------------------- determinism
@pytest.mark.parametrize("depth, width", [(2, None), (3, 2)])
def test_deterministic_for_a_seed(depth, width):
    X = random_X(np.random.default_rng(0), 30, 4)
    a = ar.sample_arrangements(X, 20, depth=depth, width=width, seed=123)
    b = ar.sample_arrangements(X, 20, depth=depth, width=width, seed=123)
    c = ar.sample_arrangements(X, 20, depth=depth, width=width, seed=124)
    for name in ("masks1", "signs", "masks2", "generators"):
        x, y = getattr(a, name), getattr(b, name)
        if x is None:
            assert y is None
        else:
            np.testing.assert_array_equal(x, y)
    assert a.n_draws == b.n_draws
    assert block_keys(a, True) != block_keys(c, True)
    assert not np.array_equal(a.generators, c.generators)


def test_generator_seed_is_accepted():
    X = random_X(np.random.default_rng(0), 20, 3)
    a = ar.sample_arrangements(X, 10, seed=np.random.default_rng(5))
    b = ar.sample_arrangements(X, 10, seed=np.random.default_rng(5))
    np.testing.assert_array_equal(a.masks1, b.masks1)


# ------------------------------------------------- structure (hypothesis)
@given(sampling_cases())
def test_sampled_blocks_are_consistent(case):
    X, P, depth, width, seed = case
    n, d = X.shape
    arr = sample_quietly(X, P, depth=depth, width=width, seed=seed)
    m1 = 1 if width is None else width
    # shapes and dtypes: boolean diagonals, never n x n matrices
    assert arr.depth == depth and arr.width == m1 and arr.n_samples == n
    assert 1 <= arr.n_blocks <= P
    assert arr.masks1.dtype == bool and arr.masks1.shape == (n, arr.n_blocks, m1)
    assert arr.signs.shape == (arr.n_blocks, m1)
    assert arr.generators.shape == (arr.n_blocks, m1, d)
    assert not arr.exact and arr.n_draws >= arr.n_blocks
    if depth == 2:
        assert arr.masks2 is None
        assert np.all(arr.signs == 1.0)
    else:
        assert arr.masks2.dtype == bool and arr.masks2.shape == (n, arr.n_blocks)
        assert set(np.unique(arr.signs)) <= {-1.0, 1.0}
    # distinct blocks, also modulo neuron permutations
    assert len(set(block_keys(arr, canonical=True))) == arr.n_blocks
    for t in range(arr.n_blocks):
        # generators reproduce the masks
        for j in range(m1):
            np.testing.assert_array_equal(arr.masks1[:, t, j], X @ arr.generators[t, j] >= 0)
        out = network_output(X, arr, t)
        if depth == 2:
            assert arr.masks1[:, t, 0].any()  # no all-zero mask
        else:
            np.testing.assert_array_equal(arr.masks2[:, t], out >= 0)
            assert out.max() > 0  # non-trivial: the sample's output is not identically 0
            # canonical neuron order: sorted by (sign, packed mask bytes)
            keys = [
                (arr.signs[t, j], np.packbits(arr.masks1[:, t, j]).tobytes()) for j in range(m1)
            ]
            assert keys == sorted(keys)


@given(sampling_cases())
def test_generators_lie_in_their_cones(case):
    """The problem's generator check accepts the arrangements of the same X."""
    X, P, depth, width, seed = case
    arr = sample_quietly(X, P, depth=depth, width=width, seed=seed)
    prob = ar.ConvexReLUProblem(X, np.zeros(X.shape[0]), 1.0, arr)
    U = np.stack([arr.generators, arr.generators])
    assert prob.constraint_violation(U) == 0.0
    # each generator's block reproduces the sampled network: A_t g = (out)_+
    for t in range(arr.n_blocks):
        V = np.zeros(prob.var_shape)
        V[0, t] = arr.generators[t]
        expected = np.maximum(network_output(X, arr, t), 0.0)
        scale = np.linalg.norm(X, axis=1).max() * np.abs(arr.generators[t]).sum() * 1e-12
        np.testing.assert_allclose(prob.forward(V), expected, rtol=0, atol=scale + 1e-300)


# --------------------------------------------------------- fewer blocks
@pytest.mark.parametrize("depth, width", [(2, None), (3, 2)])
def test_asking_for_more_blocks_than_exist_warns(depth, width):
    X = random_X(np.random.default_rng(1), 4, 2)
    exact = ar.enumerate_arrangements(X, depth=depth, width=width)
    with pytest.warns(UserWarning, match=r"found only \d+ distinct"):
        arr = ar.sample_arrangements(X, 5000, depth=depth, width=width, seed=0, max_draws=3000)
    assert arr.n_blocks < 5000
    if depth == 2:
        assert arr.n_blocks <= exact.n_blocks
    assert arr.n_draws <= 3000
    # every sampled block with distinct, live neurons is an exactly enumerated cell
    exact_keys = set(block_keys(exact, canonical=True))
    for t, key in enumerate(block_keys(arr, canonical=True)):
        neurons = [m for _, m in key[0]]
        live = all(arr.masks1[:, t].any(axis=0))
        if len(set(key[0])) == len(key[0]) and live:
            assert key in exact_keys, (t, neurons)


def test_depth2_sampled_cells_are_enumerated_cells():
    X = random_X(np.random.default_rng(2), 6, 3)
    exact = ar.enumerate_arrangements(X)
    with pytest.warns(UserWarning, match="found only"):
        arr = ar.sample_arrangements(X, exact.n_blocks + 10, seed=0, max_draws=20_000)
    # every sampled mask is an open cell (a Gaussian g lies in one almost surely); thin
    # cells may be missed, so only inclusion is guaranteed
    assert set(block_keys(arr, True)) <= set(block_keys(exact, True))
    assert arr.n_blocks <= exact.n_blocks


def test_no_block_at_all_raises():
    X = np.zeros((5, 2))
    with pytest.raises(ValueError, match="no non-trivial block"):
        # the all-ones mask of zero data is trivial at depth 3 (output identically 0)
        ar.sample_arrangements(X, 3, depth=3, width=2, seed=0, max_draws=50)


# ---------------------------------------------------------------- subset
@pytest.mark.parametrize("depth, width", [(2, None), (3, 3)])
def test_subset_keeps_consistency(depth, width):
    rng = np.random.default_rng(4)
    X = random_X(rng, 12, 3)
    arr = ar.sample_arrangements(X, 10, depth=depth, width=width, seed=1)
    idx = np.array([7, 2, 5])
    sub = arr.subset(idx)
    assert sub.n_blocks == 3 and sub.depth == depth and sub.width == arr.width
    np.testing.assert_array_equal(sub.masks1, arr.masks1[:, idx])
    np.testing.assert_array_equal(sub.signs, arr.signs[idx])
    np.testing.assert_array_equal(sub.generators, arr.generators[idx])
    if depth == 3:
        np.testing.assert_array_equal(sub.masks2, arr.masks2[:, idx])
    # a boolean selector gives the same blocks in index order
    keep = np.zeros(arr.n_blocks, dtype=bool)
    keep[idx] = True
    np.testing.assert_array_equal(arr.subset(keep).masks1, arr.masks1[:, np.sort(idx)])
    # the sub-problem is the full problem with the other blocks set to zero
    y = rng.standard_normal(12)
    full = ar.ConvexReLUProblem(X, y, 0.2, arr)
    part = ar.ConvexReLUProblem(X, y, 0.2, sub)
    V = part.project(rng.standard_normal(part.var_shape))
    U = np.zeros(full.var_shape)
    U[:, idx] = V
    np.testing.assert_allclose(part.forward(V), full.forward(U), rtol=1e-13, atol=1e-13)
    assert part.objective(V) == pytest.approx(full.objective(U), rel=1e-13)
    np.testing.assert_array_equal(part.cone(V), full.cone(U)[:, :, idx])


def test_subset_of_exact_arrangements(tiny_two_layer):
    _, _, exact = tiny_two_layer
    assert exact.exact
    assert exact.subset(np.arange(exact.n_blocks)).exact
    assert exact.subset(np.arange(exact.n_blocks)[::-1]).exact  # a permutation of all blocks
    assert not exact.subset(np.arange(exact.n_blocks - 1)).exact
    # repeating a block does not make a proper subset exact
    idx = np.r_[np.arange(exact.n_blocks - 1), 0]
    assert not exact.subset(idx).exact
    assert repr(exact.subset([0])).startswith("Arrangements(depth=2")


def test_arrangements_repr_and_nbytes():
    X = random_X(np.random.default_rng(0), 10, 3)
    arr = ar.sample_arrangements(X, 4, depth=3, width=2, seed=0)
    text = repr(arr)
    assert "depth=3" in text and "width=2" in text and "n_blocks=4" in text and "sampled" in text
    expected = arr.masks1.nbytes + arr.signs.nbytes + arr.masks2.nbytes + arr.generators.nbytes
    assert arr.nbytes == expected
    # masks are stored as diagonals: O(n P m1) bytes, not O(n^2 P)
    assert arr.masks1.nbytes == 10 * 4 * 2
