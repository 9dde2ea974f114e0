"""Timing of whole ADMM iterations and of a Fashion-MNIST-size solve, per device.

Used by ``bench/kernels.py``.  One iteration is ``_Splitting.step`` (the solver's own
iteration: both proxes, the two fused slack products, the x-update) on the device's
kernels, timed after a warm-up, with the GPU stream synchronised before a clock is read.
"""

import time

import numpy as np
from _common import Instance, make_data, make_problem

import admmrelu as ar
from admmrelu.admm import ADMMSolver, _Splitting
from admmrelu.certificate import block_upper_bounds
from admmrelu.settings import ADMMSettings

#: The issue's GPU target: two layers, Fashion-MNIST size, 1e-4 relative gap in <= 60 s.
FASHION = Instance(depth=2, n=60_000, d=784, P=512)
FASHION_EPS_REL = 1e-4
FASHION_SECONDS = 60.0
#: Iterations run before timing (compilation, caches, rho factorisation).
_WARMUP_ITERATIONS = 5


def synchronize(backend) -> None:
    """Wait for the device's queued work (a no-op on the CPU)."""
    if backend.name == "cupy":
        backend.xp.cuda.get_current_stream().synchronize()


def time_iteration(prob, device: str, dtype: str, repeats: int, inner: int) -> dict:
    """Median seconds of one ADMM iteration of ``prob`` on ``device`` in ``dtype``.

    Each of ``repeats`` samples times ``inner`` consecutive iterations from the origin's
    trajectory (after ``_WARMUP_ITERATIONS``) at the default rho and alpha.
    """
    start = time.perf_counter()
    solver = ADMMSolver(prob, device, dtype)
    setup = time.perf_counter() - start
    settings = ADMMSettings()
    split = _Splitting(solver, solver.scaled)
    w, rho = split.initial_point(None, prob, settings)
    for _ in range(_WARMUP_ITERATIONS):
        w = split.step(w, rho, settings.alpha).Tw
    synchronize(solver.backend)
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(inner):
            w = split.step(w, rho, settings.alpha).Tw
        synchronize(solver.backend)
        samples.append((time.perf_counter() - start) / inner)
    return {
        "device": device,
        "backend": solver.backend.name,
        "dtype": dtype,
        "setup_s": setup,
        "iteration_s": float(np.median(samples)),
        "samples_s": samples,
    }


def iteration_rows(instances, devices, dtypes, repeats: int, inner: int) -> list[dict]:
    """:func:`time_iteration` for every instance, device and dtype (instance-major)."""
    rows = []
    for inst in instances:
        prob = make_problem(inst, seed=0)
        for device in devices:
            for dtype in dtypes:
                row = time_iteration(prob, device, dtype, repeats, inner)
                rows.append({"instance": inst.name, **row})
    return rows


def fashion_solve(device: str, dtype: str, seed: int = 0) -> dict:
    """Solve the Fashion-MNIST-size two-layer program to ``FASHION_EPS_REL``.

    Synthetic data of that size (``_common.make_data``; no download), P sampled blocks,
    beta = 0.1 times the cheap bound ``max_t ||A_t^T y||`` on beta_max (the exact
    beta_max needs per-block cone solves with 60,000 generators).  Reports the data and
    problem preparation apart from the solver's setup and solve, which the target covers.
    """
    start = time.perf_counter()
    X, y = make_data(FASHION, seed)
    arr = ar.sample_arrangements(X, n_blocks=FASHION.P, depth=2, seed=seed)
    prob = ar.ConvexReLUProblem(X, y, 1.0, arr)
    prob = prob.with_beta(0.1 * float(np.max(block_upper_bounds(prob, prob.y))))
    prepare = time.perf_counter() - start
    start = time.perf_counter()
    res = prob.solve(device=device, dtype=dtype, eps_rel=FASHION_EPS_REL)
    total = time.perf_counter() - start
    return {
        "instance": FASHION.name,
        "device": device,
        "dtype": dtype,
        "status": str(res.status),
        "relative_gap": res.gap / abs(res.objective),
        "iterations": res.iterations,
        "prepare_s": prepare,
        "setup_s": res.setup_time,
        "iterations_s": res.solve_time,
        "polish_s": res.polish_time,
        "certificate_s": res.certificate_time,
        "total_s": total,
        "target_s": FASHION_SECONDS,
        "met": str(res.status) == "optimal" and total <= FASHION_SECONDS,
    }
