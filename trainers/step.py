"""The training step and the evaluation forward, eager or captured (`train.compile`).

Eager (the default, and the fallback): forward, loss, backward and the optimizer step as
PyTorch runs them, one kernel launch per op. At batch 128 on a GPU that is ~140 launches a
step, 1.4-2 ms of host time against ~1 ms of GPU work: the eager step is launch-bound.

Captured (`train.compile: true`): the same four stages, with the forward (and so, through
AOTAutograd, the backward) compiled by `torch.compile`, and the optimizer step
compiled on its own (PyTorch's recipe for a compiled optimizer: its foreach/fused kernels
become a few generated ones). On CUDA the mode is "reduce-overhead": CUDA graphs replay
the whole captured stage in one launch, which needs static shapes (every training batch is
full: `steps_per_epoch` drops the last partial one). On a CPU the mode is the default (no
graphs). Evaluation runs through the same compiled forward. The lr is a tensor in the
captured step's optimizer (`trainers.optim.build_optimizer(captured=True)`), so the
schedule changing it every step does not recompile; it lives on the parameters' device, as a
CUDA graph admits no CPU input.

One compile per slot: `make_step` alone compiles afresh each time (after
`torch.compiler.reset()`); a cell trained by `trainers.loop` goes through `trainers.reuse`,
which keeps the compiled pieces (`Captured`) of the process's last captured step and hands
them to the next cell of the same architecture and options, so that a slot compiles (and,
on CUDA, captures its graphs) once for all its cells.

Fallback: a captured step that fails to compile or capture (an inductor, dynamo or CUDA-graph
error, raised at its first call) falls back to the eager step once, with a `StepFallback`
warning in the trial's log; `step.mode` (eager | compiled | compiled->eager) goes into the
result row (`step_mode`). The cell trains on eagerly: the failure is not the cell's, so it is
neither failed nor retried. An error of the eager step itself is raised as always.
"""

from __future__ import annotations

import contextlib
import dataclasses
import warnings
from collections.abc import Callable

import torch
from torch import nn

from trainers.errors import GridError

Step = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]

EAGER, COMPILED, FELL_BACK = "eager", "compiled", "compiled->eager"


class StepFallback(RuntimeWarning):
    """A captured (compiled) or vmapped path failed and its plain twin took over."""


def fall_back(what: str, error: BaseException, instead: str) -> None:
    """The one warning of a fallback: what failed, its error's first line, what runs now."""
    first = (str(error).strip().splitlines() or [""])[0][:300]
    with warnings.catch_warnings():
        # Every time: a reused worker process would otherwise show only its first fallback.
        warnings.simplefilter("always", StepFallback)
        warnings.warn(
            f"{what} failed ({type(error).__name__}: {first}); falling back to {instead} "
            f"for the rest of this trial",
            StepFallback,
            stacklevel=3,
        )


class Fallback:
    """`captured` until it first raises, then `eager` for good: a callable with the mode it
    ran in (`mode`, shared by the step and the forward built together through `state`).
    A GridError is the user's, never a compile failure: raised as it is."""

    def __init__(self, captured, eager, state: dict, what: str):
        self.captured, self.eager, self.state, self.what = captured, eager, state, what

    @property
    def mode(self) -> str:
        return self.state["mode"]

    def __call__(self, *args):
        if self.state["mode"] == COMPILED:
            try:
                return self.captured(*args)
            except GridError:
                raise
            except Exception as e:  # inductor/dynamo/CUDA-graph errors have no common base
                self.state["mode"] = FELL_BACK
                fall_back(f"the captured {self.what} (train.compile)", e, "the eager step")
        return self.eager(*args)


def compile_mode(device: torch.device) -> str | None:
    """CUDA graphs where shapes are static (every step on CUDA); none on a CPU."""
    return "reduce-overhead" if device.type == "cuda" else None


