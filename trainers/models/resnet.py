"""ResNets for CIFAR (He et al., 2016, with the 3x3 stem) and the block variants of seed 003:
five orders of conv, norm, activation and addition (Fig. 10, after He et al.'s "Identity
mappings"), and downsampling by max-pool instead of stride (§6.1).

With batch norm (`norm_layer=nn.BatchNorm2d`) and the default block, resnet18 has 11,173,962
parameters for 10 classes, as seed 003 states. Without it the norms become identities and
the convs get biases back: unusual for a ResNet, but it trains, and it keeps the
`batch_norm` axis meaningful across every model. `input_dropout` applies to the input,
`dropout` to the pooled features before the classifier. (ResNet-9 and its 12-layer sibling
are another family: `resnet9.py`.)
"""

from __future__ import annotations

import torch
from torch import nn

from trainers.models.layers import (
    ActLayer,
    NormLayer,
    conv_norm_act,
    norm_or_identity,
    scale_channels,
)
from trainers.models.registry import preset

# Seed 003 Fig. 10, in its order: where the norms and activations sit around the addition.
#   original:       conv BN act conv BN (+) act
#   bn_after_add:   conv BN act conv (+) BN act
#   act_before_add: conv BN act conv BN act (+)
#   act_preact:     act conv BN act conv BN (+)
#   preact:         BN act conv BN act conv (+)   (full pre-activation)
BLOCK_ORDERS = ("original", "bn_after_add", "act_before_add", "act_preact", "preact")
DOWNSAMPLES = ("stride", "maxpool")
# Blocks per stage. resnet15: seed 003 trains "a 15-layer ResNet" but gives no layout, and no
# BasicBlock layout has 15 weight layers (stem + 2 per block + linear is even). Ours:
# [1, 1, 2, 1], 10 convs + stem + linear + the three 1x1 projection shortcuts = 15.
BLOCKS = {"resnet15": (1, 1, 2, 1), "resnet18": (2, 2, 2, 2)}
PAPER_PARAMS = {"resnet18": 11_173_962}


def _dropout(p: float) -> nn.Module:
    return nn.Dropout(p) if p > 0 else nn.Identity()


def _down_conv(c_in, c_out, kernel, stride, downsample, bias) -> nn.Module:
    """A conv that downsamples by `stride`, or (downsample="maxpool", seed 003's improved
    block) the same conv at stride 1 then a 2x2 max-pool: the same parameters."""
    pad = kernel // 2
    if stride == 1 or downsample == "stride":
        return nn.Conv2d(c_in, c_out, kernel, stride, pad, bias=bias)
    return nn.Sequential(nn.Conv2d(c_in, c_out, kernel, 1, pad, bias=bias), nn.MaxPool2d(stride))


class BasicBlock(nn.Module):
    """Two 3x3 convs and a shortcut (1x1 conv + norm when the shape changes), ordered as
    `order` says (BLOCK_ORDERS)."""

    def __init__(
        self,
        c_in: int,
        c_out: int,
        stride: int,
        act_layer: ActLayer,
        norm_layer: NormLayer,
        order: str = "original",
        downsample: str = "stride",
    ):
        super().__init__()
        bias = norm_layer is None
        self.order = order
        pre = order in ("act_preact", "preact")
        self.conv1 = _down_conv(c_in, c_out, 3, stride, downsample, bias)
        self.bn1 = norm_or_identity(norm_layer, c_in if order == "preact" else c_out)
        self.act1 = act_layer(c_in if pre else c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=bias)
        self.bn2 = norm_or_identity(norm_layer, c_out)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            proj = _down_conv(c_in, c_out, 1, stride, downsample, bias)
            norm = nn.Identity() if pre else norm_or_identity(norm_layer, c_out)
            self.shortcut = nn.Sequential(proj, norm)
        self.act2 = act_layer(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        o = self.order
        if o == "preact":
            out = self.conv1(self.act1(self.bn1(x)))
            return self.conv2(self.act2(self.bn2(out))) + self.shortcut(x)
        if o == "act_preact":
            out = self.bn1(self.conv1(self.act1(x)))
            return self.bn2(self.conv2(self.act2(out))) + self.shortcut(x)
        out = self.act1(self.bn1(self.conv1(x)))
        if o == "original":
            return self.act2(self.bn2(self.conv2(out)) + self.shortcut(x))
        if o == "bn_after_add":
            return self.act2(self.bn2(self.conv2(out) + self.shortcut(x)))
        return self.act2(self.bn2(self.conv2(out))) + self.shortcut(x)  # act_before_add


class ResNet(nn.Module):
    """CIFAR ResNet: 3x3 stem (no 7x7, no max pool), four stages of BasicBlocks at 64/128/
    256/512 channels with strides 1/2/2/2, global average pool, linear. `block_order` and
    `downsample` pick the block variant (BLOCK_ORDERS, DOWNSAMPLES)."""

    def __init__(
        self,
        blocks: tuple[int, ...],
        *,
        num_classes: int = 10,
        act_layer: ActLayer,
        norm_layer: NormLayer = None,
        dropout: float = 0.0,
        input_dropout: float = 0.0,
        width: float = 1.0,
        block_order: str = "original",
        downsample: str = "stride",
    ):
        super().__init__()
        channels = [scale_channels(c, width) for c in (64, 128, 256, 512)]
        self.input_dropout = _dropout(input_dropout)
        self.stem = conv_norm_act(
            3, channels[0], 3, 1, 1, act_layer=act_layer, norm_layer=norm_layer
        )
        stages, c_in = [], channels[0]
        for i, (n, c) in enumerate(zip(blocks, channels, strict=True)):
            strides = [1 if i == 0 else 2] + [1] * (n - 1)
            stage = []
            for s in strides:
                stage.append(BasicBlock(c_in, c, s, act_layer, norm_layer, block_order, downsample))
                c_in = c
            stages.append(nn.Sequential(*stage))
        self.stages = nn.Sequential(*stages)
        # Pre-activation blocks end on a bare sum: He et al. normalise it before the pool.
        final = [norm_or_identity(norm_layer, c_in), act_layer(c_in)]
        self.final = nn.Sequential(*final) if block_order == "preact" else nn.Identity()
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), _dropout(dropout))
        self.fc = nn.Linear(c_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stages(self.stem(self.input_dropout(x)))
        return self.fc(self.pool(self.final(x)))


resnet15 = preset(
    "resnet15", ResNet, BLOCKS["resnet15"], doc="A 15-layer CIFAR ResNet: BasicBlocks [1, 1, 2, 1]."
)
resnet18 = preset(
    "resnet18", ResNet, BLOCKS["resnet18"], doc="ResNet-18 for CIFAR: BasicBlocks [2, 2, 2, 2]."
)
