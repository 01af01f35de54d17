"""The result store's shared logic: one Parquet file per cell, written and read through four
primitives a backend provides (put, get, list, delete) plus compare-and-swap for the lease.
The backends are `results/store.py` (a folder, and `open_store`) and `results/s3.py`.
"""

from __future__ import annotations

import io
import json
import uuid
import warnings
from concurrent.futures import ThreadPoolExecutor

import pyarrow as pa
import pyarrow.parquet as pq

from results import schema
from trainers.errors import GridError

# kind -> required columns
KINDS = {"trials": ("key", "status"), "epochs": ("key", "epoch"), "failures": ("key", "status")}
READ_THREADS = 16  # parallel GETs: an S3 grid of hundreds of cells reads in seconds


class StoreWarning(UserWarning):
    """A result file that was skipped (corrupt, or not written by grid)."""


class StoreError(GridError):
    """A store operation failed: one line naming the store, what it did and why."""

    def __init__(self, uri: str, action: str, reason: str):
        super().__init__(f"store {uri}: {action}: {reason}")
        self.reason = reason


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


class Store:
    """Shared logic over four primitives a backend provides: put, get, list, delete."""

    uri: str

    def __str__(self) -> str:
        return self.uri

    # -- backend primitives (relative names like "grid/trials/key.parquet") --------------
    def _put(self, name: str, data: bytes) -> None:
        raise NotImplementedError

    def _get(self, name: str) -> bytes | str:
        raise NotImplementedError

    def _list(self, folder: str) -> list[str]:
        raise NotImplementedError

    def _delete(self, name: str) -> None:
        raise NotImplementedError

    def list_grids(self) -> list[str]:
        """The grids that have a trials folder in this store, sorted."""
        raise NotImplementedError

    # -- compare-and-swap, for the launch lease (results/lease.py) -------------------------
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
            self._put(name, b"probe")
            self._delete(name)
        except StoreError as e:
            raise StoreError(self.uri, "not writable", e.reason) from None

    def write_trial(self, grid: str, key: str, row: dict, epochs: list[dict]) -> None:
        """Write (or replace) a finished cell's two files, then clear its failure. The epochs
        go first: a trial file is only ever present once its curves are. A failed row goes
        to `write_failure` instead (its epochs are dropped): it never replaces a result."""
        if row.get("status") not in schema.FINISHED:
            self.write_failure(grid, key, row)
            return
        meta = schema.file_metadata(row)
        table = schema.to_table(epochs, meta, columns=tuple(schema.EPOCH_TYPES))
        self._put(f"{grid}/epochs/{key}.parquet", _parquet(table))
        self._put(f"{grid}/trials/{key}.parquet", _parquet(schema.to_table([row], meta)))
        self._delete(f"{grid}/failures/{key}.parquet")

    def write_failure(self, grid: str, key: str, row: dict) -> None:
        """Write (or replace) a cell's last failed attempt, beside any finished row it has,
        which stays as it is."""
        self._put(
            f"{grid}/failures/{key}.parquet",
            _parquet(schema.to_table([row], schema.file_metadata(row))),
        )

    def write_stop(self, grid: str, key: str, decision: dict) -> None:
        """A halving's decision to stop cell `key` (orchestrator/scheduler.py), which the
        cell's trial reads back to write itself as stopped."""
        self._put(f"{grid}/stops/{key}.json", json.dumps(decision, sort_keys=True).encode())

    def read_stop(self, grid: str, key: str) -> dict | None:
        """The halving's decision to stop cell `key`, or None."""
        found = self.read_tagged(f"{grid}/stops/{key}.json")
        return json.loads(found[0]) if found else None

    def clear_stop(self, grid: str, key: str) -> None:
        """Forget a decision: the cell runs again and is judged again."""
        self._delete(f"{grid}/stops/{key}.json")

    def read_trials(self, grid: str) -> pa.Table:
        """One row per cell of `grid`: its finished row, else its last failure."""
        finished = _latest_per_key(self._read(grid, "trials"))
        failures = self.read_failures(grid)
        done = set(finished.column("key").to_pylist())
        keep = [i for i, k in enumerate(failures.column("key").to_pylist()) if k not in done]
        if not keep:
            return finished
        return unify([finished, failures.take(keep)]) if finished.num_rows else failures.take(keep)

    def read_failures(self, grid: str) -> pa.Table:
        """The last failed attempt of every cell that has one (also of finished cells: a
        failed `--force` rerun)."""
        return _latest_per_key(self._read(grid, "failures"))

    def read_epochs(self, grid: str) -> pa.Table:
        """Every epoch row of `grid` (of finished cells)."""
        return self._read(grid, "epochs")

    def statuses(self, grid: str) -> dict[str, str]:
        """{key: status} of every cell of `grid` in the store: its finished status, else
        failed."""
        out = {}
        for kind in ("failures", "trials"):  # a finished row wins
            table = self._read(grid, kind, columns=["key", "status"])
            out.update(
                zip(
                    table.column("key").to_pylist(), table.column("status").to_pylist(), strict=True
                )
            )
        return out

    def _read(self, grid: str, kind: str, columns: list[str] | None = None) -> pa.Table:
        names = [n for n in self._list(f"{grid}/{kind}") if _is_result(n)]
        with ThreadPoolExecutor(min(READ_THREADS, max(1, len(names)))) as pool:
            tables = list(pool.map(lambda n: self._read_file(n, kind, columns), names))
        tables = [t for t in tables if t is not None]
        if not tables:
            return pa.table({c: pa.array([], pa.string()) for c in KINDS[kind]})
        return unify(tables)

    def _read_file(self, name: str, kind: str, columns: list[str] | None) -> pa.Table | None:
        source = self._get(name)
        where = source if isinstance(source, str) else f"{self.uri}/{name}"
        try:
            src = source if isinstance(source, str) else pa.BufferReader(source)
            table = pq.read_table(src)
        except (pa.ArrowException, OSError, ValueError) as e:
            warnings.warn(
                f"{where}: skipped, not a readable Parquet file ({_one_line(e)})",
                StoreWarning,
                stacklevel=2,
            )
            return None
        missing = [c for c in KINDS[kind] if c not in table.column_names]
        if missing:
            warnings.warn(
                f"{where}: skipped, not a grid {kind} file (no '{missing[0]}' column)",
                StoreWarning,
                stacklevel=2,
            )
            return None
        table = table.replace_schema_metadata(None)
        return table.select(columns) if columns else table


