"""`dataset.on_device`: the images kept as uint8 (preprocessed per augmentation chunk and per
evaluated batch) give the batches, evaluation inputs and training of the float32 copy
preprocessed at load, to float tolerance, in a quarter of the memory."""

from __future__ import annotations

import copy

import pytest
import torch

from tests.trainers.test_pack import cell
from trainers.config import DEFAULTS
from trainers.data import data_generator, load_data, storage, train_batches
from trainers.loop import train

AUGMENT = ["crop", "flip", "cutout"]


def _dataset(preprocess: str, on_device: str, tmp_path) -> dict:
    d = copy.deepcopy(DEFAULTS["dataset"])
    d.update(
        name="synthetic",
        val_size=100,
        subset=600,
        augment=AUGMENT,
        preprocess=preprocess,
        on_device=on_device,
        root=str(tmp_path),
    )
    return d


@pytest.mark.parametrize("preprocess", ["none", "standardize", "stretch", "gcn_zca"])
def test_uint8_batches_match_float32_ones(preprocess, tmp_path):
    u8 = load_data(_dataset(preprocess, "uint8", tmp_path), "cpu", 3)
    f32 = load_data(_dataset(preprocess, "float32", tmp_path), "cpu", 3)
    assert u8.train_x.dtype == torch.uint8 and f32.train_x.dtype == torch.float32
    assert u8.train_x.nbytes * 4 == f32.train_x.nbytes
    got = list(train_batches(u8, 64, data_generator("cpu", 7)))
    want = list(train_batches(f32, 64, data_generator("cpu", 7)))
    assert len(got) == len(want) == 600 // 64
    for (xg, yg), (xw, yw) in zip(got, want, strict=True):
        assert xg.dtype == xw.dtype == torch.float32
        assert torch.equal(yg, yw)
        torch.testing.assert_close(xg, xw, rtol=1e-4, atol=1e-4)
    for split in ("val_x", "test_x"):
        torch.testing.assert_close(
            u8.preprocess(getattr(u8, split)), f32.preprocess(getattr(f32, split))
        )


def test_auto_is_uint8_but_float32_for_the_per_image_preprocessings():
    assert storage({"preprocess": "standardize", "on_device": "auto"}) == "uint8"
    assert storage({"preprocess": "none"}) == "uint8"
    assert storage({"preprocess": "stretch"}) == "float32"
    assert storage({"preprocess": "gcn_zca", "on_device": "auto"}) == "float32"
    assert storage({"preprocess": "gcn_zca", "on_device": "uint8"}) == "uint8"


def test_training_on_uint8_matches_float32():
    runs = {}
    for on in ("uint8", "float32"):
        config = cell(bn=True)
        config["dataset"].update(on_device=on, augment=AUGMENT)
        runs[on] = train(config)
    for g, w in zip(runs["uint8"]["history"], runs["float32"]["history"], strict=True):
        for metric in ("train_loss", "val_loss", "test_loss", "test_acc"):
            assert g[metric] == pytest.approx(w[metric], rel=1e-3, abs=1e-4), metric
