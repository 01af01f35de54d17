"""Reading the store: rows through a cache checked against the listing, curves from the run
each row names, only the columns (and epochs) a command needs.

Rows (`trials/`, `trials/_failures/`: one small file per cell) are cached on the reading machine, in
`$GRID_CACHE_DIR` (default `~/.cache/grid`), one Parquet file per store, grid and kind, each
row beside the name and version tag (S3 ETag; size and mtime locally) of the file it came
from. A read lists the folder (one request per 1,000 files on S3), keeps the cached rows
whose file is unchanged, and reads only the new or changed files: the listing is the truth
and the cache is never trusted beyond it (Delta Lake's habit). A lost or corrupt cache only
costs a full read. Many files that neither this cache nor the store's index holds are read
for the columns a command needs only (`_narrow_rows`).

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
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from results.store.layout import curve_name, is_result

# kind -> required columns
KINDS = {"trials": ("key", "status"), "epochs": ("key", "epoch"), "failures": ("key", "status")}
# Files read before their one-row tables are copied into one: each keeps the buffers its
# Parquet read allocated (~170 KB for a row of ~100 columns), so a cold read of 10,000
# uncompacted rows held 1.7 GB; in batches it holds ~300 MB (BENCHMARKS.md).
BATCH = 500
# A command that needs only some columns reads only those of the files no cache holds, when
# there are at least this many (`_narrow_rows`): a first read of a store whose launch was
# killed before it compacted the rows. Fewer (the rows a launch added since this machine's
# last read) are read whole, into the cache every command shares.
NARROW_FROM = 500
# A folder store's files, when at least this many are to be read and the machine has more than
# one core, are decoded in one process per core (`_read_in_processes`): a Parquet footer is
# decoded under the GIL, so threads gained nothing on a cold read of 10,000 rows, and the
# ~0.3 s a spawned process takes to import pyarrow pays from about this many files.
PROCESSES_FROM = 2000
# At most this many reading processes: each holds its batch of rows (up to ~250 MB for whole
# rows of ~100 columns), and 4 already decode 10,000 footers in about a second.
WORKERS = 4
# A reading process: `-c` puts the current folder first on sys.path, where a stray `uuid.py`
# would shadow the library's; it is dropped, and the worker sees the caller's path
# (PYTHONPATH). Its stdout is kept for the answer: anything an import prints goes to stderr.
WORKER = (
    "import os, sys; sys.path[:1] = [p for p in sys.path[:1] if p]; "
    "answer = os.dup(1); os.dup2(2, 1); "
    "from results.store.local import _read_part; _read_part(answer)"
)
CACHE_ENV = "GRID_CACHE_DIR"
_FILE, _TAG = "_file", "_tag"  # the cache's own columns


class StoreWarning(UserWarning):
    """A result file that was skipped (corrupt, or not written by grid)."""


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


def read_file(
    store, name: str, kind: str, columns: list[str] | None = None, epochs: list[int] | None = None
) -> pa.Table | None:
    """One result file, only `columns` (and only the rows of `epochs`); None with a
    StoreWarning naming it when it is corrupt, foreign or gone."""
    try:
        source = store.get_object(name)
    except Exception as e:  # noqa: BLE001 - a file deleted since the listing: skip it
        warnings.warn(f"{store.uri}/{name}: skipped ({_one_line(e)})", StoreWarning, stacklevel=2)
        return None
    where = f"{store.uri}/{name}"
    try:
        table = _read_parquet(pa.BufferReader(source), kind, columns, epochs)
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
    want = None if columns is None else list(dict.fromkeys([*KINDS[kind], *columns]))
    # One thread: a result file is one row group of tiny column chunks, where a thread per
    # column costs more than it reads, and each thread's arena kept ~140 KB per file
    # (1.7 GB for a cold read of 10,000 uncompacted rows; BENCHMARKS.md, "The store at scale").
    # A column the file lacks is left out by `read` itself (no look at the schema first).
    table = pf.read(columns=want, use_threads=False)
    if epochs is not None and "epoch" in table.column_names:
        import pyarrow.compute as pc  # 70 ms of start-up: only where an epoch filter is asked

        table = table.filter(pc.is_in(table.column("epoch"), pa.array(epochs, pa.int64())))
    return table


def read_many(store, names: list[str], kind: str, **kw) -> list[pa.Table]:
    """The readable ones of `names`, read in parallel (`read_each`)."""
    return [t for t in read_each(store, names, kind, **kw) if t is not None]


def empty(kind: str) -> pa.Table:
    return pa.schema([(c, pa.string()) for c in KINDS[kind]]).empty_table()  # no pandas


def read_rows(
    store, grid: str, kind: str, listing: dict | None = None, columns: list[str] | None = None
) -> tuple[pa.Table, frozenset[str] | None]:
    """Every row of `grid`'s `kind` folder (trials or failures), through the caches, and the
    columns it holds when it holds only some (None: whole rows). `listing`: {name: tag} of
    the folder, when the caller listed it already. `columns`: the columns the caller needs
    (with key and status), when files that no cache holds must be read (`indexed_rows`)."""
    want = None if columns is None else list(dict.fromkeys([*KINDS[kind], *columns]))
    table, narrow = indexed_rows(store, grid, kind, listing, want)
    if table is None:
        return empty(kind), None
    return table.drop_columns([_FILE, _TAG]), narrow


def indexed_rows(
    store, grid: str, kind: str, listing: dict | None = None, columns: list[str] | None = None
) -> tuple[pa.Table | None, frozenset[str] | None]:
    """The rows of the listed files, each beside its file's name and tag: from this
    machine's cache, else the store's index (`<grid>/_index/<kind>.parquet`, which a launch
    writes), for every file whose tag is unchanged; read from the file otherwise. With
    `columns`, files that neither holds are read for those columns only (`_narrow_rows`),
    and the second value names them (None: whole rows)."""
    if listing is None:
        listing = store._tags(grid, kind)
    listing = {n: t for n, t in listing.items() if is_result(n)}
    path = _cache_path(store, grid, kind)
    cached = _load_cache(path)
    parts, known = _matching(cached, listing, set())
    index = None
    if len(known) < len(listing):  # the machine's cache lacks some: the store's index
        index = _load_index(store, grid, kind)
        more, known = _matching(index, listing, known)
        parts += more
    if columns is not None and len(listing) - len(known) >= NARROW_FROM:
        return _narrow_rows(store, grid, kind, listing, parts, known, columns)
    new = sorted(n for n in listing if n not in known)
    parts += _read_files(store, new, kind, listing)
    if not parts:
        return None, None
    table = unify(parts)
    if new or index is not None or cached is None or cached.num_rows != table.num_rows:
        _save_cache(path, table)
    return table, None


def _narrow_rows(
    store, grid: str, kind: str, listing: dict, parts: list, known: set, columns: list[str]
) -> tuple[pa.Table | None, frozenset[str]]:
    """The rows for a command that needs only `columns`, where many files are in no cache
    and no index (a store whose launch was killed before it compacted the rows): those are
    read for `columns` only, and kept in a cache of their own for that set of columns. A
    row file's Parquet footer and its ~100 column chunks cost ~1.7 ms to decode whole and
    ~0.4 ms for key and status (BENCHMARKS.md), so a first `grid status` of 10,000 such rows
    decodes 4x less. The whole rows are read when a command needs them (on S3, a second GET
    of each file: the price of a fast first look at a large uncompacted store)."""
    keep = [*columns, _FILE, _TAG]
    parts = [p.select([c for c in keep if c in p.column_names]) for p in parts]
    path = _cache_path(store, grid, f"{kind}\0{','.join(sorted(columns))}")
    cached = _load_cache(path)
    narrow, known = _matching(cached, listing, known)
    new = sorted(n for n in listing if n not in known)
    narrow += _read_files(store, new, kind, listing, columns)
    if narrow and (new or cached is None or cached.num_rows != sum(t.num_rows for t in narrow)):
        _save_cache(path, unify(narrow))
    parts += narrow
    return (unify(parts) if parts else None), frozenset(columns)


def _read_files(
    store, names: list[str], kind: str, listing: dict, columns: list[str] | None = None
) -> list[pa.Table]:
    """The rows of `names` (the readable ones), beside their files' names and tags. Many
    files of a folder store are decoded in processes, one per core (`PROCESSES_FROM`)."""
    root, workers = getattr(store, "root", None), min(WORKERS, _cores())
    if root is not None and workers > 1 and len(names) >= PROCESSES_FROM:
        out = _read_in_processes(store, names, kind, columns, workers)
    else:
        out = _read_batches(store, names, kind, columns)
    return [
        t.append_column(
            _TAG, pa.array([listing[n] for n in t.column(_FILE).to_pylist()], pa.string())
        )
        for t in out
    ]


def _cores() -> int:
    """The cores this process may run on (its affinity: a container's or `taskset`'s
    limit), where `os.cpu_count()` counts the machine's."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _read_batches(store, names: list[str], kind: str, columns: list[str] | None) -> list[pa.Table]:
    """The rows of `names` beside their files' names, in batches whose one-row tables are
    copied into one (each file's read keeps its own buffers until then)."""
    out = []
    for i in range(0, len(names), BATCH):
        batch = names[i : i + BATCH]
        read = [
            (n, t)
            for n, t in zip(batch, read_each(store, batch, kind, columns=columns), strict=True)
            if t is not None
        ]
        if read:  # the files' names as a column, added once to the batch
            fresh = unify([t for _, t in read]).combine_chunks()
            files = [n for n, t in read for _ in range(t.num_rows)]
            out.append(fresh.append_column(_FILE, pa.array(files, pa.string())))
    return out


