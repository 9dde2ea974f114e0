"""scikit-learn estimators: fit a ReLU network by solving its convex reformulation.

:class:`ConvexReLURegressor` wraps the package's pipeline (append the bias column,
:func:`~admmrelu.sample_arrangements` or :func:`~admmrelu.enumerate_arrangements`,
:class:`~admmrelu.ConvexReLUProblem`, ``solve``, ``res.network()``) in the estimator API,
so it works with ``Pipeline``, ``GridSearchCV``, ``cross_val_score`` and ``clone``.

The only scikit-learn APIs used are public ones (``BaseEstimator``, ``RegressorMixin``,
``validate_data`` (public from scikit-learn 1.6, the minimum in setup.py),
``check_is_fitted``, ``check_random_state``).
"""

import warnings
from collections.abc import Mapping
from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted, validate_data

from .arrangements import sample_arrangements
from .enumeration import enumerate_arrangements
from .exceptions import ConvergenceWarning
from .global_solve import solve_global
from .problem import ConvexReLUProblem
from .status import Status

_SOLVERS = ("admm", "cvxpy")
_DEVICES = ("cpu", "gpu", "auto")
_ARRANGEMENTS = ("generate", "sample", "exact")
#: solver_options keys that have their own estimator parameter.
_OWN_PARAMETERS = {"device": "device", "verbose": "verbose"}


