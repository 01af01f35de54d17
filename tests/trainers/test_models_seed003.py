"""Seed 003's and seed 002's model options: ResNet block orders, max-pool downsampling and
pooling position, the 12-layer ResNet, the CIFAR DenseNet, the toy CNN, the FC head."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from trainers.errors import GridError
from trainers.models import PAPER_PARAMS_BN, count_params, create_model
from trainers.models.resnet import BLOCK_ORDERS

# Ours with batch norm, 10 classes (the docstrings of resnet9.py and densenet.py say why
# resnet12 and densenet59 differ from seed 003's stated counts).
EXACT_BN = {
    "resnet9": 6_573_130,
    "resnet12": 7_753_802,
    "resnet15": 6_083_914,
    "resnet18": 11_173_962,
    "densenet59": 580_426,
    "plaincnn": 373_834,  # 3x3 convs 3-64-128-256 with BN, linear 256-10
}


@pytest.mark.parametrize("name", sorted(EXACT_BN))
def test_exact_counts_with_batch_norm(name):
    assert count_params(create_model(name, batch_norm=True)) == EXACT_BN[name]


def test_paper_counts_shown_beside_ours():
    assert PAPER_PARAMS_BN == {
        "resnet9": 6_573_130,
        "resnet12": 7_827_786,
        "resnet18": 11_173_962,
        "densenet59": 614_850,
    }
    # resnet12 lacks exactly one 3x3 conv from 64 to 128 channels with its batch norm
    assert PAPER_PARAMS_BN["resnet12"] - EXACT_BN["resnet12"] == 3 * 3 * 64 * 128 + 2 * 128


def test_densenet_has_59_convs():
    convs = [m for m in create_model("densenet59").modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 59


def _block_out(order: str) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    model = create_model("resnet18", batch_norm=True, block_order=order, width=0.25).eval()
    block = model.stages[1][1]  # an identity-shortcut block
    x = torch.randn(2, 32, 16, 16)
    with torch.no_grad():
        return block(x), x


def test_the_five_block_orders_differ_where_the_paper_says():
    outs = {o: _block_out(o) for o in BLOCK_ORDERS}
    for a in BLOCK_ORDERS:  # five different functions of the same input
        for b in BLOCK_ORDERS:
            if a < b:
                assert not torch.allclose(outs[a][0], outs[b][0]), (a, b)
    # The ReLU after the addition makes the output non-negative; with it before the
    # addition (or none after it), the identity path carries negative inputs through.
    assert (outs["original"][0] >= 0).all() and (outs["bn_after_add"][0] >= 0).all()
    for order in ("act_before_add", "act_preact", "preact"):
        out, x = outs[order]
        assert (out < 0).any()
    out, x = outs["act_before_add"]
    assert (out - x >= -1e-6).all()  # the residual branch ends on a ReLU


def test_full_preactivation_normalises_the_last_sum():
    model = create_model("resnet18", batch_norm=True, block_order="preact")
    assert isinstance(model.final[0], nn.BatchNorm2d)
    assert isinstance(create_model("resnet18", batch_norm=True).final, nn.Identity)


def test_maxpool_downsampling_keeps_the_parameters_and_the_shapes():
    strided = create_model("resnet18", batch_norm=True)
    pooled = create_model("resnet18", batch_norm=True, downsample="maxpool")
    assert count_params(strided) == count_params(pooled)
    pools = [m for m in pooled.modules() if isinstance(m, nn.MaxPool2d)]
    assert len(pools) == 6  # main path and shortcut of the three downsampling blocks
    assert all(c.stride == (1, 1) for c in pooled.modules() if isinstance(c, nn.Conv2d))
    with torch.no_grad():
        assert pooled.eval()(torch.randn(1, 3, 32, 32)).shape == (1, 10)


def test_pooling_before_bn_and_relu_is_the_same_function():
    # BN (positive scale) and ReLU are monotonic, so max-pooling commutes with them (§5.2).
    after = create_model("resnet9", batch_norm=True, width=0.25).eval()
    first = create_model("resnet9", batch_norm=True, width=0.25, pool_first=True).eval()
    with torch.no_grad():
        for a, b in zip(after.parameters(), first.parameters(), strict=True):
            b.copy_(a)
        x = torch.randn(2, 3, 32, 32)
        torch.testing.assert_close(first(x), after(x))
    convs = [m for m in first.layer1[0]]
    assert isinstance(convs[0], nn.Conv2d) and isinstance(convs[1], nn.MaxPool2d)


def test_plain_cnn_depth_channels_and_kernels_are_options():
    model = create_model("plaincnn", depth=5, channels=[16, 32], kernel_size=[7, 5, 3])
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [16, 32, 32, 32, 32]
    assert [c.kernel_size[0] for c in convs] == [7, 5, 3, 3, 3]
    assert sum(isinstance(m, nn.MaxPool2d) for m in model.modules()) == 3
    deep = create_model("plaincnn", depth=50, channels=16, batch_norm=True)
    assert sum(isinstance(m, nn.Conv2d) for m in deep.modules()) == 50
    two = create_model("plaincnn", depth=2, channels=[64, 128], dropout=0.3)
    assert two.fc.in_features == 128 and two.drop.p == 0.3
    with torch.no_grad():
        assert two.eval()(torch.randn(1, 3, 32, 32)).shape == (1, 10)


@pytest.mark.parametrize("kw", [{"depth": 0}, {"channels": []}, {"kernel_size": [3, 0]}])
def test_plain_cnn_bad_options_name_the_key(kw):
    with pytest.raises(GridError, match=r"model\.(depth|channels|kernel_size)"):
        create_model("plaincnn", **kw)


def test_fc_head_makes_the_1x1_convs_dense_layers():
    model = create_model("allcnn_c", head="fc").eval()
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    # the 6x6 map's dense layer (a valid 6x6 conv), then the classifier on its 1x1 output
    assert [c.kernel_size[0] for c in convs[-2:]] == [6, 1]
    assert count_params(model) == 1_369_738 - 192 * 192 + 6 * 6 * 192 * 192
    seen = []
    convs[-1].register_forward_hook(lambda m, i, o: seen.append(tuple(o.shape)))
    with torch.no_grad():
        model(torch.randn(2, 3, 32, 32))
    assert seen == [(2, 10, 1, 1)]
