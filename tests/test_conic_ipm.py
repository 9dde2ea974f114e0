"""The polish's interior-point method (admmrelu.conic_ipm) against Clarabel and the KKT
conditions, on random group-lasso programs with linear cone rows (the polish's shape)."""

import clarabel
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy import sparse

from admmrelu import conic_ipm
from admmrelu.conic_ipm import BlockRows, solve_qp_socp


def group_lasso_program(seed, n_groups, d, n, m, beta):
    """min 0.5 ||F u - y||^2 + beta sum_g t_g  s.t.  L u >= 0, ||u_g|| <= t_g.

    L's rows are random, but u = 0 is always feasible (the polish's programs are the same:
    the cones contain 0), so the program is feasible and bounded.
    """
    rng = np.random.default_rng(seed)
    N = n_groups * d
    F = rng.standard_normal((n, N))
    y = rng.standard_normal(n)
    P = np.zeros((N + n_groups, N + n_groups))
    P[:N, :N] = F.T @ F
    q = np.concatenate([-F.T @ y, np.full(n_groups, beta)])
    # rows in blocks of two groups each (as the polish's rows touch one working block)
    starts = np.arange(0, N, 2 * d)
    sizes = rng.multinomial(m, np.ones(len(starts)) / len(starts))
    blocks = [
        rng.standard_normal((size, min(2 * d, N - start)))
        for size, start in zip(sizes, starts, strict=True)
    ]
    L = BlockRows(blocks, starts, N + n_groups)
    groups = np.arange(n_groups)
    cones = np.hstack([N + groups[:, None], groups[:, None] * d + np.arange(d)])
    return P, q, L, cones


def clarabel_objective(P, q, L, cones):
    """The same program through Clarabel at 1e-10 (an independent solver)."""
    n_x, (K, k) = len(q), cones.shape
    socs = [sparse.csr_matrix((-np.ones(k), (np.arange(k), c)), shape=(k, n_x)) for c in cones]
    dense_L = np.zeros((L.n_rows, n_x))
    for B, cols, rows in L._slices():
        dense_L[rows, cols] = B
    A = sparse.vstack([-sparse.csr_matrix(dense_L), *socs], format="csc")
    settings_ = clarabel.DefaultSettings()
    settings_.verbose = False
    settings_.tol_gap_abs = settings_.tol_gap_rel = settings_.tol_feas = 1e-10
    cone_list = [clarabel.NonnegativeConeT(L.n_rows)] + [clarabel.SecondOrderConeT(k)] * K
    solver = clarabel.DefaultSolver(
        sparse.triu(sparse.csc_matrix(P)).tocsc(), q, A, np.zeros(A.shape[0]), cone_list, settings_
    )
    x = np.asarray(solver.solve().x)
    return 0.5 * x @ P @ x + q @ x


@settings(max_examples=20, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    n_groups=st.integers(1, 8),
    d=st.integers(1, 6),
    n=st.integers(2, 40),
    m=st.integers(0, 60),
    beta=st.floats(0.01, 5.0),
)
def test_matches_clarabel_and_kkt(seed, n_groups, d, n, m, beta):
    P, q, L, cones = group_lasso_program(seed, n_groups, d, n, m, beta)
    res = solve_qp_socp(P, q, L, cones, tol=1e-9)
    assert res.converged
    x = res.x
    value = 0.5 * x @ P @ x + q @ x
    scale = 1.0 + np.abs(q).max() * (1.0 + np.abs(x).max())
    # both solvers stop at ~1e-9..1e-10 relative gaps, so their objectives agree to ~1e-8
    # of the problem's scale; a wrong direction or step rule is off by O(scale)
    assert abs(value - clarabel_objective(P, q, L, cones)) <= 1e-7 * scale
    # primal feasibility to the solver's tolerance (relative to the size of x)
    size = 1.0 + np.abs(x).max()
    if m:
        assert L.apply(x).min() >= -1e-8 * size
    t, u = x[cones[:, 0]], x[cones[:, 1:]]
    assert np.all(t >= np.linalg.norm(u, axis=1) - 1e-8 * size)
    # the multipliers of L x >= 0 are non-negative and, with the cone duals implied by
    # stationarity, certify: P x + q - L^T z = S^T z_soc where z_soc must lie in the cone
    assert np.all(res.z_linear >= -1e-10)
    z_soc = (P @ x + q - L.adjoint(res.z_linear))[cones]
    assert np.all(z_soc[:, 0] >= np.linalg.norm(z_soc[:, 1:], axis=1) - 1e-6 * scale)


