"""The options the reports need, each against its reference formula.

- `model.bn_momentum` / `model.bn_eps`: Keras' BatchNormalization(momentum=0.99, epsilon=1e-3)
  (seed 004's NIN lab) keeps `moving = m * moving + (1 - m) * batch_stat` and normalises with
  `(x - mean) / sqrt(var + eps)`; torch's momentum is Keras' 1 - m.
- `train.schedule.decay` under another schedule: Keras' `SGD(decay=d)` divides the lr the
  epoch's schedule set by `1 + d * iterations` (seed 000's All-CNN-C: steps and decay).
"""

import pytest
import torch
from torch import nn

from trainers import config
from trainers.models import create_model
from trainers.optim import lr_factor

KERAS_MOMENTUM, KERAS_EPS = 0.99, 1e-3


def _bns(model: nn.Module) -> list[nn.BatchNorm2d]:
    return [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]


def test_bn_defaults_are_torchs_and_neutral():
    assert config.DEFAULTS["model"]["bn_momentum"] == 0.1
    assert config.DEFAULTS["model"]["bn_eps"] == 1e-5
    model = create_model("nin", batch_norm=True)
    assert all(type(m) is nn.BatchNorm2d for m in _bns(model))
    assert all(m.momentum == 0.1 and m.eps == 1e-5 for m in _bns(model))


@pytest.mark.parametrize("arch", ["nin", "allcnn_c", "resnet9"])
def test_bn_options_reach_every_batch_norm(arch):
    model = create_model(arch, batch_norm=True, bn_momentum=0.01, bn_eps=1e-3)
    assert _bns(model) and all(m.momentum == 0.01 and m.eps == 1e-3 for m in _bns(model))


def test_bn_momentum_matches_keras_moving_average():
    torch.manual_seed(0)
    bn = create_model("nin", batch_norm=True, bn_momentum=1 - KERAS_MOMENTUM, bn_eps=KERAS_EPS)
    layer = _bns(bn)[0]
    layer.train()
    moving_mean = torch.zeros(layer.num_features)
    moving_var = torch.ones(layer.num_features)
    for _ in range(5):
        x = torch.randn(16, layer.num_features, 4, 4) * 3 + 1
        layer(x)
        mean = x.mean(dim=(0, 2, 3))
        var = x.var(dim=(0, 2, 3), unbiased=True)  # Keras' moving variance is unbiased too
        moving_mean = KERAS_MOMENTUM * moving_mean + (1 - KERAS_MOMENTUM) * mean
        moving_var = KERAS_MOMENTUM * moving_var + (1 - KERAS_MOMENTUM) * var
    torch.testing.assert_close(layer.running_mean, moving_mean)
    torch.testing.assert_close(layer.running_var, moving_var)
    # Inference: Keras' (x - moving_mean) / sqrt(moving_var + epsilon) * gamma + beta.
    layer.eval()
    x = torch.randn(2, layer.num_features, 3, 3)
    want = (x - moving_mean[:, None, None]) / torch.sqrt(moving_var[:, None, None] + KERAS_EPS)
    torch.testing.assert_close(layer(x), want)


@pytest.mark.parametrize("bad", [0, -0.1, 1.5, "keras"])
def test_bn_momentum_is_checked(bad):
    err, _ = config.CHECKS["model.bn_momentum"](bad)
    assert err


def test_step_schedule_with_keras_decay_is_their_product():
    d, steps, gamma = 1e-3, 782, 0.1  # seed 000: batch 64 is 782 iterations per epoch
    sched = {"name": "multistep", "milestones": [200, 250, 300], "gamma": gamma, "decay": d}
    f = lr_factor(sched, epochs=350, steps_per_epoch=steps)
    for step in (0, 1, 781, 782, 200 * steps - 1, 200 * steps, 260 * steps + 5, 350 * steps - 1):
        epoch = step // steps
        k = sum(epoch >= m for m in (200, 250, 300))
        assert f(step) == pytest.approx(gamma**k / (1 + d * step), rel=1e-12)


def test_keras_decay_composes_with_cosine_after_warmup():
    d, steps = 1e-4, 10
    plain = lr_factor({"name": "cosine", "warmup_epochs": 1}, 5, steps)
    composed = lr_factor({"name": "cosine", "warmup_epochs": 1, "decay": d}, 5, steps)
    for step in range(50):
        want = plain(step) if step < steps else plain(step) / (1 + d * (step - steps))
        assert composed(step) == pytest.approx(want)


def test_zero_decay_leaves_every_schedule_as_it_was():
    for name in ("multistep", "cosine", "onecycle", "constant"):
        a = lr_factor({"name": name, "milestones": [2]}, 4, 7)
        b = lr_factor({"name": name, "milestones": [2], "decay": 0.0}, 4, 7)
        assert [a(s) for s in range(28)] == [b(s) for s in range(28)]


# --- dataset.augment: resized_crop, torchvision's RandomResizedCrop(32) (seed 002) ---------


def test_resized_crop_matches_torchvision_on_each_box():
    from torchvision.transforms.v2 import functional as TF

    from trainers import augment_extra

    torch.manual_seed(0)
    x = torch.rand(5, 3, 32, 32)
    boxes = torch.tensor(
        [[0, 0, 32, 32], [3, 7, 20, 15], [10, 2, 9, 12], [0, 16, 16, 16], [25, 25, 7, 7]],
        dtype=torch.float32,
    )
    got = augment_extra.resized_crop(x, boxes)
    for img, box, out in zip(x, boxes.long().tolist(), got, strict=True):
        want = TF.resized_crop(img, *box, size=[32, 32], antialias=False)
        torch.testing.assert_close(out, want, atol=1e-5, rtol=1e-5)


def test_resized_crop_boxes_follow_torchvision_get_params():
    from trainers import augment_extra

    gen = torch.Generator().manual_seed(0)
    boxes = augment_extra.resized_crop_boxes(4000, (32, 32), gen, "cpu")
    top, left, h, w = boxes.T
    assert ((top >= 0) & (left >= 0) & (top + h <= 32) & (left + w <= 32)).all()
    assert ((h >= 1) & (w >= 1)).all()
    # Area within the scale range (rounding aside), aspect within the ratio range: torchvision
    # draws log-uniform ratios in [3/4, 4/3] and areas uniform in [0.08, 1] of the image.
    area = h * w / 1024
    assert area.min() > 0.05 and area.max() <= 1.0
    ratio = w / h
    assert ratio.min() > 0.5 and ratio.max() < 2.0
    # Uniform area fractions of the boxes that fit: the mean is near (0.08 + 1) / 2 for the
    # small ones and the large ones that do not fit are redrawn, so the mean falls below it.
    assert 0.35 < area.mean() < 0.55
    # The same generator state gives the same boxes (the epoch's draws are reproducible).
    again = augment_extra.resized_crop_boxes(
        4000, (32, 32), torch.Generator().manual_seed(0), "cpu"
    )
    assert torch.equal(boxes, again)


def test_resized_crop_is_an_augment_option_and_trains_a_batch():
    from trainers import augment_extra

    err, _ = config.CHECKS["dataset.augment"](["resized_crop", "flip"])
    assert err is None
    cfg = {"augment": ["resized_crop", "flip"], "mixup": 0.0}
    assert augment_extra.enabled(cfg)
    extra = augment_extra.draw_extra(8, 1, cfg, torch.Generator().manual_seed(1), "cpu")
    assert extra.box is not None and extra.box.shape == (8, 4) and extra.any_image_op
    assert not augment_extra.enabled({"augment": ["crop", "flip"], "mixup": 0.0})