def make_forward(
    model: nn.Module,
    *,
    captured: bool = False,
    device: torch.device | None = None,
    autocast=contextlib.nullcontext,
    memory_format=torch.contiguous_format,
):
    """`forward(x) -> logits` (fp32) of `model` on float inputs `x`, in the model's current
    mode (the captured one compiles a graph for train and one for eval)."""

    def forward(x: torch.Tensor) -> torch.Tensor:
        with autocast():
            return model(x.contiguous(memory_format=memory_format)).float()

    if not captured:
        return forward
    return _captured(forward, forward, device, {"mode": COMPILED}, "forward")


def _captured(fn, eager, device, state: dict, what: str) -> Fallback:
    """`torch.compile(fn)` behind a `Fallback` to `eager`; a compile that fails at once (no
    backend, say) is the same fallback, taken before the first step."""
    try:
        compiled = torch.compile(fn, mode=compile_mode(device or torch.device("cpu")))
    except Exception as e:
        if state["mode"] == COMPILED:
            state["mode"] = FELL_BACK
            fall_back(f"torch.compile of the {what} (train.compile)", e, "the eager step")
        compiled = eager
    return Fallback(compiled, eager, state, what)


@dataclasses.dataclass
class Captured:
    """The compiled pieces of a captured step, bound to one model and optimizer: the forward
    (training and evaluation), the optimizer step, and the mode they share (whichever fails
    first turns them all eager)."""

    forward: Fallback
    opt_step: Fallback
    state: dict


def capture(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    *,
    device: torch.device | None = None,
    autocast=contextlib.nullcontext,
    memory_format=torch.contiguous_format,
) -> Captured:
    """`torch.compile` of `model`'s forward and `optimizer`'s step (compiled at first call)."""
    forward = make_forward(model, autocast=autocast, memory_format=memory_format)
    state = {"mode": COMPILED}
    return Captured(
        _captured(forward, forward, device, state, "forward"),
        _captured(_optimizer_step(optimizer), optimizer.step, device, state, "step"),
        state,
    )


def make_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler,
    loss_fn,
    *,
    captured: bool = False,
    device: torch.device | None = None,
    autocast=contextlib.nullcontext,
    memory_format=torch.contiguous_format,
    parts: Captured | None = None,
) -> Step:
    """`step(x, y) -> (loss, correct)`: one optimizer step of `model` on a batch, with the
    schedule stepped after it; loss and the number correct as 0-dim device tensors (no
    host sync). `step.mode`: eager | compiled | compiled->eager (so far); `step.forward`:
    its forward, for evaluation (the captured one falls back with the step). `parts`: the
    captured pieces to use, already compiled for this model and optimizer (`capture`;
    `trainers.reuse`); without them a captured step compiles its own (`step.parts`)."""
    forward = make_forward(model, autocast=autocast, memory_format=memory_format)
    eager = _step(forward, optimizer.step, optimizer, scheduler, loss_fn)
    if not captured:
        eager.mode, eager.forward = EAGER, forward
        return eager
    if parts is None:
        # A new cell in a process that trained others: dynamo guards the compiled optimizer
        # step on the optimizer object, so each cell added cache entries until
        # `recompile_limit` (8) was hit at the 5th cell, and from then on the optimizer step
        # ran eagerly with no error and no fallback to see. PyTorch's advice for an
        # unrelated compilation: start from a clean state (torch.compiler.reset). A pack
        # never compiles, so no other captured step lives in this process.
        torch.compiler.reset()
        parts = capture(
            model, optimizer, device=device, autocast=autocast, memory_format=memory_format
        )
    step = Fallback(
        _step(parts.forward, parts.opt_step, optimizer, scheduler, loss_fn),
        eager,
        parts.state,
        "step",
    )
    step.forward, step.parts = parts.forward, parts
    return step


def _step(forward, opt_step, optimizer, scheduler, loss_fn):
    def step(x: torch.Tensor, y: torch.Tensor):
        logits = forward(x)
        loss = loss_fn(logits, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        opt_step()
        scheduler.step()
        label = y if y.ndim == 1 else y.argmax(1)  # mixup's soft targets: the larger share
        return loss.detach(), (logits.detach().argmax(1) == label).sum()

    return step


def _optimizer_step(optimizer: torch.optim.Optimizer) -> Callable[[], None]:
    def opt_step() -> None:
        optimizer.step()

    return opt_step
