"""Safeguarded type-II Anderson acceleration of a fixed-point iteration ``w <- T(w)``.

With residuals ``g_k = T(w_k) - w_k`` and the last m differences
``dW = [w_{i+1} - w_i]``, ``dG = [g_{i+1} - g_i]`` (as rows), the accelerated point is

    w_{k+1} = T(w_k) - (dW + dG)^T gamma,
    gamma = argmin ||g_k - dG^T gamma||^2 + r ||gamma||^2

(Walker & Ni 2011).  Safeguard (after Zhang, O'Donoghue & Boyd 2020, as in SCS): when the
residual at an accelerated point is larger than the residual of the point it came from,
the accelerated point is discarded, the plain step from that point ``T(w_prev)`` is taken
instead, and the memory is cleared.

The differences live in two preallocated (m, N) ring buffers and the Gram matrix
``dG dG^T`` is updated one row at a time, so a step costs O(m N) with no allocation of
size m N.  The buffers live where the iterates do (numpy or cupy); the m x m Gram matrix
and its solve stay on the host.
"""

import numpy as np

from .kernels import array_namespace, as_numpy


class AndersonAccelerator:
    """Anderson acceleration with memory ``memory`` (0 turns it off).

    Call :meth:`step` with the current point ``w`` and ``T(w)`` (flat arrays of one
    length); it returns the next point.  :meth:`reset` forgets the history (after the map
    changed, e.g. a new rho).
    """

    def __init__(self, memory: int, regularization: float = 1e-10):
        self.memory = memory
        self.regularization = regularization
        self.n_rejected = 0
        self._dW = self._dG = None
        self.reset()

    def reset(self) -> None:
        self._count = 0  # differences stored (<= memory)
        self._next = 0  # ring position of the next difference
        self._gram = np.zeros((self.memory, self.memory))
        self._last = None  # (w, g) of the last step
        self._fallback = None  # T(w) of the last step, taken when the safeguard fires
        self._fallback_norm = np.inf

    def step(self, w: np.ndarray, Tw: np.ndarray) -> np.ndarray:
        """The next iterate from ``w`` and ``T(w)``."""
        if self.memory == 0:
            return Tw
        xp = array_namespace(w)
        g = Tw - w
        g_norm = float(xp.linalg.norm(g))
        if self._fallback is not None and g_norm > self._fallback_norm:
            self.n_rejected += 1
            fallback = self._fallback
            self.reset()
            return fallback
        if self._last is not None:
            self._store(w - self._last[0], g - self._last[1])
        self._last = (w, g)
        self._fallback, self._fallback_norm = Tw, g_norm
        if self._count == 0:
            return Tw
        m = self._count
        dG, dW = self._dG[:m], self._dW[:m]
        gram = self._gram[:m, :m].copy()
        gram[np.diag_indices(m)] += self.regularization * max(np.trace(gram), 1e-300)
        try:
            gamma = np.linalg.solve(gram, as_numpy(dG @ g))
        except np.linalg.LinAlgError:
            self.reset()
            return Tw
        if not np.all(np.isfinite(gamma)):
            self.reset()
            return Tw
        gamma = xp.asarray(gamma, dtype=w.dtype)
        return Tw - gamma @ dW - gamma @ dG

    def _store(self, dw: np.ndarray, dg: np.ndarray) -> None:
        if self._dW is None or self._dW.shape[1] != dw.size:
            xp = array_namespace(dw)
            self._dW = xp.empty((self.memory, dw.size), dtype=dw.dtype)
            self._dG = xp.empty((self.memory, dw.size), dtype=dw.dtype)
        i = self._next
        self._dW[i] = dw
        self._dG[i] = dg
        self._count = min(self._count + 1, self.memory)
        self._next = (i + 1) % self.memory
        row = as_numpy(self._dG[: self._count] @ dg)
        self._gram[i, : self._count] = row
        self._gram[: self._count, i] = row
