"""The halving's test grid, shared by test_halving.py and test_halving_sync.py: 2 activations
(two table rows) x 6 lrs x 8 epochs, rungs [2, 4], keep 0.5, and helpers to read its runs."""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from orchestrator.spec.load import load_spec
from results.store import open_store
from results.tables.build import build_tables

HALVING = {"over": "lr", "metric": "val_acc", "rungs": [2, 4], "keep": 0.5}
GRID = {"activation": ["relu", "elu"], "lr": [0.1, 0.05, 0.02, 0.01, 0.005, 0.002]}
# Batch norm and 256 images: the lrs rank the same at the rungs as at the end (the lower
# the lr, the slower it learns in 8 epochs), as a table row's lrs usually do. The rows are
# two activations of the cheapest All-CNN variant (strided_a), not two archs: the Ray tests
# launch this grid five times. Validation and test every 4 epochs (and at the rungs, which
# add themselves to eval_epochs): evaluation was most of an epoch. A checkpoint every epoch
# (checkpoint_s 0), which the kill test resumes from.
SIX_LRS = {
    "dataset": {"name": "synthetic", "subset": 256, "val_size": 256, "augment": []},
    "model": {
        "arch": "strided_a",
        "width": 0.25,
        "dropout": 0.0,
        "input_dropout": 0.0,
        "batch_norm": True,
    },
    "train": {
        "epochs": 8,
        "batch_size": 64,
        "lr": 0.05,
        "checkpoint_s": 0,
        "eval_every": 4,
        "schedule": {"name": "constant"},
    },
    "grid": GRID,
    "resources": {"cpu": 1, "gpu": 0},
    "max_failures": 1,
    "tables": [
        {
            "name": "t",
            "rows": "activation",
            "metric": "test_acc",
            "best_by": "val_acc",
            "over": "lr",
        }
    ],
}


def six_lrs(folder, name: str, **changes):
    """The 2 x 6 grid, row by row (arch, then lr: the order its trials run in)."""
    path = folder / name / f"{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({"name": name, **SIX_LRS, **changes}, sort_keys=False))
    return load_spec(path)


def trained_epochs(store, grid: str) -> int:
    return open_store(str(store)).read_epochs(grid).num_rows


def picks(spec, store) -> dict:
    trials = open_store(str(store)).read_trials(spec.name).to_pylist()
    (data,) = build_tables(spec, trials)
    return {row: cell.pick for (row, _), cell in data.cells.items()}


def copy_store(src, dest, keys=None):
    """A copy of a grid's results (only `keys`' files, when given), without Tune's state."""

    def ignore(folder, names):
        return {
            n
            for n in names
            if n in ("_tune", "_lease.json")
            or n.endswith(".lock")
            or (
                keys is not None
                and n.endswith((".parquet", ".json"))
                and n.split(".")[0] not in keys
                and Path(folder).name not in keys  # epochs/<key>/<run_id>.parquet
            )
        }

    shutil.copytree(src, dest, ignore=ignore)
