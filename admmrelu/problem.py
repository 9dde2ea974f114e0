"""The convex program of a two- or three-layer ReLU network over a set of blocks.

Notation (formulation.md §1, §4, §9): ``n`` = n_samples, ``d`` = n_features (including a
bias column if any), ``P`` = number of blocks, ``m1`` = first-layer neurons per block.
"""

import time
from functools import cached_property

import numpy as np

from ._validation import (
    as_float_matrix,
    as_float_vector,
    check_positive_float,
    check_representable,
    stable_norm,
)
from .arrangements import Arrangements
from .cones import polar_generators, project_onto_cone
from .kernels import BoundOperators, get_backend
from .memory import check_memory, generator_chunk, problem_memory

#: Relative tolerance on a generator's cone membership when checking arrangements against X.
_GENERATOR_TOL = 1e-8

SUPPORTED_LOSSES = ("squared",)


class ConvexReLUProblem:
    r"""Convex reformulation (13) of a ReLU network, restricted to the given blocks.

    Minimises over ``U = (w_t, w'_t)_t`` of shape (2, P, m1, d)::

        0.5 * || sum_t A_t (w_t - w'_t) - y ||^2 + beta * sum_t (||w_t||_{2,1} + ||w'_t||_{2,1})
        s.t.  (2 D1_{t,j} - I) X w_{t,j} >= 0                 for every block t and neuron j
              (2 D2_t - I) sum_j s_{t,j} D1_{t,j} X w_{t,j} >= 0     (depth 3 only)
              and the same for w'_t,

    with ``A_t w = D2_t sum_j s_{t,j} D1_{t,j} X w_j`` (``A_t w = D_t X w`` at depth 2) and
    ``||w||_{2,1} = sum_j ||w_j||_2``.  There is no 1/n in the loss: a mean-loss user
    passes ``beta * n``.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        Training data; append a column of ones for a bias.
    y : array-like of shape (n_samples,)
        Targets.
    beta : float
        Regularisation strength, > 0.  Zero is optimal for ``beta >= beta_max``.
    arrangements : Arrangements
        Blocks from :func:`~admmrelu.sample_arrangements` or
        :func:`~admmrelu.enumerate_arrangements` on the same X.
    loss : {"squared"}, default="squared"
    max_memory : float or None, default=None
        Memory budget in bytes for building (:mod:`admmrelu.memory`; None: the environment
        variable ``ADMMRELU_MAX_MEMORY``, else 80% of the available memory).  Building
        copies X and y and checks the blocks' generators a chunk at a time, so it needs
        little beyond the data; the solve has its own estimate and budget.

    Raises
    ------
    ValueError
        Besides malformed input: when the reported quantities cannot be represented in
        float64 in the units of X and y (the objective ``~ ||y||^2``, ``beta_max ~ |X| |y|``,
        the weights ``~ |y| / |X|`` and their squares must stay within about
        [1e-301, 7e305]: roughly X and y within 1e+-150 of unit size;
        :func:`admmrelu._validation.check_representable`).  The message names the
        argument and the rescaling that fixes it.
    MemoryBudgetError
        When the estimated memory of building exceeds the budget.

    Notes
    -----
    The operators never form ``A_t`` or any ``D`` densely: each is one GEMM with ``X`` plus
    elementwise masks (see :mod:`admmrelu.kernels._reference`).
    """

    def __init__(self, X, y, beta, arrangements, loss="squared", max_memory=None):
        self.X = as_float_matrix(X)
        self.y = as_float_vector(y, self.X.shape[0])
        self.beta = check_positive_float(beta, "beta")
        if loss not in SUPPORTED_LOSSES:
            raise ValueError(f"loss must be one of {SUPPORTED_LOSSES}; got {loss!r}")
        self.loss = loss
        if not isinstance(arrangements, Arrangements):
            raise TypeError(
                "arrangements must be an Arrangements object from sample_arrangements or "
                f"enumerate_arrangements; got {type(arrangements).__name__}"
            )
        if arrangements.n_samples != self.X.shape[0]:
            raise ValueError(
                f"arrangements were built for {arrangements.n_samples} samples but X has "
                f"{self.X.shape[0]} rows; build them from this X"
            )
        n, d = self.X.shape
        estimate = problem_memory(
            n, d, arrangements.n_blocks, arrangements.depth, arrangements.width
        )
        check_memory(estimate, max_memory, ["fewer blocks", "fewer samples"])
        check_representable(self.X, self.y)
        self.arrangements = arrangements
        self._operators = BoundOperators(
            get_backend("cpu"),
            self.X,
            arrangements.masks1,
            arrangements.signs,
            arrangements.masks2,
        )
        self._check_generators()

    # ----------------------------------------------------------------- sizes
    @property
    def n_samples(self) -> int:
        return self.X.shape[0]

    @property
    def n_features(self) -> int:
        return self.X.shape[1]

    @property
    def n_blocks(self) -> int:
        return self.arrangements.n_blocks

    @property
    def depth(self) -> int:
        return self.arrangements.depth

    @property
    def width(self) -> int:
        return self.arrangements.width

    @property
    def var_shape(self) -> tuple[int, int, int, int]:
        """Shape (2, P, m1, d) of the variable U."""
        return (2, self.n_blocks, self.width, self.n_features)

    @property
    def cone_shape(self) -> tuple[int, int, int, int]:
        """Shape (n, 2, P, R) of ``G U``; R = m1 (+1 at depth 3)."""
        return (self.n_samples, 2, self.n_blocks, self.width + (self.depth == 3))

    # ------------------------------------------------------------- operators
    def forward(self, U) -> np.ndarray:
        """Predictions ``sum_t A_t (w_t - w'_t)`` of shape (n,) for U of shape (2, P, m1, d)."""
        return self._operators.forward(self._check_var(U))

    def adjoint(self, r) -> np.ndarray:
        """Adjoint of :meth:`forward`: ``(A_t^T r, -A_t^T r)_t`` of shape (2, P, m1, d)."""
        r = np.asarray(r, dtype=np.float64)
        if r.shape != (self.n_samples,):
            raise ValueError(f"r must have shape ({self.n_samples},); got {r.shape}")
        return self._operators.adjoint(r)

    def cone(self, U) -> np.ndarray:
        """Cone-constraint values ``G U`` of shape (n, 2, P, R); feasible iff all >= 0."""
        return self._operators.cone(self._check_var(U))

    def cone_adjoint(self, L) -> np.ndarray:
        """Adjoint of :meth:`cone`: ``G^T L`` for L (n, 2, P, R); returns (2, P, m1, d)."""
        L = np.asarray(L, dtype=np.float64)
        if L.shape != self.cone_shape:
            raise ValueError(f"L must have shape {self.cone_shape}; got {L.shape}")
        return self._operators.cone_adjoint(L)

    # ------------------------------------------------------------ objective
    def regularizer(self, U) -> float:
        """``sum_t ||w_t||_{2,1} + ||w'_t||_{2,1}`` (the sum of the d-group norms)."""
        return float(np.sum(stable_norm(self._check_var(U), axis=3)))

    def objective(self, U) -> float:
        """Convex objective ``0.5 ||forward(U) - y||^2 + beta * regularizer(U)``."""
        residual = self.forward(U) - self.y
        return 0.5 * float(residual @ residual) + self.beta * self.regularizer(U)

    def constraint_violation(self, U, relative=False) -> float:
        """Largest violation ``max(0, -min G U)``.

        With ``relative=True`` it is divided by ``max_i ||x_i|| * max_t ||U_t||_{2,1}``, which
        bounds every entry of ``|G U|``, so 1e-8 means "1e-8 relative to the scale of X and U".
        """
        U = self._check_var(U)
        violation = max(0.0, -float(np.min(self.cone(U))))
        if relative and violation > 0:
            block_norms = stable_norm(U, axis=3).sum(axis=2)
            # divided one factor at a time: the product can leave float64's range
            violation = violation / np.max(stable_norm(self.X, axis=1)) / np.max(block_norms)
        return violation

    @cached_property
    def beta_max(self) -> float:
        """Smallest beta for which U = 0 is optimal: ``max_t sigma_t(+-A_t^T y)`` (§6)."""
        from .certificate import max_block_dual_norm

        return max_block_dual_norm(self, self.y)[0]

    # ------------------------------------------------------- block geometry
    def polar_generators(self, t: int) -> np.ndarray:
        """Polar generators (m1, d, K) of block t's cone (see :mod:`admmrelu.cones`)."""
        arr = self.arrangements
        masks2 = None if arr.masks2 is None else arr.masks2[:, t]
        return polar_generators(self.X, arr.masks1[:, t], arr.signs[t], masks2)

    def project(self, U, deadline=None) -> np.ndarray:
        """Euclidean projection of U onto the cones, block by block (only violating blocks,
        largest first).

        Returns a new array of shape (2, P, m1, d) that satisfies ``G U >= 0`` up to rounding.
        ``deadline`` (a ``time.perf_counter()`` value): blocks whose turn comes after it are
        set to zero (the apex of their cone) instead, so the result is feasible whenever
        it returns.
        """
        U = np.array(self._check_var(U), copy=True)
        violated = np.any(self.cone(U) < 0, axis=(0, 3))  # (2, P)
        norms = np.where(violated, np.linalg.norm(U, axis=3).sum(axis=2), -1.0)
        for flat in np.argsort(-norms, axis=None, kind="stable")[: violated.sum()]:
            c, t = divmod(int(flat), self.n_blocks)
            if deadline is not None and time.perf_counter() >= deadline:
                U[c, t] = 0.0
            else:
                U[c, t] = project_onto_cone(self.polar_generators(t), U[c, t])
        return U

    def with_beta(self, beta) -> "ConvexReLUProblem":
        """The same problem with another beta (shares X, y and the arrangements)."""
        clone = object.__new__(ConvexReLUProblem)
        clone.__dict__.update({k: v for k, v in self.__dict__.items() if k != "beta_max"})
        clone.beta = check_positive_float(beta, "beta")
        return clone

    # ---------------------------------------------------------------- solve
    def to_cvxpy(self):
        """The program as a ``cvxpy.Problem`` (see :func:`admmrelu.reference.to_cvxpy`)."""
        from .reference import to_cvxpy

        return to_cvxpy(self)[0]

    def solve(self, solver="admm", **options):
        """Solve the program and return a :class:`~admmrelu.results.SolveResult`.

        Parameters
        ----------
        solver : {"admm", "cvxpy"}, default="admm"
            ``"admm"``: admmrelu's solver; ``device``, ``dtype`` and ``max_memory`` (the
            memory budget, :mod:`admmrelu.memory`) of :class:`~admmrelu.admm.ADMMSolver`
            and the options of :class:`~admmrelu.settings.ADMMSettings` (eps_abs,
            eps_rel, max_iter, time_limit, rho, alpha, adaptive_rho, polish, verbose,
            warm_start, ...).
            ``"cvxpy"`` solves the model of :meth:`to_cvxpy` with ``cvxpy_solver``
            (``"CLARABEL"``, ``"ECOS"`` or ``"SCS"``); see
            :func:`admmrelu.reference.solve_cvxpy` for its options.
        """
        if solver == "cvxpy":
            from .reference import solve_cvxpy

            return solve_cvxpy(self, **options)
        if solver == "admm":
            from .admm import solve_admm

            return solve_admm(self, **options)
        raise ValueError(f"solver must be 'admm' or 'cvxpy'; got {solver!r}")

    def __repr__(self) -> str:
        return (
            f"ConvexReLUProblem(n_samples={self.n_samples}, n_features={self.n_features}, "
            f"depth={self.depth}, width={self.width}, n_blocks={self.n_blocks}, "
            f"beta={self.beta:g})"
        )

    # -------------------------------------------------------------- helpers
    def _check_var(self, U):
        U = np.asarray(U, dtype=np.float64)
        if U.shape != self.var_shape:
            raise ValueError(f"U must have shape (2, P, m1, d) = {self.var_shape}; got {U.shape}")
        return U

    def _check_generators(self):
        """Each block's generator must lie in its cone: catches arrangements from another X.

        The cone values ``G U`` of the generators are computed a chunk of blocks at a time
        (:func:`admmrelu.memory.generator_chunk`), so the check needs no ``n x 2P x R``
        array.
        """
        arr = self.arrangements
        gens = arr.generators
        if gens is None:
            return
        if gens.shape[2] != self.n_features:
            raise ValueError(
                f"arrangements were built for {gens.shape[2]} features but X has "
                f"{self.n_features} columns; build them from this X"
            )
        backend = self._operators.backend
        worst = 0.0  # the copies w' = 0 of the check give 0
        chunk = generator_chunk(self.n_samples, self.cone_shape[3])
        for start in range(0, self.n_blocks, chunk):
            t = slice(start, start + chunk)
            U = np.stack([gens[t], np.zeros_like(gens[t])])
            masks2 = None if arr.masks2 is None else arr.masks2[:, t]
            values = backend.cone(self.X, arr.masks1[:, t], arr.signs[t], masks2, U)
            worst = min(worst, float(np.min(values)))
        scale = np.max(stable_norm(self.X, axis=1)) * max(np.max(np.abs(gens)), 1e-300)
        if worst < -_GENERATOR_TOL * scale * self.n_features * self.width:
            raise ValueError(
                "arrangements do not match X: a block's generator violates its own cone "
                f"constraint by {-worst:.3e}; build the arrangements from this X"
            )
