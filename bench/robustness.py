"""Robustness of the ADMM across a grid of sizes and betas, against cvxpy + Clarabel.

What it measures
----------------
A grid of instances (the project's issue 9): depth 2 and depth 3 (width 2), n in {500,
2000, 5000}, P in {100, 500}, beta / beta_max in {0.3, 0.1, 0.01, 0.001}, d = 20.  The
data are ``_common.make_data``'s (X ~ N(0, 1/d), no bias column, y from a random teacher
of the cell's depth plus N(0, 0.1^2) noise; seed ``--seed``), so the same data serve
every P and beta of a (depth, n).  The blocks of a cell are either

sampled
    ``ar.sample_arrangements(X, n_blocks=P, depth, width, seed)``, as in vs_cvxpy.py;
trained (``--trained``)
    the activation patterns of a network trained on the same data and the same beta:
    at depth 2 a two-layer ReLU network of P neurons trained on
    ``0.5 ||(X W1)_+ w2 - y||^2 + beta/2 (||W1||^2 + ||w2||^2)``; at depth 3 P parallel
    width-2 sub-networks trained on objective (5) of docs/math.md
    (``0.5 ||f(X) - y||^2 + beta/2 sum_k (||w2_k||^2 + w3_k^2)``, ``||W1_k||_F = 1``).
    Both by ``TRAIN_STEPS`` full-batch Adam steps written in numpy (the first layer
    renormalised after each step at depth 3).  Each neuron (sub-network) gives one block,
    read off as sample_arrangements reads its random networks; duplicates and trivial
    blocks (dead neurons) are dropped, so ``n_blocks`` may be below P.  The trained
    network maps to a feasible point of the convex program over its own blocks, so the
    convex optimum lies at or below the network's objective (column "vs trained").

beta_max is that of the sampled blocks of the same (depth, n, P), so a sampled and a
trained cell of the same beta / beta_max solve the same non-convex problem.

Each cell runs in a fresh child process (``python bench/robustness.py --worker SPEC``),
under one BLAS thread (threadpoolctl) and one numba thread, so that a crash or a hang of
one cell does not stop the grid and the peak memory is that cell's.  The child:

1. loads the instance (built by the parent, stored as .npz) and solves a tiny instance of
   the same depth once, untimed (numba's cache, first calls);
2. solves the cell ``--repeats`` times with ``prob.solve()`` at its default settings
   (eps_rel 1e-6) plus ``time_limit=--cell-time-limit``, and keeps the run of median
   (lower median) wall time; its peak memory is read *now*, before Clarabel;
3. when Clarabel runs: one untimed tiny cvxpy solve, then
   ``prob.solve(solver="cvxpy", cvxpy_solver="CLARABEL", time_limit=--clarabel-time-limit)``
   (Clarabel at 1e-10, projected onto the cones and certified like the ADMM's point).

The child writes its record after each step, so a cell killed during Clarabel keeps its
ADMM figures.  It is killed after ``repeats x cell limit + 1.5 x Clarabel limit + 120 s``.

Peak memory is VmHWM of /proc/self/status (``_common.peak_memory_bytes``), the
high-water mark of the child's own address space: ``ru_maxrss`` is not used because a
child inherits its parent's (the parent holds every instance).  "RSS before" is the
resident memory after the imports, the instance and the warm-up, before the timed solves.

Clarabel is skipped (``skipped (est. N s)``) when its time, extrapolated from the
measured runs of bench/results/run_a and run_b, exceeds ``--clarabel-time-limit``, or
its memory (350 bytes per cone nonzero, vs_cvxpy.py's rule) the available memory.  The
time is fitted per depth as a power of the cone nonzeros ``2 n P width d`` (twice that
at depth 3): 17.2 s at (500, 20, 100) and 95.8 s at (1000, 20, 200) at depth 2 (exponent
1.24), 41.4 s and 358 s at the same sizes, width 2, at depth 3 (exponent 1.56).

Columns and targets
-------------------
total
    End-to-end wall time of ``prob.solve()`` (perf_counter around it); setup, iterations,
    polish and certificate are the result's own times; finish = (polish + certificate) /
    total.
rel gap
    Certified ``gap / objective``.
agreement
    ``|obj_ADMM - obj_Clarabel| / |obj_Clarabel|`` where Clarabel finished (returned a
    solution, optimal or optimal_inaccurate, before its time limit).
speed-up
    Clarabel's end-to-end wall time over the ADMM's.

Targets of the issue, marked per cell: finish share <= 0.5; speed-up >= 10x (depth 2),
>= 5x (depth 3) and agreement <= 1e-6 on every cell where Clarabel finished ("n/a"
elsewhere); total <= 300 s.  A cell whose ADMM child crashed or was killed misses every
target that does not need Clarabel.

Usage (from the repository root)::

    OMP_WAIT_POLICY=PASSIVE python bench/robustness.py                # whole grid (hours)
    python bench/robustness.py --depth 2 --n 500 --P 100              # one corner
    python bench/robustness.py --trained --no-clarabel --out /tmp/r   # trained cells too
    python bench/robustness.py --quick --out /tmp/rq                  # tiny smoke test
    python bench/robustness.py --list                                 # the cells, no solve

Outputs: the tables are printed and written to ``<out>/results.md``; ``<out>/results.json``
holds every field of every cell (the ADMM's history included), the settings, the machine,
the git commit and the library versions.  Both files are rewritten after every cell.
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import json
import math
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path

import numpy as np
from _common import (
    MISSING,
    RESULTS_DIR,
    Instance,
    available_memory_bytes,
    fmt,
    jsonable,
    limit_threads,
    machine_info,
    make_data,
    make_problem,
    markdown_table,
    peak_memory_bytes,
    resident_memory_bytes,
    write_atomic,
    write_results,
)

import admmrelu as ar
from admmrelu.lifting import network_blocks
from admmrelu.nonconvex import _adam_step

STEM = "results"
DEFAULT_DEPTHS = (2, 3)
DEFAULT_N = (500, 2000, 5000)
DEFAULT_P = (100, 500)
DEFAULT_BETA_FRACS = (0.3, 0.1, 0.01, 0.001)
#: Features of the data and first-layer width of the depth-3 blocks.
D_FEATURES = 20
WIDTH = 2
#: The --quick grid: both depths, sampled and trained blocks.
QUICK = {"depth": (2, 3), "n": (200,), "P": (20,), "beta_frac": (0.1, 0.01)}
#: Untimed warm-up instance of each depth (numba cache, first calls).
WARMUP_INSTANCES = {2: "2L-n40-d3-P4", 3: "3L-n40-d3-P4-w2"}

#: Training of the networks behind the trained blocks (full-batch Adam in numpy).
TRAIN_STEPS = 300
TRAIN_LR = 1e-2

#: Clarabel's measured end-to-end seconds (bench/results/run_a, run_b) at cone nonzeros
#: (depth: ((nonzeros, seconds), (nonzeros, seconds))), and its bytes per nonzero.
CLARABEL_MEASURED = {2: ((2e6, 17.2), (8e6, 95.8)), 3: ((8e6, 41.4), (32e6, 358.3))}
CLARABEL_BYTES_PER_NONZERO = 350
#: Statuses of a returned solution (to the solver's tolerances or 10x looser ones).
SOLUTION_STATUSES = ("optimal", "optimal_inaccurate")

#: The issue's targets.
TARGET_FINISH_SHARE = 0.5
TARGET_SPEEDUP = {2: 10.0, 3: 5.0}
TARGET_AGREEMENT = 1e-6
TARGET_TOTAL_S = 300.0
#: Seconds a cell's child may take beyond its solves' limits (start-up, warm-up).
CHILD_GRACE_S = 120.0


# ------------------------------------------------------------------------- estimates
def cone_nonzeros(depth: int, n: int, d: int, n_blocks: int) -> int:
    """Nonzeros of the cone rows of cvxpy's model (vs_cvxpy.py's count)."""
    width = 1 if depth == 2 else WIDTH
    return 2 * n * n_blocks * width * d * (1 if depth == 2 else 2)


def clarabel_estimate(depth: int, n: int, d: int, n_blocks: int) -> tuple[float, float]:
    """(seconds, bytes) Clarabel is expected to take end to end (module docstring)."""
    nonzeros = cone_nonzeros(depth, n, d, n_blocks)
    (z0, t0), (z1, t1) = CLARABEL_MEASURED[depth]
    exponent = math.log(t1 / t0) / math.log(z1 / z0)
    return t0 * (nonzeros / z0) ** exponent, CLARABEL_BYTES_PER_NONZERO * nonzeros


def clarabel_skip_reason(depth, n, d, n_blocks, time_limit: float) -> str | None:
    """Why Clarabel should not run on the cell, or None when it should."""
    seconds, memory = clarabel_estimate(depth, n, d, n_blocks)
    available = available_memory_bytes()
    if seconds > time_limit:
        return f"skipped (est. {seconds:.0f} s)"
    if available is not None and memory > available:
        return f"skipped (est. {memory / 1e9:.0f} GB)"
    return None


# ---------------------------------------------------------------------- trained blocks
def train_two_layer(X, y, beta, m, seed, steps=TRAIN_STEPS, lr=TRAIN_LR):
    """A two-layer ReLU network of ``m`` neurons trained by full-batch Adam on
    ``0.5 ||(X W1)_+ w2 - y||^2 + beta/2 (||W1||^2 + ||w2||^2)``.

    Returns W1 (d, m), w2 (m,) and the objective before and after training."""
    rng = np.random.default_rng(seed)
    W1 = rng.standard_normal((X.shape[1], m))
    w2 = rng.standard_normal(m) / math.sqrt(m)
    state = [(np.zeros_like(p), np.zeros_like(p)) for p in (W1, w2)]

    def objective():
        r = np.maximum(X @ W1, 0.0) @ w2 - y
        return 0.5 * r @ r + 0.5 * beta * (np.sum(W1**2) + w2 @ w2)

    initial = objective()
    for step in range(1, steps + 1):
        Z = X @ W1
        H = np.maximum(Z, 0.0)
        r = H @ w2 - y
        g_w2 = H.T @ r + beta * w2
        g_W1 = X.T @ (np.outer(r, w2) * (Z > 0)) + beta * W1
        _adam_step([W1, w2], [g_W1, g_w2], state, step, lr)
    return W1, w2, initial, objective()


def train_three_layer(X, y, beta, K, width, seed, steps=TRAIN_STEPS, lr=TRAIN_LR):
    """``K`` parallel three-layer sub-networks of ``width`` first-layer neurons trained by
    full-batch Adam on objective (5), ``||W1_k||_F`` renormalised to 1 after each step.

    Returns W1 (K, width, d), w2 (K, width), w3 (K,) and the objective before and after."""
    rng = np.random.default_rng(seed)
    W1 = rng.standard_normal((K, width, X.shape[1]))
    W1 /= np.linalg.norm(W1, axis=(1, 2), keepdims=True)
    w2 = rng.standard_normal((K, width))
    w3 = rng.standard_normal(K) / math.sqrt(K)
    state = [(np.zeros_like(p), np.zeros_like(p)) for p in (W1, w2, w3)]

    def forward():
        Z1 = (X @ W1.reshape(K * width, -1).T).reshape(-1, K, width)  # one GEMM
        H1 = np.maximum(Z1, 0.0)
        Z2 = (H1 * w2).sum(axis=2)
        return Z1, H1, Z2, np.maximum(Z2, 0.0) @ w3 - y

    def objective():
        r = forward()[3]
        return 0.5 * r @ r + 0.5 * beta * (np.sum(w2**2) + w3 @ w3)

    initial = objective()
    for step in range(1, steps + 1):
        Z1, H1, Z2, r = forward()
        g_w3 = np.maximum(Z2, 0.0).T @ r + beta * w3
        dZ2 = np.outer(r, w3) * (Z2 > 0)
        g_w2 = (dZ2[:, :, None] * H1).sum(axis=0) + beta * w2
        dZ1 = dZ2[:, :, None] * w2[None] * (Z1 > 0)
        g_W1 = (dZ1.reshape(-1, K * width).T @ X).reshape(W1.shape)
        _adam_step([W1, w2, w3], [g_W1, g_w2, g_w3], state, step, lr)
        W1 /= np.linalg.norm(W1, axis=(1, 2), keepdims=True)
    return W1, w2, w3, initial, objective()


def arrangements_from_network(X, W1, w2, depth) -> ar.Arrangements:
    """The distinct non-trivial blocks of a network's neurons (depth 2: W1 (m, 1, d) and
    w2 ones (m, 1)) or sub-networks (depth 3: W1 (K, m1, d), w2 (K, m1)), read off as
    ``sample_arrangements`` reads its random networks."""
    arrangements = network_blocks(X, W1, w2, depth)[0]
    if arrangements is None:
        raise ValueError("every neuron of the trained network is dead (no non-trivial block)")
    return arrangements


def trained_arrangements(X, y, beta, depth, P, seed):
    """Blocks of a network of P neurons (sub-networks) trained at ``beta``, and a record of
    the training (objectives, the network's own objective, blocks kept)."""
    start = time.perf_counter()
    if depth == 2:
        W1, w2, initial, final = train_two_layer(X, y, beta, P, seed)
        arr = arrangements_from_network(X, W1.T[:, None, :], np.ones((P, 1)), 2)
        network_objective = ar.TwoLayerReLUNetwork(W1, w2).objective(X, y, beta)
    else:
        W1, w2, w3, initial, final = train_three_layer(X, y, beta, P, WIDTH, seed)
        arr = arrangements_from_network(X, W1, w2, 3)
        net = ar.ThreeLayerReLUNetwork(np.transpose(W1, (0, 2, 1)), w2, w3)
        network_objective = net.objective(X, y, beta)
    return arr, {
        "units": P,
        "steps": TRAIN_STEPS,
        "lr": TRAIN_LR,
        "initial_objective": initial,
        "final_objective": final,
        "network_objective": network_objective,
        "distinct_blocks": arr.n_blocks,
        "train_s": time.perf_counter() - start,
    }


# ---------------------------------------------------------------------------- cells
def cell_name(cell: dict) -> str:
    return f"{cell['depth']}L-n{cell['n']}-P{cell['P']}-{cell['blocks']}-b{cell['beta_frac']:g}"


def grid(args) -> list[dict]:
    """The cells of the grid, smallest first (depth, n, P, blocks, beta / beta_max)."""
    kinds = tuple(args.blocks) + (("trained",) if args.trained else ())
    kinds = tuple(dict.fromkeys(kinds))  # each kind once, in order
    return [
        {"depth": depth, "n": n, "P": P, "blocks": kind, "beta_frac": frac}
        for depth in sorted(args.depth)
        for n in sorted(args.n)
        for P in sorted(args.P)
        for kind in kinds
        for frac in args.beta_frac
    ]


def save_instance(path: Path, X, y, arr: ar.Arrangements) -> None:
    arrays = {"X": X, "y": y, "masks1": arr.masks1, "signs": arr.signs}
    if arr.masks2 is not None:
        arrays["masks2"] = arr.masks2
    if arr.generators is not None:
        arrays["generators"] = arr.generators
    np.savez(path, n_draws=arr.n_draws, **arrays)


def load_problem(path: str, beta: float) -> ar.ConvexReLUProblem:
    with np.load(path) as f:
        arr = ar.Arrangements(
            masks1=f["masks1"],
            signs=f["signs"],
            masks2=f["masks2"] if "masks2" in f else None,
            generators=f["generators"] if "generators" in f else None,
            n_draws=int(f["n_draws"]),
        )
        return ar.ConvexReLUProblem(f["X"], f["y"], beta, arr)


class InstanceBuilder:
    """Builds and stores (as .npz under ``tmp``) the instances of the cells, once each."""

    def __init__(self, tmp: Path, d: int, seed: int):
        self.tmp, self.d, self.seed = tmp, d, seed
        self._sampled = {}  # (depth, n, P) -> (path, beta_max, n_blocks, X, y)

    def sampled(self, depth, n, P):
        key = (depth, n, P)
        if key not in self._sampled:
            width = WIDTH if depth == 3 else 1
            inst = Instance(depth, n, self.d, P, width)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # fewer blocks: n_blocks says
                prob = make_problem(inst, self.seed, beta_fraction=1.0)
            X, y = make_data(inst, self.seed)
            path = self.tmp / f"{depth}L-n{n}-P{P}-sampled.npz"
            save_instance(path, X, y, prob.arrangements)
            self._sampled[key] = (path, prob.beta, prob.n_blocks, X, y)
        return self._sampled[key]

    def build(self, cell: dict) -> dict:
        """Instance file, beta and block information of ``cell``."""
        start = time.perf_counter()
        depth, n, P = cell["depth"], cell["n"], cell["P"]
        path, beta_max, n_blocks, X, y = self.sampled(depth, n, P)
        beta = cell["beta_frac"] * beta_max
        info = {"beta_max": beta_max, "beta": beta, "n_blocks": n_blocks, "trained": None}
        if cell["blocks"] == "trained":
            arr, info["trained"] = trained_arrangements(X, y, beta, depth, P, self.seed)
            path = self.tmp / f"{cell_name(cell)}.npz"
            save_instance(path, X, y, arr)
            info["n_blocks"] = arr.n_blocks
        info["instance_path"] = str(path)
        info["build_s"] = time.perf_counter() - start
        return info


# --------------------------------------------------------------------------- worker
def _timed(prob, options: dict) -> dict:
    """One solve: the result's record, wall time and warnings (an exception is a record)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        start = time.perf_counter()
        try:
            res = prob.solve(**options)
        except Exception as err:  # a failed solve is a result here
            total = time.perf_counter() - start
            traceback.print_exc(file=sys.stderr)
            record = {"status": f"error: {type(err).__name__}: {err}"}
        else:
            total = time.perf_counter() - start
            record = res.to_dict()
            record["relative_violation"] = prob.constraint_violation(res.weights, relative=True)
            record["finish_share"] = (res.polish_time + res.certificate_time) / total
    record["total_s"] = total
    record["warnings"] = [f"{w.category.__name__}: {w.message}" for w in caught]
    return record


def _warm_up(depth: int, solver: str) -> None:
    prob = make_problem(Instance.parse(WARMUP_INSTANCES[depth]), seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if solver == "admm":
            prob.solve()
        else:
            prob.solve(solver="cvxpy", cvxpy_solver="CLARABEL")


def worker(spec_path: str) -> int:
    """Run one cell as described by the JSON file ``spec_path`` (module docstring)."""
    spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    out = Path(spec["result_path"])
    record = {"admm": {"status": "running"}, "clarabel": None}

    def save():
        write_atomic(out, json.dumps(jsonable(record), allow_nan=False))

    with limit_threads(1):
        prob = load_problem(spec["instance_path"], spec["beta"])
        _warm_up(prob.depth, "admm")
        record["rss_before_bytes"] = resident_memory_bytes()
        save()
        options = {"time_limit": spec["cell_time_limit"]}
        runs = [_timed(prob, options) for _ in range(spec["repeats"])]
        totals = [r["total_s"] for r in runs]
        admm = runs[totals.index(statistics.median_low(totals))]
        admm["totals_s"] = totals
        admm["options"] = options
        admm["peak_memory_bytes"] = peak_memory_bytes()
        record["admm"] = admm
        if spec["clarabel_time_limit"] is not None:
            record["clarabel"] = {"status": "running"}
            save()
            _warm_up(prob.depth, "clarabel")
            limit = spec["clarabel_time_limit"]
            options = {"solver": "cvxpy", "cvxpy_solver": "CLARABEL", "time_limit": limit}
            clarabel = _timed(prob, options)
            clarabel["time_limit_reached"] = clarabel.get("solve_time", 0.0) >= limit
            clarabel["peak_memory_bytes"] = peak_memory_bytes()
            record["clarabel"] = clarabel
        save()
    return 0


# --------------------------------------------------------------------------- parent
def run_cell(cell: dict, info: dict, args, tmp: Path) -> dict:
    """Run ``cell`` in a child process and return its full record."""
    name = cell_name(cell)
    skip = None
    if args.no_clarabel:
        skip = "not run (--no-clarabel)"
    else:
        skip = clarabel_skip_reason(
            cell["depth"], cell["n"], args.d, info["n_blocks"], args.clarabel_time_limit
        )
    estimate_s, estimate_bytes = clarabel_estimate(
        cell["depth"], cell["n"], args.d, info["n_blocks"]
    )
    spec = {
        "instance_path": info["instance_path"],
        "beta": info["beta"],
        "repeats": args.repeats,
        "cell_time_limit": args.cell_time_limit,
        "clarabel_time_limit": None if skip else args.clarabel_time_limit,
        "result_path": str(tmp / f"{name}.result.json"),
    }
    spec_path = tmp / f"{name}.spec.json"
    spec_path.write_text(json.dumps(spec), encoding="utf-8")
    timeout = args.repeats * args.cell_time_limit + CHILD_GRACE_S
    if not skip:
        timeout += 1.5 * args.clarabel_time_limit
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    start = time.perf_counter()
    killed, stderr = False, ""
    try:
        child = subprocess.run(
            [sys.executable, str(Path(__file__).resolve()), "--worker", str(spec_path)],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
        )
        returncode, stderr = child.returncode, child.stderr
    except subprocess.TimeoutExpired as err:
        killed, returncode = True, None
        stderr = err.stderr.decode() if isinstance(err.stderr, bytes) else (err.stderr or "")
    child_s = time.perf_counter() - start
    result_path = Path(spec["result_path"])
    record = {"admm": {"status": "no result"}, "clarabel": None}
    if result_path.exists():
        record = json.loads(result_path.read_text(encoding="utf-8"))
    failure = f"killed after {timeout:.0f} s" if killed else f"crashed (exit {returncode})"
    if killed or returncode != 0:
        for part in ("admm", "clarabel"):
            if record.get(part) and record[part].get("status") == "running":
                record[part]["status"] = failure
        if record["admm"].get("status") == "no result":
            record["admm"]["status"] = failure
    clarabel = record.get("clarabel") or {"status": skip}
    clarabel["estimate_s"], clarabel["estimate_bytes"] = estimate_s, estimate_bytes
    result = {
        "name": name,
        **cell,
        "d": args.d,
        "width": WIDTH if cell["depth"] == 3 else 1,
        **{k: v for k, v in info.items() if k != "instance_path"},
        "rss_before_bytes": record.get("rss_before_bytes"),
        "admm": record["admm"],
        "clarabel": clarabel,
        "child": {
            "returncode": returncode,
            "killed": killed,
            "timeout_s": timeout,
            "wall_s": child_s,
            "stderr_tail": stderr[-4000:],
        },
    }
    result.update(compare(result))
    return result


def failed_build(cell: dict, args, err: Exception) -> dict:
    """The record of a cell whose instance could not be built."""
    result = {
        "name": cell_name(cell),
        **cell,
        "d": args.d,
        "width": WIDTH if cell["depth"] == 3 else 1,
        "beta_max": None,
        "beta": None,
        "n_blocks": None,
        "trained": None,
        "build_s": None,
        "rss_before_bytes": None,
        "admm": {"status": f"build failed: {type(err).__name__}: {err}"},
        "clarabel": {"status": "not run (build failed)"},
        "child": None,
    }
    result.update(compare(result))
    return result


def clarabel_finished(result: dict) -> bool:
    clarabel = result["clarabel"]
    return clarabel.get("status") in SOLUTION_STATUSES and not clarabel.get(
        "time_limit_reached", False
    )


def compare(result: dict) -> dict:
    """Agreement, speed-up, the comparison with the trained network, and the targets."""
    admm, clarabel = result["admm"], result["clarabel"]
    solved = "objective" in admm
    agreement = difference = speedup = versus_trained = None
    if solved and clarabel_finished(result):
        difference = (admm["objective"] - clarabel["objective"]) / abs(clarabel["objective"])
        agreement = abs(difference)
        speedup = clarabel["total_s"] / admm["total_s"]
    if solved and result["trained"] is not None:
        reference = result["trained"]["network_objective"]
        versus_trained = (admm["objective"] - reference) / abs(reference)

    def mark(ok):
        return "n/a" if ok is None else ("met" if ok else "missed")

    targets = {
        "finish_share": mark(solved and admm["finish_share"] <= TARGET_FINISH_SHARE),
        "speedup": mark(None if speedup is None else speedup >= TARGET_SPEEDUP[result["depth"]]),
        "agreement": mark(None if agreement is None else agreement <= TARGET_AGREEMENT),
        "total_time": mark(solved and admm["total_s"] <= TARGET_TOTAL_S),
    }
    return {
        "agreement": agreement,
        "objective_difference": difference,
        "speedup": speedup,
        "versus_trained": versus_trained,
        "targets": targets,
    }


# --------------------------------------------------------------------------- report
def _mb(value) -> str:
    return MISSING if value is None else f"{value / 2**20:.0f}"


def clarabel_cell(result: dict) -> str:
    clarabel = result["clarabel"]
    if "total_s" not in clarabel or "objective" not in clarabel:
        return clarabel.get("status") or MISSING
    status = clarabel["status"] + (" (time limit)" if clarabel.get("time_limit_reached") else "")
    return f"{status}, {clarabel['total_s']:.1f} s"


def markdown(results: list[dict], args, machine: dict) -> str:
    """Two tables (the ADMM's figures; Clarabel and the targets) and a summary."""
    admm_headers = [
        "cell",
        "blocks",
        "beta",
        "status",
        "iters",
        "rel gap",
        "setup",
        "iterations",
        "polish",
        "certificate",
        "total (s)",
        "finish",
        "peak MB",
        "before MB",
        "vs trained",
    ]
    admm_rows = []
    for r in results:
        a = r["admm"]
        admm_rows.append(
            [
                r["name"],
                fmt(r["n_blocks"], "d"),
                fmt(r["beta"], ".3g"),
                a["status"],
                fmt(a.get("iterations"), "d"),
                fmt(a.get("relative_gap"), ".1e"),
                fmt(a.get("setup_time"), ".2f"),
                fmt(a.get("solve_time"), ".2f"),
                fmt(a.get("polish_time"), ".2f"),
                fmt(a.get("certificate_time"), ".2f"),
                fmt(a.get("total_s"), ".2f"),
                fmt(a.get("finish_share"), ".2f"),
                _mb(a.get("peak_memory_bytes")),
                _mb(r["rss_before_bytes"]),
                fmt(r["versus_trained"], "+.1e"),
            ]
        )
    target_headers = [
        "cell",
        "Clarabel",
        "Clarabel MB",
        "agreement",
        "speed-up",
        f"finish <= {TARGET_FINISH_SHARE:g}",
        "speed-up >= 10x/5x",
        f"agreement <= {TARGET_AGREEMENT:g}",
        f"total <= {TARGET_TOTAL_S:g} s",
    ]
    target_rows = [
        [
            r["name"],
            clarabel_cell(r),
            _mb(r["clarabel"].get("peak_memory_bytes")),
            fmt(r["agreement"], ".1e"),
            fmt(r["speedup"], ".1f"),
            *(r["targets"][k] for k in ("finish_share", "speedup", "agreement", "total_time")),
        ]
        for r in results
    ]
    summary = []
    for key, label in (
        ("finish_share", f"finish share <= {TARGET_FINISH_SHARE:g}"),
        ("speedup", "speed-up >= 10x (depth 2) / 5x (depth 3)"),
        ("agreement", f"agreement <= {TARGET_AGREEMENT:g}"),
        ("total_time", f"total <= {TARGET_TOTAL_S:g} s"),
    ):
        marks = [r["targets"][key] for r in results]
        judged = [m for m in marks if m != "n/a"]
        missed = [r["name"] for r in results if r["targets"][key] == "missed"]
        line = f"- {label}: met on {judged.count('met')} of {len(judged)} cells"
        summary.append(line + (f"; missed on {', '.join(missed)}" if missed else ""))
    return "\n".join(
        [
            f"# admmrelu robustness grid ({machine['date']})",
            "",
            f"{machine['cpu_model']}, 1 thread, d = {args.d}, width {WIDTH} at depth 3, "
            f"seed {args.seed}, ADMM at its defaults with time_limit {args.cell_time_limit:g} s "
            f"(median of {args.repeats}), Clarabel time limit {args.clarabel_time_limit:g} s, "
            f"commit {machine['git_commit']}. "
            "Cell: <depth>L-n<n>-P<P>-<blocks>-b<beta/beta_max>; blocks = distinct blocks; "
            "times in seconds; finish = (polish + certificate) / total; peak MB = the cell's "
            "child process's peak resident memory during the ADMM solves, before MB = its "
            "resident memory before them (imports, instance, warm-up); vs trained = "
            "(objective - trained network's objective) / trained network's.",
            "",
            markdown_table(admm_headers, admm_rows),
            "",
            "## Against Clarabel, and the targets",
            "",
            markdown_table(target_headers, target_rows),
            "",
            "Targets:",
            *summary,
        ]
    )


def list_cells(args) -> str:
    """The cells and Clarabel's estimate for each (P blocks assumed), without solving."""
    rows = []
    for cell in grid(args):
        seconds, memory = clarabel_estimate(cell["depth"], cell["n"], args.d, cell["P"])
        skip = clarabel_skip_reason(
            cell["depth"], cell["n"], args.d, cell["P"], args.clarabel_time_limit
        )
        run = "not run" if args.no_clarabel else (skip or "runs")
        rows.append([cell_name(cell), f"{seconds:.0f}", f"{memory / 1e9:.1f}", run])
    return markdown_table(["cell", "Clarabel est. (s)", "est. GB", "Clarabel"], rows)


# ------------------------------------------------------------------------------ main
def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--depth", type=int, nargs="+", choices=(2, 3), default=DEFAULT_DEPTHS)
    parser.add_argument("--n", type=int, nargs="+", default=DEFAULT_N)
    parser.add_argument("--P", type=int, nargs="+", default=DEFAULT_P)
    parser.add_argument("--beta-frac", type=float, nargs="+", default=DEFAULT_BETA_FRACS)
    parser.add_argument("--trained", action="store_true", help="add the trained-block cells")
    parser.add_argument(
        "--blocks",
        nargs="+",
        choices=("sampled", "trained"),
        default=["sampled"],
        help="kinds of blocks of the cells (default: sampled; --trained adds trained)",
    )
    parser.add_argument("--d", type=int, default=D_FEATURES, help="features of the data")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=1, help="ADMM solves per cell")
    parser.add_argument("--clarabel-time-limit", type=float, default=600.0)
    parser.add_argument(
        "--cell-time-limit", type=float, default=600.0, help="time_limit of each ADMM solve"
    )
    parser.add_argument("--no-clarabel", action="store_true")
    parser.add_argument("--quick", action="store_true", help="tiny grid (n=200, P=20)")
    parser.add_argument("--list", action="store_true", help="print the cells and exit")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "robustness")
    parser.add_argument("--worker", metavar="SPEC", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.depth, args.n, args.P = QUICK["depth"], QUICK["n"], QUICK["P"]
        args.beta_frac, args.trained = QUICK["beta_frac"], True
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    if any(not 0 < f for f in args.beta_frac):
        parser.error("--beta-frac values must be positive")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.worker:
        return worker(args.worker)
    if args.list:
        print(list_cells(args))
        return 0
    settings = {
        **vars(args),
        "out": str(args.out),
        "width": WIDTH,
        "train_steps": TRAIN_STEPS,
        "train_lr": TRAIN_LR,
        "clarabel_measured": CLARABEL_MEASURED,
        "targets": {
            "finish_share": TARGET_FINISH_SHARE,
            "speedup": TARGET_SPEEDUP,
            "agreement": TARGET_AGREEMENT,
            "total_s": TARGET_TOTAL_S,
        },
    }
    results = []
    with limit_threads(1), tempfile.TemporaryDirectory(prefix="robustness-") as tmp:
        machine = machine_info(1)
        builder = InstanceBuilder(Path(tmp), args.d, args.seed)
        for cell in grid(args):
            name = cell_name(cell)
            print(f"{name}: ...", file=sys.stderr, flush=True)
            try:
                info = builder.build(cell)
            except Exception as err:  # a failed build is a result, not the end of the grid
                traceback.print_exc(file=sys.stderr)
                result = failed_build(cell, args, err)
            else:
                result = run_cell(cell, info, args, Path(tmp))
            results.append(result)
            print(
                f"{name}: {result['admm']['status']}, {fmt(result['admm'].get('total_s'), '.2f')}"
                f" s; Clarabel: {clarabel_cell(result)}",
                file=sys.stderr,
                flush=True,
            )
            report = markdown(results, args, machine)
            data = {
                "benchmark": "robustness",
                "settings": settings,
                "machine": machine,
                "cells": results,
            }
            paths = write_results(args.out, STEM, report, data)
    if not results:
        print("no cell ran", file=sys.stderr)
        return 1
    print(report)
    print("\nwrote " + ", ".join(str(p) for p in paths), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
