"""Train one cell: `train(config, report, resume) -> summary` (docs/design.md), no Ray.

The loop reads top to bottom in `epochs()`, a generator that yields after each epoch (a Tune
trial steps it an epoch at a time; `train()` runs it to its end): `trainers.setup.setup`
builds the cell, then `run_epoch` trains it once per epoch and evaluates it on the epochs
`train.eval_every` asks for (`trainers.cadence`). `evaluate` and `run_epoch`'s metrics are
shared with the packed trainer. The step is eager, or captured with `train.compile`
(`trainers.step`). On CUDA the data lives on the GPU, steps run under bf16 autocast in
channels_last (`trainers.runtime`), and metrics accumulate on the device: the host syncs
once per epoch.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Generator
from typing import Any

import torch
from torch import nn

from trainers import probes, reuse, runtime
from trainers.cadence import evaluates
from trainers.checkpoint import capture_state
from trainers.data import Data, load_data, train_batches
from trainers.models import count_params
from trainers.setup import Run, setup, switch_optimizer
from trainers.step import Step, make_forward, make_step
from trainers.summary import METRIC_KEYS, diverged, summarize

__all__ = [
    "METRIC_KEYS",
    "evaluate",
    "train_epoch",
    "run_epoch",
    "epoch_metrics",
    "epochs",
    "drive",
    "train",
]

# (dataset section, device, seed) -> the loaded data set (`trainers.data.load_data`)
LoadData = Callable[[dict, torch.device, int], Data]

EVAL_BATCH = 1000


@torch.no_grad()
def evaluate(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    preprocess: Callable[[torch.Tensor], torch.Tensor],
    *,
    batch_size: int = EVAL_BATCH,
    forward=None,
    autocast=contextlib.nullcontext,
    memory_format=torch.contiguous_format,
):
    """(mean loss, accuracy) of `model` on stored images `x`, as 0-dim device tensors (no
    host sync); None when `x` is empty. `forward`: the step's (captured) forward, default
    the model's. The model is left in train mode."""
    if len(y) == 0:
        return None
    forward = forward or make_forward(model, autocast=autocast, memory_format=memory_format)
    model.eval()
    loss_sum = torch.zeros((), device=y.device)
    correct = torch.zeros((), device=y.device)
    for xb, yb in zip(x.split(batch_size), y.split(batch_size), strict=True):
        logits = forward(preprocess(xb))
        loss_sum += nn.functional.cross_entropy(logits, yb, reduction="sum")
        correct += (logits.argmax(1) == yb).sum()
    model.train()
    return loss_sum / len(y), correct / len(y)


def train_epoch(step: Step, data: Data, gen, batch_size: int, after_step=None):
    """One pass of `step` (`trainers.step.make_step`) over the shuffled, augmented training
    set; (mean loss, accuracy, images) with the first two as device tensors (no host
    sync). The caller puts the model in train mode. `after_step()`: a probe's hook."""
    loss_sum = torch.zeros((), device=data.train_y.device)
    correct = torch.zeros((), device=data.train_y.device)
    seen = 0
    for x, y in train_batches(data, batch_size, gen):
        loss, hits = step(x, y)
        if after_step is not None:
            after_step()
        loss_sum += loss * len(y)
        correct += hits
        seen += len(y)
    return loss_sum / seen, correct / seen, seen


def epoch_metrics(
    epoch: int,
    lr: float,
    train: list[float],
    val: list[float] | None,
    test: list[float] | None,
    wall_s: float,
    images_per_s: float,
) -> dict:
    """An epoch's metrics dict (`METRIC_KEYS`) from the synced [loss, acc] pairs; val and
    test None on an epoch that does not evaluate. `epoch_wall_s` (the epoch with its
    report) is filled in by the trainer once the report has returned."""
    val, test = val or (None, None), test or (None, None)
    return {
        "epoch": epoch,
        "lr": lr,
        "train_loss": train[0],
        "train_acc": train[1],
        "val_loss": val[0],
        "val_acc": val[1],
        "test_loss": test[0],
        "test_acc": test[1],
        "epoch_s": wall_s,
        "images_per_s": images_per_s,
        "epoch_wall_s": None,
    }


def run_epoch(epoch: int, run: Run, step: Step, forward, evaluate_now: bool, grads=None) -> dict:
    """Train one epoch, evaluate on val and test when `evaluate_now`, and return the
    epoch's metrics dict (with `grads`, a `probes.GradNorms`: its columns too)."""
    data, device = run.data, run.device
    wall0, start = time.perf_counter(), runtime.mark(device)
    lr = float(run.optimizer.param_groups[0]["lr"])
    run.model.train()
    train_loss, train_acc, seen = train_epoch(
        step, data, run.gen, run.config["train"]["batch_size"], grads and grads.after_step
    )
    train_end = runtime.mark(device)
    val = test = None
    if evaluate_now:
        val = evaluate(run.model, data.val_x, data.val_y, data.preprocess, forward=forward)
        test = evaluate(run.model, data.test_x, data.test_y, data.preprocess, forward=forward)
    # The one host sync of the epoch: every metric comes back in one transfer.
    values = torch.stack([train_loss, train_acc, *(val or ()), *(test or ())]).tolist()
    if device.type == "cuda":
        torch.cuda.synchronize(device)  # events are complete: their times are readable
    train_s = max(runtime.seconds_between(start, train_end), 1e-9)
    val_v = values[2:4] if val is not None else None
    test_v = values[-2:] if test is not None else None
    metrics = epoch_metrics(
        epoch, lr, values[:2], val_v, test_v, time.perf_counter() - wall0, seen / train_s
    )
    return metrics if grads is None else {**metrics, **grads.epoch()}


