"""The benchmark script runs end to end on its tiny instances (so it cannot rot unseen)."""

import json

import pytest
from conftest import run_quick_bench


@pytest.mark.slow
def test_vs_cvxpy_quick_run_writes_a_consistent_table(tmp_path):
    run_quick_bench("vs_cvxpy.py", tmp_path)
    table = (tmp_path / "vs_cvxpy.md").read_text()
    data = json.loads((tmp_path / "vs_cvxpy.json").read_text())
    for instance in data["instances"]:
        solves = instance["solves"]
        assert set(solves) == {"admm", "CLARABEL", "ECOS", "SCS"}
        assert instance["name"] in table
        # both points are feasible with certified gaps <= 1e-6 objective ("optimal"), so
        # both objectives lie in [p*, p* / (1 - 1e-6)] and differ by at most ~1e-6 p*
        admm, clarabel = solves["admm"], solves["CLARABEL"]
        assert admm["status"] == clarabel["status"] == "optimal"
        assert abs(admm["objective"] - clarabel["objective"]) <= 1.01e-6 * clarabel["objective"]
        assert admm["relative_violation"] <= 1e-8
