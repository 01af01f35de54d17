"""`grid launch`: the grid's unfinished cells as Ray Tune trials.

The steps, in order, each in its own module:
1. select the cells without a result (`units.select_cells`), group them into units, and
   order them longest first (`orchestrator/planning/order.py`, `start_order` below);
2. take the grid's lease in the store (`results/store/lease.py`): one launch per grid and store;
3. pre-flight, before any trial starts: the store is writable, the data set is readable or
   downloadable where trials run, and one trial fits a node (`resources.py`, `session.py`);
4. the Ray session (`session.py`, after `raycompat.check_ray`), the cells' checkpoints left
   by earlier launches (`results/store/checkpoints.py`: one listing), the Tune experiment
   (`experiment.py`);
5. the end report (below): exit 0 when every cell finished, 1 when some did not.

Modules that import ray: session, experiment, slot, scheduler, monitor and raycompat; nothing
under `trainers/` or `results/` does.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from rich.console import Console
from rich.text import Text

from orchestrator.execution import trial
from orchestrator.execution.units import group_cells, select_cells, unit_label
from orchestrator.spec.expand import Cell, expand
from results.store import open_store, prune
from results.store.base import Fenced, Store
from results.store.lease import Lease, LeaseHeld, held, peek, unchanged_since
from results.store.schema import FINISHED
from trainers.config import axis_label


def launch(
    spec,
    *,
    store_uri: str | None = None,
    address: str | None = None,
    max_concurrent: int | None = None,
    force: bool = False,
    dry_run: bool = False,
    wait: bool = False,
    console: Console | None = None,
    dashboard_host: str = "127.0.0.1",
    yes: bool = True,
    cells: list[Cell] | None = None,
    rerun: frozenset[str] = frozenset(),
    share: dict | None = None,
) -> int:
    """Run the spec's unfinished cells as Tune trials; 0 when every cell is completed or
    diverged, 1 when some did not finish (listed with their errors), another launch holds
    the grid (unless `wait`) or a costly launch was not confirmed (`yes` False: the CLI
    asks, `orchestrator/planning/cost.py`). A stage (`orchestrator/stages/launch.py`) passes its
    `cells` (their parents attached; default: the spec's) and `rerun`, the keys that run
    even when finished (stale children, parents without kept weights). `share`: the
    launch's part in the cluster's fair share (owner, weight, priority; default: the
    caller, weight 1, priority 0: `orchestrator/execution/fairshare.py`)."""
    console = console or Console()
    store = open_store(store_uri)
    store.check_writable()
    cells = cells if cells is not None else expand(spec)
    seen = peek(store, spec.name)  # before the read: was the grid written since? (below)
    todo, skipped = select_cells(cells, _statuses(store, spec, rerun), force, bool(spec.halving))
    if not todo:
        _say_skipped(console, len(skipped), bool(spec.halving))
        console.print(f"{spec.name}: all {len(cells)} cells are finished; nothing to run")
        if not dry_run:
            _tidy(store, spec.name, seen, console)
        return 0
    if dry_run:
        _print_plan(console, spec, start_order(spec, store, todo, cells), len(skipped))
    if not _cost(spec, todo, address, console, yes=yes or dry_run) or dry_run:
        return 0 if dry_run else 1
    try:
        with held(
            Lease(store, spec.name), wait=wait, say=lambda s: console.print(Text(s))
        ) as lease:
            if not unchanged_since(seen, lease):
                # another launch held the grid since the read (we waited for it, took over
                # its stale lease, or it ran while we asked): it may have finished cells
                store.forget()
                todo, skipped = select_cells(
                    cells, _statuses(store, spec, rerun), force, bool(spec.halving)
                )
            _say_skipped(console, len(skipped), bool(spec.halving))
            if not todo:  # the launch we waited for finished them
                console.print(f"{spec.name}: all {len(cells)} cells are finished; nothing to run")
                return 0
            rungs = spec.halving and list(spec.halving["rungs"])  # their rows' index too
            # under the lease: no commit of ours in flight (and none of another launch's lost)
            prune.prune(store, spec.name, rungs=rungs, settled=lease.settled())
            status = _run(
                spec,
                store,
                todo,
                len(skipped),
                address=address,
                force=force,
                max_concurrent=max_concurrent,
                console=console,
                dashboard_host=dashboard_host,
                lease=lease,
                rerun=rerun,
                cells=cells,
                share=share if share is not None else {},
            )
            if lease.lost.is_set() or not lease.check():
                console.print(
                    Text(
                        f"{spec.name}: this launch lost the grid's lease to another launch "
                        "and stopped; its results written since were refused",
                        style="red",
                    )
                )
                return 1
            store.forget()  # the trials wrote: prune reads the rows again
            prune.prune(
                store,
                spec.name,
                tune=status == 0,
                rungs=rungs,
                settled=lease.settled(ended=True),
            )
            return status
    except LeaseHeld as e:
        console.print(Text(f"{e}", style="red"))
        return 1


def _statuses(store: Store, spec, rerun: frozenset[str]) -> dict[str, str]:
    """The cells' statuses, those in `rerun` left out (they run as if missing)."""
    return {k: v for k, v in store.statuses(spec.name).items() if k not in rerun}


def _tidy(store: Store, grid: str, seen: tuple[int, bool] | None, console: Console) -> None:
    """A finished grid whose last launch was killed after its last commit keeps what that
    launch left (Tune's folder, the last cells' checkpoints): removed here, under the lease,
    unless a live launch holds it. A launch that released its lease pruned what it left, so
    only an unreleased lease (`seen`, read by `peek` before) costs the two listings below."""
    from results.store import checkpoints

    if seen is None or seen[1]:
        return  # the usual case: the last launch released the lease, nothing is left
    if not checkpoints.listed(store, grid) and not store.list_objects(f"{grid}/{prune.TUNE_DIR}"):
        return
    try:
        with held(Lease(store, grid), say=lambda s: console.print(Text(s))):
            for key in checkpoints.listed(store, grid):
                checkpoints.delete(store, grid, key)
            prune.prune(store, grid, tune=True)
    except LeaseHeld:
        pass


def _cost(spec, todo: list[Cell], address: str | None, console: Console, yes: bool) -> bool:
    """Say what the launch will cost; False when a costly CPU-only launch is declined."""
    from orchestrator.execution import session
    from orchestrator.planning import cost

    here = session.starts_local(address)
    return cost.say_and_confirm(spec, todo, console, here=here, yes=yes)


def _run(
    spec,
    store: Store,
    todo: list[Cell],
    skipped: int,
    *,
    address: str | None,
    force: bool,
    max_concurrent: int | None,
    console: Console,
    dashboard_host: str,
    lease: Lease | None = None,
    rerun: frozenset[str] = frozenset(),
    cells: list[Cell] | None = None,
    share: dict | None = None,
) -> int:
    from orchestrator.execution import checkpoints, experiment, raycompat, session
    from orchestrator.execution.monitor import job_metadata
    from orchestrator.planning import preflight
    from orchestrator.planning.resources import check_placement, decide_cpu, decide_gpu

    raycompat.check_ray()
    units = start_order(spec, store, todo, cells if cells is not None else todo)
    datasets = _datasets(todo)
    if spec.resources["gpu"] != "auto":  # checked before Ray starts; `auto` once it is up
        preflight.check_devices(spec, todo, float(spec.resources["gpu"]))
    preflight.check_packs(spec, todo)
    local = session.starts_local(address)
    if local:  # the trials run on this machine: check the data here, before Ray starts
        _check_data_here(datasets, console)
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    metadata = job_metadata(
        spec, store.uri, total=len(todo) + skipped, to_run=len(todo), skipped=skipped
    )
    with session.ray_session(address, dashboard_host, console, metadata):
        session.check_shared_store(store)
        cluster = session.describe_cluster(local)
        gpu, why = decide_gpu(spec.resources["gpu"], cluster)
        cpu, cpu_why = decide_cpu(spec.resources["cpu"], gpu, cluster)
        cpu_why = f"; {cpu_why}" if spec.resources["cpu"] == "auto" else ""  # said when decided
        resources = {"cpu": cpu, "gpu": gpu}
        preflight.check(spec, todo, gpu, cluster)
        warning = check_placement({"CPU": resources["cpu"], "GPU": gpu}, cluster)
        if warning:
            console.print(f"[yellow]{warning}[/]")
        if not local and any(d["name"] != "synthetic" for d in datasets):
            _say_nodes(session.preflight_nodes(datasets), console)
        running = frozenset(t.key for t in todo)
        resume = _earlier_checkpoints(store, spec.name, todo, force, rerun)
        if resume:
            console.print(f"resuming {resume} cells from the checkpoints of an earlier launch")
        console.print(
            f"{spec.name}: running {len(todo)} cells as {len(units)} Tune trials, "
            f"{resources['cpu']:g} CPU + {gpu:g} GPU each ({why}{cpu_why})"
        )
        run = {
            "store": checkpoints.store_location(store),
            "sha256": spec.sha256,
            "halving": spec.halving,
        }
        results = experiment.fit(
            spec,
            store,
            units,
            run,
            resources,
            skipped,
            max_concurrent,
            console,
            _rungs(spec, store, todo, console, fresh=running if force else rerun),
            lease=lease,
            share=share,
        )
        store.forget()  # the trials wrote: read the store again
        if lease is not None and not lease.check():  # its trials' rows were refused
            return 1
    return _finish(spec, store, units, results, started, console, lease)


def start_order(spec, store: Store, todo: list[Cell], cells: list[Cell]) -> list[list[Cell]]:
    """The units of `todo` in the order they start: the longest first, by the cost model
    corrected by the measured wall time of the finished cells among `cells` (the launch's,
    finished or not), a halving's rows kept together (`orchestrator/planning/order.py`)."""
    from orchestrator.halving.rule import cell_epochs, group_of
    from orchestrator.planning import order
    from orchestrator.planning.cost import CPU_FLOPS, cell_flops
    from orchestrator.planning.estimate import signature

    rows = store.read_trials(spec.name, columns=["wall_s", "epochs"]).to_pylist()
    measured = {r["key"]: r for r in rows if r["status"] in FINISHED}
    finished = {
        c.key: (c, measured[c.key]["wall_s"], measured[c.key]["epochs"])
        for c in cells
        if c.key in measured
    }
    costs = order.predicted_costs(
        todo,
        cell_epochs(spec.halving, cells),
        finished,
        lambda config, epochs: cell_flops(config, epochs) / CPU_FLOPS,
        lambda cell: signature([cell]),
    )
    groups = (
        {c.key: group_of(c.params, spec.halving["over"]) for c in todo} if spec.halving else None
    )
    return order.longest_first(group_cells(todo, spec.resources["pack"]), costs, groups)


def _earlier_checkpoints(
    store: Store, grid: str, todo: list[Cell], force: bool, rerun: frozenset[str] = frozenset()
) -> int:
    """How many cells about to run resume from a checkpoint that an earlier launch left
    (one listing of `<grid>/checkpoints`; each trial then reads its own by key). Those of
    finished cells (a trial that ended between its commit and the delete) are deleted; under
    --force, those of the cells about to run too: they train from scratch."""
    from results.store import checkpoints

    found = checkpoints.listed(store, grid)
    running = {t.key for t in todo}
    stale = found & running if force else found & rerun
    if found - running:
        statuses = store.statuses(grid)
        stale |= {k for k in found - running if statuses.get(k) in FINISHED}
    for key in sorted(stale):
        checkpoints.delete(store, grid, key)
    return 0 if force else len(found & running)


def _rungs(spec, store: Store, todo: list[Cell], console: Console, fresh: frozenset[str]):
    """The halving's records (orchestrator/halving/rule.py): every cell of the spec in its group,
    the rung scores of the finished ones from the store's epoch rows and, under the async
    rule, those an earlier launch recorded for the cells about to run (it was killed before
    they finished; `fresh`: cells that train from scratch, whose records are dropped). The
    decisions of the cells about to run are cleared: each is judged again at a rung it did
    not pass."""
    if not spec.halving:
        return None
    from orchestrator.halving.rule import Rungs, halving_warnings

    cells = expand(spec)
    for line in halving_warnings(spec.halving, [c.config for c in cells]):
        console.print(Text(f"warning: {line}", style="yellow"))
    store.clear_stops(spec.name, {t.key for t in todo})
    split, _, kind = spec.halving["metric"].rpartition("_")
    rows = store.read_epochs(  # only the rung rows, only the judged metric (halving.score)
        spec.name,
        columns=[f"{split}_{'loss' if kind == 'loss' else 'acc'}"],
        epochs=list(spec.halving["rungs"]),
    )
    rungs = Rungs.from_epochs(spec.halving, cells, rows.to_pylist())
    rungs.running = {t.key for t in todo}
    recorded = sum(len(s) for s in rungs.scores.values())
    unfinished = ""
    if spec.halving["rule"] == "async":
        records = store.read_rungs(spec.name, rungs.running - fresh, stale=fresh)
        taken = rungs.add_records(records)
        unfinished = f" (and {taken} of unfinished cells)" if taken else ""
    console.print(
        f"halving: rungs at epochs {', '.join(map(str, spec.halving['rungs']))}, "
        f"keep {spec.halving['keep']:g} of each row by {spec.halving['metric']}; "
        f"{recorded} rung records from earlier launches{unfinished}"
    )
    return rungs


def _datasets(cells: list[Cell]) -> list[dict]:
    """The distinct data sets the cells read (what pre-flight checks)."""
    found = {}
    for t in cells:
        d = t.config["dataset"]
        found[(d["name"], d["root"], d["download"])] = {
            k: d[k] for k in ("name", "root", "download")
        }
    return list(found.values())


def _say_nodes(lines: list[str], console: Console) -> None:
    """The pre-flight check's line per node and data set; a node that left the cluster
    before its check in yellow (it trains nothing in this launch)."""
    for line in lines:
        gone = "left the cluster" in line
        console.print(Text(f"data: {line}", style="yellow" if gone else ""))


def _check_data_here(datasets: list[dict], console: Console) -> None:
    from trainers.data import check_data

    for d in datasets:
        if d["name"] != "synthetic":
            console.print(f"data: {check_data(d)}")


def _say_skipped(console: Console, skipped: int, halving: bool = False) -> None:
    if skipped:
        kinds = "completed, diverged or stopped" if halving else "completed or diverged"
        console.print(f"skipping {skipped} finished cells ({kinds}; --force reruns them)")


def _print_plan(console: Console, spec, units: list[list[Cell]], skipped: int) -> None:
    cells = sum(len(u) for u in units)
    _say_skipped(console, skipped, bool(spec.halving))
    console.print(
        f"{spec.name}: would run {cells} cells as {len(units)} Tune trials "
        f"(dry run: nothing started)"
    )
    for unit in units:
        params = ", ".join(f"{axis_label(a)}={v}" for a, v in unit[0].params.items())
        console.print(f"  {unit_label(unit)}  {params}")


# -- the end report -----------------------------------------------------------------------------
def _finish(
    spec,
    store: Store,
    units: list[list[Cell]],
    results,
    started: str,
    console: Console,
    lease: Lease | None = None,
) -> int:
    """The end report. A unit whose Tune trial failed (or ended on a user error) did not
    finish in this launch even where an earlier result of its cells stays in the store
    (a failed --force rerun); a cell whose trial died without writing its failure gets one
    written here, under the launch's lease generation like every row (refused, and said,
    when the lease was lost meanwhile)."""
    from orchestrator.execution.experiment import GRID_ERROR, first_line

    errors = {_result_label(r): first_line(str(r.error)) for r in results if r.error is not None}
    errors.update(
        {
            _result_label(r): r.metrics[GRID_ERROR]
            for r in results
            if r.error is None and (r.metrics or {}).get(GRID_ERROR)
        }
    )
    reached = {_result_label(r): r.metrics or {} for r in results}
    statuses = store.statuses(spec.name)
    failures = _recent_failures(store, spec.name, started)
    problems: list[tuple[Cell, str]] = []
    for unit in units:
        label = unit_label(unit)
        for t in unit:
            status = statuses.get(t.key)
            if label not in errors and status in FINISHED:
                continue
            if label not in errors:
                problems.append((t, _interrupted(t, reached.get(label, {}))))
                continue
            if t.key not in failures:  # its trial died before it could write a failure
                row = trial.failed_row(t, spec.sha256, errors[label])
                row["generation"] = None if lease is None else lease.generation
                try:
                    store.write_failure(spec.name, t.key, row)
                except Fenced as e:
                    console.print(Text(f"failure of {t.key} not recorded: {e}", style="red"))
            error = failures.get(t.key) or errors[label]
            kept = f"; the earlier {status} result is kept" if status in FINISHED else ""
            problems.append((t, error + kept))
    total = sum(len(u) for u in units)
    stopped = sum(statuses.get(t.key) == "stopped" for u in units for t in u)
    if not problems:
        early = f" ({stopped} stopped at a rung by the halving)" if stopped else ""
        console.print(f"[green]{spec.name}: all {total} cells finished{early}[/]")
        return 0
    console.print(
        f"[red]{spec.name}: {len(problems)} of {total} cells did not finish[/] "
        f"(rerun `grid launch` to retry them; `grid status` lists them)"
    )
    for t, why in problems:
        params = ", ".join(f"{axis_label(a)}={v}" for a, v in t.params.items())
        console.print(
            Text.assemble(
                ("  " + t.key, "red"), f" {params}: {why.replace(chr(10), chr(10) + '      ')}"
            )
        )
    return 1


def _interrupted(cell: Cell, metrics: dict) -> str:
    """How far an interrupted cell got (its trial's last report) and what the next launch
    does with it."""
    total, done = cell.config["train"]["epochs"], int(metrics.get("epoch") or 0)
    if not done:
        return "interrupted before its first epoch; the next launch runs it"
    saved = int(metrics.get("checkpoint_epoch") or 0)
    then = (
        f"the next launch resumes it from its checkpoint of epoch {saved}"
        if saved
        else "no checkpoint yet: the next launch trains it from epoch 1"
    )
    return f"interrupted after {done} of {total} epochs; {then}"


def _result_label(result) -> str:
    """A Tune result's label; a trial that never started has no config, only its dir."""
    if result.config:
        return result.config["cell"]
    return Path(result.path).name.rsplit("_", 1)[0]


def _recent_failures(store: Store, grid: str, since: str) -> dict[str, str]:
    """{key: error} of the failures written since this launch started."""
    table = store.read_failures(grid)
    if "error" not in table.column_names:
        return {}
    rows = zip(
        table.column("key").to_pylist(),
        table.column("error").to_pylist(),
        table.column("ended").to_pylist(),
        strict=True,
    )
    return {k: e or "failed" for k, e, ended in rows if (ended or "") >= since}
