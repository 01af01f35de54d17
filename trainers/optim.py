"""Optimizers and per-step learning-rate schedules from the config's `train` section."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch

from trainers.errors import GridError
from trainers.lookahead import Lookahead

# Names accepted here; spec.py validates them first, this guards direct callers.
OPTIMIZERS = ("sgd", "adam", "adamw", "adadelta", "radam", "ranger")
SCHEDULES = ("multistep", "cosine", "onecycle", "constant", "decay")
# Adam's second-moment decay: PyTorch's and Kingma & Ba's default (`momentum` is beta1).
ADAM_BETA2 = 0.999

# One-cycle (Smith & Topin, 2019) as torch's OneCycleLR defaults: 30% of the steps ramp up
# from lr/25, the rest ramp down to ~0; linear both ways, as in the super-convergence paper.
ONECYCLE_PCT_START = 0.3
ONECYCLE_DIV = 25.0
# Three-phase one-cycle (seed 003 §5.3) is torch's OneCycleLR(three_phase=True,
# anneal_strategy="linear"): up to lr, back down to lr/25, then on to lr/25/1e4.
ONECYCLE_FINAL_DIV = 1e4
# AdaDelta's running-average decay: torch's default (Zeiler's paper used 0.95).
ADADELTA_RHO = 0.9


def param_groups(params: list[torch.nn.Parameter], wd: float, decay_norm_bias: bool) -> list:
    """One group with weight decay `wd` on every parameter (the papers), or, without
    `decay_norm_bias`, timm's `param_groups_weight_decay` split: no decay on 1-D tensors
    (biases, batch-norm scales and shifts, PReLU slopes), `wd` on the rest."""
    if decay_norm_bias:
        return [{"params": params, "weight_decay": wd}]
    groups = [
        {"params": [p for p in params if p.ndim > 1], "weight_decay": wd},
        {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0},
    ]
    return [g for g in groups if g["params"]]


def scale_groups(groups: list[dict], scaled: list, lr) -> list[dict]:
    """`groups` with the parameters of `scaled` moved to groups of their own with `lr`."""
    ids = {id(p) for p in scaled}
    plain = [{**g, "params": [p for p in g["params"] if id(p) not in ids]} for g in groups]
    body = [{**g, "params": [p for p in g["params"] if id(p) in ids], "lr": lr} for g in groups]
    return [g for g in plain + body if g["params"]]


def build_optimizer(
    params: Iterable[torch.nn.Parameter], train_cfg: dict, scaled: list | None = None
) -> torch.optim.Optimizer:
    """SGD (momentum, nesterov), Adam, AdamW, AdaDelta, RAdam or Ranger (RAdam inside
    `trainers.lookahead.Lookahead`) with `train.lr` and `train.optimizer.*`.

    Weight decay applies to every parameter, as in the papers, unless
    `optimizer.decay_norm_bias` is false (`param_groups`). `scaled`: parameters whose lr is
    `train.lr * train.body_lr` (a stage's fine-tuned body, `trainers/transfer.py`), in groups
    of their own after the others (the first group's lr is the one the metrics report). On
    CUDA the fused kernels are used (one launch for all parameters); elsewhere PyTorch's
    default (foreach) path. With `train.compile` the lr is a 0-dim tensor, which the
    schedule updates in place, so the compiled optimizer step (`trainers.step`) is not
    recompiled at every new lr.
    """
    params = list(params)
    opt, lr = train_cfg["optimizer"], train_cfg["lr"]
    if train_cfg.get("compile"):
        # On the parameters' device: a CPU tensor in a CUDA graph's inputs stops inductor
        # from capturing the graph (it runs uncaptured, without the speed compile is for).
        lr = torch.tensor(float(lr), device=params[0].device if params else None)
    wd = opt.get("weight_decay", 0.0)
    momentum = opt.get("momentum", 0.0)
    fused = {"fused": True} if params and all(p.is_cuda for p in params) else {}
    groups = param_groups(params, wd, opt.get("decay_norm_bias", True))
    if scaled:
        groups = scale_groups(groups, scaled, lr * train_cfg["body_lr"])
    if opt["name"] == "sgd":
        # Nesterov with zero momentum is plain SGD (torch refuses the combination).
        nesterov = bool(opt.get("nesterov", False)) and momentum > 0
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=nesterov, **fused)
    if opt["name"] in ("adam", "adamw"):
        cls = torch.optim.Adam if opt["name"] == "adam" else torch.optim.AdamW
        return cls(groups, lr=lr, betas=(momentum, ADAM_BETA2), **fused)
    if opt["name"] == "adadelta":  # `momentum` unused: AdaDelta has none
        return torch.optim.Adadelta(groups, lr=lr, rho=ADADELTA_RHO)
    if opt["name"] in ("radam", "ranger"):
        radam = torch.optim.RAdam(groups, lr=lr, betas=(momentum, ADAM_BETA2))
        return radam if opt["name"] == "radam" else Lookahead(radam)
    raise GridError(
        f"train.optimizer.name: unknown optimizer {opt['name']!r}; "
        f"choose from {', '.join(OPTIMIZERS)}"
    )


def lr_factor(schedule: dict, epochs: int, steps_per_epoch: int) -> Callable[[int], float]:
    """The multiplier of the base lr at each optimizer step (0-based), warmup included."""
    name = schedule["name"]
    if name not in SCHEDULES:
        raise GridError(
            f"train.schedule.name: unknown schedule {name!r}; choose from {', '.join(SCHEDULES)}"
        )
    total = max(1, epochs * steps_per_epoch)
    warm = min(schedule.get("warmup_epochs", 0) * steps_per_epoch, total)
    milestones = sorted(schedule.get("milestones", []))
    gamma = schedule.get("gamma", 0.1)
    decay = schedule.get("decay", 0.0)
    if name == "onecycle" and schedule.get("three_phase", False):
        three = _three_phase(total - warm)

    def factor(step: int) -> float:
        if step < warm:  # linear warmup: 1/warm .. 1
            return (step + 1) / warm
        if name != "decay" and decay > 0:
            # Keras: SGD(decay=d) divides whatever lr the epoch's schedule set (a
            # LearningRateScheduler's steps) by 1 + d * iterations, counted over the whole
            # run (seed 000's All-CNN-C: steps at 200/250/300 and the per-iteration decay).
            return shape(step) / (1.0 + decay * (step - warm))
        return shape(step)

    def shape(step: int) -> float:
        if name == "multistep":  # milestones count whole epochs done
            epoch = step // steps_per_epoch
            return gamma ** sum(epoch >= m for m in milestones)
        t = (step - warm) / max(1, total - warm)  # progress after warmup, 0 .. 1
        if name == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * t))
        if name == "onecycle" and schedule.get("three_phase", False):
            return three(step - warm)
        if name == "onecycle":
            if t < ONECYCLE_PCT_START:
                return 1 / ONECYCLE_DIV + (1 - 1 / ONECYCLE_DIV) * t / ONECYCLE_PCT_START
            return (1.0 - t) / (1.0 - ONECYCLE_PCT_START)
        if name == "constant":
            return 1.0
        if name == "decay":  # Keras' time-based decay: lr / (1 + decay * iterations)
            return 1.0 / (1.0 + decay * (step - warm))
        raise ValueError(f"train.schedule.name: unknown schedule {name!r}")

    return factor


def _three_phase(total: int) -> Callable[[int], float]:
    """torch's three-phase OneCycleLR with linear annealing, as a factor of the peak lr."""
    lo, end = 1 / ONECYCLE_DIV, 1 / ONECYCLE_DIV / ONECYCLE_FINAL_DIV
    up = ONECYCLE_PCT_START * total - 1
    phases = [(up, lo, 1.0), (2 * up, 1.0, lo), (total - 1, lo, end)]

    def factor(step: int) -> float:
        start = 0.0
        for stop, a, b in phases:
            if step <= stop or stop == phases[-1][0]:
                return a + (b - a) * (step - start) / max(stop - start, 1e-12)
            start = stop
        return end

    return factor


def build_schedule(
    optimizer: torch.optim.Optimizer, train_cfg: dict, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """A LambdaLR stepped once per optimizer step (call `.step()` after `optimizer.step()`)."""
    factor = lr_factor(train_cfg["schedule"], train_cfg["epochs"], steps_per_epoch)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
