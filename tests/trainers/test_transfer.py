"""A stage's cell starts from its parent's weights (trainers/transfer.py): the body loaded,
the head fresh for the new classes, the body fine-tuned at its own lr or frozen."""

from __future__ import annotations

import copy

import pytest
import torch

from trainers import transfer
from trainers.errors import GridError
from trainers.loop import epochs
from trainers.models import create_model, list_models
from trainers.setup import setup


def _parent_weights(cfg: dict) -> dict:
    parent = copy.deepcopy(cfg)
    parent["train"]["seed"] = 7  # other weights than the child's own init
    return {k: v.clone() for k, v in setup(parent).model.state_dict().items()}


@pytest.mark.parametrize("name", list_models())
@pytest.mark.parametrize("batch_norm", [False, True])
def test_every_model_s_head_is_its_classifier_sized_to_the_classes(name, batch_norm):
    model = create_model(name, num_classes=7, batch_norm=batch_norm)
    state = model.state_dict()
    head = transfer.head_names(model)
    assert head and all(state[n].shape[0] == 7 for n in head if state[n].ndim), sorted(head)
    assert any(n.endswith("weight") and state[n].ndim >= 2 for n in head)  # the conv / dense


@pytest.mark.parametrize("arch", ["allcnn_c", "resnet9"])
def test_the_head_is_the_classifier(small_config, arch):
    small_config["model"]["arch"] = arch
    model = setup(small_config).model
    head = transfer.head_names(model)
    shapes = {n: t.shape for n, t in model.state_dict().items() if n in head}
    assert any(s[0] == 10 for s in shapes.values())  # the class conv / fc, sized to 10
    assert len(head) < len(model.state_dict())


def test_finetune_loads_the_body_and_keeps_a_fresh_head(small_config):
    weights = _parent_weights(small_config)
    small_config["train"].update(body="finetune", body_lr=0.1)
    run = setup(small_config, weights=weights)
    head = transfer.head_names(run.model)
    scratch = setup(
        copy.deepcopy({**small_config, "train": {**small_config["train"], "body": "scratch"}})
    )
    for name, t in run.model.state_dict().items():
        expected = scratch.model.state_dict()[name] if name in head else weights[name]
        assert torch.equal(t, expected), name
    lrs = sorted(g["lr"] for g in run.optimizer.param_groups)
    assert lrs == pytest.approx([0.05 * 0.1, 0.05])
    assert run.optimizer.param_groups[0]["lr"] == pytest.approx(0.05)  # the head's: reported


def test_frozen_trains_only_the_head(small_config):
    small_config["model"]["batch_norm"] = False  # running stats would move; weights must not
    weights = _parent_weights(small_config)
    small_config["train"].update(body="frozen", epochs=1)
    steps = epochs(small_config, weights=weights)
    _, state = next(steps)
    head = transfer.head_names(setup(small_config, weights=weights).model)
    for name, t in state["model"].items():
        assert torch.equal(t, weights[name]) == (name not in head), name


def test_a_parent_of_another_shape_is_one_line(small_config):
    weights = _parent_weights(small_config)
    small_config["model"]["width"] = 0.5
    small_config["train"]["body"] = "finetune"
    with pytest.raises(GridError, match=r"train.body: the parent's weights do not fit"):
        setup(small_config, weights=weights)
    with pytest.raises(GridError, match="needs its parent's weights"):
        setup(small_config)
