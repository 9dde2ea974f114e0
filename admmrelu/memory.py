"""Memory estimates of sampling, building and solving, and the budget they are checked against.

Every large array that :func:`~admmrelu.sample_arrangements`,
:class:`~admmrelu.ConvexReLUProblem` and :class:`~admmrelu.ADMMSolver` allocate has a size
known from ``(n, d, P, m1, depth, dtype)`` alone, so the peak can be estimated before
anything is allocated.  Each estimate below is derived from the code it describes (the
counts are stated next to each term) and checked against ``tracemalloc`` peaks in
``tests/test_memory.py``; docs/memory.md gives the formulas and the measured ratios.

Notation: ``n`` samples, ``d`` features, ``P`` blocks, ``m1`` neurons per block,
``R = m1 (+1 at depth 3)`` cone rows per block and sample, ``s`` the bytes of the iteration
dtype (8 or 4).  The ADMM's slacks have ``n 2 P R`` entries ("slack arrays" below).

The budget (:func:`memory_budget`): ``max_memory`` when given, else the environment
variable ``ADMMRELU_MAX_MEMORY``, else 80% of the memory available now (``MemAvailable`` of
``/proc/meminfo``, capped by a cgroup v2 limit; 8 GiB when neither can be read); on the GPU
80% of the device's free memory (plus what cupy's pool holds free).  An operation whose
estimate exceeds it raises :class:`~admmrelu.exceptions.MemoryBudgetError` before
allocating, naming the estimate, the budget and the remedies.
"""

import math
import os
from dataclasses import dataclass, field

import numpy as np

from .exceptions import MemoryBudgetError
from .linsys import _CACHE_BYTES, _CACHE_SIZE

#: Environment variable with the default budget in bytes ("16e9", "12GiB", "500 MB";
#: "inf" or "none" turns the checks off).
ENV_VAR = "ADMMRELU_MAX_MEMORY"
#: Fraction of the available memory that the default budget allows.
DEFAULT_FRACTION = 0.8
#: Budget used when the available memory cannot be read.
FALLBACK_BYTES = 8 * 2**30

#: Bytes of the float64 products ``X W`` that one chunk of a sampling round (and of the
#: problem's generator check) may allocate; larger rounds are split into chunks of
#: networks (blocks), which gives the same draws and the same blocks.
CHUNK_BYTES = 2**25
#: Python-object overhead per deduplication key of sampling (a bytes object and its slot
#: in a set, measured ~100 bytes on CPython 3.11).
_KEY_OVERHEAD = 100


@dataclass(frozen=True)
class MemoryEstimate:
    """Estimated peak of new allocations of one operation, in bytes.

    Attributes
    ----------
    operation : str
        What is estimated, in words (``"sampling 5000 blocks (depth 2) on 200000 x 10
        data"``).
    host_bytes : int
        Peak on the host (the CPU's memory).
    device_bytes : int
        Peak on the GPU (0 when everything runs on the host).
    parts : dict
        The largest terms (name -> bytes) of the peak, for the messages; they need not
        add up to the peak (different phases peak at different times).
    device : {"cpu", "gpu"}
        Where ``device_bytes`` live.
    """

    operation: str
    host_bytes: int
    device_bytes: int = 0
    parts: dict = field(default_factory=dict)
    device: str = "cpu"

    def __str__(self) -> str:
        text = f"{self.operation}: {format_bytes(self.host_bytes)} on the host"
        if self.device_bytes:
            text += f", {format_bytes(self.device_bytes)} on the GPU"
        return text


