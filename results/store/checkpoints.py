"""The grid's own checkpoints: per cell, the newest at `<grid>/checkpoints/<key>` and the one
before it at `<grid>/checkpoints/<key>.prev`, in the store (a folder or S3), through the
store's public interface. `put_object` is atomic (a folder: a temporary file then a rename;
S3: one PUT), so a reader sees a whole object or the one before it; but an object can still
be torn after it was written (a disk or a file system that lost its end: the fault
campaign's `checkpoint` fault truncates one). A new checkpoint therefore never replaces the
last good one before it is complete: the newest is first copied to `.prev` (S3: a copy on
the server, no upload), then replaced. A torn newest costs one checkpoint interval, not the
whole cell (orchestrator/execution/checkpoints.py, `newest_state`).

A trial reads its cell's checkpoint with one GET by key when it starts (no listing; a second
GET, of `.prev`, only when the newest cannot be loaded); it writes it on the checkpoint
cadence and deletes both once the cell's result is committed. A launch lists the folder once,
to say how many cells resume and to drop what is left over.
"""

from __future__ import annotations

import contextlib

from results.store.base import NotFound, Store

FOLDER = "checkpoints"
PREVIOUS = ".prev"  # the checkpoint before the newest (a cell's key never has a dot)


def name(grid: str, key: str) -> str:
    """The store name of cell `key`'s newest checkpoint."""
    return f"{grid}/{FOLDER}/{key}"


def write(store: Store, grid: str, key: str, data: bytes, *, keep: bool = True) -> None:
    """Write cell `key`'s checkpoint, atomically, after keeping the one it replaces as the
    previous one. `keep` False: the newest is known to be unreadable or absent (the
    previous one, if any, is the last good one: it stays)."""
    if keep:
        with contextlib.suppress(NotFound):
            store.copy_object(name(grid, key), name(grid, key) + PREVIOUS)
    store.put_object(name(grid, key), data)


def read(store: Store, grid: str, key: str) -> bytes | None:
    """Cell `key`'s newest checkpoint, or None when it has none (one GET, no listing)."""
    return read_object(store, name(grid, key))


def read_previous(store: Store, grid: str, key: str) -> bytes | None:
    """The checkpoint before cell `key`'s newest, or None (one GET)."""
    return read_object(store, name(grid, key) + PREVIOUS)


def read_object(store: Store, name: str) -> bytes | None:
    """The bytes of the store's object `name`, or None when there is none (one GET)."""
    try:
        return store.get_object(name)
    except NotFound:
        return None


def delete(store: Store, grid: str, key: str) -> None:
    """Forget cell `key`'s checkpoints (its result is committed, or it trains from scratch):
    the previous one first, so that an interruption leaves at most the newest."""
    store.delete_object(name(grid, key) + PREVIOUS)
    store.delete_object(name(grid, key))


def listed(store: Store, grid: str) -> set[str]:
    """The keys of the cells with a checkpoint (one listing of the grid's folder)."""
    return {
        n.rsplit("/", 1)[-1].removesuffix(PREVIOUS)
        for n in store.list_objects(f"{grid}/{FOLDER}")
        if "/." not in n
    }
