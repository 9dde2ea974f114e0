"""admmrelu: ReLU networks trained to proven global optimality via convex programs.

Build blocks with :func:`sample_arrangements` or :func:`enumerate_arrangements`, the
program with :class:`ConvexReLUProblem`, solve it with ``prob.solve(...)``, and read the
network of Proposition 1 with ``res.network()``.
"""

from .admm import ADMMSolver, solve_path
from .arrangements import Arrangements, sample_arrangements
from .certificate import Certificate, certify
from .enumeration import enumerate_arrangements, estimate_n_blocks
from .estimators import ConvexReLURegressor
from .exceptions import (
    ConvergenceWarning,
    MemoryBudgetError,
    SolverError,
    TooManyArrangementsError,
)
from .global_solve import GlobalSolveResult, solve_global
from .network import ThreeLayerReLUNetwork, TwoLayerReLUNetwork, recover_network
from .problem import ConvexReLUProblem
from .results import History, SolveResult
from .settings import ADMMSettings
from .status import Status

__version__ = "0.1.0"
__all__ = [
    "ADMMSettings",
    "ADMMSolver",
    "Arrangements",
    "Certificate",
    "ConvergenceWarning",
    "ConvexReLUProblem",
    "ConvexReLURegressor",
    "GlobalSolveResult",
    "History",
    "MemoryBudgetError",
    "SolveResult",
    "SolverError",
    "Status",
    "ThreeLayerReLUNetwork",
    "TooManyArrangementsError",
    "TwoLayerReLUNetwork",
    "certify",
    "enumerate_arrangements",
    "estimate_n_blocks",
    "recover_network",
    "sample_arrangements",
    "solve_global",
    "solve_path",
]