# ------------------------------------------------------------------- estimates
def sampling_chunk(n_samples: int, width: int) -> int:
    """Networks per GEMM chunk of :func:`~admmrelu.sample_arrangements`: the float64
    product ``X W`` (n x chunk m1) stays within :data:`CHUNK_BYTES`."""
    return max(1, CHUNK_BYTES // (8 * n_samples * width))


def sampling_memory(n_samples, n_features, n_blocks, depth=2, width=None) -> MemoryEstimate:
    """Peak bytes of ``sample_arrangements(X, n_blocks, depth, width)`` on (n, d) data.

    Derived from :mod:`admmrelu.arrangements`:

    * the result, filled in place: masks1 ``n P m1`` bytes (bool), masks2 ``n P`` at depth
      3, generators ``8 P m1 d``, signs ``8 P m1``;
    * the deduplication keys: per block ``ceil(n/8) (m1 + [depth 3])`` packed mask bytes,
      ``8 m1`` sign bytes and ~100 bytes of Python objects;
    * the first round's draws: ``B = max(2 P, 64)`` networks, ``8 B m1 (d + 1)`` bytes;
    * one chunk of c networks (:func:`sampling_chunk`) at a time: the float64 product
      ``Z = X W`` and ``max(Z, 0)`` (``2 x 8 n c m1``), the masks before and after the
      canonical neuron order (``2 n c m1``), the pre-activation ``8 n c`` and its mask
      ``n c``.
    """
    n, d, P, m1, depth3 = _sizes(n_samples, n_features, n_blocks, depth, width)
    batch = max(2 * P, 64)
    chunk = min(sampling_chunk(n, m1), batch)
    key = math.ceil(n / 8) * (m1 + depth3) + 8 * m1 + _KEY_OVERHEAD
    parts = {
        "masks of the blocks": n * P * (m1 + depth3),
        "generators and signs": 8 * P * m1 * (d + 1),
        "deduplication keys": P * key,
        "random networks of a round": 8 * batch * m1 * (d + 1),
        "products X W of a chunk": n * chunk * (18 * m1 + 9),
    }
    operation = (
        f"sampling {P} blocks (depth {depth}, width {m1}) on {n} x {d} data "
        f"(arrangements.sample_arrangements)"
    )
    return MemoryEstimate(operation, sum(parts.values()), parts=parts)


def problem_memory(n_samples, n_features, n_blocks, depth=2, width=None) -> MemoryEstimate:
    """Peak bytes of ``ConvexReLUProblem(X, y, beta, arrangements)`` (the arrangements
    already exist).

    Derived from :mod:`admmrelu.problem`: the float64 copies of X (``8 n d``) and y
    (``8 n``); the representable-range check and the row norms (two ``8 n d``
    temporaries); the generator check, chunked over blocks like sampling: per chunk of c
    blocks the cone values ``G U`` of ``n 2 c R`` float64 entries, the product behind them
    (``n 2 c m1``) and the chunk's masks.
    """
    n, d, P, m1, depth3 = _sizes(n_samples, n_features, n_blocks, depth, width)
    R = m1 + depth3
    chunk = min(generator_chunk(n, R), P)
    parts = {
        "copies of X and y": 8 * n * (d + 1),
        "scale checks of X": 16 * n * d,
        "generator check of a chunk": n * chunk * (16 * m1 + 16 * R * depth3 + m1 + depth3),
    }
    peak = parts["copies of X and y"] + max(
        parts["scale checks of X"], parts["generator check of a chunk"]
    )
    operation = (
        f"building the problem with {P} blocks (depth {depth}, width {m1}) on {n} x {d} "
        f"data (ConvexReLUProblem)"
    )
    return MemoryEstimate(operation, peak, parts=parts)


def generator_chunk(n_samples: int, rows: int) -> int:
    """Blocks per chunk of the problem's generator check: the float64 cone values of a
    chunk (``n 2 c R``) stay within :data:`CHUNK_BYTES`."""
    return max(1, CHUNK_BYTES // (16 * n_samples * rows))


def factor_cache_size(n_samples: int, dtype="float64") -> int:
    """Cholesky factors the depth-2 Woodbury system keeps (:mod:`admmrelu.linsys`)."""
    s0 = n_samples * n_samples * np.dtype(dtype).itemsize
    return max(1, min(_CACHE_SIZE, _CACHE_BYTES // (2 * s0)))


def solve_memory(
    n_samples,
    n_features,
    n_blocks,
    depth=2,
    width=None,
    dtype="float64",
    device="cpu",
    anderson_memory=0,
    polish_variables=None,
) -> MemoryEstimate:
    """Peak bytes of an ADMM solve (``ADMMSolver(problem, device, dtype).solve()``).

    Derived from :mod:`admmrelu.admm`, :mod:`admmrelu.linsys` and the finish; ``s`` is the
    iteration dtype's size, "slack" an array of the ``n 2 P R`` cone rows.

    Held through the solve:

    * the scaled data (:mod:`admmrelu.scaling`): X~, X^ and the scaled problem's copy,
      ``3 x 8 n d``; in float32 (or on the GPU) the three device copies, ``3 s n d``;
    * depth 2: ``S0`` (``s n^2``) and up to :func:`factor_cache_size` Cholesky factors
      (``s n^2`` each; the estimate assumes the cache fills, as residual balancing
      usually visits that many rho);
    * depth 3: the block inverses ``s P (m1 d)^2``, the loss prox's coefficients and
      residuals ``s n 2 P``;
    * Anderson (``anderson_memory = m > 0``): ``2 m`` stored differences and about five
      packed points, ``(2 m + 5) s (2 P m1 d + n 2 P R)``.

    and the largest of these phases:

    * setup: depth 2 the second ``n x n`` product and the float mask ``s n P``; depth 3
      the ``(n, d^2)`` outer products, two ``P (m1 d)^2`` stacks and the masks' product;
    * a new rho (depth 2): the matrix ``C`` and its factor (``+1 s n^2`` beyond the full
      cache; ``+2`` on the GPU, whose Cholesky returns a copy that is then made
      Fortran-ordered), with the previous check's six slacks alive;
    * a check: seven slacks (the point, ``T(w)``, ``s``, ``u_s``, ``G x``, their
      difference, the multipliers) and one product ``X U^T`` (``s n 2 P m1``);
    * the finish: the last check's five slacks, four float64 slacks on the host (the
      ADMM multipliers, the polish's multipliers, their merge and their rescaling),
      three bool arrays of the rows, and the larger of the polish and the multiplier
      improvement (five slacks of dtype s and one product; two more float64 slacks when
      the iterations are not float64 on the host).  The polish is counted at its cap
      ``N`` (:func:`polish_cap`, the solver's own, at most ``2 P m1 d``): its cone rows,
      designs and factors ``8 N n (R + 4)`` and, on its dense path (``3 n >= N``), its
      matrices ``24 (N (1 + 1/d))^2``.  This is a bound: most solves polish far fewer
      variables (then the estimate exceeds the peak, 2.5-5x at n = 1500..5000;
      docs/memory.md), but small-beta solves do reach the cap.
      ``polish_variables`` replaces that cap by a known size (to compare with a run).
    """
    n, d, P, m1, depth3 = _sizes(n_samples, n_features, n_blocks, depth, width)
    if dtype not in ("float64", "float32"):
        raise ValueError(f"dtype must be 'float64' or 'float32'; got {dtype!r}")
    if device not in ("cpu", "gpu", "numpy"):
        raise ValueError(f"device must be 'cpu', 'gpu' or 'numpy'; got {device!r}")
    gpu = device == "gpu"
    s = np.dtype(dtype).itemsize
    R = m1 + depth3
    slack = n * 2 * P * R  # entries of (n, 2, P, R)
    product = n * 2 * P * m1  # entries of X U^T and of the adjoint's operand
    var = 2 * P * m1 * d
    converts = gpu or s != 8  # device arrays differ from the host's float64 ones

    held_host = {"scaled data": 8 * (3 * n * d + 4 * n)}
    held_dev = {}
    if converts:
        held_dev["data on the device"] = s * (3 * n * d + n) + (
            (n * P * (m1 + depth3) + s * P * m1) if gpu else 0
        )
    cache = 0
    if depth == 2:
        cache = factor_cache_size(n, dtype)
        held_dev["S0 (n x n)"] = s * n * n
        held_dev[f"{cache} cached n x n Cholesky factor(s)"] = cache * s * n * n
    else:
        held_dev["block inverses P (m1 d)^2"] = s * P * (m1 * d) ** 2
        held_dev["loss prox arrays"] = s * (2 * n * 2 * P + 2 * n)
    if anderson_memory:
        held_dev["Anderson memory"] = (2 * anderson_memory + 5) * s * (var + slack)
    factors = held_dev.get(f"{cache} cached n x n Cholesky factor(s)", 0)

    if depth == 2:
        setup = s * n * P + s * n * n - factors
        new_rho = (2 if gpu else 1) * s * n * n + 6 * s * slack
    else:
        setup = s * (n * d * d + 2 * P * (m1 * d) ** 2 + n * P + P * d * d)
        new_rho = 0
    check = 7 * s * slack + s * product + (2 * s * n * 2 * P if depth3 else 0)
    n_polish = min(polish_cap(n), var) if polish_variables is None else int(polish_variables)
    polish = 8 * n_polish * n * (R + 4)
    if 3 * n >= n_polish:  # dense normal equations (else Woodbury on the n-rank loss)
        polish += 24 * int(n_polish * (1 + 1 / d)) ** 2
    improve_dev = 5 * s * slack + s * product + (s * slack if converts else 0)
    finish_host = 4 * 8 * slack + 3 * slack + (2 * 8 * slack if converts else 0)
    finish_dev = 5 * s * slack  # the last check's arrays, alive through the finish

    parts = {**held_host, **held_dev}
    if gpu:
        device_peak = sum(held_dev.values()) + max(setup, new_rho, check, finish_dev + improve_dev)
        host_peak = sum(held_host.values()) + finish_host + polish
        parts["finish on the host (float64 multipliers)"] = finish_host
        parts[f"polish at its cap of {n_polish} variables (a bound)"] = polish
    else:
        device_peak = 0
        finish = finish_dev + finish_host + max(polish, improve_dev)
        host_peak = sum(parts.values()) + max(setup, new_rho, check, finish)
        parts[f"polish at its cap of {n_polish} variables (a bound)"] = polish
        phases = {
            "setup": setup,
            "new rho factorization": new_rho,
            "a residual check": check,
            "the finish (polish, certificate)": finish,
        }
        name = max(phases, key=phases.get)
        parts[f"peak phase: {name}"] = phases[name]
    parts["one slack array (n x 2P x R)"] = s * slack
    operation = (
        f"solving (ADMM, depth {depth}, width {m1}, n={n}, d={d}, P={P}, {dtype} on "
        f"{'gpu' if gpu else 'cpu'})"
    )
    return MemoryEstimate(
        operation,
        int(host_peak),
        int(device_peak),
        parts=parts,
        device="gpu" if gpu else "cpu",
    )


def polish_cap(n_samples: int) -> int:
    """Most variables of one polish (the reduced program's size cap of :mod:`admmrelu.admm`,
    which depends on n through the cost of its interior-point iterations)."""
    from . import admm

    cap = getattr(admm, "_max_polish_variables", None)
    if cap is not None:
        return int(cap(n_samples))
    return int(getattr(admm, "_POLISH_MAX_VARIABLES", 3000))


def solve_memory_of(problem, device="cpu", dtype="float64", anderson_memory=0):
    """:func:`solve_memory` for a :class:`~admmrelu.ConvexReLUProblem`."""
    return solve_memory(
        problem.n_samples,
        problem.n_features,
        problem.n_blocks,
        problem.depth,
        problem.width,
        dtype,
        device,
        anderson_memory,
    )


def _sizes(n_samples, n_features, n_blocks, depth, width):
    n, d, P = (int(v) for v in (n_samples, n_features, n_blocks))
    if min(n, d, P) < 1:
        raise ValueError(f"n_samples, n_features and n_blocks must be >= 1; got {(n, d, P)}")
    if depth not in (2, 3):
        raise ValueError(f"depth must be 2 or 3; got {depth!r}")
    m1 = 1 if width is None else int(width)
    return n, d, P, m1, int(depth == 3)


# --------------------------------------------------------------------- budget
@dataclass(frozen=True)
class Budget:
    """A memory budget in bytes and where it comes from (for the messages)."""

    bytes: float
    source: str


def memory_budget(device="cpu", max_memory=None) -> Budget:
    """The budget that estimates are checked against.

    ``max_memory`` (bytes; ``math.inf`` turns the check off) when given; else the
    environment variable ``ADMMRELU_MAX_MEMORY`` (bytes, with an optional unit: ``"16e9"``,
    ``"12GiB"``, ``"500 MB"``; ``"inf"`` or ``"none"`` turns the check off); else
    :data:`DEFAULT_FRACTION` of the memory available now: on the host ``MemAvailable``
    of ``/proc/meminfo`` capped by a cgroup v2 limit (``memory.max - memory.current``),
    or ``os.sysconf`` where there is no ``/proc``, or :data:`FALLBACK_BYTES` when nothing
    can be read; on the GPU (``device="gpu"``) the free device memory plus the free
    blocks of cupy's pool.
    """
    if max_memory is not None:
        return Budget(_check_max_memory(max_memory), "max_memory")
    env = os.environ.get(ENV_VAR)
    if env is not None and env.strip():
        return Budget(parse_bytes(env, ENV_VAR), f"{ENV_VAR}={env.strip()}")
    if device == "gpu":
        free = _gpu_free_bytes()
        if free is not None:
            return Budget(
                DEFAULT_FRACTION * free,
                f"{DEFAULT_FRACTION:.0%} of the GPU's {format_bytes(free)} free",
            )
    available, where = available_memory()
    if available is None:
        return Budget(FALLBACK_BYTES, "the fallback budget (available memory unknown)")
    return Budget(
        DEFAULT_FRACTION * available,
        f"{DEFAULT_FRACTION:.0%} of the {format_bytes(available)} available ({where})",
    )


def available_memory() -> tuple[int | None, str]:
    """Bytes of host memory available now and where that number comes from."""
    available, where = None, ""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    available, where = int(line.split()[1]) * 1024, "MemAvailable"
                    break
    except (OSError, ValueError, IndexError):
        pass
    if available is None:
        try:
            pages = os.sysconf("SC_AVPHYS_PAGES")
            available, where = pages * os.sysconf("SC_PAGE_SIZE"), "os.sysconf"
        except (ValueError, OSError, AttributeError):
            pass
    limit = _cgroup_headroom()
    if limit is not None and (available is None or limit < available):
        available, where = limit, "cgroup memory.max"
    return available, where


def _cgroup_headroom() -> int | None:
    try:
        with open("/sys/fs/cgroup/memory.max") as f:
            text = f.read().strip()
        if text == "max":
            return None
        with open("/sys/fs/cgroup/memory.current") as f:
            current = int(f.read().strip())
        return max(int(text) - current, 0)
    except (OSError, ValueError):
        return None


def _gpu_free_bytes() -> int | None:
    try:
        import cupy

        free, _ = cupy.cuda.runtime.memGetInfo()
        return int(free) + int(cupy.get_default_memory_pool().free_bytes())
    except Exception:  # no cupy, no device: the host budget applies
        return None


_UNITS = {
    "": 1,
    "b": 1,
    "k": 1e3,
    "kb": 1e3,
    "m": 1e6,
    "mb": 1e6,
    "g": 1e9,
    "gb": 1e9,
    "t": 1e12,
    "tb": 1e12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}


def parse_bytes(text: str, name: str = "max_memory") -> float:
    """``"12GiB"``, ``"16e9"``, ``"500 MB"`` as bytes; ``"inf"``/``"none"``: no limit."""
    value = text.strip().lower().replace("_", "")
    if value in ("inf", "none", "off", "unlimited"):
        return math.inf
    number = value.rstrip("abcdefghijklmnopqrstuvwxyz").strip()
    unit = value[len(number) :].strip()
    try:
        amount = float(number) * _UNITS[unit]
    except (ValueError, KeyError):
        raise ValueError(
            f"{name} must be a number of bytes with an optional unit (e.g. 16e9, 12GiB, "
            f"500MB) or 'inf'; got {text!r}"
        ) from None
    return _check_max_memory(amount, name)


def _check_max_memory(value, name="max_memory") -> float:
    if isinstance(value, str):
        return parse_bytes(value, name)
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(
            f"{name} must be a number of bytes (or None for the default budget); got "
            f"{value!r} of type {type(value).__name__}"
        )
    value = float(value)
    if not value > 0:
        raise ValueError(
            f"{name} must be a positive number of bytes (inf: no limit); got {value!r}"
        )
    return value


# ---------------------------------------------------------------------- checks
def check_memory(estimate: MemoryEstimate, max_memory=None, remedies=()) -> None:
    """Raise :class:`~admmrelu.exceptions.MemoryBudgetError` when ``estimate`` exceeds the
    budget (:func:`memory_budget`) on the host or, for a GPU estimate, on the device.

    ``remedies``: sentences for the message (what to change), in order of preference, or
    a callable returning them (called only when the budget is exceeded);
    ``max_memory=...`` is always added.
    """
    checks = [("host", estimate.host_bytes, memory_budget("cpu", max_memory))]
    if estimate.device_bytes:
        checks.append(("GPU", estimate.device_bytes, memory_budget("gpu", max_memory)))
    for where, needed, budget in checks:
        if needed <= budget.bytes:
            continue
        largest = sorted(estimate.parts.items(), key=lambda kv: -kv[1])[:4]
        detail = ", ".join(f"{name} {format_bytes(b)}" for name, b in largest if b > 0)
        advice = list(remedies() if callable(remedies) else remedies) + [
            f"or raise the budget with max_memory=<bytes> (or the environment variable "
            f"{ENV_VAR}) if the memory is there"
        ]
        raise MemoryBudgetError(
            f"{estimate.operation} needs an estimated {format_bytes(needed)} of {where} "
            f"memory (largest terms: {detail}), above the budget of "
            f"{format_bytes(budget.bytes)} ({budget.source}). Remedies: "
            + "; ".join(advice)
            + ". docs/memory.md gives the formulas.",
            estimate=estimate,
            budget=budget.bytes,
        )


def check_solve_memory(problem, device="cpu", dtype="float64", max_memory=None, anderson_memory=0):
    """The budget check of :class:`~admmrelu.ADMMSolver` (``device``: ``"cpu"`` or
    ``"gpu"``, the backend's): :func:`solve_memory` against :func:`memory_budget`, with
    the remedies of :func:`solve_remedies` in the message."""
    estimate = solve_memory_of(problem, device, dtype, anderson_memory)
    sizes = (problem.n_samples, problem.n_features, problem.n_blocks)
    arch = (problem.depth, problem.width)
    check_memory(
        estimate,
        max_memory,
        lambda: solve_remedies(*sizes, *arch, dtype, device, anderson_memory, max_memory),
    )


def largest_fitting(bytes_of, limit: float, high: int) -> int:
    """The largest integer k in [1, high] with ``bytes_of(k) <= limit`` (``bytes_of``
    non-decreasing), or 0 when not even k = 1 fits."""
    if bytes_of(1) > limit:
        return 0
    low = 1
    while low < high:
        mid = (low + high + 1) // 2
        if bytes_of(mid) <= limit:
            low = mid
        else:
            high = mid - 1
    return low


def sampling_remedies(n, d, n_blocks, depth, width, max_memory=None) -> list[str]:
    """What would make sampling fit the host budget."""
    budget = memory_budget("cpu", max_memory).bytes
    fewer = largest_fitting(
        lambda p: sampling_memory(n, d, p, depth, width).host_bytes, budget, n_blocks
    )
    rows = largest_fitting(
        lambda m: sampling_memory(m, d, n_blocks, depth, width).host_bytes, budget, n
    )
    out = []
    if fewer:
        out.append(f"fewer blocks (n_blocks={fewer} fits)")
    if rows:
        out.append(f"fewer samples (a subsample of {rows} rows fits)")
    return out


def solve_remedies(n, d, P, depth, width, dtype, device, anderson_memory=0, max_memory=None):
    """What would make an ADMM solve fit: fewer blocks, fewer samples, float32, the GPU."""
    where = "gpu" if device == "gpu" else "cpu"
    budgets = {"cpu": memory_budget("cpu", max_memory).bytes}
    if where == "gpu":
        budgets["gpu"] = memory_budget("gpu", max_memory).bytes

    def fits(estimate):
        return estimate.host_bytes <= budgets["cpu"] and (
            not estimate.device_bytes or estimate.device_bytes <= budgets["gpu"]
        )

    def worst_ratio(estimate):
        ratio = estimate.host_bytes / budgets["cpu"]
        if estimate.device_bytes:
            ratio = max(ratio, estimate.device_bytes / budgets["gpu"])
        return ratio

    def over(**changes):
        args = dict(
            n_samples=n,
            n_features=d,
            n_blocks=P,
            depth=depth,
            width=width,
            dtype=dtype,
            device=where,
            anderson_memory=anderson_memory,
        )
        args.update(changes)
        return worst_ratio(solve_memory(**args))

    out = []
    fewer = largest_fitting(lambda p: over(n_blocks=p), 1.0, P)
    if fewer:
        out.append(f"fewer blocks (n_blocks={fewer} fits)")
    rows = largest_fitting(lambda m: over(n_samples=m), 1.0, n)
    if rows:
        why = ", as the Woodbury factors grow as n^2" if depth == 2 else ""
        out.append(f"fewer samples (a subsample of {rows} rows fits{why})")
    if dtype == "float64":
        single = solve_memory(n, d, P, depth, width, "float32", where, anderson_memory)
        size = single.device_bytes if where == "gpu" else single.host_bytes
        verdict = "fits" if over(dtype="float32") <= 1.0 else "does not fit either"
        out.append(f'dtype="float32" (estimated {format_bytes(size)}: {verdict})')
    if anderson_memory:
        out.append("anderson_memory=0")
    if where == "cpu":
        out.append('device="gpu" with enough GPU memory (the iterations move there)')
    else:
        out.append('a GPU with more memory, or device="cpu" if the host has it')
    return out


def format_bytes(n_bytes: float) -> str:
    """Bytes in GiB (MiB below 0.1 GiB), e.g. ``"12.40 GiB"``."""
    if not math.isfinite(n_bytes):
        return "unlimited"
    if n_bytes >= 0.1 * 2**30:
        return f"{n_bytes / 2**30:.2f} GiB"
    return f"{n_bytes / 2**20:.1f} MiB"
