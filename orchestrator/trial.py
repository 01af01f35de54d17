"""What runs inside one Tune trial, without Ray: resume, train, checkpoint through a callback,
and write the result rows to the store itself (`orchestrator/units.py` picks the cells and
groups them into trials).

A unit is one cell, or a pack of cells trained as one model (`resources.pack`).
`orchestrator/experiment.py` wraps `run_unit` in a Tune trainable whose `checkpoint(metrics,
files)` callback is `tune.report`, called every epoch, with files only on the epochs the
cadence picks (`trainers/cadence.py`). A retry redoes the epochs after the last checkpoint
from its history, so the rows hold each epoch once. Under a halving, each report carries the
cell's scores at the rungs it has passed (`rungs`), and the callback answers with the
halving's decision when it stopped the cell: the cell is then written as `stopped`.

The trial writes its own rows (completed or diverged; a failure with its error in its own
place, `Store.write_failure`) so that no result depends on the driver surviving and no failed
attempt ever replaces a finished result. A user error (`GridError`: missing data, say) fails
the cell with its one-line message and is not retried: it would fail the same way again.

A checkpoint file holds one cell's trainer state with its format and the code version that
wrote it; one that cannot be loaded (a torn file, an older format) is discarded with a
warning and the cell starts over, instead of failing every retry of every launch.

Test hooks (`orchestrator/hooks.py`) are called through their one seam, `hooks.at_epoch`.
"""

from __future__ import annotations

import io
import traceback
import warnings
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

from orchestrator import hooks
from orchestrator.errors import GridError
from orchestrator.expand import Cell

ERROR_FRAMES = 3  # frames of the traceback kept in a failed row: where, without the noise
CHECKPOINT_FORMAT = 2  # 1: the bare trainer state (0.1); 2: {format, code_version, state}

# (metrics, files) -> None, or the halving's decision that stopped the unit
Checkpoint = Callable[[dict, dict[str, bytes]], "dict | None"]
Observe = Callable[[str, dict], None]  # (cell key, its epoch's metrics): logs and metrics


class CheckpointWarning(UserWarning):
    """A checkpoint that could not be loaded was discarded; the cell starts over."""


def state_file(key: str) -> str:
    """A cell's file inside a checkpoint directory."""
    return f"state_{key}.pt"


def load_states(directory: str | Path, keys: list[str]) -> dict[str, dict]:
    """The trainer states of `keys` found in a checkpoint directory (missing keys left out;
    one that cannot be loaded is left out with a CheckpointWarning: that cell starts over)."""
    import torch

    out = {}
    for key in keys:
        path = Path(directory) / state_file(key)
        if not path.exists():
            continue
        try:
            # weights_only: tensors, numbers and containers, never arbitrary objects (a
            # checkpoint folder on a shared store is not trusted code); map_location: the
            # trainer moves each piece to the device it trains on now
            saved = torch.load(path, map_location="cpu", weights_only=True)
            if not (isinstance(saved, dict) and saved.get("format") == CHECKPOINT_FORMAT):
                raise ValueError(
                    f"format {saved.get('format') if isinstance(saved, dict) else '?'}"
                    f", expected {CHECKPOINT_FORMAT}"
                )
            out[key] = saved["state"]
        except Exception as e:  # noqa: BLE001 - any unreadable checkpoint: start over
            discard(key, f"{path.name}: {type(e).__name__}: {' '.join(str(e).split())}")
    return out


def discard(key: str, why: str) -> None:
    """Say that cell `key` starts over because its checkpoint cannot be used."""
    warnings.warn(
        f"cell {key}: checkpoint discarded, training from epoch 1 ({why})",
        CheckpointWarning,
        stacklevel=2,
    )


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


def _serialise(state: dict) -> bytes:
    import torch

    from results.schema import grid_version

    buf = io.BytesIO()
    # live tensors: serialise at once
    torch.save({"format": CHECKPOINT_FORMAT, "code_version": grid_version(), "state": state}, buf)
    return buf.getvalue()


