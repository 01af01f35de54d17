"""`grid plan --estimate`: real steps timed on this machine, scaled to the grid; the JSON
shape and the arithmetic are checked, never a time."""

from __future__ import annotations

import json

import pytest

from orchestrator.cli.main import main
from orchestrator.planning import estimate
from orchestrator.spec.expand import expand

from .conftest import write_spec


def test_plan_estimate_json_shape(tmp_path, capsys):
    path = write_spec(
        tmp_path,
        "est",
        [0.05, 0.1],
        train={"epochs": 2},
        grid={"lr": [0.05, 0.1], "batch_norm": [False, True]},
    )
    assert main(["plan", str(path), "--estimate", "--json", "--device", "cpu", "--slots", "3"]) == 0
    out = json.loads(capsys.readouterr().out)
    est = out["estimate"]
    assert set(est) == {"device", "total_s", "slots", "wall_s", "cells", "memory"}
    mem = est["memory"]
    assert mem["total"] == mem["data"] + mem["model"] + mem["activations"] > 0
    assert est["device"] == "cpu" and est["slots"] == 3
    assert [c["key"] for c in est["cells"]] == [t["key"] for t in out["cells"]]
    assert all(c["seconds"] > 0 for c in est["cells"])
    assert est["total_s"] == pytest.approx(sum(c["seconds"] for c in est["cells"]))
    # 4 one-cell units on 3 slots: at least the longest unit, at most everything in series
    longest = max(c["seconds"] for c in est["cells"])
    assert longest <= est["wall_s"] <= est["total_s"]


def test_plan_estimate_says_it_is_for_the_cpu(tmp_path, capsys):
    path = write_spec(tmp_path, "say", [0.05])
    assert main(["plan", str(path), "--estimate", "--device", "cpu"]) == 0
    assert "this estimate is for the CPU" in " ".join(capsys.readouterr().out.split())


def test_a_pack_is_timed_as_one_unit_and_shared_by_its_cells(tiny_spec):
    trials = expand(tiny_spec("packed", [0.05, 0.1], resources={"pack": 2, "cpu": 1}))
    timing = {"step_s": 0.5, "eval_image_s": 0.001, "setup_s": 2.0}
    unit = estimate.unit_seconds(trials, timing)
    # 128 images / batch 64 = 2 steps; 1 epoch; val 32 + synthetic test 1000, both cells
    assert unit == pytest.approx(2.0 + 2 * 0.5 + 1032 * 0.001 * 2)
    assert estimate.signature(trials) != estimate.signature(
        trials[:1]
    )  # a pack of 2 is its own kind


def test_wall_time_spreads_units_over_slots():
    assert estimate.wall_time([4, 3, 3, 2], 2) == 6
    assert estimate.wall_time([4, 3, 3, 2], 1) == 12
    assert (
        estimate.hours(284) == "4m44s"
        and estimate.hours(7260) == "2h01m"
        and estimate.hours(9) == "9s"
    )


def test_a_halving_estimates_its_expected_epochs(tiny_spec):
    spec = tiny_spec(
        "halved",
        [0.1, 0.05, 0.02, 0.01],
        train={"epochs": 8},
        halving={"rungs": [2, 4], "keep": 0.5},
    )
    (cell, *_) = expand(spec)
    timing = {"step_s": 0.5, "eval_image_s": 0.0, "setup_s": 0.0}
    # a group of 4: 2 epochs each, then 2 of 4 for 2 epochs, then 1 of 4 for 4 epochs
    assert estimate.unit_seconds([cell], timing, epochs=3.5) == pytest.approx(3.5 * 2 * 0.5)
    from orchestrator.halving.rule import cell_epochs

    assert set(cell_epochs(spec.halving, expand(spec)).values()) == {2 + 2 * 0.5 + 4 * 0.25}


def test_plan_estimate_prints_the_memory_per_trial(tmp_path, capsys):
    path = write_spec(tmp_path, "mem", [0.05])
    assert main(["plan", str(path), "--estimate", "--device", "cpu"]) == 0
    assert "device memory per trial: up to" in " ".join(capsys.readouterr().out.split())


def test_memory_counts_the_data_once_per_seed_and_uint8_as_a_quarter(tiny_spec):
    from trainers.footprint import model_cost, unit_memory

    cells = expand(tiny_spec("m", [0.05, 0.1], grid={"lr": [0.05, 0.1], "seed": [0, 1]}))
    configs = [t.config for t in cells]
    images = (128, 1032)
    one, pack = unit_memory(configs[:1], images, False), unit_memory(configs, images, False)
    chunk = 128 * 3072 * 4 * 2
    assert one["data"] - chunk == (128 + 1032) * 3072  # uint8: a byte a value
    assert pack["data"] - chunk == 2 * (one["data"] - chunk)  # two seeds, not four cells
    assert pack["model"] == 4 * one["model"] == 4 * model_cost(configs[0])["params"] * 4 * 3
    for c in configs:
        c["dataset"]["on_device"] = "float32"
    assert unit_memory(configs[:1], images, False)["data"] - chunk == 4 * (one["data"] - chunk)
    # bf16 activations on a GPU: half of fp32's
    assert unit_memory(configs[:1], images, True)["activations"] * 2 == one["activations"]
