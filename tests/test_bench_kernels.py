"""The kernels benchmark runs end to end on its tiny shapes (so it cannot rot unseen)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench" / "kernels.py"
KERNELS = {
    "forward",
    "adjoint",
    "cone",
    "cone_adjoint",
    "reflected_cone_adjoint",
    "relaxed_slack_update",
    "block_soft_threshold",
    "loss_coupled_projection",
}


@pytest.mark.slow
def test_kernels_quick_run_writes_a_consistent_table(tmp_path):
    out = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--dtype", "both", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr
    table = (tmp_path / "kernels.md").read_text()
    data = json.loads((tmp_path / "kernels.json").read_text())
    backends = {"numpy", "numba"} | ({"cupy"} if "gpu" in data["devices"] else set())
    rows = data["kernels"]
    iteration = {(r["shape"], r["dtype"], r["backend"]) for r in data["iteration"]}
    assert iteration == {
        (s, t, b)
        for s in data["settings"]["shapes"]
        for t in ("float64", "float32")
        for b in backends
    }
    assert all(r["iteration_s"] > 0 for r in data["iteration"])
    assert data["fashion"] == []  # only with --fashion, on a GPU
    for shape in data["settings"]["shapes"]:
        for dtype in ("float64", "float32"):
            done = {
                (r["backend"], r["kernel"])
                for r in rows
                if (r["shape"], r["dtype"]) == (shape, dtype)
            }
            assert done == {(b, k) for b in backends for k in KERNELS}
        assert shape in table
    for row in rows:
        assert row["seconds"] > 0 and row["baseline_seconds"] > 0
        assert row["ratio"] == pytest.approx(row["baseline_seconds"] / row["seconds"])
        assert row["rate_unit"] == ("GB/s" if row["baseline"] == "copy" else "GFLOP/s")