def _is_result(name: str) -> bool:
    base = name.rsplit("/", 1)[-1]
    return base.endswith(".parquet") and not base.startswith((".", "_"))


def _parquet(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


def unify(tables: list[pa.Table]) -> pa.Table:
    """Concatenate tables whose columns differ: missing columns become null, int widens to
    float; a column whose types still clash across files is read as text."""
    try:
        return pa.concat_tables(tables, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        pass
    types: dict[str, set] = {}
    for t in tables:
        for f in t.schema:
            if not pa.types.is_null(f.type):
                types.setdefault(f.name, set()).add(f.type)
    clash = {
        n
        for n, ts in types.items()
        if len(ts) > 1 and not all(pa.types.is_integer(x) or pa.types.is_floating(x) for x in ts)
    }
    cast = [
        t.cast(
            pa.schema([pa.field(f.name, pa.string()) if f.name in clash else f for f in t.schema])
        )
        for t in tables
    ]
    return pa.concat_tables(cast, promote_options="permissive")


def _latest_per_key(table: pa.Table) -> pa.Table:
    """One row per key (a copied file could repeat one): the last to end wins, as in
    benchopt's merge, so a rerun supersedes instead of duplicating."""
    keys = table.column("key").to_pylist()
    if len(set(keys)) == len(keys):
        return table
    ended = (
        table.column("ended").to_pylist() if "ended" in table.column_names else [None] * len(keys)
    )
    best: dict[str, int] = {}
    for i, (k, e) in enumerate(zip(keys, ended, strict=True)):
        j = best.get(k)
        if j is None or (e or "") >= (ended[j] or ""):
            best[k] = i
    return table.take(sorted(best.values()))