class _Epochs:
    """Collects the cells' per-epoch reports. Once every cell still training has reported
    an epoch (a pack reports its cells one by one) it calls `checkpoint(metrics, files)`:
    with the cells' serialised states when `trainers.cadence.CheckpointCadence` says one is
    due (every `train.checkpoint_every` epochs or `train.checkpoint_s` seconds, and always
    when nothing trains after it), else with no files (Tune still gets the metrics)."""

    def __init__(
        self,
        cells: list[Cell],
        resumes: dict[str, dict],
        checkpoint: Checkpoint,
        observe: Observe | None = None,
        halving: dict | None = None,
    ):
        from trainers.cadence import CheckpointCadence

        self.cells, self.checkpoint, self.observe = cells, checkpoint, observe
        self.halving = halving
        self.stops: dict[str, dict] = {}  # the halving's decision, for each cell it stopped
        self.epoch = {t.key: int(resumes.get(t.key, {}).get("epoch", 0)) for t in cells}
        self.history = {t.key: list(resumes.get(t.key, {}).get("history", [])) for t in cells}
        # A cell resumed after it diverged trains no further epoch: never wait for it.
        self.stopped = {
            t.key: bool(self.history[t.key]) and diverged(self.history[t.key][-1]) for t in cells
        }
        # A resumed cell ahead of the others reports nothing for a while: its state must
        # still be in every checkpoint.
        self.states = {k: _serialise(s) for k, s in resumes.items()}
        self.live: dict[str, dict] = {}  # states reported since the last checkpoint
        self.last: dict[str, dict] = {}
        self.cadence = CheckpointCadence(cells[0].config["train"], min(self.epoch.values()))

    def start_over(self) -> None:
        """Forget the discarded resumes: train from epoch 1, same checkpoint and observer."""
        self.__init__(self.cells, {}, self.checkpoint, self.observe, self.halving)

    def report(self, key: str, metrics: dict, state: dict) -> bool:
        """Take one cell's epoch; True when the halving stopped the unit (no more reports:
        Tune has ended the trial's session)."""
        self.live[key], self.last[key] = state, metrics
        self.epoch[key], self.history[key] = metrics["epoch"], list(state["history"])
        self.stopped[key] = diverged(metrics)
        if self.stopped[key]:  # it trains no more: its state is final, save it now
            self.states[key] = _serialise(self.live.pop(key))
        if self.observe is not None:
            self.observe(key, metrics)
        epoch = metrics["epoch"]
        if any(self.epoch[k] < epoch and not self.stopped[k] for k in self.epoch):
            return  # other cells of the pack still train this epoch
        files = None
        if self.cadence.due(epoch, final=self._final()):
            # Serialised only now: the live states are still this epoch's (the trainer
            # waits for this call), and epochs without a checkpoint cost no copy.
            self.states.update({k: _serialise(s) for k, s in self.live.items()})
            self.live.clear()
            files = {state_file(k): b for k, b in self.states.items()}
            self.cadence.done(epoch)
        stop = self.checkpoint(self._metrics(epoch), files or {})
        if stop:
            self.stops.update({t.key: stop for t in self.cells})
            return True
        for t in self.cells:
            if self.epoch[t.key] == epoch:
                hooks.at_epoch(t.key, epoch)
        return False

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
            from orchestrator.halving import rung_scores

            scores = rung_scores(self.history[self.cells[0].key], self.halving)
            out["rungs"] = {str(r): v for r, v in scores.items()}
        return out


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
    """Train `cells` (one cell: `trainers.loop.train`; several: `trainers.pack.train_packed`),
    resuming each from its state in `resumes`; call `observe(key, metrics)` after each
    cell's epoch and `checkpoint(metrics, files)` once per epoch of the unit (files only
    when a checkpoint is due); write every cell's row and epochs to the store. Returns the
    cells' statuses. `halving`: the spec's section, whose rung scores each report carries.
    `generation`: the launch's lease generation, which every row carries (the store refuses
    a row of a launch that lost its lease: results/lease.py).

    On an exception, failure rows (with the error and the epochs done) are written and the
    exception is re-raised: Tune retries the trial, unless it is a GridError."""
    from results.store import open_store

    resumes = dict(resumes or {})  # emptied when its checkpoints are discarded
    store = open_store(store_uri)
    started = datetime.now(timezone.utc)
    epochs = _Epochs(cells, resumes, checkpoint or (lambda metrics, files: None), observe, halving)
    try:
        for t in cells:
            if t.key in resumes:
                hooks.at_epoch(t.key, epochs.epoch[t.key], resumed=True)
        summaries = _train_or_start_over(cells, resumes, epochs)
    except Exception as exc:  # not KeyboardInterrupt: a stopped launch leaves no row
        _write_failed(store, cells, epochs, spec_sha256, started, error_text(exc), generation)
        raise
    ended = datetime.now(timezone.utc)
    for t, summary in zip(cells, summaries, strict=True):
        _write(
            store,
            t,
            summary,
            spec_sha256,
            started,
            ended,
            resumed=int(resumes.get(t.key, {}).get("epoch", 0)),
            stopped_at=epochs.stops.get(t.key, {}).get("rung"),
            generation=generation,
        )
    return [s["status"] for s in summaries]


