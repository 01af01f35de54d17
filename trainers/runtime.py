"""Where and how a cell computes: the device, cuDNN, precision, memory format and timing.

Each decision lives in one function here, and the loop, the packed trainer and the
benchmark all call it, so that `grid train`, a pack and `grid bench` run the same recipe:
on CUDA, cuDNN autotuning, bf16 autocast and channels_last; on a CPU, none of them.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable

import torch

from trainers.errors import GridError


def resolve_device(name: str, what: str = "train.device") -> torch.device:
    """`train.device` (or the option `what`): auto -> cuda when available, else cpu. A CUDA
    device this machine does not have is a GridError naming `what`, before any work (torch
    would raise its driver's error at the first tensor, deep in a traceback)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise GridError(f"{what} {name}: this machine has no CUDA GPU that torch can use; "
                            "use auto or cpu")  # fmt: skip
        if device.index is not None and device.index >= count:
            raise GridError(f"{what} {name}: this machine has {count} CUDA GPU(s), cuda:0 to "
                            f"cuda:{count - 1}")  # fmt: skip
    return device


def device_name(device: torch.device) -> str:
    """The GPU's marketing name, or "cpu": what a result row records as its device."""
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def configure_cudnn(device: torch.device, benchmark: bool = True) -> None:
    """cuDNN autotuning on CUDA: every step has one input shape, so the first step's search
    for the fastest conv kernels pays off at once. `benchmark=False` is PyTorch's default,
    which the seeds' naive pipeline kept (the benchmark's baseline asks for it)."""
    if device.type == "cuda" or not benchmark:
        torch.backends.cudnn.benchmark = benchmark


def autocast_for(
    precision: str, device: torch.device
) -> Callable[[], contextlib.AbstractContextManager]:
    """`train.precision` as a context factory: bf16 autocast for bf16 (auto: bf16 on a GPU
    with native bf16, where tensor cores double the conv throughput), else a no-op context.

    auto on a GPU older than Ampere (compute capability < 8.0) is fp32, not fp16: fp16 needs
    loss scaling (a GradScaler in the step, the captured step and the pack), and those GPUs
    are not what the grids are sized for; an explicit bf16 there is refused before the launch
    (`orchestrator/planning/preflight.py`), as emulated bf16 is slower than fp32."""
    bf16 = precision == "bf16" or (precision == "auto" and native_bf16(device))
    return lambda: torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)


def native_bf16(device: torch.device) -> bool:
    """A CUDA device with bf16 tensor cores (compute capability 8.0 or newer: Ampere on)."""
    return device.type == "cuda" and torch.cuda.get_device_capability(device)[0] >= 8


def memory_format(train_cfg: dict, device: torch.device) -> torch.memory_format:
    """`train.channels_last` (auto: on for CUDA, whose conv kernels prefer NHWC) as a
    memory format."""
    on = train_cfg["channels_last"]
    on = device.type == "cuda" if on == "auto" else on
    return torch.channels_last if on else torch.contiguous_format


def sync(device: torch.device) -> None:
    """Wait for the GPU's queued work (nothing to wait for on a CPU): before reading a clock."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def mark(device: torch.device):
    """A point in time that does not sync the GPU (a CUDA event; perf_counter on CPU)."""
    if device.type == "cuda":
        event = torch.cuda.Event(enable_timing=True)
        event.record()
        return event
    return time.perf_counter()


def seconds_between(start, end) -> float:
    """Seconds from `mark` `start` to `end` (CUDA events: after a synchronize)."""
    return start.elapsed_time(end) / 1000 if isinstance(start, torch.cuda.Event) else end - start
