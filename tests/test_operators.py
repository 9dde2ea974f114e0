"""The masked operators of ConvexReLUProblem against dense matrices built from formulation.md §4.

Every block t gets the dense lifted matrix ``A_t = D2_t [s_1 D1_1 X, ..., s_m1 D1_m1 X]``
(``D2_t = I`` at depth 2) and the dense cone matrix
``G_t = [blkdiag_j((2 D1_j - I) X); (2 D2_t - I) B_t]`` (second part at depth 3 only),
built with ``np.diag`` from the boolean masks.  Arrangements come straight from random
masks and signs (``generators=None``), so nothing here depends on how blocks are sampled.

Tolerances: the operators are sums of at most ``n * P * m1 * d`` (< 10^3) float64
products, so the rounding error of an inner product is below ``k eps <|a|, |b|>`` with
``k eps < 10^3 * 2.2e-16 ~ 2e-13``; 1e-10 times the sum of absolute terms leaves a
large margin while still catching any wrong mask, sign or index (errors of order 1).
"""

import cvxpy as cp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import admmrelu as ar

RTOL = 1e-10


# ----------------------------------------------------------------- builders
@st.composite
def random_problems(draw, max_n=8, max_d=4, max_P=4, max_m1=3):
    """A problem with random X, y, masks and signs (depth 2 or 3), plus its numpy RNG."""
    depth = draw(st.sampled_from([2, 3]))
    n = draw(st.integers(1, max_n))
    d = draw(st.integers(1, max_d))
    P = draw(st.integers(1, max_P))
    m1 = 1 if depth == 2 else draw(st.integers(1, max_m1))
    density = draw(st.sampled_from([0.0, 0.3, 0.5, 0.8, 1.0]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    X = rng.standard_normal((n, d))
    y = rng.standard_normal(n)
    masks1 = rng.random((n, P, m1)) < density
    if depth == 2:
        signs = np.ones((P, 1))
        masks2 = None
    else:
        signs = rng.choice([-1.0, 1.0], size=(P, m1))
        masks2 = rng.random((n, P)) < 0.5
    arr = ar.Arrangements(masks1=masks1, signs=signs, masks2=masks2, generators=None)
    beta = float(rng.uniform(0.01, 2.0))
    return ar.ConvexReLUProblem(X, y, beta, arr), rng


def dense_blocks(prob):
    """Per block t: (A_t of shape (n, m1 d), G_t of shape (R n, m1 d)) from formulation §4."""
    X, arr = prob.X, prob.arrangements
    n = prob.n_samples
    eye = np.eye(n)
    blocks = []
    for t in range(prob.n_blocks):
        D1 = [np.diag(arr.masks1[:, t, j].astype(float)) for j in range(prob.width)]
        B = np.hstack([arr.signs[t, j] * D1[j] @ X for j in range(prob.width)])
        first = np.zeros((prob.width * n, prob.width * prob.n_features))
        for j in range(prob.width):
            rows = slice(j * n, (j + 1) * n)
            cols = slice(j * prob.n_features, (j + 1) * prob.n_features)
            first[rows, cols] = (2 * D1[j] - eye) @ X
        if arr.masks2 is None:
            A, G = B, first
        else:
            D2 = np.diag(arr.masks2[:, t].astype(float))
            A, G = D2 @ B, np.vstack([first, (2 * D2 - eye) @ B])
        blocks.append((A, G))
    return blocks


def dense_forward(prob, U):
    blocks = dense_blocks(prob)
    return sum(A @ (U[0, t].ravel() - U[1, t].ravel()) for t, (A, _) in enumerate(blocks))


def dense_cone(prob, U):
    """G U in the (n, 2, P, R) layout: column r of block (c, t) is rows r n .. (r+1) n of G_t w."""
    n, _, P, R = prob.cone_shape
    out = np.empty(prob.cone_shape)
    for t, (_, G) in enumerate(dense_blocks(prob)):
        for c in range(2):
            out[:, c, t, :] = (G @ U[c, t].ravel()).reshape(R, n).T
    return out


def random_var(prob, rng):
    """Random U with some exactly-zero blocks and groups."""
    U = rng.standard_normal(prob.var_shape)
    U[rng.random(prob.var_shape[:3]) < 0.2] = 0.0
    return U


def close(a, b, scale):
    """|a - b| <= RTOL * scale elementwise (scale: the sum of absolute terms, see module doc)."""
    return np.all(np.abs(np.asarray(a) - np.asarray(b)) <= RTOL * (scale + 1e-300))


# ------------------------------------------------------------ adjoint tests
@given(random_problems())
def test_forward_adjoint_identity(case):
    prob, rng = case
    U = random_var(prob, rng)
    r = rng.standard_normal(prob.n_samples)
    f, g = prob.forward(U), prob.adjoint(r)
    assert g.shape == prob.var_shape
    lhs, rhs = float(f @ r), float(np.sum(U * g))
    # bound on the rounding error of both sides: products of absolute values
    scale = float(np.abs(dense_forward(prob, np.abs(U))) @ np.abs(r)) + float(
        np.sum(np.abs(U) * np.abs(g))
    )
    scale += float(np.sum(np.abs(U))) * float(np.abs(prob.X).max()) * float(np.abs(r).sum())
    assert abs(lhs - rhs) <= RTOL * scale + 1e-300
    # the w' copy enters with the opposite sign
    np.testing.assert_array_equal(g[1], -g[0])


@given(random_problems())
def test_cone_adjoint_identity(case):
    prob, rng = case
    U = random_var(prob, rng)
    L = rng.standard_normal(prob.cone_shape)
    GU, GtL = prob.cone(U), prob.cone_adjoint(L)
    assert GU.shape == prob.cone_shape
    assert GtL.shape == prob.var_shape
    lhs, rhs = float(np.sum(GU * L)), float(np.sum(U * GtL))
    scale = float(np.sum(np.abs(dense_cone(prob, np.abs(U))) * np.abs(L)))
    scale += float(np.sum(np.abs(U))) * float(np.abs(prob.X).max()) * float(np.abs(L).sum())
    scale *= prob.width + 1
    assert abs(lhs - rhs) <= RTOL * scale + 1e-300


# ------------------------------------------------------- dense references
@given(random_problems(max_n=6, max_d=3, max_P=3))
def test_forward_and_adjoint_match_dense(case):
    prob, rng = case
    U = random_var(prob, rng)
    r = rng.standard_normal(prob.n_samples)
    scale = np.abs(prob.X).max() * np.abs(U).sum() * prob.n_features
    assert close(prob.forward(U), dense_forward(prob, U), scale)
    expected = np.stack([A.T @ r for A, _ in dense_blocks(prob)]).reshape(
        prob.n_blocks, prob.width, prob.n_features
    )
    g = prob.adjoint(r)
    scale = np.abs(prob.X).max() * np.abs(r).sum()
    assert close(g[0], expected, scale)
    assert close(g[1], -expected, scale)


@given(random_problems(max_n=6, max_d=3, max_P=3))
def test_cone_and_cone_adjoint_match_dense(case):
    prob, rng = case
    U = random_var(prob, rng)
    L = rng.standard_normal(prob.cone_shape)
    scale = np.abs(prob.X).max() * np.abs(U).sum() * prob.n_features
    assert close(prob.cone(U), dense_cone(prob, U), scale)
    n, _, P, R = prob.cone_shape
    expected = np.empty(prob.var_shape)
    for t, (_, G) in enumerate(dense_blocks(prob)):
        for c in range(2):
            lam = L[:, c, t, :].T.ravel()  # stacked as the rows of G_t
            expected[c, t] = (G.T @ lam).reshape(prob.width, prob.n_features)
    scale = np.abs(prob.X).max() * np.abs(L).sum() * (prob.width + 1)
    assert close(prob.cone_adjoint(L), expected, scale)


@given(random_problems())
def test_objective_and_regularizer_match_formula(case):
    prob, rng = case
    U = random_var(prob, rng)
    groups = sum(np.linalg.norm(U[c, t, j]) for c, t, j in np.ndindex(*prob.var_shape[:3]))
    residual = dense_forward(prob, U) - prob.y
    expected = 0.5 * residual @ residual + prob.beta * groups
    scale = (
        0.5
        * (np.abs(residual) + np.abs(prob.X).max() * np.abs(U).sum() * 4)
        @ (np.abs(residual) + np.abs(prob.y))
        + prob.beta * groups
    )
    assert abs(prob.regularizer(U) - groups) <= RTOL * groups + 1e-300
    assert abs(prob.objective(U) - expected) <= RTOL * scale + 1e-300


def test_objective_is_group_l21_not_block_l2():
    """The regularizer is a sum of per-neuron d-group norms (formulation §3), not a block norm."""
    X = np.eye(2)
    arr = ar.Arrangements(
        masks1=np.ones((2, 1, 2), dtype=bool),
        signs=np.ones((1, 2)),
        masks2=np.ones((2, 1), dtype=bool),
    )
    prob = ar.ConvexReLUProblem(X, np.zeros(2), 1.0, arr)
    U = np.zeros(prob.var_shape)
    U[0, 0, 0] = [3.0, 0.0]
    U[0, 0, 1] = [0.0, 4.0]
    assert prob.regularizer(U) == pytest.approx(7.0, rel=1e-15)  # 3 + 4, not ||(3, 4)|| = 5


# ------------------------------------------------------------- projection
def cvxpy_projection(prob, w0, t):
    """argmin 0.5 ||w - w0||^2 s.t. G_t w >= 0 at solver tolerances 1e-10.

    Clarabel first; ECOS when Clarabel gives up on a degenerate cone (it happens on
    tiny blocks whose constraint rows are linearly dependent).
    """
    _, G = dense_blocks(prob)[t]
    w = cp.Variable(w0.size)
    model = cp.Problem(cp.Minimize(0.5 * cp.sum_squares(w - w0.ravel())), [G @ w >= 0])
    attempts = [
        ("CLARABEL", dict(tol_gap_abs=1e-10, tol_gap_rel=1e-10, tol_feas=1e-10)),
        ("ECOS", dict(abstol=1e-10, reltol=1e-10, feastol=1e-10)),
    ]
    for solver, options in attempts:
        try:
            model.solve(solver=solver, **options)
        except cp.error.SolverError:
            continue
        if model.status == "optimal":
            return np.asarray(w.value).reshape(w0.shape)
    raise AssertionError("no reference solver reached 'optimal'")


@settings(max_examples=30)
@given(random_problems(max_n=6, max_d=3, max_P=2))
def test_project_matches_cvxpy(case):
    prob, rng = case
    U = rng.standard_normal(prob.var_shape)
    V = prob.project(U)
    assert V.shape == U.shape
    # feasible up to rounding: G V >= -1e-12 * max_i ||x_i|| * ||U|| (the scale of G U; the
    # rounding of NNLS plus one GEMM is ~1e-15 of it).  Not relative=True: that divides by
    # the scale of V, which is itself rounding noise when the cone is {0}.
    x_scale = np.linalg.norm(prob.X, axis=1).max()
    assert prob.constraint_violation(V) <= 1e-12 * x_scale * np.abs(U).max() * prob.n_features
    for c, t in np.ndindex(2, prob.n_blocks):
        ref = cvxpy_projection(prob, U[c, t], t)
        scale = 1.0 + np.linalg.norm(U[c, t])
        # The projection is unique and the objective 1-strongly convex, so a gap of
        # 1e-10 * scale^2 puts Clarabel's point within sqrt(2e-10) * scale ~ 1.4e-5 * scale of
        # it (worst case; interior-point points are usually far closer).  A wrong projection
        # is off by O(scale).
        assert np.linalg.norm(V[c, t] - ref) <= 1e-4 * scale
        # and the library point is never farther from U than the (nearly feasible) reference
        assert np.linalg.norm(V[c, t] - U[c, t]) <= np.linalg.norm(ref - U[c, t]) + 1e-7 * scale


@settings(max_examples=20)
@given(random_problems())
def test_project_leaves_feasible_points_unchanged(case):
    prob, rng = case
    W = rng.standard_normal(prob.var_shape)
    V = prob.project(W)
    # V carries the rounding of the first projection, which is relative to W's scale (V
    # itself can be ~1e-12 when the cone is thin), so the tolerance is too.
    np.testing.assert_allclose(prob.project(V), V, rtol=0, atol=1e-11 * (1 + np.abs(W).max()))
    Z = np.zeros(prob.var_shape)
    np.testing.assert_array_equal(prob.project(Z), Z)


@pytest.mark.parametrize("depth, width", [(2, None), (3, 1), (3, 2), (3, 3)])
def test_project_keeps_strictly_feasible_generators(depth, width):
    """Nonnegative multiples of sampled generators lie in their cones: project is the identity."""
    rng = np.random.default_rng(5)
    X = rng.standard_normal((12, 3))
    arr = ar.sample_arrangements(X, 8, depth=depth, width=width, seed=3)
    prob = ar.ConvexReLUProblem(X, rng.standard_normal(12), 0.3, arr)
    scales = rng.uniform(0.0, 3.0, size=(2, arr.n_blocks, 1, 1))
    U = scales * np.stack([arr.generators, arr.generators])
    assert prob.constraint_violation(U) == 0.0
    np.testing.assert_array_equal(prob.project(U), U)


def test_project_does_not_mutate_input():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((6, 2))
    arr = ar.sample_arrangements(X, 4, depth=3, width=2, seed=0)
    prob = ar.ConvexReLUProblem(X, rng.standard_normal(6), 0.1, arr)
    U = rng.standard_normal(prob.var_shape)
    U0 = U.copy()
    prob.project(U)
    np.testing.assert_array_equal(U, U0)
