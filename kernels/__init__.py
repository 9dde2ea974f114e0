"""Hot loops of admmrelu, installed as ``admmrelu.kernels``.

Only this package imports numba or cupy (lazily).  :func:`get_backend` returns the
operator set for a device; algorithm modules call the backend's functions and its array
module ``xp`` only, so they never branch on the device.

Three backends share one signature per operation (see :mod:`admmrelu.kernels._reference`
for the math and the shapes):

* ``"numpy"``: the plain array-module reference (the ground truth of the tests);
* ``"numba"`` (``device="cpu"``): BLAS GEMMs plus fused, parallel numba passes;
* ``"cupy"`` (``device="gpu"``): cuBLAS GEMMs plus fused CUDA kernels, all arrays on the GPU.

Every operation accepts float32 or float64 arrays (all of one dtype; masks are bool) and
returns that dtype.
"""

import functools
from dataclasses import dataclass
from types import ModuleType

import numpy as np

from . import _reference
from ._reference import array_namespace as array_namespace
from ._reference import as_numpy as as_numpy

#: Values accepted by ``device=`` (``"numpy"`` selects the reference kernels on the CPU).
DEVICES = ("cpu", "gpu", "auto", "numpy")


@dataclass(frozen=True)
class Backend:
    """The array module and the kernels of one device.

    Attributes
    ----------
    name : {"numpy", "numba", "cupy"}
    device : {"cpu", "gpu"}
    xp : module
        The array module (numpy or cupy).
    forward, adjoint, cone, cone_adjoint : callable
        The masked operators ``F``, ``F^T``, ``G``, ``G^T`` (:mod:`._reference`).
    reflected_cone_adjoint, relaxed_slack_update : callable
        The two fused products of an ADMM iteration (:mod:`._reference`).
    block_soft_threshold, loss_coupled_projection : callable
        The proximal maps of the group lasso and of the depth-3 loss rows.
    cho_factor, cho_solve : callable
        Cholesky factor of a symmetric positive definite matrix and solves with it.
    asarray : callable
        ``asarray(a, dtype=None)``: a host or device array as this backend's array.
    to_host : callable
        A backend array as a numpy array.
    """

    name: str
    device: str
    xp: ModuleType
    forward: object
    adjoint: object
    cone: object
    cone_adjoint: object
    reflected_cone_adjoint: object
    relaxed_slack_update: object
    block_soft_threshold: object
    loss_coupled_projection: object
    cho_factor: object
    cho_solve: object
    asarray: object
    to_host: object


@dataclass(frozen=True)
class BoundOperators:
    """A backend's masked operators bound to one problem's data (arrays of that backend).

    ``forward(U)``, ``adjoint(r)``, ``cone(U)``, ``cone_adjoint(L)`` and the fused
    ``reflected_cone_adjoint(w_s, q)``, ``relaxed_slack_update(x, w_s, q, alpha)``, with the
    shapes of :mod:`._reference`; ``X`` and ``width`` as on a ``ConvexReLUProblem``, so
    functions written against a problem's operators (the certificate's) run on the device
    too.
    """

    backend: Backend
    X: object
    masks1: object
    signs: object
    masks2: object

    @property
    def width(self) -> int:
        return self.masks1.shape[2]

    def forward(self, U):
        return self.backend.forward(self.X, self.masks1, self.signs, self.masks2, U)

    def adjoint(self, r):
        return self.backend.adjoint(self.X, self.masks1, self.signs, self.masks2, r)

    def cone(self, U):
        return self.backend.cone(self.X, self.masks1, self.signs, self.masks2, U)

    def cone_adjoint(self, L):
        return self.backend.cone_adjoint(self.X, self.masks1, self.signs, self.masks2, L)

    def reflected_cone_adjoint(self, w_s, q):
        return self.backend.reflected_cone_adjoint(
            self.X, self.masks1, self.signs, self.masks2, w_s, q
        )

    def relaxed_slack_update(self, x, w_s, q, alpha):
        return self.backend.relaxed_slack_update(
            self.X, self.masks1, self.signs, self.masks2, x, w_s, q, alpha
        )


def _scipy_cho_factor(C):
    from scipy import linalg

    return linalg.cho_factor(C, lower=True, check_finite=False)


def _scipy_cho_solve(factor, b):
    from scipy import linalg

    return linalg.cho_solve(factor, b, check_finite=False)


def _numpy_asarray(a, dtype=None):
    return np.asarray(a, dtype=dtype)


def _numpy_backend(name, module) -> Backend:
    return Backend(
        name=name,
        device="cpu",
        xp=np,
        forward=module.forward,
        adjoint=module.adjoint,
        cone=module.cone,
        cone_adjoint=module.cone_adjoint,
        reflected_cone_adjoint=module.reflected_cone_adjoint,
        relaxed_slack_update=module.relaxed_slack_update,
        block_soft_threshold=module.block_soft_threshold,
        loss_coupled_projection=module.loss_coupled_projection,
        cho_factor=_scipy_cho_factor,
        cho_solve=_scipy_cho_solve,
        asarray=_numpy_asarray,
        to_host=np.asarray,
    )


_BACKENDS: dict[str, Backend] = {}


def get_backend(device: str = "cpu") -> Backend:
    """The backend for ``device``.

    ``"cpu"``: numba kernels; ``"gpu"``: cupy kernels (raises RuntimeError with the
    reason when no usable GPU is present); ``"auto"``: the GPU when one is usable, else
    the CPU; ``"numpy"``: the plain numpy reference (for comparisons and benchmarks).
    """
    if device not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}; got {device!r}")
    reason = gpu_unavailable_reason() if device in ("gpu", "auto") else None
    if device == "auto":
        device = "cpu" if reason else "gpu"
    if device == "gpu" and reason:
        raise RuntimeError(
            f"device='gpu' is not usable here: {reason}. Install admmrelu[gpu] on a "
            "machine with a CUDA GPU, or use device='cpu' (or 'auto')."
        )
    if device not in _BACKENDS:
        _BACKENDS[device] = _load(device)
    return _BACKENDS[device]


def _load(device: str) -> Backend:
    if device == "numpy":
        return _numpy_backend("numpy", _reference)
    if device == "cpu":
        from . import _cpu

        return _numpy_backend("numba", _cpu)
    from . import _gpu

    return _gpu.BACKEND


@functools.cache
def gpu_unavailable_reason() -> str | None:
    """None when cupy imports and sees a usable CUDA device; else why not (a sentence).
    Probed once per process (an import and a kernel launch)."""
    try:
        import cupy
    except Exception as error:  # ImportError, or a broken CUDA installation
        return f"cupy cannot be imported ({type(error).__name__}: {error})"
    try:
        if not cupy.cuda.is_available():
            return "cupy sees no CUDA device (cupy.cuda.is_available() is False)"
        cupy.cuda.runtime.getDeviceCount()
        cupy.zeros(1).sum().item()  # a kernel launch: catches driver/toolkit mismatches
    except Exception as error:
        return f"the CUDA device is not usable ({type(error).__name__}: {error})"
    return None


def available_devices() -> tuple[str, ...]:
    """The backends usable on this machine, for tests and benchmarks: ``("numpy", "cpu")``
    plus ``"gpu"`` when a usable GPU is present."""
    return ("numpy", "cpu") + (() if gpu_unavailable_reason() else ("gpu",))