def _read_in_processes(
    store, names: list[str], kind: str, columns: list[str] | None, workers: int
) -> list[pa.Table]:
    """`_read_batches` of a folder store, its files split in order among `workers` processes
    (`WORKER`). Plain subprocesses, not multiprocessing's spawn, which runs the caller's main
    script again in each worker (a script without a `__main__` guard would fail); nor fork,
    which copies pyarrow's thread pools in whatever state they are. A worker sees the
    caller's `sys.path`, not the current folder. One that fails costs only speed, and says
    so: its part is read here."""
    import pickle
    import subprocess
    import sys
    from concurrent.futures import ThreadPoolExecutor

    cuts = [len(names) * i // workers for i in range(workers + 1)]
    parts = [names[a:b] for a, b in zip(cuts, cuts[1:], strict=False)]
    path = [os.fspath(p) for p in sys.path if isinstance(p, (str, os.PathLike)) and p]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path)}

    def run(part: list[str]) -> tuple[list[bytes], list[str]] | str:
        job = pickle.dumps((str(store.root), store.uri, part, kind, columns))
        try:
            with subprocess.Popen(
                [sys.executable, "-c", WORKER],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=env,
            ) as worker:
                try:
                    data, err = worker.communicate(job)
                except BaseException:
                    worker.kill()
                    raise
        except OSError as e:
            return _one_line(e)
        if worker.returncode != 0:
            lines = err.decode(errors="replace").strip().splitlines()
            return f"exit {worker.returncode}: {lines[-1] if lines else 'no message'}"
        try:
            return pickle.loads(data)
        except Exception as e:  # noqa: BLE001 - something else wrote to its stdout
            return f"unreadable answer ({_one_line(e)})"

    with ThreadPoolExecutor(len(parts)) as pool:  # threads that wait on the workers' pipes
        done = list(pool.map(run, parts))
    out = []
    for part, got in zip(parts, done, strict=True):
        if isinstance(got, str):
            warnings.warn(
                f"{store.uri}: a reading process failed ({got}); its {len(part)} files "
                "were read in this one",
                StoreWarning,
                stacklevel=3,
            )
            out += _read_batches(store, part, kind, columns)
            continue
        blobs, skipped = got
        for message in skipped:  # the worker's warnings, said here where a user sees them
            warnings.warn(message, StoreWarning, stacklevel=3)
        out += [pa.ipc.open_stream(b).read_all() for b in blobs]
    return out