def _train_or_start_over(
    cells: list[Cell], resumes: dict[str, dict], epochs: _Epochs
) -> list[dict]:
    """Train from `resumes`; a checkpoint that does not fit the cells (CheckpointError) is
    discarded with a warning and the unit starts over (`resumes` emptied), instead of
    failing every retry of every launch."""
    from trainers.errors import CheckpointError

    try:
        return _train(cells, resumes, epochs)
    except CheckpointError as e:
        if not resumes:
            raise
        for key in resumes:
            discard(key, str(e))
        resumes.clear()
        epochs.start_over()
        return _train(cells, resumes, epochs)


def _train(cells: list[Cell], resumes: dict[str, dict], epochs: _Epochs) -> list[dict]:
    reports = [lambda m, s, k=t.key: epochs.report(k, m, s) for t in cells]
    if len(cells) == 1:
        from trainers.loop import train

        return [train(cells[0].config, reports[0], resumes.get(cells[0].key))]
    from trainers.pack import train_packed

    return train_packed([t.config for t in cells], reports, [resumes.get(t.key) for t in cells])


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
) -> None:
    from results.schema import epoch_rows, provenance, trial_row

    row = trial_row(trial, summary, provenance(sha, started, ended, summary["device"]))
    row["resumed_epoch"] = resumed  # 0: trained from scratch; k: this attempt resumed at k+1
    row["stopped_at"] = stopped_at  # the rung a halving stopped it at
    row["generation"] = generation  # the lease it was written under: the store fences on it
    store.write_trial(trial.grid, trial.key, row, epoch_rows(trial, summary["history"]))


def _write_failed(
    store,
    cells: list[Cell],
    epochs: _Epochs,
    sha: str,
    started: datetime,
    error: str,
    generation: int | None = None,
) -> None:
    """Failure rows, beside any finished row (never over it). Best effort: a store that is
    down must not hide the trial's own error."""
    for t in cells:
        try:
            row = failed_row(t, sha, error, started)
            row["epochs"] = len(epochs.history[t.key])  # how far this attempt got
            row["generation"] = generation
            store.write_failure(t.grid, t.key, row)
        except Exception:  # noqa: BLE001 - the original error is what the user needs
            pass


def failed_row(cell: Cell, sha: str, error: str, started: datetime | None = None) -> dict:
    """A failure row: by the trial, or by the driver for a cell whose trial died without
    writing one (its node died, it was killed for memory)."""
    from results.schema import provenance, trial_row

    now = datetime.now(timezone.utc)
    return trial_row(cell, None, provenance(sha, started or now, now, "unknown"), error=error)
