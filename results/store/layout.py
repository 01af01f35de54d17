"""Where a grid's files live in the store, and which listing finds them.

    <grid>/trials/<key>.parquet               a finished cell's row: the commit
    <grid>/trials/_failures/<key>.parquet     a cell's last failed attempt
    <grid>/epochs/<key>/<run_id>.parquet      the curves of the run a row names
                                              (run_id `g<generation>-<random>`)
    <grid>/_index/                            the rows compacted, the store's size counted

Failures sit under `trials/` so that one listing of `trials/` (one request per 1,000 files
on S3) finds every row a command shows; `_failures` starts with '_', so pyarrow's dataset
reader, pandas and a `trials/*.parquet` glob skip it and read only the finished rows.

A store of the previous release keeps its failures in `<grid>/failures/`. A launch's pruning
(results/store/prune.py) moves them under `trials/_failures/`, under the grid's lease, and says so
in the rows' index it writes (results/store/reader.py, `failures_moved`); until a reader has seen
that, it lists `failures/` too. No marker object sits in `trials/`: at N = 10,000 it would
cost an eleventh page of 1,000 keys.
"""

from __future__ import annotations

import re
import uuid

FAILURES = "trials/_failures"
LEGACY_FAILURES = "failures"


def row_name(grid: str, key: str) -> str:
    """A finished cell's row: the commit."""
    return f"{grid}/trials/{key}.parquet"


def failure_name(grid: str, key: str) -> str:
    """A cell's last failed attempt."""
    return f"{grid}/{FAILURES}/{key}.parquet"


def legacy_failure_name(grid: str, key: str) -> str:
    """Where the previous release kept a cell's last failed attempt."""
    return f"{grid}/{LEGACY_FAILURES}/{key}.parquet"


def curve_name(grid: str, key: str, run_id: str | None) -> str:
    """The curves of a committed row: named by its run id; `epochs/<key>.parquet` for a row
    of the previous release (no run id)."""
    return f"{grid}/epochs/{key}/{run_id}.parquet" if run_id else f"{grid}/epochs/{key}.parquet"


def is_result(name: str) -> bool:
    """A committed result file's name: Parquet, not hidden (temp files start with '.')."""
    base = name.rsplit("/", 1)[-1]
    return base.endswith(".parquet") and not base.startswith((".", "_"))


def kind_of(grid: str, name: str) -> str | None:
    """'trials' (a finished row), 'failures' (a failed attempt, either layout) or None."""
    if not is_result(name):
        return None
    folder = name[len(grid) + 1 :].rsplit("/", 1)[0]
    if folder == "trials":
        return "trials"
    if folder in (FAILURES, LEGACY_FAILURES):
        return "failures"
    return None


def new_run_id(generation: int | None) -> str:
    """A new run's id: random, after `g<generation>-` where the write is fenced, so that a
    listing says which launch wrote a curve file (results/store/prune.py, `stale_curves`)."""
    rand = uuid.uuid4().hex[:16]
    return rand if generation is None else f"g{int(generation)}-{rand}"


def run_generation(curve: str) -> int | None:
    """The lease generation a curve file's name carries; None for an unfenced write or one
    of an earlier release."""
    found = re.fullmatch(r"g(\d+)-[0-9a-f]+\.parquet", curve.rsplit("/", 1)[-1])
    return int(found.group(1)) if found else None
