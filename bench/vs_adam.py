"""admmrelu's global solve against full-batch Adam and SGD (momentum 0.9) in torch.

What it measures
----------------
On each instance, every method minimises the same non-convex objective with the same
beta (no 1/n in the loss; the bias is a column of ones appended to X):

* depth 2, ``m`` hidden neurons, W1 (d, m), w2 (m,):
  ``0.5 ||(X W1)_+ w2 - y||^2 + beta/2 (||W1||_F^2 + ||w2||^2)``;
* depth 3, ``K`` parallel sub-networks of width ``m1``, W1 (K, d, m1), w2 (K, m1), w3 (K,):
  ``0.5 ||sum_k ((X W1_k)_+ w2_k)_+ w3_k - y||^2 + beta/2 sum_k (||w2_k||^2 + w3_k^2)``
  with every ``||W1_k||_F = 1`` (formulation.md §2, problem (5)).

admmrelu
    ``ar.solve_global(X, y, beta, depth, width, time_limit, seed)`` once per instance,
    after an untimed solve of a tiny instance of the same depth (numba's compilation and
    caches).  Reported: its objective, the objective of ``res.network()`` evaluated here
    (the number a user gets), its global lower bound and ``(objective - bound) /
    objective``, ``globally_optimal``, the certificate over its final blocks (status,
    relative gap), its wall time (perf_counter around the call) and ``total_time``, the
    final number of blocks and the objective after each round (the plot's markers).
    Its time includes everything it does (its own short gradient run that seeds the
    blocks, the rounds, the pricing and the certificate).
Adam and SGD (momentum 0.9)
    torch (``torch==2.13.0``, the "bench" extra), CPU, float64, ``torch.set_num_threads(1)``,
    full batch, a fixed number of steps (``--steps``, default 2000), constant step size.
    Initialisation: PyTorch's default for a bias-free ``nn.Linear`` (Kaiming uniform with
    ``a = sqrt(5)``, i.e. ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``) per layer: W1 fan_in d,
    w2 fan_in m (depth 2) or m1 (depth 3), w3 fan_in K; at depth 3 each W1_k is then
    scaled to ``||W1_k||_F = 1`` and renormalised after every step (projected gradient).
    Restart r draws its initial weights from torch seed ``1000 * --seed + r``: Adam and
    SGD, and every learning rate, start restart r from the same weights.

    Learning rates: Adam ``--adam-lrs`` (default 3e-4 ... 1e-1); SGD ``c / L`` for ``c`` in
    ``--sgd-scales`` (default 1e-3 ... 1) with ``L = ||X||_2^2`` (squared spectral norm of
    the data, the Lipschitz constant of the squared loss of a linear model; the losses are
    sums, so a good SGD step shrinks with n).  Selection: every learning rate runs
    restarts ``0 .. --grid-restarts - 1`` (default 1); the one with the lowest median final
    objective (a failed run counts as +inf) is chosen per method and runs the remaining
    restarts up to ``--restarts`` (default 10).  With ``--grid-restarts`` equal to
    ``--restarts`` every learning rate runs every restart.

    A run records its objective at every step (computed by the forward pass, before the
    step; the last entry after the last step), its wall time (the training loop only),
    the ``(time, objective)`` trajectory every ``--record-every`` steps, its final
    objective and the objective of its best iterate, both evaluated again with
    admmrelu's ``TwoLayerReLUNetwork`` / ``ThreeLayerReLUNetwork`` in float64 (so all
    methods are scored by the same code).  A run whose objective becomes NaN or infinite
    stops there and counts as failed ("diverged"): it is left out of the medians' finite
    values (counted as +inf) and of the best values.

Instances (``--list``)
----------------------
``teacher<depth>-<n>x<d>[-w<width>]``
    ``_datasets.teacher_data``: X = [N(0, I)^(d-1), 1] (d counts the ones column), y a
    random ReLU teacher of that depth (5 neurons or sub-networks, width ``w``) plus
    N(0, 0.1^2) noise; solved at the teacher's depth.  Listed: teacher2-1000x20,
    teacher2-5000x50, teacher3-1000x20-w2; any other size can be named.
UCI (``_datasets.UCI_TABLE1``)
    the six data sets of Table 1 of Ergen & Pilanci (2021) from ``--data-dir``/uci
    (default ``../shared/data`` beside the repository): full data, features as shipped
    (z-scored) plus a ones column, two classes -> -1 / +1, more -> class index.  Solved at
    each depth of ``--depth`` (default both; depth 3 with width ``--width``, default 2);
    the case is named ``<data set>-<depth>L``.  Skipped with a message when the folder is
    missing.

beta = ``--beta-frac`` (default 0.1) x beta_max, where beta_max is that of 200 sampled
blocks of the case's depth (and width): ``ar.ConvexReLUProblem(X, y, 1.0,
ar.sample_arrangements(X, 200, depth, width, seed=0)).beta_max`` (the smallest beta at
which zero is optimal over those blocks).  Widths of the non-convex networks:
``--neurons`` (m, default 400) at depth 2, ``--subnets`` (K, default 100) sub-networks of
the case's width at depth 3.

Summary and target
------------------
best = the lowest objective of any iterate of any successful run of the method, over all
its learning rates (evaluated with admmrelu's network classes); median = the median final
objective of the restarts of the chosen learning rate.  ratio = admmrelu's network
objective / the best of Adam and SGD.  "vs median run" = admmrelu's wall time / the
median wall time of one baseline run; "vs all runs" = / the total wall time of every
baseline run of the case (the price of the grid search).  Target met: admmrelu's network
objective is at most the best baseline objective (``1 + TARGET_OBJECTIVE_RTOL``) and its
wall time at most the total of all baseline runs.

Usage (from the repository root, one thread)::

    OMP_WAIT_POLICY=PASSIVE python bench/vs_adam.py                    # every instance
    python bench/vs_adam.py --instances teacher2-1000x20 balloons --depth 3
    python bench/vs_adam.py --instances teacher2-5000x50 --restarts 5 --steps 1000 --merge
    python bench/vs_adam.py --no-torch --instances teacher2-200x5      # admmrelu only
    python bench/vs_adam.py --quick --no-torch --out /tmp/va            # tiny smoke test
    python bench/vs_adam.py --reuse-baselines                         # admmrelu again
    python bench/vs_adam.py --list

Without torch installed (CI) the baselines are skipped with a message, as with
``--no-torch``; without matplotlib, the plots.

Outputs under ``--out`` (default bench/results/vs_adam): ``results.md`` (the tables, also
printed), ``results.json`` (settings, machine, every run's record, admmrelu's record with
its rounds and network weights), ``trajectories.json`` (every run's ``(step, time,
objective)`` trajectory, compact, kept apart because it is large) and ``<case>.png``
(objective against wall time; skipped with a message when matplotlib is missing).
Rewritten after every case.  With ``--merge`` the cases already in ``results.json`` that
are not run now are kept (each case records the settings and commit it ran with), so
instances can be run separately, with different settings, into one report;
``--reuse-baselines`` also keeps a case's baseline runs where its beta and baseline
settings are unchanged and reruns admmrelu only (minutes instead of an hour after a
change of the solver).
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import importlib.util
import json
import math
import re
import statistics
import sys
import time
import traceback
import warnings
from importlib import metadata
from pathlib import Path

import numpy as np
from _common import (
    MISSING,
    RESULTS_DIR,
    fmt,
    jsonable,
    limit_threads,
    machine_info,
    markdown_table,
    write_atomic,
    write_results,
)
from _datasets import (
    DEFAULT_DATA_DIR,
    UCI_TABLE1,
    load_uci,
    read_uci_metadata,
    teacher_data,
    uci_available,
)

import admmrelu as ar

STEM = "results"
TRAJECTORIES = "trajectories.json"
TEACHER_INSTANCES = ("teacher2-1000x20", "teacher2-5000x50", "teacher3-1000x20-w2")
DEFAULT_INSTANCES = TEACHER_INSTANCES + UCI_TABLE1
_TEACHER_PATTERN = re.compile(r"^teacher([23])-(\d+)x(\d+)(?:-w(\d+))?$")

#: Learning rates of Adam, and of SGD in units of 1 / ||X||_2^2.
ADAM_LRS = (3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1)
SGD_SCALES = (1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0)
SGD_MOMENTUM = 0.9
METHODS = ("adam", "sgd")
METHOD_LABELS = {"adam": "Adam", "sgd": "SGD (momentum 0.9)"}

#: Blocks sampled for beta_max.
BETA_MAX_BLOCKS = 200
#: admmrelu's network objective may exceed the best baseline by this (relative) and meet
#: the target (rounding).
TARGET_OBJECTIVE_RTOL = 1e-6

#: --quick: a tiny teacher instance, few steps and restarts, one learning rate each.
QUICK = {
    "instances": ("teacher2-60x4",),
    "steps": 60,
    "restarts": 2,
    "grid_restarts": 1,
    "neurons": 20,
    "subnets": 8,
    "adam_lrs": (1e-2,),
    "sgd_scales": (1e-2,),
    "record_every": 10,
}
#: Untimed warm-up instance of each depth (numba's compilation, torch's first calls).
WARMUP = {2: "teacher2-40x3", 3: "teacher3-40x3-w2"}


# --------------------------------------------------------------------------- instances
def parse_teacher(name: str):
    """(depth, n, d, width) of a teacher instance name, or None if ``name`` is not one."""
    match = _TEACHER_PATTERN.match(name)
    if match is None:
        return None
    depth, n, d, width = match.groups()
    if depth == "2" and width is not None:
        raise ValueError(f"instance {name!r}: a depth-2 teacher has no width")
    return int(depth), int(n), int(d), int(width or 2) if depth == "3" else None


def cases(args) -> list[dict]:
    """The cases (instance, depth, width) to run, in the order of ``args.instances``."""
    out = []
    for name in args.instances:
        if parse_teacher(name) is not None:
            out.append(cases_from_name(name))
        elif name in UCI_TABLE1 or uci_available(name, args.data_dir):
            for depth in args.depth:
                out.append(
                    {
                        "name": f"{name}-{depth}L",
                        "instance": name,
                        "kind": "uci",
                        "depth": depth,
                        "width": args.width if depth == 3 else None,
                    }
                )
        else:
            raise ValueError(
                f"unknown instance {name!r}: not teacher<2|3>-<n>x<d>[-w<width>] and not a "
                f"data set under {args.data_dir}/uci"
            )
    return out


def load_case(case: dict, data_dir=DEFAULT_DATA_DIR, seed: int = 0):
    """X (ones column last) and y of ``case``."""
    if case["kind"] == "teacher":
        width = case["width"] or 2
        return teacher_data(case["depth"], case["n"], case["d"], seed=seed, width=width)
    X, y, _ = load_uci(case["instance"], data_dir)
    return X, y


def beta_max_of(X, y, depth: int, width) -> float:
    """beta_max of ``BETA_MAX_BLOCKS`` sampled blocks (seed 0) of the given depth."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # small data: fewer distinct blocks
        arr = ar.sample_arrangements(X, BETA_MAX_BLOCKS, depth=depth, width=width, seed=0)
    return float(ar.ConvexReLUProblem(X, y, 1.0, arr).beta_max)


