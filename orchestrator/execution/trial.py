"""What runs inside one Tune trial, without Ray: a unit's training stepped an epoch at a time,
its checkpoints through a callback, and the result rows it writes to the store itself
(`orchestrator/execution/units.py` picks the cells and groups them into trials).

A unit is one cell, or a pack of cells trained as one model (`resources.pack`). `UnitRun`
steps the trainer's epoch generator (`trainers.loop.epochs`, `trainers.pack.packed_epochs`):
`orchestrator/execution/slot.py`'s Tune trainable calls `step()` once per Tune iteration. After each
epoch of the unit it calls `checkpoint(metrics, files)`, with each cell's serialised state
in `files` on the epochs the cadence picks (`trainers/cadence.py`), and empty otherwise. A
retry redoes the epochs after the last checkpoint from its history, so the rows hold each
epoch once. Under a halving, each step's metrics carry the cell's scores at the rungs it has
passed (`rungs`); a cell the halving stops is ended with `stop(decision)` and written as
`stopped`. `run_unit` steps a unit to its end in one call (tests, benchmarks).

The trial writes its own rows (completed, diverged or stopped; a failure with its error in
its own place, `Store.write_failure`) so that no result depends on the driver surviving and
no failed attempt ever replaces a finished result. A user error (`GridError`: missing data,
say) fails the cell with its one-line message and is not retried: it would fail the same way
again. A checkpoint that does not fit the cell (`CheckpointError`) is discarded with a
warning and the unit starts over.

Test hooks (`orchestrator/execution/hooks.py`) are called through their seams, `hooks.at_epoch`,
`hooks.in_step` and `hooks.committed`.
"""

from __future__ import annotations

import inspect
import traceback
from collections.abc import Callable, Generator
from datetime import datetime, timezone

from orchestrator.execution import hooks
from orchestrator.execution.checkpoints import discard, load_state, serialise
from orchestrator.spec.expand import Cell
from trainers.errors import GridError

ERROR_FRAMES = 3  # frames of the traceback kept in a failed row: where, without the noise

# (metrics, {cell key: state bytes}) -> None, or the halving's decision that stopped the unit
Checkpoint = Callable[[dict, dict[str, bytes]], "dict | None"]
Observe = Callable[[str, dict], None]  # (cell key, its epoch's metrics): logs and metrics


def error_text(exc: BaseException) -> str:
    """`Type: message` on one line, then the last frames of the traceback; a user error
    (GridError) is its message alone."""
    message = " ".join(str(exc).split())
    if isinstance(exc, GridError):
        return message
    head = f"{type(exc).__name__}: {message}".rstrip(": ")
    frames = traceback.format_tb(exc.__traceback__)[-ERROR_FRAMES:]
    return head + ("\n" + "".join(frames).rstrip() if frames else "")


def diverged(metrics: dict) -> bool:
    """A NaN/inf loss in an epoch's metrics (the trainers stop such a cell)."""
    from trainers.summary import diverged as rule  # torch-free: the trainers' one rule

    return rule(metrics)


