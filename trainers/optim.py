"""Optimizers and per-step learning-rate schedules from the config's `train` section."""
from __future__ import annotations

import math
from typing import Callable, Iterable

import torch

# One-cycle (Smith & Topin, 2019) as torch's OneCycleLR defaults: 30% of the steps ramp up
# from lr/25, the rest ramp down to ~0; linear both ways, as in the super-convergence paper.
ONECYCLE_PCT_START = 0.3
ONECYCLE_DIV = 25.0


def build_optimizer(params: Iterable[torch.nn.Parameter], train_cfg: dict) -> torch.optim.Optimizer:
    """SGD (momentum, nesterov), Adam or AdamW with `train.lr` and `train.optimizer.*`.

    Weight decay applies to every parameter, as in the papers. On CUDA the fused kernels are
    used (one launch for all parameters); elsewhere PyTorch's default (foreach) path.
    """
    params = list(params)
    opt, lr = train_cfg["optimizer"], train_cfg["lr"]
    wd = opt.get("weight_decay", 0.0)
    fused = {"fused": True} if params and all(p.is_cuda for p in params) else {}
    if opt["name"] == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=opt.get("momentum", 0.0),
                               nesterov=opt.get("nesterov", False), weight_decay=wd, **fused)
    if opt["name"] == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=wd, **fused)
    if opt["name"] == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=wd, **fused)
    raise ValueError(f"train.optimizer.name: unknown optimizer {opt['name']!r}")


def lr_factor(schedule: dict, epochs: int, steps_per_epoch: int) -> Callable[[int], float]:
    """The multiplier of the base lr at each optimizer step (0-based), warmup included."""
    name = schedule["name"]
    total = max(1, epochs * steps_per_epoch)
    warm = min(schedule.get("warmup_epochs", 0) * steps_per_epoch, total)
    milestones = sorted(schedule.get("milestones", []))
    gamma = schedule.get("gamma", 0.1)

    def factor(step: int) -> float:
        if step < warm:                              # linear warmup: 1/warm .. 1
            return (step + 1) / warm
        if name == "multistep":                      # milestones count whole epochs done
            epoch = step // steps_per_epoch
            return gamma ** sum(epoch >= m for m in milestones)
        t = (step - warm) / max(1, total - warm)     # progress after warmup, 0 .. 1
        if name == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * t))
        if name == "onecycle":
            if t < ONECYCLE_PCT_START:
                return 1 / ONECYCLE_DIV + (1 - 1 / ONECYCLE_DIV) * t / ONECYCLE_PCT_START
            return (1.0 - t) / (1.0 - ONECYCLE_PCT_START)
        if name == "constant":
            return 1.0
        raise ValueError(f"train.schedule.name: unknown schedule {name!r}")
    return factor


def build_schedule(optimizer: torch.optim.Optimizer, train_cfg: dict,
                   steps_per_epoch: int) -> torch.optim.lr_scheduler.LambdaLR:
    """A LambdaLR stepped once per optimizer step (call `.step()` after `optimizer.step()`)."""
    factor = lr_factor(train_cfg["schedule"], train_cfg["epochs"], steps_per_epoch)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
