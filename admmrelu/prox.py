"""Proximal maps of the ADMM z-update (all elementwise or per sample, O(size) each).

* :func:`block_soft_threshold`: prox of ``tau * sum_g ||v_g||_2`` over d-groups.
* :func:`project_nonnegative`: projection onto ``s >= 0`` (depth 2, and every first-layer
  row at depth 3).
* :func:`loss_coupled_projection`: the depth-3 second-layer rows, which also carry the
  squared loss (see :mod:`admmrelu.linsys` for why the loss sits here at depth 3).
"""

import numpy as np

#: Newton steps allowed per sample in :func:`loss_coupled_projection`.
_MAX_NEWTON_STEPS = 100


def block_soft_threshold(v: np.ndarray, tau: float) -> np.ndarray:
    """``argmin_z tau sum_g ||z_g|| + 0.5 ||z - v||^2``; groups are the last axis of v."""
    norms = np.linalg.norm(v, axis=-1, keepdims=True)
    shrink = np.maximum(norms - tau, 0.0) / np.maximum(norms, np.finfo(float).tiny)
    return v * shrink


def project_nonnegative(v: np.ndarray) -> np.ndarray:
    """Projection onto ``s >= 0``."""
    return np.maximum(v, 0.0)


def loss_coupled_projection(a, coef, y, rho, theta):
    """Per-sample prox of the loss restricted to the second-layer rows.

    Solves, independently for every sample i,

        min_{q_i >= 0}  0.5 (sum_k coef_ik q_ik - y_i)^2 + (rho / 2) ||q_i - a_i||^2,

    where ``coef_ik = h_i c_k [D2_t(i) = 1]`` (``c = +1`` for w_t, ``-1`` for w'_t); rows
    with ``coef = 0`` reduce to clipping.  Optimality gives ``q = max(0, a - coef theta /
    rho)`` with the scalar residual ``theta_i = sum_k coef_ik q_ik - y_i``, the root of

        phi(theta) = theta - sum_k coef_k max(0, a_k - coef_k theta / rho) + y,

    which is piecewise linear with ``phi' >= 1``.  Safeguarded Newton (the root lies within
    ``|phi(theta)|`` of theta) finds it exactly in a few steps from the previous residual.

    Parameters
    ----------
    a : ndarray (n, K)
    coef : ndarray (n, K)
    y : ndarray (n,)
    rho : float
    theta : ndarray (n,)
        Starting residuals (the previous call's).

    Returns
    -------
    q : ndarray (n, K)
    theta : ndarray (n,)
        The residuals ``coef q - y`` at q (the loss gradient is ``coef * theta``).
    """
    theta = np.array(theta, dtype=np.float64, copy=True)
    n = len(theta)
    lo = np.full(n, -np.inf)
    hi = np.full(n, np.inf)
    todo = np.arange(n)
    for _ in range(_MAX_NEWTON_STEPS):
        every = todo.size == n  # no gather while all rows are still open (the usual case)
        c = coef if every else coef[todo]
        t = theta if every else theta[todo]
        cq = c * np.maximum((a if every else a[todo]) - c * (t / rho)[:, None], 0.0)
        prediction = np.sum(cq, axis=1)
        phi = t - prediction + y[todo]
        done = np.abs(phi) <= 1e-14 * (1.0 + np.abs(y[todo]) + np.sum(np.abs(cq), axis=1))
        slope = 1.0 + np.sum(c * c * (cq != 0), axis=1) / rho
        # bracket the root: phi is increasing with slope >= 1, so the root lies within
        # |phi| of t; both facts hold for the computed phi only up to its rounding error
        error = (
            4 * np.finfo(float).eps * (np.abs(t) + np.sum(np.abs(cq), axis=1) + np.abs(y[todo]))
        )
        low = np.where(phi < -error, np.maximum(lo[todo], t), lo[todo])
        high = np.where(phi > error, np.minimum(hi[todo], t), hi[todo])
        low = np.maximum(low, t - np.abs(phi) - error)
        high = np.minimum(high, t + np.abs(phi) + error)
        lo[todo], hi[todo] = low, high
        newton = t - phi / slope
        step = np.where((newton > low) & (newton < high), newton, 0.5 * (low + high))
        theta[todo] = np.where(done, t, step)
        todo = todo[~done]
        if todo.size == 0:
            break
    q = np.maximum(a - coef * (theta / rho)[:, None], 0.0)
    return q, np.sum(coef * q, axis=1) - y
