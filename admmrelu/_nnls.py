"""Non-negative least squares (Lawson & Hanson's active-set method).

scipy.optimize.nnls is not used: its reimplementation (SciPy >= 1.12) can return a
suboptimal point together with a false zero residual (scipy issue #25389), and both the
cone projection and Gordan's test in enumeration rely on the residual being right.
The problems here are small (a few dozen rows), so a plain numpy/scipy version is enough.
"""

import numpy as np
from scipy import linalg


def nnls(A, b, max_iter=None):
    """Solve ``min_{x >= 0} ||A x - b||_2``.

    Parameters
    ----------
    A : ndarray of shape (m, k)
    b : ndarray of shape (m,)
    max_iter : int or None
        Cap on the outer iterations (columns added); ``None`` means ``3 * k + 10``.

    Returns
    -------
    x : ndarray of shape (k,), with ``x >= 0``
    residual : float
        ``||A x - b||_2`` recomputed from the returned x.
    """
    m, k = A.shape
    x = np.zeros(k)
    if k == 0:
        return x, float(np.linalg.norm(b))
    passive = np.zeros(k, dtype=bool)
    scale = max(np.abs(A).max(), 1e-300) * max(np.linalg.norm(b), 1e-300)
    tol = 1e-14 * scale
    for _ in range(3 * k + 10 if max_iter is None else max_iter):
        gradient = A.T @ (b - A @ x)  # minus the gradient of 0.5 ||Ax - b||^2
        gradient[passive] = -np.inf
        j = int(np.argmax(gradient))
        if gradient[j] <= tol:
            break
        passive[j] = True
        while True:
            z = np.zeros(k)
            # QR with column pivoting (gelsy): as robust on rank-deficient sets as the SVD,
            # and 2x faster at d = 784 (a block's dual norm: 25 s instead of 54 s)
            z[passive] = _least_squares(A[:, passive], b)
            if np.all(z[passive] > 0):
                x = z
                break
            blocking = passive & (z <= 0)
            alpha = np.min(x[blocking] / (x[blocking] - z[blocking]))
            x = x + alpha * (z - x)
            passive &= x > 0
            passive[blocking & (x <= 1e-15 * max(x.max(), 1.0))] = False
            x[~passive] = 0.0
            if not passive.any():
                break
    return x, float(np.linalg.norm(A @ x - b))


def _least_squares(A, b):
    """Minimum-residual solution of ``A x = b`` (pivoted QR; rank-deficient A allowed)."""
    return linalg.lstsq(A, b, lapack_driver="gelsy", check_finite=False)[0]
