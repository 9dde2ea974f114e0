"""Recovered non-convex networks (Proposition 1, formulation.md §5 and §9).

The networks carry their weights only: ``predict`` evaluates the ReLU network on any
input and never uses the training masks.
"""

from dataclasses import dataclass

import numpy as np

from ._validation import as_float_matrix, as_float_vector, check_positive_float


def _relu(z):
    return np.maximum(z, 0.0)


@dataclass(frozen=True)
class TwoLayerReLUNetwork:
    """``f(X) = (X W1)_+ w2`` with ``m`` hidden neurons.

    Attributes
    ----------
    W1 : ndarray of shape (n_features, m)
        First-layer weights, one column per hidden neuron.
    w2 : ndarray of shape (m,)
        Output weights.
    """

    W1: np.ndarray
    w2: np.ndarray

    depth = 2

    @property
    def n_neurons(self) -> int:
        return self.W1.shape[1]

    def predict(self, X) -> np.ndarray:
        """Network output on ``X`` of shape (n_samples, n_features); returns (n_samples,)."""
        X = _check_input(X, self.W1.shape[0])
        return _relu(X @ self.W1) @ self.w2

    def objective(self, X, y, beta) -> float:
        """``0.5 ||f(X) - y||^2 + beta/2 (||W1||_F^2 + ||w2||^2)`` (Pilanci & Ergen, eq. (2))."""
        loss = _squared_loss(self, X, y)
        beta = check_positive_float(beta, "beta")
        return loss + 0.5 * beta * (np.sum(self.W1**2) + np.sum(self.w2**2))


@dataclass(frozen=True)
class ThreeLayerReLUNetwork:
    """``f(X) = sum_k ((X W1_k)_+ w2_k)_+ w3_k``: K parallel three-layer sub-networks.

    Attributes
    ----------
    W1 : ndarray of shape (K, n_features, m1)
        First-layer weights of each sub-network; problem (5) requires ``||W1_k||_F = 1``.
    w2 : ndarray of shape (K, m1)
        Second-layer weights (one second-layer neuron per sub-network).
    w3 : ndarray of shape (K,)
        Output weights.
    """

    W1: np.ndarray
    w2: np.ndarray
    w3: np.ndarray

    depth = 3

    @property
    def n_subnetworks(self) -> int:
        return self.W1.shape[0]

    def first_layer_norms(self) -> np.ndarray:
        """``||W1_k||_F`` for each sub-network, shape (K,); (5) needs all equal to 1."""
        return np.sqrt(np.sum(self.W1**2, axis=(1, 2)))

    def predict(self, X) -> np.ndarray:
        """Network output on ``X`` of shape (n_samples, n_features); returns (n_samples,)."""
        X = _check_input(X, self.W1.shape[1])
        K, d, m1 = self.W1.shape
        first = X @ np.transpose(self.W1, (1, 0, 2)).reshape(d, K * m1)  # one GEMM
        hidden = _relu(first.reshape(X.shape[0], K, m1))
        return _relu(np.einsum("nkj,kj->nk", hidden, self.w2)) @ self.w3

    def objective(self, X, y, beta) -> float:
        """Objective (5): ``0.5 ||f(X) - y||^2 + beta/2 sum_k (||w2_k||^2 + w3_k^2)``.

        The first layer is not penalised; (5) holds it on ``||W1_k||_F = 1``
        (see :meth:`first_layer_norms`).
        """
        loss = _squared_loss(self, X, y)
        beta = check_positive_float(beta, "beta")
        return loss + 0.5 * beta * (np.sum(self.w2**2) + np.sum(self.w3**2))


def recover_network(weights, signs, depth, tol=0.0):
    """Proposition 1: the network that attains the convex objective of ``weights``.

    Parameters
    ----------
    weights : ndarray of shape (2, P, m1, d)
        A cone-feasible point; ``weights[0, t]`` is w_t, ``weights[1, t]`` is w'_t.
    signs : ndarray of shape (P, m1)
    depth : {2, 3}
    tol : float, default=0.0
        Groups (depth 2) or blocks (depth 3) with norm <= tol are dropped; with 0 the
        network reproduces the convex objective exactly.

    Notes
    -----
    Depth 2: ``u = v / sqrt(||v||)``, ``alpha = +-sqrt(||v||)``.  Depth 3, for block norms
    ``c_j = ||w_tj||`` and ``S = sum_j c_j``: ``W1_kj = w_tj / sqrt(c_j S)``,
    ``w2_kj = s_j sqrt(c_j)``, ``w3_k = +-sqrt(S)``; then ``||W1_k||_F = 1``.
    """
    weights = np.asarray(weights, dtype=np.float64)
    _, P, m1, d = weights.shape
    out_sign = np.array([1.0, -1.0])[:, None]
    c = np.linalg.norm(weights, axis=3)  # (2, P, m1)
    if depth == 2:
        keep = c[..., 0] > tol
        v, norms = weights[..., 0, :][keep], c[..., 0][keep]
        root = np.sqrt(norms)
        return TwoLayerReLUNetwork(
            W1=(v / root[:, None]).T, w2=(np.broadcast_to(out_sign, (2, P))[keep] * root)
        )
    S = c.sum(axis=2)  # (2, P)
    keep = S > tol
    w, ck, Sk = weights[keep], c[keep], S[keep]  # (K, m1, d), (K, m1), (K,)
    scale = np.sqrt(ck * Sk[:, None])
    W1 = np.divide(w, scale[:, :, None], out=np.zeros_like(w), where=scale[:, :, None] > 0)
    sk = np.broadcast_to(signs[None], (2, P, m1))[keep]
    return ThreeLayerReLUNetwork(
        W1=np.transpose(W1, (0, 2, 1)),
        w2=sk * np.sqrt(ck),
        w3=np.broadcast_to(out_sign, (2, P))[keep] * np.sqrt(Sk),
    )


def _check_input(X, n_features):
    X = as_float_matrix(X)
    if X.shape[1] != n_features:
        raise ValueError(
            f"X has {X.shape[1]} features but the network was trained on {n_features}; "
            "append the same bias column as in training"
        )
    return X


def _squared_loss(net, X, y):
    X = as_float_matrix(X)
    y = as_float_vector(y, X.shape[0])
    return 0.5 * float(np.sum((net.predict(X) - y) ** 2))
