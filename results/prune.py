"""Pruning: what a store accumulates and no reader needs, removed under the grid's lease.

- Stale curves: `epochs/<key>/<run_id>.parquet` files that no committed row names (a rerun's
  predecessor, a run killed between its curves and its row, a writer refused by the lease),
  and `epochs/<key>.parquet` of the previous release once a newer row replaced it.
- Temp files of killed local writes: `.<name>.<pid>.<rand>.tmp`, whose writer (a process of
  this machine: a local store is one machine's folder) is gone.
- Tune's folder `<grid>/_tune` of a launch that finished every cell (`tune=True`): its
  experiment state and checkpoints are of no further use.

It then compacts the grid's rows into the store's index (`results.reader.write_index`), so
that a first read on another machine costs one GET instead of one per cell.

`grid launch` prunes under its lease, before its trials start and after they end, when no
commit of its own is in flight; a commit of another launch is refused by the lease anyway.
"""

from __future__ import annotations

import os
import time

from results import reader
from results.base import Store

TUNE_DIR = "_tune"
ORPHAN_TMP_S = 3600.0  # a temp file without a readable pid: removed once an hour old


def stale_curves(store: Store, grid: str) -> list[str]:
    """The curve files of `grid` that no committed row names."""
    rows = reader.latest_per_key(store._rows(grid, "trials", ["run_id"]))
    keys = rows.column("key").to_pylist()
    runs = (
        rows.column("run_id").to_pylist() if "run_id" in rows.column_names else [None] * len(keys)
    )
    committed = {reader.curve_name(grid, k, r) for k, r in zip(keys, runs, strict=True)}
    return sorted(
        n for n in store._list(f"{grid}/epochs") if reader.is_result(n) and n not in committed
    )


def dead_temp_files(store: Store, grid: str, now: float | None = None) -> list[str]:
    """Temp files of killed local writes under `grid` (none on S3: a PUT is atomic)."""
    root = getattr(store, "root", None)
    if root is None:
        return []
    now = time.time() if now is None else now
    out = []
    for name in store._list(grid):
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


def prune(store: Store, grid: str, *, tune: bool = False) -> dict[str, int]:
    """Delete `grid`'s stale curves and dead temp files, and with `tune` its Tune folder;
    {what: how many objects}. Call it under the grid's lease."""
    store.forget()
    found = {
        "curves": stale_curves(store, grid),
        "temp": dead_temp_files(store, grid),
        "tune": store._list(f"{grid}/{TUNE_DIR}") if tune else [],
    }
    for names in found.values():
        for name in names:
            store._delete(name)
            _drop_empty_dirs(store, grid, name)
    store.forget()
    reader.write_index(store, grid)
    return {what: len(names) for what, names in found.items()}
