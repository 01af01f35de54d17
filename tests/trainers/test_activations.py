"""Activation registry: every activation trains in an All-CNN and NIN; maxout is a max."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from trainers.activations import ACTIVATIONS, LEAKY_SLOPE, Maxout, get_activation
from trainers.errors import GridError
from trainers.models import create_model

EXPECTED = {"relu", "leaky_relu", "elu", "celu", "prelu", "gelu", "silu", "mish", "maxout"}


def test_registry_names():
    assert set(ACTIVATIONS) == EXPECTED


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_factory_keeps_shape(name):
    act = get_activation(name)(5)
    assert isinstance(act, nn.Module)
    x = torch.randn(2, 5, 4, 4)
    assert act(x.clone()).shape == x.shape


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
@pytest.mark.parametrize("arch", ["allcnn_c", "nin"])
@pytest.mark.parametrize("batch_norm", [False, True])
def test_activation_trains_in_a_model(name, arch, batch_norm):
    torch.manual_seed(0)
    model = create_model(arch, activation=name, batch_norm=batch_norm, width=0.125)
    x, y = torch.randn(2, 3, 32, 32), torch.tensor([1, 7])
    loss = nn.functional.cross_entropy(model(x), y)
    assert torch.isfinite(loss)
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("name", ["maxout", "prelu"])
def test_channel_aware_activations_fit_resnets(name):
    """Maxout and PReLU need the channel count, also after ResNet-18's residual sum."""
    model = create_model("resnet18", activation=name, width=0.125)
    loss = model(torch.randn(2, 3, 32, 32)).logsumexp(dim=1).mean()
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is not None for p in model.parameters())


def test_leaky_slope_is_the_nin_labs():
    act = get_activation("leaky_relu")(3)
    assert act.negative_slope == LEAKY_SLOPE == 0.01
    assert torch.allclose(act(torch.tensor([-2.0, 3.0])), torch.tensor([-0.02, 3.0]))


def test_prelu_has_one_slope_per_channel():
    assert get_activation("prelu")(12).weight.shape == (12,)


def test_maxout_is_an_elementwise_max_of_its_pieces():
    torch.manual_seed(0)
    act = Maxout(3, pieces=2)
    x = torch.randn(4, 3, 5, 5)
    w, b = act.linear.weight[:, :, 0, 0], act.linear.bias  # (6, 3), (6,)
    z = torch.einsum("oc,nchw->nohw", w, x) + b[None, :, None, None]
    expected = torch.maximum(z[:, 0::2], z[:, 1::2])  # channel c's pieces: 2c and 2c+1
    assert torch.allclose(act(x), expected, atol=1e-5)


def test_maxout_hand_set_pieces():
    """Pieces x and -x give |x|: maxout learns convex functions such as abs."""
    act = Maxout(1, pieces=2)
    with torch.no_grad():
        act.linear.weight.copy_(torch.tensor([1.0, -1.0]).view(2, 1, 1, 1))
        act.linear.bias.zero_()
    x = torch.tensor([-3.0, -0.5, 0.0, 2.0]).view(1, 1, 2, 2)
    assert torch.equal(act(x), x.abs())


def test_unknown_activation_suggests_a_name():
    with pytest.raises(GridError, match=r"model\.activation.*did you mean 'leaky_relu'"):
        get_activation("leakyrelu")
    with pytest.raises(GridError, match=r"choose from .*maxout"):
        get_activation("swishy-thing")
