"""The demo command runs end to end on built-in data and reports a certified solve."""

import re
import subprocess
import sys

import pytest

from admmrelu.cli import main


def test_demo_small(capsys):
    assert main(["demo", "--blocks", "6", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    assert out.count("status optimal") == 4
    assert "every network of this architecture" in out  # the enumerated tiny problem
    # the global solve: no worse than the 6 sampled blocks at the same beta, above its bound
    generated, sampled = map(float, re.findall(r"status optimal\s+objective (\S+)", out)[:2])
    (lower,) = map(float, re.findall(r"of any width has an objective below (\S+)", out))
    assert lower <= generated <= sampled
    # the recovered network attains the convex objective printed on the status line
    objectives = re.findall(r"status optimal\s+objective (\S+)\s+solver", out)
    network = re.findall(r"its objective (\S+),", out)
    assert len(objectives) == len(network) == 3
    for convex, net in zip(objectives, network, strict=True):
        assert float(net) == pytest.approx(float(convex), rel=1e-8)
    # the certified gap is small relative to the objective
    for rel in re.findall(r"\(relative (\S+)\)", out):
        assert float(rel) < 1e-6


def test_bad_arguments_exit_with_usage():
    for argv in (["demo", "--blocks", "0"], ["demo", "--device", "gpu", "--solver", "ECOS"]):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2


def test_demo_on_auto_device_matches_cpu(capsys):
    """--device auto (the CPU here, the GPU where one is usable) prints the same optima."""
    objectives = {}
    for device in ("cpu", "auto"):
        assert main(["demo", "--blocks", "6", "--seed", "3", "--device", device]) == 0
        out = capsys.readouterr().out
        found = re.findall(r"status optimal\s+objective (\S+)", out)
        objectives[device] = [float(v) for v in found]
    assert len(objectives["cpu"]) == 4
    assert objectives["auto"] == pytest.approx(objectives["cpu"], rel=1e-6)


def test_module_entry_point_help():
    out = subprocess.run(
        [sys.executable, "-m", "admmrelu", "demo", "--help"], capture_output=True, text=True
    )
    assert out.returncode == 0 and "--blocks" in out.stdout
