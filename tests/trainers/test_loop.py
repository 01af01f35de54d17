"""The training loop: it learns, resumes exactly, stops on divergence; optimizers and the
per-step learning-rate schedules."""

from __future__ import annotations

import io
import math

import pytest
import torch

from trainers.loop import METRIC_KEYS, train
from trainers.optim import build_optimizer, build_schedule, lr_factor

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/trainers/conftest.py


def _snapshot(state: dict) -> dict:
    """What a real caller does with the live state: serialise it at once."""
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=False)


def _timeless(history: list[dict]) -> list[dict]:
    return [
        {k: v for k, v in h.items() if k not in ("epoch_s", "images_per_s", "epoch_wall_s")}
        for h in history
    ]


# ---------------------------------------------------------------- end to end


def test_synthetic_run_learns_and_reports_every_epoch(small_config):
    small_config["train"]["epochs"] = 3
    small_config["dataset"]["val_size"] = 100
    seen = []
    summary = train(small_config, report=lambda m, s: seen.append((m, s["epoch"])))
    assert summary["status"] == "completed" and summary["epochs"] == 3
    assert [m["epoch"] for m, _ in seen] == [1, 2, 3] and [e for _, e in seen] == [1, 2, 3]
    assert all(set(m) == set(METRIC_KEYS) for m, _ in seen)
    assert summary["final"] == summary["history"][-1]
    # The report is sent before its own time is known; the history then has it.
    assert seen[-1][0] == {**summary["final"], "epoch_wall_s": None}
    assert all(h["epoch_wall_s"] >= h["epoch_s"] > 0 for h in summary["history"])
    assert summary["best"]["val_acc"] == max(h["val_acc"] for h in summary["history"])
    assert summary["params"] > 0 and summary["device"] == "cpu" and summary["wall_s"] > 0
    # Chance is 0.1: the pipeline (data, init, optimiser, schedule) really learns.
    assert summary["final"]["test_acc"] >= 0.5
    assert 0 <= summary["final"]["train_acc"] <= 1 and summary["final"]["train_loss"] < math.log(10)


def test_trains_from_a_cifar_folder_with_lsuv_and_cutout(fake_cifar10, small_config):
    root, _ = fake_cifar10
    small_config["dataset"].update(
        name="cifar10", root=str(root), val_size=50, subset=None, augment=["crop", "cutout", "flip"]
    )
    small_config["model"].update(init="lsuv")
    small_config["train"].update(epochs=1, batch_size=25)
    summary = train(small_config)
    final = summary["final"]
    assert summary["status"] == "completed" and summary["epochs"] == 1
    assert final["val_acc"] is not None and all(
        math.isfinite(final[k]) for k in ("train_loss", "val_loss", "test_loss")
    )
    assert summary["best"]["epoch"] == 1 and final["images_per_s"] > 0


def test_bf16_channels_last_path_runs_on_cpu(small_config):
    small_config["dataset"]["subset"] = 100
    small_config["train"].update(epochs=1, precision="bf16", channels_last=True)
    summary = train(small_config)
    assert summary["status"] == "completed" and math.isfinite(summary["final"]["train_loss"])


def test_resume_reproduces_the_uninterrupted_run(small_config):
    cfg = small_config
    cfg["dataset"].update(subset=150, val_size=50, augment=["crop", "cutout", "flip"])
    cfg["model"].update(dropout=0.3)  # dropout and augmentation: both RNG streams matter
    cfg["train"].update(
        epochs=3, schedule={"name": "cosine", "milestones": [], "gamma": 0.1, "warmup_epochs": 1}
    )
    states = []
    full = train(cfg, report=lambda m, s: states.append(_snapshot(s)))
    assert states[0]["epoch"] == 1 and len(states[0]["history"]) == 1
    resumed_seen = []
    resumed = train(cfg, report=lambda m, s: resumed_seen.append(m), resume=states[0])
    assert [m["epoch"] for m in resumed_seen] == [2, 3]
    assert _timeless(resumed["history"]) == _timeless(full["history"])
    assert resumed["status"] == "completed" and resumed["epochs"] == 3


