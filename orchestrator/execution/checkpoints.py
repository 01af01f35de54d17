"""A cell's checkpoint: its bytes (the trainer state with its format and the code version
that wrote it), and where Tune keeps its own state.

Two copies of a cell's state exist while it trains (docs/design.md, "A trial's life"):
- the grid's own, one object per cell at `<store>/<grid>/checkpoints/<key>`
  (`results/store/checkpoints.py`), written on the checkpoint cadence and read with one GET by
  key when a trial starts: it is what a retry or a new launch resumes from, and it is deleted
  once the cell's result is committed;
- Tune's, a folder with one `state_<key>.pt` per cell of the trial (`save_checkpoint`), which
  Tune takes when a scheduler pauses a trial and hands back (`load_checkpoint`) when it
  resumes it, under `<store>/<grid>/_tune` (`tune_storage`), so that another node can.

A checkpoint that cannot be loaded (a torn file, an older format) is discarded with a
warning, instead of failing every retry of every launch: the cell resumes from the store's
checkpoint before it (`newest_state`: a torn checkpoint costs one checkpoint interval), else
starts over.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from urllib.parse import urlsplit

from pyarrow import fs as pafs

from results.store import checkpoints as stored
from results.store.base import Store

TUNE_DIR = "_tune"  # <store>/<grid>/_tune: Tune's experiment state and pause checkpoints
CHECKPOINT_FORMAT = 2  # 1: the bare trainer state (0.1); 2: {format, code_version, state}


class CheckpointWarning(UserWarning):
    """A checkpoint that could not be loaded was discarded; the cell starts over."""


def state_file(key: str) -> str:
    """A cell's file inside a Tune checkpoint folder."""
    return f"state_{key}.pt"


def serialise(state: dict) -> bytes:
    """A trainer state (live tensors: serialise at once) as a checkpoint's bytes."""
    import torch

    from results.store.schema import grid_version

    buf = io.BytesIO()
    torch.save({"format": CHECKPOINT_FORMAT, "code_version": grid_version(), "state": state}, buf)
    return buf.getvalue()


def load_state(
    key: str, data: bytes, where: str, then: str = "training from epoch 1"
) -> dict | None:
    """The trainer state in a checkpoint's bytes; None, with a CheckpointWarning, when it
    cannot be loaded (that cell starts over). `where`: what to name in the warning; `then`:
    what happens instead."""
    import torch

    try:
        # weights_only: tensors, numbers and containers, never arbitrary objects (a
        # checkpoint on a shared store is not trusted code); map_location: the trainer
        # moves each piece to the device it trains on now
        saved = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        if not (isinstance(saved, dict) and saved.get("format") == CHECKPOINT_FORMAT):
            raise ValueError(
                f"format {saved.get('format') if isinstance(saved, dict) else '?'}"
                f", expected {CHECKPOINT_FORMAT}"
            )
        return saved["state"]
    except Exception as e:  # noqa: BLE001 - any unreadable checkpoint: start over
        discard(key, f"{where}: {type(e).__name__}: {' '.join(str(e).split())}", then)
        return None


def load_states(directory: str | Path, keys: list[str]) -> dict[str, dict]:
    """The trainer states of `keys` found in a Tune checkpoint folder (missing keys left
    out; one that cannot be loaded is left out with a CheckpointWarning)."""
    out = {}
    for key in keys:
        path = Path(directory) / state_file(key)
        if path.exists():
            state = load_state(key, path.read_bytes(), path.name)
            if state is not None:
                out[key] = state
    return out


def discard(key: str, why: str, then: str = "training from epoch 1") -> None:
    """Say that cell `key`'s checkpoint cannot be used, and what happens `then`."""
    warnings.warn(
        f"cell {key}: checkpoint discarded, {then} ({why})", CheckpointWarning, stacklevel=2
    )


def newest_state(store: Store, grid: str, key: str) -> tuple[dict | None, bool]:
    """Cell `key`'s newest loadable state in the store (None: none, it starts over), and
    whether it came from the newest checkpoint: False when that one is torn and the one
    before it is used (the next write must then keep that one, not copy the torn one over
    it: `results/store/checkpoints.py`, `write(keep=)`). One GET; two when it is torn."""
    data = stored.read(store, grid, key)
    if data is None:
        return None, False
    state = load_state(key, data, "store", then="resuming from the one before it")
    if state is not None:
        return state, True
    previous = stored.read_previous(store, grid, key)
    if previous is None:
        discard(key, "store: no checkpoint before it")
        return None, False
    return load_state(key, previous, "store, the one before"), False


def store_location(store: Store) -> str:
    """The store as trials on other processes open it: an absolute folder, or s3://..."""
    root = getattr(store, "root", None)
    return str(Path(root).resolve()) if root is not None else store.uri


def tune_storage(store: Store, grid: str) -> tuple[str, pafs.FileSystem]:
    """(path, filesystem) of `<store>/<grid>/_tune`; an absolute folder for a local store."""
    root = getattr(store, "root", None)
    if root is not None:
        return str((Path(root) / grid / TUNE_DIR).resolve()), pafs.LocalFileSystem()
    path = f"{store.uri}/{grid}/{TUNE_DIR}"
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    if not endpoint:
        fs, inner = pafs.FileSystem.from_uri(path)
        return inner, fs
    parts = urlsplit(endpoint)  # an S3-compatible server (MinIO, Ceph...), as boto3 uses it
    fs = pafs.S3FileSystem(
        endpoint_override=parts.netloc or parts.path,
        scheme=parts.scheme or "https",
        region=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
    )
    return path[len("s3://") :], fs
