"""Input checks shared by the public entry points.

Every check raises ``TypeError`` or ``ValueError`` with a message that names the
argument, what was received and what is expected.
"""

from numbers import Integral, Real

import numpy as np


def as_float_matrix(X, name: str = "X") -> np.ndarray:
    """Return ``X`` as a C-contiguous float64 copy of shape (n_samples, n_features)."""
    arr = _as_real_array(X, name)
    if arr.ndim != 2:
        hint = " (reshape a single feature with X.reshape(-1, 1))" if arr.ndim == 1 else ""
        raise ValueError(
            f"{name} must be a 2-D array of shape (n_samples, n_features); "
            f"got an array with shape {arr.shape}{hint}"
        )
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(
            f"{name} must have at least one row and one column; got shape {arr.shape}"
        )
    _check_finite(arr, name)
    return np.array(arr, dtype=np.float64, order="C", copy=True)


def as_float_vector(y, n_samples: int, name: str = "y") -> np.ndarray:
    """Return ``y`` as a float64 copy of shape (n_samples,)."""
    arr = _as_real_array(y, name)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise ValueError(
            f"{name} must be a 1-D array of shape (n_samples,); got shape {arr.shape}. "
            "Vector outputs are not supported: solve one problem per output column."
        )
    if arr.shape[0] != n_samples:
        raise ValueError(
            f"X has {n_samples} rows but {name} has shape {arr.shape}; "
            f"both need n_samples = {n_samples} entries"
        )
    _check_finite(arr, name)
    return np.array(arr, dtype=np.float64, copy=True)


def check_positive_float(value, name: str, *, allow_zero: bool = False) -> float:
    """Return ``value`` as a finite float that is > 0 (or >= 0 with ``allow_zero``)."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(
            f"{name} must be a real number; got {value!r} of type {type(value).__name__}"
        )
    value = float(value)
    if not np.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be a finite number {bound}; got {value!r}")
    return value


def check_int(value, name: str, *, minimum: int) -> int:
    """Return ``value`` as an int that is >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise TypeError(f"{name} must be an integer; got {value!r} of type {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}; got {value}")
    return int(value)


def check_depth_width(depth, width) -> tuple[int, int]:
    """Validate the architecture: depth 2 (width 1) or depth 3 with width m1 >= 1."""
    depth = check_int(depth, "depth", minimum=2)
    if depth not in (2, 3):
        raise ValueError(f"depth must be 2 or 3; got {depth}")
    if width is None:
        width = 1
    width = check_int(width, "width", minimum=1)
    if depth == 2 and width != 1:
        raise ValueError(
            f"width is the number m1 of first-layer neurons per three-layer sub-network; "
            f"depth=2 needs width=1 (or None), got width={width}. Use depth=3 for width > 1."
        )
    return depth, width


def _as_real_array(value, name: str) -> np.ndarray:
    if value is None:
        raise TypeError(f"{name} must be an array of real numbers; got None")
    arr = np.asarray(value)
    if arr.dtype == object or not (
        np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)
    ):
        raise TypeError(
            f"{name} must hold real numbers (float or int); got dtype {arr.dtype}. "
            f"Convert it with np.asarray({name}, dtype=float)."
        )
    return arr


def _check_finite(arr: np.ndarray, name: str) -> None:
    if np.issubdtype(arr.dtype, np.floating) and not np.all(np.isfinite(arr)):
        n_bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
        raise ValueError(
            f"{name} contains {n_bad} NaN or infinite value(s); remove or impute them first"
        )


# ------------------------------------------------------------- scale-safe norms
def power_of_two_scale(a, axis=None):
    """Powers of two ``2^k`` with ``max |a| / 2^k`` in [1, 2) (1 where ``a`` is all zero),
    along ``axis`` (keepdims) or over the whole array.

    Dividing by them is exact (no rounding), so a norm computed on ``a / 2^k`` and
    multiplied back is the norm of ``a`` to the same rounding, without the overflow or
    underflow of squaring values near 1e+-154.
    """
    peak = np.max(np.abs(a), axis=axis, keepdims=axis is not None)
    _, exponent = np.frexp(peak)
    # frexp(0) = (0, 0): the scale is then 2^-1, harmless; keep 1 for exact zeros
    return np.where(peak > 0, np.ldexp(1.0, exponent - 1), 1.0)


def stable_norm(a, axis=None) -> np.ndarray | float:
    """``np.linalg.norm(a, axis=axis)`` (2-norm of vectors, Frobenius norm of the whole
    array for ``axis=None``) without overflow or underflow in the squares.

    The data is first divided by a power of two near its largest magnitude along
    ``axis`` (:func:`power_of_two_scale`); for data of ordinary size the result equals
    ``np.linalg.norm`` bit for bit.  The norm itself can still overflow when it exceeds
    the float64 range (use :func:`log2_norm` for a magnitude).
    """
    a = np.asarray(a, dtype=np.float64)
    if a.size == 0:
        return np.linalg.norm(a, axis=axis)
    scale = power_of_two_scale(a, axis)
    if axis is None:
        return float(np.linalg.norm(a / scale) * scale)
    return np.squeeze(np.linalg.norm(a / scale, axis=axis, keepdims=True) * scale, axis=axis)


