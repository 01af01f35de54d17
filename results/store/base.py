"""The result store's shared logic: the commit of a result (curves under a run id, then the
row naming it, fenced by the lease generation), and reads of only what a command needs
(results/store/reader.py), over four primitives a backend provides (put, get, list, delete) plus
compare-and-swap. The backends are `results/store/local.py` (a folder, and `open_store`) and
`results/s3.py`.
"""

from __future__ import annotations

import io
import json
import uuid
from concurrent.futures import ThreadPoolExecutor

import pyarrow as pa
import pyarrow.parquet as pq

from results.store import layout, reader, schema
from trainers.errors import GridError

COMMIT_TRIES = 5
LEASE = "_lease.json"  # <grid>/_lease.json (results/store/lease.py); '_': readers skip it
RUNGS = "rungs"  # <grid>/rungs/<key>.json: the async halving's records (Store.write_rungs)


class StoreError(GridError):
    """A store operation failed: one line naming the store, what it did and why."""

    def __init__(self, uri: str, action: str, reason: str):
        super().__init__(f"store {uri}: {action}: {reason}")
        self.uri, self.action, self.reason = uri, action, reason

    def __reduce__(self):
        # Ray pickles an exception raised in a trial to the driver; the default rebuilds it
        # from its message alone, which this __init__ refuses (the driver then saw a TypeError)
        return type(self), (self.uri, self.action, self.reason)


class StoreUnreachable(StoreError):
    """The store could not be reached or did not answer (a connection refused or timed out,
    a 5xx): an outage that passes, which a trial retries (orchestrator/execution/slot.py,
    `final`). Not bad input: the `grid` program exits 3, not 2, so that a script or the
    engineer on call can tell "try again later" from "fix the spec"."""

    exit_status = 3


class NotFound(StoreError):
    """The object asked for does not exist (a folder: no such file; S3: NoSuchKey, 404)."""


class Fenced(StoreError):
    """A write refused because the grid's lease moved past the writer's generation."""


