"""Train one cell: `train(config, report, resume) -> summary` (docs/design.md), no Ray.

The loop reads top to bottom in `train()`; the pieces it uses (`run_epoch`, `evaluate`,
`capture_state`, `restore_state`, `summarize`) are small functions that the packed trainer
reuses. On CUDA the data lives on the GPU, steps run under bf16 autocast in channels_last,
and metrics accumulate on the device: the host syncs once per epoch.
"""
from __future__ import annotations

import contextlib
import math
import time
from typing import Callable

import torch
from torch import nn

from trainers.data import Data, data_generator, load_data, steps_per_epoch, train_batches
from trainers.inits import init_model
from trainers.models import count_params, create_model
from trainers.optim import build_optimizer, build_schedule

EVAL_BATCH = 1000
METRIC_KEYS = ("epoch", "lr", "train_loss", "train_acc", "val_loss", "val_acc", "test_loss",
               "test_acc", "epoch_s", "images_per_s")


def resolve_device(name: str) -> torch.device:
    """`train.device`: auto -> cuda when available, else cpu."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def autocast_for(precision: str, device: torch.device) -> Callable[[], contextlib.AbstractContextManager]:
    """A context factory: bf16 autocast for precision bf16 (auto: bf16 on CUDA), else nothing."""
    bf16 = precision == "bf16" or (precision == "auto" and device.type == "cuda")
    return lambda: torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)


def _mark(device: torch.device):
    """A point in time that does not sync the GPU (a CUDA event; perf_counter on CPU)."""
    if device.type == "cuda":
        event = torch.cuda.Event(enable_timing=True)
        event.record()
        return event
    return time.perf_counter()


def _seconds(start, end) -> float:
    return start.elapsed_time(end) / 1000 if isinstance(start, torch.cuda.Event) else end - start


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
             normalize: Callable[[torch.Tensor], torch.Tensor], *, batch_size: int = EVAL_BATCH,
             autocast=contextlib.nullcontext, memory_format=torch.contiguous_format):
    """(mean loss, accuracy) of `model` on stored images `x`, as 0-dim device tensors (no
    host sync); None when `x` is empty. The model is left in train mode."""
    if len(y) == 0:
        return None
    model.eval()
    loss_sum = torch.zeros((), device=y.device)
    correct = torch.zeros((), device=y.device)
    for xb, yb in zip(x.split(batch_size), y.split(batch_size)):
        with autocast():
            logits = model(normalize(xb).contiguous(memory_format=memory_format)).float()
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


def run_epoch(epoch: int, model, data: Data, gen, optimizer, scheduler, loss_fn,
              batch_size: int, **fmt) -> dict:
    """Train one epoch, evaluate on val and test, and return the epoch's metrics dict."""
    device = data.train_y.device
    wall0, start = time.perf_counter(), _mark(device)
    lr = optimizer.param_groups[0]["lr"]
    train_loss, train_acc, seen = train_epoch(model, data, gen, optimizer, scheduler, loss_fn,
                                              batch_size, **fmt)
    train_end = _mark(device)
    val = evaluate(model, data.val_x, data.val_y, data.normalize, **fmt)
    test = evaluate(model, data.test_x, data.test_y, data.normalize, **fmt)
    # The one host sync of the epoch: every metric comes back in one transfer.
    values = torch.stack([train_loss, train_acc, *(val or ()), *test]).tolist()
    if device.type == "cuda":
        torch.cuda.synchronize(device)  # events are complete: their times are readable
    train_s = _seconds(start, train_end)
    val_loss, val_acc = (values[2], values[3]) if val else (None, None)
    return {"epoch": epoch, "lr": lr, "train_loss": values[0], "train_acc": values[1],
            "val_loss": val_loss, "val_acc": val_acc, "test_loss": values[-2],
            "test_acc": values[-1], "epoch_s": time.perf_counter() - wall0,
            "images_per_s": seen / max(train_s, 1e-9)}


def capture_state(model, optimizer, scheduler, gen, history: list, wall_s: float) -> dict:
    """The full checkpoint after the last epoch in `history` (live tensors: save at once)."""
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
    return {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "rng": {"torch": torch.get_rng_state(), "cuda": cuda, "data": gen.get_state()},
            "epoch": len(history), "history": [dict(h) for h in history], "wall_s": wall_s}


