"""Shared fixtures: thread limits, seeded tiny data sets and their exact arrangements."""

import os
import warnings

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from hypothesis import settings  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

import admmrelu as ar  # noqa: E402

# derandomize: every run (CI included) draws the same examples, so a red run can be
# reproduced; widen the search locally with --hypothesis-seed or a larger max_examples.
settings.register_profile("default", deadline=None, max_examples=40, derandomize=True)
settings.load_profile("default")


@pytest.fixture(scope="session", autouse=True)
def _single_blas_thread():
    """Tiny problems: one BLAS thread avoids oversubscription on 2-core machines."""
    with threadpool_limits(limits=1):
        yield


def tiny_data(n, d, seed):
    """X = [N(0,1)^(d-1), 1] (bias column last) and y from a random 3-sub-network teacher."""
    rng = np.random.default_rng(seed)
    X = np.hstack([rng.standard_normal((n, d - 1)), np.ones((n, 1))])
    W1 = rng.standard_normal((3, d, 2))
    w2 = rng.standard_normal((3, 2))
    w3 = rng.standard_normal(3)
    hidden = np.maximum(np.einsum("nd,kdj->nkj", X, W1), 0)
    y = np.maximum(np.einsum("nkj,kj->nk", hidden, w2), 0) @ w3 + 0.1 * rng.standard_normal(n)
    return X, y


def make_problem(n, d, P, depth, width, seed, frac):
    """tiny_data (bias column, 3-unit teacher + noise), sampled blocks, beta = frac beta_max.

    Returns X, y and the problem."""
    X, y = tiny_data(n, d, seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # tiny data: fewer cells than asked
        arr = ar.sample_arrangements(
            X, n_blocks=P, depth=depth, width=width if depth == 3 else None, seed=seed
        )
    prob = ar.ConvexReLUProblem(X, y, 1.0, arr)
    return X, y, prob.with_beta(frac * prob.beta_max)


@pytest.fixture(scope="session")
def tiny_two_layer():
    """n=8, d=3 (with bias): exact two-layer arrangements."""
    X, y = tiny_data(8, 3, seed=1)
    return X, y, ar.enumerate_arrangements(X, depth=2)


@pytest.fixture(scope="session")
def tiny_three_layer():
    """n=6, d=2 (with bias), width 2: exact three-layer arrangements (a few hundred blocks)."""
    X, y = tiny_data(6, 2, seed=2)
    return X, y, ar.enumerate_arrangements(X, depth=3, width=2)


def run_quick_bench(script, out_dir):
    """``python bench/<script> --quick --out out_dir`` in a subprocess; asserts it exits 0."""
    import subprocess
    import sys
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "bench" / script
    out = subprocess.run(
        [sys.executable, str(path), "--quick", "--out", str(out_dir)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr
    return out
