"""`grid launch`: the grid's unfinished cells as Ray Tune trials. The only module that
imports ray.

On a local Ray (started here, dashboard on localhost behind Ray's token) or an existing
cluster (`--address`): finished cells are skipped, each cell (or pack of cells) is one Tune
trial that checkpoints every epoch and is retried from its last checkpoint up to
`max_failures` times, a cell killed with its launch resumes from its checkpoint at the next
launch, and every trial writes its own rows to the store (`orchestrator/trial.py`).
"""
from __future__ import annotations

import contextlib
import logging
import os
import socket
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Iterator
from urllib.parse import urlsplit

import ray
from pyarrow import fs as pafs
from ray import tune
from rich.console import Console
from rich.live import Live
from rich.text import Text

from orchestrator import trial as T
from orchestrator.errors import GridError
from orchestrator.expand import Trial, axis_label, expand
from orchestrator.progress import GridProgress
from results.store import Store, open_store

TUNE_DIR = "_tune"  # <store>/<grid>/_tune: Tune's experiment state and checkpoints
KEEP_CHECKPOINTS = 1  # the last epoch is all a retry needs; models can be large
# Ray and Tune talk a lot; `grid launch` shows its own progress. Defaults only: a user's
# own setting of any of these wins.
QUIET_ENV = {
    "RAY_AIR_NEW_OUTPUT": "0",  # the legacy reporter, which verbose=0 silences
    "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1",  # no CSV/JSON/TensorBoard: the store has it
    "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0",  # 1 per epoch: intended
}
QUIET_LOGGERS = {"ray": logging.WARNING, "ray.tune": logging.ERROR,
                 # trial failures: shown by the progress display and the final report
                 "ray.tune.execution.tune_controller": logging.CRITICAL,
                 "ray._private.authentication.authentication_token_setup": logging.ERROR}


def launch(spec, *, store_uri: str | None = None, address: str | None = None,
           max_concurrent: int | None = None, force: bool = False, dry_run: bool = False,
           console: Console | None = None, dashboard_host: str = "127.0.0.1") -> int:
    """Run the spec's unfinished cells as Tune trials; 0 when every cell is completed or
    diverged, 1 when some failed (listed with their errors)."""
    console = console or Console()
    store = open_store(store_uri)
    store.check_writable()
    trials = expand(spec)
    todo, skipped = T.select_cells(trials, store.statuses(spec.name), force)
    if skipped:
        console.print(f"skipping {len(skipped)} finished cells (completed or diverged; "
                      f"--force reruns them)")
    if not todo:
        console.print(f"{spec.name}: all {len(trials)} cells are finished; nothing to run")
        return 0
    units = T.group_cells(todo, spec.resources["pack"])
    if dry_run:
        _print_plan(console, spec, units)
        return 0
    with ray_session(address, dashboard_host, console):
        check_shared_store(store)
        results = _fit(spec, store, units, len(skipped), max_concurrent, console)
        prune_checkpoints(store, spec.name)
    return _finish(spec, store, units, results, console)


def _print_plan(console: Console, spec, units: list[list[Trial]]) -> None:
    cells = sum(len(u) for u in units)
    console.print(f"{spec.name}: would run {cells} cells as {len(units)} Tune trials "
                  f"(dry run: nothing started)")
    for unit in units:
        params = ", ".join(f"{axis_label(a)}={v}" for a, v in unit[0].params.items())
        console.print(f"  {T.unit_label(unit)}  {params}")


# -- Ray ------------------------------------------------------------------------------------
@contextlib.contextmanager
def ray_session(address: str | None, dashboard_host: str, console: Console) -> Iterator[bool]:
    """Connected to Ray for the block: the caller's connection if there is one, else the
    cluster at `address` / RAY_ADDRESS, else a new local Ray with its dashboard. Yields
    whether a local Ray was started here; disconnects (and stops it) at the end."""
    for name, value in QUIET_ENV.items():
        os.environ.setdefault(name, value)
    if ray.is_initialized():  # e.g. a notebook or a test that connected already
        yield False
        return
    address = address or os.environ.get("RAY_ADDRESS") or None
    # Ray 2.60 turns token auth on for a new local Ray (RAY_AUTH_MODE=token in this process,
    # token in ~/.ray/auth_token); that stays process-wide after ray.shutdown().
    _quiet_loggers()
    kw = {"log_to_driver": False, "logging_level": logging.WARNING}
    if address not in (None, "auto", "local"):
        check_reachable(address)
    try:
        if address is None:  # "local": a new Ray, never one `ray start` left running
            ctx = ray.init(address="local", include_dashboard=True,
                           dashboard_host=dashboard_host, **kw)
        else:
            ctx = ray.init(address=address, **kw)
    except (ConnectionError, RuntimeError, ValueError) as e:
        where = f"--address {address}" if address else "local Ray"
        raise GridError(f"{where}: cannot start or join Ray: {' '.join(str(e).split())}") \
            from None
    try:
        _quiet_loggers()  # again: ray.init configures the "ray" logger
        _print_dashboard(console, ctx.dashboard_url, local=address is None, host=dashboard_host)
        yield address is None
    finally:
        ray.shutdown()


