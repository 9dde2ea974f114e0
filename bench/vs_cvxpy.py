"""admmrelu against cvxpy (Clarabel, ECOS, SCS) on the same convex programs.

What it measures
----------------
Each instance (synthetic data of ``_common.make_problem``: sampled blocks, beta = 0.1
beta_max) is solved by admmrelu's ADMM at ``--eps-rel`` and by cvxpy with Clarabel, ECOS
and SCS, one after the other in one process, all under ``--threads`` BLAS/numba threads.
The wall time of a solve is measured here with ``time.perf_counter()`` around
``prob.solve(...)``: end to end, with the model build, cvxpy's compilation, the backend,
the projection onto the cones, the polish and the certificate.  The result's own
setup/solve/polish/certificate times go into the JSON.  Every requested solver first
solves a tiny instance of each depth once, untimed, so that imports and first-call costs
are not charged to the first instance.  With ``--repeats R`` the ADMM solves each
instance R times and the run at the (lower) median wall time is reported (the cvxpy
solves run once: they take minutes).

Run it from the repository root::

    OMP_WAIT_POLICY=PASSIVE python bench/vs_cvxpy.py            # all instances (long)
    python bench/vs_cvxpy.py --quick --out /tmp/vsq              # tiny smoke test
    python bench/vs_cvxpy.py --instances 2L-n500-d20-P100 --solvers admm CLARABEL

Outputs
-------
The markdown table is printed and written, with the JSON of every solve (histories,
options, warnings, machine information), to ``<out>/vs_cvxpy.md`` and
``<out>/vs_cvxpy.json``; ``<out>/vs_cvxpy.png`` plots, one panel per instance, the
relative distance of the objective to the reference against wall time (log-log): the
ADMM's trace from its per-check history (x = setup time + history time) with a final
marker at (wall time, final value), and each cvxpy solve as one point.  The ADMM's trace
is evaluated at the unprojected iterate, which may violate the cones slightly and lie
*below* the reference, so the plot shows ``|objective - reference| / reference``,
clipped from below at 1e-12 (where the reference solve itself lies).  A dotted segment
joins the last check to the final marker: the polish and certificate.

Columns
-------
instance, solver, status
    ``status`` is the SolveResult's (``optimal`` means the solver's tolerances and the
    certified gap tolerance were met), ``skipped: <reason>`` or ``error: <exception>``;
    "(time limit)" marks a Clarabel or SCS solve stopped by ``--cvxpy-time-limit`` (SCS
    then reports ``optimal_inaccurate``, Clarabel ``max_iter_reached``).
wall (s)
    End-to-end wall time of the solve (the median run for the ADMM).
iterations
    ADMM iterations, or the backend's iteration count.
obj vs Clarabel
    ``(objective - objective_Clarabel) / objective_Clarabel``; every objective is that of
    a cone-feasible point, so a negative value means a better point than Clarabel's.
    "-" when Clarabel did not return a solution.
rel gap
    Certified relative gap ``(objective - dual bound) / objective``.
max viol, rel viol
    Largest cone violation ``max(0, -min G U)`` of the returned weights, absolute and
    relative to the scale of X and U (``prob.constraint_violation(U, relative=True)``).
speed-up
    Clarabel's wall time divided by this solve's ("-" without a Clarabel solution).

The reference objective of an instance (the plot's) is Clarabel's when Clarabel returned
a solution (status optimal or optimal_inaccurate, not stopped by the time limit), else
the lowest objective among the other solves that did.  "Clarabel" in the columns means
such a Clarabel solution.

Skip rule
---------
cvxpy's model has one cone row per (sample, neuron) of the blocks, each with d nonzeros,
and at depth 3 as many again for the second-layer cones: ``2 n P width d`` nonzeros at
depth 2, twice that at depth 3.  Clarabel's time and peak memory grew about linearly in
that count: 30 s and 650 MB at (500, 20, 100) on a 2-core machine, 110 s at (1000, 20,
200) (design.md §4), 440 s at (1000, 20, 200, width 2) where the rule predicts 480 s.
A cvxpy solve is skipped, with the reason in the status cell and the JSON, when
``SECONDS_PER_NONZERO`` x nonzeros exceeds ``--cvxpy-time-limit`` or
``BYTES_PER_NONZERO`` x nonzeros exceeds the available memory: at (5000, 50, 500) that
is about an hour and 90 GB.  The solves that do run are capped as well: Clarabel by its
``time_limit``, SCS by ``time_limit_secs`` (both set to ``--cvxpy-time-limit``; SCS did
not finish within 330 s at (1000, 20, 200)), ECOS, which has no time limit, by
``max_iters``.  The backends' setup and admmrelu's projection and certificate come on
top of these limits (SCS's setup is not counted in its own limit).
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import math
import statistics
import sys
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
    limit_threads,
    machine_info,
    make_problem,
    markdown_table,
    write_results,
)

STEM = "vs_cvxpy"
CVXPY_SOLVERS = ("CLARABEL", "ECOS", "SCS")
SOLVERS = ("admm", *CVXPY_SOLVERS)
DEFAULT_INSTANCES = (
    "2L-n500-d20-P100",
    "2L-n1000-d20-P200",
    "2L-n5000-d50-P500",
    "3L-n500-d20-P100-w2",
    "3L-n1000-d20-P200-w2",
    "3L-n500-d20-P100-w3",
)
QUICK_INSTANCES = ("2L-n100-d5-P10", "3L-n80-d5-P10-w2")
#: Untimed warm-up instance of each depth.
WARMUP_INSTANCES = {2: "2L-n40-d3-P4", 3: "3L-n40-d3-P4-w2"}

#: Clarabel's measured seconds and peak bytes per nonzero of the cone rows (docstring).
SECONDS_PER_NONZERO = 15e-6
BYTES_PER_NONZERO = 350
#: ECOS's iteration cap (its default: it has no time limit) and SCS's (its default).
ECOS_MAX_ITERS = 100
SCS_MAX_ITERS = 100_000

#: Statuses whose weights are a solution (to the solver's tolerances or relaxed ones).
SOLUTION_STATUSES = ("optimal", "optimal_inaccurate")
#: Backends capped by --cvxpy-time-limit (SCS reports a time-limited stop as
#: "optimal_inaccurate", Clarabel as "user_limit", i.e. max_iter_reached).
TIME_LIMITED = ("CLARABEL", "SCS")
#: Instance whose ADMM / Clarabel speed-up is the issue's target (>= 10x, aim 100x).
TARGET_INSTANCE = "2L-n1000-d20-P200"
TARGET_SPEEDUP = 10.0
#: Floor of the plotted relative objective distance (log scale).
PLOT_FLOOR = 1e-12


# ------------------------------------------------------------------------- skip rule
def cone_nonzeros(inst: Instance) -> int:
    """Nonzeros of the cone rows of cvxpy's model of ``inst`` (see the skip rule)."""
    return 2 * inst.size * (1 if inst.depth == 2 else 2)


