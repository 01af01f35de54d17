"""The benchmarks' own specs stay valid as the spec language grows stricter (benchmarks/scale.py
was refused by the seeds check of the halving for a release before anyone ran it)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from orchestrator.spec.expand import expand
from orchestrator.spec.load import load_spec

ROOT = Path(__file__).resolve().parents[1]


def test_the_scale_benchmarks_spec_loads_and_expands_to_n_cells(tmp_path):
    found = importlib.util.spec_from_file_location("scale", ROOT / "benchmarks" / "scale.py")
    scale = importlib.util.module_from_spec(found)
    found.loader.exec_module(scale)
    path = tmp_path / "scale.yaml"
    path.write_text(scale.spec_text("scale", 1000))
    spec = load_spec(str(path))
    assert len(expand(spec)) == 1000 and spec.halving["over"] == ["train.lr"]


def _gpu_table():
    from benchmarks import gpu_table

    return gpu_table


def test_gpu_tables_launches_are_valid_specs_on_a_gpu_and_on_a_cpu(tmp_path):
    # a --set the spec refuses would cost a GPU session its table part: found here instead
    gpu_table = _gpu_table()
    for argv, per_gpu, cells in ((["out"], 8, 12), (["out", "--cpu"], 2, 2)):
        args = gpu_table.parse_args(argv)
        for captured in (True, False):
            sets = gpu_table.overrides(args, tmp_path, per_gpu, captured)
            spec = load_spec(gpu_table.SPEC, [*sets, "lr=[0.01]", "train.epochs=2"])
            got = expand(spec)
            assert len(got) == cells and {c.config["train"]["compile"] for c in got} == {captured}
            assert spec.resources["gpu"] == (0 if args.cpu else 1 / per_gpu)


def test_gpu_table_figures_come_from_the_rows_and_curves_in_the_store(tmp_path):
    from datetime import datetime, timedelta, timezone

    from results.store import open_store
    from results.store.schema import epoch_rows, provenance, trial_row

    gpu_table = _gpu_table()
    args = gpu_table.parse_args([str(tmp_path), "--cpu", "--epochs", "2"])
    sets = gpu_table.overrides(args, tmp_path, 2, True)
    cells = expand(load_spec(gpu_table.SPEC, [*sets, "lr=[0.01]", "train.epochs=2"]))
    images = gpu_table.trained_images(cells[0].config)  # full batches of the 1,000 trained
    assert images == 896
    store = open_store(str(tmp_path / "store"))
    t0 = datetime(2026, 12, 7, tzinfo=timezone.utc)
    # two cells side by side over 100 s: 10 s to start, a first epoch of 60 s (the compile),
    # then one of 30 s: 20 s of training, 5 s of evaluation, 5 s of report
    for cell in cells:
        history = [
            {"epoch": 1, "val_acc": 0.5, "epoch_s": 55, "images_per_s": 100, "epoch_wall_s": 60},
            {"epoch": 2, "val_acc": 0.5, "epoch_s": 25, "images_per_s": images / 20,
             "epoch_wall_s": 30},
        ]  # fmt: skip
        summary = {"status": "completed", "epochs": 2, "wall_s": 100.0, "history": history}
        prov = provenance("0" * 64, t0, t0 + timedelta(seconds=100), "cpu")
        row = trial_row(cell, summary, prov)
        store.write_trial(cell.grid, cell.key, row, epoch_rows(cell, history))
    got = gpu_table.figures(args, tmp_path / "store", sets, per_gpu=2)
    assert got["completed"] == got["cells"] == 2 and got["span_s"] == 100
    assert got["cells_per_hour"] == 2 / 100 * 3600 and got["fewer_peers"] == 0
    assert got["images_per_s_per_gpu"] == 2 * 2 * images / 100
    # each cell at the table's 350 epochs: 10 s, then 350 x (20 s + 5 s of report) and the
    # table's 20 evaluations of 5 s (every 18th epoch and the last: not every epoch, as in
    # the 2-epoch launch); each architecture's 4 lrs; 2 at once
    assert got["table_h"] == pytest.approx(4 * 2 * (10 + 350 * 25 + 20 * 5) / 2 / 3600)
    # a third cell in a second wave: its last epoch ran alone, where the setting says 2
    late = {
        "started": (t0 + timedelta(seconds=100)).isoformat(),
        "ended": (t0 + timedelta(seconds=160)).isoformat(),
    }
    rows = [{"started": t0.isoformat(), "ended": (t0 + timedelta(seconds=100)).isoformat()}] * 2
    assert gpu_table.peers([*rows, late], rows[0], {"epoch_wall_s": 30}) == 2
    assert gpu_table.peers([*rows, late], late, {"epoch_wall_s": 30}) == 1
    # the next launch, at 1 trial at a time, takes twice the waves of this one
    ran = [{**got, "per_gpu": 2, "launch_s": 120.0}]
    assert gpu_table.expected_s(ran, 1, cells=2) == 240.0
