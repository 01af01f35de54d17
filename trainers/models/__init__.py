"""The model zoo: a plain registry of model factories, timm style.

Each family lives in one file (allcnn, nin, resnet, resnet9, densenet, plaincnn) and
registers its presets in `registry` with `@register_model` or `preset`. A factory takes
keyword arguments `num_classes`, `act_layer` (a factory from `trainers.activations`),
`norm_layer` (`nn.BatchNorm2d` or None) and the `model` section's other options (`dropout`,
`input_dropout`, `width`, ...); `create_model` turns the section's names and flags into
those. A new option is a keyword of the factories that take it plus a default and a check
in `trainers.config`: a factory that does not name an option in its signature is not
given it.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

from torch import nn

from trainers.activations import get_activation
from trainers.errors import GridError
from trainers.models.registry import (
    ALIASES,
    MODELS,
    canonical_name,
    list_models,
    preset,
    register_model,
    resolve_name,
)

# What `create_model` assumes for an option its caller leaves out: a plain net.
OPTION_DEFAULTS: dict[str, Any] = {
    "activation": "relu",
    "batch_norm": False,
    "dropout": 0.0,
    "input_dropout": 0.0,
    "width": 1.0,
    # PyTorch's BatchNorm2d defaults. Keras' BatchNormalization(momentum=0.99, epsilon=1e-3)
    # is bn_momentum 0.01, bn_eps 1e-3: Keras keeps m * moving + (1 - m) * batch, torch
    # (1 - momentum) * running + momentum * batch.
    "bn_momentum": 0.1,
    "bn_eps": 1e-5,
}
# Keys of the `model` section that are no constructor option: the name and the init.
NOT_OPTIONS = ("arch", "init")


def model_options(model_cfg: dict) -> dict[str, Any]:
    """The `model` section as `create_model` options: all of it but the arch and the init."""
    return {k: v for k, v in model_cfg.items() if k not in NOT_OPTIONS}


def _accepted(factory: Callable[..., nn.Module], kwargs: dict[str, Any]) -> dict[str, Any]:
    # A family-specific option (one family's knob) reaches only the factories naming it.
    params = inspect.signature(factory).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return kwargs
    names = {p.name for p in params}
    return {k: v for k, v in kwargs.items() if k in names}


def create_model(name: str, *, num_classes: int = 10, **options: Any) -> nn.Module:
    """Build the registered model `name` for 3x32x32 inputs; it returns (N, num_classes)
    logits. `options` are the `model` section's (`model_options`): activation, batch_norm,
    dropout, input_dropout, width and any a model adds. Bad names or values raise
    GridError naming the `model.*` key."""
    factory = MODELS[resolve_name(name)]
    options = {**OPTION_DEFAULTS, **options}
    act_layer = get_activation(options.pop("activation"))
    norm_layer = _norm_layer(
        options.pop("batch_norm"), options.pop("bn_momentum"), options.pop("bn_eps")
    )
    width, dropout, input_dropout = options["width"], options["dropout"], options["input_dropout"]
    if not width > 0:
        raise GridError(f"model.width: must be > 0, got {width!r}")
    for key, p in (("dropout", dropout), ("input_dropout", input_dropout)):
        if not 0.0 <= p < 1.0:
            raise GridError(f"model.{key}: must be in [0, 1), got {p!r}")
    if not (isinstance(num_classes, int) and num_classes >= 1):
        raise GridError(f"num_classes: must be a positive integer, got {num_classes!r}")
    return factory(
        **_accepted(
            factory,
            {
                "num_classes": num_classes,
                "act_layer": act_layer,
                "norm_layer": norm_layer,
                **options,
            },
        )
    )


def _norm_layer(batch_norm: bool, momentum: float, eps: float) -> Callable | None:
    """`nn.BatchNorm2d` (with `momentum` and `eps` when they are not torch's defaults), or
    None without batch norm."""
    if not batch_norm:
        return None
    if (momentum, eps) == (0.1, 1e-5):
        return nn.BatchNorm2d
    return functools.partial(nn.BatchNorm2d, momentum=momentum, eps=eps)


def count_params(model: nn.Module) -> int:
    """The number of parameters (weights and biases, BN's affine ones included)."""
    return sum(p.numel() for p in model.parameters())


# Importing the families registers them (they import `preset` from the registry).
from trainers.models import (  # noqa: E402,F401
    allcnn,
    densenet,
    nin,
    plaincnn,
    resnet,
    resnet9,
)

# The papers' approximate sizes for the no-BN nets; `grid models` shows them.
from trainers.models.allcnn import PAPER_PARAMS  # noqa: E402

# Seed 003's exact counts are with batch norm (`grid models` shows those beside ours with
# batch norm; tests/trainers/test_models.py checks ours).
PAPER_PARAMS_BN: dict[str, int] = {
    **resnet9.PAPER_PARAMS,
    **resnet.PAPER_PARAMS,
    **densenet.PAPER_PARAMS,
}

__all__ = [
    "MODELS",
    "ALIASES",
    "PAPER_PARAMS",
    "PAPER_PARAMS_BN",
    "register_model",
    "preset",
    "list_models",
    "canonical_name",
    "resolve_name",
    "model_options",
    "create_model",
    "count_params",
]
