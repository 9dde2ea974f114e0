"""Throughput of admmrelu's kernels on every backend, against the machine's own GEMM.

What it measures
----------------
Section "kernels": for every backend of ``admmrelu.kernels.available_devices()`` (numpy
reference, numba, and cupy where a GPU is usable), the median wall time of each kernel
over ``--repeats`` calls (after one untimed call: numba's compilation, cupy's kernel
builds), on random operands of each shape (masks drawn with probability 1/2).  A cupy
timing ends with a synchronisation of the current stream.

* Masked products (forward, adjoint, cone, cone_adjoint, reflected_cone_adjoint,
  relaxed_slack_update): "baseline" is the plain GEMM with the kernel's operand shapes
  on the same backend (``X @ W^T`` with W (P m1, d) or (2 P m1, d); ``M^T X`` with M
  (n, P m1) or (n, 2 P m1)), "ratio" is GEMM time / kernel time (the target is >= 0.5),
  and "rate" is GFLOP/s counting the GEMM's 2 n d (P m1 or 2 P m1) flops.
* Elementwise kernels (block_soft_threshold on (2, P, m1, d); loss_coupled_projection on
  (n, 2P) rows): "baseline" is a plain copy of the same input arrays, "ratio" copy time /
  kernel time, and "rate" GB/s of the bytes read and written once.

Section "iteration" (:func:`iteration_section`): one ADMM iteration per backend and dtype
on each shape's synthetic problem (``_common.make_problem``).  Section "fashion"
(``--fashion``, GPU only): the two-layer n=60000, d=784, P=512 program solved to a 1e-4
relative gap, the issue's target being <= 60 s including setup.

Every timing runs under ``--threads`` BLAS and numba threads (threadpoolctl), with
``OMP_WAIT_POLICY=PASSIVE`` set before numpy is imported.
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from _common import (
    RESULTS_DIR,
    Instance,
    fmt,
    limit_threads,
    machine_info,
    markdown_table,
    write_results,
)
from _iteration import fashion_solve, iteration_rows
from admmrelu.kernels import available_devices, get_backend

STEM = "kernels"
#: Named sets of shapes (``--shapes``); an instance name of ``_common`` also works.
SHAPES = {
    "small": ("2L-n1000-d20-P200", "3L-n1000-d20-P200-w2"),
    "large": ("2L-n5000-d50-P500",),
    "default": ("2L-n1000-d20-P200", "3L-n1000-d20-P200-w2", "2L-n5000-d50-P500"),
}
QUICK_SHAPES = ("2L-n40-d5-P6", "3L-n30-d4-P5-w2")
QUICK_REPEATS = 3
#: Kernels whose baseline is a GEMM: (operand of the GEMM, copies of the blocks it has).
MASKED = {
    "forward": ("X W^T", 1),
    "adjoint": ("M^T X", 1),
    "cone": ("X W^T", 2),
    "cone_adjoint": ("M^T X", 2),
    "reflected_cone_adjoint": ("M^T X", 2),
    "relaxed_slack_update": ("X W^T", 2),
}
ELEMENTWISE = ("block_soft_threshold", "loss_coupled_projection")
#: The GEMM ratio the masked kernels aim at.
TARGET_RATIO = 0.5


# ------------------------------------------------------------------------- operands
def operands(inst: Instance, dtype, seed: int) -> dict:
    """Random operands of every kernel for ``inst`` (host arrays of ``dtype``)."""
    rng = np.random.default_rng(seed)
    n, d, P, m1 = inst.n, inst.d, inst.P, inst.width
    depth3 = inst.depth == 3
    R = m1 + depth3

    def normal(*shape):
        return rng.standard_normal(shape).astype(dtype)

    return {
        "X": normal(n, d),
        "masks1": rng.random((n, P, m1)) < 0.5,
        "signs": rng.choice([-1.0, 1.0], size=(P, m1)).astype(dtype),
        "masks2": rng.random((n, P)) < 0.5 if depth3 else None,
        "U": normal(2, P, m1, d),
        "r": normal(n),
        "L": normal(n, 2, P, R),
        "w_s": normal(n, 2, P, R),
        "q": np.abs(normal(n, 2, P)) if depth3 else None,
        "v": normal(2, P, m1, d),
        "a": normal(n, 2 * P),
        "coef": normal(n, 2 * P) * (rng.random((n, 2 * P)) < 0.5),
        "y": normal(n),
        "theta": normal(n),
    }


def kernel_call(backend, name: str, ops: dict):
    """A no-argument callable running kernel ``name`` of ``backend`` on ``ops``."""
    head = (ops["X"], ops["masks1"], ops["signs"], ops["masks2"])
    calls = {
        "forward": lambda: backend.forward(*head, ops["U"]),
        "adjoint": lambda: backend.adjoint(*head, ops["r"]),
        "cone": lambda: backend.cone(*head, ops["U"]),
        "cone_adjoint": lambda: backend.cone_adjoint(*head, ops["L"]),
        "reflected_cone_adjoint": lambda: backend.reflected_cone_adjoint(
            *head, ops["w_s"], ops["q"]
        ),
        "relaxed_slack_update": lambda: backend.relaxed_slack_update(
            *head, ops["U"], ops["w_s"], ops["q"], 1.6
        ),
        "block_soft_threshold": lambda: backend.block_soft_threshold(ops["v"], 0.1),
        "loss_coupled_projection": lambda: backend.loss_coupled_projection(
            ops["a"], ops["coef"], ops["y"], 0.5, ops["theta"]
        ),
    }
    return calls[name]


def baseline_call(backend, name: str, ops: dict):
    """(callable, work): the kernel's plain GEMM and its flops, or the copy of its inputs
    and the bytes it reads and writes once."""
    xp = backend.xp
    X = ops["X"]
    n, d = X.shape
    if name in MASKED:
        form, copies = MASKED[name]
        _, P, m1 = ops["masks1"].shape
        cols = copies * P * m1
        if form == "X W^T":
            W = xp.ones((cols, d), dtype=X.dtype)
            return (lambda: X @ W.T), 2 * n * d * cols
        M = xp.ones((n, cols), dtype=X.dtype)
        return (lambda: M.T @ X), 2 * n * d * cols
    inputs = (
        [ops["v"]]
        if name == "block_soft_threshold"
        else [ops[k] for k in "a coef y theta".split()]
    )
    moved = 2 * sum(a.nbytes for a in inputs)  # read the inputs, write as much
    return (lambda: [a.copy() for a in inputs]), moved


# --------------------------------------------------------------------------- timing
def synchronizer(backend):
    """A callable that waits for the backend's queued work (a no-op on the CPU)."""
    if backend.device != "gpu":
        return lambda: None
    import cupy

    return lambda: cupy.cuda.get_current_stream().synchronize()


