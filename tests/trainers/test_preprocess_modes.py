"""Seed 001 §3.1's inputs: raw 0-255 values and mean-only centring; a raw run that blows up
is a diverged result, not a failure."""

from __future__ import annotations

import math

import pytest
import torch

from trainers.loop import train
from trainers.preprocess import fit_preprocess

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/trainers/conftest.py


def _images(n: int = 64) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, 32, 32), generator=torch.Generator().manual_seed(0)).to(
        torch.uint8
    )


def test_raw_is_the_byte_values():
    x = _images()
    assert torch.equal(fit_preprocess("raw", x)(x), x.float())


def test_center_subtracts_the_training_mean_colour_and_keeps_the_scale():
    x = _images()
    out = fit_preprocess("center", x)(x)
    ref = x.double() / 255
    ref = ref - ref.mean(dim=(0, 2, 3), keepdim=True)
    torch.testing.assert_close(out.double(), ref, atol=1e-6, rtol=0)
    assert out.mean(dim=(0, 2, 3)).abs().max() < 1e-5  # centred per channel
    assert (out.std() - (x.double() / 255).std()).abs() < 1e-5  # not rescaled


def test_a_raw_input_run_that_blows_up_is_diverged(small_config):
    # 0-255 inputs, no batch norm, the papers' largest lr: the loss overflows (seed 001 saw
    # NaN). That is a result, as in the tables: status diverged, the epoch it happened on.
    small_config["dataset"].update(preprocess="raw", subset=200)
    small_config["model"].update(batch_norm=False)
    small_config["train"].update(lr=0.25, epochs=3)
    summary = train(small_config)
    assert summary["status"] == "diverged"
    assert not math.isfinite(summary["final"]["train_loss"])
