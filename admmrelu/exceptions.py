"""Exceptions and warnings raised by admmrelu."""


class SolverError(RuntimeError):
    """A backend solver failed in a way that left no usable point."""


class TooManyArrangementsError(ValueError):
    """Exact enumeration would produce more blocks (or bytes) than allowed.

    The message gives the estimate, the limit and the alternative
    (:func:`admmrelu.sample_arrangements`).
    """


class MemoryBudgetError(MemoryError):
    """An operation's estimated peak memory exceeds the budget (:mod:`admmrelu.memory`).

    Raised before anything large is allocated.  The message names the operation, the
    estimated bytes, the budget and where it came from, and the remedies (fewer blocks or
    samples, ``dtype="float32"``, another device, ``max_memory=...``).  Attributes:
    ``estimate`` (a :class:`admmrelu.memory.MemoryEstimate`) and ``budget`` (bytes).
    """

    def __init__(self, message, estimate=None, budget=None):
        super().__init__(message)
        self.estimate = estimate
        self.budget = budget


class ConvergenceWarning(UserWarning):
    """A solve stopped before meeting its tolerances."""
