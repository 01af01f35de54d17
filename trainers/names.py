"""The registries' names, without torch: what a spec's `model.arch`, `model.init` and
`model.activation` are checked against. The registries themselves (trainers/models,
inits.py, activations.py) import torch; commands that only read results (`grid status`,
`table`, `plan`, `report`) check a spec without loading it. tests/trainers/test_names.py
keeps these lists equal to the registries: a new model, init or activation is added to both.
"""

from __future__ import annotations

import sys
from typing import Any

MODELS = (
    "allcnn_a",
    "allcnn_b",
    "allcnn_c",
    "convpool_a",
    "convpool_b",
    "convpool_c",
    "densenet59",
    "model_a",
    "model_b",
    "model_c",
    "nin",
    "plaincnn",
    "resnet12",
    "resnet15",
    "resnet18",
    "resnet9",
    "strided_a",
    "strided_b",
    "strided_c",
)
INITS = (
    "default",
    "he_normal",
    "he_uniform",
    "lsuv",
    "orthogonal",
    "xavier_normal",
    "xavier_uniform",
)
ACTIVATIONS = ("celu", "elu", "gelu", "leaky_relu", "maxout", "mish", "prelu", "relu", "silu")
# Other spellings people use for the same nets; list_models() shows only canonical names.
# The one alias table: `create_model` and the spec's `model.arch` check both resolve by it.
ALIASES: dict[str, str] = {
    "all_cnn_a": "allcnn_a",
    "all_cnn_b": "allcnn_b",
    "all_cnn_c": "allcnn_c",
    "all-cnn-a": "allcnn_a",
    "all-cnn-b": "allcnn_b",
    "all-cnn-c": "allcnn_c",
    "convpool_cnn_c": "convpool_c",
    "strided_cnn_c": "strided_c",
    "network_in_network": "nin",
    "resnet_9": "resnet9",
    "resnet_18": "resnet18",
}


# kind -> (the built-in names, the registry module and its dict, once something imported it)
_LIVE = {
    "arch": (MODELS, "trainers.models.registry", "MODELS"),
    "init": (INITS, "trainers.inits", "INITS"),
    "activation": (ACTIVATIONS, "trainers.activations", "ACTIVATIONS"),
}


def registered(kind: str) -> tuple[str, ...]:
    """The names of `kind` (arch, init or activation): the built-in ones, plus any that a
    program registered in this process (a user's model through `register_model`), read from
    the registry only when something already imported it, so a read-only command never
    loads torch for it."""
    builtin, module, attr = _LIVE[kind]
    live = getattr(sys.modules.get(module), attr, {})
    return tuple(sorted({*builtin, *live}))


def canonical_model(name: Any) -> str | None:
    """The model name of `name` or of its alias (any case); None when unknown."""
    if not isinstance(name, str):
        return None
    return name if name in registered("arch") else ALIASES.get(name.lower())
