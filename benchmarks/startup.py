"""Start-up cost per trial of `grid launch`: what a trial costs beyond its training, and the
whole launch against its summed training time, on a local Ray.

Two measures, both from one in-process `orchestrator.execution.launch.launch`:
- per trial: the launch's Tune callback (`experiment.TuneProgress.on_trial_complete`) is
  timed in the driver. With one slot (`--slots 1`) trials run one after another, so trial
  i costs `complete_i - complete_(i-1)`; minus its training (`wall_s` of its row, which
  includes building the model and loading the data) that is its start-up: Tune's
  scheduling, the actor (a new process that imports torch, or a reused one), reading the
  checkpoint, writing the rows. The median and the 90th percentile are printed.
- the launch: wall time from the call to its return, Ray's start (to the launch's
  "running N cells" line), and the summed `wall_s` of the rows.

The same script runs on older checkouts (it uses only `launch.launch` and that callback):
`PYTHONPATH=<checkout> python benchmarks/startup.py ...`.

    python benchmarks/startup.py --cells 500 --slots 1          # tiny synthetic cells
    python benchmarks/startup.py --spec grids/allcnn_table.yaml --smoke \\
        --set dataset.name=synthetic                             # the 48-cell smoke grid
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import tempfile
import time
from pathlib import Path

import yaml
from rich.console import Console

# A tiny cell: 64 synthetic images, one epoch of a quarter-width strided All-CNN-A.
TINY = {
    "dataset": {"name": "synthetic", "subset": 64, "val_size": 0, "augment": []},
    "model": {"arch": "strided_a", "width": 0.25, "dropout": 0.0, "input_dropout": 0.0},
    "train": {"epochs": 1, "batch_size": 64, "schedule": {"name": "constant"}},
    "resources": {"cpu": 1, "gpu": 0},
}


def tiny_spec(folder: Path, cells: int) -> Path:
    """A grid of `cells` tiny cells (one lr axis: distinct keys, identical work)."""
    lrs = [round(0.01 + i * 1e-4, 6) for i in range(cells)]
    doc = {"name": "startup", **TINY, "grid": {"lr": lrs}}
    path = folder / "startup.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def measure(spec_path: str, overrides: list[str], smoke: bool, slots: int | None) -> dict:
    from orchestrator.execution import experiment, launch
    from orchestrator.spec.load import load_spec
    from results.store import open_store

    spec = load_spec(spec_path, overrides)
    if smoke:
        from orchestrator.spec.load import smoke as smoke_of

        spec = smoke_of(spec)
    done: list[tuple[float, str]] = []
    real = experiment.TuneProgress.on_trial_complete

    def timed(self, iteration, trials, trial, **info):
        done.append((time.perf_counter(), trial.config["cell"]))
        return real(self, iteration, trials, trial, **info)

    experiment.TuneProgress.on_trial_complete = timed

    class Stamped(io.StringIO):  # the time the launch says it starts the trials
        ray_up: float | None = None

        def write(self, s):
            if Stamped.ray_up is None and "Tune trials" in s:
                Stamped.ray_up = time.perf_counter()
            return super().write(s)

    with tempfile.TemporaryDirectory(prefix="grid-startup-") as store:
        t0 = time.perf_counter()
        rc = launch.launch(
            spec,
            store_uri=store,
            max_concurrent=slots,
            console=Console(file=Stamped(), width=200, color_system=None),
        )
        t1 = time.perf_counter()
        rows = open_store(store).read_trials(spec.name).to_pylist()
    wall = {r["key"]: float(r["wall_s"] or 0.0) for r in rows}
    out = {
        "rc": rc,
        "cells": len(rows),
        "completed": sum(r["status"] == "completed" for r in rows),
        "launch_s": round(t1 - t0, 1),
        "ray_start_s": round((Stamped.ray_up or t0) - t0, 1),
        "trials_s": round(t1 - (Stamped.ray_up or t0), 1),
        "summed_training_s": round(sum(wall.values()), 1),
        "slots": slots,
    }
    if slots == 1 and len(done) > 1:
        costs = []
        for (before, _), (now, label) in zip(done, done[1:], strict=False):
            costs.append(now - before - wall.get(label, 0.0))
        costs.sort()
        out["startup_per_trial_median_s"] = round(statistics.median(costs), 2)
        out["startup_per_trial_p90_s"] = round(costs[int(0.9 * (len(costs) - 1))], 2)
        out["training_per_trial_median_s"] = round(statistics.median(wall.values()), 2)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--spec", help="a grid spec (default: --cells tiny synthetic cells)")
    ap.add_argument("--set", action="append", default=[], dest="overrides")
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--cells", type=int, default=500)
    ap.add_argument("--slots", type=int, default=None, help="--max-concurrent (default: all)")
    ap.add_argument("--json", help="also write the result here")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="grid-startup-spec-") as folder:
        spec = args.spec or str(tiny_spec(Path(folder), args.cells))
        result = measure(spec, args.overrides, args.smoke, args.slots)
    print(json.dumps(result, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
