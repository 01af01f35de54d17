"""A cell's checkpoint: everything needed to continue its training exactly, as live tensors.

`capture_state` is what `report(metrics, state)` receives after each epoch; `restore_state`
loads it back onto whatever device the resumed trial now has. A retried trial may land on
another machine: a state saved on a GPU must resume on a CPU and the other way round.
Tensors load across devices as they are (`load_state_dict` copies onto the model's device);
random-number states need care, as CPU and CUDA generators are different algorithms.
"""

from __future__ import annotations

import functools
from typing import Any

import torch

from trainers.errors import CheckpointError

# Mixes a cell's seed and epoch into the seed of a generator that cannot take its saved
# state (another device's algorithm): deterministic, and far from the plain small seeds.
RESEED_PRIME = 1_000_003


def capture_state(run: Any, wall_s: float) -> dict:
    """The full checkpoint of `run` (a `trainers.setup.Run`) after the last epoch in its
    `history` (live tensors: save at once)."""
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
    return {
        "model": {k: own(v) for k, v in run.model.state_dict().items()},
        "optimizer": run.optimizer.state_dict(),
        "scheduler": run.scheduler.state_dict(),
        "rng": {
            "torch": torch.get_rng_state(),
            "cuda": cuda,
            "data": run.gen.get_state(),
            "data_device": run.gen.device.type,
        },
        "epoch": len(run.history),
        "history": [dict(h) for h in run.history],
        "wall_s": wall_s,
    }


def own(t: torch.Tensor) -> torch.Tensor:
    """`t`, copied when it is a view into a larger buffer (a packed cell's parameters and
    batch-norm statistics are views of the pack's K-cell buffers: saved as they are, each
    cell's checkpoint would hold the whole pack)."""
    return t.clone() if t.untyped_storage().nbytes() > t.numel() * t.element_size() else t


def restore_state(state: dict, run: Any) -> tuple[list, float]:
    """Load a `capture_state` checkpoint into `run` (a `trainers.setup.Run`) in place, on
    its device; returns
    (history, wall_s so far). CheckpointError when the state does not fit the cell (a
    renamed layer, a missing entry): the caller then starts the cell over."""
    try:
        run.model.load_state_dict(state["model"])
        run.optimizer.load_state_dict(state["optimizer"])  # moves its state to the params' device
        run.scheduler.load_state_dict(state["scheduler"])
        rng = state["rng"]
        torch.set_rng_state(rng["torch"].cpu())
        restore_cuda_rng(rng.get("cuda"))
        restore_generator(run.gen, rng["data"], rng.get("data_device"), int(state["epoch"]))
        return [dict(h) for h in state["history"]], float(state.get("wall_s", 0.0))
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as e:
        raise CheckpointError(
            f"cannot restore the checkpoint: {type(e).__name__}: {' '.join(str(e).split())[:300]}"
        ) from e


def restore_cuda_rng(states: list[torch.Tensor] | None) -> None:
    """Set the saved per-GPU RNG states that this machine has GPUs for; none on a CPU-only
    machine (the states only drive CUDA ops, and there are none here)."""
    if not states or not torch.cuda.is_available():
        return
    for index, s in enumerate(states[: torch.cuda.device_count()]):
        torch.cuda.set_rng_state(s.cpu(), index)


@functools.lru_cache(maxsize=1)
def _cpu_state_size() -> int:
    return torch.Generator().get_state().numel()


def state_device(saved: torch.Tensor, tagged: str | None) -> str:
    """The device type whose generator produced `saved`: its tag, or, for a checkpoint
    written before tags, the state's size (a CPU Mersenne Twister state is kilobytes, a
    CUDA Philox state is a seed and an offset)."""
    if tagged is not None:
        return tagged
    return "cpu" if saved.numel() == _cpu_state_size() else "cuda"


def restore_generator(
    gen: torch.Generator, saved: torch.Tensor, tagged: str | None, epoch: int
) -> None:
    """Put the data generator where the checkpoint left it. A state from another device
    type cannot be set (another algorithm): the generator is reseeded from its seed and the
    epoch instead, so the shuffles go on deterministically, though not as the
    uninterrupted run's would (which no device change can give)."""
    saved = saved.cpu()
    if state_device(saved, tagged) == gen.device.type:
        gen.set_state(saved)
    else:
        gen.manual_seed((gen.initial_seed() * RESEED_PRIME + epoch) % 2**63)