def test_zero_solution_at_large_beta():
    # beta above max_g ||(F^T y)_g|| makes u = 0 optimal (the group-lasso threshold)
    P, q, L, cones = group_lasso_program(3, 4, 3, 20, 10, 1.0)
    grad = -q[:12].reshape(4, 3)
    beta = 1.01 * np.linalg.norm(grad, axis=1).max()
    q[12:] = beta
    res = solve_qp_socp(P, q, L, cones)
    assert res.converged
    assert np.abs(res.x[:12]).max() <= 1e-7


@pytest.mark.parametrize("time_limit", [0.0])
def test_time_limit_stops_unconverged(time_limit):
    P, q, L, cones = group_lasso_program(5, 6, 4, 30, 40, 0.5)
    res = solve_qp_socp(P, q, L, cones, time_limit=time_limit)
    assert not res.converged
    assert res.iterations == 1


@settings(max_examples=20, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    n_groups=st.integers(3, 10),
    d=st.integers(2, 6),
    n=st.integers(1, 6),
    m=st.integers(0, 60),
    beta=st.floats(0.01, 5.0),
)
def test_low_rank_normal_equations_reach_the_same_optimum(seed, n_groups, d, n, m, beta):
    """With P = F^T F of rank n far below N, Woodbury around the block-diagonal part (and
    the dense tail after a stall) reaches the dense method's and Clarabel's optimum."""
    P, q, L, cones = group_lasso_program(seed, n_groups, d, n, m, beta)
    N = n_groups * d
    values, vectors = np.linalg.eigh(P[:N, :N])  # P's loss part has rank <= n
    keep = values > 1e-10 * max(values.max(), 1e-300)
    factor = (vectors[:, keep] * np.sqrt(values[keep])).T
    P_factor = np.hstack([factor, np.zeros((factor.shape[0], n_groups))])
    np.testing.assert_allclose(P_factor.T @ P_factor, P, atol=1e-9 * (1 + np.abs(P).max()))
    assume(3 * P_factor.shape[0] < len(q))  # the Woodbury path is the one taken
    dense = solve_qp_socp(P, q, L, cones, tol=1e-9)
    low_rank = solve_qp_socp(P, q, L, cones, tol=1e-9, P_factor=P_factor)
    assert dense.converged and low_rank.converged
    reference = clarabel_objective(P, q, L, cones)
    scale = 1.0 + abs(reference)
    for res in (dense, low_rank):
        assert 0.5 * res.x @ P @ res.x + q @ res.x == pytest.approx(reference, abs=1e-7 * scale)


def test_low_rank_normal_solve_matches_the_dense_one():
    """One Woodbury solve (with its refinement step) against the dense Cholesky solve of
    the same normal matrix, at spread-out interior-point weights."""
    rng = np.random.default_rng(3)
    n_groups, d, n = 8, 4, 3
    P, q, L, cones = group_lasso_program(3, n_groups, d, n, 40, 0.5)
    F = np.hstack([rng.standard_normal((n, n_groups * d)), np.zeros((n, n_groups))])
    P = F.T @ F
    weights = np.exp(rng.uniform(-8, 8, L.n_rows))
    K, k = cones.shape
    A = rng.standard_normal((K, k, k))
    H = A @ A.transpose(0, 2, 1) + 1e-3 * np.eye(k)
    rhs = rng.standard_normal(len(q))
    blocks = conic_ipm._Components.of(L, cones, F)
    dense = conic_ipm._DenseNormal(P, L, cones, weights, H, start=False).solve(rhs)
    woodbury = conic_ipm._LowRankNormal(blocks, L, cones, weights, H).solve(rhs)
    np.testing.assert_allclose(woodbury, dense, rtol=1e-8, atol=1e-10 * np.abs(dense).max())
