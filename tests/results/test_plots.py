"""results.plots: PNG learning curves and accuracy vs learning rate."""
from __future__ import annotations

import io

from rich.console import Console

from orchestrator.cli import expected_cells
from results.plots import plot_command
from results.store import open_store

PNG = b"\x89PNG\r\n\x1a\n"


def test_plot_command_writes_valid_pngs(golden, tmp_path):
    out = tmp_path / "figures"
    console = Console(file=io.StringIO(), width=200)
    assert plot_command(*golden, out, console=console, expected=expected_cells(golden[0])) == 0
    names = sorted(p.name for p in out.iterdir())
    # both tables vary the lr (over, columns): curves and accuracy vs lr for each
    assert names == ["best_lr_curves.png", "best_lr_lr.png", "lr_sweep_curves.png",
                     "lr_sweep_lr.png"]
    for path in out.iterdir():
        data = path.read_bytes()
        assert data.startswith(PNG) and len(data) > 1000
    assert "best_lr_curves.png" in console.file.getvalue()


def test_plot_command_without_lr_axis_draws_only_curves(local_store, make_trial, summary, put,
                                                        table, tmp_path):
    from types import SimpleNamespace
    put(local_store, make_trial("p", **{"model.arch": "nin"}), summary())
    spec = SimpleNamespace(name="p", axes={}, tables=[table(name="t")])
    assert plot_command(spec, local_store, tmp_path / "f", console=Console(file=io.StringIO())) == 0
    assert [p.name for p in (tmp_path / "f").iterdir()] == ["t_curves.png"]


def test_plot_command_on_an_empty_store(spec_factory, tmp_path):
    console = Console(file=io.StringIO(), width=200)
    store = open_store(str(tmp_path / "runs"))
    assert plot_command(spec_factory(), store, tmp_path / "figs", console=console) == 0
    assert "no results for grid golden" in console.file.getvalue()
    assert not (tmp_path / "figs").exists()
