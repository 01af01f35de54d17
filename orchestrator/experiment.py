"""The Tune experiment of a launch: one Tune trial per unit (a cell, or a pack of cells), a
function trainable around `orchestrator/trial.run_unit` in a class named for the dashboard,
retries from per-epoch checkpoints, and a callback that feeds the live progress display and
the grid's status metrics (`orchestrator/monitor.py`).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import ray
from ray import tune
from ray.train._internal.session import get_session
from ray.tune.trainable.function_trainable import wrap_function
from rich.console import Console
from rich.live import Live

from orchestrator import hooks, monitor, trial
from orchestrator.checkpoints import KEEP_CHECKPOINTS, tune_storage
from orchestrator.errors import GridError
from orchestrator.expand import Cell
from orchestrator.progress import GridProgress
from orchestrator.units import unit_label
from results.store import Store, open_store

GRID_ERROR = "grid_error"  # a trial's last report when a user error ended it
# How long a stopping trial may take to write its rows (a local file: well under a second;
# an S3 PUT: seconds); Tune force-kills a stopping actor only after 600 s anyway.
STOP_WAIT_S = 120


def _trainable(config: dict, units: dict, run: dict) -> None:
    """One Tune trial: resume (this launch's retry, else an earlier launch's checkpoint),
    train, report every epoch with a checkpoint, write the rows (orchestrator/trial.py).
    A GridError ends the trial without an exception, so Tune does not retry it."""
    os.environ.update(run["env"])  # the test hooks, forwarded from the launch
    if not ray.get_gpu_ids():
        # Ray does not hide the GPUs from a trial that asked for none: without this, every
        # trial of a node with `train.device: auto` would share cuda:0.
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    cells = [Cell.from_dict(d) for d in units[config["cell"]]]
    keys = [t.key for t in cells]
    shown = monitor.CellMetrics(cells[0].grid, cells[0].config["train"]["epochs"])
    store = open_store(run["store"])

    def stopped() -> dict | None:  # the halving's decision, if it is what ended the trial
        return store.read_stop(cells[0].grid, keys[0]) if run.get("halving") else None

    try:
        trial.run_unit(
            cells,
            store_uri=run["store"],
            spec_sha256=run["sha256"],
            resumes=_resumes(cells, keys, run),
            checkpoint=lambda metrics, files: _report(metrics, files, stopped),
            observe=shown.observe,
            halving=run.get("halving"),
            generation=run.get("generation"),
        )
    except GridError as e:  # written to the store as the cells' failure by run_unit
        tune.report({GRID_ERROR: " ".join(str(e).split())})


def _resumes(cells: list[Cell], keys: list[str], run: dict) -> dict[str, dict]:
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:  # a retry within this launch
        with checkpoint.as_directory() as d:
            return trial.load_states(d, keys)
    resumes: dict[str, dict] = {}
    _, fs = tune_storage(open_store(run["store"]), cells[0].grid)
    for path in sorted({run["resume"][k] for k in keys if k in run["resume"]}):
        try:
            with tune.Checkpoint(path, filesystem=fs).as_directory() as d:
                resumes.update(
                    trial.load_states(d, [k for k in keys if run["resume"].get(k) == path])
                )
        except Exception as e:  # noqa: BLE001 - a vanished or torn folder: start over
            for k in keys:
                if run["resume"].get(k) == path:
                    trial.discard(k, f"{path}: {type(e).__name__}: {e}")
    return resumes


def _report(
    metrics: dict, files: dict[str, bytes], stopped: Callable[[], dict | None]
) -> dict | None:
    """Metrics every epoch; a checkpoint with them when the cadence gave files. Ray 2.60's
    `tune.report` persists a checkpoint to the storage before it returns, on the training
    thread that must call it (an asynchronous upload exists only in Ray Train v2's
    `ray.train.report`), so the cadence, not a thread, is what keeps this cost small.

    When Tune stops the trial, `tune.report` exits (SystemExit): if the halving's decision
    `stopped()` is there, it is returned (the cell is written as stopped); any other stop
    (Ctrl-C, the end of the experiment) goes on exiting and writes nothing."""
    try:
        if not files:
            tune.report(metrics)
            return None
        with tempfile.TemporaryDirectory(prefix="grid-checkpoint-") as d:
            for name, data in files.items():
                Path(d, name).write_bytes(data)
            # tune.report copies the folder to the storage before it returns
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(d))
        return None
    except SystemExit:
        decision = stopped()
        if decision is None:
            raise
        return decision


def trainable_class(trainable, titles: dict[str, str], halving: bool = False) -> type:
    """The function trainable as a class whose repr is its unit's title (grid, cell keys,
    axis values): the dashboard's Actors page shows an actor by its repr. Ray reads that
    repr once, right after the actor's __init__ (`_raylet.pyx`, Ray 2.60), so each trial
    has its own actor (`reuse_actors=False` in `_tuner`). Under a halving, its cleanup
    waits for a stopped trial's rows."""

    def __repr__(self) -> str:
        label = (getattr(self, "config", None) or {}).get("cell")
        return f"GridTrial({titles.get(label, label)})"

    def cleanup(self) -> None:
        # Tune's cleanup only signals the training thread; the actor ends right after it.
        # A trial stopped by the halving writes its rows on that thread after the signal:
        # wait for it, or the process would end before the rows are in the store.
        thread = getattr(get_session(), "training_thread", None)
        super(cls, self).cleanup()
        if halving and thread is not None and thread.is_alive():
            thread.join(timeout=STOP_WAIT_S)

    cls = type(
        "GridTrial",
        (wrap_function(trainable),),
        {"__repr__": __repr__, "cleanup": cleanup, "__qualname__": "GridTrial"},
    )
    return cls


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
    """Ends the experiment once the launch lost its lease (results/lease.py): the heartbeat
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
):
    """Run the units as one Tune experiment with the live display; Tune's ResultGrid.
    `run`: what every trial needs (store location, spec hash, checkpoints to resume, the
    halving section); `rungs`: the halving's records (`orchestrator.halving.Rungs`), which
    make the experiment's scheduler a `RowHalving`; `lease`: the launch's, whose loss ends
    the experiment (LeaseGuard)."""
    labels = {unit_label(u): u for u in units}
    run = {**run, "env": {k: os.environ[k] for k in hooks.ENV if k in os.environ}}
    if lease is not None:
        run["generation"] = lease.generation
    progress = GridProgress(
        spec.name,
        {lab: (len(u), u[0].config["train"]["epochs"]) for lab, u in labels.items()},
        skipped=skipped,
    )
    trainable = tune.with_resources(
        tune.with_parameters(
            _trainable, units={lab: [t.to_dict() for t in u] for lab, u in labels.items()}, run=run
        ),
        resources,
    )
    titles = {lab: monitor.unit_title(spec.name, u) for lab, u in labels.items()}
    scheduler = None
    if rungs is not None:
        from orchestrator.scheduler import RowHalving

        scheduler = RowHalving(rungs, store, spec.name)
    callback = TuneProgress(progress, console, scheduler.stops if scheduler else {})
    tuner = _tuner(
        spec,
        store,
        trainable_class(trainable, titles, rungs is not None),
        list(labels),
        max_concurrent,
        callback,
        scheduler,
        LeaseGuard(lease),
    )
    if not console.is_terminal:  # a log file: the per-trial lines and one summary
        results = tuner.fit()
        console.print(progress.summary_line(), highlight=False)
        return results
    with Live(get_renderable=progress.render, console=console, refresh_per_second=1):
        return tuner.fit()


def _tuner(
    spec,
    store: Store,
    trainable,
    labels: list[str],
    max_concurrent: int | None,
    callback: tune.Callback,
    scheduler=None,
    guard: LeaseGuard | None = None,
) -> tune.Tuner:
    """One trial per label (a cell or a pack), named by it, in the grid's order (Tune's
    FIFO, or the halving's `RowHalving`); retried from its last checkpoint up to
    spec.max_failures times."""
    path, fs = tune_storage(store, spec.name)
    return tune.Tuner(
        trainable,
        param_space={
            "cell": tune.grid_search(labels),
            "launch": datetime.now().strftime("%Y%m%d-%H%M%S"),
        },
        tune_config=tune.TuneConfig(
            max_concurrent_trials=max_concurrent,
            scheduler=scheduler,
            # a new actor (process) per trial, so that the
            # dashboard names each by its cells (trainable_class);
            # it costs a torch import (seconds) per trial
            reuse_actors=False,
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
            checkpoint_config=tune.CheckpointConfig(num_to_keep=KEEP_CHECKPOINTS),
        ),
    )
