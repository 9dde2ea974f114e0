"""A short gradient run on the non-convex network: the seed of the global solve.

Full-batch Adam, written in numpy, on the objectives the convex program is equivalent to
(formulation.md §2, §9):

* depth 2, ``m`` neurons: ``0.5 ||(X W1)_+ w2 - y||^2 + beta/2 (||W1||_F^2 + ||w2||^2)``;
* depth 3, ``K`` sub-networks of width ``m1``:
  ``0.5 ||sum_k ((X W1_k)_+ w2_k)_+ w3_k - y||^2 + beta/2 sum_k (||w2_k||^2 + w3_k^2)``
  with every ``||W1_k||_F = 1``: Adam on the Riemannian gradient (the radial part of
  W1's gradient removed), then renormalised after each step.

The run only has to find good activation patterns: its neurons' masks become blocks of
the convex program, whose optimum over them is never worse than the run's network
(:func:`admmrelu.lifting.lift_network`).
"""

import math
import time

import numpy as np

from .network import ThreeLayerReLUNetwork, TwoLayerReLUNetwork

#: Adam's moment decay rates (the usual defaults).
ADAM_BETAS = (0.9, 0.999)


def train_network(
    X, y, beta, depth=2, width=1, n_units=100, steps=500, lr=0.1, seed=0, time_limit=None
):
    """Train a ReLU network by full-batch Adam; return it and its objective per step.

    Parameters
    ----------
    X : ndarray of shape (n, d); y : ndarray of shape (n,); beta : float > 0
    depth : {2, 3}
    width : int
        First-layer neurons m1 per sub-network (depth 3).
    n_units : int
        Hidden neurons m (depth 2) or sub-networks K (depth 3).
    steps : int
        Adam steps; the step size decays as a cosine from ``lr`` to ``lr / 100``.
    lr : float
        Initial step, relative to the size of the balanced initial weights (Adam's steps
        have the size of the step parameter, whatever the gradient's scale).
    seed : int or numpy Generator
    time_limit : float or None
        Seconds after which the run stops early.

    Returns
    -------
    network : TwoLayerReLUNetwork or ThreeLayerReLUNetwork
        The iterate of lowest objective seen.
    objectives : ndarray
        The objective before each step, and after the last unless the time limit
        stopped the run.
    """
    rng = np.random.default_rng(seed)
    if depth == 2:
        trainer = _TwoLayer(X, y, beta, n_units, rng)
    else:
        trainer = _ThreeLayer(X, y, beta, n_units, width, rng)
    deadline = None if time_limit is None else time.perf_counter() + time_limit
    step_size = lr * trainer.weight_scale
    moments = [(np.zeros_like(p), np.zeros_like(p)) for p in trainer.params]
    best_value, best = np.inf, None
    objectives = []
    for step in range(1, steps + 1):
        value, grads = trainer.value_and_gradient()
        objectives.append(value)
        if value < best_value:
            best_value, best = value, [p.copy() for p in trainer.params]
        if deadline is not None and time.perf_counter() > deadline:
            break
        decay = 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * (step - 1) / steps))
        _adam_step(trainer.params, grads, moments, step, step_size * decay)
        trainer.project()
    else:  # all steps taken: the last one's result is still to be evaluated
        value = trainer.value_and_gradient()[0]
        objectives.append(value)
        if value < best_value:
            best = [p.copy() for p in trainer.params]
    return trainer.network(best), np.array(objectives)


def _adam_step(params, grads, moments, step, lr):
    """One Adam step on the arrays ``params`` in place."""
    b1, b2 = ADAM_BETAS
    for p, g, (m, v) in zip(params, grads, moments, strict=True):
        m *= b1
        m += (1 - b1) * g
        v *= b2
        v += (1 - b2) * g * g
        p -= lr * (m / (1 - b1**step)) / (np.sqrt(v / (1 - b2**step)) + 1e-300)


def _output_scale(X, y):
    """(row scale of X, root-mean-square of y), both > 0."""
    row = float(np.sqrt(np.mean(np.sum(X * X, axis=1)))) or 1.0
    target = float(np.sqrt(np.mean(y * y))) or 1.0
    return row, target


