"""The epoch's augmentation: drawn for every image at once (`draw_augment`), applied in a few
large ops (`apply_augment`), and the same transformation as the per-image recipe it
replaces: zero-padded crop, then flip, then cutout."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from trainers import data as data_module
from trainers.data import Data, data_generator, load_data, prepare, steps_per_epoch, train_batches
from trainers.preprocess import apply_augment, draw_augment, fit_preprocess


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _cfg(*ops: str, padding: int = 4, size: int = 8) -> dict:
    return {"augment": list(ops), "crop_padding": padding, "cutout_size": size}


def _images(n: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, 32, 32, generator=_gen(seed)) + 1  # no pixel is 0


def reference(img: torch.Tensor, cfg: dict, shift, flip, centre) -> torch.Tensor:
    """One image by the recipe, slice by slice: pad with zeros, crop, flip, cut out."""
    pad, size = cfg["crop_padding"], cfg["cutout_size"]
    out = img
    if shift is not None:
        dy, dx = int(shift[0]), int(shift[1])
        out = F.pad(img, (pad,) * 4)[:, dy : dy + 32, dx : dx + 32]
    if flip is not None and bool(flip):
        out = out.flip(2)
    if centre is not None:
        out = out.clone()
        top, left = int(centre[0]) - size // 2, int(centre[1]) - size // 2
        out[:, max(top, 0) : max(top + size, 0), max(left, 0) : max(left + size, 0)] = 0
    return out


@pytest.mark.parametrize(
    "ops", [("crop",), ("flip",), ("cutout",), ("crop", "flip"), ("crop", "flip", "cutout")]
)
def test_each_image_is_the_recipe_applied_to_its_draws(ops):
    x, cfg = _images(40), _cfg(*ops, padding=3)
    index = torch.randperm(40, generator=_gen(5))[:24]
    draws = draw_augment(24, cfg, _gen(), torch.device("cpu"))
    out = apply_augment(x, draws, cfg, index=index)
    assert out.shape == (24, 3, 32, 32) and out.dtype == x.dtype and out.is_contiguous()
    for i, k in enumerate(index.tolist()):
        row = [None if t is None else t[i] for t in (draws.shift, draws.flip, draws.centre)]
        assert torch.equal(out[i], reference(x[k], cfg, *row)), i


def test_the_draws_have_the_documented_ranges_and_odds():
    cfg = _cfg("crop", "flip", "cutout", padding=4)
    d = draw_augment(4000, cfg, _gen(), torch.device("cpu"))
    assert d.shift.min() == 0 and d.shift.max() == 8  # offsets of the padded image: 0..2p
    assert d.centre.min() == 0 and d.centre.max() == 31  # a hole may be clipped by the border
    assert 0.45 < d.flip.float().mean() < 0.55  # p = 1/2
    assert len(set(map(tuple, d.shift.tolist()))) == 81  # every offset pair occurs
    none = draw_augment(10, _cfg("crop", "cutout", padding=0, size=0), _gen(), "cpu")
    assert (none.shift, none.flip, none.centre) == (None, None, None)
    again = draw_augment(4000, cfg, _gen(), torch.device("cpu"))
    assert torch.equal(d.shift, again.shift) and torch.equal(d.centre, again.centre)


def test_no_augmentation_is_the_shuffled_images_themselves():
    x = _images(10)
    index = torch.tensor([3, 1, 4])
    out = apply_augment(x, draw_augment(3, _cfg(), _gen(), "cpu"), _cfg(), index=index)
    assert torch.equal(out, x[index])


def _synthetic(augment: list[str], subset: int = 230) -> Data:
    cfg = {
        "name": "synthetic",
        "root": None,
        "download": False,
        "augment": augment,
        "crop_padding": 4,
        "cutout_size": 8,
        "preprocess": "standardize",
        "val_size": 0,
        "subset": subset,
    }
    return load_data(cfg, "cpu", seed=0)


def test_train_batches_shuffle_every_image_once_and_reproducibly():
    data = _synthetic(["crop", "flip", "cutout"])
    assert steps_per_epoch(230, 50) == 4  # the last partial batch is dropped
    batches = list(train_batches(data, 50, data_generator("cpu", 7)))
    again = list(train_batches(data, 50, data_generator("cpu", 7)))
    assert len(batches) == 4
    for (x, y), (x2, y2) in zip(batches, again, strict=True):
        assert x.dtype == torch.float32 and x.shape == (50, 3, 32, 32) and y.shape == (50,)
        assert torch.equal(x, x2) and torch.equal(y, y2)
    other = list(train_batches(data, 50, data_generator("cpu", 8)))
    assert not torch.equal(other[0][1], batches[0][1])  # another seed, another order
    plain = list(train_batches(_synthetic([]), 50, data_generator("cpu", 7)))
    labels = torch.cat([y for _, y in plain])
    assert len(set(labels.tolist())) > 1 and torch.equal(labels, torch.cat([y for _, y in batches]))


def test_the_epoch_is_drawn_up_front_and_the_chunk_size_changes_nothing(monkeypatch):
    """A checkpoint holds the generator at an epoch's end: that state, and every batch,
    must not depend on how many images are augmented per op."""
    data = _synthetic(["crop", "flip", "cutout"])
    gen = data_generator("cpu", 3)
    whole = train_batches(data, 50, gen)
    first = next(whole)
    drawn = gen.get_state()  # every draw of the epoch is done before its first batch
    whole = [first, *whole]
    assert torch.equal(gen.get_state(), drawn)
    monkeypatch.setattr(data_module, "AUGMENT_CHUNK", 60)  # one batch per chunk
    gen = data_generator("cpu", 3)
    chunked = list(train_batches(data, 50, gen))
    assert torch.equal(gen.get_state(), drawn)
    for (x, y), (x2, y2) in zip(whole, chunked, strict=True):
        assert torch.equal(x, x2) and torch.equal(y, y2)


def test_images_stored_as_uint8_are_preprocessed_before_the_augmentation():
    data = _synthetic(["crop", "flip", "cutout"])
    raw = (torch.rand(230, 3, 32, 32, generator=_gen(1)) * 255).to(torch.uint8)
    prep = fit_preprocess("standardize", raw)
    as_uint8 = dataclasses.replace(data, train_x=raw, prep=prep)
    as_float = dataclasses.replace(data, train_x=prepare(prep, raw), prep=prep)
    got = list(train_batches(as_uint8, 50, data_generator("cpu", 7)))
    want = list(train_batches(as_float, 50, data_generator("cpu", 7)))
    for (x, y), (x2, y2) in zip(got, want, strict=True):
        assert torch.equal(x, x2) and torch.equal(y, y2)