class UnitRun:
    """One unit's training, an epoch per `step()`: `start(resumes)`, then `step()` until
    its metrics say `done` (the rows are then written), or `stop(decision)` (the halving),
    or `close()` (Tune took the trial away: a pause, the end of the launch). `states()` is
    every cell's state now, serialised (Tune's `save_checkpoint`)."""

    def __init__(
        self,
        cells: list[Cell],
        *,
        store,
        spec_sha256: str,
        checkpoint: Checkpoint | None = None,
        observe: Observe | None = None,
        halving: dict | None = None,
        load=None,
        generation: int | None = None,
    ):
        self.cells, self.store, self.sha = cells, store, spec_sha256
        # the launch's lease generation, which every row carries: the store refuses a row
        # of a launch that lost its lease (results/store/lease.py)
        self.generation = generation
        self.checkpoint = checkpoint or (lambda metrics, files: None)
        self.observe, self.halving, self.load = observe, halving, load
        self.steps: Generator | None = None
        self.done = False
        self.stops: dict[str, dict] = {}  # the halving's decision, for each cell it stopped

    def start(self, resumes: dict[str, dict] | None = None) -> None:
        """Set the unit up to train from `resumes` ({cell key: trainer state}); nothing is
        built until the first step."""
        from trainers.cadence import CheckpointCadence

        cells, resumes = self.cells, dict(resumes or {})
        self.resumes, self.started = resumes, datetime.now(timezone.utc)
        self.epoch = {t.key: int(resumes.get(t.key, {}).get("epoch", 0)) for t in cells}
        self.history = {t.key: list(resumes.get(t.key, {}).get("history", [])) for t in cells}
        # A cell resumed after it diverged trains no further epoch: never wait for it.
        self.stopped = {k: bool(h) and diverged(h[-1]) for k, h in self.history.items()}
        # A resumed cell ahead of the others reports nothing for a while: its state must
        # still be in every checkpoint.
        self.saved = {k: serialise(s) for k, s in resumes.items()}
        self.live: dict[str, dict] = {}  # states yielded since the last checkpoint
        self.last: dict[str, dict] = {}
        self.cadence = CheckpointCadence(cells[0].config["train"], min(self.epoch.values()))
        self.steps = self._epochs()

    def _epochs(self) -> Generator:
        """The trainer's epoch generator, yielding [(key, metrics, state)] per epoch."""
        keys = [t.key for t in self.cells]
        if len(self.cells) == 1:
            from trainers.loop import epochs

            weights = self._parent_weights(self.cells[0])
            steps = epochs(
                self.cells[0].config, self.resumes.get(keys[0]), load=self.load, weights=weights
            )
            answer = None
            try:
                while True:
                    metrics, state = steps.send(answer)
                    answer = yield [(keys[0], metrics, state)]
            except StopIteration as end:
                return [end.value]
        from trainers.pack import packed_epochs

        resumes = [self.resumes.get(k) for k in keys]
        steps = packed_epochs([t.config for t in self.cells], resumes, load=self.load)
        try:
            while True:
                yield [(keys[i], m, s) for i, m, s in steps.send(None)]
        except StopIteration as end:
            return end.value

    def at_rung(self) -> dict | None:
        """A cell resumed exactly at a rung (a pause, a retry, or a relaunch after a kill)
        must not train past it before it is judged there: its metrics for Tune then, with
        the rungs' scores from its history, and no epoch trained. The sync rule waits for
        the cell's row; the async rule judges it (a cell it judged already in this launch
        goes on at once). Without this report a relaunched cell's next result was its
        last, past the rung, and the async rule could stop none of them (found by the
        fault campaign, docs/reliability.md). None otherwise (the next `step()` trains)."""
        rule, key = self.halving, self.cells[0].key
        if not rule or len(self.cells) != 1:
            return None
        if self.epoch[key] not in rule["rungs"] or self.stopped[key] or key in self.stops:
            return None  # not at a rung, diverged, or a loser to be written (its first step)
        from orchestrator.halving.rule import rung_scores

        scores = rung_scores(self.history[key], rule)
        return {
            "epoch": self.epoch[key],
            "epochs": self.cells[0].config["train"]["epochs"],
            "cells": 1,
            "rungs": {str(r): v for r, v in scores.items()},
            "done": False,
        }

    @staticmethod
    def epoch_of(resumes: dict[str, dict]) -> int:
        """The last epoch the resumed states trained."""
        return max((int(s.get("epoch", 0)) for s in resumes.values()), default=0)

    def step(self) -> dict:
        """Train the unit's next epoch: its metrics for Tune, `done` true after the last
        (its rows are written then). On an exception, failure rows are written and it is
        re-raised (Tune retries the trial, unless it is a GridError)."""
        try:
            if inspect.getgeneratorstate(self.steps) == inspect.GEN_CREATED:
                for t in self.cells:  # an attempt that resumes
                    if t.key in self.resumes:
                        hooks.at_epoch(t.key, self.epoch[t.key], resumed=True)
            hooks.in_step([t.key for t in self.cells], min(self.epoch.values()) + 1)
            epoch = self._advance(False)
            if isinstance(epoch, list):  # resumed at its end: nothing left to train
                self._finish(epoch)
                return {"epoch": max(self.epoch.values()), "cells": len(self.cells), "done": True}
            out = self._metrics(epoch)
            stop = self.checkpoint(out, self._due(epoch))
            for t in self.cells:
                if self.epoch[t.key] == epoch:
                    hooks.at_epoch(t.key, epoch)
            if stop:
                self.stop(stop)
            elif self._final():
                self._finish(self._advance(False))
            # how far a relaunch would resume it from: said when a launch is interrupted
            return {**out, "checkpoint_epoch": self.cadence.last_epoch, "done": self.done}
        except Exception as exc:  # not KeyboardInterrupt: a stopped launch leaves no row
            self._write_failed(error_text(exc))
            raise

    def _advance(self, answer: bool) -> int | list[dict]:
        """Send `answer` to the trainer (True: stop): the epoch it then trained (its cells'
        metrics taken in), or the cells' summaries when it has ended. A first epoch that
        cannot load its checkpoint (CheckpointError) discards it and starts the unit over."""
        from trainers.errors import CheckpointError

        try:
            fresh = inspect.getgeneratorstate(self.steps) == inspect.GEN_CREATED
            items = self.steps.send(None if fresh else answer)
        except StopIteration as end:
            return end.value
        except CheckpointError as e:
            if not self.resumes:
                raise
            for key in self.resumes:
                discard(key, str(e))
            self.start({})
            return self._advance(answer)
        for key, metrics, state in items:
            self.live[key], self.last[key] = state, metrics
            self.epoch[key], self.history[key] = metrics["epoch"], list(state["history"])
            self.stopped[key] = diverged(metrics)
            if self.stopped[key]:  # it trains no more: its state is final, save it now
                self.saved[key] = serialise(self.live.pop(key))
            if self.observe is not None:
                self.observe(key, metrics)
        return items[0][1]["epoch"]

    def _due(self, epoch: int) -> dict[str, bytes]:
        """Every cell's state when the cadence has a checkpoint due after `epoch`, else {}.
        Serialised only now: the live states are still this epoch's (the trainer waits for
        the next step), and epochs without a checkpoint cost no copy."""
        if not self.cadence.due(epoch, final=self._final()):
            return {}
        self.saved.update({k: serialise(s) for k, s in self.live.items()})
        self.live.clear()
        self.cadence.done(epoch)
        return dict(self.saved)

    def states(self) -> dict[str, bytes]:
        """Every cell's state as of its last epoch, serialised (a checkpoint taken now)."""
        return {**self.saved, **{k: serialise(s) for k, s in self.live.items()}}

    def stop(self, decision: dict) -> None:
        """The halving stopped the unit after its last epoch: write its cells as stopped."""
        self.stops.update({t.key: decision for t in self.cells})
        self._finish(self._advance(True))

    def close(self) -> None:
        """Tune took the trial away before its end (a pause, Ctrl-C, the end of the
        launch): drop the trainer and write nothing."""
        if self.steps is not None:
            self.steps.close()

    def _parent_weights(self, cell: Cell) -> dict | None:
        """The parent's final weights (a state_dict) for a stage's cell that starts from
        them (`train.body`), read from the store by the parent's key and committed run;
        None for a cell from scratch or one that resumes (its state holds its weights)."""
        train = cell.config["train"]
        if train["body"] == "scratch" or cell.key in self.resumes:
            return None
        from orchestrator.stages.parents import read_parent_weights

        return read_parent_weights(self.store, cell)

    def _kept_weights(self, key: str, summary: dict) -> bytes | None:
        """The final state_dict of a completed cell that keeps its weights, serialised."""
        cell = next(t for t in self.cells if t.key == key)
        if not cell.config["train"].get("keep_weights") or summary["status"] != "completed":
            return None
        from orchestrator.stages.parents import model_bytes

        state = self.live.get(key) or load_state(key, self.saved[key], "final state")
        return model_bytes(state["model"])

    def _finish(self, summaries: list[dict]) -> None:
        ended = datetime.now(timezone.utc)
        for t, summary in zip(self.cells, summaries, strict=True):
            _write(
                self.store,
                t,
                summary,
                self.sha,
                self.started,
                ended,
                resumed=int(self.resumes.get(t.key, {}).get("epoch", 0)),
                stopped_at=self.stops.get(t.key, {}).get("rung"),
                generation=self.generation,
                weights=self._kept_weights(t.key, summary),
            )
            hooks.committed(t.key, len(summary["history"]))
        self.statuses = [s["status"] for s in summaries]
        self.done = True

    def _final(self) -> bool:
        """Nothing trains after this epoch: every cell stopped or did its last epoch."""
        return all(
            self.stopped[t.key] or self.epoch[t.key] >= t.config["train"]["epochs"]
            for t in self.cells
        )

    def _metrics(self, epoch: int) -> dict:
        now = [m for m in self.last.values() if m.get("epoch") == epoch]
        out = dict(now[0]) if len(self.cells) == 1 else {"epoch": epoch}
        for name in ("val_acc", "test_acc"):  # a pack reports its best cell
            values = [m[name] for m in now if m.get(name) is not None]
            if values:
                out[name] = max(values)
        out["epochs"] = self.cells[0].config["train"]["epochs"]
        out["cells"] = len(self.cells)
        if self.halving and len(self.cells) == 1:  # a halving never packs (spec checks)
            from orchestrator.halving.rule import rung_scores

            scores = rung_scores(self.history[self.cells[0].key], self.halving)
            out["rungs"] = {str(r): v for r, v in scores.items()}
        return out

    def _write_failed(self, error: str) -> None:
        """Failure rows, beside any finished row (never over it). Best effort: a store that
        is down must not hide the trial's own error."""
        for t in self.cells:
            try:
                row = failed_row(t, self.sha, error, self.started)
                row["epochs"] = len(self.history[t.key])  # how far this attempt got
                row["generation"] = self.generation
                self.store.write_failure(t.grid, t.key, row)
            except Exception:  # noqa: BLE001 - the original error is what the user needs
                pass


