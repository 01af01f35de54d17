"""The Tune experiment of a launch: one Tune trial per unit (a cell, or a pack of cells), run
by reusable `GridSlot` actors (`orchestrator/execution/slot.py`, Tune's class API), retried from the
cells' checkpoints, and a callback that feeds the live progress display and the grid's
status metrics (`orchestrator/execution/monitor.py`).
"""

from __future__ import annotations

import getpass
import os
import uuid
from datetime import datetime
from pathlib import Path

from ray import tune
from rich.console import Console
from rich.live import Live

from orchestrator.execution import hooks, monitor
from orchestrator.execution.arbiter import Client
from orchestrator.execution.checkpoints import tune_storage
from orchestrator.execution.fairshare import FairShare
from orchestrator.execution.progress import GridProgress
from orchestrator.execution.slot import GRID_ERROR, GridSlot
from orchestrator.execution.units import unit_label
from orchestrator.spec.expand import Cell
from results.store.base import Store
from trainers.errors import GridError

__all__ = ["GRID_ERROR", "fit", "first_line"]
# Tune's checkpoints of a trial kept: the last is all a resumed pause needs; models are large
KEEP_CHECKPOINTS = 1


def trial_name(trial) -> str:
    return trial.config["cell"]


def _trial_dirname(trial) -> str:
    return f"{trial.config['cell']}_{trial.config['launch']}"


class TuneProgress(tune.Callback):
    """Feeds Tune's trial events to the GridProgress display, and prints one line per
    finished, failed or retried trial (what stays in a log file)."""

    def __init__(self, progress: GridProgress, console: Console, stops: dict | None = None):
        self.progress, self.console = progress, console
        self.stops = stops if stops is not None else {}  # the halving's decisions, by cell
        self.status: monitor.StatusMetrics | None = None

    def __getstate__(self):  # Tune pickles its run config; the console stays here
        return {"progress": self.progress, "console": None, "status": None, "stops": {}}

    def setup(self, **info):
        try:
            self.status = monitor.StatusMetrics(self.progress.grid)
        except Exception:  # noqa: BLE001 - e.g. no metrics over Ray Client: the grid runs on
            return
        self.status.update(self.progress.counts())

    def on_trial_start(self, iteration, trials, trial, **info):
        self.progress.start(trial_name(trial))
        self._changed()

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if GRID_ERROR not in result:
            self.progress.result(trial_name(trial), result)
            self._changed()

    def on_trial_complete(self, iteration, trials, trial, **info):
        error = (trial.last_result or {}).get(GRID_ERROR)
        stop = self.stops.get(trial_name(trial))
        if error:
            self.progress.fail(trial_name(trial), error)
            self._say(f"[red]failed[/]  {trial_name(trial)}: {error} (not retried)")
        elif stop:
            self.progress.finish(trial_name(trial))
            self._say(
                f"[blue]stopped[/] {trial_name(trial)} at rung {stop['rung']}: "
                f"{stop['metric']} below its row's cutoff (halving)"
            )
        else:
            self.progress.finish(trial_name(trial))
            self._say(f"[green]done[/]    {trial_name(trial)}")
        self._changed()

    def on_trial_recover(self, iteration, trials, trial, **info):
        self.progress.retry(trial_name(trial))
        self._say(f"[yellow]retry[/]   {trial_name(trial)}: {_trial_error(trial)}")
        self._changed()

    def on_trial_error(self, iteration, trials, trial, **info):
        error = _trial_error(trial)
        self.progress.fail(trial_name(trial), error)
        self._say(f"[red]failed[/]  {trial_name(trial)}: {error}")
        self._changed()

    def _changed(self) -> None:
        if self.status is not None:
            self.status.update(self.progress.counts())

    def _say(self, text: str) -> None:
        if self.console is not None:
            self.console.print(text, highlight=False)


class LeaseGuard(tune.Callback, tune.Stopper):
    """Ends the experiment once the launch lost its lease (results/store/lease.py): the heartbeat
    or a check at each trial's end (one read of the lease) finds another holder, and Tune
    stops every trial and starts no other in the same step."""

    def __init__(self, lease=None):
        self.lease = lease

    def __getstate__(self):  # Tune pickles its run config; the lease stays here
        return {"lease": None}

    def __call__(self, trial_id, result) -> bool:
        return False

    def stop_all(self) -> bool:
        return self.lease is not None and self.lease.lost.is_set()

    def _check(self, *args, **info) -> None:
        if self.lease is not None:
            try:
                self.lease.check()
            except GridError:  # a store hiccup: the heartbeat looks again
                pass

    on_trial_complete = on_trial_error = on_trial_recover = _check


def _trial_error(trial) -> str:
    """The last error of a Tune trial, one line (Tune appends each failure to a file)."""
    try:  # the driver's own copy first: the storage copy is synced later
        local = trial.error_file
        text = Path(local).read_text() if local and Path(local).exists() else trial.get_error()
        return first_line(text)
    except Exception:  # noqa: BLE001 - a display nicety must not stop the grid
        return "unknown error"


def first_line(text: str | None) -> str:
    """The error itself out of Ray's wrapping of a trial's exception (its last line)."""
    lines = [ln.strip() for ln in (text or "").splitlines() if ln.strip()]
    return lines[-1] if lines else "unknown error"


