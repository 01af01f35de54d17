"""A slot's captured step, kept across its cells (`train.compile`).

A slot trains cell after cell in one process (`reuse_actors`), and most of its cells differ
from the last only in numbers: lr, seed, init, weight decay's schedule. Compiling each one's
step afresh cost 18-23 s a cell on an H200 (BENCHMARKS.md). Instead, the process keeps the
model and optimizer its last captured step was compiled (and, on CUDA, its graphs captured)
for, and a new cell with the same key (`step_key`: the architecture and its options, the
parameter shapes, the optimizer's kind and hyperparameters but its lr, device, memory format
and precision) trains on them: its freshly built (or resumed) state is copied into their
tensors in place (the static buffers a CUDA graph replays on), and they become the cell's
`run.model` and `run.optimizer`. Dynamo's guards see the same objects, so nothing recompiles.

A fresh cell's optimizer has no state yet; the kept optimizer's state is then zeroed in
place, which is what each optimizer in `ZERO_STATE` starts from (SGD's first momentum buffer
is the gradient itself: 0.9 * 0 + g = g; Adam's moments and step count start at 0). Other
optimizers (Lookahead, in `ranger`) compile afresh per cell, as every cell did before. One
step is kept, the last: a different key resets dynamo (`torch.compiler.reset`) and keeps the
new one, as dynamo's cache of one function holds only 8 variants (`recompile_limit`).
"""

from __future__ import annotations

import dataclasses
import json

import torch
from torch import nn

from trainers.setup import Run
from trainers.step import COMPILED, Captured, Step, make_step

# Optimizers whose fresh state is all zeros (torch 2.x): a kept one, zeroed, is a new one.
ZERO_STATE = (
    torch.optim.SGD,
    torch.optim.Adam,
    torch.optim.AdamW,
    torch.optim.Adadelta,
    torch.optim.RAdam,
)


@dataclasses.dataclass
class Kept:
    """The process's last captured step: its key, the objects it was compiled for, its
    compiled pieces, and how many cells have trained on it."""

    key: str
    model: nn.Module
    optimizer: torch.optim.Optimizer
    parts: Captured
    cells: int = 1


_kept: Kept | None = None


def captured_step(run: Run, loss_fn) -> Step:
    """`make_step(captured=True)` for `run`, on the step this process compiled last when it
    has `run`'s key: `run`'s state is copied into that step's model and optimizer, which
    become `run.model` and `run.optimizer` (`run.scheduler` moves to it). `step.reused`:
    whether it did."""
    global _kept
    key = step_key(run)
    kept = _kept
    fmt = {"device": run.device, **run.fmt}
    if kept is not None and kept.key == key and kept.parts.state["mode"] == COMPILED:
        adopt(run, kept.model, kept.optimizer)
        kept.cells += 1
        step = make_step(
            run.model, run.optimizer, run.scheduler, loss_fn, captured=True, parts=kept.parts
        )
        step.reused = True
        return step
    _kept = None  # the old step's model and optimizer go before the new one compiles
    step = make_step(run.model, run.optimizer, run.scheduler, loss_fn, captured=True, **fmt)
    if key is not None:
        _kept = Kept(key, run.model, run.optimizer, step.parts)
    step.reused = False
    return step


def forget() -> None:
    """Drop the kept step (its model and optimizer), if any, and dynamo's compiled code with
    it: the next captured step compiles."""
    global _kept
    if _kept is not None:
        _kept = None
        torch.compiler.reset()


def step_key(run: Run) -> str | None:
    """What a captured step is compiled for, as a string; None for an optimizer whose fresh
    state is not zeros (never reused). The model section but its init (the init draws the
    numbers, not the graph) says which modules run with which attributes; the optimizer's
    groups but their lr (a tensor, `build_optimizer(captured=True)`) which update."""
    if type(run.optimizer) not in ZERO_STATE:
        return None
    index = {id(p): i for i, p in enumerate(run.model.parameters())}
    groups = [
        {
            k: [index[id(p)] for p in v] if k == "params" else v
            for k, v in group.items()
            if k not in ("lr", "initial_lr")
        }
        for group in run.optimizer.param_groups
    ]
    model_cfg = {k: v for k, v in run.config["model"].items() if k != "init"}
    return json.dumps(
        {
            "model": model_cfg,
            "tensors": [
                (name, list(t.shape), str(t.dtype), t.requires_grad)
                for name, t in run.model.state_dict(keep_vars=True).items()
            ],
            "optimizer": type(run.optimizer).__name__,
            "groups": groups,
            "device": str(run.device),
            "memory_format": str(run.memory_format),
            "precision": run.config["train"]["precision"],
        },
        sort_keys=True,
        default=str,
    )


@torch.no_grad()
def adopt(run: Run, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
    """Copy `run`'s model and optimizer state into `model` and `optimizer` (of the same key,
    in place), then make them `run`'s."""
    mine = model.state_dict(keep_vars=True)
    for name, t in run.model.state_dict(keep_vars=True).items():
        mine[name].copy_(t)  # keeps the kept tensor's memory format and address
    params = list(model.parameters())
    index = {id(p): i for i, p in enumerate(run.model.parameters())}
    for kept_group, group in zip(optimizer.param_groups, run.optimizer.param_groups, strict=True):
        for k in ("lr", "initial_lr"):
            if k not in group:
                continue
            if isinstance(kept_group.get(k), torch.Tensor):
                kept_group[k].copy_(group[k])
            else:
                kept_group[k] = group[k]
        for p in group["params"]:
            _copy_state(optimizer, params[index[id(p)]], run.optimizer.state.get(p, {}))
    run.scheduler.optimizer = optimizer  # the schedule now sets the kept optimizer's lr
    run.params = run.params and [params[index[id(p)]] for p in run.params]
    run.scaled = run.scaled and [params[index[id(p)]] for p in run.scaled]
    run.model, run.optimizer = model, optimizer


def _copy_state(optimizer: torch.optim.Optimizer, param, state: dict) -> None:
    """`state` (a new cell's, for one parameter) into `optimizer`'s state of `param`, in
    place; an entry the new cell does not have yet (a fresh optimizer) is zeroed."""
    kept = optimizer.state.get(param)
    if not kept:
        if state:
            optimizer.state[param] = {
                k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in state.items()
            }
        return
    for k, v in list(kept.items()):
        if not isinstance(v, torch.Tensor):
            kept[k] = state.get(k, 0)
        elif k in state:
            v.copy_(state[k])
        else:
            v.zero_()
    for k in state.keys() - kept.keys():
        v = state[k]
        kept[k] = v.clone() if isinstance(v, torch.Tensor) else v
