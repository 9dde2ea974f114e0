r"""A dense primal-dual interior-point method for the polish's reduced program.

Solves

    minimise   0.5 x^T P x + q^T x
    subject to L x >= 0                       (m linear rows, L block diagonal)
               x[cones[g]] in SOC             (K second-order cones of one size k:
                                               x[c_0] >= ||x[c_1:]||)

with P positive semidefinite and dense (N x N, N of at most a few thousand).  In the
standard form ``G x + s = 0, s in R_+^m x SOC^K`` of CVXOPT's ``coneqp`` (Vandenberghe
2010), ``G = -[L; S]`` with S selecting the cone coordinates.  Each iteration uses
Nesterov-Todd scaling ``W`` (``W z = W^-1 s = lambda``) and Mehrotra's predictor-corrector;
the Newton system is reduced to the normal equations

    (P + G^T W^-2 G) dx = rhs,

whose matrix is dense (P) plus block-sparse terms; one Cholesky factor serves both the
predictor and the corrector.  Why not Clarabel: its sparse LDL^T handles the dense P far
slower than LAPACK's Cholesky.  Measured on the polish programs of bench/vs_cvxpy.py's
instances (one thread, 2-core machine): 1134 variables and 9118 rows, 0.73 s here (33
iterations) against 2.52 s for Clarabel at 1e-10; 1470 variables and 11324 rows, 1.28 s
against 5.69 s; objectives equal to 2e-9 and 5e-9 relative.

The dual variables z of the linear rows are the multipliers of ``L x >= 0``:
``P x + q = L^T z_lin + S^T z_soc`` at the solution.
"""

import time
from dataclasses import dataclass

import numpy as np
from scipy import linalg

#: Fraction of the step to the boundary taken.
_STEP_FRACTION = 0.99
#: Steps shorter than this mean the iteration has stalled (rounding).
_STALL_STEP = 1e-6
#: Largest backward error of a (refined) Woodbury solve of the normal equations (see
#: _preconditioned_cg); when refinement cannot reach it the iteration goes on dense.
_WOODBURY_RESIDUAL = 1e-11
#: Relative diagonal shifts tried on a block of the normal matrix that does not factor.
_BLOCK_SHIFTS = (1e-14, 1e-12, 1e-10)
#: Conjugate-gradient steps that may refine a Woodbury solve before the dense factor.
_REFINEMENT_STEPS = 30
#: A stalled iteration counts as converged within this factor of the tolerance.
_REDUCED_FACTOR = 100.0


@dataclass(frozen=True)
class IPMResult:
    """Solution of :func:`solve_qp_socp`.

    Attributes
    ----------
    x : ndarray (N,)
    z_linear : ndarray (m,)
        Multipliers (>= 0) of the rows ``L x >= 0``.
    converged : bool
        True when the residuals and the duality gap met the tolerances.
    iterations : int
    accuracy : tuple of float
        (relative primal residual, relative dual residual, relative gap) at x.
    """

    x: np.ndarray
    z_linear: np.ndarray
    converged: bool
    iterations: int
    accuracy: tuple


class BlockRows:
    """Block-diagonal linear rows: ``blocks[b]`` (m_b, k_b) acts on
    ``x[starts[b] : starts[b] + k_b]`` (the polish's rows: each touches one working block).

    Products go block by block with dense BLAS, so ``L^T diag(w) L`` costs
    ``sum_b m_b k_b^2`` with no sparse bookkeeping.
    """

    def __init__(self, blocks, starts, n_columns):
        self.blocks = [np.asarray(B, dtype=np.float64) for B in blocks]
        self.starts = [int(s) for s in starts]
        self.n_columns = int(n_columns)
        sizes = [B.shape[0] for B in self.blocks]
        self.offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(int)

    @property
    def n_rows(self) -> int:
        return int(self.offsets[-1])

    def _slices(self):
        for B, start, lo, hi in zip(
            self.blocks, self.starts, self.offsets[:-1], self.offsets[1:], strict=True
        ):
            yield B, slice(start, start + B.shape[1]), slice(lo, hi)

    def apply(self, x):
        """``L x`` (m,)."""
        out = np.empty(self.n_rows)
        for B, cols, rows in self._slices():
            out[rows] = B @ x[cols]
        return out

    def adjoint(self, z):
        """``L^T z`` (n_columns,)."""
        out = np.zeros(self.n_columns)
        for B, cols, rows in self._slices():
            out[cols] += z[rows] @ B
        return out

    def add_gram(self, M, weights):
        """``M += L^T diag(weights) L`` in place."""
        for B, cols, rows in self._slices():
            M[cols, cols] += (B.T * weights[rows]) @ B


