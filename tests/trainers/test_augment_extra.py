"""Colour jitter, rotation/scale and Mixup, batched, against torchvision per image."""

from __future__ import annotations

import pytest
import torch
from torchvision.transforms import InterpolationMode, v2
from torchvision.transforms.v2 import functional as TF

from trainers import augment_extra
from trainers.data import load_data, train_batches
from trainers.errors import GridError
from trainers.preprocess import fit_preprocess

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/trainers/conftest.py


def _uint8(n: int = 6) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (n, 3, 32, 32), generator=gen).to(torch.uint8)


@pytest.mark.parametrize("prep", ["none", "raw", "center", "standardize"])
def test_jitter_is_torchvision_s_per_image(prep):
    raw = _uint8()
    p = fit_preprocess(prep, raw)
    gen = torch.Generator().manual_seed(1)
    factors = augment_extra.draw_extra(6, 1, {"augment": ["jitter"], "jitter": 0.5}, gen, "cpu")
    ours = augment_extra.jitter(p(raw), factors.jitter, p)
    for i in range(6):
        img = raw[i].float() / 255
        b, c, s = factors.jitter[i].tolist()
        img = TF.adjust_saturation(TF.adjust_contrast(TF.adjust_brightness(img, b), c), s)
        torch.testing.assert_close(ours[i], p((img * 255)[None]).squeeze(0), atol=2e-5, rtol=1e-5)
    assert ((factors.jitter >= 0.5) & (factors.jitter <= 1.5)).all()


def test_jitter_refuses_a_whitened_input():
    with pytest.raises(GridError, match=r"dataset\.augment"):
        augment_extra.channel_affine(fit_preprocess("stretch", _uint8()))


def test_rotation_and_scale_are_torchvision_s_affine_per_image():
    x = torch.randn(5, 3, 32, 32)
    params = torch.tensor([[0.0, 1.0], [15.0, 1.0], [-30.0, 0.9], [90.0, 1.1], [7.5, 1.05]])
    ours = augment_extra.affine(x, params)
    for i, (angle, scale) in enumerate(params.tolist()):
        ref = TF.affine(
            x[i],
            angle=angle,
            translate=[0, 0],
            scale=scale,
            shear=[0.0, 0.0],
            interpolation=InterpolationMode.BILINEAR,
        )
        torch.testing.assert_close(ours[i], ref, atol=1e-5, rtol=1e-5)


def test_mixup_is_v2_mixup_with_the_same_lambda(monkeypatch):
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))
    lam = torch.tensor(0.3)
    ref = v2.MixUp(alpha=1.0, num_classes=10)
    monkeypatch.setattr(ref, "_dist", type("D", (), {"sample": lambda self, shape=(): lam})())
    rx, ry = ref(x, y)
    ox, oy = augment_extra.mixup(x, y, lam, 10)
    torch.testing.assert_close(ox, rx)
    torch.testing.assert_close(oy, ry)


def test_beta_draws_have_the_beta_moments():
    lam = augment_extra.beta(20000, 0.4, torch.Generator().manual_seed(0), "cpu")
    assert ((lam >= 0) & (lam <= 1)).all()
    assert abs(lam.mean() - 0.5) < 0.01  # Beta(a, a): mean 1/2, var 1 / (4 (2a + 1))
    assert abs(lam.var() - 1 / (4 * 1.8)) < 0.01


def _cfg(**kw):
    return {
        "name": "synthetic",
        "root": None,
        "download": False,
        "augment": ["crop", "flip"],
        "crop_padding": 2,
        "cutout_size": 8,
        "preprocess": "standardize",
        "val_size": 0,
        "subset": 256,
        "jitter": 0.4,
        "rotate_degrees": 15.0,
        "scale_range": 0.1,
        "mixup": 0.0,
        **kw,
    }


def _epoch(cfg: dict) -> list:
    data = load_data(cfg, "cpu", 0)
    return list(train_batches(data, 64, torch.Generator().manual_seed(3)))


def test_without_the_new_ops_an_epoch_draws_and_yields_as_before():
    plain = _epoch(_cfg())
    again = _epoch(_cfg(jitter=0.9, rotate_degrees=40.0))  # values unused: not in augment
    for (a, ya), (b, yb) in zip(plain, again, strict=True):
        assert torch.equal(a, b) and torch.equal(ya, yb)


def test_an_epoch_with_every_op_mixes_soft_targets():
    plain = _epoch(_cfg())
    batches = _epoch(_cfg(augment=["crop", "flip", "jitter", "rotate", "scale"], mixup=0.2))
    assert len(batches) == len(plain) == 4
    for (x, y), (x0, _) in zip(batches, plain, strict=True):
        assert y.shape == (64, 10) and torch.allclose(y.sum(1), torch.ones(64))
        assert x.shape == x0.shape and not torch.equal(x, x0)
        # each target mixes at most two classes, the larger share at least half
        assert ((y > 0).sum(1) <= 2).all() and (y.max(1).values >= 0.5).all()


def test_a_cell_trains_with_mixup_label_smoothing_and_the_image_ops(small_config):
    from trainers.loop import train

    small_config["dataset"].update(_cfg(augment=["crop", "jitter", "rotate", "scale"]), mixup=0.4)
    small_config["train"].update(label_smoothing=0.1, epochs=2)
    summary = train(small_config)
    assert summary["status"] == "completed"
    assert all(0 <= h["train_acc"] <= 1 for h in summary["history"])
