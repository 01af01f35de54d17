"""Train K cells as one: `train_packed(configs, reports, resumes) -> summaries`.

Cells that differ only in lr, seed, init, weight decay or schedule (`pack_key`) share one
architecture, so their K forward passes can run as one fused model (`trainers.fused`): vmap over
`torch.func.functional_call`, each model on its OWN batch (inputs K x B x 3 x 32 x 32). vmap
turns every conv into one grouped conv (groups = K) and every batch norm into one with K x C
channels: one kernel launch where K separate trials would launch K, which is where packing
pays for small models on a GPU. On a CPU grouped convs are slower than K plain ones, so the
default there ("loop" mode) runs the K cells' steps one after another in the one process:
packing then pays by running one process and one data load instead of K (BENCHMARKS.md).

What each cell keeps as its own, exactly as in its unpacked `trainers.loop.train` run (both
build it with `trainers.setup.setup`, a `Run`):
- its data: split, shuffle and augmentation from its own seed's generator, its init;
- its parameters as leaf tensors, its own optimizer and LambdaLR schedule (`build_optimizer`,
  `build_schedule`): vmap mode stacks the K leaves inside the forward (torch.stack's backward
  hands each cell its gradient; the copy costs <1 ms a step at width 0.25), so checkpoints
  are per cell and have the loop's shape;
- its batch-norm running statistics: in vmap mode one stacked buffer per name, with each
  cell's module buffer a view into it, updated in place by batch norm under vmap.

Not identical to the unpacked run: dropout masks (drawn for all cells from one global RNG
stream, seeded by the first cell's seed), and in vmap mode float rounding (grouped vs. single
kernels; at a ReLU kink one rounding flips a gradient entry). With dropout 0 the loop mode
is bit-for-bit the unpacked run, and vmap mode matches it to ~1e-7 with a smooth activation.

A cell whose epoch had a NaN/inf loss (`trainers.summary.diverged`) is marked diverged after that epoch (its report
gets that epoch, as the loop's does) and leaves the pack; the others keep training.
Resume: each cell continues from its own `state`; cells at different epochs are fine, the
ones ahead wait until the others catch up (a packed step holds the cells at one epoch).
"""
from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import time
from typing import Callable

import torch
from torch import nn

from trainers import runtime
from trainers.checkpoint import capture_state
from trainers.data import train_batches
from trainers.fused import Fused
from trainers.loop import epoch_metrics, evaluate
from trainers.models import count_params
from trainers.setup import Run, setup
from trainers.summary import summarize

# What may differ inside a pack (docs/spec.md, resources.pack): per-cell optimizers,
# schedules, inits and data generators handle these; everything else is shared.
PACKABLE = ("train.lr", "train.seed", "model.init", "train.optimizer.weight_decay",
            "train.schedule")


