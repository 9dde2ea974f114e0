"""Helpers shared by the benchmark scripts in bench/.

Thread control, the synthetic instances, machine information, markdown tables and the
atomic writing of results.  The scripts import this module as ``_common`` (they run as
``python bench/<script>.py``, so bench/ is on ``sys.path``); each script sets
``OMP_WAIT_POLICY`` before anything imports numpy.
"""

import contextlib
import datetime
import json
import math
import os
import platform
import re
import subprocess
import sys
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

import admmrelu as ar

#: Where the scripts write their outputs unless told otherwise.
RESULTS_DIR = Path(__file__).resolve().parent / "results"

#: Packages whose versions go into every results file.
VERSIONED_PACKAGES = (
    "admmrelu",
    "numpy",
    "scipy",
    "numba",
    "cvxpy",
    "clarabel",
    "ecos",
    "scs",
    "threadpoolctl",
    "matplotlib",
)

#: Number of neurons (depth 2) or sub-networks (depth 3) of the random teacher behind y.
TEACHER_UNITS = 8
#: Standard deviation of the noise added to the teacher's output.
NOISE_STD = 0.1

#: Table cell of a value that does not exist (solver skipped, no reference, ...).
MISSING = "-"

_NAME_PATTERN = re.compile(r"^([23])L-n(\d+)-d(\d+)-P(\d+)(?:-w(\d+))?$")


# ----------------------------------------------------------------------------- threads
@contextlib.contextmanager
def limit_threads(threads):
    """Limit BLAS/OpenMP (threadpoolctl) and numba to ``threads`` threads inside the block.

    On a 2-core machine oversubscribed BLAS threads made the masked products ~70x slower
    (design.md §3), so every benchmark runs under this limit.  ``OMP_WAIT_POLICY=PASSIVE``
    must be set by the script before numpy is imported; it cannot be changed here.
    """
    import numba

    previous = numba.get_num_threads()
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    try:
        with threadpool_limits(limits=threads):
            yield
    finally:
        numba.set_num_threads(previous)


# --------------------------------------------------------------------------- instances
@dataclass(frozen=True)
class Instance:
    """Size of one synthetic instance.

    ``name`` is ``"2L-n500-d20-P100"`` at depth 2 and ``"3L-n500-d20-P100-w2"`` at depth
    3 (w = width m1); :meth:`parse` reads such a name back, so any size can be named on a
    command line.
    """

    depth: int
    n: int
    d: int
    P: int
    width: int = 1

    @property
    def name(self) -> str:
        base = f"{self.depth}L-n{self.n}-d{self.d}-P{self.P}"
        return base if self.depth == 2 else f"{base}-w{self.width}"

    @property
    def size(self) -> int:
        """n * P * width * d: proportional to the work of one operator application."""
        return self.n * self.P * self.width * self.d

    @classmethod
    def parse(cls, name: str) -> "Instance":
        """The instance named ``name`` (raises ValueError for a malformed name)."""
        match = _NAME_PATTERN.match(name)
        if match is None:
            raise ValueError(
                f"instance name {name!r} is not of the form 2L-n<n>-d<d>-P<P> or "
                "3L-n<n>-d<d>-P<P>-w<width>"
            )
        depth, n, d, P, width = match.groups()
        if depth == "2" and width not in (None, "1"):
            raise ValueError(f"instance {name!r}: a two-layer instance has no width")
        return cls(int(depth), int(n), int(d), int(P), int(width or 1))


def make_data(inst: Instance, seed: int):
    """Synthetic regression data for ``inst`` (the feasibility study's, design.md §6).

    X has i.i.d. N(0, 1/d) entries, n rows and d columns, and **no bias column** (so the
    instances, and the timings of design.md §6, match).  y is a random teacher plus
    N(0, 0.1^2) noise: at depth 2, ``TEACHER_UNITS`` ReLU neurons ``(X w_k)_+`` with N(0, I)
    weights and random signs; at depth 3, ``TEACHER_UNITS`` sub-networks
    ``s_k ((X W_k)_+ v_k)_+`` of the instance's width, with N(0, 1) weights and random signs
    s_k.

    Returns
    -------
    X : ndarray of shape (n, d)
    y : ndarray of shape (n,)
    """
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((inst.n, inst.d)) / math.sqrt(inst.d)
    signs = rng.choice([-1.0, 1.0], size=TEACHER_UNITS)
    if inst.depth == 2:
        hidden = np.maximum(X @ rng.standard_normal((inst.d, TEACHER_UNITS)), 0.0)
    else:
        W = rng.standard_normal((inst.d, TEACHER_UNITS * inst.width))
        first = np.maximum(X @ W, 0.0).reshape(inst.n, TEACHER_UNITS, inst.width)
        v = rng.standard_normal((TEACHER_UNITS, inst.width))
        hidden = np.maximum(np.einsum("nkj,kj->nk", first, v), 0.0)
    y = hidden @ signs + NOISE_STD * rng.standard_normal(inst.n)
    return X, y


