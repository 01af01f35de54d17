"""Switching optimizer mid-run (seed 003 §6.2: "75 epochs of cosine annealing warm-up Adam
first, and then 75 epochs of cosine annealing SGD").

`train.optimizer_switch: {epoch: E, ...}` trains epochs 1..E with the `train` section's
optimizer and schedule (the schedule spanning those E epochs), then epochs E+1.. with a
fresh optimizer and schedule: the section's values overridden by the switch's `name`,
`lr`, `momentum`, `nesterov`, `weight_decay`, `decay_norm_bias` and `schedule` (a mapping
merged onto the section's), the schedule spanning the remaining epochs. Null: one phase.
"""

from __future__ import annotations

import copy
from typing import Any

OPTIMIZER_KEYS = ("name", "momentum", "nesterov", "weight_decay", "decay_norm_bias")
SWITCH_KEYS = ("epoch", "lr", "schedule", *OPTIMIZER_KEYS)


def check_switch(v: Any) -> str | None:
    """An error for a bad `train.optimizer_switch` value, else None (the optimizer and
    schedule names are checked again when the phase is built)."""
    if v is None:
        return None
    if not isinstance(v, dict):
        return f"expected a mapping with an epoch, or null, got {v!r}"
    unknown = sorted(set(v) - set(SWITCH_KEYS))
    if unknown:
        return f"unknown key {unknown[0]!r}; choose from {', '.join(SWITCH_KEYS)}"
    epoch = v.get("epoch")
    if not (isinstance(epoch, int) and not isinstance(epoch, bool) and epoch >= 1):
        return f"epoch: expected a positive integer, got {epoch!r}"
    if "schedule" in v and not isinstance(v["schedule"], dict):
        return f"schedule: expected a mapping, got {v['schedule']!r}"
    return None


def switch_epoch(train_cfg: dict) -> int | None:
    """The last epoch of the first phase, or None without a switch."""
    switch = train_cfg.get("optimizer_switch")
    return None if not switch else switch["epoch"]


def phase_config(train_cfg: dict, epoch: int) -> dict:
    """The `train` section that builds the optimizer and schedule for `epoch` (1-based)."""
    last = switch_epoch(train_cfg)
    if last is None:
        return train_cfg
    cfg = copy.deepcopy(train_cfg)
    if epoch <= last:
        cfg["epochs"] = min(last, train_cfg["epochs"])
        return cfg
    switch = train_cfg["optimizer_switch"]
    cfg["epochs"] = max(1, train_cfg["epochs"] - last)
    cfg["lr"] = switch.get("lr", cfg["lr"])
    cfg["optimizer"].update({k: switch[k] for k in OPTIMIZER_KEYS if k in switch})
    cfg["schedule"].update(switch.get("schedule", {}))
    return cfg
