"""The model zoo: a plain registry of model factories, timm style.

Each family lives in one file (allcnn, nin, resnet) and registers its presets with
`@register_model`. A factory takes keyword arguments `num_classes`, `act_layer` (a factory
from `trainers.activations`), `norm_layer` (`nn.BatchNorm2d` or None), `dropout`,
`input_dropout` and `width`; `create_model` turns the config's names and flags into those.
"""
from __future__ import annotations

import fnmatch
from typing import Callable

from torch import nn

from trainers.errors import GridError, did_you_mean
from trainers.activations import get_activation

MODELS: dict[str, Callable[..., nn.Module]] = {}
# Other spellings people use for the same nets; list_models() shows only canonical names.
ALIASES: dict[str, str] = {
    "all_cnn_a": "allcnn_a", "all_cnn_b": "allcnn_b", "all_cnn_c": "allcnn_c",
    "all-cnn-a": "allcnn_a", "all-cnn-b": "allcnn_b", "all-cnn-c": "allcnn_c",
    "convpool_cnn_c": "convpool_c", "strided_cnn_c": "strided_c",
    "network_in_network": "nin", "resnet_9": "resnet9", "resnet_18": "resnet18",
}


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Register a model factory under its function name (the decorator of this registry)."""
    MODELS[fn.__name__] = fn
    return fn


def list_models(pattern: str = "*") -> list[str]:
    """Sorted canonical model names matching the fnmatch `pattern`, e.g. "allcnn*"."""
    return sorted(n for n in MODELS if fnmatch.fnmatchcase(n, pattern))


def resolve_name(name: str) -> str:
    """The canonical name of `name` (an alias resolves); GridError naming `model.arch`."""
    if name in MODELS:
        return name
    if isinstance(name, str) and name.lower() in ALIASES:
        return ALIASES[name.lower()]
    names = list_models()
    raise GridError(f"model.arch: unknown model {name!r}"
                    f"{did_you_mean(name, names + sorted(ALIASES))}; "
                    f"choose from {', '.join(names)}")


def create_model(name: str, *, num_classes: int = 10, activation: str = "relu",
                 batch_norm: bool = False, dropout: float = 0.0, input_dropout: float = 0.0,
                 width: float = 1.0) -> nn.Module:
    """Build the registered model `name` for 3x32x32 inputs; it returns (N, num_classes)
    logits. Bad names or values raise GridError naming the `model.*` key."""
    factory = MODELS[resolve_name(name)]
    act_layer = get_activation(activation)
    if not width > 0:
        raise GridError(f"model.width: must be > 0, got {width!r}")
    for key, p in (("dropout", dropout), ("input_dropout", input_dropout)):
        if not 0.0 <= p < 1.0:
            raise GridError(f"model.{key}: must be in [0, 1), got {p!r}")
    if not (isinstance(num_classes, int) and num_classes >= 1):
        raise GridError(f"num_classes: must be a positive integer, got {num_classes!r}")
    return factory(num_classes=num_classes, act_layer=act_layer,
                   norm_layer=nn.BatchNorm2d if batch_norm else None,
                   dropout=dropout, input_dropout=input_dropout, width=width)


def count_params(model: nn.Module) -> int:
    """The number of parameters (weights and biases, BN's affine ones included)."""
    return sum(p.numel() for p in model.parameters())


# Importing the families registers them (they import register_model from here).
from trainers.models import allcnn, nin, resnet  # noqa: E402,F401
# The papers' approximate sizes for the no-BN nets; `grid models` shows them. (Seed 003's
# exact ResNet counts are with batch norm: tests/trainers/test_models.py checks those.)
from trainers.models.allcnn import PAPER_PARAMS  # noqa: E402

__all__ = ["MODELS", "ALIASES", "PAPER_PARAMS", "register_model", "list_models",
           "resolve_name", "create_model", "count_params"]
