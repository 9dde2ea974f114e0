"""Command line: ``python -m admmrelu demo`` (no math here, only orchestration and printing)."""

import argparse
import sys
import time

import numpy as np

from .arrangements import sample_arrangements
from .enumeration import enumerate_arrangements
from .problem import ConvexReLUProblem


def _diabetes():
    """scikit-learn's bundled diabetes data (442 x 10), standardised, with a bias column."""
    from sklearn.datasets import load_diabetes

    X, y = load_diabetes(return_X_y=True)
    X = (X - X.mean(axis=0)) / X.std(axis=0)
    y = (y - y.mean()) / y.std()
    return np.hstack([X, np.ones((X.shape[0], 1))]), y


def _report(title, prob, res, X, y):
    net = res.network()
    print(f"\n== {title}")
    print(f"   {prob!r}")
    print(f"   beta = {prob.beta:.4g} ({prob.beta / prob.beta_max:.2f} x beta_max)")
    print(
        f"   status {res.status}   objective {res.objective:.10g}   solver {res.solver}   "
        f"iterations {res.iterations}"
    )
    print(
        f"   time: setup {res.setup_time:.2f} s, solve {res.solve_time:.2f} s, "
        f"certificate {res.certificate_time:.2f} s"
    )
    print(
        f"   certificate: dual bound {res.dual_bound:.10g}   gap {res.gap:.3e} "
        f"(relative {res.relative_gap:.3e})   max cone violation {res.max_violation:.1e}"
    )
    scope = (
        "every network of this architecture (arrangements enumerated exactly)"
        if res.arrangements_exact
        else "the sampled blocks only (a restricted problem)"
    )
    print(f"   the bound holds for {scope}")
    size = (
        f"{net.n_neurons} hidden neurons"
        if net.depth == 2
        else f"{net.n_subnetworks} sub-networks of width {net.W1.shape[2]}"
    )
    print(
        f"   recovered network: {size}; its objective {net.objective(X, y, prob.beta):.10g}, "
        f"training RMSE {np.sqrt(np.mean((net.predict(X) - y) ** 2)):.4f}"
    )
    norms = np.linalg.norm(res.weights, axis=(2, 3)).ravel()
    print(
        f"   {np.count_nonzero(norms > 1e-3 * norms.max())} of them carry a block norm above "
        "1e-3 x the largest (interior-point solutions are dense)"
    )


def _problem_at_fraction(X, y, arrangements, fraction):
    """The problem on these blocks with ``beta = fraction * beta_max``."""
    prob = ConvexReLUProblem(X, y, 1.0, arrangements)
    return prob.with_beta(fraction * prob.beta_max)


def demo(args) -> int:
    """Solve sampled two- and three-layer problems on diabetes, and a certified tiny one."""
    X, y = _diabetes()
    if args.solver == "admm":
        solve = dict(solver="admm", device=args.device)
    else:
        solve = dict(solver="cvxpy", cvxpy_solver=args.solver)
    print(f"admmrelu demo: scikit-learn diabetes, n={X.shape[0]}, d={X.shape[1]} (with bias)")
    for depth, width in ((2, None), (3, 2)):
        start = time.perf_counter()
        arr = sample_arrangements(X, args.blocks, depth=depth, width=width, seed=args.seed)
        prob = _problem_at_fraction(X, y, arr, args.beta_fraction)
        res = prob.solve(**solve)
        label = "two-layer" if depth == 2 else "three-layer, width 2"
        _report(
            f"{label}, {arr.n_blocks} sampled blocks ({time.perf_counter() - start:.1f} s)",
            prob,
            res,
            X,
            y,
        )

    Xs, ys = X[:: X.shape[0] // 12][:12, [2, 8, 10]], y[:: X.shape[0] // 12][:12]
    arr = enumerate_arrangements(Xs, depth=2)
    prob = _problem_at_fraction(Xs, ys, arr, args.beta_fraction)
    _report(
        f"two-layer on 12 samples x (bmi, s5, bias): all {arr.n_blocks} arrangements enumerated",
        prob,
        prob.solve(**solve),
        Xs,
        ys,
    )
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="admmrelu", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p_demo = sub.add_parser("demo", help="solve small problems on built-in data and certify them")
    p_demo.add_argument("--blocks", type=int, default=40, help="sampled blocks (default 40)")
    p_demo.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    p_demo.add_argument(
        "--beta-fraction", type=float, default=0.1, help="beta / beta_max (default 0.1)"
    )
    p_demo.add_argument(
        "--solver",
        default="admm",
        choices=("admm", "CLARABEL", "ECOS", "SCS"),
        help="admmrelu's ADMM (default) or a cvxpy solver, for comparison",
    )
    p_demo.add_argument(
        "--device",
        default="cpu",
        choices=("cpu", "gpu", "auto"),
        help="where the ADMM iterations run (default cpu; gpu needs cupy and a CUDA GPU)",
    )
    args = parser.parse_args(argv)
    if args.blocks < 1 or not 0 < args.beta_fraction:
        parser.error("--blocks must be >= 1 and --beta-fraction > 0")
    if args.device != "cpu" and args.solver != "admm":
        parser.error("--device applies to the ADMM solver only; drop it or use --solver admm")
    return demo(args)


if __name__ == "__main__":
    sys.exit(main())