def restore_state(state: dict, model, optimizer, scheduler, gen) -> tuple[list, float]:
    """Load a `capture_state` checkpoint in place; returns (history, wall_s so far)."""
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    rng = state["rng"]
    torch.set_rng_state(rng["torch"].cpu())
    if rng.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in rng["cuda"]])
    gen.set_state(rng["data"].cpu())
    return [dict(h) for h in state["history"]], float(state.get("wall_s", 0.0))


def summarize(history: list[dict], status: str, params: int, wall_s: float, device: str) -> dict:
    """The summary of docs/design.md; best is by val_acc (test_acc when there is no val)."""
    key = "val_acc" if history and history[0]["val_acc"] is not None else "test_acc"
    scored = [h for h in history if h[key] is not None and math.isfinite(h[key])]
    best = max(scored, key=lambda h: h[key]) if scored else (history[-1] if history else {})
    # Same images every epoch: the run's rate is the harmonic mean of the epochs' rates.
    rates = [h["images_per_s"] for h in history if h["images_per_s"] > 0]
    ips = len(rates) / sum(1 / r for r in rates) if rates else 0.0
    return {"status": status, "epochs": len(history), "params": params, "wall_s": wall_s,
            "images_per_s": ips, "device": device, "final": dict(history[-1]) if history else {},
            "best": dict(best), "history": [dict(h) for h in history]}


def _diverged(metrics: dict) -> bool:
    """A NaN/inf loss. The eval losses count too: the epoch's last step can blow up the
    weights after the train loss (averaged before each update) was still finite."""
    losses = (metrics["train_loss"], metrics["val_loss"], metrics["test_loss"])
    return not all(math.isfinite(v) for v in losses if v is not None)


def train(config: dict, report: Callable[[dict, dict], None] | None = None,
          resume: dict | None = None) -> dict:
    """Train the cell `config` (the resolved config of docs/design.md); returns its summary.

    `report(metrics, state)` runs after every epoch; `resume` is such a `state`.
    """
    t0 = time.perf_counter()
    dcfg, mcfg, tcfg = config["dataset"], config["model"], config["train"]
    device = resolve_device(tcfg["device"])
    torch.manual_seed(tcfg["seed"])
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True

    # Data: all of it on the device; one generator drives shuffling and augmentation.
    data = load_data(dcfg, device, tcfg["seed"])
    gen = data_generator(device, tcfg["seed"])
    channels_last = tcfg["channels_last"] if tcfg["channels_last"] != "auto" else device.type == "cuda"
    fmt = {"autocast": autocast_for(tcfg["precision"], device),
           "memory_format": torch.channels_last if channels_last else torch.contiguous_format}

    # Model: built, moved, then initialised explicitly (LSUV looks at a real batch).
    model = create_model(mcfg["arch"], num_classes=data.num_classes,
                         activation=mcfg["activation"], batch_norm=mcfg["batch_norm"],
                         dropout=mcfg["dropout"], input_dropout=mcfg["input_dropout"],
                         width=mcfg["width"])
    model = model.to(device, memory_format=fmt["memory_format"])
    if resume is None:
        batch = data.normalize(data.train_x[:tcfg["batch_size"]])
        init_model(model, mcfg["init"], batch=batch.contiguous(memory_format=fmt["memory_format"]))
    net = torch.compile(model) if tcfg["compile"] else model

    # Optimisation: the schedule steps once per batch.
    steps = steps_per_epoch(len(data.train_y), tcfg["batch_size"])
    optimizer = build_optimizer(model.parameters(), tcfg)
    scheduler = build_schedule(optimizer, tcfg, steps)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=tcfg["label_smoothing"])

    history, prior_wall = [], 0.0
    if resume is not None:
        history, prior_wall = restore_state(resume, model, optimizer, scheduler, gen)
    status = "diverged" if history and _diverged(history[-1]) else "completed"

    first = tcfg["epochs"] + 1 if status == "diverged" else len(history) + 1
    for epoch in range(first, tcfg["epochs"] + 1):
        metrics = run_epoch(epoch, net, data, gen, optimizer, scheduler, loss_fn,
                            tcfg["batch_size"], **fmt)
        history.append(metrics)
        # A NaN/inf loss poisons the epoch's on-device loss sum, so checking that sum once
        # per epoch catches it without a host sync per step (which would stall the GPU).
        if _diverged(metrics):
            status = "diverged"
        if report is not None:
            wall = prior_wall + time.perf_counter() - t0
            report(metrics, capture_state(model, optimizer, scheduler, gen, history, wall))
        if status == "diverged":
            break

    return summarize(history, status, count_params(model), prior_wall + time.perf_counter() - t0,
                     device_name(device))
