"""Pruning: what a store accumulates and no reader needs, removed under the grid's lease.

- Stale curves: `epochs/<key>/<run_id>.parquet` files that no committed row names and no
  writer can still commit (a rerun's predecessor, a run killed between its curves and its
  row, a writer refused by the lease; see `stale_curves`),
  and `epochs/<key>.parquet` of the previous release once a newer row replaced it.
- Temp files of killed local writes: `.<name>.<pid>.<rand>.tmp`, whose writer (a process of
  this machine: a local store is one machine's folder) is gone.
- The async halving's rung records of cells whose result is committed
  (`<grid>/rungs/<key>.json`: a relaunch after a kill needs them only for unfinished cells).
- Tune's folder `<grid>/_tune` of a launch that finished every cell (`tune=True`): its
  experiment state and checkpoints are of no further use.

It moves the failures of a store of the previous release under `trials/` (results/store/layout.py),
then compacts the grid's rows into the store's index (`results.store.reader.write_index`), so that a
first read on another machine costs one GET instead of one per cell, and records what the
store holds (`<grid>/_index/usage.json`, which `grid status` shows): all from one listing
of the grid.

`grid launch` prunes under its lease, before its trials start and after they end, when no
commit of its own is in flight; a commit of another launch is refused by the lease anyway.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from datetime import datetime, timezone

from results.store import curve_index, layout, reader
from results.store.base import RUNGS, Store
from results.store.schema import FINISHED

TUNE_DIR = "_tune"
ORPHAN_TMP_S = 3600.0  # a temp file without a readable pid: removed once an hour old


def stale_curves(
    store: Store,
    grid: str,
    listed: list[str] | None = None,
    settled: Callable[[int], bool] | None = None,
) -> list[str]:
    """The curve files of `grid` that no committed row names and no writer can still
    commit (`listed`: the grid's files, when the caller listed them already).

    A curve's writer may be a launch that lost the lease and does not know it yet: it wrote
    its curves, and its row's compare-and-swap is still to come. Deleting those curves would
    let that commit name curves that are gone. So a curve of generation g (its run id says
    it: results/store/layout.py, `new_run_id`) goes only when its writer can no longer
    commit: its cell's row is of a newer generation than g (the row's swap refuses an older
    writer), or of g itself (the launch of generation g committed that cell by another
    attempt: it trains a cell once at a time and never again once committed), or
    `settled(g)` (every writer of generation g has ended: the caller knows, e.g. this
    launch's own trials after they ended, or a launch that released its lease). A curve
    without a generation (an unfenced write, an earlier release) goes once unnamed."""
    rows = reader.latest_per_key(store._rows(grid, "trials", ["run_id", "generation"]))
    keys = rows.column("key").to_pylist()

    def column(name: str) -> list:
        return rows.column(name).to_pylist() if name in rows.column_names else [None] * len(keys)

    committed = {layout.curve_name(grid, k, r) for k, r in zip(keys, column("run_id"), strict=True)}
    row_generation = dict(zip(keys, column("generation"), strict=True))
    if listed is None:
        listed = store.list_objects(f"{grid}/epochs")

    def writer_done(name: str) -> bool:
        generation = layout.run_generation(name)
        if generation is None:
            return True
        newer = row_generation.get(name.rsplit("/", 2)[-2])
        if newer is not None and int(newer) >= generation:
            return True
        return settled is not None and settled(generation)

    return sorted(
        n
        for n in listed
        if n.startswith(f"{grid}/epochs/")
        and layout.is_result(n)
        and n not in committed
        and writer_done(n)
    )


def finished_rung_records(store: Store, grid: str, listed: list[str]) -> list[str]:
    """The async halving's rung records (`Store.write_rungs`) of cells whose result is
    committed: their epoch rows hold the same scores."""
    statuses = store.statuses(grid)
    return [
        n
        for n in listed
        if n.startswith(f"{grid}/{RUNGS}/")
        and statuses.get(n.rsplit("/", 1)[-1].removesuffix(".json")) in FINISHED
    ]


def dead_temp_files(
    store: Store, grid: str, now: float | None = None, listed: list[str] | None = None
) -> list[str]:
    """Temp files of killed local writes under `grid` (none on S3: a PUT is atomic)."""
    root = getattr(store, "root", None)
    if root is None:
        return []
    now = time.time() if now is None else now
    out = []
    for name in store.list_objects(grid) if listed is None else listed:
        base = name.rsplit("/", 1)[-1]
        if not (base.startswith(".") and base.endswith(".tmp")):
            continue
        pid = _pid_of(base)
        if pid is not None and pid != os.getpid() and not _alive(pid):
            out.append(name)
        elif pid is None and now - _mtime(root, name) > ORPHAN_TMP_S:
            out.append(name)
    return sorted(out)


def _pid_of(base: str) -> int | None:
    parts = base.split(".")  # '', name..., pid, rand, 'tmp'
    try:
        return int(parts[-3])
    except (IndexError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _mtime(root, name: str) -> float:
    try:
        return os.stat(os.path.join(root, name)).st_mtime
    except OSError:
        return float("inf")


def _drop_empty_dirs(store: Store, grid: str, name: str) -> None:
    """A local store's folders emptied by a deletion go too (S3 has no folders)."""
    root = getattr(store, "root", None)
    parent = name.rsplit("/", 1)[0]
    while root is not None and parent.startswith(f"{grid}/") and parent.count("/") > 1:
        try:
            os.rmdir(os.path.join(root, parent))
        except OSError:  # not empty, or gone
            return
        parent = parent.rsplit("/", 1)[0]


def prune(
    store: Store,
    grid: str,
    *,
    tune: bool = False,
    rungs: list[int] | None = None,
    settled: Callable[[int], bool] | None = None,
) -> dict[str, int]:
    """Delete `grid`'s stale curves, dead temp files and finished cells' rung records, and
    with `tune` its Tune folder;
    move the previous release's failures under `trials/` (results/store/layout.py); compact the
    rows into the index, and with `rungs` (a halving's epochs) the rung rows
    (results/store/curve_index.py); record what the store holds. {what: how many objects}. Call
    it under the grid's lease. One listing of the grid; the rows are those this store object
    read already, if it did (the caller forgets them when they may have changed). `settled`:
    the lease generations whose writers have all ended (see `stale_curves`)."""
    scan = store._scan_grid(grid)  # the rows' reads below reuse it, unless read already
    moved = _move_legacy_failures(store, grid, scan)
    listed = sorted(scan)
    found = {
        "curves": stale_curves(store, grid, listed, settled),
        "temp": dead_temp_files(store, grid, listed=listed),
        "tune": [n for n in listed if n.startswith(f"{grid}/{TUNE_DIR}/")] if tune else [],
        "rungs": finished_rung_records(store, grid, listed),
    }
    for names in found.values():
        for name in names:
            store.delete_object(name)
            _drop_empty_dirs(store, grid, name)
            scan.pop(name, None)
    written = reader.write_index(store, grid, moved=True)
    if rungs:
        rows = reader.latest_per_key(store._rows(grid, "trials", ["run_id"]))
        written[f"{grid}/{curve_index.NAME}"] = curve_index.write(store, grid, rows, rungs)
    for name, size in written.items():
        if size is None:
            scan.pop(name, None)
        else:
            scan[name] = (None, size)
    scan[f"{grid}/{USAGE}"] = (None, 100)  # about its own size
    record = {
        "objects": len(scan),
        "bytes": sum(size for _, size in scan.values()),
        "counted": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    store.put_object(f"{grid}/{USAGE}", json.dumps(record).encode())
    return {what: len(names) for what, names in found.items()} | ({"moved": moved} if moved else {})


def _move_legacy_failures(store: Store, grid: str, scan: dict) -> int:
    """Move the previous release's `failures/<key>.parquet` to `trials/_failures/` (unless
    this release wrote a newer one there); how many moved. The index written next says
    that the grid has no `failures/` left (`reader.write_index(moved=True)`)."""
    legacy = [
        n
        for n in scan
        if n.startswith(f"{grid}/{layout.LEGACY_FAILURES}/") and layout.kind_of(grid, n)
    ]
    for name in legacy:
        key = name.rsplit("/", 1)[-1].removesuffix(".parquet")
        new = layout.failure_name(grid, key)
        found = store.read_tagged(name)
        if found is not None and new not in scan:
            store.put_object(new, found[0])
            scan[new] = (None, len(found[0]))
        store.delete_object(name)
        scan.pop(name, None)
    if legacy:
        store.forget()  # the rows moved: read them again
    return len(legacy)


USAGE = f"{reader.INDEX}/usage.json"  # what the store holds, counted by the last prune


def recorded_usage(store: Store, grid: str) -> dict | None:
    """{objects, bytes, counted} as the last launch's pruning counted them; None if none
    did (one GET)."""
    found = store.read_tagged(f"{grid}/{USAGE}")
    if found is None:
        return None
    try:
        record = json.loads(found[0])
        return record if {"objects", "bytes", "counted"} <= set(record) else None
    except (ValueError, TypeError):
        return None
