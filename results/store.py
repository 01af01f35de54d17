"""The result store: one Parquet file per trial in a folder or under an S3 prefix.

Layout: `<store>/<grid>/trials/<key>.parquet` (one row) and `<store>/<grid>/epochs/<key>.parquet`
(one row per epoch). A file is named by the trial's key, so concurrent trials never write the
same file and a rerun replaces its file instead of adding a row. Writes are atomic: a local
temp file renamed into place, or one S3 PUT of the whole file.

Reading skips a corrupt or foreign file with a warning that names it, and unifies files whose
columns differ (a newer version added one) into one table.
"""
from __future__ import annotations

import io
import os
import uuid
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterable

import pyarrow as pa
import pyarrow.parquet as pq

from trainers.errors import GridError
from results import schema

KINDS = {"trials": ("key", "status"), "epochs": ("key", "epoch")}  # kind -> required columns
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
        """Write (or replace) a trial's two files. The epochs go first: a trial file is only
        ever present once its curves are."""
        meta = schema.file_metadata(row)
        table = schema.to_table(epochs, meta, columns=tuple(schema.EPOCH_TYPES))
        self._put(f"{grid}/epochs/{key}.parquet", _parquet(table))
        self._put(f"{grid}/trials/{key}.parquet", _parquet(schema.to_table([row], meta)))

    def read_trials(self, grid: str) -> pa.Table:
        """Every trial row of `grid` (one per key), unified across files."""
        return _latest_per_key(self._read(grid, "trials"))

    def read_epochs(self, grid: str) -> pa.Table:
        """Every epoch row of `grid`."""
        return self._read(grid, "epochs")

    def statuses(self, grid: str) -> dict[str, str]:
        """{key: status} of every trial of `grid` in the store."""
        table = self._read(grid, "trials", columns=["key", "status"])
        return dict(zip(table.column("key").to_pylist(), table.column("status").to_pylist()))

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
            warnings.warn(f"{where}: skipped, not a readable Parquet file ({_one_line(e)})",
                          StoreWarning, stacklevel=2)
            return None
        missing = [c for c in KINDS[kind] if c not in table.column_names]
        if missing:
            warnings.warn(f"{where}: skipped, not a grid {kind} file (no '{missing[0]}' column)",
                          StoreWarning, stacklevel=2)
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
    clash = {n for n, ts in types.items()
             if len(ts) > 1 and not all(pa.types.is_integer(x) or pa.types.is_floating(x)
                                        for x in ts)}
    cast = [t.cast(pa.schema([pa.field(f.name, pa.string()) if f.name in clash else f
                              for f in t.schema])) for t in tables]
    return pa.concat_tables(cast, promote_options="permissive")


def _latest_per_key(table: pa.Table) -> pa.Table:
    """One row per key (a copied file could repeat one): the last to end wins, as in
    benchopt's merge, so a rerun supersedes instead of duplicating."""
    keys = table.column("key").to_pylist()
    if len(set(keys)) == len(keys):
        return table
    ended = (table.column("ended").to_pylist() if "ended" in table.column_names
             else [None] * len(keys))
    best: dict[str, int] = {}
    for i, (k, e) in enumerate(zip(keys, ended)):
        j = best.get(k)
        if j is None or (e or "") >= (ended[j] or ""):
            best[k] = i
    return table.take(sorted(best.values()))


