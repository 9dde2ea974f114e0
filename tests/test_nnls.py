"""The in-house NNLS against cvxpy and its KKT conditions."""

import cvxpy as cp
import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from scipy.optimize import linprog

from admmrelu._nnls import nnls


def _kkt_violation(A, b, x):
    """Largest violation of x >= 0, g = A^T(Ax - b) >= 0 and x * g = 0, scaled by |A||b|."""
    g = A.T @ (A @ x - b)
    scale = max(np.abs(A).max() * np.linalg.norm(b), 1e-300)
    return max(-x.min(initial=0.0), -g.min(initial=0.0) / scale, np.max(x * g, initial=0) / scale)


def test_cone_membership_case_where_scipy_reports_a_false_zero_residual():
    """Rows of a cell of the n=8, d=2 depth-3 enumeration; h is NOT in their cone.

    scipy.optimize.nnls (1.17) returned residual 0.0 here while its x had residual 1.01
    (scipy issue #25389), which made the enumeration drop real cells.  Independent check:
    the KKT conditions, and a point u with rows u > 0 and h u > 0 exists (the cell is open),
    so by Gordan's alternative -h is outside the cone and the residual must be positive.
    """
    left = np.array(
        [
            [0.794, 0.609],
            [0.688, 0.726],
            [-0.576, 0.818],
            [-0.785, 0.62],
            [-0.529, 0.849],
            [0.041, 0.999],
            [-0.919, 0.395],
            [-0.214, 0.977],
        ]
    )
    right = left * np.array([1.0, 1.0, -1.0, -1.0, -1.0, 1.0, -1.0, -1.0])[:, None]
    rows = np.zeros((16, 4))
    rows[:8, :2], rows[8:, 2:] = left, right
    h = np.array([0.56110904, 0.43029833, -0.56110904, -0.43029833])
    x, residual = nnls(rows.T, -h)
    assert _kkt_violation(rows.T, -h, x) < 1e-12
    both = np.vstack([rows, h])  # find u with both @ u >= 1 by an LP (HiGHS)
    lp = linprog(np.zeros(4), A_ub=-both, b_ub=-np.ones(17), bounds=[(None, None)] * 4)
    assert lp.status == 0 and np.all(both @ lp.x > 0)
    assert residual > 1e-3


@given(
    m=st.integers(1, 8),
    k=st.integers(1, 30),
    seed=st.integers(0, 2**31),
    duplicate=st.booleans(),
)
def test_matches_cvxpy_and_kkt(m, k, seed, duplicate):
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((m, k))
    if duplicate:  # rank-deficient: repeated columns, as with repeated rows of X
        A[:, : k // 2 + 1] = A[:, [0]]
    b = rng.standard_normal(m)
    x, residual = nnls(A, b)
    assert np.all(x >= 0)
    assert np.isclose(residual, np.linalg.norm(A @ x - b), rtol=1e-12, atol=1e-14)
    assert _kkt_violation(A, b, x) < 1e-9
    v = cp.Variable(k, nonneg=True)
    cp.Problem(cp.Minimize(cp.sum_squares(A @ v - b))).solve(solver="CLARABEL")
    # Clarabel's default tolerances are ~1e-8 relative: the in-house residual may only be lower
    assert residual <= np.linalg.norm(A @ v.value - b) + 1e-7 * (1 + np.linalg.norm(b))
