"""Hot loops of admmrelu, installed as ``admmrelu.kernels``.

Only this package imports numba or cupy (lazily).  :func:`get_backend` returns the
operator set for a device; algorithm modules call the backend's functions and the
array module ``xp`` only, so they never branch on the device.
"""

from dataclasses import dataclass
from types import ModuleType

import numpy as np

from . import _reference


@dataclass(frozen=True)
class Backend:
    """The array module and the masked operators for one device.

    Attributes
    ----------
    name : str
        ``"cpu"`` (numpy) for now; the GPU backend follows.
    xp : module
        The array module (numpy or cupy).
    forward, adjoint, cone, cone_adjoint : callable
        The masked operators of :mod:`admmrelu.kernels._reference`, same signatures.
    """

    name: str
    xp: ModuleType
    forward: object
    adjoint: object
    cone: object
    cone_adjoint: object


_CPU = Backend(
    name="cpu",
    xp=np,
    forward=_reference.forward,
    adjoint=_reference.adjoint,
    cone=_reference.cone,
    cone_adjoint=_reference.cone_adjoint,
)


def get_backend(device: str = "cpu") -> Backend:
    """Return the operator backend for ``device`` (only ``"cpu"`` exists so far)."""
    if device in ("cpu", "auto"):
        return _CPU
    if device == "gpu":
        raise NotImplementedError(
            "device='gpu' is not available yet: the cupy backend is planned; use device='cpu'"
        )
    raise ValueError(f"device must be 'cpu', 'gpu' or 'auto'; got {device!r}")
