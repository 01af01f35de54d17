"""The launch's Tune trainable: `GridSlot`, on Tune's public class API (`tune.Trainable`).

An actor of this class is a reusable slot (`reuse_actors=True`): it trains one unit (a cell,
or a pack of cells) per Tune trial, and Tune hands it the next trial with `reset_config`
instead of starting a process that imports torch again. Its lifecycle, in Tune's terms
(docs/design.md, "A trial's life"):

- `setup(config)` / `reset_config(config)`: the trial's unit (`config["cell"]`, its label;
  `config["unit"]`, its cells; `config["run"]`, what every trial of the launch needs: the
  trial's own config carries them, not `tune.with_parameters`, whose ObjectRefs outlived
  the launch in the driver); a log line names its cells. The previous unit, if Tune took
  it away before its end, is ended first (`_end`).
- `step()`: one epoch of the unit (`orchestrator/trial.UnitRun`). The first step reads each
  cell's checkpoint by key from the store (`results/store/checkpoints.py`), unless Tune restored
  a newer one. On the checkpoint cadence the step writes each cell's state there; the last
  step writes the rows and deletes the checkpoints. An attempt whose cells this launch has
  committed already (a worker killed after its commit, retried by Tune) ends at once. A
  GridError ends the trial with a `grid_error` result instead of an exception, so Tune does
  not retry it (`final`), except a store that could not be reached: an outage passes, and
  Tune retries that trial from its checkpoint (`max_failures`).
- `save_checkpoint(dir)` / `load_checkpoint(dir)`: Tune's own checkpoint (a scheduler's
  PAUSE saves one and the resumed trial loads it, on this actor or another).
- `cleanup()`: the actor ends; a unit still open is ended (`_end`).

`_end`: a unit that Tune took away before its end was paused or interrupted: nothing is
written (a paused trial resumes from Tune's checkpoint; an interrupted one from the store's).
Under either halving rule a loser is paused at its rung, then resumed: its first step finds
the decision and writes the cell as `stopped` from the restored state, training nothing
(`_written_stopped`): the row and its curves come from the same run, written by a step, never
by the clean-up (orchestrator/halving/scheduler.py).

The dashboard names an actor by its repr, read once when the actor starts (`_raylet.pyx`,
Ray 2.60): `GridSlot(<grid>)`. Which cell a slot trains now is in its log (a line per unit
and per epoch, `monitor.CellMetrics`) and in the `cell` tag of the grid's metrics.
"""

from __future__ import annotations

import json
import os

import pyarrow as pa
import pyarrow.parquet as pq
import ray
from ray import tune

from orchestrator.execution import checkpoints, monitor, trial
from orchestrator.spec.expand import Cell
from results.store import checkpoints as stored
from results.store import open_store
from results.store.base import StoreUnreachable
from trainers.errors import GridError

GRID_ERROR = "grid_error"  # a trial's last report when a user error ended it


class DataCache:
    """The data set this actor loaded last, keyed by its dataset section, device and seed
    (the seed draws the validation split): consecutive cells that share it load it once.
    One entry, so a slot holds one data set (CIFAR-10 on a GPU: ~0.7 GB) at a time."""

    def __init__(self):
        self.key, self.data = None, None

    def load(self, dataset_cfg: dict, device, seed: int):
        from trainers.data import load_data

        key = (json.dumps(dataset_cfg, sort_keys=True, default=str), str(device), seed)
        if key != self.key:
            self.key, self.data = None, None  # free the old one before loading the next
            self.data, self.key = load_data(dataset_cfg, device, seed), key
        return self.data


def final(error: GridError) -> bool:
    """Whether a trial's GridError ends its cells without a retry: the user's errors would
    fail the same way again (a missing object, a write refused under a lost lease); but a
    store that could not be reached (an S3 outage: found by the fault campaign,
    docs/reliability.md) is retried by Tune like any other transient failure."""
    return not isinstance(error, StoreUnreachable)


