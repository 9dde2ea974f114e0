"""Whole ADMM solves per device: what the kernels change end to end.

Each instance (``_common.make_problem``: synthetic data, sampled blocks, beta = 0.1
beta_max) is solved by ``prob.solve(device=..., dtype=...)`` at the default tolerances on
every device of ``admmrelu.kernels.available_devices()`` (the numpy reference kernels,
numba, and cupy where a GPU is usable), ``--repeats`` times; the table gives the median
wall time and its split (setup, iterations, polish, certificate), the status, the
iterations and the certified relative gap, and the speed-up over numpy in float64.

Usage::

    OMP_WAIT_POLICY=PASSIVE python bench/devices.py --instances 2L-n1000-d20-P200 \\
        3L-n500-d20-P100-w2 --repeats 3 --out bench/results/devices
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import sys
import time
from pathlib import Path

from _common import (
    RESULTS_DIR,
    Instance,
    fmt,
    limit_threads,
    machine_info,
    make_problem,
    markdown_table,
    write_results,
)
from admmrelu.kernels import available_devices

STEM = "devices"
DEFAULT_INSTANCES = ("2L-n1000-d20-P200", "3L-n500-d20-P100-w2")
QUICK_INSTANCES = ("2L-n60-d4-P8", "3L-n40-d3-P5-w2")


def solve_once(prob, device: str, dtype: str) -> dict:
    """One timed solve and the figures of its result."""
    start = time.perf_counter()
    res = prob.solve(device=device, dtype=dtype)
    total = time.perf_counter() - start
    return {
        "status": str(res.status),
        "iterations": res.iterations,
        "relative_gap": res.gap / abs(res.objective),
        "objective": res.objective,
        "total_s": total,
        "setup_s": res.setup_time,
        "iterations_s": res.solve_time,
        "polish_s": res.polish_time,
        "certificate_s": res.certificate_time,
    }


def run(instances, devices, dtypes, repeats: int) -> list[dict]:
    """Median-of-``repeats`` records (the run of median total time) per instance, device
    and dtype, after one untimed solve per device (compilation, caches)."""
    rows = []
    for inst in instances:
        prob = make_problem(inst, seed=0)
        for device in devices:
            for dtype in dtypes:
                print(f"{inst.name} {device} {dtype}", file=sys.stderr)
                prob.solve(device=device, dtype=dtype, max_iter=20)
                runs = sorted(
                    (solve_once(prob, device, dtype) for _ in range(repeats)),
                    key=lambda r: r["total_s"],
                )
                median = runs[len(runs) // 2]
                median["totals_s"] = [r["total_s"] for r in runs]
                rows.append({"instance": inst.name, "device": device, "dtype": dtype, **median})
    return rows


def markdown(rows: list[dict], args, machine: dict) -> str:
    reference = {
        r["instance"]: r["total_s"]
        for r in rows
        if (r["device"], r["dtype"]) == ("numpy", "float64")
    }
    headers = [
        "instance",
        "device",
        "dtype",
        "status",
        "iterations",
        "rel. gap",
        "total (s)",
        "setup",
        "iterations (s)",
        "polish",
        "certificate",
        "vs numpy f64",
    ]
    table = [
        [
            r["instance"],
            r["device"],
            r["dtype"],
            r["status"],
            str(r["iterations"]),
            fmt(r["relative_gap"], ".1e"),
            fmt(r["total_s"], ".2f"),
            fmt(r["setup_s"], ".2f"),
            fmt(r["iterations_s"], ".2f"),
            fmt(r["polish_s"], ".2f"),
            fmt(r["certificate_s"], ".2f"),
            fmt(reference[r["instance"]] / r["total_s"], ".2f"),
        ]
        for r in rows
    ]
    return "\n".join(
        [
            f"# admmrelu solves per device ({machine['date']})",
            "",
            f"{machine['cpu_model']}, {args.threads} thread(s), median of {args.repeats} "
            f"solves, commit {machine['git_commit']}.",
            "",
            markdown_table(headers, table),
        ]
    )


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--instances", nargs="+", type=Instance.parse, metavar="NAME")
    which.add_argument("--quick", action="store_true", help=" ".join(QUICK_INSTANCES))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="BLAS and numba threads")
    parser.add_argument("--dtype", choices=("float64", "float32", "both"), default="both")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / STEM)
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    names = QUICK_INSTANCES if args.quick else DEFAULT_INSTANCES
    args.instances = args.instances or [Instance.parse(n) for n in names]
    both = ("float64", "float32")
    args.dtypes = both if args.dtype == "both" else (args.dtype,)
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    with limit_threads(args.threads):
        machine = machine_info(args.threads)
        rows = run(args.instances, available_devices(), args.dtypes, args.repeats)
    report = markdown(rows, args, machine)
    print(report)
    settings = {
        **vars(args),
        "instances": [i.name for i in args.instances],
        "dtypes": list(args.dtypes),
        "out": str(args.out),
    }
    data = {"benchmark": STEM, "settings": settings, "machine": machine, "solves": rows}
    paths = write_results(args.out, STEM, report, data)
    print("\nwrote " + ", ".join(str(p) for p in paths), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
