"""bench/vs_adam.py: its harness runs end to end (admmrelu only, so no torch needed), its
UCI loader reads the shared files as a plain parse does, and its torch runs score the
same objective as admmrelu's network classes."""

import csv
import importlib
import json
import math
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"
#: The project's shared data: ../shared/data beside the repository (developers and CI).
SHARED_DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"


@pytest.fixture(scope="module")
def bench():
    """The modules bench/vs_adam.py and bench/_datasets.py (bench/ on sys.path meanwhile)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(BENCH))
        yield importlib.import_module("vs_adam"), importlib.import_module("_datasets")


@pytest.mark.slow
def test_quick_no_torch_run_writes_consistent_results(bench, tmp_path):
    vs_adam, _ = bench
    assert vs_adam.main(["--quick", "--no-torch", "--no-plot", "--out", str(tmp_path)]) == 0
    table = (tmp_path / "results.md").read_text()
    assert json.loads((tmp_path / "trajectories.json").read_text()) == {"cases": {}}
    data = json.loads((tmp_path / "results.json").read_text())
    assert {"settings", "machine", "cases"} <= set(data)
    assert data["settings"]["torch"] is False
    assert data["machine"]["git_commit"] and data["machine"]["versions"]["admmrelu"]
    (case,) = data["cases"]
    assert case["name"] == "teacher2-60x4" and case["name"] in table
    assert "baselines" not in case
    admm = case["admmrelu"]
    # the network rebuilt from the saved weights, on the data rebuilt from the saved case,
    # has the objective the solve reported
    X, y = vs_adam.load_case(case, seed=data["settings"]["seed"])
    assert X.shape == (case["n"], case["d"]) and np.all(X[:, -1] == 1.0)
    net = vs_adam.network_from_record(admm["network"], case["depth"])
    recomputed = net.objective(X, y, case["beta"])
    assert recomputed == pytest.approx(admm["objective"], rel=1e-8)
    assert recomputed == pytest.approx(admm["network_objective"], rel=1e-12)
    lower = admm["global_lower_bound"]  # None where the solve has none (-inf)
    assert lower is None or lower <= admm["objective"] * (1 + 1e-12)
    assert admm["n_blocks"] >= 1 and admm["rounds"]
    assert all({"time", "objective", "n_blocks"} <= set(r) for r in admm["rounds"])
    assert case["beta"] == pytest.approx(0.1 * case["beta_max"])


def _raw_uci(name):
    """A plain csv parse of ``<name>_R.dat``: features and labels."""
    path = SHARED_DATA / "uci" / name / f"{name}_R.dat"
    with open(path, newline="") as f:
        rows = list(csv.reader(f, delimiter="\t"))[1:]
    features = np.array([[float(v) for v in row[1:-1]] for row in rows])
    labels = np.array([int(row[-1]) for row in rows])
    return features, labels


@pytest.mark.skipif(not (SHARED_DATA / "uci").is_dir(), reason="no ../shared/data/uci")
@pytest.mark.parametrize("name", ["balloons", "breast-tissue"])
def test_uci_loader_matches_a_raw_parse(bench, name):
    _, datasets = bench
    assert datasets.DEFAULT_DATA_DIR.resolve() == SHARED_DATA.resolve()
    X, y, info = datasets.load_uci(name)
    features, labels = _raw_uci(name)
    np.testing.assert_array_equal(X[:, :-1], features)
    np.testing.assert_array_equal(X[:, -1], np.ones(len(labels)))
    if info["n_classes"] == 2:  # balloons: 0 -> -1, 1 -> +1
        np.testing.assert_array_equal(y, np.where(labels == 1, 1.0, -1.0))
    else:  # breast-tissue: 6 classes, the class index
        assert info["n_classes"] == 6
        np.testing.assert_array_equal(y, labels.astype(float))


@pytest.mark.skipif(not (SHARED_DATA / "uci").is_dir(), reason="no ../shared/data/uci")
def test_table1_sets_have_the_papers_sizes(bench):
    _, datasets = bench
    sizes = {
        "acute-inflammation": (120, 6),
        "acute-nephritis": (120, 6),
        "balloons": (16, 4),
        "breast-tissue": (106, 9),
        "fertility": (100, 9),
        "pittsburg-bridges-SPAN": (92, 7),
    }
    assert set(datasets.UCI_TABLE1) == set(sizes)
    for name, (n, d) in sizes.items():
        X, y, info = datasets.load_uci(name)
        assert X.shape == (n, d + 1) and y.shape == (n,), name
        assert (info["n"], info["d"]) == (n, d)


def test_teacher_names_and_data(bench):
    vs_adam, datasets = bench
    assert vs_adam.parse_teacher("teacher2-1000x20") == (2, 1000, 20, None)
    assert vs_adam.parse_teacher("teacher3-1000x20-w2") == (3, 1000, 20, 2)
    assert vs_adam.parse_teacher("balloons") is None
    with pytest.raises(ValueError):
        vs_adam.parse_teacher("teacher2-10x3-w2")
    X, y = datasets.teacher_data(3, 50, 4, seed=1, width=2)
    assert X.shape == (50, 4) and y.shape == (50,) and np.all(X[:, -1] == 1.0)
    X2, y2 = datasets.teacher_data(3, 50, 4, seed=1, width=2)
    np.testing.assert_array_equal(y, y2)


@pytest.mark.parametrize("depth", [2, 3])
def test_torch_run_scores_the_same_objective(bench, depth):
    pytest.importorskip("torch")
    vs_adam, datasets = bench
    X, y = datasets.teacher_data(depth, 40, 4, seed=0)
    rec = vs_adam.train_torch(X, y, 0.5, depth, 6, 2, "adam", 1e-2, 30, 0, 10)
    assert rec["status"] == "ok" and rec["steps_run"] == 30
    # torch's float64 objective and admmrelu's network class agree on the final weights
    assert rec["torch_vs_numpy"] <= 1e-12
    assert rec["best_objective"] <= rec["final_objective"]
    assert [s for s, _, _ in rec["trajectory"]] == [0, 10, 20, 30]
    if depth == 3:
        assert rec["max_norm_deviation"] <= 1e-12
    # a step far too large diverges: a failed run, not an exception
    bad = vs_adam.train_torch(X, y, 0.5, depth, 6, 2, "sgd", 1e3, 30, 0, 10)
    assert bad["status"] == "diverged" and bad["final_objective"] is None
    assert math.isinf(vs_adam.median_final([bad]))
