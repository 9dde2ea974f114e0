"""The ADMM's verbose output: a header, one row per check, messages and a footer.

Printing is kept apart from the math: every method returns at once unless verbose.
Column widths and row formats are defined once, in :data:`_COLUMNS`.
"""

import sys

#: (title, width, format) of each table column.
_COLUMNS = (
    ("iter", 7, "d"),
    ("objective", 16, ".9e"),
    ("prim res", 10, ".2e"),
    ("dual res", 10, ".2e"),
    ("gap", 10, ".2e"),
    ("rho", 9, ".2e"),
    ("time", 9, ".2f"),
)


class SolverLog:
    """Writes the per-iteration table to ``stream`` (stdout) when ``verbose``."""

    def __init__(self, verbose: bool, stream=None):
        self.verbose = verbose
        self.stream = stream

    def _print(self, text: str) -> None:
        print(text, file=self.stream or sys.stdout, flush=True)

    def header(self, problem, settings, rho: float) -> None:
        if not self.verbose:
            return
        rule = "-" * (sum(width for _, width, _ in _COLUMNS) + len(_COLUMNS) - 1)
        self._print(rule)
        self._print(f"admmrelu ADMM   {problem!r}")
        self._print(
            f"eps_abs {settings.eps_abs:.1e}  eps_rel {settings.eps_rel:.1e}  "
            f"eps_feas {settings.eps_feas:.1e}  max_iter {settings.max_iter}  "
            f"time_limit {settings.time_limit}  rho {rho:.2e}  alpha {settings.alpha}  "
            f"adaptive_rho {'on' if settings.adaptive_rho else 'off'}  "
            f"anderson {settings.anderson_memory}  polish {'on' if settings.polish else 'off'}"
        )
        self._print(rule)
        self._print(" ".join(f"{title:>{width}}" for title, width, _ in _COLUMNS))

    def row(self, iteration, objective, r_prim, r_dual, gap, rho, elapsed) -> None:
        """One row; objective and gap are estimates at the (possibly infeasible) z."""
        if not self.verbose:
            return
        values = (iteration, objective, r_prim, r_dual, gap, rho, elapsed)
        cells = (
            f"{value:>{width}{spec}}"
            for value, (_, width, spec) in zip(values, _COLUMNS, strict=True)
        )
        self._print(" ".join(cells))

    def message(self, text: str) -> None:
        if self.verbose:
            self._print(f"        {text}")

    def footer(self, result, rho: float) -> None:
        if not self.verbose:
            return
        self._print(
            f"status {result.status}   objective {result.objective:.10g}   dual bound "
            f"{result.dual_bound:.10g}   gap {result.gap:.3e} (relative "
            f"{result.relative_gap:.3e})\niterations {result.iterations}   final rho "
            f"{rho:.2e}   max violation {result.max_violation:.1e}   time: setup "
            f"{result.setup_time:.3f} s, solve {result.solve_time:.3f} s, polish "
            f"{result.polish_time:.3f} s, certificate {result.certificate_time:.3f} s"
        )
