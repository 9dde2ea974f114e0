"""The robustness grid runs end to end on its --quick cells (so it cannot rot unseen)."""

import json

import pytest
from conftest import run_quick_bench

#: --quick: both depths, n=200, P=20, beta/beta_max 0.1 and 0.01, sampled and trained.
QUICK_CELLS = {
    f"{depth}L-n200-P20-{blocks}-b{frac}"
    for depth in (2, 3)
    for blocks in ("sampled", "trained")
    for frac in ("0.1", "0.01")
}
CELL_FIELDS = {
    "name",
    "depth",
    "n",
    "P",
    "d",
    "width",
    "blocks",
    "beta_frac",
    "beta",
    "beta_max",
    "n_blocks",
    "trained",
    "build_s",
    "rss_before_bytes",
    "admm",
    "clarabel",
    "child",
    "agreement",
    "objective_difference",
    "speedup",
    "versus_trained",
    "targets",
}
ADMM_FIELDS = {
    "status",
    "objective",
    "gap",
    "relative_gap",
    "iterations",
    "setup_time",
    "solve_time",
    "polish_time",
    "certificate_time",
    "total_s",
    "finish_share",
    "peak_memory_bytes",
}
TARGETS = {"finish_share", "speedup", "agreement", "total_time"}


@pytest.mark.slow
def test_robustness_quick_grid_writes_every_cell(tmp_path):
    run_quick_bench("robustness.py", tmp_path)
    table = (tmp_path / "results.md").read_text()
    data = json.loads((tmp_path / "results.json").read_text())
    assert {"settings", "machine", "cells"} <= set(data)
    assert data["machine"]["git_commit"] and data["machine"]["versions"]["admmrelu"]
    cells = {cell["name"]: cell for cell in data["cells"]}
    assert set(cells) == QUICK_CELLS
    for name, cell in cells.items():
        assert CELL_FIELDS <= set(cell), name
        assert name in table
        admm, clarabel = cell["admm"], cell["clarabel"]
        assert ADMM_FIELDS <= set(admm), (name, admm["status"])
        assert set(cell["targets"]) == TARGETS
        assert cell["child"]["returncode"] == 0 and not cell["child"]["killed"]
        assert 0 < cell["rss_before_bytes"] <= admm["peak_memory_bytes"]
        assert admm["total_s"] >= admm["solve_time"] + admm["polish_time"]
        # Clarabel runs at this size; both points are feasible, so two "optimal" solves
        # (certified gap <= 1e-6 objective) lie within ~1e-6 of each other
        assert "objective" in clarabel, clarabel["status"]
        if admm["status"] == clarabel["status"] == "optimal":
            assert cell["agreement"] <= 1.01e-6, name
            assert cell["targets"]["agreement"] == "met"
        if cell["blocks"] == "trained":
            # the trained network is a feasible point of the program over its own blocks
            assert cell["versus_trained"] <= 1e-6, name
            assert cell["n_blocks"] == cell["trained"]["distinct_blocks"] <= cell["P"]
        else:
            assert cell["trained"] is None and cell["versus_trained"] is None
