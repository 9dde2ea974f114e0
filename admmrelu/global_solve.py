"""The global solve: blocks from a short non-convex run, then pricing rounds.

``solve_global`` alternates warm-started solves of the program over a working set of
blocks with pricing (:mod:`admmrelu.pricing`) of the solution's residual, adding the
blocks whose dual constraint it violates, until no violated block is found or a limit
is met.  This is column generation on the convex program over *all* blocks: each round's
optimum is at most the previous one, and the first is at most the seed network's
objective (:mod:`admmrelu.lifting`).

What the result certifies (never more):

* ``dual_bound`` / ``gap``: the restricted certificate, over the final blocks.
* ``global_lower_bound``: a lower bound on the objective of *every* network of the
  architecture, of any width, from weak duality (7) with an upper bound on the dual
  norm over all blocks: exact where :class:`~admmrelu.pricing.ExactOracle` ran, else the
  cheap :func:`~admmrelu.pricing.dual_norm_upper_bound` (valid, usually loose).
* ``globally_optimal``: True only when the exact oracle found no violated block and the
  global gap meets the solver's gap tolerance.
"""

import dataclasses
import math
import time
from dataclasses import dataclass, field

import numpy as np

from ._validation import (
    as_float_matrix,
    as_float_vector,
    check_depth_width,
    check_int,
    check_positive_float,
)
from .admm import _max_polish_variables
from .arrangements import Arrangements, sample_arrangements
from .certificate import scaled_dual_bound
from .lifting import lift_network
from .nonconvex import train_network
from .pricing import (
    ExactOracle,
    ascent_pricing,
    block_keys,
    dual_norm_upper_bound,
    units_of_solution,
)
from .problem import ConvexReLUProblem
from .results import SolveResult
from .settings import ADMMSettings
from .status import Status

#: Share of ``time_limit`` the seed's gradient run may use.
_SEED_TIME_SHARE = 0.25
#: The seed's units by default: as many as a polish of one block per unit can take at
#: _SEED_POLISH_FLOPS per interior-point iteration, within [_FEWEST_SEED_UNITS,
#: _MOST_SEED_UNITS].  Every unit of the seed is a block that the first round's finish
#: polishes: 200 units at (5000, 50) made a dense polish of 6000 variables, minutes per
#: round; 200 at (1000, 20) polish by Woodbury in about 10 s.
_SEED_POLISH_FLOPS = 1e10
_FEWEST_SEED_UNITS, _MOST_SEED_UNITS = 50, 200
#: Relative tolerance of the rounds before the last: their solves and the ascent pricing
#: work to it, and only once it finds nothing do the rounds tighten to ``eps_rel`` and
#: ``pricing_tol`` (the exact oracle runs only then).
_ROUND_TOL = 1e-3


@dataclass(frozen=True, repr=False)
class GlobalSolveResult(SolveResult):
    """A :class:`~admmrelu.results.SolveResult` over the final blocks, plus what the
    global solve certifies about *all* blocks.

    Attributes (besides those of SolveResult)
    ----------
    arrangements : Arrangements
        The final working set of blocks (``weights`` is over these).
    global_lower_bound : float
        Lower bound on the objective of every network of the architecture (any width):
        ``d(c v)`` of weak duality (7) at the best round's residual, with an upper bound on
        the dual norm over all blocks.  Always valid; exact-oracle rounds make it tight.
    globally_optimal : bool
        True only when the exact oracle (every block enumerated) found no violated block
        and ``objective - global_lower_bound`` meets the gap tolerance.
    seed_objective : float
        Objective of the seed network (inf without one); ``objective`` is never above it.
    pricing_ratio : float
        At the final residual, the largest ``|v^T ((X W1)_+ w2)_+| / beta`` found by pricing
        (exact when ``oracle == "exact"``, else a lower estimate); <= 1 (+tolerance) means
        no violated block was found.
    oracle : str
        ``"exact"`` when the final pricing was the exact oracle's, else ``"ascent"``.
    rounds : tuple of dict
        One record per round: time (s since the start), n_blocks, objective, gap,
        global_lower_bound, pricing_ratio, new_blocks, oracle.
    total_time : float
        Wall time of the whole global solve (seed run included).
    """

    arrangements: Arrangements | None = None
    global_lower_bound: float = -math.inf
    globally_optimal: bool = False
    seed_objective: float = math.inf
    pricing_ratio: float = math.nan
    oracle: str = "ascent"
    rounds: tuple = field(default=())
    total_time: float = 0.0

    @property
    def global_relative_gap(self) -> float:
        """``(objective - global_lower_bound) / objective`` (0 when the objective is 0)."""
        if self.objective <= 0:
            return 0.0
        return (self.objective - self.global_lower_bound) / self.objective

    def __repr__(self) -> str:
        return (
            f"GlobalSolveResult(status={self.status.value!r}, objective={self.objective:.10g}, "
            f"global_lower_bound={self.global_lower_bound:.10g}, "
            f"globally_optimal={self.globally_optimal}, n_blocks="
            f"{self.arrangements.n_blocks if self.arrangements is not None else 0}, "
            f"rounds={len(self.rounds)})"
        )


