"""The result store: a grid's rows, curves, checkpoints, weights and lease, as Parquet and
plain objects in a folder or under an S3 prefix. `open_store(uri)` is the way in; everything
else in this package is what a store is made of:

- `base.py`: `Store`, what every backend shares: the commit of a result (curves under a run
  id, then the row naming it, fenced by the lease generation) and reads of only what a command
  needs;
- `local.py` and `s3.py`: the two backends (a folder; `s3://bucket/prefix` through boto3);
- `layout.py`: where a grid's files live; `schema.py`: the columns of a row;
- `reader.py`: rows through a cache checked against the listing, curves from the run each row
  names; `curve_index.py`: a halving's rung rows, read once;
- `lease.py`: one launch per grid and store; `prune.py`: what no reader needs, removed under
  the lease;
- `checkpoints.py` and `weights.py`: a cell's checkpoint, a run's kept final weights.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from trainers.errors import GridError

if TYPE_CHECKING:
    from results.store.base import Store


def open_store(uri: str | None) -> Store:
    """The store at `uri`: a folder (None -> ./runs, or file://PATH) or s3://bucket/prefix."""
    from results.store.local import LocalStore  # pyarrow: imported with the first store

    if uri is None or uri == "":
        return LocalStore("runs", uri="./runs")
    if uri.startswith("s3://"):
        from results.store.s3 import S3Store  # boto3: only imported for an S3 store

        return S3Store(uri)
    if uri.startswith("file://"):
        return LocalStore(uri[len("file://") :], uri=uri)
    if "://" in uri:
        raise GridError(f"store {uri}: unknown scheme; give a folder or s3://bucket/prefix")
    return LocalStore(Path(uri).expanduser(), uri=uri)
