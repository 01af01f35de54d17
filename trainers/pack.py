"""Train K cells as one: `packed_epochs(configs, resumes)`, a generator that yields after each
epoch (a Tune trial steps it), and `train_packed(configs, reports, resumes) -> summaries`, which
runs it to its end.

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

Fallback: a vmap step that raises (no batching rule for some op of a model, a grouped kernel
the device lacks) falls back to the loop mode once, at that step, with a `StepFallback`
warning in the trial's log; the summary's `step_mode` (vmap | loop | vmap->loop) goes into
each cell's result row. The pack trains on: the step is redone cell by cell on the same
batches, so the data stream is the one vmap would have used. An error of the loop is raised.

A cell whose epoch had a NaN/inf loss (`trainers.summary.diverged`) is marked diverged after
that epoch (its report gets that epoch, as the loop's does) and leaves the pack;
the others keep training.
Resume: each cell continues from its own `state`; cells at different epochs are fine, the
ones ahead wait until the others catch up (a packed step holds the cells at one epoch).
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import time
from collections.abc import Callable, Generator

import torch
from torch import nn

from trainers import runtime
from trainers.cadence import evaluates
from trainers.checkpoint import capture_state
from trainers.data import load_data, train_batches
from trainers.fused import Fused
from trainers.loop import LoadData, drive, epoch_metrics, evaluate
from trainers.models import count_params
from trainers.setup import Run, setup
from trainers.step import fall_back, make_step
from trainers.summary import summarize

# What may differ inside a pack (docs/spec.md, resources.pack): per-cell optimizers,
# schedules, inits and data generators handle these; everything else is shared.
PACKABLE = (
    "train.lr",
    "train.seed",
    "model.init",
    "train.optimizer.weight_decay",
    "train.schedule",
)


def pack_key(config: dict) -> str:
    """A hash of `config` without its packable fields: cells with equal keys can be packed."""
    cfg = copy.deepcopy(config)
    if cfg["train"].get("optimizer_switch"):  # the packed loop does not switch: never pack
        blob = json.dumps(cfg, sort_keys=True, separators=(",", ":"), default=str)
        return "solo-" + hashlib.sha256(blob.encode()).hexdigest()[:12]
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
    return (
        len(configs) >= 1
        and len({pack_key(c) for c in configs}) == 1
        and not any(c["train"].get("compile") for c in configs)
    )


def pack_mode(mode: str, device: torch.device) -> str:
    """The packed step: "vmap" (one `Fused` forward, grouped kernels) or "loop" (the K
    cells' steps one after another in this process). auto: vmap on CUDA, where one grouped
    kernel replaces K launches; loop elsewhere: on a CPU grouped convs are slower than K
    plain ones (BENCHMARKS.md), and the loop is the unpacked runs' exact arithmetic."""
    if mode not in ("auto", "vmap", "loop"):
        raise ValueError(f"pack mode must be auto, vmap or loop, got {mode!r}")
    return ("vmap" if device.type == "cuda" else "loop") if mode == "auto" else mode


def fused_step(fused: Fused, cells: list[Run], batches, loss_fn, autocast):
    """One step of K cells as one vmapped model: (each cell's loss, each cell's hits)."""
    x = fused.stack_inputs([b[0] for b in batches])
    y = torch.stack([b[1] for b in batches])
    with autocast():
        logits = fused(x).float()
    losses = torch.vmap(loss_fn)(logits, y)
    fused.zero_grad()  # one K x P gradient buffer; each cell's .grad is a view of its row
    # Cells are independent: d(sum)/d(loss_k) = 1 gives each cell its own gradient.
    losses.sum().backward()
    for c in cells:
        c.optimizer.step()
        c.scheduler.step()
    label = y if y.dtype == torch.int64 else y.argmax(-1)  # mixup's soft targets
    return losses.detach(), (logits.detach().argmax(-1) == label).sum(1)


def loop_step(steps: list, batches):
    """One step of K cells, each by its own step: (each cell's loss, each cell's hits)."""
    out = [
        step(x, y) for step, (x, y) in zip(steps, batches, strict=True)
    ]  # the loop's step, per cell
    return torch.stack([o[0] for o in out]), torch.stack([o[1] for o in out])


def train_packed_epoch(
    cells: list[Run],
    loss_fn: nn.Module,
    batch_size: int,
    *,
    fused: Fused | None = None,
    autocast=contextlib.nullcontext,
    memory_format=torch.contiguous_format,
    mode: dict | None = None,
):
    """One epoch of every cell at once, each on its own shuffled, augmented batches, through
    `fused` (their `Fused`) or, when None, cell by cell at every step (the loop mode);
    returns (mean losses K, accuracies K, images per cell), device tensors (no host sync).
    `mode["mode"]` becomes "vmap->loop" when a fused step fails (the loop redoes it)."""
    mode = mode if mode is not None else {"mode": "vmap" if fused is not None else "loop"}
    device = cells[0].data.train_y.device
    loss_sum = torch.zeros(len(cells), device=device)
    correct = torch.zeros(len(cells), device=device)
    seen = 0
    steps = [
        make_step(
            c.model,
            c.optimizer,
            c.scheduler,
            loss_fn,
            autocast=autocast,
            memory_format=memory_format,
        )
        for c in cells
    ]
    for c in cells:
        c.model.train()
    for batches in zip(*[train_batches(c.data, batch_size, c.gen) for c in cells], strict=True):
        losses = None
        if fused is not None and mode["mode"] == "vmap":
            try:
                losses, hits = fused_step(fused, cells, batches, loss_fn, autocast)
            except Exception as e:  # vmap's failures (no batching rule, ...) share no base
                mode["mode"] = "vmap->loop"
                fall_back("the packed vmap step (resources.pack)", e, "the loop")
        if losses is None:
            losses, hits = loop_step(steps, batches)
        n = len(batches[0][1])
        loss_sum += losses * n
        correct += hits
        seen += n
    return loss_sum / seen, correct / seen, seen


def run_packed_epoch(
    epoch: int,
    cells: list[Run],
    loss_fn: nn.Module,
    batch_size: int,
    memory_format=torch.contiguous_format,
    autocast=contextlib.nullcontext,
    fused: Fused | None = None,
    evaluate_now: bool = True,
    mode: dict | None = None,
) -> list[dict]:
    """Train the cells one epoch (through `fused`, else cell by cell), evaluate each on its
    val and test sets when `evaluate_now`, and return one metrics dict per cell (the
    loop's keys)."""
    device = cells[0].data.train_y.device
    wall0, start = time.perf_counter(), runtime.mark(device)
    lrs = [float(c.optimizer.param_groups[0]["lr"]) for c in cells]
    train_loss, train_acc, seen = train_packed_epoch(
        cells,
        loss_fn,
        batch_size,
        fused=fused,
        autocast=autocast,
        memory_format=memory_format,
        mode=mode,
    )
    train_end = runtime.mark(device)
    fmt = {"autocast": autocast, "memory_format": memory_format}
    rows, evals = [], []
    for k, c in enumerate(cells):
        ev = (
            [
                evaluate(c.model, x, y, c.data.preprocess, **fmt)
                for x, y in ((c.data.val_x, c.data.val_y), (c.data.test_x, c.data.test_y))
            ]
            if evaluate_now
            else [None, None]
        )
        evals.append([e is not None for e in ev])
        rows.append(torch.stack([train_loss[k], train_acc[k], *(x for e in ev for x in e or ())]))
    values = torch.stack(rows).tolist()  # the one host sync of the epoch
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    train_s = max(runtime.seconds_between(start, train_end), 1e-9)
    out = []
    for lr, v, (has_val, has_test) in zip(lrs, values, evals, strict=True):
        val = v[2:4] if has_val else None
        test = v[-2:] if has_test else None
        # images_per_s per cell: its own images over the pack's shared training time.
        out.append(
            epoch_metrics(epoch, lr, v[:2], val, test, time.perf_counter() - wall0, seen / train_s)
        )
    return out


def packed_epochs(
    configs: list[dict],
    resumes: list[dict | None] | None = None,
    *,
    mode: str = "auto",
    load: LoadData | None = None,
) -> Generator[list[tuple[int, dict, dict]], None, list[dict]]:
    """Train the cells `configs` (all with one `pack_key`) as one fused model, an epoch at a
    time: yields, after each epoch, `(index, metrics, state)` for each cell that trained it
    (`state`: live tensors, valid until the next step). Returns one summary per cell, each
    as `trainers.loop.epochs` returns it. `resumes[i]`: cell i's `state`; `mode`: see
    `pack_mode` (auto: vmap on CUDA, loop on CPU); `load`: as in `trainers.loop.epochs`."""
    if not can_pack(configs):
        raise ValueError(
            "train_packed: these configs cannot be packed (they differ in more "
            "than lr, seed, init, weight decay or schedule, or use "
            "train.compile); train them apart"
        )
    t0 = time.perf_counter()
    tcfg = configs[0]["train"]
    device = runtime.resolve_device(tcfg["device"])
    resumes = resumes or [None] * len(configs)
    cells, loaded = [], {}  # cells with one seed share one read-only copy of the data
    for cfg, resume in zip(configs, resumes, strict=True):
        seed = cfg["train"]["seed"]
        if seed not in loaded:
            loaded[seed] = (load or load_data)(cfg["dataset"], device, seed)
        cells.append(setup(cfg, resume, device=device, data=loaded[seed]))
    if all(r is None for r in resumes):
        torch.manual_seed(tcfg["seed"])  # the pack's dropout stream: the first cell's seed
    fmt = cells[0].fmt  # one precision, one layout
    step_mode = {"mode": pack_mode(mode, device)}  # vmap -> "vmap->loop" on a failure
    loss_fn = nn.CrossEntropyLoss(label_smoothing=tcfg["label_smoothing"])

    fused, fused_for = None, []
    for epoch in range(1, tcfg["epochs"] + 1):
        # Cells still training that have done epoch - 1 epochs (resumed ones ahead wait).
        active = [c for c in cells if c.status != "diverged" and len(c.history) == epoch - 1]
        if not active:
            continue
        vmap = step_mode["mode"] == "vmap"
        if (
            vmap and [id(c) for c in active] != fused_for
        ):  # built once, again only when a cell leaves or joins
            fused = Fused([c.model for c in active], fmt["memory_format"])
            fused_for = [id(c) for c in active]
        wall0 = time.perf_counter()
        metrics = run_packed_epoch(
            epoch,
            active,
            loss_fn,
            tcfg["batch_size"],
            **fmt,
            fused=fused if vmap else None,
            evaluate_now=evaluates(epoch, tcfg),
            mode=step_mode,
        )
        for cell, m in zip(active, metrics, strict=True):
            cell.history.append(m)
        wall = time.perf_counter() - t0
        yield [
            (cells.index(c), m, capture_state(c, c.prior_wall + wall))
            for c, m in zip(active, metrics, strict=True)
        ]
        for cell in active:  # each cell's epoch with every report of the pack included
            cell.history[-1] = {**cell.history[-1], "epoch_wall_s": time.perf_counter() - wall0}
    wall = time.perf_counter() - t0
    return [
        {
            **summarize(
                c.history,
                c.status,
                count_params(c.model),
                c.prior_wall + wall,
                runtime.device_name(device),
            ),
            "step_mode": step_mode["mode"],
        }
        for c in cells
    ]


def train_packed(
    configs: list[dict],
    reports: list[Callable] | None = None,
    resumes: list[dict | None] | None = None,
    *,
    mode: str = "auto",
) -> list[dict]:
    """Train the cells `configs` to their end (`packed_epochs`, driven); returns one summary
    per cell. `reports[i](metrics, state)` runs after each of cell i's epochs."""
    reports = reports or [None] * len(configs)

    def report(epoch: list[tuple[int, dict, dict]]) -> None:
        for i, metrics, state in epoch:
            if reports[i] is not None:
                reports[i](metrics, state)

    return drive(packed_epochs(configs, resumes, mode=mode), report)