class ConvexReLURegressor(RegressorMixin, BaseEstimator):
    r"""ReLU network regression trained by solving its exact convex reformulation.

    Fits a two-layer network (``depth=2``) ``f(x) = sum_j (x~ . u_j)_+ alpha_j`` or a sum
    of parallel three-layer sub-networks (``depth=3``)
    ``f(x) = sum_k ((x~ W1_k)_+ w2_k)_+ w3_k`` with ``width`` first-layer neurons each,
    where ``x~ = [x, 1]`` when ``fit_intercept`` (the bias is a column of ones, so it is
    part of the first layer and penalised with it).  The estimator minimises the
    mean-loss objective::

        (1 / (2 n_samples)) * ||f(X) - y||^2
            + (beta / 2) * (||W1||_F^2 + ||w2||^2)                (depth 2)
            + (beta / 2) * sum_k (||w2_k||^2 + w3_k^2),  ||W1_k||_F = 1   (depth 3)

    through its convex equivalent over the hyperplane-arrangement blocks ``t``::

        (1 / (2 n_samples)) * || sum_t A_t (w_t - w'_t) - y ||^2
            + beta * sum_t (||w_t||_{2,1} + ||w'_t||_{2,1})
        s.t. every w_t, w'_t in its block's cone,

    which is ``1 / n_samples`` times the package's program
    :class:`~admmrelu.ConvexReLUProblem` at ``beta_problem = n_samples * beta``
    (stored as ``problem_beta_``).  The network of Proposition 1
    (``result_.network()``) attains the convex optimum.

    Parameters
    ----------
    depth : {2, 3}, default=2
        Number of layers.
    width : int, default=1
        First-layer neurons ``m1`` per three-layer sub-network; must be 1 at ``depth=2``.
    n_blocks : int, default=50
        ``arrangements="generate"``: sampled blocks added to those of the seed network in
        the first round; ``"sample"``: the number of blocks to sample (more blocks give a
        richer model and a slower solve).  Ignored with ``arrangements="exact"``.
    beta : float, default=1e-3
        Weight decay in the mean-loss convention above, > 0.  Because the loss is
        averaged over the samples, a given ``beta`` means the same trade-off whatever
        the number of samples (as ``alpha`` does in :class:`sklearn.linear_model.Lasso`);
        the package's own convention (sum loss, :class:`~admmrelu.ConvexReLUProblem`)
        uses ``n_samples * beta``.  ``beta`` is in units of ``y``: rescaling ``y`` by
        ``c`` needs ``beta * c`` for the same fit.
    fit_intercept : bool, default=True
        Append a column of ones to ``X`` (a bias in every first-layer neuron).
    arrangements : {"generate", "sample", "exact"}, default="generate"
        ``"generate"``: :func:`~admmrelu.solve_global`: blocks of a short gradient run on
        the network, then pricing rounds that add the blocks the residual's dual
        constraint violates (the fitted network is never worse than that run's; see
        ``global_lower_bound_``).  ``"sample"``: ``n_blocks`` blocks from
        :func:`~admmrelu.sample_arrangements`; the certificate is then over the sampled
        blocks.  ``"exact"``: every block, from
        :func:`~admmrelu.enumerate_arrangements` (tiny data only: it refuses with
        :class:`~admmrelu.TooManyArrangementsError` when there are too many); the
        fitted network is then the certified *global* optimum of the objective above.
    random_state : int, RandomState instance or None, default=None
        Seed of the block sampling, and of the gradient run and the pricing with
        ``"generate"``.  An int gives the blocks of
        ``sample_arrangements(..., seed=random_state)``, so fits are reproducible.
    solver : {"admm", "cvxpy"}, default="admm"
        admmrelu's ADMM solver, or the cvxpy reference model (Clarabel by default;
        with ``arrangements="sample"`` or ``"exact"`` only).
    device : {"cpu", "gpu", "auto"}, default="cpu"
        Where the ADMM runs; ``"auto"`` picks the GPU when one is usable.  ``"gpu"``
        raises the backend's ``RuntimeError`` (with the reason) at ``fit`` when no usable
        GPU is present.  ``solver="cvxpy"`` runs on the CPU and accepts ``"cpu"`` and
        ``"auto"`` only.
    solver_options : dict or None, default=None
        Passed to ``ConvexReLUProblem.solve``: for ``"admm"`` the fields of
        :class:`~admmrelu.ADMMSettings` (``eps_rel``, ``max_iter``, ``time_limit``,
        ...), for ``"cvxpy"`` those of :func:`admmrelu.reference.solve_cvxpy`
        (``cvxpy_solver``, ``gap_tol``, backend options).  Unknown names raise the
        solver's ``TypeError``.  The dict is not modified.
    verbose : bool, default=False
        Print the solver's log.

    Attributes
    ----------
    network_ : TwoLayerReLUNetwork or ThreeLayerReLUNetwork
        The fitted network; it takes the intercept-augmented input (``predict`` adds
        the column).
    result_ : SolveResult
        The solve, in the package's convention (sum loss, ``problem_beta_``):
        ``result_.objective == n_samples * objective_``.
    arrangements_ : Arrangements
        The blocks that were solved over (built from the augmented ``X``).
    problem_beta_ : float
        ``n_samples * beta``, the ``beta`` of the :class:`~admmrelu.ConvexReLUProblem`
        that was solved.
    objective_ : float
        The mean-loss objective above at the fitted network.
    dual_gap_ : float
        Certified gap of ``objective_`` (same units): the optimum over
        ``arrangements_`` is at least ``objective_ - dual_gap_``.
    global_lower_bound_ : float
        A lower bound (same units) on the objective of *every* network of the
        architecture, whatever its width or training: from the global solve with
        ``"generate"`` (tight where its exact oracle ran, else loose), the certified
        bound with ``"exact"``, and -inf with ``"sample"`` (nothing global is known).
    globally_optimal_ : bool
        True only when ``objective_`` is certified globally optimal: ``"exact"`` blocks
        with an optimal solve, or ``"generate"`` whose exact oracle found no violated
        block.
    n_iter_ : int
        Solver iterations.
    n_features_in_ : int
        Number of features seen in ``fit`` (without the intercept column).
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Feature names, when ``X`` has string column names.

    Raises
    ------
    ValueError or TypeError
        At ``fit``, for a bad parameter (the message names it and the fix) or bad data.
    RuntimeError
        At ``fit`` with ``device="gpu"`` when no usable GPU is present.

    Warns
    -----
    ConvergenceWarning
        When the solve's status is not ``"optimal"`` (the network is still the
        returned, feasible point; ``result_`` has the details).

    Notes
    -----
    Only scalar targets and the squared loss are supported.  No scaling is applied:
    the certificate is for the data as passed.  Standardise ``X`` (for example with
    ``make_pipeline(StandardScaler(), ConvexReLURegressor())``) so that the features
    and the ones column have comparable scales; otherwise the penalty, which treats all
    first-layer weights alike, favours the large-scale columns.  See docs/estimators.md.

    Examples
    --------
    >>> import numpy as np
    >>> from admmrelu import ConvexReLURegressor
    >>> rng = np.random.default_rng(0)
    >>> X = rng.standard_normal((40, 2))
    >>> y = np.maximum(X[:, 0], 0) - 0.5 * X[:, 1]
    >>> est = ConvexReLURegressor(n_blocks=30, beta=1e-4, random_state=0).fit(X, y)
    >>> str(est.result_.status), round(est.score(X, y), 3)
    ('optimal', 1.0)
    """

    def __init__(
        self,
        *,
        depth=2,
        width=1,
        n_blocks=50,
        beta=1e-3,
        fit_intercept=True,
        arrangements="generate",
        random_state=None,
        solver="admm",
        device="cpu",
        solver_options=None,
        verbose=False,
    ):
        self.depth = depth
        self.width = width
        self.n_blocks = n_blocks
        self.beta = beta
        self.fit_intercept = fit_intercept
        self.arrangements = arrangements
        self.random_state = random_state
        self.solver = solver
        self.device = device
        self.solver_options = solver_options
        self.verbose = verbose

    def fit(self, X, y):
        """Build the blocks from ``X``, solve the convex program and recover the network.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data, without a bias column (``fit_intercept`` adds it).
        y : array-like of shape (n_samples,)
            Targets.  One output only.

        Returns
        -------
        self : ConvexReLURegressor
        """
        options = self._check_params()
        _reject_multi_output(y)
        X, y = validate_data(self, X, y, dtype=np.float64, y_numeric=True)
        X1 = self._augment(X)
        n_samples = X1.shape[0]

        self.problem_beta_ = n_samples * float(self.beta)
        with warnings.catch_warnings():  # one warning, from the estimator, below
            warnings.simplefilter("ignore", ConvergenceWarning)
            result, self.arrangements_ = self._solve(X1, y, options)
        exact = self.arrangements == "exact" and result.status == Status.OPTIMAL
        if self.arrangements == "generate":
            lower, self.globally_optimal_ = result.global_lower_bound, result.globally_optimal
        else:
            lower, self.globally_optimal_ = (result.dual_bound if exact else -np.inf), exact
        self.global_lower_bound_ = lower / n_samples
        self.result_ = result
        self.network_ = result.network()
        self.objective_ = result.objective / n_samples
        self.dual_gap_ = result.gap / n_samples
        self.n_iter_ = int(result.iterations)
        if result.status != Status.OPTIMAL:
            warnings.warn(
                _convergence_message(result, self.solver, self.arrangements),
                ConvergenceWarning,
                stacklevel=2,
            )
        return self

    def predict(self, X):
        """Output of the fitted network.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Data with the features seen in ``fit`` (without the bias column).

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
        """
        check_is_fitted(self)
        X = validate_data(self, X, dtype=np.float64, reset=False)
        return self.network_.predict(self._augment(X))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = False
        tags.target_tags.single_output = True
        return tags

    # -------------------------------------------------------------- helpers
    def _augment(self, X):
        """X with a column of ones appended when ``fit_intercept``."""
        if not self.fit_intercept:
            return X
        return np.hstack([X, np.ones((X.shape[0], 1))])

    def _solve(self, X1, y, options):
        """(result, blocks): the global solve ("generate"), or one solve over sampled or
        enumerated blocks."""
        if self.arrangements == "generate":
            result = solve_global(
                X1,
                y,
                self.problem_beta_,
                depth=self.depth,
                width=self.width if self.depth == 3 else None,
                n_blocks=self.n_blocks,
                seed=self._seed(),
                **options,
            )
            return result, result.arrangements
        blocks = self._build_arrangements(X1)
        problem = ConvexReLUProblem(X1, y, self.problem_beta_, blocks)
        return problem.solve(solver=self.solver, **options), blocks

    def _build_arrangements(self, X1):
        if self.arrangements == "exact":
            return enumerate_arrangements(X1, depth=self.depth, width=self.width)
        return sample_arrangements(
            X1, self.n_blocks, depth=self.depth, width=self.width, seed=self._seed()
        )

    def _seed(self):
        """The sampling seed: the int itself, or an int drawn from a RandomState."""
        if self.random_state is None or isinstance(self.random_state, Integral):
            return self.random_state
        return int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))

    def _check_params(self) -> dict:
        """Validate the parameters; return the options for ``problem.solve``."""
        depth, width = self.depth, self.width
        if not _is_int(depth) or depth not in (2, 3):
            raise ValueError(f"depth must be 2 or 3; got depth={depth!r}")
        if not _is_int(width) or width < 1:
            raise ValueError(f"width must be an integer >= 1; got width={width!r}")
        if depth == 2 and width != 1:
            raise ValueError(
                f"width={width} needs depth=3: width is the number of first-layer neurons "
                "per three-layer sub-network, and depth=2 needs width=1"
            )
        if not _is_int(self.n_blocks) or self.n_blocks < 1:
            raise ValueError(f"n_blocks must be an integer >= 1; got n_blocks={self.n_blocks!r}")
        beta = self.beta
        if isinstance(beta, bool) or not isinstance(beta, Real) or not np.isfinite(beta):
            raise ValueError(f"beta must be a finite number > 0; got beta={beta!r}")
        if beta <= 0:
            raise ValueError(
                f"beta must be > 0 (the convex program needs some weight decay); got "
                f"beta={beta!r}; use a small value such as 1e-6 for a near-interpolating fit"
            )
        if not isinstance(self.fit_intercept, bool | np.bool_):
            raise ValueError(f"fit_intercept must be True or False; got {self.fit_intercept!r}")
        if self.arrangements not in _ARRANGEMENTS:
            raise ValueError(
                "arrangements must be 'generate', 'sample' or 'exact'; got "
                f"arrangements={self.arrangements!r}"
            )
        rs = self.random_state
        if not (rs is None or _is_int(rs) or isinstance(rs, np.random.RandomState)):
            raise ValueError(
                "random_state must be None, an int or a numpy RandomState; got "
                f"random_state={rs!r}"
            )
        if _is_int(rs):
            check_random_state(rs)  # the range RandomState accepts: 0 <= seed < 2**32
        if self.solver not in _SOLVERS:
            raise ValueError(f"solver must be 'admm' or 'cvxpy'; got solver={self.solver!r}")
        if self.device not in _DEVICES:
            raise ValueError(f"device must be 'cpu', 'gpu' or 'auto'; got device={self.device!r}")
        if self.solver == "cvxpy" and self.device == "gpu":
            raise ValueError(
                "device='gpu' needs solver='admm': the cvxpy reference runs on the CPU; "
                "use device='cpu' with solver='cvxpy'"
            )
        if self.arrangements == "generate" and self.solver != "admm":
            raise ValueError(
                "arrangements='generate' needs solver='admm' (the rounds warm-start the "
                "ADMM); use arrangements='sample' or 'exact' with solver='cvxpy'"
            )
        if not isinstance(self.verbose, bool | np.bool_ | Integral):
            raise ValueError(f"verbose must be True or False; got verbose={self.verbose!r}")
        return self._solve_options()

    def _solve_options(self) -> dict:
        given = self.solver_options
        if given is None:
            given = {}
        if not isinstance(given, Mapping):
            raise ValueError(
                "solver_options must be a dict of solver settings or None; got "
                f"{type(given).__name__}"
            )
        for key in given:
            if key in _OWN_PARAMETERS:
                raise ValueError(
                    f"solver_options[{key!r}] is set by the estimator parameter "
                    f"{_OWN_PARAMETERS[key]!r}; pass {key}=... to ConvexReLURegressor instead"
                )
        options = dict(given)  # a copy: never modify the caller's dict
        options["verbose"] = bool(self.verbose)
        if self.solver == "admm":
            options["device"] = self.device
        return options


