"""A cell's key: the hash of what sets it apart from a frozen baseline, plus a scheme version.

Hashing the whole resolved config (the scheme of 0.1) moved every key whenever a release added
a config key: every stored result then read as missing and trained again. Here a key hashes
only the leaves whose value differs from `BASELINE`, a frozen copy of the defaults as they were
when this scheme began. A leaf the baseline does not know (an option added later) counts only
when it differs from its default, so a new option whose default reproduces today's training
moves no key. Values that say where or how a cell runs, not what it trains, never count
(`config.NON_IDENTITY`). Changing the rule itself means a new `SCHEME`, which moves every key once.
"""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Any

from trainers import config

SCHEME = 2  # 1: sha256 of the whole config (0.1); 2: the difference from BASELINE
KEY_LENGTH = 12  # 48 bits: a collision needs ~16M cells in one grid before it is likely

# Frozen: never edit an entry, only add one per new option. A changed default is a changed
# experiment, so it must move the keys of the cells that use it, which it does because those
# cells now differ from this baseline.
BASELINE: dict[str, Any] = {
    "dataset.name": "cifar10",
    "dataset.augment": ["crop", "flip"],
    "dataset.crop_padding": 4,
    "dataset.cutout_size": 8,
    "dataset.preprocess": "standardize",
    "dataset.val_size": 5000,
    "dataset.subset": None,
    "model.arch": "allcnn_c",
    "model.init": "he_normal",
    "model.activation": "relu",
    "model.batch_norm": False,
    "model.dropout": 0.5,
    "model.input_dropout": 0.2,
    "model.width": 1.0,
    "train.epochs": 350,
    "train.batch_size": 128,
    "train.lr": 0.05,
    "train.optimizer.name": "sgd",
    "train.optimizer.momentum": 0.9,
    "train.optimizer.nesterov": False,
    "train.optimizer.weight_decay": 0.001,
    "train.schedule.name": "multistep",
    "train.schedule.milestones": [200, 250, 300],
    "train.schedule.gamma": 0.1,
    "train.schedule.warmup_epochs": 0,
    "train.label_smoothing": 0.0,
    "train.seed": 0,
    "train.precision": "auto",
    # Options added later, each frozen at its neutral value (today's training) when it is
    # added: it moves no key, and a later change of its default moves the keys it should.
    "train.optimizer.decay_norm_bias": True,
    "train.schedule.decay": 0.0,
    "train.schedule.three_phase": False,
    "train.optimizer_switch": None,
    "dataset.jitter": 0.4,
    "dataset.rotate_degrees": 15.0,
    "dataset.scale_range": 0.1,
    "dataset.mixup": 0.0,
    "model.head": "conv",
    "model.block_order": "original",
    "model.downsample": "stride",
    "model.pool_first": False,
    "model.depth": 3,
    "model.channels": [64, 128, 256],
    "model.kernel_size": 3,
    "dataset.classes": None,
    "train.body": "scratch",
    "train.body_lr": 1.0,
    "model.bn_momentum": 0.1,
    "model.bn_eps": 1e-5,
    "model.padding": "same",
}


def leaves(cfg: dict, prefix: str = "") -> dict[str, Any]:
    """A nested config as {dotted path: value}; lists are values."""
    out: dict[str, Any] = {}
    for k, v in cfg.items():
        if isinstance(v, dict):
            out.update(leaves(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _same(a: Any, b: Any) -> bool:
    # 1 and 1.0 are one number (the checkers already make floats of float keys); True is no 1
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    return a == b


def identity(resolved: dict, defaults: dict[str, Any] | None = None) -> dict[str, Any]:
    """The leaves of a resolved config that make it this cell: those that differ from the
    baseline (or, for a leaf the baseline lacks, from its default), minus where-it-runs.
    `defaults`: `leaves(config.DEFAULTS)`, given by a caller that keys many cells (expand:
    flattened once, not once per cell)."""
    if defaults is None:
        defaults = leaves(config.DEFAULTS)
    out = {}
    for path, value in leaves(resolved).items():
        if path in config.NON_IDENTITY:
            continue
        neutral = BASELINE[path] if path in BASELINE else defaults.get(path, object())
        if not _same(value, neutral):
            out[path] = copy.deepcopy(value)
    return out


def canonical_json(resolved: dict, defaults: dict[str, Any] | None = None) -> str:
    """The scheme version and the cell's identity as sorted compact JSON: what is hashed."""
    return json.dumps(
        {"scheme": SCHEME, "differs": identity(resolved, defaults)},
        sort_keys=True,
        separators=(",", ":"),
    )


def cell_key(resolved: dict, defaults: dict[str, Any] | None = None) -> str:
    """The stable key of a resolved config (`defaults`: as for `identity`)."""
    return hashlib.sha256(canonical_json(resolved, defaults).encode()).hexdigest()[:KEY_LENGTH]