class GridSlot(tune.Trainable):
    """A reusable slot of the grid (module docstring)."""

    def setup(self, config: dict) -> None:
        run = self.run = config["run"]
        os.environ.update(run["env"])  # the test hooks, forwarded from the launch
        if not ray.get_gpu_ids():
            # Ray does not hide the GPUs from a trial that asked for none: without this,
            # every trial of a node with `train.device: auto` would share cuda:0.
            os.environ["CUDA_VISIBLE_DEVICES"] = ""
        self.store = open_store(run["store"])
        self.data = DataCache()
        self.grid = config["unit"][0]["grid"]
        self.shown = monitor.CellMetrics(self.grid)
        self.unit: trial.UnitRun | None = None
        self._start(config)

    def __repr__(self) -> str:
        return f"GridSlot({getattr(self, 'grid', '')})"

    def _start(self, config: dict) -> None:
        cells = [Cell.from_dict(d) for d in config["unit"]]
        self.cells, self.restored = cells, None
        self.newest_ok: dict[str, bool] = {}  # per cell: its newest checkpoint is whole
        self.shown.epochs = cells[0].config["train"]["epochs"]
        print(f"starts {monitor.unit_title(self.grid, cells)}", flush=True)
        self.unit = trial.UnitRun(
            cells,
            store=self.store,
            spec_sha256=self.run["sha256"],
            checkpoint=self._checkpoint,
            observe=self.shown.observe,
            halving=self.run.get("halving"),
            load=self.data.load,
            generation=self.run.get("generation"),
        )

    def reset_config(self, new_config: dict) -> bool:
        self._end()
        self._start(new_config)
        return True

    def step(self) -> dict:
        if self.unit.steps is None and self._committed_here():
            # a retry of a trial killed after its commit, before Tune heard it was done
            self._forget()
            epochs = self.cells[0].config["train"]["epochs"]
            return {"epoch": epochs, "cells": len(self.cells), "done": True}
        if self.unit.steps is None:
            resumes = self._resumes()
            if self._written_stopped(resumes):
                return {"epoch": self.unit.epoch_of(resumes), "done": True}
            self.unit.start(resumes)
            waits = self.unit.at_rung()  # judged at its rung before it trains past it
            if waits is not None:
                return waits
        try:
            result = self.unit.step()
        except GridError as e:  # written to the store as the cells' failure by the unit
            if not final(e):
                raise
            return {GRID_ERROR: " ".join(str(e).split()), "done": True}
        if result["done"]:  # the rows are committed: their checkpoints are of no more use
            self._forget()
        return result

    def _committed_here(self) -> bool:
        """Whether this launch (its lease generation) has committed every cell of the unit
        already: one GET of each row. Rows of earlier launches do not count (`--force`
        trains those again)."""
        generation = self.run.get("generation")
        if generation is None:
            return False
        for t in self.cells:
            found = self.store.read_tagged(f"{self.grid}/trials/{t.key}.parquet")
            if found is None:
                return False
            row = pq.read_table(pa.BufferReader(found[0]), columns=["generation"])
            if row.column("generation")[0].as_py() != generation:
                return False
        return True

    def _resumes(self) -> dict[str, dict]:
        """Each cell's newest state: Tune's (a resumed pause, a retry) or the store's, by
        key (an earlier attempt or launch); none: the cell starts from scratch."""
        found = dict(self.restored or {})
        for t in self.cells:
            state, self.newest_ok[t.key] = checkpoints.newest_state(self.store, self.grid, t.key)
            if state is not None and state["epoch"] >= found.get(t.key, {}).get("epoch", -1):
                found[t.key] = state
        return found

    def _written_stopped(self, resumes: dict[str, dict]) -> bool:
        """A halving's loser resumed from its pause at the rung (either rule): marks its
        state to be written as `stopped` by the first step, without training; True when its
        row is written already (its old actor ended the paused unit after the decision)."""
        if not self.run.get("halving") or len(self.cells) != 1:
            return False
        key = self.cells[0].key
        decision = self.store.read_stop(self.grid, key)
        if decision is None or resumes.get(key, {}).get("epoch", 0) < decision["rung"]:
            return False
        self.store.forget()  # this actor's reads are cached; another actor may have written
        if self.store.statuses(self.grid).get(key) == "stopped":
            self._forget()
            return True
        resumes[key] = {**resumes[key], "stopped": True}
        self.unit.stops[key] = decision
        return False

    def _checkpoint(self, metrics: dict, files: dict[str, bytes]) -> None:
        for key, data in files.items():
            self._write(key, data)

    def _write(self, key: str, data: bytes) -> None:
        """A cell's checkpoint to the store; the one it replaces is kept as the previous
        one, unless that is torn (then the previous one stays: `checkpoints.newest_state`)."""
        stored.write(self.store, self.grid, key, data, keep=self.newest_ok.get(key, False))
        self.newest_ok[key] = True

    def _forget(self) -> None:
        for t in self.cells:
            stored.delete(self.store, self.grid, t.key)

    def save_checkpoint(self, checkpoint_dir: str) -> str:
        # Tune saves one at a PAUSE (a halving's rung): the store gets it too, so a relaunch
        # after a kill resumes the waiting cell at its rung
        for key, data in self.unit.states().items():
            self._write(key, data)
            with open(os.path.join(checkpoint_dir, checkpoints.state_file(key)), "wb") as f:
                f.write(data)
        return checkpoint_dir

    def load_checkpoint(self, checkpoint_dir: str) -> None:
        self.restored = checkpoints.load_states(checkpoint_dir, [t.key for t in self.cells])
        self.unit.close()
        self.unit.steps = None  # the next step starts again from the restored states

    def cleanup(self) -> None:
        self._end()

    def _end(self) -> None:
        """End the unit Tune took away before its last epoch (module docstring): nothing is
        written (a halving's loser is paused, then resumed to write itself as stopped,
        `_written_stopped`)."""
        unit, self.unit = self.unit, None
        if unit is not None and not unit.done and unit.steps is not None:
            unit.close()
