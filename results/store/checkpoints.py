"""The grid's own checkpoints: one object per cell at `<grid>/checkpoints/<key>`, in the
store (a folder or S3), through the store's primitives: `put_object` is atomic (a folder: a
temporary file then a rename; S3: one PUT), so a reader sees a whole checkpoint or the one
before it, never a torn one.

A trial reads its cell's checkpoint with one GET by key when it starts (no listing); it
writes it on the checkpoint cadence and deletes it once the cell's result is committed. A
launch lists the folder once, to say how many cells resume and to drop what is left over.
"""

from __future__ import annotations

from results.store.base import NotFound, Store

FOLDER = "checkpoints"


def name(grid: str, key: str) -> str:
    """The store name of cell `key`'s checkpoint."""
    return f"{grid}/{FOLDER}/{key}"


def write(store: Store, grid: str, key: str, data: bytes) -> None:
    """Write (or replace) cell `key`'s checkpoint, atomically."""
    store.put_object(name(grid, key), data)


def read(store: Store, grid: str, key: str) -> bytes | None:
    """Cell `key`'s checkpoint, or None when it has none (one GET, no listing)."""
    return read_object(store, name(grid, key))


def read_object(store: Store, name: str) -> bytes | None:
    """The bytes of the store's object `name`, or None when there is none (one GET)."""
    try:
        return store.get_object(name)
    except NotFound:
        return None


def delete(store: Store, grid: str, key: str) -> None:
    """Forget cell `key`'s checkpoint (its result is committed, or it trains from scratch)."""
    store.delete_object(name(grid, key))


def listed(store: Store, grid: str) -> set[str]:
    """The keys of the cells with a checkpoint (one listing of the grid's folder)."""
    return {n.rsplit("/", 1)[-1] for n in store.list_objects(f"{grid}/{FOLDER}") if "/." not in n}