def solve_qp_socp(
    P, q, L, cones, tol=1e-9, max_iter=60, time_limit=None, offset=0.0, P_factor=None
) -> IPMResult:
    """Solve the program of the module docstring.

    Parameters
    ----------
    P : ndarray (N, N), symmetric positive semidefinite, or None when ``P_factor`` is
        given (then ``F^T F`` is formed only if the dense path needs it)
    q : ndarray (N,)
    L : BlockRows with N columns
    cones : int ndarray (K, k)
        Indices into x of each cone; column 0 is the cone's "t" coordinate.
    tol : float
        Relative tolerance on the residuals and on the duality gap ``s^T z``.  When the
        steps stall first (rounding near the boundary), the iteration stops there and
        ``converged`` says whether ``_REDUCED_FACTOR * tol`` was met.
    time_limit : float or None
        Seconds; the iteration stops (not converged) when they run out.
    offset : float
        A constant of the caller's objective left out of ``q``: the gap is measured
        relative to ``max(1, |objective + offset|)`` (the polish passes ``0.5 ||y||^2``, so
        that a good fit, whose objective is far below it, is still solved to ``tol`` of its
        own size).
    P_factor : ndarray (r, N) or None
        F with ``P = F^T F``.  Products with P then go through F (O(r N) instead of
        O(N^2)), and when ``r^2 N + r^3 / 3 < N^3 / 3`` (few samples against the
        variables) the normal equations are solved by Woodbury around their
        block-diagonal part (:class:`_LowRankNormal`) instead of a dense Cholesky.

    A time limit is kept by the iterations' own clock: an iteration starts only when the
    previous one's duration still fits before the deadline.
    """
    # a direction that overflows is detected (non-finite) and rejected below; rounding
    # warnings on the way there would only alarm
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        return _interior_point(P, q, L, cones, tol, max_iter, time_limit, offset, P_factor)