def cvxpy_skip_reason(inst: Instance, time_limit: float) -> str | None:
    """Why cvxpy should not be run on ``inst``, or None when it should."""
    nonzeros = cone_nonzeros(inst)
    seconds = SECONDS_PER_NONZERO * nonzeros
    memory = BYTES_PER_NONZERO * nonzeros
    available = available_memory_bytes()
    if seconds > time_limit:
        return (
            f"{nonzeros:.2g} cone nonzeros: Clarabel estimated at {seconds:.0f} s > "
            f"--cvxpy-time-limit {time_limit:g} s"
        )
    if available is not None and memory > available:
        return (
            f"{nonzeros:.2g} cone nonzeros: Clarabel estimated at {memory / 1e9:.0f} GB > "
            f"{available / 1e9:.0f} GB available"
        )
    return None


def cvxpy_options(solver: str, time_limit: float) -> dict:
    """Caps passed to a cvxpy backend so that it cannot run forever."""
    if solver == "CLARABEL":
        return {"time_limit": time_limit}
    if solver == "ECOS":
        return {"max_iters": ECOS_MAX_ITERS}
    return {"max_iters": SCS_MAX_ITERS, "time_limit_secs": time_limit}


# ---------------------------------------------------------------------------- solves
def timed_solve(prob, options: dict) -> dict:
    """Solve ``prob`` with ``options`` and return the record of the solve.

    The record holds ``SolveResult.to_dict()``, the wall time, the relative violation and
    the warnings raised; an exception gives status ``error: ...`` (and its traceback on
    stderr) instead of stopping the benchmark.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        start = time.perf_counter()
        try:
            res = prob.solve(**options)
        except Exception as err:  # a failed backend is a result here, not a crash
            wall = time.perf_counter() - start
            traceback.print_exc(file=sys.stderr)
            record = {"status": f"error: {type(err).__name__}: {err}"}
        else:
            wall = time.perf_counter() - start
            record = res.to_dict()
            record["relative_violation"] = prob.constraint_violation(res.weights, relative=True)
    record["wall_time"] = wall
    record["warnings"] = [f"{w.category.__name__}: {w.message}" for w in caught]
    return record


def solve_admm(prob, eps_rel: float, repeats: int, time_limit: float) -> dict:
    """The ADMM's record: the run at the lower median wall time of ``repeats`` runs."""
    options = {"eps_rel": eps_rel, "time_limit": time_limit}
    runs = [timed_solve(prob, {"solver": "admm", **options}) for _ in range(repeats)]
    walls = [run["wall_time"] for run in runs]
    median = statistics.median_low(walls)
    record = runs[walls.index(median)]
    record["wall_times"] = walls
    record["options"] = options
    return record


