"""The columns of the result store: one flat row per trial, one row per epoch, provenance.

A trial row holds its key, grid and status, every resolved config value as its own dotted
column (`model.arch`, `train.optimizer.weight_decay`), the axis values again as `param.<axis>`,
the final and best metrics (accuracies as fractions in [0, 1], as the trainer reports them),
the run's size and speed, and where it came from. docs/results.md lists every column.

Types are fixed per column so that every file of a grid has the same schema and the folder
reads as one dataset: lists become JSON text, a value whose type varies (`channels_last` is
`auto` or a bool) is stored as text, and a None gets the type the column has when it is set.
"""

from __future__ import annotations

import importlib.metadata
import json
import platform
import socket
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa

SCHEMA_VERSION = 1
STATUSES = ("completed", "diverged", "stopped", "failed")
# Results: the rows in trials/, which `grid launch` skips (unless --force). `stopped` (a
# halving stopped the cell at a rung, `stopped_at`) is skipped only while the spec halves.
FINISHED = ("completed", "diverged", "stopped")
# What the trainer reports each epoch (design.md); final_* and best_* repeat them per trial.
METRICS = ("train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc")
# epoch_wall_s (the epoch with its report and checkpoint) came later: files written before it
# lack the column, and read back with it null (`results.store.reader.unify`).
EPOCH_FIELDS = ("epoch", "lr") + METRICS + ("epoch_s", "images_per_s", "epoch_wall_s")
PROVENANCE = (
    "spec_sha256",
    "grid_version",
    "git_commit",
    "python_version",
    "torch_version",
    "ray_version",
    "cuda_version",
    "device",
    "hostname",
    "started",
    "ended",
)

STR, INT, FLOAT, BOOL = pa.string(), pa.int64(), pa.float64(), pa.bool_()
TRIAL_TYPES: dict[str, pa.DataType] = {
    "key": STR,
    "grid": STR,
    "status": STR,
    "error": STR,
    "epochs": INT,
    "resumed_epoch": INT,
    "stopped_at": INT,
    "params": INT,
    "wall_s": FLOAT,
    "images_per_s": FLOAT,
    "step_mode": STR,
    **{
        f"{at}_{m}": (INT if m == "epoch" else FLOAT)
        for at in ("final", "best")
        for m in EPOCH_FIELDS
    },
    **{p: STR for p in PROVENANCE},
    "schema_version": INT,
    # the commit (results/store/base.py): the run whose curves are this row's, and the lease
    # generation of the launch that wrote it
    "run_id": STR,
    "generation": INT,
    # stages (results/store/weights.py, orchestrator/stages/parents.py): the final weights this run
    # kept, and, for a stage's cell, the parent cell and run it started from
    "weights_id": STR,
    "parent_grid": STR,
    "parent_key": STR,
    "parent_run_id": STR,
}
EPOCH_TYPES: dict[str, pa.DataType] = {
    "key": STR,
    "grid": STR,
    "epoch": INT,
    **{m: FLOAT for m in EPOCH_FIELDS[1:]},
}
# Config leaves whose value can be None or of more than one type: their stored type.
CONFIG_TYPES: dict[str, pa.DataType] = {
    "dataset.root": STR,
    "dataset.subset": INT,
    "train.channels_last": STR,
}


def config_type(path: str, value: Any) -> pa.DataType:
    """The Arrow type of config column `path` (a list or mapping is JSON text)."""
    if path in CONFIG_TYPES:
        return CONFIG_TYPES[path]
    if isinstance(value, bool):
        return BOOL
    if isinstance(value, int):
        return INT
    if isinstance(value, float):
        return FLOAT
    return STR


def encode(path: str, value: Any) -> Any:
    """A config value as stored in column `path`: JSON text for lists, mappings and the
    non-text values of a text column; numbers as the column's number type."""
    kind = config_type(path, value)
    if value is None:
        return None
    if isinstance(value, (list, tuple, dict)) or (kind == STR and not isinstance(value, str)):
        return json.dumps(value, sort_keys=True, separators=(",", ":"))
    if kind == INT and isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def flat_config(config: dict, prefix: str = "") -> dict[str, Any]:
    """The nested resolved config as {dotted path: stored value}."""
    out: dict[str, Any] = {}
    for name, value in config.items():
        path = f"{prefix}{name}"
        if isinstance(value, dict):
            out.update(flat_config(value, path + "."))
        else:
            out[path] = encode(path, value)
    return out


def column_type(name: str, value: Any) -> pa.DataType:
    """The Arrow type of any trial or epoch column."""
    if name in TRIAL_TYPES:
        return TRIAL_TYPES[name]
    if name in EPOCH_TYPES:
        return EPOCH_TYPES[name]
    path = name.removeprefix("param.")
    if "." in path:
        return config_type(path, value)
    return FLOAT if isinstance(value, (int, float)) and not isinstance(value, bool) else STR


