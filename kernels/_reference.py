"""Plain array-module implementations of the masked operators (the ground truth).

Every function takes the array module ``xp`` implicitly through its inputs: the
code uses only operations that numpy and cupy share, so the same function runs on
the CPU and on the GPU.

Shapes (formulation.md, §4 and §9):

* ``X``      : (n, d)        data, a bias is a column of ones
* ``masks1`` : (n, P, m1)    bool, first-layer masks D1_{t,j} (their diagonals)
* ``signs``  : (P, m1)       float, s_{t,j} in {+1, -1} (all +1 at depth 2)
* ``masks2`` : (n, P) bool   second-layer masks D2_t (depth 3), or None (depth 2)
* ``U``      : (2, P, m1, d) the convex variable: ``U[0, t]`` is w_t, ``U[1, t]`` is w'_t

With ``B_t w = sum_j s_j D1_j X w_j`` (the second-layer pre-activation) and
``A_t = D2_t B_t`` (``A_t = B_t`` at depth 2), the prediction is
``sum_t A_t (w_t - w'_t)``.  The cone operator ``G`` stacks, for each copy c and block t,
the first-layer rows ``(2 D1_j - I) X w_j`` (one column per neuron j) and, at depth 3,
the second-layer rows ``(2 D2 - I) B_t w``; the cone is ``G U >= 0``.

The ADMM step (``admmrelu.admm``) also needs, for the slack part ``w_s`` (n, 2, P, R) of
its Douglas-Rachford point, the slack ``s = prox(w_s)``: ``max(w_s, 0)`` on every
first-layer row and, at depth 3, ``q`` (n, 2, P) from :func:`loss_coupled_projection` on
the second-layer rows.  :func:`reflected_cone_adjoint` and :func:`relaxed_slack_update`
are the two products of an iteration written in terms of ``w_s`` and ``q``, so that a
fused kernel never stores ``s`` or ``G x``.
"""


def _signed(mask, values):
    """``(2 mask - 1) * values`` in the dtype of ``values`` (an int8 sign array: 3-4x
    faster than ``where``, and int8 times float32 stays float32)."""
    return values * (2 * mask.astype("int8") - 1)


def forward(X, masks1, signs, masks2, U):
    """Predictions ``sum_t A_t (w_t - w'_t)``, shape (n,)."""
    n, d = X.shape
    _, P, m1, _ = U.shape
    Z = (X @ (U[0] - U[1]).reshape(P * m1, d).T).reshape(n, P, m1)
    H = (Z * masks1 * signs).sum(axis=2)
    if masks2 is not None:
        H = H * masks2
    return H.sum(axis=1)


def adjoint(X, masks1, signs, masks2, r):
    """Adjoint of :func:`forward`: ``(A_t^T r, -A_t^T r)_t``, shape (2, P, m1, d)."""
    n, d = X.shape
    _, P, m1 = masks1.shape
    coef = masks1 * signs * r[:, None, None]
    if masks2 is not None:
        coef = coef * masks2[:, :, None]
    G = (X.T @ coef.reshape(n, P * m1)).T.reshape(1, P, m1, d)
    return G * _copy_signs(G)


def cone(X, masks1, signs, masks2, U):
    """Cone-constraint values ``G U``, shape (n, 2, P, R) with R = m1 (+1 at depth 3).

    Entries ``[..., j]`` (j < m1) are ``(2 D1_j - I) X w_j``; at depth 3 the last entry is
    ``(2 D2 - I) B_t w``.  The cone is ``G U >= 0``.
    """
    n, d = X.shape
    _, P, m1, _ = U.shape
    Z = (X @ U.reshape(2 * P * m1, d).T).reshape(n, 2, P, m1)
    mask = masks1[:, None]
    first = _signed(mask, Z)
    if masks2 is None:
        return first
    B = (Z * mask * signs).sum(axis=3)
    second = _signed(masks2[:, None], B)
    xp = array_namespace(X)
    return xp.concatenate([first, second[..., None]], axis=3)


def cone_adjoint(X, masks1, signs, masks2, L):
    """Adjoint of :func:`cone`: ``G^T L`` for L (n, 2, P, R); returns (2, P, m1, d)."""
    n, d = X.shape
    _, P, m1 = masks1.shape
    mask = masks1[:, None]
    M = _signed(mask, L[..., :m1])
    if masks2 is not None:
        second = _signed(masks2[:, None], L[..., m1])
        M = M + mask * signs * second[..., None]
    G = X.T @ M.reshape(n, 2 * P * m1)
    return G.T.reshape(2, P, m1, d)


def slack(w_s, q):
    """The ADMM slack ``s`` (n, 2, P, R): ``max(w_s, 0)``, with the second-layer rows set to
    ``q`` (n, 2, P) at depth 3 (``q`` is None at depth 2)."""
    xp = array_namespace(w_s)
    s = xp.maximum(w_s, 0)
    if q is not None:
        s[..., -1] = q
    return s


def reflected_cone_adjoint(X, masks1, signs, masks2, w_s, q):
    """``G^T (2 s - w_s)`` with ``s = slack(w_s, q)``; returns (2, P, m1, d).

    ``2 s - w_s`` is the reflection of w_s through its prox: ``|w_s|`` on the clipped rows.
    """
    return cone_adjoint(X, masks1, signs, masks2, 2 * slack(w_s, q) - w_s)


