"""The launch's cost, said before it starts (`orchestrator/planning/cost.py`), and the confirmation
of a costly launch on a machine without a GPU: on a terminal a question, without one `--yes` or
exit 2 with the hint; `--smoke`, the quickstart and the tests' tiny grids never ask. No Ray
starts here: a confirmed launch stops at a stand-in for the Ray part."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.cli.main import main
from orchestrator.execution import launch, session
from orchestrator.planning import cost
from orchestrator.spec.expand import expand
from orchestrator.spec.load import load_spec, smoke
from tests.orchestrator.conftest import TINY, write_spec
from trainers.footprint import model_cost

REPO = Path(__file__).resolve().parents[2]
HUGE = {"epochs": 1_000_000}  # a tiny model for a million epochs: far past the threshold


def test_cell_flops_is_forward_flops_times_trained_and_evaluated_images(tiny_spec):
    cells = expand(tiny_spec("f", [0.05], train={"epochs": 3, "eval_every": 1}))
    config = cells[0].config
    forward = model_cost(config)["flops"]
    # subset 128 at batch 64: 2 steps, 128 images; val 32 + synthetic test 1000 each epoch
    assert cost.cell_flops(config) == pytest.approx(forward * 3 * (3 * 128 + 1032))
    assert cost.cell_flops(config, 1.5) == pytest.approx(cost.cell_flops(config) / 2)
    assert forward > 0


@pytest.mark.parametrize("grid", ["quickstart"])
def test_the_quickstart_and_the_tests_tiny_grids_are_below_the_threshold(tiny_spec, grid):
    spec = load_spec(REPO / "grids" / f"{grid}.yaml")
    assert cost.quick(spec, expand(spec))["cpu_s"] < cost.CONFIRM_ABOVE_S / 10
    tiny = tiny_spec("t", [0.05, 0.1], train={"epochs": 3})
    assert cost.quick(tiny, expand(tiny))["cpu_s"] < 60
    assert TINY["train"]["epochs"] == 1


def test_a_paper_grid_is_above_it_and_its_smoke_is_not_asked():
    spec = load_spec(REPO / "grids" / "allcnn_table.yaml")
    assert cost.quick(spec, expand(spec))["cpu_s"] > cost.CONFIRM_ABOVE_S
    small = smoke(spec)
    assert cost.say_and_confirm(small, expand(small), _console(), here=True, yes=False)


def _console():
    from rich.console import Console

    return Console(file=open("/dev/null", "w"), width=200)  # noqa: SIM115


@pytest.fixture
def cpu_only_here(monkeypatch):
    """This machine runs the trials (a local Ray) and has no GPU; the Ray part is a stand-in
    that records that the launch went on."""
    started = []
    monkeypatch.setattr(cost, "has_gpu", lambda: False)
    monkeypatch.setattr(session, "starts_local", lambda address: address is None)
    monkeypatch.setattr(launch, "_run", lambda *a, **k: started.append(a[0].name) or 0)
    return started


def _huge(tmp_path, name="huge") -> str:
    return str(write_spec(tmp_path, name, [0.05], train=HUGE))


def test_without_a_terminal_a_costly_launch_needs_yes(tmp_path, capsys, cpu_only_here):
    path = _huge(tmp_path)
    assert main(["launch", path, "--store", str(tmp_path / "runs")]) == 2
    captured = capsys.readouterr()
    assert "PFLOP of training" in captured.out and "no GPU" in captured.out
    err = captured.err.strip()
    assert len(err.splitlines()) == 1 and "--yes" in err and "--smoke" in err
    assert "CPU-hours" in err and cpu_only_here == []
    assert main(["launch", path, "--store", str(tmp_path / "runs"), "--yes"]) == 0
    assert cpu_only_here == ["huge"]


@pytest.mark.parametrize(("answer", "code"), [("n", 1), ("", 1), ("y", 0)])
def test_on_a_terminal_it_asks(tmp_path, capsys, monkeypatch, cpu_only_here, answer, code):
    class Tty:
        def isatty(self):
            return True

    asked = []
    monkeypatch.setattr(cost.sys, "stdin", Tty())
    monkeypatch.setattr(
        "rich.console.Console.input", lambda self, prompt: asked.append(prompt) or answer
    )
    assert main(["launch", _huge(tmp_path), "--store", str(tmp_path / "runs")]) == code
    out = capsys.readouterr().out
    assert asked == ["start it anyway? [y/N] "] and "--smoke" in out
    assert cpu_only_here == (["huge"] if code == 0 else [])
    assert ("nothing started" in out) == (code == 1)


def test_smoke_a_cluster_or_a_gpu_never_asks(tmp_path, monkeypatch, cpu_only_here):
    path = _huge(tmp_path)
    assert main(["launch", path, "--store", str(tmp_path / "runs"), "--smoke"]) == 0
    assert main(["launch", path, "--store", str(tmp_path / "r2"), "--address", "h:6379"]) == 0
    monkeypatch.setattr(cost, "has_gpu", lambda: True)
    assert main(["launch", path, "--store", str(tmp_path / "r3")]) == 0
    assert cpu_only_here == ["huge-smoke", "huge", "huge"]


def test_a_dry_run_says_the_cost_and_never_asks(tmp_path, capsys, cpu_only_here):
    assert main(["launch", _huge(tmp_path), "--store", str(tmp_path / "r"), "--dry-run"]) == 0
    assert "CPU-hours" in capsys.readouterr().out and cpu_only_here == []
