"""What a launch will cost, said before it starts, and the confirmation of a costly launch on
a machine without a GPU.

The quick form of `grid plan --estimate`: no step is timed. Each cell's work is its model's
forward FLOPs (`trainers/footprint.py`, a meta-device pass: milliseconds per kind of model)
times the images it trains (x3: forward and backward) and evaluates, over the epochs it is
expected to train (a halving's rungs counted). On a CPU the seconds are that work over
`CPU_FLOPS` per core, calibrated here against `grid plan --estimate` (within ~1.5x of it).
The augmentation, the evaluation's preprocessing and the reporting are not counted.

When the trials would run on this machine and it has no GPU, a launch over
`CONFIRM_ABOVE_S` CPU-hours asks before it starts (on a terminal), or needs `--yes` (no
terminal: exit 2 with the hint), and suggests `--smoke` or a cluster. `--smoke` never asks.
"""

from __future__ import annotations

import os
import sys

from rich.console import Console

from orchestrator.planning.estimate import hours
from trainers.errors import GridError

# Effective FLOP/s of one CPU core training these convnets in fp32: the quickstart's timed
# `grid plan --estimate` (136 s for 5.6 TFLOP) is 41 GFLOP/s a core; All-CNN-C's steps at
# batch 128 measured 25-28 GFLOP/s on one busy core, allcnn_table's timed estimate (2,341
# device-hours at 2 CPUs a trial) 56 (BENCHMARKS.md). Within ~1.5x of the timed estimate.
CPU_FLOPS = 40e9
# A launch longer than this much CPU time on a machine without a GPU is confirmed first: the
# quickstart is 136 s (docs/grids.md), the smallest shipped table grid hundreds of CPU-hours.
CONFIRM_ABOVE_S = 8 * 3600.0


def cell_flops(config: dict, epochs: float | None = None) -> float:
    """FLOPs of training one cell for `epochs` (default all) with its evaluations."""
    from trainers.cadence import evaluates
    from trainers.data import steps_per_epoch
    from trainers.footprint import model_cost
    from trainers.timing import sizes

    tcfg = config["train"]
    train_n, eval_n = sizes(config["dataset"])
    full = tcfg["epochs"]
    epochs = full if epochs is None else epochs
    forward = model_cost(config)["flops"]
    trained = epochs * steps_per_epoch(train_n, tcfg["batch_size"]) * tcfg["batch_size"]
    evals = sum(evaluates(e, tcfg) for e in range(1, full + 1)) * epochs / full
    return forward * (3 * trained + evals * eval_n)


def quick(spec, cells: list) -> dict:
    """{"cells", "flops", "cpu_s"}: the launch's work and its CPU-seconds (core-seconds)."""
    from orchestrator.halving.rule import cell_epochs

    epochs = cell_epochs(spec.halving, cells)
    flops = sum(cell_flops(t.config, epochs[t.key]) for t in cells)
    return {"cells": len(cells), "flops": flops, "cpu_s": flops / CPU_FLOPS}


def days(seconds: float) -> str:
    """`3.2 days` past two days, else `hours` (`1h02m`)."""
    return f"{seconds / 86400:.1f} days" if seconds >= 2 * 86400 else hours(seconds)


def has_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


def say_and_confirm(
    spec,
    cells: list,
    console: Console,
    *,
    here: bool,
    yes: bool,
    ask=None,
) -> bool:
    """Print the launch's cost; True to go on. `here`: the trials run on this machine (a
    local Ray). Past `CONFIRM_ABOVE_S` on a machine without a GPU: `yes`, else a question on
    a terminal (`ask(prompt) -> answer`, default the console's input), else a GridError."""
    cost = quick(spec, cells)
    cpu_only = here and not has_gpu()
    cpus = os.cpu_count() or 1
    where = (
        f"about {cost['cpu_s'] / 3600:.3g} CPU-hours, so {days(cost['cpu_s'] / cpus)} on this "
        f"machine's {cpus} CPUs (it has no GPU)"
        if cpu_only
        else "`grid plan --estimate` on a GPU node times it"
    )
    console.print(
        f"{spec.name}: {cost['cells']} cells, {cost['flops'] / 1e15:.3g} PFLOP of training: "
        f"{where}",
        highlight=False,
    )
    if not cpu_only or cost["cpu_s"] <= CONFIRM_ABOVE_S or yes or spec.forced:
        return True
    hint = (
        f"try `grid launch {spec.path} --smoke` first, or launch on a GPU cluster "
        "(--address, or --submit)"
    )
    if ask is None and not sys.stdin.isatty():
        raise GridError(
            f"{spec.path}: this launch is {cost['cpu_s'] / 3600:.0f} CPU-hours on a machine "
            f"without a GPU; rerun with --yes to start it anyway, or {hint}"
        )
    console.print(f"[yellow]that is over {CONFIRM_ABOVE_S / 3600:g} CPU-hours; {hint}[/]")
    answer = (ask or console.input)("start it anyway? [y/N] ")
    if answer.strip().lower() in ("y", "yes"):
        return True
    console.print(f"{spec.name}: nothing started")
    return False