def make_problem(inst: Instance, seed: int, beta_fraction: float = 0.1):
    """The convex program of ``inst``: data of :func:`make_data`, sampled blocks, and
    ``beta = beta_fraction * beta_max``.

    The blocks come from ``ar.sample_arrangements(X, n_blocks=P, ..., seed=seed)``; they
    may be fewer than P if sampling finds fewer distinct ones (it then warns).
    """
    X, y = make_data(inst, seed)
    width = inst.width if inst.depth == 3 else None
    arr = ar.sample_arrangements(X, n_blocks=inst.P, depth=inst.depth, width=width, seed=seed)
    prob = ar.ConvexReLUProblem(X, y, 1.0, arr)
    return prob.with_beta(beta_fraction * prob.beta_max)


# ----------------------------------------------------------------------------- machine
def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def available_memory_bytes() -> int | None:
    """MemAvailable of /proc/meminfo in bytes (None where there is no /proc/meminfo)."""
    try:
        with open("/proc/meminfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _proc_status_bytes(field: str) -> int | None:
    """The ``field`` line (in kB) of /proc/self/status in bytes, or None without /proc."""
    try:
        with open("/proc/self/status", encoding="utf-8") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def peak_memory_bytes() -> int:
    """Peak resident memory of this process since it started, in bytes.

    VmHWM of /proc/self/status: the high-water mark of this process's own address space.
    ``getrusage(RUSAGE_SELF).ru_maxrss`` is the fallback where there is no /proc; on Linux
    it is *not* used because a child started by ``subprocess`` inherits its parent's
    ru_maxrss (measured: a child of a 320 MB parent reports 320 MB at start-up).
    """
    peak = _proc_status_bytes("VmHWM")
    if peak is not None:
        return peak
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kB on Linux


def resident_memory_bytes() -> int | None:
    """Current resident memory of this process (VmRSS) in bytes, None without /proc."""
    return _proc_status_bytes("VmRSS")


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def _git_commit() -> str:
    """HEAD of the repository holding bench/, with "+dirty" for local changes."""
    repo = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def machine_info(threads: int) -> dict:
    """Platform, CPU, cores, memory, package versions, thread settings, date and commit.

    Call it inside :func:`limit_threads` so that the recorded thread pools show the limit.
    """
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)),
        "memory_available_bytes": available_memory_bytes(),
        "python": sys.version.split()[0],
        "versions": {name: _version(name) for name in VERSIONED_PACKAGES},
        "threads": threads,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "thread_pools": [
            {k: pool.get(k) for k in ("user_api", "internal_api", "version", "num_threads")}
            for pool in threadpool_info()
        ],
        "git_commit": _git_commit(),
    }


# ------------------------------------------------------------------------------ output
def fmt(value, spec: str) -> str:
    """``format(value, spec)``, or :data:`MISSING` for None and NaN."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING
    return format(value, spec)


def markdown_table(headers, rows) -> str:
    """A markdown table with padded columns; columns of numbers are right-aligned."""
    rows = [[str(cell) for cell in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]
    right = [bool(rows) and all(_is_number(r[i]) for r in rows) for i in range(len(headers))]

    def line(cells):
        cells = zip(cells, widths, right, strict=True)
        padded = (c.rjust(w) if r else c.ljust(w) for c, w, r in cells)
        return "| " + " | ".join(padded) + " |"

    ends = (":" if r else "-" for r in right)
    rule = "|" + "|".join("-" * (w + 1) + end for w, end in zip(widths, ends, strict=True)) + "|"
    return "\n".join([line(headers), rule, *map(line, rows)])


def _is_number(text: str) -> bool:
    """True for a formatted number or the placeholder of a missing one."""
    if text == MISSING:
        return True
    try:
        float(text)
    except ValueError:
        return False
    return True


def jsonable(obj):
    """``obj`` with numpy scalars/arrays and dataclasses turned into plain Python, and
    non-finite floats into None (strict JSON has no NaN or infinity)."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return jsonable(obj.item())
    if hasattr(obj, "__dataclass_fields__"):
        return jsonable(asdict(obj))
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through ``path.tmp`` and a rename (no half-written file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_results(out_dir: Path, stem: str, markdown: str, data: dict) -> tuple[Path, Path]:
    """Write ``<stem>.md`` and ``<stem>.json`` (strict JSON) under ``out_dir``."""
    md_path, json_path = out_dir / f"{stem}.md", out_dir / f"{stem}.json"
    write_atomic(md_path, markdown + "\n")
    write_atomic(json_path, json.dumps(jsonable(data), indent=1, allow_nan=False) + "\n")
    return md_path, json_path