def relaxed_slack_update(X, masks1, signs, masks2, x, w_s, q, alpha):
    """The slack part of the relaxed Douglas-Rachford step, ``w_s + alpha (G x - s)`` with
    ``s = slack(w_s, q)``; returns (n, 2, P, R)."""
    return w_s + alpha * (cone(X, masks1, signs, masks2, x) - slack(w_s, q))


#: Newton steps allowed per sample in :func:`loss_coupled_projection`.
MAX_NEWTON_STEPS = 100
#: Relative stopping floor of that Newton search in float64 (float32 uses 8 eps).
NEWTON_FLOOR = 1e-14


def block_soft_threshold(v, tau):
    """``argmin_z tau sum_g ||z_g|| + 0.5 ||z - v||^2``; groups are the last axis of v.

    The prox of the group lasso: ``z_g = max(0, 1 - tau / ||v_g||) v_g``.
    """
    xp = array_namespace(v)
    norms = xp.linalg.norm(v, axis=-1, keepdims=True)
    shrink = xp.maximum(norms - tau, 0) / xp.maximum(norms, xp.finfo(v.dtype).tiny)
    return v * shrink


def newton_floor(dtype) -> float:
    """Relative residual at which the loss-coupled Newton search stops, for ``dtype``."""
    import numpy

    return max(NEWTON_FLOOR, 8 * float(numpy.finfo(dtype).eps))


def loss_coupled_projection(a, coef, y, rho, theta):
    """Per-sample prox of the loss restricted to the second-layer rows (depth 3).

    Solves, independently for every sample i,

        min_{q_i >= 0}  0.5 (sum_k coef_ik q_ik - y_i)^2 + (rho / 2) ||q_i - a_i||^2,

    where ``coef_ik = h_i c_k [D2_t(i) = 1]`` (``c = +1`` for w_t, ``-1`` for w'_t); rows
    with ``coef = 0`` reduce to clipping.  Optimality gives ``q = max(0, a - coef theta /
    rho)`` with the scalar residual ``theta_i = sum_k coef_ik q_ik - y_i``, the root of

        phi(theta) = theta - sum_k coef_k max(0, a_k - coef_k theta / rho) + y,

    which is piecewise linear with ``phi' >= 1``.  Safeguarded Newton (the root lies within
    ``|phi(theta)|`` of theta) finds it exactly in a few steps from the previous residual;
    it stops when ``|phi| <= floor (1 + |y| + sum_k |coef_k q_k|)`` (:func:`newton_floor`).

    Parameters
    ----------
    a : array (n, K)
    coef : array (n, K)
    y : array (n,)
    rho : float
    theta : array (n,)
        Starting residuals (the previous call's).

    Returns
    -------
    q : array (n, K)
    theta : array (n,)
        The residuals ``coef q - y`` at q (the loss gradient is ``coef * theta``).
    """
    xp = array_namespace(a)
    dtype = a.dtype
    theta = xp.array(theta, dtype=dtype, copy=True)
    n = len(theta)
    floor = newton_floor(dtype)
    eps = float(xp.finfo(dtype).eps)
    lo = xp.full(n, -xp.inf, dtype=dtype)
    hi = xp.full(n, xp.inf, dtype=dtype)
    todo = xp.arange(n)
    for _ in range(MAX_NEWTON_STEPS):
        every = todo.size == n  # no gather while all rows are still open (the usual case)
        c = coef if every else coef[todo]
        t = theta if every else theta[todo]
        cq = c * xp.maximum((a if every else a[todo]) - c * (t / rho)[:, None], 0)
        size = xp.sum(xp.abs(cq), axis=1)
        phi = t - xp.sum(cq, axis=1) + y[todo]
        done = xp.abs(phi) <= floor * (1 + xp.abs(y[todo]) + size)
        slope = 1 + xp.sum(c * c * (cq != 0), axis=1) / rho
        # bracket the root: phi is increasing with slope >= 1, so the root lies within
        # |phi| of t; both facts hold for the computed phi only up to its rounding error
        error = 4 * eps * (xp.abs(t) + size + xp.abs(y[todo]))
        low = xp.where(phi < -error, xp.maximum(lo[todo], t), lo[todo])
        high = xp.where(phi > error, xp.minimum(hi[todo], t), hi[todo])
        low = xp.maximum(low, t - xp.abs(phi) - error)
        high = xp.minimum(high, t + xp.abs(phi) + error)
        lo[todo], hi[todo] = low, high
        newton = t - phi / slope
        step = xp.where((newton > low) & (newton < high), newton, 0.5 * (low + high))
        theta[todo] = xp.where(done, t, step)
        todo = todo[~done]
        if todo.size == 0:
            break
    q = xp.maximum(a - coef * (theta / rho)[:, None], 0)
    return q, xp.sum(coef * q, axis=1) - y


def _copy_signs(G):
    """(2, 1, 1, 1) array of +1, -1 in G's namespace and dtype: w_t enters with +, w'_t with -."""
    xp = array_namespace(G)
    return xp.asarray([1.0, -1.0], dtype=G.dtype).reshape(2, 1, 1, 1)


def as_numpy(a):
    """A numpy or cupy array as a numpy array (a device-to-host copy for cupy)."""
    return a.get() if array_namespace(a).__name__ == "cupy" else a


def array_namespace(a):
    """The array module of ``a`` (numpy or cupy), without importing cupy."""
    module = type(a).__module__.split(".")[0]
    if module == "cupy":
        import cupy

        return cupy
    import numpy

    return numpy
