"""Exceptions and warnings raised by admmrelu."""


class SolverError(RuntimeError):
    """A backend solver failed in a way that left no usable point."""


class TooManyArrangementsError(ValueError):
    """Exact enumeration would produce more blocks (or bytes) than allowed.

    The message gives the estimate, the limit and the alternative
    (:func:`admmrelu.sample_arrangements`).
    """


class ConvergenceWarning(UserWarning):
    """A solve stopped before meeting its tolerances."""