def solve_global(
    X,
    y,
    beta,
    depth=2,
    width=None,
    *,
    time_limit=None,
    seed=0,
    n_blocks=50,
    seed_network=True,
    seed_units=None,
    seed_steps=1000,
    max_rounds=50,
    blocks_per_round=None,
    exact_oracle="auto",
    oracle_max_blocks=5000,
    pricing_starts=256,
    pricing_tol=1e-5,
    verbose=False,
    **solver_options,
) -> GlobalSolveResult:
    """Solve the convex program over all blocks by generating them (column generation).

    Minimises the convex objective (13) over every block of X, which equals the
    non-convex objective's global minimum over networks of enough units
    (formulation.md §4): ``0.5 ||f(X) - y||^2 + beta/2 (||W1||_F^2 + ||w2||^2)`` at
    depth 2, objective (5) at depth 3.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        Training data; append a column of ones for a bias.
    y : array-like of shape (n_samples,)
    beta : float > 0
    depth : {2, 3}
    width : int or None
        First-layer neurons per sub-network (depth 3).
    time_limit : float or None
        Seconds for the whole solve (seed run, rounds, pricing).
    seed : int
        Seed of the gradient run, the sampled blocks and the pricing starts.
    n_blocks : int
        Sampled blocks added to the seed's in the first round (0 for none).
    seed_network : bool or network
        True: train a network by a short full-batch Adam run
        (:func:`admmrelu.nonconvex.train_network`) and start from its blocks and point;
        a TwoLayerReLUNetwork / ThreeLayerReLUNetwork: start from it; False: no seed.
    seed_units : int or None
        Neurons (depth 2) or sub-networks (depth 3) of the seed run; None: 200, fewer
        (down to 50) where the first round's polish of that many blocks would be costly
        (about 60 at n = 5000, d = 50).
    seed_steps : int
        Adam steps of the seed run.
    max_rounds : int
        Most solve-and-price rounds.
    blocks_per_round : int or None
        Most blocks added per round; None: ``max(20, n_blocks of the working set / 2)``.
    exact_oracle : {"auto", True, False}
        Exact pricing over every enumerated block.  "auto": when the enumeration's count
        bound is at most ``oracle_max_blocks`` (see ExactOracle.affordable); True:
        always (the enumeration may take long, or refuse with TooManyArrangementsError
        above 1 GiB of masks); False: never (globally_optimal stays False).
    pricing_starts : int
        Random starts of the ascent pricing per round.
    pricing_tol : float
        A block found by the ascent counts as violated when its dual norm exceeds
        ``beta (1 + pricing_tol)``.  A residual whose largest dual norm over all blocks
        is ``r beta`` gives a global lower bound within about ``(r - 1)`` relative of the
        objective, so this is roughly the global relative gap the rounds aim at.  The
        exact oracle uses the solver's own slack (``eps_rel``).
    verbose : bool
        One line per round.
    **solver_options
        Options of ``ConvexReLUProblem.solve`` (solver="admm" settings: eps_rel, device,
        dtype, max_iter, ...); ``time_limit`` and ``warm_start`` are set per round.

    Returns
    -------
    GlobalSolveResult
    """
    start = time.perf_counter()
    X = as_float_matrix(X)
    y = as_float_vector(y, X.shape[0])
    beta = check_positive_float(beta, "beta")
    depth, width = check_depth_width(depth, width)
    n_blocks = check_int(n_blocks, "n_blocks", minimum=0)
    max_rounds = check_int(max_rounds, "max_rounds", minimum=1)
    pricing_starts = check_int(pricing_starts, "pricing_starts", minimum=0)
    oracle_max_blocks = check_int(oracle_max_blocks, "oracle_max_blocks", minimum=1)
    if blocks_per_round is not None:
        blocks_per_round = check_int(blocks_per_round, "blocks_per_round", minimum=1)
    pricing_tol = check_positive_float(pricing_tol, "pricing_tol", allow_zero=True)
    if exact_oracle not in ("auto", True, False):
        raise ValueError(f"exact_oracle must be 'auto', True or False; got {exact_oracle!r}")
    if "warm_start" in solver_options:
        raise TypeError("solve_global warm-starts each round itself; drop warm_start=")
    if time_limit is not None:
        time_limit = check_positive_float(time_limit, "time_limit")
    deadline = None if time_limit is None else start + time_limit
    settings = ADMMSettings.from_options(
        {k: v for k, v in solver_options.items() if k in ADMMSettings.__dataclass_fields__}
    )
    rng = np.random.default_rng(seed)

    seed_net = _seed_network(
        X, y, beta, depth, width, seed_network, seed_units, seed_steps, rng, time_limit
    )
    seed_objective = math.inf if seed_net is None else seed_net.objective(X, y, beta)
    arrangements, U = _initial_blocks(X, depth, width, seed_net, n_blocks, rng)

    use_oracle = exact_oracle is True or (
        exact_oracle == "auto" and ExactOracle.affordable(X, depth, width, oracle_max_blocks)
    )
    pricer = _Pricer(
        X, beta, depth, width, rng, pricing_starts, pricing_tol, settings.eps_rel,
        oracle_max_blocks if use_oracle else None,
    )  # fmt: skip
    priced = np.zeros(arrangements.n_blocks, dtype=bool)  # blocks pricing added: kept

    def tolerance(result):
        """The gap that "optimal" needs at the user's tolerances (as the ADMM's)."""
        return settings.eps_abs * float(np.mean(y * y)) + settings.eps_rel * result.objective

    rounds, best_lower, result = [], 0.0, None
    pricing, gamma_all, used = None, math.inf, "ascent"
    loose = settings.eps_rel < _ROUND_TOL or pricing_tol < _ROUND_TOL
    for round_index in range(max_rounds):
        problem = ConvexReLUProblem(X, y, beta, arrangements)
        warm = _warm_start(problem, U)
        left = None if deadline is None else max(deadline - time.perf_counter(), 1e-3)
        options = dict(solver_options)
        if loose:
            options["eps_rel"] = max(settings.eps_rel, _ROUND_TOL)
        result = problem.solve(warm_start=warm, time_limit=left, **options)
        result = _no_worse_than(problem, result, U)
        # price the restricted dual solution (the point that certified the round); the
        # residual of the returned point when nothing was certified
        v = result.dual_point
        if v is None:
            v = y - problem.forward(result.weights)
        limit = blocks_per_round or max(20, arrangements.n_blocks // 2)
        round_pricer = pricer.at(v, result, arrangements, limit, deadline)
        pricing, gamma_all, used = round_pricer.price(tight=not loose)
        if loose and pricing.arrangements is None and result.gap <= tolerance(result):
            # the loose round already meets the tolerance: tighten without a re-solve
            loose = False
            pricing, gamma_all, used = round_pricer.price(tight=True)
        bound = max(scaled_dual_bound(v, y, beta, gamma_all)[0], 0.0)
        best_lower = max(best_lower, bound)
        new = 0 if pricing.arrangements is None else pricing.arrangements.n_blocks
        rounds.append(
            dict(
                round=round_index,
                time=time.perf_counter() - start,
                n_blocks=arrangements.n_blocks,
                objective=result.objective,
                gap=result.gap,
                status=str(result.status),
                global_lower_bound=best_lower,
                pricing_ratio=pricing.best_ratio,
                new_blocks=new,
                oracle=used,
            )
        )
        if verbose:
            _print_round(rounds[-1])
        out_of_time = deadline is not None and time.perf_counter() >= deadline
        if out_of_time or round_index == max_rounds - 1 or (new == 0 and not loose):
            break
        if new == 0:  # the loose rounds found nothing more: tighten, same blocks
            loose, U = False, result.weights
            continue
        arrangements, U, priced = _next_working_set(
            arrangements, result.weights, priced, pricing.arrangements
        )

    if loose and result.status == Status.OPTIMAL and result.gap > tolerance(result):
        # a limit stopped the rounds before the last, tight one: optimal to _ROUND_TOL only
        result = dataclasses.replace(result, status=Status.OPTIMAL_INACCURATE)
    globally_optimal = bool(
        used == "exact"
        and pricing.arrangements is None
        and result.status == Status.OPTIMAL
        and result.objective - best_lower <= tolerance(result)
    )
    return GlobalSolveResult(
        **{f.name: getattr(result, f.name) for f in dataclasses.fields(SolveResult)},
        arrangements=arrangements,
        global_lower_bound=best_lower,
        globally_optimal=globally_optimal,
        seed_objective=seed_objective,
        pricing_ratio=pricing.best_ratio,
        oracle=used,
        rounds=tuple(rounds),
        total_time=time.perf_counter() - start,
    )


class _Pricer:
    """Pricing of the rounds: the ascent, then (tight rounds only, when it finds nothing
    and the oracle is affordable) the exact oracle, enumerated on first use."""

    def __init__(self, X, beta, depth, width, rng, starts, tol, eps_rel, oracle_max_blocks):
        self.X, self.beta, self.depth, self.width, self.rng = X, beta, depth, width, rng
        self.starts, self.tol, self.eps_rel = starts, tol, eps_rel
        self.oracle_max_blocks = oracle_max_blocks  # None: no exact oracle
        self.oracle = None
        self.v = self.result = self.arrangements = self.limit = self.deadline = None

    def at(self, v, result, arrangements, limit, deadline) -> "_Pricer":
        """Point the pricer at a round: its dual point v, result and blocks."""
        self.v, self.result, self.arrangements = v, result, arrangements
        self.limit, self.deadline = limit, deadline
        return self

    def price(self, tight):
        """(PricingResult, gamma_all, oracle used): gamma_all bounds the dual norm of v
        over every block (exact from the oracle, else dual_norm_upper_bound)."""
        X, v, arr = self.X, self.v, self.arrangements
        found = ascent_pricing(
            X, v, self.beta, self.depth, self.width, current=arr,
            active_units=units_of_solution(self.result.weights, arr.signs, self.depth),
            n_starts=self.starts, max_new=self.limit, rng=self.rng,
            tol=self.tol if tight else max(self.tol, _ROUND_TOL),
        )  # fmt: skip
        out_of_time = self.deadline is not None and time.perf_counter() >= self.deadline
        if (
            self.oracle_max_blocks is None
            or not tight
            or found.arrangements is not None
            or out_of_time
        ):
            return found, dual_norm_upper_bound(X, v, self.depth), "ascent"
        if self.oracle is None:
            self.oracle = ExactOracle(X, self.depth, self.width, self.oracle_max_blocks)
        found, gamma = self.oracle.price(
            v, self.beta, current=arr, max_new=self.limit, tol=self.eps_rel,
            deadline=self.deadline,
        )  # fmt: skip
        return found, gamma, "exact"


def _seed_network(X, y, beta, depth, width, seed_network, seed_units, steps, rng, time_limit):
    """The seed: a given network, None, or a short Adam run's network."""
    if seed_network is False or seed_network is None:
        return None
    if seed_network is not True:
        if getattr(seed_network, "depth", None) != depth:
            raise ValueError(
                f"seed_network must be a depth-{depth} network (TwoLayerReLUNetwork or "
                f"ThreeLayerReLUNetwork), True or False; got {type(seed_network).__name__}"
            )
        return seed_network
    if seed_units is None:
        n, d = X.shape
        fit = _max_polish_variables(n, _SEED_POLISH_FLOPS) // (d * width)
        units = int(np.clip(fit, _FEWEST_SEED_UNITS, _MOST_SEED_UNITS))
    else:
        units = check_int(seed_units, "seed_units", minimum=1)
    steps = check_int(steps, "seed_steps", minimum=1)
    budget = None if time_limit is None else _SEED_TIME_SHARE * time_limit
    network, _ = train_network(
        X, y, beta, depth=depth, width=width, n_units=units, steps=steps,
        seed=rng, time_limit=budget,
    )  # fmt: skip
    return network


def _initial_blocks(X, depth, width, seed_net, n_blocks, rng):
    """The seed's blocks (with its lifted point) and ``n_blocks`` sampled ones."""
    seed_arr, seed_U = (None, None) if seed_net is None else lift_network(X, seed_net)
    sampled = None
    if n_blocks > 0 or seed_arr is None:
        sampled = sample_arrangements(
            X, max(n_blocks, 1), depth=depth, width=width if depth == 3 else None, seed=rng
        )
    if seed_arr is None:
        return sampled, np.zeros((2, sampled.n_blocks, width, X.shape[1]))
    if sampled is None:
        return seed_arr, seed_U
    return _extended(seed_arr, seed_U, sampled)


def _extended(arrangements, U, new):
    """``arrangements`` then the blocks of ``new`` not among them, and the point U over
    them with the new blocks at zero."""
    merged = union(arrangements, new)
    padded = np.zeros((2, merged.n_blocks, *U.shape[2:]))
    padded[:, : arrangements.n_blocks] = U
    return merged, padded


def union(first: Arrangements, second: Arrangements) -> Arrangements:
    """``first``'s blocks, in order, then those of ``second`` not among them."""
    known = set(block_keys(first))
    extra = [t for t, key in enumerate(block_keys(second)) if key not in known]
    if not extra:
        return first
    second = second.subset(np.array(extra))

    def cat(a, b, axis):
        return None if a is None or b is None else np.concatenate([a, b], axis=axis)

    return Arrangements(
        masks1=cat(first.masks1, second.masks1, 1),
        signs=cat(first.signs, second.signs, 0),
        masks2=cat(first.masks2, second.masks2, 1),
        generators=cat(first.generators, second.generators, 0),
        exact=False,
        n_draws=first.n_draws + second.n_draws,
    )


def _next_working_set(arrangements, weights, priced, new):
    """The blocks kept (those pricing added, and the solution's non-zero ones) with their
    weights, then the new blocks at zero; and which of them pricing added.

    Priced blocks are never dropped: with a degenerate optimum, dropping a zero block
    that another solution of the same objective uses lets two groups of blocks take
    turns being "violated" (seen: 1e-4 violations, alternating forever)."""
    kept_mask = priced | (np.linalg.norm(weights, axis=3).sum(axis=(0, 2)) > 0)
    if not kept_mask.any():
        kept_mask[:] = True
    kept = arrangements.subset(np.flatnonzero(kept_mask))
    merged, U = _extended(kept, weights[:, kept_mask], new)
    now_priced = np.ones(merged.n_blocks, dtype=bool)
    now_priced[: kept.n_blocks] = priced[kept_mask]
    return merged, U, now_priced


def _warm_start(problem, U):
    """A SolveResult carrying the point U (previous round's solution, or the seed's)."""
    return SolveResult(
        status=Status.OPTIMAL_INACCURATE,
        objective=problem.objective(U),
        dual_bound=-math.inf,
        gap=math.inf,
        weights=U,
        signs=problem.arrangements.signs,
        depth=problem.depth,
        arrangements_exact=False,
        max_violation=problem.constraint_violation(U),
        dual_ratio=math.nan,
        iterations=0,
        setup_time=0.0,
        solve_time=0.0,
        polish_time=0.0,
        certificate_time=0.0,
        solver="warm_start",
        solver_status="warm_start",
    )


def _no_worse_than(problem, result, U):
    """``result``, or the point U when U (feasible: a lifted network or an earlier
    round's solution) has the lower objective (a solve cut short by a limit)."""
    objective = problem.objective(U)
    if not objective < result.objective:
        return result
    return dataclasses.replace(
        result,
        weights=U,
        objective=objective,
        gap=objective - result.dual_bound,
        max_violation=problem.constraint_violation(U),
    )


def _print_round(r):
    print(
        f"round {r['round']:3d}  blocks {r['n_blocks']:6d}  objective {r['objective']:.8e}  "
        f"gap {r['gap']:.2e}  lower bound {r['global_lower_bound']:.6e}  "
        f"pricing {r['pricing_ratio']:.4f} ({r['oracle']})  new {r['new_blocks']:4d}  "
        f"{r['time']:7.2f} s"
    )