def list_instances(args) -> str:
    rows = []
    for name in args.instances:
        teacher = parse_teacher(name)
        if teacher is not None:
            depth, n, d, width = teacher
            rows.append([name, "teacher", str(depth), str(n), str(d), fmt(width, "d"), "yes"])
            continue
        if not uci_available(name, args.data_dir):
            rows.append(
                [
                    name,
                    "uci",
                    ",".join(map(str, args.depth)),
                    MISSING,
                    MISSING,
                    MISSING,
                    f"no ({args.data_dir}/uci missing)",
                ]
            )
            continue
        meta = read_uci_metadata(name, args.data_dir)
        d = int(meta["n_entradas"]) + 1
        rows.append(
            [
                name,
                f"uci ({meta['n_clases']} classes)",
                ",".join(map(str, args.depth)),
                meta["n_patrons1"],
                str(d),
                str(args.width),
                "yes",
            ]
        )
    headers = ["instance", "kind", "depth", "n", "d (with ones)", "width", "available"]
    note = (
        "\nAny teacher<2|3>-<n>x<d>[-w<width>] can be named; UCI cases run at each "
        "--depth (width applies at depth 3)."
    )
    return markdown_table(headers, rows) + note


# ----------------------------------------------------------------------------- torch
def torch_available() -> bool:
    return importlib.util.find_spec("torch") is not None


