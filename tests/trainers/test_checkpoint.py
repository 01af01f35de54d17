"""Checkpoints load onto whatever device the resumed trial has: a state saved on a GPU
resumes on a CPU (and the other way round) without a crash. CPU-only here, so the GPU side
is simulated with the states a CUDA run writes: a 16-byte Philox generator state and a
`cuda` list of per-GPU RNG states."""

from __future__ import annotations

import io

import pytest
import torch

from trainers import checkpoint
from trainers.loop import train

PHILOX_STATE = 16  # bytes: a CUDA generator's seed and offset


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/trainers/conftest.py


def _saved(state: dict) -> dict:
    """As the trial stores it: serialised, then read back with map_location=cpu."""
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    return torch.load(buf, map_location="cpu", weights_only=True)


def _as_if_from_cuda(state: dict, tagged: bool = True) -> dict:
    state["rng"]["data"] = torch.arange(PHILOX_STATE, dtype=torch.uint8)
    state["rng"]["cuda"] = [torch.zeros(PHILOX_STATE, dtype=torch.uint8)]
    if tagged:
        state["rng"]["data_device"] = "cuda"
    else:  # a checkpoint written before the device tag
        state["rng"].pop("data_device", None)
    return state


@pytest.mark.parametrize("tagged", [True, False], ids=["tagged", "untagged"])
def test_a_state_saved_on_cuda_resumes_on_cpu(small_config, tagged):
    small_config["dataset"]["subset"] = 100
    small_config["train"]["epochs"] = 2
    states = []
    full = train(small_config, report=lambda m, s: states.append(_saved(s)))
    assert states[0]["rng"]["data_device"] == "cpu"
    # Two copies: loading shares the optimizer's buffers with the state (training moves them).
    first, second = (_as_if_from_cuda(_saved(states[0]), tagged) for _ in range(2))
    resumed = train(small_config, resume=first)
    assert resumed["status"] == "completed" and resumed["epochs"] == 2
    # The epoch before the move is kept; its wall time with the report was not yet known
    # when its checkpoint was taken.
    assert resumed["history"][0] == {**full["history"][0], "epoch_wall_s": None}
    again = train(small_config, resume=second)  # the reseeded shuffles are deterministic
    drop = ("epoch_s", "images_per_s", "epoch_wall_s")
    assert [{k: v for k, v in h.items() if k not in drop} for h in again["history"]] == [
        {k: v for k, v in h.items() if k not in drop} for h in resumed["history"]
    ]


def test_a_generator_takes_its_own_devices_state_and_reseeds_on_anothers():
    source = torch.Generator().manual_seed(7)
    torch.randperm(10, generator=source)
    saved = source.get_state()
    expected = torch.randperm(10, generator=source)
    for tagged in ("cpu", None):  # untagged: a CPU state is recognised by its size
        gen = torch.Generator().manual_seed(7)
        checkpoint.restore_generator(gen, saved, tagged, epoch=1)
        assert torch.equal(torch.randperm(10, generator=gen), expected)
    draws = []
    for _ in range(2):  # a CUDA state on a CPU generator: reseeded, the same way each time
        gen = torch.Generator().manual_seed(7)
        checkpoint.restore_generator(
            gen, torch.zeros(PHILOX_STATE, dtype=torch.uint8), "cuda", epoch=1
        )
        draws.append(torch.randperm(10, generator=gen))
    assert torch.equal(draws[0], draws[1])


def test_state_device_and_cuda_rng_without_a_gpu():
    assert checkpoint.state_device(torch.zeros(PHILOX_STATE, dtype=torch.uint8), None) == "cuda"
    assert checkpoint.state_device(torch.Generator().get_state(), None) == "cpu"
    assert checkpoint.state_device(torch.Generator().get_state(), "cuda") == "cuda"
    checkpoint.restore_cuda_rng(
        [torch.zeros(PHILOX_STATE, dtype=torch.uint8)] * 8
    )  # skipped on CPU
    checkpoint.restore_cuda_rng(None)