def log2_norm(a) -> float:
    """``log2 ||a||`` (Frobenius norm over the whole array) without overflow or underflow;
    ``-inf`` for an all-zero array."""
    a = np.asarray(a, dtype=np.float64)
    if a.size == 0 or not np.any(a):
        return -np.inf
    scale = float(power_of_two_scale(a))
    return float(np.log2(scale) + np.log2(np.linalg.norm(a / scale)))


# ------------------------------------------------------------ representable data
#: Largest and smallest squares (log2) that admmrelu's float64 arithmetic in the units of
#: the data may form: 2^7 below the overflow threshold 2^1024, so that sums of a few
#: terms and the certificate's products keep room, and 2^22 above the smallest normal
#: number 2^-1022, below which roundings become absolute (subnormal) and could decide a
#: certificate (docs/memory.md, "Representable range").
LOG2_SQUARE_MAX = 1016
LOG2_SQUARE_MIN = -1000


def check_representable(X: np.ndarray, y: np.ndarray) -> None:
    """Raise ValueError when the program's reported quantities cannot be computed in
    float64 in the units of ``X`` and ``y``.

    With ``a`` the RMS row norm of X, ``b`` the RMS of y and ``n`` samples, the solver
    reports the objective and its certified bound (at most ``0.5 ||y||^2 = n b^2 / 2``),
    beta and ``beta_max`` (``|X^T y|``-sized: up to ``n a b``) and the weights (``~ b / a``),
    and it forms the squares of each (norms, ``v^T v``) as well as ``X^T X`` (``~ n a^2``).
    Each such square must lie in ``[2^LOG2_SQUARE_MIN, 2^LOG2_SQUARE_MAX]``, about
    ``[1e-301, 7e305]``.  In practice: a and b within about 1e+-150 of 1, and a b and b / a
    too.  The scaled program the ADMM iterates on does not depend on the units
    (:mod:`admmrelu.scaling`); only these reported quantities do.
    """
    n = X.shape[0]
    log_n = float(np.log2(n))
    log_a = log2_norm(X) - 0.5 * log_n  # log2 of the RMS row norm
    log_b = log2_norm(y) - 0.5 * log_n  # log2 of the RMS of y
    y_fix = (
        "rescale y (e.g. divide it by its standard deviation) and beta by the same factor "
        "(the objective scales by its square)"
    )
    x_fix = (
        "rescale X (e.g. standardize its columns; a bias column of ones can stay) and "
        "multiply beta by the same factor (the weights scale by its inverse)"
    )
    if np.isfinite(log_b):
        _check_square(
            2 * log_b + log_n,
            2 * log_b,
            f"y has magnitude ~{_decimal(log_b)} (RMS)",
            "its squared norm 0.5 ||y||^2, the scale of the objective and of its certificate,",
            y_fix,
        )
    if np.isfinite(log_a):
        _check_square(
            2 * log_a + log_n,
            2 * log_a,
            f"X has magnitude ~{_decimal(log_a)} (RMS row norm)",
            "X^T X (the certificate's step sizes and cone rows)",
            x_fix,
        )
    if np.isfinite(log_a) and np.isfinite(log_b):
        both = f"X (~{_decimal(log_a)}) and y (~{_decimal(log_b)}) together"
        _check_square(
            2 * (log_a + log_b + log_n),
            2 * (log_a + log_b),
            f"{both} give beta_max and the block dual norms ~ |X| |y| ~ "
            f"{_decimal(log_a + log_b)}:",
            "their squares",
            f"{x_fix}, or {y_fix}",
        )
        _check_square(
            2 * (log_b - log_a) + log_n,
            2 * (log_b - log_a),
            f"{both} give weights ~ |y| / |X| ~ {_decimal(log_b - log_a)}:",
            "their squared norms",
            f"{x_fix}, or {y_fix}",
        )


def _check_square(log_high, log_low, what, squares, fix):
    if log_high > LOG2_SQUARE_MAX:
        raise ValueError(
            f"{what}: {squares} overflows float64 (largest ~1.8e308) in the units of the "
            f"data; {fix}."
        )
    if log_low < LOG2_SQUARE_MIN:
        raise ValueError(
            f"{what}: {squares} falls below float64's normal range (~2.2e-308), where "
            f"rounding would decide the certificate; {fix}."
        )


def _decimal(log2_value: float) -> str:
    """``2^log2_value`` written as a power of ten, e.g. ``1e+154``."""
    return f"1e{round(log2_value * np.log10(2.0)):+d}"