def _torch():
    """torch, set to float64 and one thread (intra- and inter-op)."""
    import torch

    torch.set_default_dtype(torch.float64)
    torch.set_num_threads(1)
    if torch.get_num_interop_threads() != 1:
        try:
            torch.set_num_interop_threads(1)
        except RuntimeError:  # settable only before torch's first parallel work
            pass
    return torch


def _initial_weights(torch, d, depth, units, width, seed):
    """PyTorch's default nn.Linear initialisation per layer (module docstring)."""
    gen = torch.Generator().manual_seed(seed)

    def uniform(shape, fan_in):
        return (2.0 * torch.rand(shape, generator=gen) - 1.0) / math.sqrt(fan_in)

    if depth == 2:
        return [uniform((d, units), d), uniform((units,), units)]
    W1 = uniform((units, d, width), d)
    W1 /= W1.norm(dim=(1, 2), keepdim=True)
    return [W1, uniform((units, width), width), uniform((units,), units)]


def to_network(params, depth):
    """admmrelu's network class holding the (numpy copies of the) torch weights."""
    arrays = [p.detach().numpy().copy() for p in params]
    if depth == 2:
        return ar.TwoLayerReLUNetwork(*arrays)
    return ar.ThreeLayerReLUNetwork(*arrays)


def train_torch(X, y, beta, depth, units, width, method, lr, steps, seed, record_every):
    """One full-batch run of ``method`` ("adam" or "sgd"); returns its record."""
    torch = _torch()
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    n, d = X.shape
    params = _initial_weights(torch, d, depth, units, width, seed)
    for p in params:
        p.requires_grad_(True)

    def objective():
        if depth == 2:
            W1, w2 = params
            r = torch.relu(Xt @ W1) @ w2 - yt
            penalty = W1.square().sum() + w2.square().sum()
        else:
            W1, w2, w3 = params
            first = torch.relu((Xt @ W1.permute(1, 0, 2).reshape(d, -1)).view(n, units, width))
            r = torch.relu((first * w2).sum(dim=2)) @ w3 - yt
            penalty = w2.square().sum() + w3.square().sum()
        return 0.5 * r.square().sum() + 0.5 * beta * penalty

    if method == "adam":
        opt = torch.optim.Adam(params, lr=lr)
    else:
        opt = torch.optim.SGD(params, lr=lr, momentum=SGD_MOMENTUM)
    best_value, best_params, trajectory = math.inf, None, []
    status, value = "ok", math.nan
    start = time.perf_counter()
    for step in range(steps + 1):
        if step == steps:  # the objective after the last step
            with torch.no_grad():
                value = objective().item()
        else:
            opt.zero_grad(set_to_none=True)
            loss = objective()
            value = loss.item()
        if not math.isfinite(value):
            status = "diverged"
            trajectory.append((step, time.perf_counter() - start, None))
            break
        if value < best_value:
            best_value = value
            best_params = [p.detach().clone() for p in params]
        if step % record_every == 0 or step == steps:
            trajectory.append((step, time.perf_counter() - start, value))
        if step == steps:
            break
        loss.backward()
        opt.step()
        if depth == 3:
            with torch.no_grad():
                params[0].div_(params[0].norm(dim=(1, 2), keepdim=True).clamp_min(1e-300))
    wall = time.perf_counter() - start
    record = {
        "method": method,
        "lr": lr,
        "seed": seed,
        "status": status,
        "steps_run": step,
        "wall_s": wall,
        "final_objective": None,
        "best_objective": None,
        "torch_final_objective": value if status == "ok" else None,
        "trajectory": trajectory,
    }
    if status == "ok":
        final_net = to_network(params, depth)
        record["final_objective"] = final_net.objective(X, y, beta)
        record["best_objective"] = to_network(best_params, depth).objective(X, y, beta)
        record["torch_vs_numpy"] = abs(value - record["final_objective"]) / abs(value)
        if depth == 3:
            record["max_norm_deviation"] = float(
                np.max(np.abs(final_net.first_layer_norms() - 1.0), initial=0.0)
            )
    return record


def median_final(runs) -> float:
    """Median final objective, a failed run counting as +inf."""
    values = [r["final_objective"] if r["status"] == "ok" else math.inf for r in runs]
    return statistics.median_low(values) if values else math.nan


