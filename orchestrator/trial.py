"""What runs inside one Tune trial, without Ray: pick and group the cells, resume, train,
checkpoint through a callback, and write the result rows to the store itself.

A trial ("unit") is one cell, or a pack of cells trained as one fused model
(`resources.pack`). `orchestrator/launch.py` wraps `run_unit` in a Tune function trainable
and passes a `checkpoint(metrics, files)` callback that turns into `tune.report`.

The trial writes its own rows (completed, diverged, or failed with the error) so that no
result depends on the driver surviving; a row is one file per key, so a retry that succeeds
replaces the failed row instead of adding one.

Testing hook, read here in the trial's process (`grid launch` forwards it to the trials):
  GRID_FAIL_INJECT="<key prefix or *>:<epoch>:<times>[,...]" makes a matching cell's trial
  raise `InjectedFailure` right after epoch <epoch> is checkpointed (or at the start of an
  attempt that resumes at or past it), the first <times> attempts. Attempts are counted with
  marker files in GRID_FAIL_INJECT_DIR (default: <tmp>/grid-fail-inject), so the count
  survives the process; delete the folder to re-arm it.
"""
from __future__ import annotations

import io
import math
import os
import tempfile
import traceback
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from orchestrator.expand import Trial

FINISHED = ("completed", "diverged")  # statuses `grid launch` skips (unless --force)
FAIL_INJECT_ENV = "GRID_FAIL_INJECT"
FAIL_INJECT_DIR_ENV = "GRID_FAIL_INJECT_DIR"
HOOK_ENV = (FAIL_INJECT_ENV, FAIL_INJECT_DIR_ENV)
ERROR_FRAMES = 3  # frames of the traceback kept in a failed row: where, without the noise

Checkpoint = Callable[[dict, dict[str, bytes]], None]


class InjectedFailure(RuntimeError):
    """Raised by the GRID_FAIL_INJECT testing hook."""


def select_cells(trials: list[Trial], statuses: dict[str, str],
                 force: bool = False) -> tuple[list[Trial], list[Trial]]:
    """(cells to run, cells skipped): completed and diverged cells are skipped unless
    `force`; failed and missing ones run."""
    if force:
        return list(trials), []
    todo = [t for t in trials if statuses.get(t.key) not in FINISHED]
    done = [t for t in trials if statuses.get(t.key) in FINISHED]
    return todo, done


def group_cells(trials: list[Trial], pack: int) -> list[list[Trial]]:
    """The cells as Tune trials: one cell each for pack 1; else up to `pack` cells that
    differ only in lr, seed, init, weight decay or schedule (`trainers.pack.pack_key`) per
    trial, in grid order."""
    if pack <= 1:
        return [[t] for t in trials]
    from trainers.pack import can_pack, pack_key  # torch: only imported when packing

    groups: dict[str, list[Trial]] = {}
    for t in trials:
        single = not can_pack([t.config])  # torch.compile'd cells train alone
        groups.setdefault(t.key if single else pack_key(t.config), []).append(t)
    units = []
    for cells in groups.values():
        units += [cells[i:i + pack] for i in range(0, len(cells), pack)]
    order = {t.key: i for i, t in enumerate(trials)}
    return sorted(units, key=lambda u: order[u[0].key])


def unit_label(cells: list[Trial]) -> str:
    """The Tune trial's name: the cell key, `+N` for a pack of N more cells."""
    return cells[0].key + (f"+{len(cells) - 1}" if len(cells) > 1 else "")


def state_file(key: str) -> str:
    """A cell's file inside a checkpoint directory."""
    return f"state_{key}.pt"


def load_states(directory: str | Path, keys: list[str]) -> dict[str, dict]:
    """The trainer states of `keys` found in a checkpoint directory (missing keys left out)."""
    import torch
    out = {}
    for key in keys:
        path = Path(directory) / state_file(key)
        if path.exists():
            # weights_only: tensors, numbers and containers, never arbitrary objects (a
            # checkpoint folder on a shared store is not trusted code)
            out[key] = torch.load(path, map_location="cpu", weights_only=True)
    return out


