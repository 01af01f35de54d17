"""Where Tune keeps its state and the cells' checkpoints: `<store>/<grid>/_tune`, on the
store's own filesystem (a folder, or S3 with the store's endpoint), so a launch killed on one
machine resumes its cells from another. Finds an earlier launch's checkpoints for a cell and
prunes the checkpoints of finished cells.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit

from pyarrow import fs as pafs

from results.schema import FINISHED
from results.store import Store

TUNE_DIR = "_tune"  # <store>/<grid>/_tune: Tune's experiment state and checkpoints
KEEP_CHECKPOINTS = 1  # the last epoch is all a retry needs; models can be large


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


def _checkpoints(store: Store, grid: str) -> dict[str, tuple[str, list[str]]]:
    """Trial dir -> (its latest checkpoint, the cell keys in it), over every launch."""
    path, fs = tune_storage(store, grid)
    out = {}
    for d in _subdirs(fs, f"{path}/{grid}"):
        ckpts = sorted(p for p in _subdirs(fs, d) if Path(p).name.startswith("checkpoint_"))
        keys = []
        if ckpts:
            keys = [
                Path(i.path).name[len("state_") : -len(".pt")]
                for i in fs.get_file_info(pafs.FileSelector(ckpts[-1]))
                if Path(i.path).name.startswith("state_")
            ]
        out[d] = (ckpts[-1] if ckpts else "", keys)
    return out


def _subdirs(fs: pafs.FileSystem, path: str) -> list[str]:
    infos = fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
    return [i.path for i in infos if i.type == pafs.FileType.Directory]


def previous_checkpoints(store: Store, grid: str, keys: list[str]) -> dict[str, str]:
    """Cell key -> the newest checkpoint holding its state left by an earlier launch (a
    killed launch resumes there). Trial dirs end in the launch's time stamp."""
    found: dict[str, tuple[str, str]] = {}
    for d, (ckpt, in_it) in _checkpoints(store, grid).items():
        stamp = Path(d).name.rsplit("_", 1)[-1]
        for key in set(in_it) & set(keys):
            if key not in found or stamp > found[key][0]:
                found[key] = (stamp, ckpt)
    return {key: ckpt for key, (_, ckpt) in found.items()}


def prune_checkpoints(store: Store, grid: str) -> None:
    """Delete the trial dirs whose cells are all finished: their checkpoints are of no use."""
    statuses = store.statuses(grid)
    _, fs = tune_storage(store, grid)
    for d, (_, keys) in _checkpoints(store, grid).items():
        if keys and all(statuses.get(k) in FINISHED for k in keys):
            fs.delete_dir(d)