def run_baselines(X, y, beta, case, args, log) -> dict:
    """Every (method, learning rate) run of the case; the chosen learning rate per method."""
    depth = case["depth"]
    units = args.neurons if depth == 2 else args.subnets
    width = case["width"] or 1
    lipschitz = float(np.linalg.norm(X, 2) ** 2)
    grids = {"adam": list(args.adam_lrs), "sgd": [c / lipschitz for c in args.sgd_scales]}
    grid_restarts = min(args.grid_restarts, args.restarts)
    runs, chosen = [], {}

    def run(method, lr, restart):
        seed = 1000 * args.seed + restart
        record = train_torch(
            X, y, beta, depth, units, width, method, lr, args.steps, seed, args.record_every
        )
        record["restart"] = restart
        runs.append(record)
        log(
            f"  {method} lr={lr:.3g} restart {restart}: {record['status']}, "
            f"{fmt(record['final_objective'], '.6g')}, {record['wall_s']:.1f} s"
        )

    for method in METHODS:
        for lr in grids[method]:
            for restart in range(grid_restarts):
                run(method, lr, restart)
        by_lr = {
            lr: median_final([r for r in runs if r["method"] == method and r["lr"] == lr])
            for lr in grids[method]
        }
        best_lr = min(grids[method], key=lambda lr: by_lr[lr])
        chosen[method] = best_lr
        for restart in range(grid_restarts, args.restarts):
            run(method, best_lr, restart)
    return {
        "lipschitz": lipschitz,
        "grids": grids,
        "grid_restarts": grid_restarts,
        "restarts": args.restarts,
        "units": units,
        "width": width if depth == 3 else None,
        "chosen_lr": chosen,
        "runs": runs,
    }


# -------------------------------------------------------------------------- admmrelu
def _status_text(status) -> str:
    return str(getattr(status, "value", status))


def _network_weights(net) -> dict:
    names = ("W1", "w2") if net.depth == 2 else ("W1", "w2", "w3")
    return {
        name: {"shape": list(getattr(net, name).shape), "values": getattr(net, name)}
        for name in names
    }


def network_from_record(weights: dict, depth: int):
    """The network saved by :func:`_network_weights` (for the tests and later reading)."""
    arrays = [
        np.asarray(weights[name]["values"], dtype=np.float64).reshape(weights[name]["shape"])
        for name in (("W1", "w2") if depth == 2 else ("W1", "w2", "w3"))
    ]
    return ar.TwoLayerReLUNetwork(*arrays) if depth == 2 else ar.ThreeLayerReLUNetwork(*arrays)


def run_admmrelu(X, y, beta, case, args) -> dict:
    """One ``ar.solve_global`` and its record (module docstring)."""
    start = time.perf_counter()
    res = ar.solve_global(
        X,
        y,
        beta,
        depth=case["depth"],
        width=case["width"],
        time_limit=args.time_limit,
        seed=args.seed,
    )
    wall = time.perf_counter() - start
    net = res.network()
    network_objective = float(net.objective(X, y, beta))
    objective = float(res.objective)
    bound = float(res.global_lower_bound)
    bound_gap = (objective - bound) / objective if math.isfinite(bound) and objective else None
    rounds = [dict(r) for r in res.rounds]
    return {
        "status": _status_text(res.status),
        "objective": objective,
        "network_objective": network_objective,
        "objective_vs_network": abs(objective - network_objective) / max(abs(objective), 1e-300),
        "global_lower_bound": bound,
        "bound_relative_gap": bound_gap,
        "globally_optimal": bool(res.globally_optimal),
        "gap": float(res.gap),
        "relative_gap": float(res.relative_gap),
        "total_time": float(res.total_time),
        "wall_s": wall,
        "n_blocks": int(res.arrangements.n_blocks),
        "n_rounds": len(rounds),
        "rounds": rounds,
        "network": _network_weights(net),
    }


# --------------------------------------------------------------------------- warm-up
def warm_up(depths, use_torch, args) -> None:
    """Untimed tiny solves and runs of each depth (compilation, caches, first calls)."""
    for depth in sorted(set(depths)):
        case = cases_from_name(WARMUP[depth])
        X, y = load_case(case)
        beta = 0.1 * beta_max_of(X, y, depth, case["width"])
        ar.solve_global(X, y, beta, depth=depth, width=case["width"], time_limit=30.0, seed=0)
        if use_torch:
            units = 4
            for method in METHODS:
                train_torch(X, y, beta, depth, units, case["width"] or 1, method, 1e-3, 5, 0, 1)


def cases_from_name(name: str) -> dict:
    """The case record of the teacher instance ``name``."""
    depth, n, d, width = parse_teacher(name)
    return {
        "name": name,
        "instance": name,
        "kind": "teacher",
        "depth": depth,
        "width": width,
        "n": n,
        "d": d,
    }


# ---------------------------------------------------------------------------- summary
def _finite(values):
    return [v for v in values if v is not None and math.isfinite(v)]


def summarize(result: dict) -> dict:
    """Best and median objectives per method, ratio, time ratios, target."""
    admm, base = result.get("admmrelu") or {}, result.get("baselines")
    out = {
        "best": {},
        "median": {},
        "best_baseline": None,
        "ratio": None,
        "vs_median_run": None,
        "vs_all_runs": None,
        "objective_met": None,
        "time_met": None,
        "target_met": None,
    }
    if base is None:
        return out
    for method in METHODS:
        runs = [r for r in base["runs"] if r["method"] == method]
        best = _finite(r["best_objective"] for r in runs if r["status"] == "ok")
        out["best"][method] = min(best) if best else None
        chosen = [r for r in runs if r["lr"] == base["chosen_lr"].get(method)]
        med = median_final(chosen) if chosen else None
        out["median"][method] = med if med is not None and math.isfinite(med) else None
    bests = _finite(out["best"].values())
    out["best_baseline"] = min(bests) if bests else None
    walls = [r["wall_s"] for r in base["runs"]]
    if "network_objective" in admm:
        if out["best_baseline"] is not None and out["best_baseline"] > 0:
            out["ratio"] = admm["network_objective"] / out["best_baseline"]
            out["objective_met"] = admm["network_objective"] <= out["best_baseline"] * (
                1 + TARGET_OBJECTIVE_RTOL
            )
        else:  # every baseline run failed
            out["objective_met"] = True
        if walls:
            out["vs_median_run"] = admm["wall_s"] / statistics.median(walls)
            out["vs_all_runs"] = admm["wall_s"] / sum(walls)
            out["time_met"] = admm["wall_s"] <= sum(walls)
        out["target_met"] = bool(out["objective_met"] and out["time_met"])
    return out


