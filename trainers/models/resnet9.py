"""The fast DAWNBench ResNet-9 (Page, "How to train your ResNet") and its deeper sibling,
as in seed 003: three stages of conv -> [BN] -> act -> max-pool, each optionally followed
by a residual of two convs at its width.

The stage table is data: `(channels, residual)` per stage. ResNet-9 has residuals after
stages 1 and 3 (8 convs and a linear layer: 6,573,130 parameters with batch norm, as seed
003 states). `resnet12` adds the residual after stage 2 (10 convs and a linear layer,
7,753,802 parameters); seed 003's "12 layers, 7,827,786 parameters" has 73,984 more, exactly
one more 3x3 conv from 64 to 128 channels with its batch norm, which the report does not
place. `pool_first` moves each max-pool before the norm and activation (seed 003 §5.2: BN
and ReLU are monotonic, so the result is the same function class on 4x fewer values).
"""

from __future__ import annotations

import torch
from torch import nn

from trainers.models.layers import ActLayer, NormLayer, norm_or_identity, scale_channels
from trainers.models.registry import preset

PREP = 64  # the stem's channels
# (channels, residual after the stage)
STAGES: dict[str, tuple[tuple[int, bool], ...]] = {
    "resnet9": ((128, True), (256, False), (512, True)),
    "resnet12": ((128, True), (256, True), (512, True)),
}
# Seed 003's stated sizes (10 classes, batch norm), for `grid models`.
PAPER_PARAMS = {"resnet9": 6_573_130, "resnet12": 7_827_786}


def _dropout(p: float) -> nn.Module:
    return nn.Dropout(p) if p > 0 else nn.Identity()


class Residual(nn.Module):
    """x + body(x): ResNet-9's identity-shortcut residual."""

    def __init__(self, body: nn.Module):
        super().__init__()
        self.body = body

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def _conv(c_in, c_out, act_layer, norm_layer, pool_first: bool = False) -> nn.Sequential:
    """conv -> [norm] -> act, or conv -> 2x2 max-pool -> [norm] -> act."""
    layers = [nn.Conv2d(c_in, c_out, 3, 1, 1, bias=norm_layer is None)]
    if pool_first:
        layers.append(nn.MaxPool2d(2))
    layers += [norm_or_identity(norm_layer, c_out), act_layer(c_out)]
    return nn.Sequential(*[m for m in layers if not isinstance(m, nn.Identity)])


class ResNet9(nn.Module):
    """prep 64, then per stage conv + max-pool [+ residual(c, c)], global max pool, linear,
    logits scaled by 0.125 (Page's fix for the softmax's over-confident start)."""

    def __init__(
        self,
        stages: tuple[tuple[int, bool], ...] = STAGES["resnet9"],
        *,
        num_classes: int = 10,
        act_layer: ActLayer,
        norm_layer: NormLayer = None,
        dropout: float = 0.0,
        input_dropout: float = 0.0,
        width: float = 1.0,
        pool_first: bool = False,
        scale: float = 0.125,
    ):
        super().__init__()
        self.input_dropout = _dropout(input_dropout)
        c = scale_channels(PREP, width)
        self.prep = _conv(3, c, act_layer, norm_layer)
        # Named layer1..3 (and the pool its own module) as before the stage table: the same
        # state-dict keys, so checkpoints of earlier releases still resume.
        self.names = [f"layer{i}" for i in range(1, len(stages) + 1)]
        for name, (channels, residual) in zip(self.names, stages, strict=True):
            c_out = scale_channels(channels, width)
            layer = [_conv(c, c_out, act_layer, norm_layer, pool_first)]
            layer += [] if pool_first else [nn.MaxPool2d(2)]
            if residual:
                body = [_conv(c_out, c_out, act_layer, norm_layer) for _ in range(2)]
                layer.append(Residual(nn.Sequential(*body)))
            setattr(self, name, nn.Sequential(*layer))
            c = c_out
        self.pool = nn.Sequential(nn.AdaptiveMaxPool2d(1), nn.Flatten(), _dropout(dropout))
        self.fc = nn.Linear(c, num_classes)
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.prep(self.input_dropout(x))
        for name in self.names:
            x = getattr(self, name)(x)
        return self.fc(self.pool(x)) * self.scale


resnet9 = preset(
    "resnet9",
    ResNet9,
    STAGES["resnet9"],
    doc="The DAWNBench ResNet-9 (seed 003: 94% in minutes with a one-cycle schedule).",
)
resnet12 = preset(
    "resnet12",
    ResNet9,
    STAGES["resnet12"],
    doc="ResNet-9 with a residual after every stage (seed 003's 12-layer Ranger net).",
)
