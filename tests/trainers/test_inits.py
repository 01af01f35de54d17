"""Init registry: every init runs on an All-CNN and a ResNet and trains; LSUV gives unit
variance."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from trainers.errors import GridError
from trainers.inits import INITS, LSUV_TOL, init_model, negative_slope
from trainers.models import create_model

EXPECTED = {
    "default",
    "xavier_uniform",
    "xavier_normal",
    "he_normal",
    "he_uniform",
    "orthogonal",
    "lsuv",
}


def _batch(n: int = 8) -> torch.Tensor:
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(1))


def test_registry_names():
    assert set(INITS) == EXPECTED


@pytest.mark.parametrize("name", sorted(INITS))
@pytest.mark.parametrize("arch", ["allcnn_c", "resnet18"])
@pytest.mark.parametrize("batch_norm", [False, True])
def test_init_then_train_a_step(name, arch, batch_norm):
    torch.manual_seed(0)
    model = create_model(arch, batch_norm=batch_norm, width=0.125, dropout=0.5)
    init_model(model, name, batch=_batch(4))
    assert model.training  # init leaves the train/eval flag alone
    for m in model.modules():
        if name != "default" and isinstance(m, (nn.Conv2d, nn.Linear)) and m.bias is not None:
            assert torch.count_nonzero(m.bias) == 0
        if isinstance(m, nn.BatchNorm2d):
            assert torch.all(m.weight == 1) and torch.all(m.bias == 0)
    loss = nn.functional.cross_entropy(model(_batch(2)), torch.tensor([0, 9]))
    assert torch.isfinite(loss)
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())


def test_default_leaves_weights_alone():
    model = create_model("model_a", width=0.25)
    before = [p.clone() for p in model.parameters()]
    init_model(model, "default")
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_he_normal_std():
    model = create_model("model_a")
    init_model(model, "he_normal")
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    w = convs[1].weight  # 5x5 conv 96 -> 192: fan_in 2400
    assert abs(w.std().item() - math.sqrt(2 / 2400)) < 0.05 * math.sqrt(2 / 2400)


def test_he_gain_follows_the_activation():
    assert negative_slope(create_model("model_a", activation="relu", width=0.1)) == 0.0
    leaky = create_model("model_a", activation="leaky_relu", width=0.1)
    assert negative_slope(leaky) == pytest.approx(0.01)
    assert negative_slope(create_model("model_a", activation="prelu", width=0.1)) == 0.25


def test_orthogonal_rows_are_orthogonal():
    model = create_model("model_c", width=0.25)
    init_model(model, "orthogonal")
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    w = convs[-1].weight.flatten(1)  # class conv: 10 x 48
    gram = w @ w.T
    assert torch.allclose(gram, 2.0 * torch.eye(10), atol=1e-4)  # gain^2 = 2 for relu


@pytest.mark.parametrize(
    "arch,kw",
    [
        ("allcnn_c", {}),
        ("nin", {"activation": "elu"}),
        ("resnet9", {"batch_norm": True}),
        ("model_b", {"activation": "maxout"}),
    ],
)
def test_lsuv_gives_unit_output_variance(arch, kw):
    torch.manual_seed(0)
    model = create_model(arch, width=0.25, dropout=0.5, **kw)
    batch = _batch(16)
    init_model(model, "lsuv", batch=batch)
    variances = []
    hooks = [
        m.register_forward_hook(lambda mod, i, o: variances.append(o.var().item()))
        for m in model.modules()
        if isinstance(m, (nn.Conv2d, nn.Linear))
    ]
    model.eval()
    with torch.no_grad():
        model(batch)
    for h in hooks:
        h.remove()
    assert len(variances) >= 9
    for v in variances:
        assert abs(v - 1.0) < LSUV_TOL


def test_lsuv_needs_a_batch():
    with pytest.raises(ValueError, match="batch"):
        init_model(create_model("model_a", width=0.1), "lsuv")


def test_unknown_init_suggests_a_name():
    with pytest.raises(GridError, match=r"model\.init.*did you mean 'he_normal'"):
        init_model(create_model("model_a", width=0.1), "he-normal")