def error_text(exc: BaseException) -> str:
    """`Type: message` on one line, then the last frames of the traceback."""
    head = f"{type(exc).__name__}: {' '.join(str(exc).split())}".rstrip(": ")
    frames = traceback.format_tb(exc.__traceback__)[-ERROR_FRAMES:]
    return head + ("\n" + "".join(frames).rstrip() if frames else "")


def _inject_dir() -> Path:
    return Path(os.environ.get(FAIL_INJECT_DIR_ENV) or
                Path(tempfile.gettempdir()) / "grid-fail-inject")


def maybe_inject_failure(key: str, epoch: int, *, resumed: bool = False) -> None:
    """The GRID_FAIL_INJECT hook (module docstring): raise after epoch E's checkpoint, or
    at the start of an attempt resumed at epoch >= E, the first `times` attempts."""
    spec = os.environ.get(FAIL_INJECT_ENV, "")
    rules = [rule.rsplit(":", 2) for rule in spec.split(",") if rule.strip()]
    for prefix, at, times in rules:
        if prefix.strip() == "*" or key.startswith(prefix.strip()):
            if epoch >= int(at) if resumed else epoch == int(at):
                _fail_once_more(key, epoch, int(times), spec)
            return


def _fail_once_more(key: str, epoch: int, times: int, spec: str) -> None:
    folder = _inject_dir()
    folder.mkdir(parents=True, exist_ok=True)
    done = len(list(folder.glob(f"{key}-*")))
    if done < times:
        (folder / f"{key}-{done + 1}").touch()
        raise InjectedFailure(f"injected failure {done + 1}/{times} of cell {key} "
                              f"at epoch {epoch} ({FAIL_INJECT_ENV}={spec})")


def diverged(metrics: dict) -> bool:
    """A NaN/inf loss in an epoch's metrics (the trainers stop such a cell)."""
    from trainers.summary import diverged as rule  # torch-free: the trainers' one rule
    return rule(metrics)


def _serialise(state: dict) -> bytes:
    import torch
    buf = io.BytesIO()
    torch.save(state, buf)  # live tensors: serialise at once
    return buf.getvalue()


class _Epochs:
    """Collects the cells' per-epoch reports and checkpoints once every cell still
    training has reported the epoch (a pack reports its cells one by one)."""

    def __init__(self, cells: list[Trial], resumes: dict[str, dict], checkpoint: Checkpoint):
        self.cells, self.checkpoint = cells, checkpoint
        self.epoch = {t.key: int(resumes.get(t.key, {}).get("epoch", 0)) for t in cells}
        self.history = {t.key: list(resumes.get(t.key, {}).get("history", [])) for t in cells}
        # A cell resumed after it diverged trains no further epoch: never wait for it.
        self.stopped = {t.key: bool(self.history[t.key]) and diverged(self.history[t.key][-1])
                        for t in cells}
        # A resumed cell ahead of the others reports nothing for a while: its state must
        # still be in every checkpoint.
        self.states = {k: _serialise(s) for k, s in resumes.items()}
        self.last: dict[str, dict] = {}

    def report(self, key: str, metrics: dict, state: dict) -> None:
        self.states[key], self.last[key] = _serialise(state), metrics
        self.epoch[key], self.history[key] = metrics["epoch"], list(state["history"])
        self.stopped[key] = diverged(metrics)
        epoch = metrics["epoch"]
        if any(self.epoch[k] < epoch and not self.stopped[k] for k in self.epoch):
            return  # other cells of the pack still train this epoch
        self.checkpoint(self._metrics(epoch), {state_file(k): b for k, b in self.states.items()})
        for t in self.cells:
            if self.epoch[t.key] == epoch:
                maybe_inject_failure(t.key, epoch)

    def _metrics(self, epoch: int) -> dict:
        now = [m for m in self.last.values() if m.get("epoch") == epoch]
        out = dict(now[0]) if len(self.cells) == 1 else {"epoch": epoch}
        for name in ("val_acc", "test_acc"):  # a pack reports its best cell
            values = [m[name] for m in now if m.get(name) is not None]
            if values:
                out[name] = max(values)
        out["epochs"] = self.cells[0].config["train"]["epochs"]
        out["cells"] = len(self.cells)
        return out