def _interior_point(P, q, L, cones, tol, max_iter, time_limit, offset, P_factor):
    """The iterations of :func:`solve_qp_socp`."""
    start_time = time.perf_counter()
    deadline = None if time_limit is None else start_time + time_limit
    n_x, m = len(q), L.n_rows
    K, k = cones.shape
    degree = m + K
    quadratic = _Quadratic(P, P_factor)
    blocks = _Components.of(L, cones, P_factor) if _low_rank_pays(P_factor, n_x) else None
    try:
        x, s_lin, z_lin, s_soc, z_soc = _initial_point(quadratic, blocks, q, L, cones)
    except linalg.LinAlgError:  # not even the regularised start factors: give up
        return IPMResult(np.zeros(n_x), np.zeros(m), False, 0, (np.inf, np.inf, np.inf))
    scale_q = 1.0 + np.max(np.abs(q))
    converged, iteration = False, 0
    last_duration, iteration_start = 0.0, time.perf_counter()
    while iteration < max_iter:
        iteration += 1
        now = time.perf_counter()
        last_duration, iteration_start = now - iteration_start, now
        # residuals of  P x + q - L^T z_lin - S^T z_soc = 0  and  -L x + s = 0, -S x + s = 0
        Px = quadratic.apply(x)
        r_x = Px + q - L.adjoint(z_lin) - _scatter(z_soc, cones, n_x)
        r_lin = s_lin - L.apply(x)
        r_soc = s_soc - x[cones]
        gap = float(s_lin @ z_lin + np.sum(s_soc * z_soc))
        objective = 0.5 * float(x @ Px) + float(q @ x)
        primal = max(_max_abs(r_lin), _max_abs(r_soc)) / (1.0 + _max_abs(x))
        dual = _max_abs(r_x) / scale_q
        parts = (primal, dual, gap / max(1.0, abs(objective + offset)))
        accuracy = max(parts)
        if accuracy <= tol:
            converged = True
            break
        if deadline is not None and now + last_duration > deadline:
            break  # the next iteration would end past the deadline
        mu = gap / degree
        scaling = _Scaling(s_lin, z_lin, s_soc, z_soc)
        try:
            weights = 1.0 / scaling.w_lin**2
            factor = _normal_equations(quadratic, blocks, L, cones, weights, scaling.H_soc)
            system = (factor, L, cones, scaling, r_x, r_lin, r_soc)
            # predictor (affine scaling): lambda o (W dz + W^-1 ds) = -lambda o lambda
            lam_lin, lam_soc = scaling.lam_lin, scaling.lam_soc
            aff = _newton_direction(*system, -lam_lin * lam_lin, -_jordan(lam_soc, lam_soc))
            alpha = _max_step(s_lin, z_lin, s_soc, z_soc, aff)
            sigma = (1.0 - alpha) ** 3
            # corrector: add the second-order term and the centring sigma mu e
            ds_lin, dz_lin = scaling.scaled_pair_lin(aff)
            ds_soc, dz_soc = scaling.scaled_pair_soc(aff)
            e_soc = np.zeros((K, k))
            e_soc[:, 0] = 1.0
            step = _newton_direction(
                *system,
                -lam_lin * lam_lin - ds_lin * dz_lin + sigma * mu,
                -_jordan(lam_soc, lam_soc) - _jordan(ds_soc, dz_soc) + sigma * mu * e_soc,
            )
        except (linalg.LinAlgError, ValueError):  # lost definiteness to rounding: a stall
            converged = accuracy <= _REDUCED_FACTOR * tol
            break
        alpha = min(1.0, _STEP_FRACTION * _max_step(s_lin, z_lin, s_soc, z_soc, step, 1e300))
        if factor.fell_back:
            blocks = None  # Woodbury lost accuracy: dense from here on
        dx, ds_l, dz_l, ds_s, dz_s = step
        if alpha < _STALL_STEP or not all(np.all(np.isfinite(a)) for a in step):
            if blocks is not None:  # Woodbury's rounding near the end: go on dense
                blocks = None
                continue
            converged = accuracy <= _REDUCED_FACTOR * tol
            break
        x = x + alpha * dx
        s_lin, z_lin = s_lin + alpha * ds_l, z_lin + alpha * dz_l
        s_soc, z_soc = s_soc + alpha * ds_s, z_soc + alpha * dz_s
    else:  # max_iter or time: graded like a stall
        converged = accuracy <= _REDUCED_FACTOR * tol
    return IPMResult(x, z_lin, converged, iteration, parts)


def _initial_point(quadratic, blocks, q, L, cones):
    """CVXOPT's start: x from ``(P + G^T G) x = -q``, then ``s = -G x`` and ``z = G x``,
    each shifted along the cone identity e just into the interior."""
    K, k = cones.shape
    identity = np.broadcast_to(np.eye(k), (K, k, k))
    system = _normal_equations(
        quadratic, blocks, L, cones, np.ones(L.n_rows), identity, start=True
    )
    x = system.solve(-q)
    (s_lin, s_soc), (z_lin, z_soc) = (
        _shift_inside(L.apply(x), x[cones]),
        _shift_inside(-L.apply(x), -x[cones]),
    )
    return x, s_lin, z_lin, s_soc, z_soc


def _shift_inside(v_lin, v_soc):
    """``v + (1 + a) e`` with a the smallest shift putting v in the cone, when v is not
    strictly inside it already (then v is returned)."""
    depth = np.concatenate([-v_lin, np.linalg.norm(v_soc[:, 1:], axis=1) - v_soc[:, 0], [-np.inf]])
    a = float(np.max(depth))
    if a < 0:
        return v_lin, v_soc
    v_soc = v_soc.copy()
    v_soc[:, 0] += 1.0 + a
    return v_lin + 1.0 + a, v_soc