# ----------------------------------------------------------------------------- report
def _short(commit: str) -> str:
    """A commit as 12 hex digits, keeping a "+dirty" mark."""
    return commit[:12] + ("+dirty" if commit.endswith("+dirty") else "")


def _yes_no(value) -> str:
    return MISSING if value is None else ("yes" if value else "no")


def case_markdown(result: dict) -> str:
    lines = [f"## {result['name']}", ""]
    desc = (
        f"n = {result.get('n')}, d = {result.get('d')} (ones column included), depth "
        f"{result['depth']}" + (f", width {result['width']}" if result["depth"] == 3 else "")
    )
    if "beta" in result:
        desc += f", beta_max = {result['beta_max']:.6g}, beta = {result['beta']:.6g}"
    lines.append(desc + ".")
    if result.get("error"):
        lines += ["", f"Failed: {result['error']}"]
    base = result.get("baselines")
    if base is not None:
        net = (
            f"{base['units']} neurons"
            if result["depth"] == 2
            else f"{base['units']} sub-networks of width {base['width']}"
        )
        lines += [
            "",
            f"Baselines: {net}, {result['settings']['steps']} full-batch steps, "
            f"||X||_2^2 = {base['lipschitz']:.4g}; every learning rate ran "
            f"{base['grid_restarts']} restart(s), the chosen one (*) {base['restarts']} "
            f"(run {base.get('date', result['settings']['date'])}"
            f"{', commit ' + _short(base['git_commit']) if base.get('git_commit') else ''}).",
            "",
        ]
        headers = [
            "method",
            "lr",
            "runs",
            "failed",
            "final median",
            "final best",
            "best iterate",
            "s/run (median)",
            "s (total)",
        ]
        rows = []
        for method in METHODS:
            for lr in base["grids"][method]:
                runs = [r for r in base["runs"] if r["method"] == method and r["lr"] == lr]
                ok = [r for r in runs if r["status"] == "ok"]
                finals = _finite(r["final_objective"] for r in ok)
                bests = _finite(r["best_objective"] for r in ok)
                med = median_final(runs)
                walls = [r["wall_s"] for r in runs]
                mark = " *" if base["chosen_lr"].get(method) == lr else ""
                rows.append(
                    [
                        METHOD_LABELS[method] + mark,
                        f"{lr:.3g}",
                        str(len(runs)),
                        str(len(runs) - len(ok)),
                        fmt(med, ".6g") if math.isfinite(med) else "inf",
                        fmt(min(finals) if finals else None, ".6g"),
                        fmt(min(bests) if bests else None, ".6g"),
                        f"{statistics.median(walls):.2f}",
                        f"{sum(walls):.1f}",
                    ]
                )
        lines.append(markdown_table(headers, rows))
    admm = result.get("admmrelu")
    if admm is not None:
        settings = result.get("settings") or {}
        limit = fmt(settings.get("time_limit"), "g")
        when = f", run {settings['date']}" if settings.get("date") else ""
        commit = f", commit {_short(settings['git_commit'])}" if settings.get("git_commit") else ""
        lines += ["", f"admmrelu (`ar.solve_global`, time_limit {limit}{when}{commit}):", ""]
        if "objective" not in admm:
            lines.append(f"failed: {admm.get('status')}")
        else:
            headers = [
                "objective",
                "network objective",
                "global lower bound",
                "(obj - lb) / obj",
                "globally optimal",
                "status",
                "rel gap (blocks)",
                "time (s)",
                "total_time (s)",
                "blocks",
                "rounds",
            ]
            row = [
                f"{admm['objective']:.8g}",
                f"{admm['network_objective']:.8g}",
                fmt(admm["global_lower_bound"], ".8g"),
                fmt(admm["bound_relative_gap"], ".2e"),
                _yes_no(admm["globally_optimal"]),
                admm["status"],
                fmt(admm["relative_gap"], ".1e"),
                f"{admm['wall_s']:.2f}",
                f"{admm['total_time']:.2f}",
                str(admm["n_blocks"]),
                str(admm["n_rounds"]),
            ]
            lines.append(markdown_table(headers, [row]))
    return "\n".join(lines)


def summary_markdown(results: list[dict]) -> str:
    headers = [
        "case",
        "beta",
        "Adam best",
        "Adam median",
        "SGD best",
        "SGD median",
        "admmrelu",
        "lower bound",
        "ratio",
        "admmrelu s",
        "vs median run",
        "vs all runs",
        "target met",
    ]
    rows = []
    for r in results:
        s, admm = r["summary"], r.get("admmrelu") or {}
        rows.append(
            [
                r["name"],
                fmt(r.get("beta"), ".4g"),
                fmt(s["best"].get("adam"), ".6g"),
                fmt(s["median"].get("adam"), ".6g"),
                fmt(s["best"].get("sgd"), ".6g"),
                fmt(s["median"].get("sgd"), ".6g"),
                fmt(admm.get("network_objective"), ".6g"),
                fmt(admm.get("global_lower_bound"), ".6g"),
                fmt(s["ratio"], ".6f"),
                fmt(admm.get("wall_s"), ".2f"),
                fmt(s["vs_median_run"], ".2f"),
                fmt(s["vs_all_runs"], ".3f"),
                _yes_no(s["target_met"]),
            ]
        )
    return markdown_table(headers, rows)