def pack_key(config: dict) -> str:
    """A hash of `config` without its packable fields: cells with equal keys can be packed."""
    cfg = copy.deepcopy(config)
    for path in PACKABLE:
        section, _, leaf = path.rpartition(".")
        node = cfg
        for part in section.split("."):
            node = node.get(part, {})
        node.pop(leaf, None)
    blob = json.dumps(cfg, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def can_pack(configs: list[dict]) -> bool:
    """True when `configs` (one or more) share a pack key and are not torch.compile'd (the
    packed trainer does not compile)."""
    return (len(configs) >= 1 and len({pack_key(c) for c in configs}) == 1
            and not any(c["train"].get("compile") for c in configs))


def pack_mode(mode: str, device: torch.device) -> str:
    """The packed step: "vmap" (one `Fused` forward, grouped kernels) or "loop" (the K
    cells' steps one after another in this process). auto: vmap on CUDA, where one grouped
    kernel replaces K launches; loop elsewhere: on a CPU grouped convs are slower than K
    plain ones (BENCHMARKS.md), and the loop is the unpacked runs' exact arithmetic."""
    if mode not in ("auto", "vmap", "loop"):
        raise ValueError(f"pack mode must be auto, vmap or loop, got {mode!r}")
    return ("vmap" if device.type == "cuda" else "loop") if mode == "auto" else mode


def _fused_step(fused: Fused, cells: list[Run], batches, loss_fn, autocast):
    x = fused.stack_inputs([b[0] for b in batches])
    y = torch.stack([b[1] for b in batches])
    with autocast():
        logits = fused(x).float()
    losses = torch.vmap(loss_fn)(logits, y)
    for c in cells:
        c.optimizer.zero_grad(set_to_none=True)
    # Cells are independent: d(sum)/d(loss_k) = 1 gives each cell its own gradient.
    losses.sum().backward()
    for c in cells:
        c.optimizer.step()
        c.scheduler.step()
    return losses.detach(), (logits.detach().argmax(-1) == y).sum(1)


def _loop_step(cells: list[Run], batches, loss_fn, autocast, memory_format):
    losses, correct = [], []
    for c, (x, y) in zip(cells, batches):  # loop.train_epoch's step, cell by cell
        with autocast():
            logits = c.model(x.contiguous(memory_format=memory_format)).float()
        loss = loss_fn(logits, y)
        c.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        c.optimizer.step()
        c.scheduler.step()
        losses.append(loss.detach())
        correct.append((logits.detach().argmax(1) == y).sum())
    return torch.stack(losses), torch.stack(correct)


def train_packed_epoch(cells: list[Run], loss_fn: nn.Module, batch_size: int, *,
                       fused: Fused | None = None, autocast=contextlib.nullcontext,
                       memory_format=torch.contiguous_format):
    """One epoch of every cell at once, each on its own shuffled, augmented batches, through
    `fused` (their `Fused`) or, when None, cell by cell at every step (the loop mode);
    returns (mean losses K, accuracies K, images per cell), device tensors (no host sync)."""
    device = cells[0].data.train_y.device
    loss_sum = torch.zeros(len(cells), device=device)
    correct = torch.zeros(len(cells), device=device)
    seen = 0
    for c in cells:
        c.model.train()
    for batches in zip(*[train_batches(c.data, batch_size, c.gen) for c in cells]):
        if fused is not None:
            losses, hits = _fused_step(fused, cells, batches, loss_fn, autocast)
        else:
            losses, hits = _loop_step(cells, batches, loss_fn, autocast, memory_format)
        n = len(batches[0][1])
        loss_sum += losses * n
        correct += hits
        seen += n
    return loss_sum / seen, correct / seen, seen


def run_packed_epoch(epoch: int, cells: list[Run], loss_fn: nn.Module, batch_size: int,
                     memory_format=torch.contiguous_format, autocast=contextlib.nullcontext,
                     mode: str = "vmap") -> list[dict]:
    """Train the cells one epoch as one fused model, evaluate each on its val and test
    sets, and return one metrics dict per cell (the loop's keys)."""
    device = cells[0].data.train_y.device
    wall0, start = time.perf_counter(), runtime.mark(device)
    lrs = [c.optimizer.param_groups[0]["lr"] for c in cells]
    fused = Fused([c.model for c in cells], memory_format) if mode == "vmap" else None
    train_loss, train_acc, seen = train_packed_epoch(cells, loss_fn, batch_size, fused=fused,
                                                     autocast=autocast,
                                                     memory_format=memory_format)
    train_end = runtime.mark(device)
    fmt = {"autocast": autocast, "memory_format": memory_format}
    rows = []
    for k, c in enumerate(cells):
        val = evaluate(c.model, c.data.val_x, c.data.val_y, c.data.preprocess, **fmt)
        test = evaluate(c.model, c.data.test_x, c.data.test_y, c.data.preprocess, **fmt)
        has_val = val is not None  # the same for every cell: the pack shares its dataset
        rows.append(torch.stack([train_loss[k], train_acc[k], *(val or ()), *test]))
    values = torch.stack(rows).tolist()  # the one host sync of the epoch
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    train_s = max(runtime.seconds_between(start, train_end), 1e-9)
    # images_per_s per cell: its own images over the pack's shared training time.
    return [epoch_metrics(epoch, lr, v, has_val, time.perf_counter() - wall0, seen / train_s)
            for lr, v in zip(lrs, values)]


def train_packed(configs: list[dict], reports: list[Callable] | None = None,
                 resumes: list[dict | None] | None = None, *, mode: str = "auto"
                 ) -> list[dict]:
    """Train the cells `configs` (all with one `pack_key`) as one fused model; returns one
    summary per cell, each as `trainers.loop.train` returns it. `reports[i](metrics, state)`
    runs after each of cell i's epochs; `resumes[i]` is such a `state`. `mode`: see
    `pack_mode` (auto: vmap on CUDA, loop on CPU)."""
    if not can_pack(configs):
        raise ValueError("train_packed: these configs cannot be packed (they differ in more "
                         "than lr, seed, init, weight decay or schedule, or use "
                         "train.compile); train them apart")
    t0 = time.perf_counter()
    tcfg = configs[0]["train"]
    device = runtime.resolve_device(tcfg["device"])
    reports = reports or [None] * len(configs)
    resumes = resumes or [None] * len(configs)
    cells, loaded = [], {}  # cells with one seed share one read-only copy of the data
    for cfg, resume, report in zip(configs, resumes, reports):
        seed = cfg["train"]["seed"]
        cells.append(setup(cfg, resume, device=device, data=loaded.get(seed)))
        cells[-1].report, loaded[seed] = report, cells[-1].data
    if all(r is None for r in resumes):
        torch.manual_seed(tcfg["seed"])  # the pack's dropout stream: the first cell's seed
    fmt = {**cells[0].fmt, "mode": pack_mode(mode, device)}  # one precision, one layout
    loss_fn = nn.CrossEntropyLoss(label_smoothing=tcfg["label_smoothing"])

    for epoch in range(1, tcfg["epochs"] + 1):
        # Cells still training that have done epoch - 1 epochs (resumed ones ahead wait).
        active = [c for c in cells if c.status != "diverged" and len(c.history) == epoch - 1]
        if not active:
            continue
        for cell, metrics in zip(active, run_packed_epoch(epoch, active, loss_fn,
                                                          tcfg["batch_size"], **fmt)):
            cell.history.append(metrics)
            if cell.report is not None:
                wall = cell.prior_wall + time.perf_counter() - t0
                cell.report(metrics, capture_state(cell, wall))
    wall = time.perf_counter() - t0
    return [summarize(c.history, c.status, count_params(c.model), c.prior_wall + wall,
                      runtime.device_name(device)) for c in cells]
