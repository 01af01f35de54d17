"""One place builds a cell for training: data, generator, model, init, optimizer, schedule
and resume, in that order and from the cell's seed.

`trainers.loop.train`, `trainers.pack.train_packed` and `grid bench` all start from
`setup(config)`, so a cell packed with others, benchmarked or trained alone is built alike:
the packed trainer's bit-for-bit agreement with the loop rests on it.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable

import torch
from torch import nn

from trainers import phases, runtime, transfer
from trainers.checkpoint import restore_state
from trainers.data import Data, data_generator, load_data, steps_per_epoch
from trainers.inits import init_model
from trainers.models import create_model, model_options
from trainers.optim import build_optimizer, build_schedule
from trainers.summary import diverged


@dataclasses.dataclass
class Run:
    """One cell's training run: what `setup` builds for its config, how it computes, and
    how far it got (`history`, one metrics dict per epoch, and wall seconds before this
    process)."""

    config: dict
    device: torch.device
    data: Data
    gen: torch.Generator
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    memory_format: torch.memory_format = torch.contiguous_format
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext
    report: Callable[[dict, dict], None] | None = None
    history: list = dataclasses.field(default_factory=list)
    prior_wall: float = 0.0
    params: list | None = None  # what the optimizer trains (a frozen body's are not in it)
    scaled: list | None = None  # parameters with `train.body_lr` (trainers/transfer.py)

    @property
    def status(self) -> str:
        """ "diverged" once an epoch had a NaN/inf loss (`trainers.summary.diverged`), else
        "completed"."""
        return "diverged" if self.history and diverged(self.history[-1]) else "completed"

    @property
    def fmt(self) -> dict:
        """The step's keyword arguments: autocast and memory format."""
        return {"autocast": self.autocast, "memory_format": self.memory_format}


def switch_optimizer(run: Run, epoch: int) -> bool:
    """At the first epoch after `train.optimizer_switch`'s epoch, give `run` the second
    phase's fresh optimizer and schedule (trainers/phases.py); True when it did."""
    if phases.switch_epoch(run.config["train"]) != epoch - 1:
        return False
    tcfg = run.config["train"]
    phase = phases.phase_config(tcfg, epoch)
    params = run.params if run.params is not None else run.model.parameters()
    run.optimizer = build_optimizer(params, phase, run.scaled)
    n = steps_per_epoch(len(run.data.train_y), tcfg["batch_size"])
    run.scheduler = build_schedule(run.optimizer, phase, n)
    return True


def build_model(
    model_cfg: dict, num_classes: int, device: torch.device, fmt: torch.memory_format
) -> nn.Module:
    """The `model` section's architecture with its options, on `device` in `fmt`."""
    model = create_model(model_cfg["arch"], num_classes=num_classes, **model_options(model_cfg))
    return model.to(device, memory_format=fmt)


def setup(
    config: dict,
    resume: dict | None = None,
    *,
    device: torch.device | None = None,
    data: Data | None = None,
    weights: dict | None = None,
) -> Run:
    """Build the cell `config` (a resolved config, docs/design.md) for training, then load
    `resume` (a `trainers.checkpoint.capture_state` state) onto this device.

    `device`: default `train.device` resolved; `data`: this config's `load_data` result when
    already loaded (same seed: cells of a pack share it); `weights`: the parent's state_dict
    when `train.body` starts from one (`trainers/transfer.py`)."""
    dcfg, mcfg, tcfg = config["dataset"], config["model"], config["train"]
    device = device or runtime.resolve_device(tcfg["device"])
    torch.manual_seed(tcfg["seed"])
    runtime.configure_cudnn(device)
    # Data: all of it on the device; one generator drives shuffling and augmentation.
    data = data if data is not None else load_data(dcfg, device, tcfg["seed"])
    gen = data_generator(device, tcfg["seed"])
    fmt = runtime.memory_format(tcfg, device)
    # Model: built, moved, then initialised explicitly (LSUV looks at a real batch).
    # Initialised in the contiguous layout, then laid out in `fmt`: an init draws its numbers
    # in memory order, so initialising a channels_last model would give a GPU run (auto:
    # channels_last) other weights than a CPU run of the same seed.
    model = build_model(mcfg, data.num_classes, device, torch.contiguous_format)
    if resume is None:
        batch = data.preprocess(data.train_x[: tcfg["batch_size"]])
        init_model(model, mcfg["init"], batch=batch)
    # A stage's cell: the parent's body over the init (the head keeps the init's draw).
    params, scaled = transfer.prepare(model, tcfg, weights, resumed=resume is not None)
    model = model.to(memory_format=fmt)
    # Optimisation: the schedule steps once per batch; with an optimizer switch, the phase
    # of the last epoch trained (the state's optimizer is that phase's).
    phase = phases.phase_config(tcfg, resume["epoch"] if resume is not None else 1)
    optimizer = build_optimizer(params, phase, scaled)
    scheduler = build_schedule(
        optimizer, phase, steps_per_epoch(len(data.train_y), tcfg["batch_size"])
    )
    run = Run(
        config,
        device,
        data,
        gen,
        model,
        optimizer,
        scheduler,
        memory_format=fmt,
        autocast=runtime.autocast_for(tcfg["precision"], device),
        params=params,
        scaled=scaled,
    )
    if resume is not None:
        run.history, run.prior_wall = restore_state(resume, run)
    return run
