"""One place builds a cell: a model and a model option added the way a user adds them (a
registered factory, a default and a check) reach the spec, the key and the trainer, and
nothing else has to change."""

from __future__ import annotations

import textwrap

import pytest
import torch
from torch import nn

from trainers import config, models
from trainers.loop import train
from trainers.models.layers import conv_norm_act
from trainers.setup import setup

SPEC = """
name: plugin
dataset: {name: synthetic, val_size: 0, subset: 64, augment: []}
model: {arch: tiny_user_net, depth: 2, init: he_normal, dropout: 0.0, input_dropout: 0.0}
train: {epochs: 1, batch_size: 32, device: cpu, schedule: {name: constant}}
"""


class TinyUserNet(nn.Module):
    """What a user writes in trainers/models/<family>.py: options as keywords."""

    def __init__(
        self,
        *,
        num_classes: int = 10,
        act_layer,
        norm_layer=None,
        width: float = 1.0,
        depth: int = 1,
    ):
        super().__init__()
        channels = max(1, int(8 * width))
        layers = [conv_norm_act(3, channels, 3, 2, 1, act_layer=act_layer, norm_layer=norm_layer)]
        layers += [
            conv_norm_act(channels, channels, 3, 1, 1, act_layer=act_layer, norm_layer=norm_layer)
            for _ in range(depth - 1)
        ]
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(channels, num_classes)
        self.depth = depth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


@pytest.fixture
def user_model(monkeypatch):
    """A new model (`tiny_user_net`) and a new option (`model.depth`) added through the
    registry and the defaults + checks table alone; undone after the test."""
    models.preset("tiny_user_net", TinyUserNet)
    monkeypatch.setitem(config.DEFAULTS["model"], "depth", 1)
    monkeypatch.setitem(config.CHECKS, "model.depth", config.number(0, integer=True))
    # Derived from CHECKS when the module loads, as it would be after the user's edit.
    monkeypatch.setattr(config, "PATHS", tuple(config.CHECKS) + config.SECTIONS)
    yield
    models.MODELS.pop("tiny_user_net")


def test_a_user_model_and_option_reach_the_spec_the_key_and_the_trainer(user_model, tmp_path):
    from orchestrator.spec.expand import expand
    from orchestrator.spec.load import load_spec

    path = tmp_path / "plugin.yaml"
    path.write_text(textwrap.dedent(SPEC))
    (cell,) = expand(load_spec(path))
    assert cell.config["model"]["depth"] == 2
    (shallow,) = expand(load_spec(path, ["model.depth=1"]))
    assert shallow.key != cell.key  # the option is part of the cell's key
    run = setup(cell.config)
    assert isinstance(run.model, TinyUserNet) and run.model.depth == 2
    summary = train(cell.config)
    assert summary["status"] == "completed" and summary["epochs"] == 1
    # The families that do not take the option are built without it.
    assert models.create_model("nin", depth=3, width=0.125) is not None
    # A bad value is refused by the check the user added, naming the key.
    from trainers.errors import GridError

    with pytest.raises(GridError, match="model.depth: expected an integer"):
        load_spec(path, ["model.depth=deep"])


def test_setup_builds_what_the_loop_trains(small_config):
    small_config["train"]["epochs"] = 1
    run = setup(small_config)
    assert run.status == "completed" and run.history == [] and run.device.type == "cpu"
    assert run.memory_format == torch.contiguous_format  # auto: channels_last on CUDA only
    assert next(run.model.parameters()).device.type == "cpu"
    assert run.scheduler.optimizer is run.optimizer