class _Scaling:
    """Nesterov-Todd scaling of (s, z): ``lambda = W z = W^-1 s``.

    Linear rows: ``W = diag(sqrt(s / z))``.  Second-order cones (CVXOPT's formulas):
    with ``s^ = s / sqrt(s^T J s)``, ``z^`` likewise, ``gamma = sqrt((1 + s^^T z^) / 2)``
    and ``w = (s^ + J z^) / (2 gamma)``, ``W = eta [[w0, w1^T], [w1, I + w1 w1^T / (1 + w0)]]``
    with ``eta = (s^T J s / z^T J z)^(1/4)``.
    """

    def __init__(self, s_lin, z_lin, s_soc, z_soc):
        self.w_lin = np.sqrt(s_lin / z_lin)
        self.lam_lin = np.sqrt(s_lin * z_lin)
        s_norm, z_norm = _cone_norm(s_soc), _cone_norm(z_soc)
        s_hat, z_hat = s_soc / s_norm[:, None], z_soc / z_norm[:, None]
        gamma = np.sqrt((1.0 + np.sum(s_hat * z_hat, axis=1)) / 2.0)
        w = s_hat.copy()
        w[:, 0] += z_hat[:, 0]
        w[:, 1:] -= z_hat[:, 1:]
        w /= 2.0 * gamma[:, None]
        eta = np.sqrt(s_norm / z_norm)
        K, k = s_soc.shape
        inner = np.eye(k - 1) + w[:, 1:, None] * w[:, None, 1:] / (1.0 + w[:, 0])[:, None, None]
        W = np.empty((K, k, k))
        W[:, 0, 0] = w[:, 0]
        W[:, 0, 1:] = w[:, 1:]
        W[:, 1:, 0] = w[:, 1:]
        W[:, 1:, 1:] = inner
        W_inv = W.copy()
        W_inv[:, 0, 1:] *= -1.0
        W_inv[:, 1:, 0] *= -1.0
        self.W_soc = W * eta[:, None, None]
        self.W_inv_soc = W_inv / eta[:, None, None]
        self.H_soc = self.W_inv_soc @ self.W_inv_soc  # W^-2, the cones' normal-matrix blocks
        self.lam_soc = np.einsum("gij,gj->gi", self.W_soc, z_soc)

    def scaled_pair_lin(self, step):
        """``(W^-1 ds, W dz)`` of the linear rows of a direction."""
        _, ds, dz, _, _ = step
        return ds / self.w_lin, dz * self.w_lin

    def scaled_pair_soc(self, step):
        _, _, _, ds, dz = step
        return (
            np.einsum("gij,gj->gi", self.W_inv_soc, ds),
            np.einsum("gij,gj->gi", self.W_soc, dz),
        )


class _Quadratic:
    """P of the objective, given densely or as its factor F (``P = F^T F``): products
    through F, the dense matrix formed once, only when asked for."""

    def __init__(self, P, F):
        if P is None and F is None:
            raise ValueError("give P or its factor P_factor")
        self._P, self.F = P, F

    def apply(self, x):
        return self._P @ x if self.F is None else self.F.T @ (self.F @ x)

    @property
    def dense(self):
        if self._P is None:
            self._P = self.F.T @ self.F
        return self._P


def _normal_equations(quadratic, blocks, L, cones, lin_weights, soc_blocks, start=False):
    """A solver of ``(P + L^T diag(lin_weights) L + S^T blockdiag(soc_blocks) S) x = r``:
    Woodbury around the block-diagonal part when ``blocks`` (the structure) is given and
    its blocks factor, else one dense Cholesky (raises LinAlgError when M is not positive
    definite to working precision).  ``start``: the initial point's system, whose dense
    form gets a tiny diagonal shift (a variable may have no row and no cone yet)."""
    if blocks is not None:
        try:
            return _LowRankNormal(blocks, L, cones, lin_weights, soc_blocks)
        except linalg.LinAlgError:  # a block-diagonal part singular to rounding: go dense
            pass
    return _DenseNormal(quadratic.dense, L, cones, lin_weights, soc_blocks, start)


