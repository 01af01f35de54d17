"""DenseNet-BC for CIFAR (Huang et al., 2017), seed 003 §6.3's "light 59-layer DenseNet".

A 3x3 stem of 2k channels, then three dense blocks of bottleneck layers (BN -> act -> 1x1
conv to 4k -> BN -> act -> 3x3 conv to k, its output concatenated to its input), with a
transition between blocks (BN -> act -> 1x1 conv halving the channels -> 2x2 average pool),
a final BN -> act, global average pool and linear. Growth k = 16 and blocks [9, 9, 10] make
59 convs (1 + 2 x 28 + 2): seed 003's count. The report does not give its growth rate or
blocks and states 614,850 parameters; ours has 580,426 (10 classes, batch norm). No
DenseNet-BC layout with 59 convs has exactly 614,850 (we searched growth 8-32, stems 8-96
and every split of 28 layers over three blocks). Without batch norm the norms are
identities and the convs get biases.
"""

from __future__ import annotations

import torch
from torch import nn

from trainers.models.layers import ActLayer, NormLayer, norm_or_identity, scale_channels
from trainers.models.registry import preset

GROWTH = 16
BLOCKS = (9, 9, 10)
BOTTLENECK = 4  # the 1x1 conv's width, in growths (DenseNet-B)
COMPRESSION = 0.5  # transitions keep half the channels (DenseNet-C)
PAPER_PARAMS = {"densenet59": 614_850}


def _bn_act_conv(c_in, c_out, kernel, act_layer, norm_layer) -> nn.Sequential:
    return nn.Sequential(
        norm_or_identity(norm_layer, c_in),
        act_layer(c_in),
        nn.Conv2d(c_in, c_out, kernel, 1, kernel // 2, bias=norm_layer is None),
    )


class DenseLayer(nn.Module):
    """x -> cat(x, 3x3(1x1(x))): the bottleneck layer adds `growth` channels."""

    def __init__(self, c_in: int, growth: int, act_layer: ActLayer, norm_layer: NormLayer):
        super().__init__()
        self.body = nn.Sequential(
            _bn_act_conv(c_in, BOTTLENECK * growth, 1, act_layer, norm_layer),
            _bn_act_conv(BOTTLENECK * growth, growth, 3, act_layer, norm_layer),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.body(x)], 1)


class DenseNet(nn.Module):
    """Stem, dense blocks with transitions, final norm and act, pool, linear."""

    def __init__(
        self,
        blocks: tuple[int, ...] = BLOCKS,
        *,
        num_classes: int = 10,
        act_layer: ActLayer,
        norm_layer: NormLayer = None,
        dropout: float = 0.0,
        input_dropout: float = 0.0,
        width: float = 1.0,
    ):
        super().__init__()
        growth = scale_channels(GROWTH, width)
        c = 2 * growth
        layers: list[nn.Module] = [nn.Dropout(input_dropout)] if input_dropout > 0 else []
        layers.append(nn.Conv2d(3, c, 3, 1, 1, bias=norm_layer is None))
        for i, n in enumerate(blocks):
            for _ in range(n):
                layers.append(DenseLayer(c, growth, act_layer, norm_layer))
                c += growth
            if i < len(blocks) - 1:
                out = int(c * COMPRESSION)
                layers += [_bn_act_conv(c, out, 1, act_layer, norm_layer), nn.AvgPool2d(2)]
                c = out
        layers += [norm_or_identity(norm_layer, c), act_layer(c)]
        self.features = nn.Sequential(*layers)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.fc = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.drop(self.pool(self.features(x))))


densenet59 = preset("densenet59", DenseNet, BLOCKS, doc="DenseNet-BC k=16 [9, 9, 10]: 59 convs.")
