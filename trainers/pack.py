"""Train K cells as one: `train_packed(configs, reports, resumes) -> summaries`.

Cells that differ only in lr, seed, init, weight decay or schedule (`pack_key`) share one
architecture, so their K forward passes can run as one fused model: `torch.vmap` over
`torch.func.functional_call`, each model on its OWN batch (inputs K x B x 3 x 32 x 32). vmap
turns every conv into one grouped conv (groups = K) and every batch norm into one with K x C
channels: one kernel launch where K separate trials would launch K, which is where packing
pays for small models on a GPU. On a CPU grouped convs are slower than K plain ones, so the
default there ("loop" mode) runs the K cells' steps one after another in the one process:
packing then pays by running one process and one data load instead of K (BENCHMARKS.md).

What each cell keeps as its own, exactly as in its unpacked `trainers.loop.train` run:
- its data: split, shuffle and augmentation from its own seed's generator (`load_data`,
  `data_generator`, `train_batches`), its init (seeded as the loop seeds it);
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

A cell whose epoch train loss is NaN/inf is marked diverged after that epoch (its report
gets that epoch, as the loop's does) and leaves the pack; the others keep training.
Resume: each cell continues from its own `state`; cells at different epochs are fine, the
ones ahead wait until the others catch up (a packed step holds the cells at one epoch).
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import hashlib
import json
import time
import warnings
from typing import Callable

import torch
from torch import nn
from torch.func import functional_call

from trainers import loop
from trainers.data import Data, data_generator, load_data, steps_per_epoch, train_batches
from trainers.inits import init_model
from trainers.models import count_params, create_model
from trainers.optim import build_optimizer, build_schedule

# What may differ inside a pack (docs/spec.md, resources.pack): per-cell optimizers,
# schedules, inits and data generators handle these; everything else is shared.
PACKABLE = ("train.lr", "train.seed", "model.init", "train.optimizer.weight_decay",
            "train.schedule")
# vmap has no batching rule for as_strided_ (in adaptive average pooling): it loops over
# the K cells for that one small op, and warns; expected, not news.
NO_AS_STRIDED_RULE = r".*batching rule for aten::as_strided_"


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


@dataclasses.dataclass
class Cell:
    """One cell of a pack: what the loop builds for one config, plus its run state."""
    config: dict
    data: Data
    gen: torch.Generator
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    report: Callable[[dict, dict], None] | None = None
    history: list = dataclasses.field(default_factory=list)
    prior_wall: float = 0.0

    @property
    def status(self) -> str:
        """"diverged" once an epoch's train loss was NaN/inf (the loop's rule), else
        "completed"."""
        return "diverged" if self.history and loop._diverged(self.history[-1]) else "completed"


def memory_format_of(train_cfg: dict, device: torch.device) -> torch.memory_format:
    """`train.channels_last` (auto: on for CUDA) as a memory format."""
    on = train_cfg["channels_last"]
    on = device.type == "cuda" if on == "auto" else on
    return torch.channels_last if on else torch.contiguous_format


def build_cell(config: dict, device: torch.device, resume: dict | None = None,
               data: Data | None = None) -> Cell:
    """Data, generator, model (initialised), optimizer and schedule of one cell, built in the
    same order and from the same seeds as `trainers.loop.train` builds them, then `resume`
    loaded. `data`: this config's `load_data` result when already loaded (same seed)."""
    dcfg, mcfg, tcfg = config["dataset"], config["model"], config["train"]
    torch.manual_seed(tcfg["seed"])
    data = data if data is not None else load_data(dcfg, device, tcfg["seed"])
    gen = data_generator(device, tcfg["seed"])
    fmt = memory_format_of(tcfg, device)
    model = create_model(mcfg["arch"], num_classes=data.num_classes,
                         activation=mcfg["activation"], batch_norm=mcfg["batch_norm"],
                         dropout=mcfg["dropout"], input_dropout=mcfg["input_dropout"],
                         width=mcfg["width"]).to(device, memory_format=fmt)
    if resume is None:
        batch = data.normalize(data.train_x[:tcfg["batch_size"]])
        init_model(model, mcfg["init"], batch=batch.contiguous(memory_format=fmt))
    optimizer = build_optimizer(model.parameters(), tcfg)
    scheduler = build_schedule(optimizer, tcfg,
                               steps_per_epoch(len(data.train_y), tcfg["batch_size"]))
    cell = Cell(config, data, gen, model, optimizer, scheduler)
    if resume is not None:
        cell.history, cell.prior_wall = loop.restore_state(resume, model, optimizer,
                                                           scheduler, gen)
    return cell


class Fused:
    """K models of one architecture as one vmapped model: `fused(x)` maps K x B x 3 x H x W
    inputs (cell k's batch at x[k]) to K x B x classes logits, each conv one grouped conv."""

    def __init__(self, models: list[nn.Module], memory_format=torch.contiguous_format):
        self.base = copy.deepcopy(models[0]).to("meta")  # the structure; holds no data
        self.params = [dict(m.named_parameters()) for m in models]
        self.nhwc = memory_format == torch.channels_last
        self.buffers = share_buffers(models)
        self._vmapped = torch.vmap(self._forward, randomness="different")

    def _forward(self, params: dict, buffers: dict, x: torch.Tensor) -> torch.Tensor:
        return functional_call(self.base, (params, buffers), (x,))

    def stack(self, tensors: list[torch.Tensor]) -> torch.Tensor:
        """torch.stack of the K cells' parameters; with channels_last, 4-d weights laid out
        K x Cout x kh x kw x Cin so that vmap's grouped conv (weight K*Cout x Cin x kh x kw)
        sees a channels_last weight without a copy."""
        if self.nhwc and tensors[0].dim() == 4:
            return torch.stack([t.permute(0, 2, 3, 1) for t in tensors]).permute(0, 1, 4, 2, 3)
        return torch.stack(tensors)

    def stack_inputs(self, xs: list[torch.Tensor]) -> torch.Tensor:
        """The K cells' batches (each B x C x H x W) as K x B x C x H x W; with channels_last,
        laid out B x H x W x K x C so that vmap's grouped conv input (B x K*C x H x W) is
        channels_last without a copy."""
        if self.nhwc:
            return torch.stack([x.permute(0, 2, 3, 1) for x in xs], 3).permute(3, 0, 4, 1, 2)
        return torch.stack(xs)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        params = {n: self.stack([p[n] for p in self.params]) for n in self.params[0]}
        self.base.train()
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=NO_AS_STRIDED_RULE)
            return self._vmapped(params, self.buffers, x)