def check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """GridError at once when host:port does not answer (Ray itself retries for minutes)."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise GridError(f"--address {address}: expected auto, host:port or ray://host:port")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as e:
        raise GridError(f"--address {address}: no Ray there ({e.strerror or e}); start one "
                        f"with `ray start --head` (docs/cluster.md)") from None


def _quiet_loggers() -> None:
    for name, level in QUIET_LOGGERS.items():
        logging.getLogger(name).setLevel(level)


def token_path() -> Path:
    """Where Ray keeps the cluster token (RAY_AUTH_TOKEN_PATH, else ~/.ray/auth_token)."""
    return Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token")


def _print_dashboard(console: Console, url: str | None, *, local: bool, host: str) -> None:
    if not url:
        console.print("Ray dashboard: not running on this cluster")
        return
    url = url if "://" in url else f"http://{url}"
    if os.environ.get("RAY_AUTH_MODE", "").lower() == "token":
        login = (f"log in with the token in {token_path()} (the page asks for it; for the API: "
                 f"header 'Authorization: Bearer <token>')")
    else:
        login = "no token authentication on this cluster"
    console.print(f"Ray dashboard: {url}  ({login})")
    if local and host not in ("127.0.0.1", "localhost"):
        console.print(f"[yellow]the dashboard listens on {host}: reachable from the network; "
                      f"anyone with the token can run code on this machine[/]")


def check_shared_store(store: Store) -> None:
    """A local folder only works when every trial runs on this machine."""
    if getattr(store, "root", None) is None:
        return  # s3://: shared by construction
    ips = sorted({n["NodeManagerAddress"] for n in ray.nodes() if n.get("Alive")})
    here = ray.util.get_node_ip_address()
    if len(ips) > 1 or (ips and here not in ips):
        raise GridError(f"store {store.uri}: a local folder, but the Ray cluster runs on "
                        f"{', '.join(ips)}; a multi-node cluster needs a shared store: "
                        f"--store s3://bucket/prefix")


def trial_resources(resources: dict, console: Console) -> dict[str, float]:
    """Tune's request per trial; gpu auto -> 1 when the cluster has GPUs, else 0. Warns
    when no node can hold one trial (it would wait, silently, for an autoscaled node)."""
    gpu = resources["gpu"]
    if gpu == "auto":
        gpu = 1 if ray.cluster_resources().get("GPU", 0) > 0 else 0
    want = {"CPU": float(resources["cpu"]), "GPU": float(gpu)}
    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    if not any(all(n.get(r, 0) >= v for r, v in want.items()) for n in nodes):
        console.print(f"[yellow]no node of the cluster has {want['CPU']:g} CPUs and "
                      f"{want['GPU']:g} GPUs for one trial (resources: in the spec); "
                      f"the trials wait until such a node joins[/]")
    return {"cpu": want["CPU"], "gpu": want["GPU"]}


# -- storage of Tune's state and checkpoints ---------------------------------------------------
def store_location(store: Store) -> str:
    """The store as trials on other processes open it: an absolute folder, or s3://..."""
    root = getattr(store, "root", None)
    return str(Path(root).resolve()) if root is not None else store.uri


