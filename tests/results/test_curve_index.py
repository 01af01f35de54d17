"""A halving relaunch reads its rung rows through an index (results/store/curve_index.py): one GET
for every finished cell's rung rows, not one per cell; a rerun's new run is read from its
file; the rows are exactly the curve files' rows. Real moto; requests counted with
botocore's event hook."""

from __future__ import annotations

from results.store import open_store, prune, reader
from tests.results.test_commit import write
from tests.results.test_layout import counted


def rung_rows(store, epochs=(2, 4)) -> list[tuple]:
    table = store.read_epochs("g", columns=["val_acc", "test_acc"], epochs=list(epochs))
    return sorted((r["key"], r["epoch"], r["val_acc"], r["test_acc"]) for r in table.to_pylist())


def from_files(store, epochs=(2, 4)) -> list[tuple]:
    """The same rows, read from each curve file (what the index must equal)."""
    rows = store.read_trials("g", ["run_id"])  # every cell here finished
    table = reader.read_curves(store, "g", rows, ["val_acc", "test_acc"], list(epochs))
    return sorted((r["key"], r["epoch"], r["val_acc"], r["test_acc"]) for r in table.to_pylist())


def test_rung_rows_come_from_the_index_then_only_new_runs_from_their_files(
    s3_uri, make_trial, summary, monkeypatch, tmp_path
):
    cells = [make_trial(**{"train.lr": lr}) for lr in (0.1, 0.2, 0.3)]
    writer = open_store(s3_uri)
    for i, cell in enumerate(cells):
        write(writer, cell, summary(test_acc=0.5 + i / 10, epochs=5))
    prune.prune(writer, "g", rungs=[2, 4])  # what a halving launch does under its lease
    expected = from_files(open_store(s3_uri))
    assert len(expected) == 6
    monkeypatch.setenv("GRID_CACHE_DIR", str(tmp_path / "another-machine"))
    calls: list[str] = []
    assert rung_rows(counted(s3_uri, calls)) == expected
    # one listing of trials/, the rows' index, the rung rows' index: no GET per cell
    assert sorted(calls) == ["GetObject", "GetObject", "ListObjectsV2"]
    write(writer, cells[0], summary(test_acc=0.9, epochs=5))  # a rerun: a new run id
    calls.clear()
    store = counted(s3_uri, calls)
    assert rung_rows(store) == from_files(open_store(s3_uri)) != expected
    # the listing, the changed row and the new run's curves, each after a look at the index
    # in case another machine's launch compacted them: the rest from this machine's cache
    assert sorted(calls) == ["GetObject"] * 4 + ["ListObjectsV2"]
    calls.clear()
    assert rung_rows(counted(s3_uri, calls), epochs=(3,)) == from_files(writer, epochs=(3,))
    # epochs the caches lack (another spec's rungs): each run's file, after the index
    assert sorted(calls) == ["GetObject"] * 4 + ["ListObjectsV2"]
