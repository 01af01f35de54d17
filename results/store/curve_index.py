"""The rung rows of a halving, read once: the epoch rows at a few epochs of every committed
run, compacted, so that a relaunch judges its cells without one GET per finished cell.

A run's curves (`epochs/<key>/<run_id>.parquet`) never change once written (a rerun writes
a new run id), so an entry, named by its curve file, never goes stale: a reader takes the
entries of the runs its rows name and reads only the curves of runs it lacks. The entries
live in this machine's cache (results/store/reader.py's folder) and in the store's index,
`<grid>/_index/rungs.parquet`, which a halving launch's pruning writes under its lease for
its rung epochs: a relaunch on any machine reads one object. Curves of the previous
release (`epochs/<key>.parquet`, rewritten in place) are always read from their file.
"""

from __future__ import annotations

import io
import json

import pyarrow as pa
import pyarrow.parquet as pq

from results.store import reader

NAME = f"{reader.INDEX}/rungs.parquet"
_EPOCHS = b"grid.epochs"  # the schema metadata key: the epochs an index holds


def read(store, grid: str, rows: pa.Table, columns: list[str] | None, epochs: list[int]):
    """The epoch rows at `epochs` of the committed `rows` (key, run_id), only `columns`
    (with key and epoch): from the caches where they hold the run, else from its file."""
    names = reader.curve_names(grid, rows)
    runs = [n for n in names if _is_run(grid, n)]
    tables = []
    entries = _entries(store, grid, runs, epochs)
    if entries is not None and entries.num_rows:
        tables.append(_at(entries, epochs).drop_columns([reader._FILE]))
    legacy = [n for n in names if not _is_run(grid, n)]
    tables += reader.read_many(store, legacy, "epochs", columns=columns, epochs=epochs)
    if not tables:
        return reader.empty("epochs")
    table = reader.unify(tables)
    if columns is not None:
        want = dict.fromkeys([*reader.KINDS["epochs"], *columns])
        table = table.select([c for c in want if c in table.column_names])
    return table


def write(store, grid: str, rows: pa.Table, epochs: list[int]) -> int | None:
    """Compact the rows at `epochs` of every run `rows` names into the store's index (what
    a halving launch's pruning does); its size in bytes, None when there is nothing."""
    runs = [n for n in reader.curve_names(grid, rows) if _is_run(grid, n)]
    entries = _entries(store, grid, runs, epochs)
    if entries is None:
        store.delete_object(f"{grid}/{NAME}")
        return None
    data = _bytes(entries, sorted(set(epochs)))
    store.put_object(f"{grid}/{NAME}", data)
    return len(data)


def _is_run(grid: str, name: str) -> bool:
    return name.startswith(f"{grid}/epochs/") and name.count("/") == 3


def _entries(store, grid: str, runs: list[str], epochs: list[int]) -> pa.Table | None:
    """The entries (epoch rows with their file's name) of `runs` at (at least) `epochs`:
    this machine's cache, then the store's index, then the files; the cache keeps them."""
    want = set(runs)
    path = reader._cache_path(store, grid, "rungs")
    cached, kept = _load(reader._load_cache_file(path), epochs)
    keep = kept or sorted(set(epochs))  # the epochs the cache holds (and keeps)
    parts, known = _take(cached, want, keep)
    index = None
    if len(known) < len(want):  # this machine lacks some: the store's index
        found = store.read_tagged(f"{grid}/{NAME}")
        index, _ = _load(_parse(found[0]) if found else None, keep)
        more, found = _take(index, want - known, keep)
        parts, known = parts + more, known | found
    missing = sorted(want - known)
    parts += _read_runs(store, missing, keep)
    if not parts:
        return None
    table = reader.unify(parts)
    if missing or index is not None or cached is None or cached.num_rows != table.num_rows:
        reader._save_cache_bytes(path, _bytes(table, keep))
    return table


def _load(table: pa.Table | None, epochs: list[int]) -> tuple[pa.Table | None, list[int]]:
    """`table` and its epochs, if it holds every one of `epochs`; (None, []) otherwise."""
    if table is None or reader._FILE not in table.column_names:
        return None, []
    try:
        held = json.loads((table.schema.metadata or {}).get(_EPOCHS, b"[]"))
    except ValueError:
        return None, []
    return (table, sorted(held)) if set(epochs) <= set(held) else (None, [])


def _take(table: pa.Table | None, want: set, epochs: list[int]) -> tuple[list, set]:
    """The entries of `table` whose file is in `want`, at `epochs`; and the files found."""
    if table is None:
        return [], set()
    files = table.column(reader._FILE).to_pylist()
    keep = [i for i, n in enumerate(files) if n in want]
    found = {files[i] for i in keep}
    return ([_at(table.take(keep), epochs)] if keep else []), found


def _at(table: pa.Table, epochs: list[int]) -> pa.Table:
    import pyarrow.compute as pc

    return table.filter(pc.is_in(table.column("epoch"), pa.array(sorted(epochs), pa.int64())))


def _read_runs(store, names: list[str], epochs: list[int]) -> list[pa.Table]:
    """The rows at `epochs` of each file in `names` (every column), beside its name."""
    out = []
    for name, table in zip(names, reader.read_each(store, names, "epochs", epochs), strict=True):
        if table is not None:
            files = pa.array([name] * table.num_rows, pa.string())
            out.append(table.append_column(reader._FILE, files))
    return out


def _parse(data: bytes) -> pa.Table | None:
    try:
        return pq.ParquetFile(pa.BufferReader(data)).read()
    except (OSError, pa.ArrowException, ValueError):
        return None


def _bytes(table: pa.Table, epochs: list[int]) -> bytes:
    table = table.replace_schema_metadata({_EPOCHS: json.dumps(epochs).encode()})
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()
