"""Commands that only read results import neither torch nor Ray: they start in a second,
not in the seconds a torch import takes (`orchestrator/cli/main.py` imports per command, and a
spec is checked against `trainers/names.py`, not the registries)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.spec.expand import expand
from orchestrator.spec.load import load_spec
from results.store import open_store
from results.store.schema import epoch_rows, trial_row
from tests.results.conftest import FAKE_PROVENANCE, fake_summary

REPO = Path(__file__).resolve().parents[2]
PROBE = (  # as the `grid` program calls it: main() reads sys.argv
    "import sys; from orchestrator.cli.main import main; sys.argv[0] = 'grid'; rc = main(); "
    "print('LOADED', 'torch' in sys.modules, 'ray' in sys.modules, rc, 'pandas' in sys.modules)"
)


@pytest.mark.parametrize("command", ["status", "table", "plan", "report"])
def test_read_only_commands_import_neither_torch_nor_ray(command, tmp_path):
    spec_path = str(REPO / "grids" / "quickstart.yaml")
    store = str(tmp_path / "runs")
    cell = expand(load_spec(spec_path))[0]
    summ = fake_summary()
    row = trial_row(cell, summ, FAKE_PROVENANCE)
    open_store(store).write_trial(cell.grid, cell.key, row, epoch_rows(cell, summ["history"]))
    args = [command, spec_path]
    if command != "plan":
        args += ["--store", store]
    if command == "report":
        args += ["--out", str(tmp_path / "reports")]
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        check=True,
    )
    loaded = done.stdout.strip().splitlines()[-1].split()
    assert loaded[:4] == ["LOADED", "False", "False", "0"], done.stderr
    if command != "report":  # nor pyarrow's import of pandas (orchestrator/cli/no_pandas.py)
        assert loaded[4] == "False"
    if command == "status":  # what the store holds: the one row and its curves
        assert "store: 2 objects, " in done.stdout and f"under {store}/quickstart" in done.stdout
