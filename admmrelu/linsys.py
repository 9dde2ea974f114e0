"""The ADMM x-update: exact solves with the splitting's system matrix, factor caches.

Both systems are written for the scaled problem (:mod:`admmrelu.scaling`): ``X~`` enters
the loss, ``X^ = X~ / h`` (unit rows) the cone rows ``G^``, and one penalty ``rho``
weighs both consensus constraints ``x = z`` and ``G^ x = s``.

Depth 2 (the loss stays in the x-update; design.md §3)::

    M = F^T F + rho (I + G^^T G^) = F^T F + I (x) K,     K = rho (I + X^^T X^)   (d x d)

because ``(2D - I)^2 = I`` makes ``G^_t^T G^_t = X^^T X^`` for every block.  With
``F = [F0, -F0]`` and ``F0 u = sum_t D_t X~ u_t``, Woodbury gives::

    M^-1 r = K^-1 r - K^-1 F^T C^-1 F K^-1 r,
    C = I_n + F (I (x) K^-1) F^T = I_n + (2 / rho) (X~ K1^-1 X~^T) o (Mask Mask^T),

with ``K1 = I + X^^T X^`` and ``Mask`` the n x P 0/1 matrix of the D_t.  The Hadamard
product ``S0 = (X~ K1^-1 X~^T) o (Mask Mask^T)`` does not depend on rho, so a new rho costs
one n x n Cholesky; a solve costs two GEMMs with X~ and two n x n triangular solves.

Depth 3 (the loss moves to the s-update, see
:func:`admmrelu.kernels._reference.loss_coupled_projection`): the x-update has no
loss term and decouples over blocks and copies::

    M_t = rho (I + I_m1 (x) X^^T X^ + B^_t^T B^_t),     B^_t = [s_j D1_j X^]_j  (n x m1 d)

so ``M_t^-1 = N_t^-1 / rho`` with ``N_t`` (m1 d x m1 d) inverted once, whatever rho.
"""

#: Factorizations kept per system (rho values revisited by warm starts and paths) ...
_CACHE_SIZE = 4
#: ... as long as they fit in this many bytes together (n x n factors at large n).
_CACHE_BYTES = 2**31


class KroneckerWoodburySystem:
    """Depth-2 system ``(F^T F + rho (I + G^^T G^)) x = r`` via Woodbury (see module doc).

    Parameters
    ----------
    loss : BoundOperators
        ``F~``: the backend's operators on ``X~``, the data in the loss (depth 2: masks1
        (n, P, 1)), arrays of one float dtype.
    X_cone : array (n, d)
        ``X^``, the unit-row data of the cone rows, an array of the same backend.
    """

    def __init__(self, loss, X_cone):
        xp = loss.backend.xp
        self._loss = loss
        X_loss = loss.X
        n, d = X_loss.shape
        self._K1_inv = xp.linalg.inv(xp.eye(d, dtype=X_loss.dtype) + X_cone.T @ X_cone)
        mask = loss.masks1[:, :, 0].astype(X_loss.dtype)
        self._S0 = (X_loss @ self._K1_inv @ X_loss.T) * (mask @ mask.T)
        self._cache_size = max(1, min(_CACHE_SIZE, _CACHE_BYTES // (2 * self._S0.nbytes)))
        self._factors: dict[float, object] = {}

    def solve(self, rhs, rho: float):
        """``M^-1 rhs`` for rhs of shape (2, P, 1, d)."""
        factor = self._factor(rho)
        K_inv = self._K1_inv / rho
        p = rhs @ K_inv
        c = self._loss.backend.cho_solve(factor, self._loss.forward(p))
        return p - self._loss.adjoint(c) @ K_inv

    def _factor(self, rho: float):
        if rho not in self._factors:
            if len(self._factors) >= self._cache_size:
                self._factors.pop(next(iter(self._factors)))
            C = self._S0 * (2.0 / rho)
            C[self._loss.backend.xp.diag_indices_from(C)] += 1.0
            self._factors[rho] = self._loss.backend.cho_factor(C)
        return self._factors[rho]


class BlockDiagonalSystem:
    """Depth-3 system ``rho (I + G^^T G^) x = r``, block by block (see module doc).

    ``N_t = I + I (x) X^^T X^ + B^_t^T B^_t``; the (j, k) block of ``B^_t^T B^_t`` is
    ``s_j s_k X^^T D1_j D1_k X^``, computed for all t at once as one GEMM per (j, k),
    from ``cone``, the backend's operators on ``X^``
    (:class:`admmrelu.kernels.BoundOperators`).
    """

    def __init__(self, cone):
        xp = cone.backend.xp
        X_cone, masks1, signs = cone.X, cone.masks1, cone.signs
        n, d = X_cone.shape
        _, P, m1 = masks1.shape
        dtype = X_cone.dtype
        outer = (X_cone[:, :, None] * X_cone[:, None, :]).reshape(n, d * d)
        gram = X_cone.T @ X_cone
        N = xp.zeros((P, m1, d, m1, d), dtype=dtype)
        for j in range(m1):
            N[:, j, :, j, :] += xp.eye(d, dtype=dtype) + gram
            for k in range(j, m1):
                both = (masks1[:, :, j] & masks1[:, :, k]).astype(dtype)
                block = (both.T @ outer).reshape(P, d, d) * (signs[:, j] * signs[:, k])[
                    :, None, None
                ]
                N[:, j, :, k, :] += block
                if k != j:
                    N[:, k, :, j, :] += block.transpose(0, 2, 1)
        self._N_inv = xp.linalg.inv(N.reshape(P, m1 * d, m1 * d))
        self._shape = (P, m1 * d)

    def solve(self, rhs, rho: float):
        """``M^-1 rhs`` for rhs of shape (2, P, m1, d)."""
        flat = rhs.reshape(2, *self._shape, 1)
        return (self._N_inv @ flat / rho).reshape(rhs.shape)
