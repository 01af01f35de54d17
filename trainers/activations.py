"""Activation registry: a name -> a factory `act_layer(channels) -> nn.Module`.

Every model takes `act_layer` and calls it once per activation with the channel count of the
tensor it sees, timm style. Most activations ignore the count; PReLU learns one slope per
channel and Maxout owns the linear pieces it takes the max of, so both need it.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from trainers.errors import GridError, did_you_mean

ActLayer = Callable[[int], nn.Module]
ACTIVATIONS: dict[str, ActLayer] = {}

# Maas et al. (2013) leaky slope, also the NIN lab's (seed 004) LeakyReLU alpha=0.01.
LEAKY_SLOPE = 0.01


def register_activation(fn: ActLayer) -> ActLayer:
    """Register `fn` under its own name (the decorator of this registry)."""
    ACTIVATIONS[fn.__name__] = fn
    return fn


class Maxout(nn.Module):
    """Channel-wise maxout (Goodfellow et al., 2013) with `pieces` linear pieces per channel.

    A 1x1 conv maps the C input channels to C * pieces affine pieces and each output channel
    is the max of its own group of pieces, so C channels come in and C go out. Owning the
    pieces keeps maxout a drop-in activation: it fits anywhere `act_layer(c)` is called
    (after a residual sum, on the class conv) without every builder having to know that the
    layer before it must be widened. Since conv -> [BN] -> 1x1 conv is still affine in the
    conv's input, each output is a true maxout unit of that input, with the pieces' weights
    factored through the preceding layer (the NIN lab could not get a Keras maxout to run).
    """

    def __init__(self, channels: int, pieces: int = 2):
        super().__init__()
        self.channels, self.pieces = channels, pieces
        self.linear = nn.Conv2d(channels, channels * pieces, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.linear(x)  # (N, C*k, H, W); pieces of channel c are z[:, c*k:(c+1)*k]
        n, _, h, w = z.shape
        return z.view(n, self.channels, self.pieces, h, w).amax(dim=2)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, pieces={self.pieces}"


@register_activation
def relu(channels: int) -> nn.Module:
    return nn.ReLU(inplace=True)


@register_activation
def leaky_relu(channels: int) -> nn.Module:
    return nn.LeakyReLU(LEAKY_SLOPE, inplace=True)


@register_activation
def elu(channels: int) -> nn.Module:
    return nn.ELU(alpha=1.0, inplace=True)  # alpha = 1 as in Clevert et al. (2015)


@register_activation
def celu(channels: int) -> nn.Module:
    return nn.CELU(alpha=1.0)


@register_activation
def prelu(channels: int) -> nn.Module:
    return nn.PReLU(num_parameters=channels, init=0.25)  # He et al. (2015) initial slope


@register_activation
def gelu(channels: int) -> nn.Module:
    return nn.GELU()


@register_activation
def silu(channels: int) -> nn.Module:
    return nn.SiLU()


@register_activation
def mish(channels: int) -> nn.Module:
    return nn.Mish()


@register_activation
def maxout(channels: int) -> nn.Module:
    return Maxout(channels, pieces=2)


def get_activation(name: str) -> ActLayer:
    """The factory registered as `name`; GridError naming `model.activation` if unknown."""
    if name not in ACTIVATIONS:
        names = sorted(ACTIVATIONS)
        raise GridError(
            f"model.activation: unknown activation {name!r}"
            f"{did_you_mean(name, names)}; choose from {', '.join(names)}"
        )
    return ACTIVATIONS[name]