class _TwoLayer:
    """``(X W1)_+ w2`` with balanced initial weights: ``||W1[:, j]|| = |w2[j]|``."""

    def __init__(self, X, y, beta, m, rng):
        self.X, self.y, self.beta = X, y, beta
        row, target = _output_scale(X, y)
        # (X W1) entries ~ N(0, 1); the output ~ target; then ||u_j|| = |alpha_j|
        W1 = rng.standard_normal((X.shape[1], m)) / row
        w2 = rng.standard_normal(m) * (0.5 * target / math.sqrt(m))
        self.W1, self.w2 = _balance(W1, w2)
        self.weight_scale = float(np.sqrt(np.mean(self.W1**2)))
        self.params = [self.W1, self.w2]

    def value_and_gradient(self):
        Z = self.X @ self.W1
        H = np.maximum(Z, 0.0)
        r = H @ self.w2 - self.y
        value = 0.5 * r @ r + 0.5 * self.beta * (np.sum(self.W1**2) + self.w2 @ self.w2)
        g_w2 = H.T @ r + self.beta * self.w2
        g_W1 = self.X.T @ (np.outer(r, self.w2) * (Z > 0)) + self.beta * self.W1
        return float(value), [g_W1, g_w2]

    def project(self):
        pass

    @staticmethod
    def network(params):
        return TwoLayerReLUNetwork(W1=params[0], w2=params[1])


def _balance(W1, w2):
    """Rescale each neuron ``(u, alpha) -> (c u, alpha / c)`` so that ``||u|| = |alpha|``:
    the same function, the smallest weight decay."""
    u_norm = np.linalg.norm(W1, axis=0)
    c = np.sqrt(np.abs(w2) / np.maximum(u_norm, 1e-300))
    c = np.where((u_norm > 0) & (w2 != 0), c, 1.0)
    return W1 * c[None], w2 / c


class _ThreeLayer:
    """``sum_k ((X W1_k)_+ w2_k)_+ w3_k`` with ``||W1_k||_F = 1`` and ``||w2_k|| = |w3_k|``."""

    def __init__(self, X, y, beta, K, m1, rng):
        self.X, self.y, self.beta, self.K, self.m1 = X, y, beta, K, m1
        row, target = _output_scale(X, y)
        d = X.shape[1]
        W1 = rng.standard_normal((K, m1, d))
        self.W1 = W1 / np.linalg.norm(W1, axis=(1, 2), keepdims=True)
        # a unit W1_k gives first-layer outputs ~ row / sqrt(m1 d); aim at target / sqrt(K)
        first = row / math.sqrt(m1 * d)
        size = math.sqrt(target / math.sqrt(K) / max(first, 1e-300))
        self.w2 = rng.standard_normal((K, m1)) * size / math.sqrt(m1)
        self.w3 = rng.choice([-1.0, 1.0], size=K) * np.linalg.norm(self.w2, axis=1)
        self.weight_scale = float(np.sqrt(np.mean(self.w2**2)))
        self.params = [self.W1, self.w2, self.w3]

    def _forward(self):
        K, m1 = self.K, self.m1
        Z1 = (self.X @ self.W1.reshape(K * m1, -1).T).reshape(-1, K, m1)  # one GEMM
        H1 = np.maximum(Z1, 0.0)
        Z2 = np.einsum("nkj,kj->nk", H1, self.w2)
        return Z1, H1, Z2

    def value_and_gradient(self):
        Z1, H1, Z2 = self._forward()
        r = np.maximum(Z2, 0.0) @ self.w3 - self.y
        value = 0.5 * r @ r + 0.5 * self.beta * (np.sum(self.w2**2) + self.w3 @ self.w3)
        g_w3 = np.maximum(Z2, 0.0).T @ r + self.beta * self.w3
        dZ2 = np.outer(r, self.w3) * (Z2 > 0)
        g_w2 = np.einsum("nk,nkj->kj", dZ2, H1) + self.beta * self.w2
        dZ1 = dZ2[:, :, None] * self.w2[None] * (Z1 > 0)
        g_W1 = (dZ1.reshape(-1, self.K * self.m1).T @ self.X).reshape(self.W1.shape)
        # the Riemannian gradient on the spheres ||W1_k||_F = 1: without the radial part,
        # which the renormalisation undoes anyway but which skews Adam's moments (seed
        # objective on acute-nephritis, depth 3: 13.891 with it, 13.447 without)
        g_W1 -= np.sum(g_W1 * self.W1, axis=(1, 2), keepdims=True) * self.W1
        return float(value), [g_W1, g_w2, g_w3]

    def project(self):
        self.W1 /= np.maximum(np.linalg.norm(self.W1, axis=(1, 2), keepdims=True), 1e-300)

    @staticmethod
    def network(params):
        W1, w2, w3 = params
        return ThreeLayerReLUNetwork(W1=np.transpose(W1, (0, 2, 1)).copy(), w2=w2, w3=w3)
