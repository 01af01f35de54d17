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