def _settings_line(results) -> str:
    """The baselines' settings: the learning-rate grids, then steps and restarts, each
    once if every case shares them, else with the cases of each value."""
    ran = [r for r in results if (r.get("settings") or {}).get("torch")]
    if not ran:
        return "baselines not run"

    def grouped(describe):
        groups = {}
        for r in ran:
            groups.setdefault(describe(r["settings"]), []).append(r["name"])
        if len(groups) == 1:
            return next(iter(groups))
        return "; ".join(f"{text} ({', '.join(names)})" for text, names in groups.items())

    def grids(s):
        adam = ", ".join(f"{v:g}" for v in s["adam_lrs"])
        sgd = ", ".join(f"{v:g}" for v in s["sgd_scales"])
        return f"Adam lrs {adam}; SGD (momentum 0.9) lrs c / ||X||_2^2 for c in {sgd}"

    def runs(s):
        return (
            f"{s['steps']} full-batch steps, every lr {s['grid_restarts']} restart(s), the "
            f"chosen one {s['restarts']}"
        )

    return f"baselines: {grouped(grids)}; {grouped(runs)}"


def markdown(results, machine, settings) -> str:
    beta_fracs = sorted({(r.get("settings") or {}).get("beta_frac") for r in results} - {None})
    time_limits = sorted(
        {fmt((r.get("settings") or {}).get("time_limit"), "g") for r in results if "beta" in r}
    )
    header = (
        f"{machine['cpu_model']}, 1 thread (BLAS, numba, torch {machine['versions']['torch']}"
        f" in float64), commit {machine['git_commit']} (latest run); beta = "
        f"{', '.join(f'{v:g}' for v in beta_fracs)} beta_max (beta_max of "
        f"{BETA_MAX_BLOCKS} sampled blocks); {_settings_line(results)}; admmrelu time_limit "
        f"{', '.join(time_limits)}.  best = lowest objective of any "
        "iterate of any successful run (all learning rates); median = median final "
        "objective at the chosen learning rate; ratio = admmrelu's network objective / the "
        "best baseline; vs median run / vs all runs = admmrelu's wall time / one baseline "
        "run's median / all baseline runs' total; target met = ratio <= 1 "
        f"(+{TARGET_OBJECTIVE_RTOL:g}) and admmrelu's time <= all baseline runs'."
    )
    parts = [
        f"# admmrelu's global solve against Adam and SGD ({machine['date']})",
        "",
        header,
        "",
        "## Summary",
        "",
        summary_markdown(results),
    ]
    for r in results:
        parts += ["", case_markdown(r)]
    if not settings["torch"]:
        parts += ["", f"Baselines not run in the latest run ({settings['torch_note']})."]
    if settings.get("skipped"):
        parts += ["", "Skipped: " + "; ".join(settings["skipped"])]
    return "\n".join(parts)


# ------------------------------------------------------------------------------- plot
def _curves(result: dict):
    """The plot's curves: (label or None, times, objectives, style) per line."""
    colors = {"adam": "tab:blue", "sgd": "tab:orange"}
    curves = []
    base = result.get("baselines")
    for method in METHODS if base is not None else ():
        chosen = base["chosen_lr"].get(method)
        runs = [
            r
            for r in base["runs"]
            if r["method"] == method and r["lr"] == chosen and r["status"] == "ok"
        ]
        if not runs:
            continue
        best = min(runs, key=lambda r: r["best_objective"])
        for r in runs:
            pts = [(t, v) for _, t, v in r["trajectory"] if v is not None and t > 0]
            if pts:
                bold = r is best
                label = f"{METHOD_LABELS[method]}, lr {r['lr']:.3g}" if bold else None
                style = {"color": colors[method], "lw": 2.0 if bold else 0.6}
                style["alpha"] = 1.0 if bold else 0.5
                curves.append((label, *zip(*pts, strict=True), style))
    admm = result.get("admmrelu") or {}
    if "objective" in admm:
        pts = [
            (r["time"], r["objective"])
            for r in admm["rounds"]
            if r.get("time") is not None and r.get("objective") is not None and r["time"] > 0
        ]
        if pts:
            style = {"color": "tab:green", "marker": "o", "ms": 5, "lw": 1.0}
            curves.append(("admmrelu rounds", *zip(*pts, strict=True), style))
        style = {"color": "tab:green", "marker": "*", "ms": 14, "lw": 0}
        curves.append(("admmrelu network", (admm["wall_s"],), (admm["network_objective"],), style))
    return curves