def tune_storage(store: Store, grid: str) -> tuple[str, pafs.FileSystem]:
    """(path, filesystem) of `<store>/<grid>/_tune`; an absolute folder for a local store."""
    root = getattr(store, "root", None)
    if root is not None:
        return str((Path(root) / grid / TUNE_DIR).resolve()), pafs.LocalFileSystem()
    path = f"{store.uri}/{grid}/{TUNE_DIR}"
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    if not endpoint:
        fs, inner = pafs.FileSystem.from_uri(path)
        return inner, fs
    parts = urlsplit(endpoint)  # an S3-compatible server (MinIO, Ceph...), as boto3 uses it
    fs = pafs.S3FileSystem(endpoint_override=parts.netloc or parts.path,
                           scheme=parts.scheme or "https",
                           region=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"))
    return path[len("s3://"):], fs


def _checkpoints(store: Store, grid: str) -> dict[str, tuple[str, list[str]]]:
    """Trial dir -> (its latest checkpoint, the cell keys in it), over every launch."""
    path, fs = tune_storage(store, grid)
    out = {}
    for d in _subdirs(fs, f"{path}/{grid}"):
        ckpts = sorted(p for p in _subdirs(fs, d) if Path(p).name.startswith("checkpoint_"))
        keys = []
        if ckpts:
            keys = [Path(i.path).name[len("state_"):-len(".pt")] for i in fs.get_file_info(
                pafs.FileSelector(ckpts[-1])) if Path(i.path).name.startswith("state_")]
        out[d] = (ckpts[-1] if ckpts else "", keys)
    return out


def _subdirs(fs: pafs.FileSystem, path: str) -> list[str]:
    infos = fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
    return [i.path for i in infos if i.type == pafs.FileType.Directory]


def previous_checkpoints(store: Store, grid: str, keys: list[str]) -> dict[str, str]:
    """Cell key -> the newest checkpoint holding its state left by an earlier launch (a
    killed launch resumes there). Trial dirs end in the launch's time stamp."""
    found: dict[str, tuple[str, str]] = {}
    for d, (ckpt, in_it) in _checkpoints(store, grid).items():
        stamp = Path(d).name.rsplit("_", 1)[-1]
        for key in set(in_it) & set(keys):
            if key not in found or stamp > found[key][0]:
                found[key] = (stamp, ckpt)
    return {key: ckpt for key, (_, ckpt) in found.items()}


def prune_checkpoints(store: Store, grid: str) -> None:
    """Delete the trial dirs whose cells are all finished: their checkpoints are of no use."""
    statuses = store.statuses(grid)
    _, fs = tune_storage(store, grid)
    for d, (_, keys) in _checkpoints(store, grid).items():
        if keys and all(statuses.get(k) in T.FINISHED for k in keys):
            fs.delete_dir(d)


# -- the trials ---------------------------------------------------------------------------------
def _trainable(config: dict, units: dict, run: dict) -> None:
    """One Tune trial: resume (this launch's retry, else an earlier launch's checkpoint),
    train, report every epoch with a checkpoint, write the rows (orchestrator/trial.py)."""
    os.environ.update(run["env"])  # the testing hooks, forwarded from the launch
    cells = [Trial.from_dict(d) for d in units[config["cell"]]]
    keys = [t.key for t in cells]
    resumes: dict[str, dict] = {}
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as d:
            resumes = T.load_states(d, keys)
    else:
        _, fs = tune_storage(open_store(run["store"]), cells[0].grid)
        for path in sorted({run["resume"][k] for k in keys if k in run["resume"]}):
            with tune.Checkpoint(path, filesystem=fs).as_directory() as d:
                resumes.update(T.load_states(d, [k for k in keys
                                                 if run["resume"].get(k) == path]))
    T.run_unit(cells, store_uri=run["store"], spec_sha256=run["sha256"], resumes=resumes,
               checkpoint=_report)


def _report(metrics: dict, files: dict[str, bytes]) -> None:
    with tempfile.TemporaryDirectory(prefix="grid-checkpoint-") as d:
        for name, data in files.items():
            Path(d, name).write_bytes(data)
        # tune.report copies the folder to the storage before it returns
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(d))


def _trial_name(trial) -> str:
    return trial.config["cell"]


def _trial_dirname(trial) -> str:
    return f"{trial.config['cell']}_{trial.config['launch']}"


class TuneProgress(tune.Callback):
    """Feeds Tune's trial events to the GridProgress display, and prints one line per
    finished, failed or retried trial (what stays in a log file)."""

    def __init__(self, progress: GridProgress, console: Console):
        self.progress, self.console = progress, console

    def __getstate__(self):  # Tune pickles its run config; the console stays here
        return {"progress": self.progress, "console": None}

    def on_trial_start(self, iteration, trials, trial, **info):
        self.progress.start(_trial_name(trial))

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self.progress.result(_trial_name(trial), result)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.progress.finish(_trial_name(trial))
        self._say(f"[green]done[/]    {_trial_name(trial)}")

    def on_trial_recover(self, iteration, trials, trial, **info):
        self.progress.retry(_trial_name(trial))
        self._say(f"[yellow]retry[/]   {_trial_name(trial)}: {_trial_error(trial)}")

    def on_trial_error(self, iteration, trials, trial, **info):
        error = _trial_error(trial)
        self.progress.fail(_trial_name(trial), error)
        self._say(f"[red]failed[/]  {_trial_name(trial)}: {error}")

    def _say(self, text: str) -> None:
        if self.console is not None:
            self.console.print(text, highlight=False)


def _trial_error(trial) -> str:
    """The last error of a Tune trial, one line (Tune appends each failure to a file)."""
    try:  # the driver's own copy first: the storage copy is synced later
        local = trial.error_file
        text = Path(local).read_text() if local and Path(local).exists() else trial.get_error()
        return _first_line(text)
    except Exception:  # noqa: BLE001 - a display nicety must not stop the grid
        return "unknown error"


def _first_line(text: str | None) -> str:
    lines = [ln.strip() for ln in (text or "").splitlines() if ln.strip()]
    # Ray wraps the trial's exception: its last line is the error itself.
    return lines[-1] if lines else "unknown error"