def solve_cvxpy(prob, solver: str, skip_reason: str | None, time_limit: float) -> dict:
    """The record of a cvxpy solve with ``solver``, or of its skip."""
    if skip_reason is not None:
        return {"status": f"skipped: {skip_reason}", "skip_reason": skip_reason}
    options = cvxpy_options(solver, time_limit)
    record = timed_solve(prob, {"solver": "cvxpy", "cvxpy_solver": solver, **options})
    record["options"] = options
    record["time_limit_reached"] = solver in TIME_LIMITED and (
        record.get("solve_time", 0.0) >= time_limit
    )
    return record


def has_solution(rec: dict) -> bool:
    """True when the solve returned a solution: a solution status, not a time-limited stop."""
    return rec["status"] in SOLUTION_STATUSES and not rec.get("time_limit_reached", False)


def status_cell(rec: dict) -> str:
    """The status, marked when a backend stopped at its time limit."""
    return rec["status"] + (" (time limit)" if rec.get("time_limit_reached") else "")


def warm_up(instances, solvers) -> None:
    """Solve a tiny instance of each depth in ``instances`` once per solver, untimed."""
    for depth in sorted({inst.depth for inst in instances}):
        prob = make_problem(Instance.parse(WARMUP_INSTANCES[depth]), seed=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for solver in solvers:
                if solver == "admm":
                    prob.solve(solver="admm")
                else:
                    prob.solve(solver="cvxpy", cvxpy_solver=solver)


def run_instance(inst: Instance, args) -> dict:
    """Every requested solve of ``inst``, with its reference objective."""
    prob = make_problem(inst, args.seed)
    skip_reason = cvxpy_skip_reason(inst, args.cvxpy_time_limit)
    solves = {}
    for solver in args.solvers:
        print(f"{inst.name}: {solver} ...", file=sys.stderr)
        if solver == "admm":
            solves[solver] = solve_admm(prob, args.eps_rel, args.repeats, args.admm_time_limit)
        else:
            solves[solver] = solve_cvxpy(prob, solver, skip_reason, args.cvxpy_time_limit)
        wall = fmt(solves[solver].get("wall_time"), ".2f")
        print(f"{inst.name}: {solver}: {solves[solver]['status']}, {wall} s", file=sys.stderr)
    ref_solver, ref_objective = reference(solves)
    return {
        "name": inst.name,
        "depth": inst.depth,
        "n": inst.n,
        "d": inst.d,
        "P": inst.P,
        "width": inst.width,
        "n_blocks": prob.n_blocks,
        "beta": prob.beta,
        "cone_nonzeros": cone_nonzeros(inst),
        "reference": {"solver": ref_solver, "objective": ref_objective},
        "solves": solves,
    }


def reference(solves: dict) -> tuple[str | None, float | None]:
    """(solver, objective) of the reference: Clarabel's solution if there is one, else
    the lowest objective among the solves that returned a solution."""
    solved = {name: rec for name, rec in solves.items() if has_solution(rec)}
    if not solved:
        return None, None
    name = (
        "CLARABEL" if "CLARABEL" in solved else min(solved, key=lambda k: solved[k]["objective"])
    )
    return name, solved[name]["objective"]


# ---------------------------------------------------------------------------- report
def clarabel_solution(solves: dict) -> dict | None:
    """Clarabel's record when it returned a solution, else None."""
    rec = solves.get("CLARABEL")
    return rec if rec is not None and has_solution(rec) else None


def speedup(solves: dict, solver: str) -> float | None:
    """Clarabel's wall time over ``solver``'s (None without a Clarabel solution)."""
    clarabel, rec = clarabel_solution(solves), solves[solver]
    if clarabel is None or "objective" not in rec:
        return None
    return clarabel["wall_time"] / rec["wall_time"]


def table_row(name: str, solves: dict, solver: str) -> list[str]:
    """One row of the table (see the module docstring for the columns)."""
    rec, clarabel = solves[solver], clarabel_solution(solves)
    if "objective" not in rec:  # skipped or failed
        return [name, solver, rec["status"], fmt(rec.get("wall_time"), ".2f"), *[MISSING] * 6]
    diff = None
    if clarabel is not None:
        diff = (rec["objective"] - clarabel["objective"]) / clarabel["objective"]
    return [
        name,
        solver,
        status_cell(rec),
        fmt(rec["wall_time"], ".2f"),
        fmt(rec["iterations"], "d"),
        fmt(diff, "+.1e"),
        fmt(rec["relative_gap"], ".1e"),
        fmt(rec["max_violation"], ".1e"),
        fmt(rec["relative_violation"], ".1e"),
        fmt(speedup(solves, solver), ".1f"),
    ]


def target_line(results: list[dict]) -> str | None:
    """The issue's target, measured, when the target instance ran ADMM and Clarabel."""
    for result in results:
        if result["name"] == TARGET_INSTANCE and "admm" in result["solves"]:
            ratio = speedup(result["solves"], "admm")
            if ratio is None:
                return None
            verdict = "met" if ratio >= TARGET_SPEEDUP else "NOT met"
            return (
                f"Target at {TARGET_INSTANCE}: admmrelu at least {TARGET_SPEEDUP:g}x faster end "
                f"to end than cvxpy+Clarabel (aim 100x): {ratio:.1f}x, {verdict}."
            )
    return None


def markdown(results: list[dict], args, machine: dict) -> str:
    """The markdown report: settings line, table and target."""
    headers = [
        "instance",
        "solver",
        "status",
        "wall (s)",
        "iterations",
        "obj vs Clarabel",
        "rel gap",
        "max viol",
        "rel viol",
        "speed-up",
    ]
    rows = [table_row(r["name"], r["solves"], s) for r in results for s in r["solves"]]
    lines = [
        f"# admmrelu vs cvxpy ({machine['date']})",
        "",
        f"{machine['cpu_model']}, {args.threads} thread(s), eps_rel={args.eps_rel:g}, "
        f"seed {args.seed}, ADMM repeats {args.repeats}, cvxpy time limit "
        f"{args.cvxpy_time_limit:g} s, commit {machine['git_commit']}.",
        "",
        markdown_table(headers, rows),
    ]
    target = target_line(results)
    if target is not None:
        lines += ["", target]
    return "\n".join(lines)


# ------------------------------------------------------------------------------ plot
def relative_distance(objective, ref: float) -> np.ndarray:
    """``|objective - ref| / ref``, clipped from below at :data:`PLOT_FLOOR`."""
    return np.maximum(np.abs(np.asarray(objective, dtype=float) - ref) / ref, PLOT_FLOOR)


def plot_instance(ax, result: dict) -> None:
    """One panel: the ADMM's trace and final point, one point per cvxpy solve."""
    ref_solver, ref = result["reference"]["solver"], result["reference"]["objective"]
    ax.set_title(f"{result['name']} (reference: {ref_solver})", fontsize=9)
    if ref is None:
        ax.text(0.5, 0.5, "no reference objective", ha="center", transform=ax.transAxes)
        return
    for solver, rec in result["solves"].items():
        if "objective" not in rec:
            continue
        final = relative_distance(rec["objective"], ref)
        if solver == "admm":
            history = rec["history"]
            times = rec["setup_time"] + np.asarray(history["time"], dtype=float)
            trace = relative_distance(history["objective"], ref)
            (line,) = ax.plot(times, trace, lw=1)
            if len(times):  # the last check to the returned point: polish and certificate
                ax.plot(
                    [times[-1], rec["wall_time"]], [trace[-1], final], ":", color=line.get_color()
                )
            ax.plot(rec["wall_time"], final, "o", color=line.get_color(), label="admm")
        else:
            ax.plot(rec["wall_time"], final, "s", label=f"cvxpy+{solver}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("wall time (s)")
    ax.set_ylabel("|objective - reference| / reference")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=7)


def plot(results: list[dict], path: Path) -> Path | None:
    """Write the figure to ``path`` (None, with a note, when matplotlib is missing)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot (pip install matplotlib)", file=sys.stderr)
        return None
    cols = min(3, len(results))
    rows = math.ceil(len(results) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.5 * cols, 3.8 * rows), squeeze=False)
    for ax, result in zip(axes.flat, results, strict=False):
        plot_instance(ax, result)
    for ax in axes.flat[len(results) :]:
        ax.set_visible(False)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


# ------------------------------------------------------------------------------- CLI
def instance_arg(name: str) -> Instance:
    """argparse type of an instance name."""
    try:
        return Instance.parse(name)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def parse_args(argv=None):
    """Command-line options (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    which = parser.add_mutually_exclusive_group()
    which.add_argument(
        "--instances",
        nargs="+",
        type=instance_arg,
        metavar="NAME",
        help=f"instances such as 2L-n500-d20-P100 or 3L-n500-d20-P100-w2 "
        f"(default: {' '.join(DEFAULT_INSTANCES)})",
    )
    which.add_argument(
        "--quick", action="store_true", help=f"tiny instances: {' '.join(QUICK_INSTANCES)}"
    )
    parser.add_argument("--solvers", nargs="+", choices=SOLVERS, default=list(SOLVERS))
    parser.add_argument("--seed", type=int, default=0, help="seed of the data and blocks")
    parser.add_argument("--eps-rel", type=float, default=1e-6, help="ADMM eps_rel")
    parser.add_argument(
        "--admm-time-limit",
        type=float,
        default=600.0,
        help="seconds for each ADMM solve (its time_limit option; default 600)",
    )
    parser.add_argument(
        "--repeats", type=int, default=1, help="ADMM runs per instance (median reported)"
    )
    parser.add_argument("--threads", type=int, default=1, help="BLAS and numba threads")
    parser.add_argument(
        "--cvxpy-time-limit",
        type=float,
        default=600.0,
        metavar="SECONDS",
        help="skip cvxpy where expected to exceed it; cap Clarabel and SCS at it",
    )
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="output directory")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    names = QUICK_INSTANCES if args.quick else DEFAULT_INSTANCES
    args.instances = args.instances or [Instance.parse(name) for name in names]
    args.solvers = [s for s in SOLVERS if s in args.solvers]  # fixed order, no repeats
    return args


def main(argv=None) -> int:
    """Run the benchmark; 1 when a solve raised an exception, else 0."""
    args = parse_args(argv)
    with limit_threads(args.threads):
        machine = machine_info(args.threads)
        warm_up(args.instances, args.solvers)
        results = [run_instance(inst, args) for inst in args.instances]
    report = markdown(results, args, machine)
    print(report)
    settings = {**vars(args), "instances": [inst.name for inst in args.instances]}
    data = {
        "benchmark": STEM,
        "settings": {**settings, "out": str(args.out)},
        "skip_rule": {
            "seconds_per_nonzero": SECONDS_PER_NONZERO,
            "bytes_per_nonzero": BYTES_PER_NONZERO,
            "ecos_max_iters": ECOS_MAX_ITERS,
            "scs_max_iters": SCS_MAX_ITERS,
        },
        "target": target_line(results),
        "machine": machine,
        "instances": results,
    }
    paths = [*write_results(args.out, STEM, report, data), plot(results, args.out / f"{STEM}.png")]
    print("\nwrote " + ", ".join(str(p) for p in paths if p is not None), file=sys.stderr)
    failed = any(
        rec["status"].startswith("error") for r in results for rec in r["solves"].values()
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
