"""Fallbacks: a captured step whose compile fails, and a pack whose vmap step fails, train on
eagerly (the loop) once, with a `StepFallback` warning and the mode in the summary; the
numbers are the plain run's, as the failure happens before anything is updated."""

from __future__ import annotations

import pytest
import torch

from results.store.schema import trial_row
from tests.trainers.test_pack import cell
from trainers import pack
from trainers.errors import GridError
from trainers.loop import train
from trainers.pack import train_packed
from trainers.step import COMPILED, Fallback, StepFallback


def _compile_fails_at_first_call(*args, **kwargs):
    """What a broken inductor or CUDA-graph capture does: compile returns a callable, which
    raises when first run (torch.compile is lazy)."""

    def broken(*a, **kw):
        raise RuntimeError("inductor: CUDA graph capture failed (injected)\nsecond line")

    return broken


def _compile_fails_at_once(*args, **kwargs):
    raise RuntimeError("no backend (injected)")


def _losses(summary: dict) -> list[float]:
    return [h["train_loss"] for h in summary["history"]]


@pytest.mark.parametrize("broken", [_compile_fails_at_first_call, _compile_fails_at_once])
def test_a_failing_compile_falls_back_to_eager_once(monkeypatch, broken):
    eager = train(cell())
    assert eager["step_mode"] == "eager"
    monkeypatch.setattr(torch, "compile", broken)
    config = cell()
    config["train"]["compile"] = True
    with pytest.warns(StepFallback, match=r"train.compile.*injected.*falling back") as seen:
        got = train(config)
    assert len([w for w in seen if w.category is StepFallback]) == 1  # once, not per step
    assert got["status"] == "completed" and got["step_mode"] == "compiled->eager"
    assert _losses(got) == pytest.approx(_losses(eager), rel=1e-6)
    assert _losses(got)[-1] < _losses(got)[0]
    assert got["final"]["test_acc"] == pytest.approx(eager["final"]["test_acc"])


def test_an_error_of_the_eager_step_or_a_grid_error_is_raised():
    def fails(message, kind=RuntimeError):
        def f(*args):
            raise kind(message)

        return f

    step = Fallback(fails("capture"), fails("eager too"), {"mode": COMPILED}, "step")
    with pytest.warns(StepFallback), pytest.raises(RuntimeError, match="eager too"):
        step(1)
    assert step.mode == "compiled->eager"
    step = Fallback(fails("bad key", GridError), fails("eager"), {"mode": COMPILED}, "step")
    with pytest.raises(GridError, match="bad key"):
        step(1)
    assert step.mode == COMPILED


def test_a_failing_vmap_pack_falls_back_to_the_loop(monkeypatch):
    configs = [cell(0.05, 0), cell(0.02, 1)]
    loop = train_packed(configs, mode="loop")
    assert {s["step_mode"] for s in loop} == {"loop"}
    calls = []

    def broken(*args, **kwargs):
        calls.append(1)
        raise RuntimeError("vmap: no batching rule for aten::something (injected)")

    monkeypatch.setattr(pack, "fused_step", broken)
    with pytest.warns(StepFallback, match=r"vmap step .*injected.*the loop"):
        got = train_packed(configs, mode="vmap")
    assert len(calls) == 1  # tried once, never again
    assert [s["step_mode"] for s in got] == ["vmap->loop"] * 2
    for g, w in zip(got, loop, strict=True):
        assert g["status"] == "completed"
        assert _losses(g) == pytest.approx(_losses(w), rel=1e-6)


def test_the_step_mode_is_a_column_of_the_result_row():
    class Cell:
        key, grid, params = "k", "g", {}
        config = cell()

    row = trial_row(Cell, {"status": "completed", "step_mode": "compiled->eager"}, {})
    assert row["step_mode"] == "compiled->eager"
    assert trial_row(Cell, None, {}, error="boom")["step_mode"] is None


def test_the_captured_optimizers_lr_lives_on_the_parameters_device(monkeypatch):
    """On CUDA a CPU lr would keep inductor from capturing the graph; no CUDA here, so the
    parameters are on the meta device and SGD is a recorder (it reads a meta lr's value)."""
    from trainers.optim import build_optimizer

    made = {}
    monkeypatch.setattr(torch.optim, "SGD", lambda params, lr, **kw: made.update(lr=lr))
    train_cfg = {**cell()["train"], "compile": True}
    build_optimizer([torch.nn.Parameter(torch.zeros(3, device="meta"))], train_cfg)
    assert isinstance(made["lr"], torch.Tensor) and made["lr"].device.type == "meta"
    build_optimizer([torch.nn.Parameter(torch.zeros(3))], train_cfg)
    assert made["lr"].device.type == "cpu" and float(made["lr"]) == pytest.approx(0.05)