class LocalStore(Store):
    """A folder; writes go to a hidden temp file in the same folder, then os.replace."""

    def __init__(self, root: str | Path, uri: str | None = None):
        self.root = Path(root)
        self.uri = uri or str(root)

    def _put(self, name: str, data: bytes) -> None:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        # Hidden name: readers (ours and pyarrow.dataset) ignore files starting with '.'.
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
        try:
            tmp.write_bytes(data)
            os.replace(tmp, path)
        except OSError as e:
            tmp.unlink(missing_ok=True)
            raise StoreError(self.uri, f"cannot write {name}", e.strerror or str(e)) from None

    def _get(self, name: str) -> str:
        return str(self.root / name)

    def _list(self, folder: str) -> list[str]:
        path = self.root / folder
        return sorted(f"{folder}/{p.name}" for p in path.iterdir()) if path.is_dir() else []

    def _delete(self, name: str) -> None:
        (self.root / name).unlink(missing_ok=True)

    def check_writable(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StoreError(self.uri, "not writable", e.strerror or str(e)) from None
        super().check_writable()

    def list_grids(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if (p / "trials").is_dir())


class S3Store(Store):
    """`s3://bucket/prefix` through boto3: the endpoint from AWS_ENDPOINT_URL (any S3
    compatible server), credentials from boto3's standard chain, never logged or stored."""

    def __init__(self, uri: str):
        import boto3
        from botocore.config import Config

        self.uri = uri.rstrip("/")
        bucket, _, prefix = uri[len("s3://"):].partition("/")
        if not bucket:
            raise GridError(f"store {uri}: expected s3://bucket or s3://bucket/prefix")
        self.bucket, self.prefix = bucket, prefix.strip("/")
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        # Path-style addressing: what MinIO, Ceph and other self-hosted endpoints expect.
        # Three tries unless the standard AWS_MAX_ATTEMPTS says otherwise.
        retries = {"mode": "standard"} if os.environ.get("AWS_MAX_ATTEMPTS") else \
            {"mode": "standard", "max_attempts": 3}
        config = Config(connect_timeout=5, read_timeout=60, retries=retries,
                        s3={"addressing_style": "path"} if endpoint else None)
        self.client = boto3.client("s3", endpoint_url=endpoint or None, config=config)

    def _key(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    def _call(self, what: str, fn, **kw):
        from botocore.exceptions import BotoCoreError, ClientError
        try:
            return fn(Bucket=self.bucket, **kw)
        except (BotoCoreError, ClientError) as e:
            raise StoreError(self.uri, f"cannot {what}", _one_line(e)) from None

    def _put(self, name: str, data: bytes) -> None:
        self._call(f"write {name}", self.client.put_object, Key=self._key(name), Body=data)

    def _get(self, name: str) -> bytes:
        resp = self._call(f"read {name}", self.client.get_object, Key=self._key(name))
        return resp["Body"].read()

    def _delete(self, name: str) -> None:
        self._call(f"delete {name}", self.client.delete_object, Key=self._key(name))

    def _pages(self, prefix: str, **kw) -> Iterable[dict]:
        token: dict = {}
        while True:
            page = self._call("list", self.client.list_objects_v2, Prefix=prefix, **kw, **token)
            yield page
            if not page.get("IsTruncated"):
                return
            token = {"ContinuationToken": page["NextContinuationToken"]}

    def _list(self, folder: str) -> list[str]:
        prefix = self._key(folder) + "/"
        cut = len(self._key(""))
        return sorted(obj["Key"][cut:] for page in self._pages(prefix)
                      for obj in page.get("Contents", []))

    def list_grids(self) -> list[str]:
        prefix = self._key("")
        grids = [p["Prefix"][len(prefix):].rstrip("/")
                 for page in self._pages(prefix, Delimiter="/")
                 for p in page.get("CommonPrefixes", [])]
        return sorted(g for g in grids if self._call(
            "list", self.client.list_objects_v2, Prefix=self._key(f"{g}/trials/"),
            MaxKeys=1).get("KeyCount", 0))


def open_store(uri: str | None) -> Store:
    """The store at `uri`: a folder (None -> ./runs, or file://PATH) or s3://bucket/prefix."""
    if uri is None or uri == "":
        return LocalStore("runs", uri="./runs")
    if uri.startswith("s3://"):
        return S3Store(uri)
    if uri.startswith("file://"):
        return LocalStore(uri[len("file://"):], uri=uri)
    if "://" in uri:
        raise GridError(f"store {uri}: unknown scheme; give a folder or s3://bucket/prefix")
    return LocalStore(Path(uri).expanduser(), uri=uri)
