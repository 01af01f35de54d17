"""Small building blocks shared by the model families."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

ActLayer = Callable[[int], nn.Module]
NormLayer = Callable[[int], nn.Module] | None


def scale_channels(channels: int, width: float) -> int:
    """`channels * width`, rounded, at least 1 (the `model.width` multiplier)."""
    return max(1, int(round(channels * width)))


def conv_norm_act(
    c_in: int,
    c_out: int,
    kernel: int,
    stride: int = 1,
    padding: int = 0,
    *,
    act_layer: ActLayer,
    norm_layer: NormLayer,
) -> nn.Sequential:
    """conv -> [norm] -> act. Batch norm goes before the activation (Ioffe & Szegedy; the
    All-CNN re-evaluation, seed 000, and the NIN lab, seed 004, both do so). The conv drops
    its bias when a norm follows: the norm's shift makes it redundant."""
    layers: list[nn.Module] = [
        nn.Conv2d(c_in, c_out, kernel, stride, padding, bias=norm_layer is None)
    ]
    if norm_layer is not None:
        layers.append(norm_layer(c_out))
    layers.append(act_layer(c_out))
    return nn.Sequential(*layers)


def norm_or_identity(norm_layer: NormLayer, channels: int) -> nn.Module:
    """`norm_layer(channels)`, or an identity when batch norm is off."""
    return norm_layer(channels) if norm_layer is not None else nn.Identity()
