"""The result store: Parquet files in a folder or under an S3 prefix (this module: the folder
backend; `results/store/s3.py`: S3; `results/store/base.py`: what both share).

Layout (`results/store/layout.py`): `<store>/<grid>/trials/<key>.parquet` (one row, the
commit) and `<store>/<grid>/epochs/<key>/<run_id>.parquet` (one row per epoch of the run the
row names) for a finished cell (completed, diverged or stopped);
`<store>/<grid>/trials/_failures/<key>.parquet` (one row, with the error) for its last failed
attempt. A file is named by the cell's key (and its curves by the run), so concurrent trials
never write the same file and a rerun replaces its row instead of adding one. Writes are
atomic: a local temp file renamed into place, or one S3 PUT of the whole file. A store
written before run ids (`epochs/<key>.parquet`, rows without a run id) reads as before.

Never lose a result: a failure is kept in its own file, never over the row, so a failed or
interrupted attempt (a `--force` rerun, say) never replaces a finished row; only a finished
attempt replaces one, and it clears the cell's failure. A write under a lost lease is refused
(`Fenced`). Reads show a cell's finished row where it has one, else its failure.

Reading skips a corrupt or foreign file with a warning that names it, and unifies files whose
columns differ (a newer version added one) into one table.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import uuid
from pathlib import Path

from results.store.base import NotFound, Store, StoreError, StoreUnreachable

# A folder on a network file system (NFS, a FUSE mount of a bucket) whose server is gone
# answers with these: an outage that passes (exit 3), not a wrong path or a permission (2).
UNREACHABLE = {
    errno.EIO,
    errno.ESTALE,
    errno.ENOTCONN,
    errno.ETIMEDOUT,
    errno.EHOSTDOWN,
    errno.EHOSTUNREACH,
    errno.ENETDOWN,
    errno.ENETUNREACH,
    errno.ECONNREFUSED,
    errno.ECONNRESET,
}


def os_error(uri: str, action: str, e: OSError) -> StoreError:
    """An OSError of the folder as the store's error: `StoreUnreachable` for a network file
    system that does not answer, else `StoreError`."""
    cls = StoreUnreachable if e.errno in UNREACHABLE else StoreError
    return cls(uri, action, e.strerror or str(e))


class LocalStore(Store):
    """A folder; writes go to a hidden temp file in the same folder, then os.replace."""

    # Decoding Parquet holds the CPU, and threads beyond the cores only wait on each other:
    # a cold read of 10,000 row files took 0.93 ms a file with 16 threads on 2 cores, 0.46
    # with 2 (BENCHMARKS.md, "A cold read of 10,000 uncompacted rows").
    read_threads = min(8, os.cpu_count() or 1)

    def __init__(self, root: str | Path, uri: str | None = None):
        self.root = Path(root)
        self.uri = uri or str(root)

    def put_object(self, name: str, data: bytes) -> None:
        path = self.root / name
        # Hidden name: readers (ours and pyarrow.dataset) ignore files starting with '.'.
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_bytes(data)
            os.replace(tmp, path)
        except OSError as e:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            raise os_error(self.uri, f"cannot write {name}", e) from None

    def get_object(self, name: str) -> bytes:
        try:
            return (self.root / name).read_bytes()
        except FileNotFoundError:
            raise NotFound(self.uri, f"cannot read {name}", "no such object") from None
        except OSError as e:
            raise os_error(self.uri, f"cannot read {name}", e) from None

    def list_objects(self, folder: str) -> list[str]:
        return sorted(self.scan_objects(folder))

    def scan_objects(self, folder: str) -> dict[str, tuple[str, int]]:
        # every file under `folder`, as an S3 listing of its prefix gives them; the tag
        # (size, mtime, inode) changes with each os.replace
        out = {}
        stack = [(self.root / folder, folder)]
        while stack:
            path, name = stack.pop()
            try:
                entries = list(os.scandir(path))
            except (FileNotFoundError, NotADirectoryError):
                continue
            for e in entries:
                if e.is_dir(follow_symlinks=False):
                    stack.append((e.path, f"{name}/{e.name}"))
                else:
                    st = e.stat(follow_symlinks=False)
                    tag = f"{st.st_size}-{st.st_mtime_ns}-{st.st_ino}"
                    out[f"{name}/{e.name}"] = (tag, st.st_size)
        return out

    def delete_object(self, name: str) -> None:
        (self.root / name).unlink(missing_ok=True)

    def check_writable(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise os_error(self.uri, "not writable", e) from None
        super().check_writable()

    def create(self, name: str, data: bytes) -> bool:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
        tmp.write_bytes(data)
        try:
            os.link(tmp, path)  # fails if `path` exists: an exclusive create with full content
            return True
        except FileExistsError:
            return False
        finally:
            tmp.unlink(missing_ok=True)

    def read_tagged(self, name: str) -> tuple[bytes, str] | None:
        try:
            data = (self.root / name).read_bytes()
        except FileNotFoundError:
            return None
        return data, hashlib.sha256(data).hexdigest()

    @contextlib.contextmanager
    def _locked(self, name: str):
        # flock on a side file: compare-and-swap between processes of this machine (a local
        # store is one machine's folder; check_shared_store refuses it on a cluster)
        # one lock per grid, in a hidden folder: no side file beside each result
        lock = self.root / ".locks" / f"{name.split('/', 1)[0]}.lock"
        lock.parent.mkdir(parents=True, exist_ok=True)
        with open(lock, "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            yield

    def replace_if(self, name: str, data: bytes, tag: str) -> bool:
        with self._locked(name):
            now = self.read_tagged(name)
            if now is None or now[1] != tag:
                return False
            self.put_object(name, data)
            return True

    def delete_if(self, name: str, tag: str) -> bool:
        with self._locked(name):
            now = self.read_tagged(name)
            if now is None or now[1] != tag:
                return False
            self.delete_object(name)
            return True

    def list_grids(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if (p / "trials").is_dir())


def _read_part(answer: int) -> None:
    """A worker of a read of many files (reader.py, `_read_in_processes`, `WORKER`): a
    pickled job on stdin; its rows and warnings pickled to the file descriptor `answer`."""
    import pickle
    import sys

    from results.store.reader import read_part

    root, uri, names, kind, columns = pickle.load(sys.stdin.buffer)
    store = LocalStore(root, uri)
    store.read_threads = 1  # the process is the unit of parallelism here
    with os.fdopen(answer, "wb") as out:
        out.write(pickle.dumps(read_part(store, names, kind, columns)))