def read_part(
    store, names: list[str], kind: str, columns: list[str] | None
) -> tuple[list[bytes], list[str]]:
    """A worker's part of `_read_in_processes` (`WORKER`): the
    tables of `_read_batches` as Arrow IPC streams, and the warnings of the files it skipped."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", StoreWarning)
        tables = _read_batches(store, names, kind, columns)
    blobs = []
    for t in tables:
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, t.schema) as w:
            w.write_table(t)
        blobs.append(sink.getvalue().to_pybytes())
    return blobs, [str(w.message) for w in caught if issubclass(w.category, StoreWarning)]


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
    if len(keep) == table.num_rows:  # all still listed as they were: no take (and no
        return [table], known  # import of pyarrow.compute, 70 ms of a command's start)
    return ([table.take(keep)] if keep else []), known


INDEX = "_index"  # <grid>/_index/<kind>.parquet: the rows, compacted by a launch


MOVED = b"grid.failures_moved"  # the trials index's metadata: no failures/ folder to list


def _load_index(store, grid: str, kind: str) -> pa.Table | None:
    """The store's index of `kind` (one GET, once per command: the store object keeps it)."""
    memo = store.memo
    if (grid, INDEX, kind) not in memo:
        found = store.read_tagged(f"{grid}/{INDEX}/{kind}.parquet")
        table = None
        if found is not None:
            try:
                table = pq.ParquetFile(pa.BufferReader(found[0])).read()
            except (OSError, pa.ArrowException, ValueError):
                table = None
        ok = table is not None and {_FILE, _TAG} <= set(table.column_names)
        memo[(grid, INDEX, kind)] = table if ok else None
    return memo[(grid, INDEX, kind)]