def share_buffers(models: list[nn.Module]) -> dict[str, torch.Tensor]:
    """Stack the models' buffers (batch-norm running stats) into one K x ... tensor per name
    and make each model's buffer a view of its slice: batch norm's in-place updates under
    vmap land in the stack, and each model (eval, state_dict) sees its own."""
    names = [n for n, _ in models[0].named_buffers()]
    stacked = {n: torch.stack([m.get_buffer(n) for m in models]) for n in names}
    for k, model in enumerate(models):
        for name in names:
            owner, _, leaf = name.rpartition(".")
            model.get_submodule(owner)._buffers[leaf] = stacked[name][k]
    return stacked


def pack_mode(mode: str, device: torch.device) -> str:
    """The packed step: "vmap" (one `Fused` forward, grouped kernels) or "loop" (the K
    cells' steps one after another in this process). auto: vmap on CUDA, where one grouped
    kernel replaces K launches; loop elsewhere: on a CPU grouped convs are slower than K
    plain ones (BENCHMARKS.md), and the loop is the unpacked runs' exact arithmetic."""
    if mode not in ("auto", "vmap", "loop"):
        raise ValueError(f"pack mode must be auto, vmap or loop, got {mode!r}")
    return ("vmap" if device.type == "cuda" else "loop") if mode == "auto" else mode


def _fused_step(fused: Fused, cells: list[Cell], batches, loss_fn, autocast):
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


def _loop_step(cells: list[Cell], batches, loss_fn, autocast, memory_format):
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


def train_packed_epoch(cells: list[Cell], loss_fn: nn.Module, batch_size: int, *,
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


def run_packed_epoch(epoch: int, cells: list[Cell], loss_fn: nn.Module, batch_size: int,
                     memory_format=torch.contiguous_format, autocast=contextlib.nullcontext,
                     mode: str = "vmap") -> list[dict]:
    """Train the cells one epoch as one fused model, evaluate each on its val and test
    sets, and return one metrics dict per cell (the loop's keys)."""
    device = cells[0].data.train_y.device
    wall0, start = time.perf_counter(), loop._mark(device)
    lrs = [c.optimizer.param_groups[0]["lr"] for c in cells]
    fused = Fused([c.model for c in cells], memory_format) if mode == "vmap" else None
    train_loss, train_acc, seen = train_packed_epoch(cells, loss_fn, batch_size, fused=fused,
                                                     autocast=autocast,
                                                     memory_format=memory_format)
    train_end = loop._mark(device)
    fmt = {"autocast": autocast, "memory_format": memory_format}
    rows = []
    for k, c in enumerate(cells):
        val = loop.evaluate(c.model, c.data.val_x, c.data.val_y, c.data.normalize, **fmt)
        test = loop.evaluate(c.model, c.data.test_x, c.data.test_y, c.data.normalize, **fmt)
        rows.append(torch.stack([train_loss[k], train_acc[k], *test, *(val or ())]))
    values = torch.stack(rows).tolist()  # the one host sync of the epoch
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    train_s = max(loop._seconds(start, train_end), 1e-9)
    return [{"epoch": epoch, "lr": lr, "train_loss": v[0], "train_acc": v[1],
             "val_loss": v[4] if len(v) > 4 else None, "val_acc": v[5] if len(v) > 4 else None,
             "test_loss": v[2], "test_acc": v[3], "epoch_s": time.perf_counter() - wall0,
             "images_per_s": seen / train_s} for lr, v in zip(lrs, values)]


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
    device = loop.resolve_device(tcfg["device"])
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    reports = reports or [None] * len(configs)
    resumes = resumes or [None] * len(configs)
    cells, loaded = [], {}  # cells with one seed share one read-only copy of the data
    for cfg, resume, report in zip(configs, resumes, reports):
        seed = cfg["train"]["seed"]
        cells.append(build_cell(cfg, device, resume, loaded.get(seed)))
        cells[-1].report, loaded[seed] = report, cells[-1].data
    if all(r is None for r in resumes):
        torch.manual_seed(tcfg["seed"])  # the pack's dropout stream: the first cell's seed
    fmt = {"memory_format": memory_format_of(tcfg, device),
           "autocast": loop.autocast_for(tcfg["precision"], device),
           "mode": pack_mode(mode, device)}
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
                cell.report(metrics, loop.capture_state(cell.model, cell.optimizer,
                                                        cell.scheduler, cell.gen,
                                                        cell.history, wall))
    wall = time.perf_counter() - t0
    return [loop.summarize(c.history, c.status, count_params(c.model), c.prior_wall + wall,
                           loop.device_name(device)) for c in cells]
