"""Every shipped grid validates, expands and opens with the comment a user needs."""

import json
from pathlib import Path

import pytest

from orchestrator.cli.main import main
from orchestrator.spec.expand import expand
from orchestrator.spec.load import load_spec, smoke

GRIDS_DIR = Path(__file__).parents[2] / "grids"
GRIDS = sorted(GRIDS_DIR.glob("*.yaml"))


def test_grids_folder_is_not_empty():
    assert len(GRIDS) >= 7


@pytest.mark.parametrize("path", GRIDS, ids=lambda p: p.name)
def test_grid_validates_and_expands(path):
    spec = load_spec(path)
    trials = expand(spec)
    assert len({t.key for t in trials}) == len(trials) >= 1
    assert len(expand(smoke(spec))) == len(trials)  # --smoke keeps every cell
    for table in spec.tables:
        assert table["rows"], table["name"]


@pytest.mark.parametrize("path", GRIDS, ids=lambda p: p.name)
def test_grid_opens_with_table_and_launch_command(path):
    head = path.read_text().split("\n\n")[0]
    assert head.startswith("#")
    assert f"grid launch grids/{path.name}" in head
    assert "Reproduces" in head or "quickstart" in path.name


def test_allcnn_table_has_48_distinct_keys(capsys):
    assert main(["plan", str(GRIDS_DIR / "allcnn_table.yaml"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["count"] == 48 and len({t["key"] for t in out["cells"]}) == 48


def test_quickstart_is_laptop_sized():
    spec = load_spec(GRIDS_DIR / "quickstart.yaml")
    trials = expand(spec)
    assert len(trials) >= 8
    assert all(t.config["dataset"]["name"] == "synthetic" for t in trials)
    assert spec.resources["gpu"] == 0


@pytest.mark.parametrize("path", GRIDS, ids=lambda p: p.name)
def test_grid_s_override_example_plans(path, capsys):
    # The header's "Override any key:" command is one a user copies: it must work.
    import shlex

    line = next(x for x in path.read_text().splitlines() if x.startswith("# Override any key:"))
    args = shlex.split(line.split("grid launch", 1)[1])
    assert main(["plan", *args]) == 0