def test_resume_from_the_last_epoch_trains_nothing(small_config):
    small_config["dataset"]["subset"] = 100
    small_config["train"]["epochs"] = 1
    states = []
    train(small_config, report=lambda m, s: states.append(_snapshot(s)))
    calls = []
    again = train(small_config, report=lambda m, s: calls.append(m), resume=states[-1])
    assert calls == [] and again["epochs"] == 1 and again["status"] == "completed"


def test_a_state_resumed_as_stopped_trains_nothing_and_ends_stopped(small_config):
    """A halving's loser, paused at its rung, is written from its state (docs/spec.md#halving)."""
    small_config["dataset"]["subset"] = 100
    small_config["train"]["epochs"] = 3
    states = []
    train(small_config, report=lambda m, s: states.append(_snapshot(s)))
    calls = []
    resume = {**states[0], "stopped": True}
    out = train(small_config, report=lambda m, s: calls.append(m), resume=resume)
    assert calls == [] and (out["status"], out["epochs"]) == ("stopped", 1)
    assert _timeless(out["history"]) == _timeless(states[0]["history"])


def test_huge_lr_diverges_and_stops_early(small_config):
    small_config["model"]["batch_norm"] = False
    small_config["dataset"]["subset"] = 200
    small_config["train"].update(lr=1e6, epochs=4)
    summary = train(small_config)
    assert summary["status"] == "diverged" and summary["epochs"] < 4
    assert not math.isfinite(summary["final"]["train_loss"])


def test_injected_nan_stops_at_that_epoch(small_config):
    small_config["dataset"]["subset"] = 100
    small_config["train"]["epochs"] = 4

    def poison(metrics, state):
        if metrics["epoch"] == 1:  # the state holds the live weights: poison the model
            for t in state["model"].values():
                if t.is_floating_point():
                    t.fill_(float("nan"))

    summary = train(small_config, report=poison)
    assert summary["status"] == "diverged" and summary["epochs"] == 2
    assert math.isfinite(summary["history"][0]["train_loss"])


# ---------------------------------------------------------------- optimizers


def _train_cfg(**kw) -> dict:
    cfg = {
        "epochs": 10,
        "lr": 0.1,
        "optimizer": {"name": "sgd", "momentum": 0.9, "nesterov": True, "weight_decay": 1e-3},
        "schedule": {"name": "constant", "milestones": [], "gamma": 0.1, "warmup_epochs": 0},
    }
    cfg.update(kw)
    return cfg


@pytest.mark.parametrize(
    "name, cls",
    [("sgd", torch.optim.SGD), ("adam", torch.optim.Adam), ("adamw", torch.optim.AdamW)],
)
def test_build_optimizer(name, cls):
    params = [torch.nn.Parameter(torch.ones(3))]
    opt = build_optimizer(
        params,
        _train_cfg(
            optimizer={"name": name, "momentum": 0.9, "nesterov": True, "weight_decay": 1e-3}
        ),
    )
    group = opt.param_groups[0]
    assert type(opt) is cls and group["lr"] == 0.1 and group["weight_decay"] == 1e-3
    if name == "sgd":
        assert group["momentum"] == 0.9 and group["nesterov"] is True


# ---------------------------------------------------------------- schedules


def _sched(name: str, **kw) -> dict:
    return {"name": name, "milestones": [], "gamma": 0.1, "warmup_epochs": 0, **kw}


def test_multistep_drops_at_milestone_epochs():
    f = lr_factor(_sched("multistep", milestones=[2, 4], gamma=0.1), epochs=6, steps_per_epoch=10)
    assert [f(s) for s in (0, 19)] == [1.0, 1.0]
    assert f(20) == pytest.approx(0.1) and f(39) == pytest.approx(0.1)
    assert f(40) == pytest.approx(0.01) and f(59) == pytest.approx(0.01)


