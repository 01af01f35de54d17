"""Seed 003's toy model: a plain CNN whose depth, widths and kernel sizes are spec axes
(its Figs 1, 3, 4 and 6: kernel-size and channel combinations on 2 conv layers, depth, and
activations; §4.5's Mish at 30, 40 and 50 layers).

`depth` convs, each conv -> [BN] -> act with "same" padding; `channels` and `kernel_size`
are one number for every layer or a list, one per layer (a shorter list repeats its last
value). A 2x2 max-pool follows the layers at a third, two thirds and all of the depth (32 ->
4, fewer for depth < 3), then global average pooling, `dropout` (seed 003 Fig. 9: dropout
before the FC layer) and one linear layer: the report's "512-sized input features" with
`channels: [.., 512]`. `input_dropout` applies to the input.
"""

from __future__ import annotations

import torch
from torch import nn

from trainers.errors import GridError
from trainers.models.layers import ActLayer, NormLayer, conv_norm_act, scale_channels
from trainers.models.registry import preset

# The report's 3-conv-layer toy (its activation and dropout figures): 64, 128, 256 channels.
DEPTH, CHANNELS, KERNEL = 3, [64, 128, 256], 3


def per_layer(value: int | list[int], depth: int, key: str) -> list[int]:
    """`value` for each of `depth` layers: a number repeated, or a list whose last value
    repeats. GridError naming `model.<key>` for an empty list or a value < 1."""
    values = list(value) if isinstance(value, (list, tuple)) else [value]
    if not values or not all(isinstance(v, int) and v >= 1 for v in values):
        raise GridError(
            f"model.{key}: expected a positive integer or a list of them, got {value!r}"
        )
    return (values + values[-1:] * depth)[:depth]


def pool_after(depth: int) -> set[int]:
    """The 1-based layers followed by a max-pool: at 1/3, 2/3 and all of the depth."""
    return {max(1, round(depth * j / 3)) for j in (1, 2, 3)}


class PlainCNN(nn.Module):
    """conv layers (with max-pools, see `pool_after`), global average pool, linear."""

    def __init__(
        self,
        *,
        num_classes: int = 10,
        act_layer: ActLayer,
        norm_layer: NormLayer = None,
        dropout: float = 0.0,
        input_dropout: float = 0.0,
        width: float = 1.0,
        depth: int = DEPTH,
        channels: int | list[int] = CHANNELS,
        kernel_size: int | list[int] = KERNEL,
    ):
        super().__init__()
        if not (isinstance(depth, int) and depth >= 1):
            raise GridError(f"model.depth: expected a positive integer, got {depth!r}")
        widths = [scale_channels(c, width) for c in per_layer(channels, depth, "channels")]
        kernels = per_layer(kernel_size, depth, "kernel_size")
        pools = pool_after(depth)
        layers: list[nn.Module] = [nn.Dropout(input_dropout)] if input_dropout > 0 else []
        c_in = 3
        for i, (c, k) in enumerate(zip(widths, kernels, strict=True), start=1):
            layers.append(
                conv_norm_act(c_in, c, k, 1, k // 2, act_layer=act_layer, norm_layer=norm_layer)
            )
            if i in pools:
                layers.append(nn.MaxPool2d(2))
            c_in = c
        self.features = nn.Sequential(*layers)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.fc = nn.Linear(c_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.drop(self.pool(self.features(x))))


plaincnn = preset("plaincnn", PlainCNN, doc="Seed 003's toy CNN: depth, channels, kernel_size.")
