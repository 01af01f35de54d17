"""The trial config: its defaults, the check of every key, aliases and dotted-path helpers.

A trial config has three sections, `dataset`, `model` and `train`. Every leaf has a default
here and a checker; a spec only states what differs. `docs/spec.md` documents each key.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from trainers.checkers import (  # noqa: F401 - config.number etc., as callers know them
    _is_number,
    _show,
    auto_or_count,
    boolean,
    choice,
    count_or_counts,
    device,
    milestones,
    number,
    optional_str,
    same_or_pixels,
    str_list,
    tri_state,
)
from trainers.errors import did_you_mean

# The defaults follow Springenberg et al. (2015) for All-CNN-C, the project's headline model:
# SGD with momentum 0.9, weight decay 0.001, lr drops x0.1 at epochs 200/250/300 of 350,
# 20% dropout on the input and 50% after each pooling stage.
DEFAULTS: dict[str, Any] = {
    "dataset": {
        "name": "cifar10",
        "root": None,  # None: $GRID_DATA, else ~/.cache/grid/data
        "download": True,
        "augment": ["crop", "flip"],
        "crop_padding": 4,
        "cutout_size": 8,
        "preprocess": "standardize",
        "val_size": 5000,
        "subset": None,
        "classes": None,  # cifar100 only: a class subset (trainers/subsets.py)
        # How the images sit on the device (trainers/data.py): uint8, preprocessed per chunk
        # of augmentation and per evaluated batch (4x less memory), or float32 once at load.
        "on_device": "auto",
        # trainers/augment_extra.py: used only when `augment` names them / mixup > 0
        "jitter": 0.4,  # brightness, contrast, saturation factors in [1 - j, 1 + j]
        "rotate_degrees": 15.0,  # rotation uniform in +-this
        "scale_range": 0.1,  # zoom uniform in [1 - s, 1 + s]
        "mixup": 0.0,  # Beta(alpha, alpha)'s alpha; 0: no mixup
    },
    "model": {
        "arch": "allcnn_c",
        "init": "he_normal",
        "activation": "relu",
        "batch_norm": False,
        "dropout": 0.5,
        "input_dropout": 0.2,
        "width": 1.0,
        # Family options (docs/spec.md); a family that does not name one ignores it.
        "head": "conv",  # allcnn/nin: "fc" makes the trailing 1x1 convs dense layers
        "padding": "same",  # allcnn: or n, every conv larger than 1x1 pads n (seed 001 §2.2)
        "block_order": "original",  # resnet15/18: seed 003 Fig. 10's five orders
        "downsample": "stride",  # resnet15/18: "maxpool", seed 003's improved block
        "pool_first": False,  # resnet9/12: max-pool before BN and act (seed 003 §5.2)
        "depth": 3,  # plaincnn: conv layers
        "channels": [64, 128, 256],  # plaincnn: per layer (the last repeats) or one number
        "kernel_size": 3,  # plaincnn: per layer or one number
        # Batch norm's running-average momentum and epsilon: torch's defaults. Keras'
        # BatchNormalization (seed 004) is momentum 0.01 here (its 0.99), eps 1e-3.
        "bn_momentum": 0.1,
        "bn_eps": 1e-5,
    },
    "train": {
        "epochs": 350,
        "batch_size": 128,
        "lr": 0.05,
        "optimizer": {
            "name": "sgd",
            "momentum": 0.9,
            "nesterov": False,
            "weight_decay": 0.001,
            "decay_norm_bias": True,  # false: no weight decay on biases and norm layers
        },
        "schedule": {
            "name": "multistep",
            "milestones": [200, 250, 300],
            "gamma": 0.1,
            "warmup_epochs": 0,
            "decay": 0.0,  # the `decay` schedule's d in lr / (1 + d * iteration) (Keras)
            "three_phase": False,  # onecycle: torch's three_phase=True
        },
        "optimizer_switch": None,  # {epoch: E, name: sgd, ...}: trainers/phases.py
        "label_smoothing": 0.0,
        "seed": 0,
        "precision": "auto",
        "channels_last": "auto",
        "compile": False,
        "device": "auto",
        # Cadences (trainers/cadence.py): speed, not numbers, so NON_IDENTITY.
        "checkpoint_every": None,
        "checkpoint_s": 60.0,
        "eval_every": "auto",
        "probes": [],  # filters, weight_norms, grad_norms: trainers/probes.py
        "eval_epochs": [],  # epochs that always evaluate: halving's rungs (docs/spec.md)
        # Stages (orchestrator/stages/parents.py, trainers/transfer.py): where the weights start.
        "body": "scratch",  # scratch | finetune | frozen: the parent's body, trained or not
        "body_lr": 1.0,  # finetune: the body's lr is train.lr times this
        "keep_weights": False,  # save the final weights in the store (a stage's parent)
        "parent": None,  # set by the launch: {grid, key, run_id, weights} of the parent cell
    },
}

# Short names for the five headline axes and the seed.
ALIASES = {
    "arch": "model.arch",
    "init": "model.init",
    "activation": "model.activation",
    "batch_norm": "model.batch_norm",
    "lr": "train.lr",
    "seed": "train.seed",
    "body": "train.body",
    "classes": "dataset.classes",
}
SHORT = {v: k for k, v in ALIASES.items()}

# Where and how a cell runs, not what it trains: left out of its key so that the same cell has
# the same key on a laptop and on a cluster with another data root. channels_last, compile and
# the images' storage on the device change speed and memory, not the numbers (to float
# tolerance); the checkpoint cadence changes nothing trained, and the evaluation cadence only
# which epochs have val/test metrics (the final epoch always has them, identical).
NON_IDENTITY = (
    "dataset.root",
    "dataset.download",
    "dataset.on_device",
    "train.device",
    "train.channels_last",
    "train.compile",
    "train.checkpoint_every",
    "train.checkpoint_s",
    "train.eval_every",
    "train.eval_epochs",
    "train.probes",  # what a cell records, not what it trains
    "train.keep_weights",  # what a cell keeps, not what it trains
    # The parent cell a child starts from: fixed at launch (orchestrator/stages/parents.py), kept in
    # the child's row; a new parent makes the child stale, it does not move its key.
    "train.parent",
)

DATASETS = ("cifar10", "cifar100", "synthetic")
AUGMENTS = ("crop", "flip", "cutout", "jitter", "rotate", "scale", "resized_crop")
PROBES = ("filters", "weight_norms", "grad_norms")
PREPROCESS = ("none", "standardize", "gcn_zca", "stretch", "raw", "center")
OPTIMIZERS = ("sgd", "adam", "adamw", "adadelta", "radam", "ranger")
SCHEDULES = ("multistep", "cosine", "onecycle", "constant", "decay")


def _registry(kind: str) -> list[str]:
    # The names only (trainers/names.py): the registries themselves import torch.
    from trainers import names

    return list(names.registered(kind if kind in ("arch", "init") else "activation"))


def _subsets():
    from trainers import subsets

    return subsets


def arch(v: Any) -> tuple[str | None, Any]:
    """A registered model name, or one of its aliases (`trainers.names.ALIASES`, the table
    `create_model` resolves by), as its canonical name: `all-cnn-c` and `allcnn_c` are one
    cell with one key."""
    from trainers.names import canonical_model

    name = canonical_model(v)
    return (None, name) if name is not None else choice(lambda: _registry("arch"), "arch")(v)


def optimizer_switch(v):
    """Null, or {epoch: E, ...}: trainers.phases checks the mapping."""
    from trainers.phases import check_switch

    err = check_switch(v)
    if err is None and v is not None:
        for k in ("name", "momentum", "nesterov", "weight_decay", "decay_norm_bias"):
            if k in v:
                sub, _ = CHECKS[f"train.optimizer.{k}"](v[k])
                err = err or (f"{k}: {sub}" if sub else None)
        if "lr" in v:
            sub, _ = CHECKS["train.lr"](v["lr"])
            err = err or (f"lr: {sub}" if sub else None)
    return err, v


CHECKS: dict[str, Callable[[Any], tuple[str | None, Any]]] = {
    "dataset.name": choice(DATASETS, "dataset"),
    "dataset.root": optional_str,
    "dataset.download": boolean,
    "dataset.augment": str_list(AUGMENTS, "augmentation"),
    "dataset.crop_padding": number(0, lo_open=False, integer=True),
    "dataset.cutout_size": number(0, lo_open=False, integer=True),
    "dataset.preprocess": choice(PREPROCESS, "preprocessing"),
    "dataset.val_size": number(0, lo_open=False, integer=True),
    "dataset.subset": number(0, integer=True, optional=True),
    "dataset.classes": lambda v: _subsets().check_classes(v),
    "dataset.on_device": choice(("auto", "uint8", "float32"), "storage"),
    "dataset.jitter": number(0, lo_open=False),
    "dataset.rotate_degrees": number(0, lo_open=False, hi=180),
    "dataset.scale_range": number(0, lo_open=False, hi=1, hi_open=True),
    "dataset.mixup": number(0, lo_open=False),
    "model.arch": arch,
    "model.init": choice(lambda: _registry("init"), "init"),
    "model.activation": choice(lambda: _registry("activation"), "activation"),
    "model.batch_norm": boolean,
    "model.dropout": number(0, lo_open=False, hi=1, hi_open=True),
    "model.input_dropout": number(0, lo_open=False, hi=1, hi_open=True),
    "model.width": number(0),
    "model.head": choice(("conv", "fc"), "head"),
    "model.padding": same_or_pixels,
    "model.block_order": choice(
        ("original", "bn_after_add", "act_before_add", "act_preact", "preact"), "block order"
    ),
    "model.downsample": choice(("stride", "maxpool"), "downsampling"),
    "model.pool_first": boolean,
    "model.depth": number(0, integer=True),
    "model.channels": count_or_counts,
    "model.kernel_size": count_or_counts,
    "model.bn_momentum": number(0, hi=1),
    "model.bn_eps": number(0),
    "train.epochs": number(0, integer=True),
    "train.batch_size": number(0, integer=True),
    "train.lr": number(0),
    "train.optimizer.name": choice(OPTIMIZERS, "optimizer"),
    "train.optimizer.momentum": number(0, lo_open=False, hi=1, hi_open=True),
    "train.optimizer.nesterov": boolean,
    "train.optimizer.weight_decay": number(0, lo_open=False),
    "train.optimizer.decay_norm_bias": boolean,
    "train.schedule.name": choice(SCHEDULES, "schedule"),
    "train.schedule.milestones": milestones,
    "train.schedule.gamma": number(0),
    "train.schedule.warmup_epochs": number(0, lo_open=False, integer=True),
    "train.schedule.decay": number(0, lo_open=False),
    "train.schedule.three_phase": boolean,
    "train.optimizer_switch": optimizer_switch,
    "train.label_smoothing": number(0, lo_open=False, hi=1, hi_open=True),
    "train.seed": number(None, integer=True),
    "train.precision": choice(("auto", "bf16", "fp32"), "precision"),
    "train.channels_last": tri_state,
    "train.compile": boolean,
    "train.device": device,
    "train.checkpoint_every": number(0, integer=True, optional=True),
    "train.checkpoint_s": number(0, lo_open=False),
    "train.eval_every": auto_or_count,
    "train.eval_epochs": milestones,
    "train.probes": str_list(PROBES, "probe"),
    "train.body": choice(("scratch", "finetune", "frozen"), "body"),
    "train.body_lr": number(0),
    "train.keep_weights": boolean,
    "train.parent": lambda v: (
        (None, v) if v is None else ("set by the launch from the spec's `stage:`", v)
    ),
}

SECTIONS = ("dataset", "model", "train", "train.optimizer", "train.schedule")
PATHS = tuple(CHECKS) + SECTIONS


def canonical_path(name: str) -> str:
    """An axis or override name as a dotted config path (aliases resolved)."""
    return ALIASES.get(name, name)


def unknown_path(name: str) -> str:
    """The error for a key that is no config path, with a did-you-mean."""
    hint = did_you_mean(name, list(ALIASES) + list(PATHS))
    return f"unknown key '{name}'{hint}"


def get_path(cfg: dict, path: str) -> Any:
    for part in path.split("."):
        cfg = cfg[part]
    return cfg


def set_path(cfg: dict, path: str, value: Any) -> None:
    parts = path.split(".")
    for part in parts[:-1]:
        cfg = cfg.setdefault(part, {})
    cfg[parts[-1]] = value


def flatten(mapping: dict, prefix: str = "") -> dict[str, Any]:
    """Nested override mappings as {dotted path: value}; aliases resolved.

    A mapping under a section path (`train.schedule: {name: cosine}`) becomes its leaves,
    so it merges onto the base config instead of dropping the keys it does not name.
    """
    out: dict[str, Any] = {}
    for k, v in mapping.items():
        path = canonical_path(f"{prefix}{k}") if not prefix else f"{prefix}{k}"
        if isinstance(v, dict) and path in SECTIONS:
            out.update(flatten(v, path + "."))
        else:
            out[path] = v
    return out


def check_leaves(flat: dict[str, Any], where: str) -> tuple[list[str], dict[str, Any]]:
    """Check each {dotted path: value}; returns (errors, values in canonical form)."""
    errors, clean = [], {}
    for path, value in flat.items():
        if path not in CHECKS:
            errors.append(
                f"{where}{path}: "
                + (
                    f"expected a mapping, got {_show(value)}"
                    if path in SECTIONS
                    else unknown_path(path)
                )
            )
            continue
        err, value = CHECKS[path](value)
        if err:
            errors.append(f"{where}{path}: {err}")
        clean[path] = value
    return errors, clean


def default_config() -> dict:
    return copy.deepcopy(DEFAULTS)


def axis_label(path: str) -> str:
    """The short name of an axis for display (`train.lr` -> `lr`), else its dotted path."""
    return SHORT.get(path, path)