def run_unit(cells: list[Trial], *, store_uri: str | None, spec_sha256: str,
             resumes: dict[str, dict] | None = None,
             checkpoint: Checkpoint | None = None) -> list[str]:
    """Train `cells` (one cell: `trainers.loop.train`; several: `trainers.pack.train_packed`),
    resuming each from its state in `resumes`; call `checkpoint(metrics, files)` once per
    epoch; write every cell's row and epochs to the store. Returns the cells' statuses.

    On an exception, failed rows (with the error and the epochs done) are written and the
    exception is re-raised so that Tune retries the trial."""
    from results.store import open_store

    resumes = resumes or {}
    store = open_store(store_uri)
    started = datetime.now(timezone.utc)
    epochs = _Epochs(cells, resumes, checkpoint or (lambda metrics, files: None))
    try:
        for t in cells:
            if t.key in resumes:
                maybe_inject_failure(t.key, epochs.epoch[t.key], resumed=True)
        summaries = _train(cells, resumes, epochs)
    except Exception as exc:  # not KeyboardInterrupt: a stopped launch leaves no row
        _write_failed(store, cells, epochs, spec_sha256, started, error_text(exc))
        raise
    ended = datetime.now(timezone.utc)
    for t, summary in zip(cells, summaries):
        _write(store, t, summary, spec_sha256, started, ended,
               resumed=int(resumes.get(t.key, {}).get("epoch", 0)))
    return [s["status"] for s in summaries]


def _train(cells: list[Trial], resumes: dict[str, dict], epochs: _Epochs) -> list[dict]:
    reports = [lambda m, s, k=t.key: epochs.report(k, m, s) for t in cells]
    if len(cells) == 1:
        from trainers.loop import train
        return [train(cells[0].config, reports[0], resumes.get(cells[0].key))]
    from trainers.pack import train_packed
    return train_packed([t.config for t in cells], reports,
                        [resumes.get(t.key) for t in cells])


def _write(store, trial: Trial, summary: dict, sha: str, started: datetime, ended: datetime,
           resumed: int) -> None:
    from results.schema import epoch_rows, provenance, trial_row
    row = trial_row(trial, summary, provenance(sha, started, ended, summary["device"]))
    row["resumed_epoch"] = resumed  # 0: trained from scratch; k: this attempt resumed at k+1
    store.write_trial(trial.grid, trial.key, row, epoch_rows(trial, summary["history"]))


def _write_failed(store, cells: list[Trial], epochs: _Epochs, sha: str, started: datetime,
                  error: str) -> None:
    """Best effort: a store that is down must not hide the trial's own error."""
    from results.schema import epoch_rows, provenance, trial_row
    ended = datetime.now(timezone.utc)
    for t in cells:
        try:
            row = trial_row(t, None, provenance(sha, started, ended, "unknown"), error=error)
            store.write_trial(t.grid, t.key, row, epoch_rows(t, epochs.history[t.key]))
        except Exception:  # noqa: BLE001 - the original error is what the user needs
            pass


def failed_row(trial: Trial, sha: str, error: str) -> dict:
    """A failed row written by the driver for a cell whose trial died without writing one
    (its node died, it was killed for memory)."""
    from results.schema import provenance, trial_row
    now = datetime.now(timezone.utc)
    return trial_row(trial, None, provenance(sha, now, now, "unknown"), error=error)

