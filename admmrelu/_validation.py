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