def test_cosine_goes_from_one_through_half_to_zero():
    f = lr_factor(_sched("cosine"), epochs=10, steps_per_epoch=10)
    assert f(0) == 1.0 and f(50) == pytest.approx(0.5) and f(100) == pytest.approx(0.0)
    assert all(f(s) >= f(s + 1) for s in range(100))


def test_onecycle_ramps_up_then_down():
    f = lr_factor(_sched("onecycle"), epochs=10, steps_per_epoch=10)
    assert f(0) == pytest.approx(1 / 25) and f(30) == pytest.approx(1.0)
    assert f(65) == pytest.approx(0.5) and f(100) == pytest.approx(0.0)


def test_constant_and_linear_warmup():
    assert lr_factor(_sched("constant"), 5, 10)(37) == 1.0
    f = lr_factor(
        _sched("multistep", milestones=[3], warmup_epochs=2), epochs=5, steps_per_epoch=10
    )
    assert f(0) == pytest.approx(1 / 20) and f(9) == pytest.approx(0.5) and f(19) == 1.0
    assert f(20) == 1.0 and f(30) == pytest.approx(0.1)
    g = lr_factor(_sched("cosine", warmup_epochs=1), epochs=3, steps_per_epoch=10)
    assert g(9) == 1.0 and g(10) == 1.0 and g(20) == pytest.approx(0.5)


def test_build_schedule_sets_the_optimizer_lr_per_step():
    opt = build_optimizer(
        [torch.nn.Parameter(torch.ones(1))],
        _train_cfg(schedule=_sched("multistep", milestones=[1])),
    )
    sched = build_schedule(
        opt, _train_cfg(epochs=2, schedule=_sched("multistep", milestones=[1])), steps_per_epoch=3
    )
    lrs = []
    for _ in range(6):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([0.1, 0.1, 0.1, 0.01, 0.01, 0.01])


def test_unknown_names_and_nesterov_without_momentum():
    from trainers.errors import GridError

    params = [torch.nn.Parameter(torch.ones(1))]
    with pytest.raises(GridError, match="train.optimizer.name"):
        build_optimizer(
            params,
            _train_cfg(
                optimizer={"name": "lamb", "momentum": 0.9, "nesterov": False, "weight_decay": 0}
            ),
        )
    with pytest.raises(GridError, match="train.schedule.name"):
        lr_factor(_sched("linear"), epochs=2, steps_per_epoch=3)
    opt = build_optimizer(
        params,
        _train_cfg(optimizer={"name": "sgd", "momentum": 0.0, "nesterov": True, "weight_decay": 0}),
    )
    assert opt.param_groups[0]["nesterov"] is False  # the same maths as plain SGD
    adam = build_optimizer(
        params,
        _train_cfg(
            optimizer={"name": "adam", "momentum": 0.8, "nesterov": False, "weight_decay": 0}
        ),
    )
    assert adam.param_groups[0]["betas"] == (0.8, 0.999)  # momentum is Adam's beta1


def test_weights_blown_up_by_the_last_step_count_as_diverged(small_config, monkeypatch):
    # The final epoch's train loss is averaged before each update, so it can be finite while
    # the last update left NaN weights: the eval losses catch that.
    import trainers.loop as loop

    small_config["dataset"]["subset"] = 100
    small_config["train"]["epochs"] = 1
    real_evaluate = loop.evaluate

    def evaluate_after_poison(model, *a, **k):
        for p in model.parameters():
            p.data.fill_(float("nan"))
        return real_evaluate(model, *a, **k)

    monkeypatch.setattr(loop, "evaluate", evaluate_after_poison)
    summary = train(small_config)
    assert math.isfinite(summary["final"]["train_loss"])
    assert summary["status"] == "diverged" and summary["epochs"] == 1
