"""A finished cell's final weights, kept for the stages that start from it: one object per
run at `<grid>/weights/<key>/<weights_id>.pt` (a `torch.save`d state_dict), in the store (a
folder or S3), so a child trains from them on any node.

Only cells whose config says `train.keep_weights` keep them (a parent grid's spec, or any
grid launched by `grid launch child.yaml --with-parents`). The trial writes the weights
first, under a fresh id, then the row that names them (`weights_id`): the row is the commit,
so a child reads the weights of the parent's committed run only. Once the row is committed,
the cell's older weights are deleted (a rerun's new row names new weights).
"""

from __future__ import annotations

import uuid

from results.store.base import Store
from results.store.checkpoints import read_object

FOLDER = "weights"


def name(grid: str, key: str, weights_id: str) -> str:
    """The store name of one run's weights of cell `key`."""
    return f"{grid}/{FOLDER}/{key}/{weights_id}.pt"


def write(store: Store, grid: str, key: str, data: bytes) -> str:
    """Write a run's weights (atomically, under a new id); returns the id."""
    weights_id = uuid.uuid4().hex[:16]
    store.put_object(name(grid, key, weights_id), data)
    return weights_id


def read(store: Store, grid: str, key: str, weights_id: str) -> bytes | None:
    """The weights `weights_id` of cell `key`, or None when they are gone (one GET)."""
    return read_object(store, name(grid, key, weights_id))


def prune_cell(store: Store, grid: str, key: str, keep: str | None) -> int:
    """Delete cell `key`'s weights but `keep` (the committed row's); returns how many."""
    names = [n for n in store.list_objects(f"{grid}/{FOLDER}/{key}") if "/." not in n]
    old = [n for n in names if n.rsplit("/", 1)[-1] != f"{keep}.pt"]
    for n in old:
        store.delete_object(n)
    return len(old)