class _DenseNormal:
    """One Cholesky factor of the dense normal matrix (O(N^3))."""

    fell_back = False  # (the interface of _LowRankNormal)

    def __init__(self, P, L, cones, lin_weights, soc_blocks, start):
        M = P.copy()
        L.add_gram(M, lin_weights)
        rows, cols = cones[:, :, None], cones[:, None, :]
        index = (np.broadcast_to(rows, soc_blocks.shape), np.broadcast_to(cols, soc_blocks.shape))
        np.add.at(M, index, soc_blocks)
        if start:
            M[np.diag_indices_from(M)] += 1e-12 * max(1.0, float(np.max(np.abs(np.diag(M)))))
        self._factor = linalg.cho_factor(M, lower=True, check_finite=False)

    def solve(self, rhs):
        return linalg.cho_solve(self._factor, rhs, check_finite=False)


def _low_rank_pays(P_factor, n_x) -> bool:
    """Woodbury costs about ``r^2 N + r^3 / 3`` flops a factorisation (the symmetric
    product ``F B^-1 F^T`` and the r x r Cholesky), the dense Cholesky ``N^3 / 3``."""
    if P_factor is None:
        return False
    r = P_factor.shape[0]
    return r * r * n_x + r**3 / 3 < n_x**3 / 3


class _Components:
    """The connected blocks of the normal matrix without P = F^T F: each cone and each row
    block couples its variables.  The polish's components are its working blocks (m1 d
    weights and m1 cone heights each), so they come in few sizes; components of one size
    are stacked (``index[s]``: (count, s) variable indices) for batched linear algebra,
    with ``F_of[s]`` (r, count s) their columns of F."""

    def __init__(self, members, n_x, F):
        self.F = F
        self.index = {}
        self.size = np.empty(n_x, dtype=int)  # the size of the variable's component,
        self.slot = np.empty(n_x, dtype=int)  # the component's place among those of its size
        self.position = np.empty(n_x, dtype=int)  # and the variable's place in it
        by_size = {}
        for idx in members:
            by_size.setdefault(len(idx), []).append(idx)
        for size, group in by_size.items():
            stacked = np.array(group)
            self.index[size] = stacked
            self.size[stacked] = size
            self.slot[stacked] = np.arange(len(group))[:, None]
            self.position[stacked] = np.arange(size)[None, :]
        self.F_of = {s: F[:, idx].reshape(F.shape[0], -1) for s, idx in self.index.items()}

    @classmethod
    def of(cls, L, cones, F):
        n_x = L.n_columns
        parent = np.arange(n_x)

        def root(i):
            while parent[i] != i:
                parent[i] = parent[parent[i]]
                i = parent[i]
            return i

        groups = [np.asarray(c) for c in cones]
        groups += [np.arange(cols.start, cols.stop) for _, cols, _ in L._slices()]
        for idx in groups:
            first = root(idx[0])
            for i in idx[1:]:
                parent[root(i)] = first
        roots = np.array([root(i) for i in range(n_x)])
        members = [np.flatnonzero(roots == r) for r in np.unique(roots)]
        return cls(members, n_x, F)