def run_unit(
    cells: list[Cell],
    *,
    store_uri: str | None,
    spec_sha256: str,
    resumes: dict[str, dict] | None = None,
    checkpoint: Checkpoint | None = None,
    observe: Observe | None = None,
    halving: dict | None = None,
    generation: int | None = None,
) -> list[str]:
    """Train `cells` to their end in this process (`UnitRun`, stepped until done), resuming
    each from its state in `resumes`; `checkpoint(metrics, files)` once per epoch of the
    unit (files only when a checkpoint is due; a decision it returns stops the unit);
    write every cell's row and epochs to the store. Returns the cells' statuses."""
    from results.store import open_store

    unit = UnitRun(
        cells,
        store=open_store(store_uri),
        spec_sha256=spec_sha256,
        checkpoint=checkpoint,
        observe=observe,
        halving=halving,
        generation=generation,
    )
    unit.start(resumes)
    while not unit.done:
        unit.step()
    return unit.statuses


def _write(
    store,
    trial: Cell,
    summary: dict,
    sha: str,
    started: datetime,
    ended: datetime,
    resumed: int,
    stopped_at: int | None,
    generation: int | None = None,
    weights: bytes | None = None,
) -> None:
    from orchestrator.stages import parents as stages
    from results.store.schema import epoch_rows, provenance, trial_row

    row = trial_row(trial, summary, provenance(sha, started, ended, summary["device"]))
    row.update(stages.parent_columns(trial))  # a stage's cell: the parent it started from
    row["resumed_epoch"] = resumed  # 0: trained from scratch; k: this attempt resumed at k+1
    row["stopped_at"] = stopped_at  # the rung a halving stopped it at
    row["generation"] = generation  # the lease it was written under: the store fences on it
    if weights is not None:  # written before the row that names them: the row commits both
        row["weights_id"] = stages.write_weights(store, trial, weights)
    store.write_trial(trial.grid, trial.key, row, epoch_rows(trial, summary["history"]))
    if weights is not None:
        stages.prune_weights(store, trial, keep=row["weights_id"])


def failed_row(cell: Cell, sha: str, error: str, started: datetime | None = None) -> dict:
    """A failure row: by the trial, or by the driver for a cell whose trial died without
    writing one (its node died, it was killed for memory)."""
    from results.store.schema import provenance, trial_row

    now = datetime.now(timezone.utc)
    return trial_row(cell, None, provenance(sha, started or now, now, "unknown"), error=error)