def median_time(fn, sync, repeats: int) -> float:
    """Median seconds of ``repeats`` calls of ``fn`` after one untimed call."""
    fn()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def kernels_section(args) -> list[dict]:
    """One record per (shape, dtype, backend, kernel); see the module docstring."""
    rows = []
    for inst in args.shapes:
        for dtype in args.dtypes:
            host = operands(inst, dtype, args.seed)
            for device in available_devices():
                backend = get_backend(device)
                ops = {k: None if v is None else backend.asarray(v) for k, v in host.items()}
                sync = synchronizer(backend)
                for name in (*MASKED, *ELEMENTWISE):
                    print(f"{inst.name} {dtype.__name__} {backend.name}: {name}", file=sys.stderr)
                    seconds = median_time(kernel_call(backend, name, ops), sync, args.repeats)
                    base_fn, work = baseline_call(backend, name, ops)
                    base = median_time(base_fn, sync, args.repeats)
                    rows.append(
                        {
                            "shape": inst.name,
                            "dtype": dtype.__name__,
                            "backend": backend.name,
                            "kernel": name,
                            "seconds": seconds,
                            "baseline": "gemm" if name in MASKED else "copy",
                            "baseline_seconds": base,
                            "ratio": base / seconds,
                            "rate": work / seconds / 1e9,
                            "rate_unit": "GFLOP/s" if name in MASKED else "GB/s",
                        }
                    )
    return rows


def iteration_section(args) -> list[dict]:
    """One ADMM iteration (``admmrelu.admm._Splitting.step``) of each shape's synthetic
    problem with numpy vs numba vs cupy, per dtype (see :mod:`_iteration`); its "vs
    numpy" is the numpy backend's time in the same dtype over this one's."""
    rows = iteration_rows(
        args.shapes,
        available_devices(),
        [t.__name__ for t in args.dtypes],
        args.iteration_repeats,
        5,
    )
    reference = {
        (r["instance"], r["dtype"]): r["iteration_s"] for r in rows if r["device"] == "numpy"
    }
    return [
        {
            "shape": r["instance"],
            "dtype": r["dtype"],
            "backend": r["backend"],
            "iteration (ms)": fmt(1e3 * r["iteration_s"], ".3f"),
            "vs numpy": fmt(reference[r["instance"], r["dtype"]] / r["iteration_s"], ".2f"),
            "setup (s)": fmt(r["setup_s"], ".3f"),
            "iteration_s": r["iteration_s"],
        }
        for r in rows
    ]


def fashion_section(args) -> list[dict]:
    """The issue's GPU target, when ``--fashion`` is given: the two-layer Fashion-MNIST-size
    program solved to a 1e-4 relative gap on the GPU (:func:`_iteration.fashion_solve`)."""
    if not args.fashion:
        return []
    if "gpu" not in available_devices():
        print("--fashion needs a usable GPU; skipped", file=sys.stderr)
        return []
    return [fashion_solve("gpu", dtype) for dtype in ("float32", "float64")]


