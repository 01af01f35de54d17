"""Train one cell: `train(config, report, resume) -> summary` (docs/design.md), no Ray.

The loop reads top to bottom in `train()`: `trainers.setup.setup` builds the cell, then
`run_epoch` trains and evaluates it once per epoch. `evaluate` and `run_epoch`'s metrics are
shared with the packed trainer. On CUDA the data lives on the GPU, steps run under bf16
autocast in channels_last (`trainers.runtime`), and metrics accumulate on the device: the
host syncs once per epoch.
"""
from __future__ import annotations

import contextlib
import time
from typing import Callable

import torch
from torch import nn

from trainers import runtime
from trainers.checkpoint import capture_state
from trainers.data import Data, train_batches
from trainers.models import count_params
from trainers.setup import Run, setup
from trainers.summary import METRIC_KEYS, diverged, summarize

__all__ = ["METRIC_KEYS", "evaluate", "train_epoch", "run_epoch", "epoch_metrics", "train"]

EVAL_BATCH = 1000


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
             preprocess: Callable[[torch.Tensor], torch.Tensor], *,
             batch_size: int = EVAL_BATCH, autocast=contextlib.nullcontext,
             memory_format=torch.contiguous_format):
    """(mean loss, accuracy) of `model` on stored images `x`, as 0-dim device tensors (no
    host sync); None when `x` is empty. The model is left in train mode."""
    if len(y) == 0:
        return None
    model.eval()
    loss_sum = torch.zeros((), device=y.device)
    correct = torch.zeros((), device=y.device)
    for xb, yb in zip(x.split(batch_size), y.split(batch_size)):
        with autocast():
            logits = model(preprocess(xb).contiguous(memory_format=memory_format)).float()
        loss_sum += nn.functional.cross_entropy(logits, yb, reduction="sum")
        correct += (logits.argmax(1) == yb).sum()
    model.train()
    return loss_sum / len(y), correct / len(y)


def train_epoch(model, data: Data, gen, optimizer, scheduler, loss_fn, batch_size: int, *,
                autocast=contextlib.nullcontext, memory_format=torch.contiguous_format):
    """One pass over the shuffled, augmented training set; (mean loss, accuracy, images) with
    the first two as device tensors (no host sync)."""
    model.train()
    loss_sum = torch.zeros((), device=data.train_y.device)
    correct = torch.zeros((), device=data.train_y.device)
    seen = 0
    for x, y in train_batches(data, batch_size, gen):
        with autocast():
            logits = model(x.contiguous(memory_format=memory_format)).float()
        loss = loss_fn(logits, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        loss_sum += loss.detach() * len(y)
        correct += (logits.detach().argmax(1) == y).sum()
        seen += len(y)
    return loss_sum / seen, correct / seen, seen


def epoch_metrics(epoch: int, lr: float, values: list[float], has_val: bool, wall_s: float,
                  images_per_s: float) -> dict:
    """An epoch's metrics dict (`METRIC_KEYS`) from the synced values [train_loss,
    train_acc, (val_loss, val_acc,) test_loss, test_acc]."""
    val_loss, val_acc = (values[2], values[3]) if has_val else (None, None)
    return {"epoch": epoch, "lr": lr, "train_loss": values[0], "train_acc": values[1],
            "val_loss": val_loss, "val_acc": val_acc, "test_loss": values[-2],
            "test_acc": values[-1], "epoch_s": wall_s, "images_per_s": images_per_s}


def run_epoch(epoch: int, model, data: Data, gen, optimizer, scheduler, loss_fn,
              batch_size: int, **fmt) -> dict:
    """Train one epoch, evaluate on val and test, and return the epoch's metrics dict."""
    device = data.train_y.device
    wall0, start = time.perf_counter(), runtime.mark(device)
    lr = optimizer.param_groups[0]["lr"]
    train_loss, train_acc, seen = train_epoch(model, data, gen, optimizer, scheduler, loss_fn,
                                              batch_size, **fmt)
    train_end = runtime.mark(device)
    val = evaluate(model, data.val_x, data.val_y, data.preprocess, **fmt)
    test = evaluate(model, data.test_x, data.test_y, data.preprocess, **fmt)
    # The one host sync of the epoch: every metric comes back in one transfer.
    values = torch.stack([train_loss, train_acc, *(val or ()), *test]).tolist()
    if device.type == "cuda":
        torch.cuda.synchronize(device)  # events are complete: their times are readable
    train_s = max(runtime.seconds_between(start, train_end), 1e-9)
    return epoch_metrics(epoch, lr, values, val is not None, time.perf_counter() - wall0,
                         seen / train_s)


def train(config: dict, report: Callable[[dict, dict], None] | None = None,
          resume: dict | None = None) -> dict:
    """Train the cell `config` (the resolved config of docs/design.md); returns its summary.

    `report(metrics, state)` runs after every epoch; `resume` is such a `state`.
    """
    t0 = time.perf_counter()
    tcfg = config["train"]
    run: Run = setup(config, resume)
    net = torch.compile(run.model) if tcfg["compile"] else run.model
    loss_fn = nn.CrossEntropyLoss(label_smoothing=tcfg["label_smoothing"])

    status = run.status  # a cell resumed after it diverged trains no further epoch
    first = tcfg["epochs"] + 1 if status == "diverged" else len(run.history) + 1
    for epoch in range(first, tcfg["epochs"] + 1):
        metrics = run_epoch(epoch, net, run.data, run.gen, run.optimizer, run.scheduler,
                            loss_fn, tcfg["batch_size"], **run.fmt)
        run.history.append(metrics)
        # A NaN/inf loss poisons the epoch's on-device loss sum, so checking that sum once
        # per epoch catches it without a host sync per step (which would stall the GPU).
        if diverged(metrics):
            status = "diverged"
        if report is not None:
            report(metrics, capture_state(run, run.prior_wall + time.perf_counter() - t0))
        if status == "diverged":
            break

    return summarize(run.history, status, count_params(run.model),
                     run.prior_wall + time.perf_counter() - t0,
                     runtime.device_name(run.device))