def fit(
    spec,
    store: Store,
    units: list[list[Cell]],
    run: dict,
    resources: dict,
    skipped: int,
    max_concurrent: int | None,
    console: Console,
    rungs=None,
    lease=None,
    share: dict | None = None,
):
    """Run the units as one Tune experiment with the live display; Tune's ResultGrid.
    `run`: what every trial needs (store location, spec hash, checkpoints to resume, the
    halving section); `rungs`: the halving's records (`orchestrator.halving.rule.Rungs`), which
    make the experiment's scheduler a `SyncRowHalving` or a `RowHalving`; `lease`: the
    launch's, whose loss ends the experiment (LeaseGuard); `share`: the launch's part in the
    cluster's fair share ({"owner", "weight", "priority"}: `fairshare.FairShare`), None to
    run alone."""
    labels = {unit_label(u): u for u in units}
    run = {**run, "env": {k: os.environ[k] for k in hooks.ENV if k in os.environ}}
    if lease is not None:
        run["generation"] = lease.generation
    progress = GridProgress(
        spec.name,
        {lab: (len(u), u[0].config["train"]["epochs"]) for lab, u in labels.items()},
        skipped=skipped,
    )
    trainable = tune.with_resources(GridSlot, resources)
    # Tune's wrappers subclass GridSlot inside functions; Ray names an actor's class by its
    # qualified name, which the dashboard shows: keep it "GridSlot"
    trainable.__name__ = trainable.__qualname__ = GridSlot.__name__
    scheduler = make_scheduler(rungs, store, spec.name)
    client = None
    if share is not None:
        client = sharing_client(spec, store, resources, share, console)
        sizes = {lab: len(u) for lab, u in labels.items()}
        scheduler = FairShare(scheduler, client, sizes, skipped)
    callback = TuneProgress(progress, console, getattr(scheduler, "stops", {}))
    tuner = _tuner(
        spec,
        store,
        trainable,
        {lab: [t.to_dict() for t in u] for lab, u in labels.items()},
        run,
        max_concurrent,
        callback,
        scheduler,
        LeaseGuard(lease),
    )
    try:
        if not console.is_terminal:  # a log file: the per-trial lines and one summary
            results = tuner.fit()
            console.print(progress.summary_line(), highlight=False)
            return results
        with Live(get_renderable=progress.render, console=console, refresh_per_second=1):
            return tuner.fit()
    finally:
        if client is not None:
            client.leave()


def sharing_client(spec, store: Store, resources: dict, share: dict, console: Console):
    """The launch's client of the cluster's arbiter: what it reports besides its counts."""
    gpu = float(resources.get("gpu") or 0)
    info = {
        "id": uuid.uuid4().hex[:12],
        "grid": spec.name,
        "store": store.uri,
        "owner": share.get("owner") or getpass.getuser(),
        "weight": float(share.get("weight", 1.0)),
        "priority": int(share.get("priority", 0)),
        "pool": "GPU" if gpu > 0 else "CPU",
        "size": gpu if gpu > 0 else float(resources.get("cpu") or 1),
    }
    return Client(info, say=lambda text: console.print(f"{spec.name}: {text}", highlight=False))


def make_scheduler(rungs, store: Store, grid: str):
    """The experiment's Tune scheduler: the halving's (by its rule) when the spec has one,
    else None (Tune's FIFO). A seam: a test swaps in a scheduler that pauses a trial."""
    if rungs is None:
        return None
    from orchestrator.halving.scheduler import RowHalving, SyncRowHalving

    rule = SyncRowHalving if rungs.rule.get("rule", "sync") == "sync" else RowHalving
    return rule(rungs, store, grid)


def _tuner(
    spec,
    store: Store,
    trainable,
    units: dict[str, list[dict]],
    run: dict,
    max_concurrent: int | None,
    callback: tune.Callback,
    scheduler=None,
    guard: LeaseGuard | None = None,
) -> tune.Tuner:
    """One trial per unit (a cell or a pack), named by its label, in the order of `units`
    (the longest first: `launch.start_order`; Tune's FIFO, or the halving's scheduler);
    retried from its last checkpoint up to spec.max_failures times. Each trial's config
    carries its unit's cells and the launch's `run` (plain values in Tune's search space,
    resolved per trial: nothing is put in the object store, so nothing outlives the launch
    in this process)."""
    path, fs = tune_storage(store, spec.name)
    # the synchronous halving counts the slots itself: a paused trial frees its slot
    searcher = scheduler.searcher(max_concurrent) if hasattr(scheduler, "searcher") else None
    return tune.Tuner(
        trainable,
        param_space={
            "cell": tune.grid_search(list(units)),
            "unit": tune.sample_from(lambda spec: units[spec.config.cell]),
            "run": run,
            "launch": datetime.now().strftime("%Y%m%d-%H%M%S"),
        },
        tune_config=tune.TuneConfig(
            max_concurrent_trials=None if searcher else max_concurrent,
            search_alg=searcher,
            scheduler=scheduler,
            # an actor (a process that imported torch: seconds) trains trial after trial,
            # reset by GridSlot.reset_config; its log and metrics name the cell it trains
            reuse_actors=True,
            trial_name_creator=trial_name,
            trial_dirname_creator=_trial_dirname,
        ),
        run_config=tune.RunConfig(
            name=spec.name,
            storage_path=path,
            storage_filesystem=fs,
            verbose=0,
            progress_reporter=tune.CLIReporter(max_report_frequency=10**9),  # silent
            callbacks=[callback] + ([guard] if guard else []),
            stop=guard,
            failure_config=tune.FailureConfig(max_failures=spec.max_failures),
            checkpoint_config=tune.CheckpointConfig(
                num_to_keep=KEEP_CHECKPOINTS, checkpoint_at_end=False
            ),
        ),
    )
