"""Reading the store: rows through a cache checked against the listing, curves from the run
each row names, only the columns (and epochs) a command needs.

Rows (`trials/`, `failures/`: one small file per cell) are cached on the reading machine, in
`$GRID_CACHE_DIR` (default `~/.cache/grid`), one Parquet file per store, grid and kind, each
row beside the name and version tag (S3 ETag; size and mtime locally) of the file it came
from. A read lists the folder (one request per 1,000 files on S3), keeps the cached rows
whose file is unchanged, and reads only the new or changed files: the listing is the truth
and the cache is never trusted beyond it (Delta Lake's habit). A lost or corrupt cache only
costs a full read.

Curves (`epochs/<key>/<run_id>.parquet`) are read only for the rows that name them, with
pyarrow's column projection and an epoch filter: a halving reads the rung rows it judges,
not every epoch. A row of the previous release has no `run_id`; its curves are
`epochs/<key>.parquet`.
"""

from __future__ import annotations

import hashlib
import io
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

# kind -> required columns
KINDS = {"trials": ("key", "status"), "epochs": ("key", "epoch"), "failures": ("key", "status")}
READ_THREADS = 16  # parallel GETs: an S3 grid of hundreds of cells reads in seconds
CACHE_ENV = "GRID_CACHE_DIR"
_FILE, _TAG = "_file", "_tag"  # the cache's own columns


class StoreWarning(UserWarning):
    """A result file that was skipped (corrupt, or not written by grid)."""


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


def is_result(name: str) -> bool:
    """A committed result file's name: Parquet, not hidden (temp files start with '.')."""
    base = name.rsplit("/", 1)[-1]
    return base.endswith(".parquet") and not base.startswith((".", "_"))


def read_file(
    store, name: str, kind: str, columns: list[str] | None = None, epochs: list[int] | None = None
) -> pa.Table | None:
    """One result file, only `columns` (and only the rows of `epochs`); None with a
    StoreWarning naming it when it is corrupt, foreign or gone."""
    try:
        source = store._get(name)
    except Exception as e:  # noqa: BLE001 - a file deleted since the listing: skip it
        warnings.warn(f"{store.uri}/{name}: skipped ({_one_line(e)})", StoreWarning, stacklevel=2)
        return None
    where = source if isinstance(source, str) else f"{store.uri}/{name}"
    try:
        src = source if isinstance(source, str) else pa.BufferReader(source)
        table = _read_parquet(src, kind, columns, epochs)
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
    return table.replace_schema_metadata(None)


def _read_parquet(src, kind: str, columns: list[str] | None, epochs: list[int] | None):
    pf = pq.ParquetFile(src)
    names = pf.schema_arrow.names
    want = None if columns is None else [c for c in dict.fromkeys([*KINDS[kind], *columns])]
    table = pf.read(columns=None if want is None else [c for c in want if c in names])
    if epochs is not None and "epoch" in table.column_names:
        table = table.filter(pc.is_in(table.column("epoch"), pa.array(epochs, pa.int64())))
    return table


def read_many(store, names: list[str], kind: str, **kw) -> list[pa.Table]:
    """The readable ones of `names`, read in parallel."""
    if not names:
        return []
    with ThreadPoolExecutor(min(READ_THREADS, len(names))) as pool:
        tables = list(pool.map(lambda n: read_file(store, n, kind, **kw), names))
    return [t for t in tables if t is not None]


def empty(kind: str) -> pa.Table:
    return pa.schema([(c, pa.string()) for c in KINDS[kind]]).empty_table()  # no pandas


def read_rows(
    store, grid: str, kind: str, columns: list[str] | None = None, listing: dict | None = None
) -> pa.Table:
    """Every row of `grid`'s `kind` folder (trials or failures), through the caches; only
    `columns` (with key and status) when given. `listing`: {name: tag} of the folder, when
    the caller listed it already."""
    table = indexed_rows(store, grid, kind, listing)
    if table is None:
        return empty(kind)
    table = table.drop_columns([_FILE, _TAG])
    if columns is not None:
        want = dict.fromkeys([*KINDS[kind], *columns])
        table = table.select([c for c in want if c in table.column_names])
    return table


