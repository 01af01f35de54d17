"""Probes: first-layer filters and weight norms with the result, relative gradient norms per
epoch; they observe and change nothing trained."""

from __future__ import annotations

import json
import types

import pytest
import torch
from torch import nn

from results.store.schema import epoch_rows, trial_row
from trainers.loop import train
from trainers.probes import GradNorms, final_probes

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/trainers/conftest.py


def test_grad_norms_are_the_mean_relative_norm_per_layer():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 4 * 4, 2))
    probe, seen = GradNorms(model), []
    for _ in range(3):
        model.zero_grad()
        model(torch.randn(5, 3, 6, 6)).square().sum().backward()
        seen.append([(w.grad.norm() / w.norm()).item() for w in (model[0].weight, model[3].weight)])
        probe.after_step()
    out = probe.epoch()
    assert list(out) == ["grad_norm.0", "grad_norm.3"]
    expected = torch.tensor(seen).mean(0).tolist()
    assert out["grad_norm.0"] == pytest.approx(expected[0], rel=1e-5)
    assert out["grad_norm.3"] == pytest.approx(expected[1], rel=1e-5)
    assert probe.epoch() == {}  # the next epoch starts empty


def test_final_probes_hold_the_first_filters_and_each_layer_s_norm():
    model = nn.Sequential(nn.Conv2d(3, 2, 3), nn.Flatten(), nn.Linear(8, 2))
    out = final_probes(model, ["filters", "weight_norms"])
    assert out["filters"]["layer"] == "0" and out["filters"]["shape"] == [2, 3, 3, 3]
    torch.testing.assert_close(
        torch.tensor(out["filters"]["values"]).view(2, 3, 3, 3), model[0].weight, atol=1e-5, rtol=0
    )
    assert out["weight_norms"] == pytest.approx(
        {"0": model[0].weight.norm().item(), "2": model[2].weight.norm().item()}
    )
    assert final_probes(model, []) == {}


def test_a_probed_run_trains_the_same_and_stores_its_probes(small_config):
    small_config["dataset"]["subset"] = 200
    plain = train(small_config)
    small_config["train"]["probes"] = ["filters", "grad_norms", "weight_norms"]
    probed = train(small_config)
    for a, b in zip(plain["history"], probed["history"], strict=True):
        assert a["train_loss"] == b["train_loss"] and a["test_acc"] == b["test_acc"]
    layers = [k for k in probed["history"][0] if k.startswith("grad_norm.")]
    assert len(layers) == len(probed["probes"]["weight_norms"]) >= 5
    assert all(h[k] > 0 for h in probed["history"] for k in layers)
    assert probed["probes"]["filters"]["shape"][1] == 3

    trial = types.SimpleNamespace(key="k", grid="g", params={}, config=small_config)
    row = trial_row(trial, probed, {})
    assert json.loads(row["probe.filters"])["shape"] == probed["probes"]["filters"]["shape"]
    assert set(json.loads(row["probe.weight_norms"])) == {k[10:] for k in layers}
    assert all(set(layers) <= set(r) for r in epoch_rows(trial, probed["history"]))
    assert "probe.filters" not in trial_row(trial, plain, {})