class _LowRankNormal:
    """``M = B + F^T F`` with B block diagonal (the cone and row terms) and F (r, N):

        M^-1 v = B^-1 v - B^-1 F^T C^-1 F B^-1 v,    C = I_r + F B^-1 F^T = I_r + V^T V,

    with ``B_c = L_c L_c^T`` per block and ``V = blockdiag(L_c^-1) F^T`` (N, r), so C is
    one symmetric rank-N update (BLAS syrk, ``r^2 N`` flops) and one r x r Cholesky.
    Near the end of the interior-point iterations B is ill-conditioned (an active block's
    ray has a tiny B-eigenvalue) and Woodbury loses digits to cancellation; it is then a
    very good preconditioner still, so :meth:`solve` refines by preconditioned conjugate
    gradients on M, and only when those stall builds the dense factor of M."""

    def __init__(self, blocks, L, cones, lin_weights, soc_blocks):
        self._F, self._F_of = blocks.F, blocks.F_of
        self._index = blocks.index
        self._B = {s: np.zeros((len(idx), s, s)) for s, idx in blocks.index.items()}
        for B, cols, rows in L._slices():
            start = cols.start
            stack = self._B[blocks.size[start]][blocks.slot[start]]
            local = blocks.position[cols]
            stack[np.ix_(local, local)] += (B.T * lin_weights[rows]) @ B
        for size in self._B:
            mine = blocks.size[cones[:, 0]] == size
            if mine.any():
                slot = blocks.slot[cones[mine, 0]][:, None, None]
                local = blocks.position[cones[mine]]
                np.add.at(
                    self._B[size], (slot, local[:, :, None], local[:, None, :]), soc_blocks[mine]
                )
        # inverse Cholesky factors of the blocks; a block that lost definiteness to
        # rounding is factored with a tiny shift, which the refinement on M corrects
        self._L_inv = {s: np.linalg.inv(_shifted_cholesky(B)) for s, B in self._B.items()}
        r = self._F.shape[0]
        # V_c = L_c^-1 F_c^T, (count, s, r) per size; C = I + sum_c V_c^T V_c
        self._V = {
            s: self._L_inv[s] @ F_s.reshape(r, -1, s).transpose(1, 2, 0)
            for s, F_s in self._F_of.items()
        }
        C = np.asfortranarray(np.eye(r))
        for V in self._V.values():
            flat = V.reshape(-1, r)  # (count s, r), its transpose Fortran-ordered
            C = linalg.blas.dsyrk(1.0, flat.T, beta=1.0, c=C, trans=0, lower=1, overwrite_c=1)
        self._C = linalg.cho_factor(C, lower=True, check_finite=False)
        # the largest entry of M (positive semidefinite: the largest diagonal entry)
        diagonal = np.einsum("ij,ij->j", self._F, self._F)
        for s, idx in self._index.items():
            diagonal[idx] += np.diagonal(self._B[s], axis1=1, axis2=2)
        self._largest_entry = float(diagonal.max())
        self.fell_back = False

    def _woodbury(self, v):
        """``M^-1 v`` by the Woodbury formula (exact up to its cancellation)."""
        a = {s: (L_inv @ v[self._index[s]][..., None])[..., 0] for s, L_inv in self._L_inv.items()}
        t = sum(np.einsum("csr,cs->r", self._V[s], a_s) for s, a_s in a.items())
        c = linalg.cho_solve(self._C, t, check_finite=False)
        out = np.empty_like(v)
        for s, L_inv in self._L_inv.items():
            inner = a[s] - self._V[s] @ c
            out[self._index[s]] = np.einsum("cji,cj->ci", L_inv, inner)  # L_c^-T inner
        return out

    def _apply(self, x):
        out = self._F.T @ (self._F @ x)
        for s, idx in self._index.items():
            out[idx] += (self._B[s] @ x[idx][..., None])[..., 0]
        return out

    def solve(self, rhs):
        """``M^-1 rhs``: Woodbury, refined by conjugate gradients preconditioned with it
        until the backward error is below ``_WOODBURY_RESIDUAL``; when
        ``_REFINEMENT_STEPS`` do not get there, the dense factor of M is built and used
        instead, and ``fell_back`` tells the caller to go on dense."""
        if not self.fell_back:
            x = _preconditioned_cg(
                self._apply, self._woodbury, rhs, _WOODBURY_RESIDUAL, self._largest_entry
            )
            if x is not None:
                return x
            self.fell_back = True
            self._dense = linalg.cho_factor(self._matrix(), lower=True, check_finite=False)
        return linalg.cho_solve(self._dense, rhs, check_finite=False)

    def _matrix(self):
        """M itself (dense)."""
        M = self._F.T @ self._F
        for s, idx in self._index.items():
            M[idx[:, :, None], idx[:, None, :]] += self._B[s]
        return M


