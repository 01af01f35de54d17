"""ResNets for CIFAR: the fast DAWNBench ResNet-9 (Page, "How to train your ResNet") and
ResNet-18 (He et al., 2016, with the CIFAR 3x3 stem), as in seed 003.

With batch norm (`norm_layer=nn.BatchNorm2d`) the counts match seed 003 exactly: resnet9
6,573,130 and resnet18 11,173,962 parameters for 10 classes. Without it the norms become
identities and the convs get biases back: unusual for a ResNet, but it trains, and it keeps
the `batch_norm` axis meaningful across every model. `input_dropout` applies to the input,
`dropout` to the pooled features before the classifier.
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


def _dropout(p: float) -> nn.Module:
    return nn.Dropout(p) if p > 0 else nn.Identity()


class Residual(nn.Module):
    """x + body(x): ResNet-9's identity-shortcut residual."""

    def __init__(self, body: nn.Module):
        super().__init__()
        self.body = body

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ResNet9(nn.Module):
    """prep 64, layer1 128 + residual(128, 128), layer2 256, layer3 512 + residual(512, 512),
    global max pool, linear, logits scaled by 0.125 (Page's fix for the softmax's
    over-confident start)."""

    def __init__(
        self,
        *,
        num_classes: int = 10,
        act_layer: ActLayer,
        norm_layer: NormLayer = None,
        dropout: float = 0.0,
        input_dropout: float = 0.0,
        width: float = 1.0,
        scale: float = 0.125,
    ):
        super().__init__()
        c1, c2, c3, c4 = (scale_channels(c, width) for c in (64, 128, 256, 512))

        def block(c_in: int, c_out: int) -> nn.Module:
            return conv_norm_act(c_in, c_out, 3, 1, 1, act_layer=act_layer, norm_layer=norm_layer)

        self.input_dropout = _dropout(input_dropout)
        self.prep = block(3, c1)
        self.layer1 = nn.Sequential(
            block(c1, c2), nn.MaxPool2d(2), Residual(nn.Sequential(block(c2, c2), block(c2, c2)))
        )
        self.layer2 = nn.Sequential(block(c2, c3), nn.MaxPool2d(2))
        self.layer3 = nn.Sequential(
            block(c3, c4), nn.MaxPool2d(2), Residual(nn.Sequential(block(c4, c4), block(c4, c4)))
        )
        self.pool = nn.Sequential(nn.AdaptiveMaxPool2d(1), nn.Flatten(), _dropout(dropout))
        self.fc = nn.Linear(c4, num_classes)
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer3(self.layer2(self.layer1(self.prep(self.input_dropout(x)))))
        return self.fc(self.pool(x)) * self.scale


class BasicBlock(nn.Module):
    """Two 3x3 convs and a shortcut (1x1 conv + norm when the shape changes), then act."""

    def __init__(
        self, c_in: int, c_out: int, stride: int, act_layer: ActLayer, norm_layer: NormLayer
    ):
        super().__init__()
        bias = norm_layer is None
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=bias)
        self.bn1 = norm_or_identity(norm_layer, c_out)
        self.act1 = act_layer(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=bias)
        self.bn2 = norm_or_identity(norm_layer, c_out)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride, bias=bias), norm_or_identity(norm_layer, c_out)
            )
        self.act2 = act_layer(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(self.act1(self.bn1(self.conv1(x)))))
        return self.act2(out + self.shortcut(x))


class ResNet(nn.Module):
    """CIFAR ResNet: 3x3 stem (no 7x7, no max pool), four stages of BasicBlocks at 64/128/
    256/512 channels with strides 1/2/2/2, global average pool, linear."""

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
                stage.append(BasicBlock(c_in, c, s, act_layer, norm_layer))
                c_in = c
            stages.append(nn.Sequential(*stage))
        self.stages = nn.Sequential(*stages)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), _dropout(dropout))
        self.fc = nn.Linear(c_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.stages(self.stem(self.input_dropout(x)))))


resnet9 = preset(
    "resnet9",
    ResNet9,
    doc="The DAWNBench ResNet-9 (seed 003: 94% in minutes with a one-cycle schedule).",
)
resnet18 = preset(
    "resnet18", ResNet, (2, 2, 2, 2), doc="ResNet-18 for CIFAR: BasicBlocks [2, 2, 2, 2]."
)
