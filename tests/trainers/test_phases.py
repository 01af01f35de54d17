"""Switching optimizer mid-run (seed 003 §6.2): the phases, the switch, and resume across it."""

from __future__ import annotations

import io

import pytest
import torch

from trainers.config import check_leaves
from trainers.loop import train
from trainers.pack import pack_key
from trainers.phases import phase_config

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/trainers/conftest.py

SWITCH = {
    "epoch": 2,
    "name": "sgd",
    "lr": 0.02,
    "momentum": 0.9,
    "schedule": {"name": "cosine", "warmup_epochs": 0},
}


def _train_cfg() -> dict:
    return {
        "epochs": 4,
        "lr": 0.001,
        "optimizer": {"name": "adam", "momentum": 0.9, "weight_decay": 0.0},
        "schedule": {"name": "cosine", "warmup_epochs": 1},
        "optimizer_switch": SWITCH,
    }


def test_each_phase_spans_its_own_epochs():
    first, second = phase_config(_train_cfg(), 2), phase_config(_train_cfg(), 3)
    assert first["epochs"] == 2 and first["optimizer"]["name"] == "adam" and first["lr"] == 0.001
    assert second["epochs"] == 2 and second["optimizer"]["name"] == "sgd"
    assert second["lr"] == 0.02 and second["schedule"] == {"name": "cosine", "warmup_epochs": 0}
    assert phase_config(_train_cfg(), 2)["schedule"]["warmup_epochs"] == 1


def test_the_switch_is_checked():
    ok, _ = check_leaves({"train.optimizer_switch": SWITCH}, "")
    assert ok == []
    for bad in ({"epoch": 0}, {"epoch": 2, "name": "lamb"}, {"epoch": 2, "lrr": 1}, 3):
        errors, _ = check_leaves({"train.optimizer_switch": bad}, "g.yaml: ")
        assert len(errors) == 1 and errors[0].startswith("g.yaml: train.optimizer_switch: ")


def _snapshot(state: dict) -> dict:
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=False)


def _run(small_config):
    small_config["dataset"]["subset"] = 200
    small_config["train"].update(_train_cfg())
    states = []
    summary = train(small_config, report=lambda m, s: states.append(_snapshot(s)))
    return summary, states


def test_a_run_switches_and_resumes_exactly_on_either_side(small_config):
    summary, states = _run(small_config)
    lrs = [h["lr"] for h in summary["history"]]
    # epoch 1 warms Adam up from lr/steps; epoch 3 starts SGD's cosine at its own lr
    assert lrs[0] < 0.001 and lrs[2] == pytest.approx(0.02)
    assert "exp_avg" in next(iter(states[1]["optimizer"]["state"].values()))
    assert "momentum_buffer" in next(iter(states[2]["optimizer"]["state"].values()))
    for at in (1, 2, 3):  # before, at and after the switch
        again = train(small_config, resume=states[at])
        for a, b in zip(summary["history"][at:], again["history"][at:], strict=True):
            assert a["train_loss"] == b["train_loss"] and a["test_acc"] == b["test_acc"]


def test_a_cell_that_switches_is_never_packed(small_config):
    a, b = small_config, {**small_config, "train": {**small_config["train"], "lr": 0.1}}
    assert pack_key(a) == pack_key(b)
    for cfg in (a, b):
        cfg["train"]["optimizer_switch"] = SWITCH
    assert pack_key(a) != pack_key(b)