def _metrics(prefix: str, metrics: dict | None) -> dict[str, Any]:
    out = {f"{prefix}_{m}": None for m in EPOCH_FIELDS}
    for name, value in (metrics or {}).items():
        if value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)):
            out[f"{prefix}_{name}"] = value
    return out


def trial_row(
    trial: Any, summary: dict | None, provenance: dict, error: str | None = None
) -> dict[str, Any]:
    """The flat result row of one trial; `summary` None (with `error`) for a failed trial."""
    summary = summary or {}
    status = summary.get("status", "failed")
    if status == "failed" and error is None:
        error = "failed without a training summary"
    row: dict[str, Any] = {
        "key": trial.key,
        "grid": trial.grid,
        "status": status,
        "error": error,
        "epochs": summary.get("epochs"),
        "params": summary.get("params"),
        "wall_s": summary.get("wall_s"),
        "images_per_s": summary.get("images_per_s"),
        "step_mode": summary.get("step_mode"),
    }
    row.update(_metrics("final", summary.get("final")))
    row.update(_metrics("best", summary.get("best")))
    row.update({f"param.{p}": encode(p, v) for p, v in trial.params.items()})
    row.update(flat_config(trial.config))
    row.update({p: provenance.get(p) for p in PROVENANCE})
    row["device"] = summary.get("device") or provenance.get("device")
    row["schema_version"] = SCHEMA_VERSION
    # train.probes (trainers/probes.py): JSON columns, only on the rows that asked for them
    for name, value in (summary.get("probes") or {}).items():
        row[f"probe.{name}"] = json.dumps(value, separators=(",", ":"))
    return row


def epoch_rows(trial: Any, history: list[dict] | None) -> list[dict[str, Any]]:
    """One row per epoch of `history`: key, grid, epoch and every metric reported."""
    rows = []
    for metrics in history or []:
        row = {"key": trial.key, "grid": trial.grid}
        row.update({m: None for m in EPOCH_FIELDS})
        row.update(
            {
                k: v
                for k, v in metrics.items()
                if v is None or isinstance(v, (int, float)) and not isinstance(v, bool)
            }
        )
        rows.append(row)
    return rows


def _coerce(value: Any, kind: pa.DataType) -> Any:
    if value is None:
        return None
    if kind == FLOAT:
        return float(value)
    if kind == INT and isinstance(value, float):
        return int(value) if value.is_integer() else value
    if kind == STR and not isinstance(value, str):
        return json.dumps(value, sort_keys=True, separators=(",", ":"))
    return value


def to_table(rows: list[dict], metadata: dict[str, Any], columns: tuple[str, ...] = ()) -> pa.Table:
    """Rows as an Arrow table with the fixed column types (`columns` are present even with
    no rows) and the run metadata in the Parquet schema metadata (keys prefixed `grid.`)."""
    names = list(dict.fromkeys([*columns, *(n for r in rows for n in r)]))
    fields, arrays = [], []
    for name in names:
        values = [r.get(name) for r in rows]
        first = next((v for v in values if v is not None), None)
        kind = column_type(name, first)
        fields.append(pa.field(name, kind))
        arrays.append(pa.array([_coerce(v, kind) for v in values], type=kind))
    meta = {f"grid.{k}": str(v) for k, v in metadata.items() if v is not None}
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields, metadata=meta))


def file_metadata(row: dict) -> dict[str, str]:
    """What goes in the schema metadata of a trial's two files."""
    return {
        "schema_version": SCHEMA_VERSION,
        "key": row.get("key"),
        "grid": row.get("grid"),
        "spec_sha256": row.get("spec_sha256"),
        "grid_version": row.get("grid_version"),
        "git_commit": row.get("git_commit"),
        "ended": row.get("ended"),
    }


def grid_version() -> str:
    """This package's version (what wrote a row or a checkpoint)."""
    return _version("grid") or "0+unknown"


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _git_commit() -> str | None:
    """HEAD of the checkout this package runs from, if it is one (None otherwise)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def _torch_versions() -> tuple[str | None, str | None]:
    try:
        import torch  # already loaded in a trial process; only asked here for its versions
    except ImportError:
        return None, None
    return torch.__version__, torch.version.cuda


def _iso(t: datetime) -> str:
    if t.tzinfo is None:
        t = t.replace(tzinfo=timezone.utc)
    return t.astimezone(timezone.utc).isoformat(timespec="seconds")


def provenance(spec_sha256: str, started: datetime, ended: datetime, device: str) -> dict[str, Any]:
    """Where a result came from: spec hash, code and library versions, device, host, times
    (UTC ISO 8601). No environment variables and no credentials, ever."""
    torch_version, cuda_version = _torch_versions()
    return {
        "spec_sha256": spec_sha256,
        "grid_version": grid_version(),
        "git_commit": _git_commit(),
        "python_version": platform.python_version() or sys.version.split()[0],
        "torch_version": torch_version,
        "ray_version": _version("ray"),  # never import ray here: it is heavy and global
        "cuda_version": cuda_version,
        "device": device,
        "hostname": socket.gethostname(),
        "started": _iso(started),
        "ended": _iso(ended),
    }