def indexed_rows(store, grid: str, kind: str, listing: dict | None = None) -> pa.Table | None:
    """The rows of the listed files, each beside its file's name and tag: from this
    machine's cache, else the store's index (`<grid>/_index/<kind>.parquet`, which a launch
    writes), for every file whose tag is unchanged; read from the file otherwise."""
    if listing is None:
        listing = {n: tag for n, (tag, _) in store._scan(f"{grid}/{kind}").items()}
    listing = {n: t for n, t in listing.items() if is_result(n)}
    path = _cache_path(store, grid, kind)
    cached = _load_cache(path)
    parts, known = _matching(cached, listing, set())
    index = None
    if len(known) < len(listing):  # the machine's cache lacks some: the store's index
        index = _load_index(store, grid, kind)
        more, known = _matching(index, listing, known)
        parts += more
    new = sorted(n for n in listing if n not in known)
    parts += [
        t.append_column(_FILE, pa.array([n] * t.num_rows, pa.string())).append_column(
            _TAG, pa.array([listing[n]] * t.num_rows, pa.string())
        )
        for n, t in zip(new, _read_each(store, new, kind), strict=True)
        if t is not None
    ]
    if not parts:
        return None
    table = unify(parts)
    if new or index is not None or cached is None or cached.num_rows != table.num_rows:
        _save_cache(path, table)
    return table


def _matching(table: pa.Table | None, listing: dict, known: set) -> tuple[list, set]:
    """The rows of `table` whose file is listed with the same tag, and not `known` yet."""
    if table is None:
        return [], known
    keep, known = [], set(known)
    files, tags = table.column(_FILE).to_pylist(), table.column(_TAG).to_pylist()
    for i, (n, t) in enumerate(zip(files, tags, strict=True)):
        if t is not None and n not in known and listing.get(n) == t:
            keep.append(i)
    known |= {files[i] for i in keep}
    return ([table.take(keep)] if keep else []), known


INDEX = "_index"  # <grid>/_index/<kind>.parquet: the rows, compacted by a launch


def _load_index(store, grid: str, kind: str) -> pa.Table | None:
    found = store.read_tagged(f"{grid}/{INDEX}/{kind}.parquet")
    if found is None:
        return None
    try:
        table = pq.ParquetFile(pa.BufferReader(found[0])).read()
    except (OSError, pa.ArrowException, ValueError):
        return None
    return table if {_FILE, _TAG} <= set(table.column_names) else None


def write_index(store, grid: str) -> None:
    """Compact the rows of `grid` into the store's index, which readers on any machine
    check against the listing: a first read there costs one GET, not one per cell."""
    for kind in ("trials", "failures"):
        table = indexed_rows(store, grid, kind)
        name = f"{grid}/{INDEX}/{kind}.parquet"
        if table is None:
            store._delete(name)
            continue
        sink = io.BytesIO()
        pq.write_table(table, sink)
        store._put(name, sink.getvalue())


def _read_each(store, names: list[str], kind: str) -> list[pa.Table | None]:
    if not names:
        return []
    with ThreadPoolExecutor(min(READ_THREADS, len(names))) as pool:
        return list(pool.map(lambda n: read_file(store, n, kind), names))


def _cache_path(store, grid: str, kind: str) -> Path:
    root = Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "grid")
    where = getattr(store, "root", None)
    ident = str(Path(where).resolve()) if where is not None else store.uri
    digest = hashlib.sha256(f"{ident}\0{grid}\0{kind}".encode()).hexdigest()[:20]
    return root / f"{digest}.parquet"


def _load_cache(path: Path) -> pa.Table | None:
    try:
        table = pq.ParquetFile(path).read()
    except (OSError, pa.ArrowException, ValueError):
        return None
    return table if {_FILE, _TAG} <= set(table.column_names) else None


def _save_cache(path: Path, table: pa.Table) -> None:
    """Best effort: a read-only home or a full disk only costs the next read its speed."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        pq.write_table(table, tmp)
        os.replace(tmp, path)
    except (OSError, pa.ArrowException):
        pass


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


def latest_per_key(table: pa.Table) -> pa.Table:
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


def curve_name(grid: str, key: str, run_id: str | None) -> str:
    """The curves of a committed row: named by its run id; `epochs/<key>.parquet` for a row
    of the previous release (no run id)."""
    return f"{grid}/epochs/{key}/{run_id}.parquet" if run_id else f"{grid}/epochs/{key}.parquet"


def read_curves(
    store, grid: str, rows: pa.Table, columns: list[str] | None = None, epochs=None
) -> pa.Table:
    """The epoch rows of the committed `rows` (key, run_id): each cell's curves only from the
    run its row names."""
    keys = rows.column("key").to_pylist()
    runs = (
        rows.column("run_id").to_pylist() if "run_id" in rows.column_names else [None] * len(keys)
    )
    names = [curve_name(grid, k, r) for k, r in zip(keys, runs, strict=True)]
    tables = read_many(store, names, "epochs", columns=columns, epochs=epochs)
    return unify(tables) if tables else empty("epochs")