class Store:
    """Shared logic over four primitives a backend provides: put, get, list, delete."""

    uri: str
    # Files read at once by a command that reads many (results/store/reader.py): a request
    # to S3 waits on the network, so 16 GETs overlap; a folder's reads wait on the CPU.
    read_threads = 16

    def __str__(self) -> str:
        return self.uri

    @property
    def memo(self) -> dict:
        """What this store object has read in this command (listings, rows, the index),
        which later reads reuse; `forget` drops it. The one in-process cache: the reading
        machine's cache (results/store/reader.py) keeps rows across commands."""
        return self.__dict__.setdefault("_memo", {})

    # -- backend primitives (relative names like "grid/trials/key.parquet") --------------
    def put_object(self, name: str, data: bytes) -> None:
        raise NotImplementedError

    def get_object(self, name: str) -> bytes:
        """The object's bytes; `NotFound` when there is none."""
        raise NotImplementedError

    def list_objects(self, folder: str) -> list[str]:
        raise NotImplementedError

    def delete_object(self, name: str) -> None:
        raise NotImplementedError

    def copy_object(self, source: str, name: str) -> None:
        """Write `name` with `source`'s bytes, atomically (S3: a copy on the server);
        `NotFound` when there is no `source`."""
        self.put_object(name, self.get_object(source))

    def list_grids(self) -> list[str]:
        """The grids that have a trials folder in this store, sorted."""
        raise NotImplementedError

    # -- compare-and-swap, for the launch lease (results/store/lease.py) -------------------------
    def create(self, name: str, data: bytes) -> bool:
        """Write `name` only if it does not exist, atomically; False if it does."""
        raise NotImplementedError

    def read_tagged(self, name: str) -> tuple[bytes, str] | None:
        """(content, version tag) of `name`, or None when it does not exist."""
        raise NotImplementedError

    def replace_if(self, name: str, data: bytes, tag: str) -> bool:
        """Replace `name` only if it is still at version `tag`; False if it changed."""
        raise NotImplementedError

    def delete_if(self, name: str, tag: str) -> bool:
        """Delete `name` only if it is still at version `tag`; False if it changed."""
        raise NotImplementedError

    # -- the interface -----------------------------------------------------------------------
    def check_writable(self) -> None:
        """Write and delete a probe object; GridError naming the store and why if that fails."""
        name = f".grid-probe-{uuid.uuid4().hex}"
        try:
            self.put_object(name, b"probe")
            self.delete_object(name)
        except StoreError as e:  # an outage stays one (exit 3, not 2)
            cls = StoreUnreachable if isinstance(e, StoreUnreachable) else StoreError
            raise cls(self.uri, "not writable", e.reason) from None

    def write_trial(self, grid: str, key: str, row: dict, epochs: list[dict]) -> None:
        """Commit a finished cell's result (a failed row goes to `write_failure`: it never
        replaces a result). The curves go first, under a new run id
        (`epochs/<key>/<run_id>.parquet`); the row, written last, names that run id and the
        lease generation it was written under (`row["generation"]`, set by the launch), and
        is the commit: readers take a cell's curves only from the run its row names. A
        commit whose generation is older than the grid's lease, or than the row it would
        replace, is refused (`Fenced`): a launch that lost its lease replaces nothing.

        Fencing in one request: the lease check first is only the early refusal; a takeover
        may land after it. What cannot be split is the row's compare-and-swap (S3:
        `If-None-Match: *` / `If-Match: <ETag>`; a folder: a link / a swap under a lock):
        it replaces only the row it read, and only when that row's generation is not newer.
        And pruning deletes a curve file only once no writer that can still commit names it
        (its run id carries its generation: results/store/prune.py, `stale_curves`), so a
        fenced-out writer's late commit can neither replace a newer row nor name curves that
        are gone."""
        if row.get("status") not in schema.FINISHED:
            self.write_failure(grid, key, row)
            return
        run_id = layout.new_run_id(row.get("generation"))
        row = {**row, "run_id": run_id}
        meta = schema.file_metadata(row)
        curves = [{**e, "run_id": run_id} for e in epochs]
        table = schema.to_table(curves, meta, columns=(*schema.EPOCH_TYPES, "run_id"))
        curve = layout.curve_name(grid, key, run_id)
        self.put_object(curve, _parquet(table))
        name = layout.row_name(grid, key)
        if row.get("generation") is None:  # an outside tool's write: not fenced
            self.put_object(name, _parquet(schema.to_table([row], meta), statistics=False))
            self._clear_failure(grid, key)
            return
        data = _parquet(schema.to_table([row], meta), statistics=False)
        try:
            self._fence(grid, row.get("generation"))
            for _ in range(COMMIT_TRIES):  # compare-and-swap: another writer may move first
                now = self.read_tagged(name)
                if now is not None:
                    self._fence_row(name, now[0], row.get("generation"))
                if self.create(name, data) if now is None else self.replace_if(name, data, now[1]):
                    break
            else:
                raise Fenced(self.uri, f"commit {name}", "other writers kept committing it first")
        except Fenced:
            self.delete_object(curve)  # garbage now; a kill here leaves it to `prune`
            raise
        self._clear_failure(grid, key)

    def _clear_failure(self, grid: str, key: str) -> None:
        self.delete_object(layout.failure_name(grid, key))
        self.delete_object(layout.legacy_failure_name(grid, key))  # a store of the previous release
        self.forget()

    def write_failure(self, grid: str, key: str, row: dict) -> None:
        """Write (or replace) a cell's last failed attempt, beside any finished row it has,
        which stays as it is; refused (`Fenced`) under a lost lease. The driver's failures
        carry the generation as the trials' do (`row["generation"]`)."""
        self._fence(grid, row.get("generation"))
        self.put_object(
            layout.failure_name(grid, key),
            _parquet(schema.to_table([row], schema.file_metadata(row)), statistics=False),
        )
        self.forget()

    def _fence(self, grid: str, generation: int | None) -> None:
        """Refuse a write of lease generation `generation` when the grid's lease has moved
        past it. A write without one (an outside tool) is not fenced."""
        if generation is None:
            return
        found = self.read_tagged(f"{grid}/{LEASE}")
        if found is None:
            return
        try:
            current = int(json.loads(found[0]).get("generation") or 0)
        except (ValueError, TypeError, AttributeError):
            return
        if current > int(generation):
            raise Fenced(
                self.uri,
                f"write to grid {grid}",
                f"written under lease generation {generation}, but the lease is at "
                f"generation {current}: another launch took the grid over",
            )

    def _fence_row(self, name: str, data: bytes, generation: int | None) -> None:
        try:
            old = pq.read_table(pa.BufferReader(data), columns=["generation"])
            theirs = old.column("generation")[0].as_py()
        except (pa.ArrowException, KeyError, IndexError, ValueError, OSError):
            return  # a row of the previous release, or a torn foreign file
        if theirs is not None and (generation is None or int(generation) < int(theirs)):
            raise Fenced(
                self.uri,
                f"commit {name}",
                f"its row was written under lease generation {theirs}, newer than {generation}",
            )

    def write_stop(self, grid: str, key: str, decision: dict) -> None:
        """A halving's decision to stop cell `key` (orchestrator/halving/scheduler.py), which the
        cell's trial reads back to write itself as stopped."""
        self.put_object(f"{grid}/stops/{key}.json", json.dumps(decision, sort_keys=True).encode())

    def read_stop(self, grid: str, key: str) -> dict | None:
        """The halving's decision to stop cell `key`, or None."""
        found = self.read_tagged(f"{grid}/stops/{key}.json")
        return json.loads(found[0]) if found else None

    def clear_stops(self, grid: str, keys: set[str]) -> int:
        """Forget the decisions of the cells `keys`: they run again and are judged again. One
        listing of the grid's `stops/`, and a DELETE per decision found (`read_threads` at a
        time), not one per cell: a relaunch of 10,000 cells on S3 would wait on each."""
        found = self._records(f"{grid}/stops", keys)
        self._parallel(self.delete_object, list(found.values()))
        return len(found)

    def write_rungs(self, grid: str, key: str, record: dict) -> None:
        """The async halving's rung record of cell `key` in the launch running now ({metric,
        scores: {rung: score}, passed: [rungs]}): what a relaunch after a kill judges against
        before the cell has committed its epoch rows (orchestrator/halving/rule.py)."""
        self.put_object(f"{grid}/{RUNGS}/{key}.json", json.dumps(record, sort_keys=True).encode())

    def read_rungs(self, grid: str, keys: set[str], stale: set[str]) -> dict[str, dict]:
        """{key: rung record} of the cells of `keys` that have one: one listing of the
        grid's `rungs/`, one GET per record of `keys`, and one DELETE per record of `stale`
        (cells that train from scratch). Pruning deletes the records of finished cells
        (results/store/prune.py). The GETs and DELETEs run `read_threads` at a time: a
        relaunch of 10,000 unfinished cells on S3 would otherwise wait on each in turn."""
        todo = self._records(f"{grid}/{RUNGS}", keys | stale)

        def one(key: str) -> dict | None:
            if key in stale:
                self.delete_object(todo[key])
                return None
            try:
                return json.loads(self.get_object(todo[key]))
            except (NotFound, ValueError):  # gone, or torn: the cell is judged without it
                return None

        got = dict(zip(todo, self._parallel(one, list(todo)), strict=True))
        return {k: r for k, r in got.items() if r is not None}

    def _records(self, folder: str, keys: set[str]) -> dict[str, str]:
        """{key: name} of the `<key>.json` records listed in `folder` (one listing) whose key
        is in `keys`; a folder store's write in progress (a hidden temp file) is left out."""
        out = {}
        for name in self.list_objects(folder):
            key = name.rsplit("/", 1)[-1].removesuffix(".json")
            if "/." not in name and key in keys:
                out[key] = name
        return out

    def _parallel(self, fn, items: list) -> list:
        """`fn` of each of `items`, `read_threads` at a time, in order: requests to a store
        wait on the network (or the disk), not on a core. Each item is tried; the first
        error is raised once all are."""
        if self.read_threads == 1 or len(items) < 2:  # no pool for nothing to overlap
            out, error = [], None
            for item in items:
                try:
                    out.append(fn(item))
                except Exception as e:  # noqa: BLE001 - raised below, as the pool would
                    error = error or e
            if error is not None:
                raise error
            return out
        with ThreadPoolExecutor(min(self.read_threads, len(items))) as pool:
            return list(pool.map(fn, items))

    def read_trials(self, grid: str, columns: list[str] | None = None) -> pa.Table:
        """One row per cell of `grid`: its finished row, else its last failure; only
        `columns` (with key and status) when given."""
        finished = reader.latest_per_key(self._rows(grid, "trials", columns))
        failures = self.read_failures(grid, columns)
        done = set(finished.column("key").to_pylist())
        keep = [i for i, k in enumerate(failures.column("key").to_pylist()) if k not in done]
        if not keep:
            return finished
        if not finished.num_rows:
            return failures.take(keep)
        return reader.unify([finished, failures.take(keep)])

    def read_failures(self, grid: str, columns: list[str] | None = None) -> pa.Table:
        """The last failed attempt of every cell that has one (also of finished cells: a
        failed `--force` rerun)."""
        return reader.latest_per_key(self._rows(grid, "failures", columns))

    def read_epochs(
        self, grid: str, columns: list[str] | None = None, epochs: list[int] | None = None
    ) -> pa.Table:
        """The epoch rows of `grid`'s finished cells, each from the run its row names; only
        `columns` (with key and epoch) and the rows of `epochs` when given."""
        rows = reader.latest_per_key(self._rows(grid, "trials", ["run_id"]))
        if epochs is not None:  # a halving's rung rows: through their index
            from results.store import curve_index

            return curve_index.read(self, grid, rows, columns, epochs)
        return reader.read_curves(self, grid, rows, columns, epochs)

    def statuses(self, grid: str) -> dict[str, str]:
        """{key: status} of every cell of `grid` in the store: its finished status, else
        failed."""
        out = {}
        for kind in ("failures", "trials"):  # a finished row wins
            table = self._rows(grid, kind, ["status"])
            out.update(
                zip(
                    table.column("key").to_pylist(), table.column("status").to_pylist(), strict=True
                )
            )
        return out

    def _rows(self, grid: str, kind: str, columns: list[str] | None = None) -> pa.Table:
        """Rows of a kind, through the reading machine's cache (results/store/reader.py). A
        command lists `trials/` once: later reads reuse the first one's table."""
        memo = self.memo
        want = None if columns is None else dict.fromkeys([*reader.KINDS[kind], *columns])
        held = memo.get((grid, kind))  # (rows, the columns they hold when not whole)
        if held is None or (held[1] is not None and (want is None or not set(want) <= held[1])):
            # The first read may read only the columns asked for (files no cache holds:
            # reader.py, `_narrow_rows`); a later need of others reads whole rows.
            first = held is None and want is not None
            memo[(grid, kind)] = reader.read_rows(
                self,
                grid,
                kind,
                listing=self._tags(grid, kind),
                columns=list(want) if first else None,
            )
        table = memo[(grid, kind)][0]
        if want is None:
            return table
        return table.select([c for c in want if c in table.column_names])

    def _tags(self, grid: str, kind: str) -> dict[str, str | None]:
        """{name: version tag} of the listed row files of `kind` (trials or failures)."""
        return {n: t for n, t in self._listing(grid).items() if layout.kind_of(grid, n) == kind}

    def _listing(self, grid: str) -> dict[str, str | None]:
        """{name: tag} under `<grid>/trials/` (finished rows and failures: one listing), and
        under the previous release's `<grid>/failures/` until a launch moved them
        (results/store/layout.py); once per command, or from `usage`'s listing of the grid."""
        memo = self.memo
        if (grid, "listing") not in memo:
            scan = memo.get((grid, "*"))
            if scan is None:
                scan = self.scan_objects(f"{grid}/trials")
                if not reader.failures_moved(self, grid):
                    scan.update(self.scan_objects(f"{grid}/{layout.LEGACY_FAILURES}"))
            memo[(grid, "listing")] = {n: tag for n, (tag, _) in scan.items()}
        return memo[(grid, "listing")]

    def usage(self, grid: str) -> tuple[int, int]:
        """(objects, bytes) the store holds for `grid`, counted now: one listing of its
        folder, which this command's later reads reuse. `grid status` shows the count the
        last launch recorded instead, where there is one (results/store/prune.py)."""
        scan = self._scan_grid(grid)
        return len(scan), sum(size for _, size in scan.values())

    def _scan_grid(self, grid: str) -> dict[str, tuple[str | None, int]]:
        """One listing of the whole grid, which this command's reads of rows then reuse."""
        scan = self.scan_objects(grid)
        self.memo[(grid, "*")] = scan
        return dict(scan)

    def forget(self) -> None:
        """Drop what this object read: the next read lists the store again."""
        self.__dict__.pop("_memo", None)

    def scan_objects(self, folder: str) -> dict[str, tuple[str | None, int]]:
        """{name: (version tag, bytes)} of every file under `folder`; a backend with no
        cheap tag gives None (its rows are never cached)."""
        return {n: (None, 0) for n in self.list_objects(folder)}


def _parquet(table: pa.Table, statistics: bool = True) -> bytes:
    """A curve's file (with column statistics: a reader of many curves, pyarrow.dataset or
    DuckDB, skips the files whose key or epochs a filter rules out), or a row's, without
    them: the min and max of its one row rule out no more than its values, and they made a
    ~100-column row's footer, which every first read of the row decodes, 20 % larger and
    ~25 % slower to decode (BENCHMARKS.md, "The cold read in worker processes")."""
    sink = io.BytesIO()
    pq.write_table(table, sink, write_statistics=statistics)
    return sink.getvalue()