def _shifted_cholesky(stack):
    """Cholesky factors of a stack of symmetric blocks (count, s, s); blocks that are not
    definite to working precision get ``_BLOCK_SHIFTS`` times their largest diagonal entry
    added to the diagonal, the smallest shift that works (LinAlgError when none does)."""
    try:
        return np.linalg.cholesky(stack)
    except np.linalg.LinAlgError:
        pass
    factors = np.empty_like(stack)
    scale = np.max(np.abs(np.diagonal(stack, axis1=1, axis2=2)), axis=1)
    eye = np.eye(stack.shape[1])
    for c, block in enumerate(stack):
        for shift in (0.0, *_BLOCK_SHIFTS):
            try:
                factors[c] = np.linalg.cholesky(block + (shift * scale[c]) * eye)
                break
            except np.linalg.LinAlgError:
                continue
        else:
            raise np.linalg.LinAlgError("a block of the normal matrix is not definite")
    return factors


def _preconditioned_cg(apply, precondition, rhs, tolerance, matrix_scale):
    """x with a backward error ``||rhs - M x||_inf <= tolerance (||rhs||_inf + s ||x||_inf)``
    (s = ``matrix_scale``, the largest entry of the positive semidefinite M = ``apply``;
    a backward-stable factorization meets this at ``tolerance`` near eps whatever the
    conditioning), by conjugate gradients preconditioned with ``precondition`` (an
    approximate inverse) from its own guess; None when ``_REFINEMENT_STEPS`` steps do
    not reach it."""
    rhs_size = np.max(np.abs(rhs))

    def small(r, x):
        return np.max(np.abs(r)) <= tolerance * (rhs_size + matrix_scale * np.max(np.abs(x)))

    x = precondition(rhs)
    r = rhs - apply(x)
    if small(r, x):
        return x
    z = precondition(r)
    p, rz = z, float(r @ z)
    for _ in range(_REFINEMENT_STEPS):
        Ap = apply(p)
        curvature = float(p @ Ap)
        if not curvature > 0 or not rz > 0:
            return None
        step = rz / curvature
        x = x + step * p
        r = r - step * Ap
        if small(r, x):
            return x
        z = precondition(r)
        rz_next = float(r @ z)
        p, rz = z + (rz_next / rz) * p, rz_next
    return None


def _newton_direction(factor, L, cones, sc, r_x, r_lin, r_soc, rhs_lin, rhs_soc):
    """Solve the Newton system with  lambda o (W dz + W^-1 ds) = rhs  (the s-rows).

    With ``d = lambda \\ rhs`` (Jordan division), ``ds = W (d - W dz) = -(G dx + r_z)`` and
    ``dz = W^-2 (G dx + r_z) + W^-1 d`` reduce it to the normal equations in dx.
    Returns (dx, ds_lin, dz_lin, ds_soc, dz_soc).
    """
    n_x = len(r_x)
    d_lin = rhs_lin / sc.lam_lin
    d_soc = _jordan_divide(sc.lam_soc, rhs_soc)
    # G = -[L; S], r_z = (r_lin, r_soc):
    # (P + G^T W^-2 G) dx = -r_x - G^T W^-2 r_z - G^T W^-1 d
    wl2 = sc.w_lin**2
    Winv_d_soc = np.einsum("gij,gj->gi", sc.W_inv_soc, d_soc)
    H = sc.H_soc
    Hr_soc = np.einsum("gij,gj->gi", H, r_soc)
    rhs = (
        -r_x
        + L.adjoint(r_lin / wl2 + d_lin / sc.w_lin)
        + _scatter(Hr_soc + Winv_d_soc, cones, n_x)
    )
    dx = factor.solve(rhs)
    G_dx_lin, G_dx_soc = -L.apply(dx), -dx[cones]
    dz_lin = (G_dx_lin + r_lin) / wl2 + d_lin / sc.w_lin
    dz_soc = np.einsum("gij,gj->gi", H, G_dx_soc + r_soc) + Winv_d_soc
    # ds = W (d - W dz) = -(G dx + r_z) algebraically; the second form has no cancellation
    # on the inactive rows, where W is large
    return dx, -(G_dx_lin + r_lin), dz_lin, -(G_dx_soc + r_soc), dz_soc