def epochs(
    config: dict,
    resume: dict | None = None,
    *,
    load: LoadData | None = None,
    weights: dict | None = None,
) -> Generator[tuple[dict, dict], bool | None, dict]:
    """Train the cell `config` (the resolved config of docs/design.md) an epoch at a time.

    Yields `(metrics, state)` after every epoch (`state`: live tensors, valid until the
    next step); send True to stop the cell there. Returns (StopIteration.value) its summary,
    whose status is completed, diverged (a NaN/inf loss) or stopped (True was sent).
    `resume` is such a `state`; `load(dataset_cfg, device, seed)` loads the data (default
    `load_data`; a trial that trains cell after cell passes its cache). `weights`: the
    parent's state_dict for a stage's cell (`train.body`, trainers/transfer.py).
    """
    t0 = time.perf_counter()
    tcfg = config["train"]
    device = runtime.resolve_device(tcfg["device"])
    data = (load or load_data)(config["dataset"], device, tcfg["seed"])
    run: Run = setup(config, resume, device=device, data=data, weights=weights)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=tcfg["label_smoothing"])
    step = _make_step(run, loss_fn)  # may swap in the slot's kept model (trainers/reuse.py)
    forward = step.forward  # evaluation: the step's forward, falling back with it
    asked = tcfg.get("probes", [])
    grads = probes.GradNorms(run.model) if "grad_norms" in asked else None

    status = run.status  # a cell resumed after it diverged trains no further epoch
    if (resume or {}).get("stopped"):  # resumed to be written as stopped (a halving's loser)
        status = "stopped"
    first = tcfg["epochs"] + 1 if status != "completed" else len(run.history) + 1
    for epoch in range(first, tcfg["epochs"] + 1):
        wall0 = time.perf_counter()
        if switch_optimizer(run, epoch):  # train.optimizer_switch: a new optimizer's step
            step = _make_step(run, loss_fn)
            forward = step.forward
        metrics = run_epoch(epoch, run, step, forward, evaluates(epoch, tcfg), grads)
        run.history.append(metrics)
        # A true answer stops the cell early: the caller's halving ranked it out of its
        # table row (docs/spec.md#halving).
        stop = yield metrics, capture_state(run, run.prior_wall + time.perf_counter() - t0)
        # A NaN/inf loss poisons the epoch's on-device loss sum, so checking that sum once
        # per epoch catches it without a host sync per step (which would stall the GPU).
        if diverged(metrics):
            status = "diverged"
        elif stop:
            status = "stopped"
        # A new dict: the yielded one (and the state's history) stay as they were sent.
        run.history[-1] = {**metrics, "epoch_wall_s": time.perf_counter() - wall0}
        if status != "completed":
            break

    summary = summarize(
        run.history,
        status,
        count_params(run.model),
        run.prior_wall + time.perf_counter() - t0,
        runtime.device_name(run.device),
    )
    if asked:
        summary["probes"] = probes.final_probes(run.model, asked)
    return {**summary, "step_mode": step.mode}


def _make_step(run: Run, loss_fn) -> Step:
    """`run`'s step: eager, or captured on the slot's kept step (`trainers.reuse`)."""
    if run.config["train"]["compile"]:
        return reuse.captured_step(run, loss_fn)
    return make_step(run.model, run.optimizer, run.scheduler, loss_fn, **run.fmt)


def drive(steps: Generator, report: Callable[[Any], Any]) -> Any:
    """Run an epoch generator (`epochs`, `trainers.pack.packed_epochs`) to its end: each
    yielded epoch goes to `report`, whose answer is sent back; returns the generator's
    return value (the summary)."""
    try:
        item = next(steps)
        while True:
            item = steps.send(report(item))
    except StopIteration as end:
        return end.value


def train(
    config: dict, report: Callable[[dict, dict], Any] | None = None, resume: dict | None = None
) -> dict:
    """Train the cell `config` to its end; returns its summary (`epochs`, driven).

    `report(metrics, state)` runs after every epoch; `resume` is such a `state`. The
    status is completed, diverged (a NaN/inf loss) or stopped (`report` answered true).
    """
    return drive(epochs(config, resume), lambda epoch: report and report(*epoch))
