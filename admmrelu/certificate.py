"""Dual certificate: a lower bound on the optimum from any prediction (formulation.md §6).

For the block set of a problem, weak duality gives, for every v in R^n with
``sigma_t(+-A_t^T v) <= beta`` for all t,

    p  >=  d(v) = v^T y - 0.5 ||v||^2 .

Given a prediction yhat, take ``v = y - yhat``, compute ``gamma = max_t sigma_t(+-A_t^T v)``
(upper bounds, see :mod:`admmrelu.cones`), and scale v by the best feasible factor
``c in [0, beta / gamma]``; ``d(c v)`` is then a rigorous lower bound.  At an optimum
``gamma = beta`` and ``d(v*) = p``.

The per-block dual norms are refined lazily: blocks are visited in decreasing order of the
cheap bound ``max_j ||(A_t^T v)_j||`` (the value at mu = 0) and the exact solve stops as
soon as no remaining cheap bound exceeds the largest refined value.
"""

from dataclasses import dataclass

import numpy as np

from .cones import block_dual_norm


@dataclass(frozen=True)
class Certificate:
    """A certified lower bound.

    Attributes
    ----------
    dual_bound : float
        ``d(c v)``, a lower bound on the optimum over the problem's blocks.
    dual_ratio : float
        ``gamma / beta`` for ``v = y - yhat`` (<= 1 means v itself is dual feasible).
    scale : float
        The factor c applied to v.
    n_refined : int
        Blocks whose dual norm needed an exact (NNLS or SOCP) solve.
    """

    dual_bound: float
    dual_ratio: float
    scale: float
    n_refined: int


def max_block_dual_norm(problem, v) -> tuple[float, int]:
    """``max_t max(sigma_t(A_t^T v), sigma_t(-A_t^T v))`` and the number of exact solves."""
    Z = problem.adjoint(v)[0]  # (P, m1, d): A_t^T v
    cheap = np.max(np.linalg.norm(Z, axis=2), axis=1)
    best, n_refined = 0.0, 0
    for t in np.argsort(-cheap, kind="stable"):
        if cheap[t] <= best:
            break
        E = problem.polar_generators(t)
        best = max(best, block_dual_norm(E, Z[t]), block_dual_norm(E, -Z[t]))
        n_refined += 1
    return best, n_refined


def certify(problem, yhat) -> Certificate:
    """Certified lower bound from a prediction ``yhat`` of shape (n_samples,)."""
    y, beta = problem.y, problem.beta
    yhat = np.asarray(yhat, dtype=np.float64)
    if yhat.shape != y.shape:
        raise ValueError(
            f"yhat must be a prediction of shape (n_samples,) = {y.shape}; got shape "
            f"{yhat.shape}. Use problem.forward(U) for the prediction of a point U."
        )
    v = y - yhat
    gamma, n_refined = max_block_dual_norm(problem, v)
    vy, vv = float(v @ y), float(v @ v)
    if vv == 0.0 or vy <= 0.0:
        return Certificate(dual_bound=0.0, dual_ratio=gamma / beta, scale=0.0, n_refined=n_refined)
    scale = vy / vv  # unconstrained maximiser of d(c v) over c
    if gamma > 0:
        scale = min(scale, beta / gamma)
    bound = scale * vy - 0.5 * scale**2 * vv
    return Certificate(dual_bound=bound, dual_ratio=gamma / beta, scale=scale, n_refined=n_refined)