def _is_int(value) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool)


def _reject_multi_output(y):
    """A clear error for 2-D targets with more than one column."""
    if y is None or isinstance(y, str):
        return  # validate_data reports these
    shape = np.asarray(y).shape
    if len(shape) == 2 and shape[1] > 1:
        raise ValueError(
            f"y has shape {shape}: ConvexReLURegressor fits one output (shape (n_samples,)); "
            "fit one estimator per column, e.g. with "
            "sklearn.multioutput.MultiOutputRegressor(ConvexReLURegressor())"
        )


def _convergence_message(result, solver, arrangements) -> str:
    remedies = (
        "raise solver_options['max_iter'] or 'time_limit', or loosen 'eps_rel'"
        if solver == "admm"
        else "try solver_options={'cvxpy_solver': 'CLARABEL'} or tighten its tolerances"
    )
    if arrangements == "generate":
        remedies = "raise solver_options['max_rounds'] (the global solve's rounds), " + remedies
    return (
        f"ConvexReLURegressor: the solve ended with status '{result.status}' after "
        f"{result.iterations} iterations; certified gap {result.gap:.3e} (relative "
        f"{result.relative_gap:.3e}).  The fitted network is the solver's feasible point, "
        f"not certified optimal to its tolerance: {remedies}, or increase beta."
    )