def failures_moved(store, grid: str) -> bool:
    """Whether every failure of `grid` is under `trials/` (results/store/layout.py): a launch's
    pruning moved the previous release's `failures/` and said so in the rows' index. This
    machine remembers it once seen; else it costs the index's GET, which a first read on a
    machine makes anyway (and then reuses)."""
    flag = _cache_path(store, grid, "moved")
    if flag.exists():
        return True
    index = _load_index(store, grid, "trials")
    moved = index is not None and (index.schema.metadata or {}).get(MOVED) == b"1"
    if moved:
        _save_cache_bytes(flag, b"1")
    return moved


def write_index(store, grid: str, moved: bool = False) -> dict[str, int | None]:
    """Compact the rows of `grid` into the store's index, which readers on any machine
    check against the listing: a first read there costs one GET, not one per cell. With
    `moved` (pruning moved the previous release's failures), the trials index says so.
    {name: bytes written, or None where deleted}."""
    out: dict[str, int | None] = {}
    for kind in ("trials", "failures"):
        table, _ = indexed_rows(store, grid, kind)
        name = f"{grid}/{INDEX}/{kind}.parquet"
        if table is None and kind == "trials" and moved:  # no rows, but the flag
            table = pa.schema([(c, pa.string()) for c in (*KINDS[kind], _FILE, _TAG)]).empty_table()
        if table is None:
            store.delete_object(name)
            out[name] = None
            continue
        if kind == "trials" and moved:
            table = table.replace_schema_metadata({MOVED: b"1"})
            _save_cache_bytes(_cache_path(store, grid, "moved"), b"1")
        sink = io.BytesIO()
        pq.write_table(table, sink)
        store.put_object(name, sink.getvalue())
        out[name] = len(sink.getvalue())
    return out


def read_each(
    store,
    names: list[str],
    kind: str,
    epochs: list[int] | None = None,
    columns: list[str] | None = None,
) -> list[pa.Table | None]:
    """Each of `names` (None where unreadable), read in parallel; only `columns` when given."""
    return store._parallel(
        lambda n: read_file(store, n, kind, columns=columns, epochs=epochs), names
    )


def _cache_path(store, grid: str, kind: str) -> Path:
    root = Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "grid")
    where = getattr(store, "root", None)
    ident = str(Path(where).resolve()) if where is not None else store.uri
    digest = hashlib.sha256(f"{ident}\0{grid}\0{kind}".encode()).hexdigest()[:20]
    return root / f"{digest}.parquet"


def _load_cache(path: Path) -> pa.Table | None:
    table = _load_cache_file(path)
    return table if table is not None and {_FILE, _TAG} <= set(table.column_names) else None


def _load_cache_file(path: Path) -> pa.Table | None:
    try:
        return pq.ParquetFile(path).read()
    except (OSError, pa.ArrowException, ValueError):
        return None


def _save_cache(path: Path, table: pa.Table) -> None:
    sink = io.BytesIO()
    pq.write_table(table, sink)
    _save_cache_bytes(path, sink.getvalue())


def _save_cache_bytes(path: Path, data: bytes) -> None:
    """Best effort: a read-only home or a full disk only costs the next read its speed."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except OSError:
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


def read_curves(
    store, grid: str, rows: pa.Table, columns: list[str] | None = None, epochs=None
) -> pa.Table:
    """The epoch rows of the committed `rows` (key, run_id): each cell's curves only from the
    run its row names."""
    names = curve_names(grid, rows)
    tables = read_many(store, names, "epochs", columns=columns, epochs=epochs)
    return unify(tables) if tables else empty("epochs")


def curve_names(grid: str, rows: pa.Table) -> list[str]:
    """The curve files the committed `rows` (key, run_id) name."""
    keys = rows.column("key").to_pylist()
    runs = (
        rows.column("run_id").to_pylist() if "run_id" in rows.column_names else [None] * len(keys)
    )
    return [curve_name(grid, k, r) for k, r in zip(keys, runs, strict=True)]
