"""The reports' extra optimizers and schedules: AdaDelta, RAdam, Ranger (RAdam + Lookahead),
weight decay without biases and norms, Keras' time-based decay, three-phase one-cycle."""

from __future__ import annotations

import copy
import io

import pytest
import torch
from torch import nn

from trainers.config import check_leaves
from trainers.lookahead import Lookahead
from trainers.loop import train
from trainers.optim import build_optimizer, build_schedule, lr_factor

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/trainers/conftest.py


def _cfg(name: str, **opt) -> dict:
    return {
        "lr": 0.01,
        "optimizer": {"name": name, "momentum": 0.9, "weight_decay": 1e-3, **opt},
        "schedule": {"name": "constant"},
        "epochs": 1,
    }


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(16, 2))


def _steps(model: nn.Module, opt: torch.optim.Optimizer, n: int, seed: int = 1) -> None:
    gen = torch.Generator().manual_seed(seed)
    for _ in range(n):
        x = torch.randn(8, 3, 4, 4, generator=gen)
        y = torch.randint(0, 2, (8,), generator=gen)
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()


@pytest.mark.parametrize(
    "name, cls",
    [("adadelta", torch.optim.Adadelta), ("radam", torch.optim.RAdam), ("ranger", Lookahead)],
)
def test_new_optimizers_are_torch_s(name, cls):
    opt = build_optimizer(_net().parameters(), _cfg(name))
    assert type(opt) is cls
    assert opt.param_groups[0]["lr"] == 0.01 and opt.param_groups[0]["weight_decay"] == 1e-3
    if name == "ranger":
        assert type(opt.base) is torch.optim.RAdam and opt.base.defaults["betas"] == (0.9, 0.999)


def test_ranger_is_radam_with_lookahead_every_six_steps():
    model, ref = _net(), _net()
    _steps(model, build_optimizer(model.parameters(), _cfg("ranger")), 13)
    # Reference: plain RAdam on the same batches; every 6th step the fast weights are pulled
    # half way back to the slow ones (the weights at the last sync), as Zhang et al. write it.
    radam = torch.optim.RAdam(ref.parameters(), lr=0.01, betas=(0.9, 0.999), weight_decay=1e-3)
    slow = [p.detach().clone() for p in ref.parameters()]
    gen = torch.Generator().manual_seed(1)
    for step in range(1, 14):
        x = torch.randn(8, 3, 4, 4, generator=gen)
        y = torch.randint(0, 2, (8,), generator=gen)
        radam.zero_grad()
        nn.functional.cross_entropy(ref(x), y).backward()
        radam.step()
        if step % 6 == 0:
            with torch.no_grad():
                for s, p in zip(slow, ref.parameters(), strict=True):
                    s.add_(0.5 * (p - s))
                    p.copy_(s)
    for a, b in zip(model.parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(a, b)


def test_ranger_resumes_exactly_from_its_state_dict():
    whole = _net()
    _steps(whole, build_optimizer(whole.parameters(), _cfg("ranger")), 10)
    first = _net()
    opt = build_optimizer(first.parameters(), _cfg("ranger"))
    _steps(first, opt, 4)
    buf = io.BytesIO()
    torch.save({"model": first.state_dict(), "opt": opt.state_dict()}, buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=False)
    again = _net()
    again.load_state_dict(state["model"])
    opt2 = build_optimizer(again.parameters(), _cfg("ranger"))
    opt2.load_state_dict(state["opt"])
    # the same batches as steps 5..10 of the whole run
    gen = torch.Generator().manual_seed(1)
    for _ in range(4):
        torch.randn(8, 3, 4, 4, generator=gen), torch.randint(0, 2, (8,), generator=gen)
    for _ in range(6):
        x = torch.randn(8, 3, 4, 4, generator=gen)
        y = torch.randint(0, 2, (8,), generator=gen)
        opt2.zero_grad()
        nn.functional.cross_entropy(again(x), y).backward()
        opt2.step()
    for a, b in zip(whole.parameters(), again.parameters(), strict=True):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("name", ["sgd", "adamw", "radam"])
def test_weight_decay_can_spare_biases_and_norms(name):
    model = _net()
    before = copy.deepcopy(model)
    opt = build_optimizer(model.parameters(), _cfg(name, weight_decay=0.5, decay_norm_bias=False))
    for p in model.parameters():
        p.grad = torch.zeros_like(p)  # only the decay moves a weight
    opt.step()
    for (n, a), b in zip(model.named_parameters(), before.parameters(), strict=True):
        if a.ndim <= 1:  # biases, BN scale and shift
            assert torch.equal(a, b), n
        else:
            assert a.abs().sum() < b.abs().sum(), n


def test_keras_time_based_decay():
    f = lr_factor({"name": "decay", "decay": 1e-3}, epochs=5, steps_per_epoch=100)
    for i in (0, 1, 99, 499):
        assert f(i) == pytest.approx(1 / (1 + 1e-3 * i))
    # warm-up first, then the decay counts iterations from its end
    f = lr_factor({"name": "decay", "decay": 0.1, "warmup_epochs": 1}, 3, 10)
    assert f(4) == pytest.approx(0.5) and f(10) == 1.0 and f(12) == pytest.approx(1 / 1.2)


@pytest.mark.parametrize("total", [20, 137])
def test_three_phase_onecycle_is_torch_s(total):
    model = nn.Linear(2, 2)
    ours = build_schedule(
        torch.optim.SGD(model.parameters(), lr=0.4),
        {"schedule": {"name": "onecycle", "three_phase": True}, "epochs": 1},
        steps_per_epoch=total,
    )
    opt = torch.optim.SGD(model.parameters(), lr=0.4)
    theirs = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=0.4, total_steps=total, three_phase=True, anneal_strategy="linear"
    )
    for _ in range(total - 1):
        assert ours.get_last_lr()[0] == pytest.approx(theirs.get_last_lr()[0], rel=1e-9)
        ours.optimizer.step(), ours.step(), opt.step(), theirs.step()


def test_the_new_names_and_keys_check():
    errors, _ = check_leaves(
        {
            "train.optimizer.name": "ranger",
            "train.optimizer.decay_norm_bias": False,
            "train.schedule.name": "decay",
            "train.schedule.decay": 3e-5,
            "train.schedule.three_phase": True,
            "dataset.preprocess": "raw",
        },
        "spec.yaml: ",
    )
    assert errors == []
    errors, _ = check_leaves({"train.schedule.decay": -1, "train.optimizer.name": "lamb"}, "")
    assert len(errors) == 2 and "choose from" in errors[1]


@pytest.mark.parametrize("name", ["adadelta", "ranger"])
def test_a_cell_trains_with_each(small_config, name):
    small_config["train"]["optimizer"].update(name=name, decay_norm_bias=False)
    small_config["train"]["schedule"].update(name="onecycle", three_phase=True)
    small_config["train"]["lr"] = 1.0 if name == "adadelta" else 0.01
    small_config["train"]["epochs"] = 3
    summary = train(small_config)
    losses = [h["train_loss"] for h in summary["history"]]
    assert summary["status"] == "completed" and losses[-1] < losses[0], losses