def _cone_norm(v):
    """``sqrt(v0^2 - ||v1||^2)`` per row, as ``sqrt((v0 - ||v1||)(v0 + ||v1||))`` (CVXOPT's
    form, which keeps the relative accuracy when v nears the boundary)."""
    r = np.linalg.norm(v[:, 1:], axis=1)
    return np.sqrt(np.maximum((v[:, 0] - r) * (v[:, 0] + r), 1e-300))


def _jordan(a, b):
    """Jordan product of second-order-cone vectors (rows): ``(a^T b, a0 b1 + b0 a1)``."""
    out = np.empty_like(a)
    out[:, 0] = np.sum(a * b, axis=1)
    out[:, 1:] = a[:, :1] * b[:, 1:] + b[:, :1] * a[:, 1:]
    return out


def _jordan_divide(lam, v):
    """x with ``lam o x = v`` (rows): x0 = (l0 v0 - l1^T v1) / det, x1 = (v1 - x0 l1) / l0."""
    det = lam[:, 0] ** 2 - np.sum(lam[:, 1:] ** 2, axis=1)
    x = np.empty_like(v)
    x[:, 0] = (lam[:, 0] * v[:, 0] - np.sum(lam[:, 1:] * v[:, 1:], axis=1)) / det
    x[:, 1:] = (v[:, 1:] - x[:, :1] * lam[:, 1:]) / lam[:, :1]
    return x


def _max_step(s_lin, z_lin, s_soc, z_soc, step, cap=1.0) -> float:
    """Largest alpha <= cap keeping s + alpha ds and z + alpha dz in the cones."""
    _, ds_lin, dz_lin, ds_soc, dz_soc = step
    alpha = cap
    for v, dv in ((s_lin, ds_lin), (z_lin, dz_lin)):
        neg = dv < 0
        if neg.any():
            alpha = min(alpha, float(np.min(-v[neg] / dv[neg])))
    for v, dv in ((s_soc, ds_soc), (z_soc, dz_soc)):
        alpha = min(alpha, _soc_max_step(v, dv))
    return max(alpha, 0.0)


def _soc_max_step(v, dv) -> float:
    """Largest alpha with v + alpha dv in every cone (rows), v interior.

    The feasible alphas form an interval [0, alpha_max]; alpha_max is the smallest
    positive root of ``f(a) = (v0 + a dv0)^2 - ||v1 + a dv1||^2 = A a^2 + 2 B a + C``
    (C > 0), found with the cancellation-free formula ``Q = -(B + sign(B) sqrt(B^2 - AC))``,
    roots ``Q / A`` and ``C / Q``.  (Leaving the cone for its negative twin would cross
    v0 = 0, where f <= 0, first.)
    """
    A = dv[:, 0] ** 2 - np.sum(dv[:, 1:] ** 2, axis=1)
    B = v[:, 0] * dv[:, 0] - np.sum(v[:, 1:] * dv[:, 1:], axis=1)
    C = v[:, 0] ** 2 - np.sum(v[:, 1:] ** 2, axis=1)
    disc = B * B - A * C
    real = disc >= 0
    Q = -(B + np.copysign(np.sqrt(np.where(real, disc, 0.0)), B))
    with np.errstate(divide="ignore", invalid="ignore"):
        roots = np.stack([Q / A, C / Q])
    roots = np.where(real & np.isfinite(roots) & (roots > 0), roots, np.inf)
    return float(np.min(roots, initial=np.inf))


def _scatter(values, cones, n_x):
    """``S^T values``: add each cone's entries into a vector of length n_x."""
    out = np.zeros(n_x)
    np.add.at(out, cones.ravel(), values.ravel())
    return out


def _max_abs(a) -> float:
    return float(np.max(np.abs(a))) if a.size else 0.0