# ---------------------------------------------------------------------------- report
def markdown(rows, iteration, fashion, args, machine: dict) -> str:
    """The markdown report: settings line, the kernels table (with numpy's time as the
    reference of each row's speed-up), and the iteration rows when there are any."""
    reference = {
        (r["shape"], r["dtype"], r["kernel"]): r["seconds"]
        for r in rows
        if r["backend"] == "numpy"
    }
    headers = [
        "shape",
        "dtype",
        "backend",
        "kernel",
        "time (ms)",
        "vs numpy",
        "baseline (ms)",
        "ratio",
        "rate",
        "unit",
    ]
    table = [
        [
            r["shape"],
            r["dtype"],
            r["backend"],
            r["kernel"],
            fmt(1e3 * r["seconds"], ".3f"),
            fmt(
                reference.get((r["shape"], r["dtype"], r["kernel"]), np.nan) / r["seconds"], ".1f"
            ),
            f"{r['baseline']} {1e3 * r['baseline_seconds']:.3f}",
            fmt(r["ratio"], ".2f"),
            fmt(r["rate"], ".1f"),
            r["rate_unit"],
        ]
        for r in rows
    ]
    lines = [
        f"# admmrelu kernels ({machine['date']})",
        "",
        f"{machine['cpu_model']}, {args.threads} thread(s), median of {args.repeats} calls, "
        f"seed {args.seed}, commit {machine['git_commit']}.  ratio: GEMM (or copy) time / "
        f"kernel time, target >= {TARGET_RATIO:g} for the masked products.",
        "",
        "## kernels",
        "",
        markdown_table(headers, table),
    ]
    for title, records in (("iteration", iteration), ("fashion", fashion)):
        if records:
            keys = [k for k in records[0] if k != "iteration_s"]
            lines += [
                "",
                f"## {title}",
                "",
                markdown_table(keys, [[fmt_cell(r[k]) for k in keys] for r in records]),
            ]
    return "\n".join(lines)


def fmt_cell(value) -> str:
    """A table cell: floats in 4 significant digits, anything else as text."""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


# ------------------------------------------------------------------------------- CLI
def shape_arg(name: str) -> list[Instance]:
    """argparse type: a preset of :data:`SHAPES` or one instance name."""
    try:
        return [Instance.parse(s) for s in SHAPES.get(name, (name,))]
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"{err}; presets: {', '.join(SHAPES)}") from None


def parse_args(argv=None):
    """Command-line options (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    which = parser.add_mutually_exclusive_group()
    which.add_argument(
        "--shapes",
        nargs="+",
        type=shape_arg,
        metavar="NAME",
        help=f"presets ({', '.join(SHAPES)}; default: default) or instance names such as "
        "2L-n1000-d20-P200 and 3L-n1000-d20-P200-w2",
    )
    which.add_argument(
        "--quick",
        action="store_true",
        help=f"tiny shapes ({' '.join(QUICK_SHAPES)}), {QUICK_REPEATS} repeats",
    )
    parser.add_argument("--repeats", type=int, default=50, help="timed calls (median)")
    parser.add_argument("--threads", type=int, default=1, help="BLAS and numba threads")
    parser.add_argument("--dtype", choices=("float64", "float32", "both"), default="float64")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random operands")
    parser.add_argument(
        "--iteration-repeats", type=int, default=15, help="timed samples of 5 ADMM iterations"
    )
    parser.add_argument(
        "--fashion",
        action="store_true",
        help="also solve the Fashion-MNIST-size two-layer program on the GPU (n=60000, "
        "d=784, P=512, 1e-4 relative gap; target <= 60 s including setup)",
    )
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / STEM, help="output directory")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    if args.quick:
        args.shapes = [Instance.parse(s) for s in QUICK_SHAPES]
        args.repeats = min(args.repeats, QUICK_REPEATS)
        args.iteration_repeats = min(args.iteration_repeats, QUICK_REPEATS)
    else:
        args.shapes = [i for group in args.shapes or [shape_arg("default")] for i in group]
    both = ("float64", "float32")
    args.dtypes = [np.dtype(t).type for t in (both if args.dtype == "both" else (args.dtype,))]
    return args


def main(argv=None) -> int:
    """Run both sections, print the report and write it with the JSON."""
    args = parse_args(argv)
    with limit_threads(args.threads):
        machine = machine_info(args.threads)
        rows = kernels_section(args)
        iteration = iteration_section(args)
        fashion = fashion_section(args)
    report = markdown(rows, iteration, fashion, args, machine)
    print(report)
    settings = {
        **vars(args),
        "shapes": [inst.name for inst in args.shapes],
        "dtypes": [t.__name__ for t in args.dtypes],
        "out": str(args.out),
    }
    data = {
        "benchmark": STEM,
        "settings": settings,
        "devices": list(available_devices()),
        "machine": machine,
        "kernels": rows,
        "iteration": iteration,
        "fashion": fashion,
    }
    paths = write_results(args.out, STEM, report, data)
    print("\nwrote " + ", ".join(str(p) for p in paths), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