def plot_case(result: dict, out_dir: Path) -> Path | None:
    """Objective against wall time (log-log) of every method on one case (left), and the
    excess over the lowest objective any method reached (right, log scale)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = _curves(result)
    if not curves:
        return None
    lowest = min(min(v) for _, _, v, _ in curves)
    fig, (ax, ax_excess) = plt.subplots(1, 2, figsize=(12, 4.5))
    for label, t, v, style in curves:
        ax.plot(t, v, label=label, **style)
        excess = [max((x - lowest) / abs(lowest), 1e-10) for x in v]
        ax_excess.plot(t, excess, **style)
    admm = result.get("admmrelu") or {}
    lb = admm.get("global_lower_bound")
    if lb is not None and math.isfinite(lb) and lb > 0:
        ax.axhline(lb, color="tab:green", ls="--", lw=1, label="admmrelu lower bound")
    for axis in (ax, ax_excess):
        axis.set_xscale("log")
        axis.set_yscale("log")
        axis.set_xlabel("wall time (s)")
        axis.grid(True, which="both", alpha=0.3)
    ax.set_ylabel("objective")
    ax_excess.set_ylabel(f"(objective - {lowest:.8g}) / {lowest:.8g}  (floor 1e-10)")
    ax.set_title(f"{result['name']} (beta = {fmt(result.get('beta'), '.3g')})")
    ax_excess.set_title("excess over the lowest objective reached")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = out_dir / f"{result['name']}.png"
    out_dir.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ------------------------------------------------------------------------------ main
def _floats(text):
    return tuple(float(v) for v in text.split(","))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--instances", nargs="+", default=None, help="instance names (--list); default: all"
    )
    parser.add_argument(
        "--depth",
        choices=("2", "3", "both"),
        default="both",
        help="depths of the UCI cases (teachers run at their own depth)",
    )
    parser.add_argument("--width", type=int, default=2, help="depth-3 width m1 of UCI cases")
    parser.add_argument("--beta-frac", type=float, default=0.1, help="beta / beta_max")
    parser.add_argument("--neurons", type=int, default=400, help="m of the depth-2 baselines")
    parser.add_argument("--subnets", type=int, default=100, help="K of the depth-3 baselines")
    parser.add_argument("--steps", type=int, default=2000, help="full-batch steps per run")
    parser.add_argument("--restarts", type=int, default=10, help="runs of the chosen lr")
    parser.add_argument(
        "--grid-restarts",
        type=int,
        default=1,
        help="runs of every lr (choosing the lr); = --restarts: all",
    )
    parser.add_argument("--adam-lrs", type=_floats, default=ADAM_LRS, help="comma-separated")
    parser.add_argument(
        "--sgd-scales",
        type=_floats,
        default=SGD_SCALES,
        help="SGD lr = scale / ||X||_2^2; comma-separated",
    )
    parser.add_argument("--record-every", type=int, default=20, help="trajectory stride")
    parser.add_argument(
        "--time-limit", type=float, default=None, help="time_limit of ar.solve_global (s)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--no-torch", action="store_true", help="admmrelu only")
    parser.add_argument("--no-plot", action="store_true")
    parser.add_argument(
        "--merge",
        action="store_true",
        help="keep the other cases of <out>/results.json (replace those run now)",
    )
    parser.add_argument(
        "--reuse-baselines",
        action="store_true",
        help="--merge, and reuse the saved baseline runs of a case where its beta and "
        "baseline settings are the same (rerun admmrelu only)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="defaults for a smoke test: tiny instance, few steps"
    )
    parser.add_argument("--list", action="store_true", help="print the instances and exit")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "vs_adam")
    args = parser.parse_args(argv)
    if args.quick:  # --quick changes the defaults; options given explicitly still win
        parser.set_defaults(**QUICK)
        args = parser.parse_args(argv)
    args.depth = (2, 3) if args.depth == "both" else (int(args.depth),)
    if args.instances is None:
        args.instances = DEFAULT_INSTANCES
    for name in (
        "steps",
        "restarts",
        "grid_restarts",
        "record_every",
        "neurons",
        "subnets",
        "width",
    ):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if not args.beta_frac > 0:
        parser.error("--beta-frac must be positive")
    return args


#: Settings that make two sets of baseline runs the same (``--reuse-baselines``).
BASELINE_KEYS = (
    "beta_frac",
    "seed",
    "steps",
    "restarts",
    "grid_restarts",
    "adam_lrs",
    "sgd_scales",
    "record_every",
)


def case_settings(args, use_torch: bool) -> dict:
    """The settings a case ran with (kept with the case: ``--merge`` mixes runs)."""
    out = {
        "beta_frac": args.beta_frac,
        "seed": args.seed,
        "time_limit": args.time_limit,
        "torch": use_torch,
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    if use_torch:
        out.update(
            steps=args.steps,
            restarts=args.restarts,
            grid_restarts=min(args.grid_restarts, args.restarts),
            adam_lrs=list(args.adam_lrs),
            sgd_scales=list(args.sgd_scales),
            record_every=args.record_every,
        )
    return out


def reusable_baselines(previous: dict | None, result: dict, args) -> dict | None:
    """``previous``'s baseline runs if they were made on the same problem (beta) with the
    settings asked for now, else None."""
    if not previous or not previous.get("baselines") or not previous.get("beta"):
        return None
    old, new = previous.get("settings") or {}, case_settings(args, True)
    if any(old.get(k) != new[k] for k in BASELINE_KEYS):
        return None
    units = args.neurons if result["depth"] == 2 else args.subnets
    if previous["baselines"]["units"] != units:
        return None
    if abs(previous["beta"] - result["beta"]) > 1e-9 * result["beta"]:  # BLAS rounding
        return None
    return previous["baselines"]


def run_case(case, args, use_torch, log, previous=None) -> dict:
    """Load, choose beta, run the baselines (or reuse ``previous``'s, with
    ``--reuse-baselines``) and admmrelu on one case."""
    result = {**case, "settings": case_settings(args, use_torch)}
    X, y = load_case(case, args.data_dir, args.seed)
    result["n"], result["d"] = X.shape
    result["beta_max"] = beta_max_of(X, y, case["depth"], case["width"])
    beta = result["beta"] = args.beta_frac * result["beta_max"]
    log(f"{case['name']}: n={X.shape[0]}, d={X.shape[1]}, beta={beta:.4g}")
    reused = reusable_baselines(previous, result, args) if args.reuse_baselines else None
    if reused is not None:
        log(f"{case['name']}: reusing the baseline runs of {reused.get('date')}")
        result["baselines"] = reused
        result["settings"] = case_settings(args, True)
    elif use_torch:
        if args.reuse_baselines:
            log(f"{case['name']}: no reusable baseline runs (other settings or beta): running")
        result["baselines"] = run_baselines(X, y, beta, case, args, log)
        result["baselines"]["date"] = result["settings"]["date"]
    try:
        result["admmrelu"] = run_admmrelu(X, y, beta, case, args)
    except Exception as err:  # a failed solve is a result, not the end of the benchmark
        traceback.print_exc(file=sys.stderr)
        result["admmrelu"] = {"status": f"failed: {type(err).__name__}: {err}"}
    admm = result["admmrelu"]
    log(
        f"{case['name']}: admmrelu {admm['status']}, {fmt(admm.get('network_objective'), '.8g')}"
        f", lower bound {fmt(admm.get('global_lower_bound'), '.8g')}, "
        f"{fmt(admm.get('wall_s'), '.2f')} s"
    )
    result["summary"] = summarize(result)
    return result


def _compact_trajectory(trajectory) -> dict:
    """(step, time, objective) triples as three lists; times to 4 digits, objectives 10."""
    steps, times, values = zip(*trajectory, strict=True) if trajectory else ((), (), ())
    return {
        "step": list(steps),
        "time": [float(f"{t:.4g}") for t in times],
        "objective": [None if v is None else float(f"{v:.10g}") for v in values],
    }


def _expand_trajectory(compact: dict) -> list:
    return [
        list(p) for p in zip(compact["step"], compact["time"], compact["objective"], strict=True)
    ]


def write_all(out_dir: Path, report: str, data: dict) -> tuple[Path, ...]:
    """``results.md``, ``results.json`` (the runs without their trajectories) and
    ``trajectories.json`` (compact: ``{"cases": {case: [run's {step, time, objective}]}}``,
    runs in the order of the case's ``baselines.runs``)."""
    cases_out, trajectories = [], {}
    for case in data["cases"]:
        base = case.get("baselines")
        if base:
            runs = base["runs"]
            trajectories[case["name"]] = [_compact_trajectory(r.get("trajectory")) for r in runs]
            stripped = [{k: v for k, v in r.items() if k != "trajectory"} for r in runs]
            case = {**case, "baselines": {**base, "runs": stripped}}
        cases_out.append(case)
    paths = write_results(out_dir, STEM, report, {**data, "cases": cases_out})
    path = out_dir / TRAJECTORIES
    text = json.dumps(jsonable({"cases": trajectories}), separators=(",", ":"), allow_nan=False)
    write_atomic(path, text + "\n")
    return (*paths, path)


def merge_cases(previous: list[dict], results: list[dict]) -> list[dict]:
    """``previous`` with the cases of ``results`` in their places, the new ones after."""
    new = {r["name"]: r for r in results}
    merged = [new.pop(r["name"], r) for r in previous]
    return merged + [r for r in results if r["name"] in new]


def load_previous(out_dir: Path, log) -> list[dict]:
    """The cases of ``<out_dir>/results.json`` with their runs' trajectories
    (``--merge``), or [] if there is none."""
    path = out_dir / f"{STEM}.json"
    if not path.exists():
        return []
    try:
        cases_ = json.loads(path.read_text(encoding="utf-8"))["cases"]
    except (OSError, ValueError, KeyError) as err:
        log(f"--merge: cannot read {path} ({err}); starting afresh")
        return []
    try:
        trajectories = json.loads((out_dir / TRAJECTORIES).read_text(encoding="utf-8"))["cases"]
    except (OSError, ValueError, KeyError):
        trajectories = {}
    for case in cases_:
        runs = (case.get("baselines") or {}).get("runs") or []
        saved = trajectories.get(case["name"]) or []
        for run, compact in zip(runs, saved, strict=False):
            if "trajectory" not in run and len(saved) == len(runs):
                run["trajectory"] = _expand_trajectory(compact)
    log(f"--merge: read {len(cases_)} case(s) of {path}")
    return cases_


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.list:
        print(list_instances(args))
        return 0

    def log(text):
        print(text, file=sys.stderr, flush=True)

    if not hasattr(ar, "solve_global"):
        log("admmrelu has no solve_global (this benchmark needs it)")
        return 2
    use_torch, torch_note = not args.no_torch, "--no-torch"
    if use_torch and not torch_available():
        use_torch, torch_note = False, "torch is not installed"
        log("torch is not installed: running admmrelu only (pip install -e '.[bench]')")
    skipped, todo = [], []
    for case in cases(args):
        if case["kind"] == "uci" and not uci_available(case["instance"], args.data_dir):
            message = f"{case['name']} (no {args.data_dir}/uci/{case['instance']})"
            if message not in skipped:
                log(f"skipping {message}")
                skipped.append(message)
            continue
        todo.append(case)
    plot = not args.no_plot
    if plot and importlib.util.find_spec("matplotlib") is None:
        log("matplotlib is not installed: no plots (pip install -e '.[bench]')")
        plot = False
    settings = {
        **{k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "torch": use_torch,
        "torch_note": None if use_torch else torch_note,
        "sgd_momentum": SGD_MOMENTUM,
        "beta_max_blocks": BETA_MAX_BLOCKS,
        "target_objective_rtol": TARGET_OBJECTIVE_RTOL,
        "skipped": skipped,
    }
    results, paths = [], ()
    previous = load_previous(args.out, log) if args.merge or args.reuse_baselines else []
    by_name = {r["name"]: r for r in previous}
    with limit_threads(1):
        machine = machine_info(1)
        for package in ("torch", "matplotlib"):
            try:
                machine["versions"][package] = metadata.version(package)
            except metadata.PackageNotFoundError:
                machine["versions"][package] = "not installed"
        if use_torch:
            _torch()
        warm_up([c["depth"] for c in todo], use_torch, args)
        for case in todo:
            try:
                result = run_case(case, args, use_torch, log, by_name.get(case["name"]))
                result["settings"]["git_commit"] = machine["git_commit"]
                base = result.get("baselines")
                if base is not None and "git_commit" not in base:
                    base["git_commit"] = machine["git_commit"]
            except Exception as err:  # e.g. a data file that does not parse
                traceback.print_exc(file=sys.stderr)
                result = {**case, "error": f"{type(err).__name__}: {err}", "admmrelu": None}
                result["summary"] = summarize(result)
            results.append(result)
            if plot and "beta" in result:
                try:
                    result["plot"] = str(plot_case(result, args.out))
                except Exception as err:  # a plot must not lose the numbers
                    log(f"{case['name']}: plot failed: {type(err).__name__}: {err}")
            merged = merge_cases(previous, results)
            report = markdown(merged, machine, settings)
            data = {
                "benchmark": "vs_adam",
                "settings": settings,
                "machine": machine,
                "cases": merged,
            }
            paths = write_all(args.out, report, data)
    if not results:
        log("no case ran")
        return 1
    print(report)
    log("wrote " + ", ".join(str(p) for p in paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
