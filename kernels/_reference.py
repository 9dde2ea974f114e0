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
"""


def _signed(mask, values):
    """``(2 mask - 1) * values`` (an integer sign array: 3-4x faster than ``where``)."""
    return values * (2 * mask - 1)


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
    xp = _namespace(X)
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


def _copy_signs(G):
    """(2, 1, 1, 1) array of +1, -1 in G's namespace and dtype: w_t enters with +, w'_t with -."""
    xp = _namespace(G)
    return xp.asarray([1.0, -1.0], dtype=G.dtype).reshape(2, 1, 1, 1)


def _namespace(a):
    """The array module of ``a`` (numpy or cupy), without importing cupy."""
    module = type(a).__module__.split(".")[0]
    if module == "cupy":
        import cupy

        return cupy
    import numpy

    return numpy
