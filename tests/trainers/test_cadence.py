"""The evaluation cadence in the loop, and the checkpoint cadence's rule."""

from __future__ import annotations

from trainers.cadence import CheckpointCadence, eval_every, evaluates
from trainers.loop import train


def test_eval_every_k_epochs_keeps_the_final_metrics(small_config):
    small_config["dataset"].update(subset=100, val_size=50)
    small_config["train"]["epochs"] = 3
    every = train(small_config)
    small_config["train"]["eval_every"] = 2
    sparse = train(small_config)
    evaluated = [h["epoch"] for h in sparse["history"] if h["val_acc"] is not None]
    assert evaluated == [2, 3]  # every 2nd epoch and the last
    assert [h["test_acc"] is not None for h in sparse["history"]] == [False, True, True]
    drop = ("epoch_s", "images_per_s", "epoch_wall_s")
    same = lambda h: {k: v for k, v in h.items() if k not in drop}  # noqa: E731
    assert same(sparse["final"]) == same(every["final"])  # training is untouched
    assert [h["train_loss"] for h in sparse["history"]] == [
        h["train_loss"] for h in every["history"]
    ]
    assert sparse["best"]["epoch"] in evaluated


def test_eval_every_auto_and_the_last_epoch():
    assert eval_every("auto", 350, uses_best=True) == 1
    assert eval_every("auto", 350, uses_best=False) == 18  # 20 points on a learning curve
    assert eval_every("auto", 3, uses_best=False) == 1
    assert eval_every(4, 350, uses_best=True) == 4
    cfg = {"epochs": 10, "eval_every": 4}
    assert [e for e in range(1, 11) if evaluates(e, cfg)] == [4, 8, 10]
    assert all(evaluates(e, {"epochs": 10, "eval_every": "auto"}) for e in range(1, 11))


def test_checkpoint_cadence_by_epochs_by_seconds_and_always_at_the_end():
    now = [0.0]
    by_time = CheckpointCadence(
        {"checkpoint_every": None, "checkpoint_s": 60.0}, clock=lambda: now[0]
    )
    now[0] = 59.0
    assert not by_time.due(1, final=False)
    now[0] = 60.0
    assert by_time.due(2, final=False)
    by_time.done(2)
    now[0] = 61.0
    assert not by_time.due(3, final=False) and by_time.due(3, final=True)
    by_epochs = CheckpointCadence(
        {"checkpoint_every": 3, "checkpoint_s": 1e9}, clock=lambda: 0.0, start_epoch=2
    )
    assert [e for e in range(3, 9) if by_epochs.due(e, False) and not by_epochs.done(e)] == [5, 8]
    every = CheckpointCadence({"checkpoint_every": None, "checkpoint_s": 0})
    assert every.due(1, final=False)
