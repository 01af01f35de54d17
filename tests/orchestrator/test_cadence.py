"""Checkpoint and evaluation cadences in a trial, without Ray: which epochs carry a
checkpoint, how `eval_every: auto` is settled from the tables, and a retry from a sparse
checkpoint that redoes epochs without duplicating a row or changing a number."""

from __future__ import annotations

from orchestrator.execution import checkpoints, trial
from orchestrator.spec.expand import expand
from results.store import open_store

TIMES = ("epoch_s", "images_per_s", "epoch_wall_s")


def _epochs(store_dir, grid: str) -> list[dict]:
    rows = open_store(str(store_dir)).read_epochs(grid).to_pylist()
    return sorted(
        ({k: v for k, v in r.items() if k not in (*TIMES, "run_id")} for r in rows),
        key=lambda r: r["epoch"],
    )


def test_a_sparse_cadence_checkpoints_every_n_epochs_and_after_the_last(tiny_spec, tmp_path):
    trials = expand(
        tiny_spec(
            "sparse", [0.05], train={"epochs": 3, "checkpoint_every": 2, "checkpoint_s": 3600}
        )
    )
    calls = []
    trial.run_unit(
        trials,
        store_uri=str(tmp_path / "runs"),
        spec_sha256="x",
        checkpoint=lambda m, files: calls.append((m["epoch"], sorted(files))),
    )
    ckpt = [trials[0].key]
    # Tune hears every epoch; the files come at epoch 2 (N = 2) and 3 (the last).
    assert calls == [(1, []), (2, ckpt), (3, ckpt)]


def test_each_report_says_the_epoch_a_relaunch_would_resume_from(tiny_spec, tmp_path):
    """What an interrupted launch tells of each cell (orchestrator/execution/launch.py)."""
    cells = expand(
        tiny_spec("said", [0.05], train={"epochs": 3, "checkpoint_every": 2, "checkpoint_s": 3600})
    )
    unit = trial.UnitRun(cells, store=open_store(str(tmp_path / "runs")), spec_sha256="x")
    unit.start()
    reports = [unit.step() for _ in range(3)]
    assert [(r["epoch"], r["checkpoint_epoch"]) for r in reports] == [(1, 0), (2, 2), (3, 3)]


def test_a_retry_from_an_older_checkpoint_redoes_epochs_without_duplicates(tiny_spec, tmp_path):
    spec = tiny_spec(
        "retry", [0.05, 0.1], train={"epochs": 3, "checkpoint_every": 2, "checkpoint_s": 3600}
    )
    trials = expand(spec)
    files = {}
    trial.run_unit(
        trials,
        store_uri=str(tmp_path / "full"),
        spec_sha256="x",
        checkpoint=lambda m, f: files.update({m["epoch"]: f} if f else {}),
    )
    assert sorted(files) == [2, 3]  # the pack checkpoints both cells together
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    for key, data in files[2].items():
        (ckpt / checkpoints.state_file(key)).write_bytes(data)
    resumes = checkpoints.load_states(ckpt, [t.key for t in trials])
    assert {s["epoch"] for s in resumes.values()} == {2}
    # The attempt that died after epoch 2's checkpoint reruns epoch 3 only.
    trial.run_unit(trials, store_uri=str(tmp_path / "retry"), spec_sha256="x", resumes=resumes)
    full, retry = _epochs(tmp_path / "full", "retry"), _epochs(tmp_path / "retry", "retry")
    assert [(r["key"], r["epoch"]) for r in retry] == [(r["key"], r["epoch"]) for r in full]
    assert len({(r["key"], r["epoch"]) for r in retry}) == 6  # 2 cells x 3 epochs, once each
    assert retry == full  # the same numbers, epoch by epoch


def test_eval_every_auto_follows_the_tables(tiny_spec):
    final = {"rows": "lr", "metric": "test_acc", "at": "final"}
    best = {**final, "at": "best", "name": "best"}
    epochs = {"epochs": 100}
    settled = [
        expand(tiny_spec(name, [0.05], train=epochs, tables=tables))[0]
        for name, tables in (("final", [final]), ("best", [final, best]), ("none", []))
    ]
    assert [t.config["train"]["eval_every"] for t in settled] == [5, 1, 5]
    assert len({t.key for t in settled}) == 1  # a cadence is not part of the key
    fixed = expand(tiny_spec("fixed", [0.05], train={**epochs, "eval_every": 7}, tables=[best]))[0]
    assert fixed.config["train"]["eval_every"] == 7