def _fit(spec, store: Store, units: list[list[Trial]], skipped: int,
         max_concurrent: int | None, console: Console):
    """Run the units as one Tune experiment with the live display; Tune's ResultGrid."""
    labels = {T.unit_label(u): u for u in units}
    keys = [t.key for u in units for t in u]
    run = {"store": store_location(store), "sha256": spec.sha256,
           "resume": previous_checkpoints(store, spec.name, keys),
           "env": {k: os.environ[k] for k in T.HOOK_ENV if k in os.environ}}
    if run["resume"]:
        console.print(f"resuming {len(run['resume'])} cells from the checkpoints of an "
                      f"earlier launch")
    resources = trial_resources(spec.resources, console)
    console.print(f"{spec.name}: running {len(keys)} cells as {len(units)} Tune trials, "
                  f"{resources['cpu']:g} CPU + {resources['gpu']:g} GPU each")
    progress = GridProgress(spec.name, {lab: (len(u), u[0].config["train"]["epochs"])
                                        for lab, u in labels.items()}, skipped=skipped)
    trainable = tune.with_parameters(
        _trainable, units={lab: [t.to_dict() for t in u] for lab, u in labels.items()}, run=run)
    tuner = _tuner(spec, store, tune.with_resources(trainable, resources), list(labels),
                   max_concurrent, TuneProgress(progress, console))
    if not console.is_terminal:  # a log file: the per-trial lines and one summary
        results = tuner.fit()
        console.print(progress.summary_line(), highlight=False)
        return results
    with Live(get_renderable=progress.render, console=console, refresh_per_second=1):
        return tuner.fit()


def _tuner(spec, store: Store, trainable, labels: list[str], max_concurrent: int | None,
           callback: tune.Callback) -> tune.Tuner:
    """One trial per label (a cell or a pack), named by it; retried from its last
    checkpoint up to spec.max_failures times."""
    path, fs = tune_storage(store, spec.name)
    return tune.Tuner(
        trainable,
        param_space={"cell": tune.grid_search(labels),
                     "launch": datetime.now().strftime("%Y%m%d-%H%M%S")},
        tune_config=tune.TuneConfig(max_concurrent_trials=max_concurrent,
                                    # one process per CPU slot for the whole grid: a new
                                    # process per cell would import torch again each time
                                    reuse_actors=True,
                                    trial_name_creator=_trial_name,
                                    trial_dirname_creator=_trial_dirname),
        run_config=tune.RunConfig(
            name=spec.name, storage_path=path, storage_filesystem=fs, verbose=0,
            progress_reporter=tune.CLIReporter(max_report_frequency=10**9),  # silent
            callbacks=[callback],
            failure_config=tune.FailureConfig(max_failures=spec.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=KEEP_CHECKPOINTS)))


def _finish(spec, store: Store, units: list[list[Trial]], results, console: Console) -> int:
    """The end report; failed rows for cells whose trial died without writing one."""
    tune_errors = {_result_label(r): str(r.error) for r in results if r.error is not None}
    statuses = store.statuses(spec.name)
    problems: list[tuple[Trial, str]] = []
    for unit in units:
        for t in unit:
            status = statuses.get(t.key)
            if status in T.FINISHED:
                continue
            if status is None and T.unit_label(unit) in tune_errors:
                error = _first_line(tune_errors[T.unit_label(unit)])
                store.write_trial(spec.name, t.key, T.failed_row(t, spec.sha256, error), [])
                status = "failed"
            problems.append((t, "did not run (interrupted)" if status is None else ""))
    errors = _row_errors(store, spec.name) if problems else {}
    done = sum(len(u) for u in units) - len(problems)
    if not problems:
        console.print(f"[green]{spec.name}: all {done} cells finished[/]")
        return 0
    console.print(f"[red]{spec.name}: {len(problems)} of {done + len(problems)} cells "
                  f"did not finish[/] (rerun `grid launch` to retry them)")
    for t, why in problems:
        params = ", ".join(f"{axis_label(a)}={v}" for a, v in t.params.items())
        error = (why or errors.get(t.key) or "failed").replace("\n", "\n      ")
        console.print(Text.assemble(("  " + t.key, "red"), f" {params}: {error}"))
    return 1


def _result_label(result) -> str:
    """A Tune result's label; a trial that never started has no config, only its dir."""
    if result.config:
        return result.config["cell"]
    return Path(result.path).name.rsplit("_", 1)[0]


def _row_errors(store: Store, grid: str) -> dict[str, str]:
    table = store.read_trials(grid)
    if "error" not in table.column_names:
        return {}
    return {k: e for k, e in zip(table.column("key").to_pylist(),
                                 table.column("error").to_pylist()) if e}
