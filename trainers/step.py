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
schedule changing it every step does not recompile.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch
from torch import nn

Step = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


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
    return torch.compile(forward, mode=compile_mode(device or torch.device("cpu")))


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
) -> Step:
    """`step(x, y) -> (loss, correct)`: one optimizer step of `model` on a batch, with the
    schedule stepped after it; loss and the number correct as 0-dim device tensors (no
    host sync)."""
    forward = make_forward(
        model, captured=captured, device=device, autocast=autocast, memory_format=memory_format
    )
    opt_step = optimizer.step
    if captured:
        opt_step = torch.compile(
            _optimizer_step(optimizer), mode=compile_mode(device or torch.device("cpu"))
        )

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
