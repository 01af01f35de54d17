"""One result, one commit: a kill at any point of a write leaves the old result or the new
one whole; a writer under a lost lease replaces nothing; a store of the previous release
still reads. On a local folder and on moto's S3 server."""

from __future__ import annotations

import io

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from results.store import layout, prune, schema
from results.store.base import LEASE, Fenced
from results.store.lease import Lease
from tests.results.conftest import FAKE_PROVENANCE


class Killed(Exception):
    """The write stopped here, as a SIGKILL would stop it."""


def row_of(trial, summ, generation=None) -> dict:
    row = schema.trial_row(trial, summ, FAKE_PROVENANCE)
    row["generation"] = generation
    return row


def write(store, trial, summ, generation=None):
    row = row_of(trial, summ, generation)
    store.write_trial(trial.grid, trial.key, row, schema.epoch_rows(trial, summ["history"]))


def result(store, trial) -> tuple[float, list[float]]:
    """(the row's final test accuracy, the curve's test accuracies) as a reader sees them."""
    store.forget()
    rows = store.read_trials(trial.grid).to_pylist()
    assert [r["key"] for r in rows] == [trial.key]
    curve = sorted((e["epoch"], e["test_acc"]) for e in store.read_epochs(trial.grid).to_pylist())
    return rows[0]["final_test_acc"], [acc for _, acc in curve]


def whole(store, trial, summ) -> bool:
    """The reader sees exactly `summ`'s result: its row and its own curves."""
    final, curve = result(store, trial)
    return final == summ["final"]["test_acc"] and curve == [h["test_acc"] for h in summ["history"]]


def kill_at(monkeypatch, store, point: str) -> None:
    """Make the store stop at `point` of a commit: before the curves, between the curves
    and the row, or after the row (before the failure is cleared)."""
    put, create, replace_if, delete = (
        store.put_object,
        store.create,
        store.replace_if,
        store.delete_object,
    )

    def guard(name: str) -> None:
        if point == "curves" and "/epochs/" in name:
            raise Killed(name)
        if point == "row" and "/trials/" in name:
            raise Killed(name)
        if point == "after" and "failures/" in name:
            raise Killed(name)

    monkeypatch.setattr(store, "put_object", lambda n, d: (guard(n), put(n, d))[1])
    monkeypatch.setattr(store, "create", lambda n, d: (guard(n), create(n, d))[1])
    monkeypatch.setattr(store, "replace_if", lambda n, d, t: (guard(n), replace_if(n, d, t))[1])
    monkeypatch.setattr(store, "delete_object", lambda n: (guard(n), delete(n))[1])


@pytest.mark.parametrize("generation", [None, 1])
@pytest.mark.parametrize("point", ["curves", "row", "after"])
def test_a_kill_at_each_point_leaves_the_old_or_the_new_result_whole(
    store, make_trial, summary, monkeypatch, point, generation
):
    trial = make_trial()
    if generation is not None:
        Lease(store, trial.grid).acquire()  # generation 1
    old = summary(test_acc=0.5, epochs=3)
    new = summary(test_acc=0.9, epochs=5)
    write(store, trial, old, generation)
    with monkeypatch.context() as m:
        kill_at(m, store, point)
        with pytest.raises(Killed):
            write(store, trial, new, generation)
    assert whole(store, trial, new if point == "after" else old)
    write(store, trial, new, generation)  # the rerun commits whole
    assert whole(store, trial, new)


def test_a_late_writer_under_a_lost_lease_replaces_nothing(store, make_trial, summary):
    trial = make_trial()
    now = [1000.0]
    old = Lease(store, trial.grid, clock=lambda: now[0], stale_s=10)
    old.acquire()
    now[0] += 11  # the old launch's laptop slept: its lease is taken over
    new = Lease(store, trial.grid, clock=lambda: now[0], stale_s=10)
    new.acquire()
    assert (old.generation, new.generation) == (1, 2)
    good = summary(test_acc=0.7, epochs=4)
    write(store, trial, good, new.generation)
    late = summary(test_acc=0.99, epochs=2)
    with pytest.raises(Fenced, match="generation 1, but the lease is at generation 2"):
        write(store, trial, late, old.generation)
    with pytest.raises(Fenced):
        store.write_failure(trial.grid, trial.key, {**row_of(trial, None), "generation": 1})
    assert whole(store, trial, good)
    assert store.read_failures(trial.grid).num_rows == 0
    # the refused run's curves are gone: only the committed run's remain
    assert (
        len([n for n in store.list_objects(f"{trial.grid}/epochs") if n.endswith(".parquet")]) == 1
    )
    new.release()  # the generation survives the release: the late writer stays fenced
    with pytest.raises(Fenced):
        write(store, trial, late, old.generation)
    assert Lease(store, trial.grid).acquire() is None
    assert whole(store, trial, good)


def test_a_row_of_a_newer_generation_is_never_replaced_by_an_older_one(store, make_trial, summary):
    """Even with no lease object left (a copied store), the row's own generation fences."""
    trial = make_trial()
    good = summary(test_acc=0.7)
    write(store, trial, good, 3)
    with pytest.raises(Fenced, match="generation 3, newer than 2"):
        write(store, trial, summary(test_acc=0.99), 2)
    assert whole(store, trial, good)
    write(store, trial, summary(test_acc=0.8), 3)  # a rerun of the same launch replaces it
    assert result(store, trial)[0] == 0.8


def _parquet(rows: list[dict], meta: dict) -> bytes:
    sink = io.BytesIO()
    pq.write_table(schema.to_table(rows, meta), sink)
    return sink.getvalue()


def write_previous_release(store, trial, summ) -> None:
    """A result as the previous release wrote it: trials/<key>.parquet (no run_id, no
    generation) and epochs/<key>.parquet."""
    row = schema.trial_row(trial, summ, FAKE_PROVENANCE)
    meta = schema.file_metadata(row)
    store.put_object(
        f"{trial.grid}/epochs/{trial.key}.parquet",
        _parquet(schema.epoch_rows(trial, summ["history"]), meta),
    )
    store.put_object(f"{trial.grid}/trials/{trial.key}.parquet", _parquet([row], meta))


def test_a_store_of_the_previous_release_still_reads(store, make_trial, summary):
    a, b = make_trial(**{"train.lr": 0.1}), make_trial(**{"train.lr": 0.2})
    old_a, old_b = summary(test_acc=0.5, epochs=3), summary(test_acc=0.6, epochs=2)
    write_previous_release(store, a, old_a)
    write_previous_release(store, b, old_b)
    assert store.statuses("g") == {a.key: "completed", b.key: "completed"}
    epochs = store.read_epochs("g").to_pylist()
    assert sorted((e["key"], e["epoch"]) for e in epochs) == sorted(
        [(a.key, 1), (a.key, 2), (a.key, 3), (b.key, 1), (b.key, 2)]
    )
    new_a = summary(test_acc=0.9, epochs=4)
    write(store, a, new_a)  # a rerun of one cell writes the new layout beside the old
    store.forget()
    found = {r["key"]: r for r in store.read_trials("g").to_pylist()}
    assert found[a.key]["final_test_acc"] == 0.9 and found[b.key]["run_id"] is None
    curves = store.read_epochs("g", columns=["test_acc"], epochs=[2]).to_pylist()
    assert sorted((e["key"], e["test_acc"]) for e in curves) == sorted(
        [(a.key, new_a["history"][1]["test_acc"]), (b.key, old_b["history"][1]["test_acc"])]
    )


def test_curves_read_as_one_flat_table_joined_on_the_run_id(local_store, make_trial, summary):
    """What docs/results.md shows: pandas reads the folders; the committed curves are the
    ones whose (key, run_id) a row names."""
    import pandas as pd

    trial = make_trial()
    write(local_store, trial, summary(test_acc=0.5, epochs=3))
    write(local_store, trial, summary(test_acc=0.9, epochs=2))  # a rerun: stale curves stay
    root = local_store.root / "g"
    trials = pd.read_parquet(root / "trials")
    epochs = pd.read_parquet(root / "epochs")
    assert len(epochs) == 5  # both runs' files, until pruned
    committed = epochs.merge(trials[["key", "run_id"]], on=["key", "run_id"])
    assert list(committed["epoch"]) == [1, 2]


def test_rows_are_read_once_then_only_what_changed(
    s3_uri, make_trial, summary, monkeypatch, tmp_path
):
    """The caches of rows: a second reader lists and reads nothing it has; a reader on
    another machine (an empty cache) reads the launch's index, one GET for every row."""
    from results.store import open_store
    from results.store import reader as rows_reader

    calls: list[str] = []
    trials = [make_trial(**{"train.lr": lr}) for lr in (0.1, 0.2, 0.3)]
    writer = open_store(s3_uri)
    for t in trials:
        write(writer, t, summary())

    def reader():
        store = open_store(s3_uri)
        store.client.meta.events.register(
            "before-call.s3", lambda model, **kw: calls.append(model.name)
        )
        return store

    assert len(reader().statuses("g")) == 3
    # the trials and failures listings, the index (none yet), the three rows
    assert sorted(calls) == ["GetObject"] * 4 + ["ListObjectsV2"] * 2
    calls.clear()
    assert len(reader().statuses("g")) == 3
    # nothing new: the listings only, and a look at the index (none) for whether a launch
    # moved the failures of a previous release (until one did, failures/ is listed too)
    assert sorted(calls) == ["GetObject"] + ["ListObjectsV2"] * 2
    calls.clear()
    write(writer, trials[0], summary(test_acc=0.3))
    store = reader()
    assert store.read_trials("g", ["final_test_acc"]).num_rows == 3
    assert sorted(calls) == ["GetObject"] * 2 + ["ListObjectsV2"] * 2  # the index, the new row
    rows = {r["key"]: r["final_test_acc"] for r in store.read_trials("g").to_pylist()}
    assert rows[trials[0].key] == 0.3

    rows_reader.write_index(writer, "g")  # what a launch does at its end
    monkeypatch.setenv("GRID_CACHE_DIR", str(tmp_path / "another-machine"))
    calls.clear()
    store = reader()
    found = {r["key"]: r["final_test_acc"] for r in store.read_trials("g").to_pylist()}
    assert found == rows
    assert sorted(calls) == ["GetObject", "ListObjectsV2", "ListObjectsV2"]  # the index only


def test_a_first_read_of_many_uncompacted_rows_reads_only_the_columns_asked_for(
    s3_uri, make_trial, summary, monkeypatch
):
    """A store whose launch was killed before it compacted the rows, read on a machine with
    no cache: `grid status` needs keys and statuses, and reads only those columns of each
    file (reader.py, `_narrow_rows`; from NARROW_FROM files, here 2). A second status reads
    no row file again; a command that needs whole rows reads them, with their values."""
    from results.store import open_store
    from results.store import reader as rows_reader

    monkeypatch.setattr(rows_reader, "NARROW_FROM", 2)
    trials = [make_trial(**{"train.lr": lr}) for lr in (0.1, 0.2, 0.3)]
    writer = open_store(s3_uri)
    for i, t in enumerate(trials):
        write(writer, t, summary(test_acc=0.5 + i / 10))
    read = []  # the columns of each row file read
    real = rows_reader.read_file
    monkeypatch.setattr(
        rows_reader,
        "read_file",
        lambda store, name, kind, columns=None, epochs=None: (
            read.append(columns) or real(store, name, kind, columns=columns, epochs=epochs)
        ),
    )
    assert set(open_store(s3_uri).statuses("g").values()) == {"completed"}
    assert read == [["key", "status"]] * 3  # 3 files, 2 columns each
    read.clear()
    assert set(open_store(s3_uri).statuses("g").values()) == {"completed"}
    assert read == []  # the narrow read's own cache
    # a command that needs whole rows reads them, and their values are whole
    store = open_store(s3_uri)
    assert set(store.statuses("g").values()) == {"completed"}
    found = {r["key"]: r["final_test_acc"] for r in store.read_trials("g").to_pylist()}
    assert found == {t.key: 0.5 + i / 10 for i, t in enumerate(trials)}
    assert read == [None] * 3
    read.clear()
    assert len(open_store(s3_uri).read_trials("g", ["final_test_acc"])) == 3
    assert read == []  # whole rows now in the cache every command shares


def test_a_corrupt_cache_costs_a_full_read_and_nothing_else(
    local_store, make_trial, summary, tmp_path, monkeypatch
):
    cache = tmp_path / "cache"
    monkeypatch.setenv("GRID_CACHE_DIR", str(cache))
    trial = make_trial()
    write(local_store, trial, summary(test_acc=0.4))
    assert local_store.statuses("g") == {trial.key: "completed"}
    for f in cache.glob("*.parquet"):
        f.write_bytes(b"not parquet")
    local_store.forget()
    assert local_store.read_trials("g").column("final_test_acc").to_pylist() == [0.4]
    assert pa.types.is_string(local_store.read_trials("g").schema.field("run_id").type)


def _takeover_after_the_lease_check(monkeypatch, store, grid: str, then) -> list:
    """Run `then()` once, right after the next read of `grid`'s lease: between a commit's
    lease check and its compare-and-swap of the row, where a takeover can land."""
    read, done = store.read_tagged, []

    def read_tagged(name):
        found = read(name)
        if name == f"{grid}/{LEASE}" and not done:
            done.append(None)  # once: `then` reads the lease too
            done[0] = then()
        return found

    monkeypatch.setattr(store, "read_tagged", read_tagged)
    return done


def _curves(store, grid: str) -> list[str]:
    return [n for n in store.list_objects(f"{grid}/epochs") if n.endswith(".parquet")]


def test_a_takeover_between_the_lease_check_and_the_commit_prunes_no_curve_it_names(
    store, make_trial, summary, monkeypatch
):
    """The old launch's check passes; the new launch takes the grid over and prunes before
    the old commit's swap lands. The late row may land (no newer row to refuse it), but
    never naming curves that are gone; the new launch's own commit then replaces it, and
    its pruning removes the old curves only then."""
    trial = make_trial()
    now = [1000.0]
    old = Lease(store, trial.grid, clock=lambda: now[0], stale_s=10)
    old.acquire()
    new = Lease(store, trial.grid, clock=lambda: now[0] + 11, stale_s=10)

    def takeover():
        said = new.acquire()  # the old launch's heartbeat is stale: taken over
        pruned = prune.prune(store, trial.grid, settled=new.settled())
        store.forget()
        return said, pruned

    done = _takeover_after_the_lease_check(monkeypatch, store, trial.grid, takeover)
    late = summary(test_acc=0.6, epochs=3)
    write(store, trial, late, old.generation)
    monkeypatch.undo()
    assert done[0][0].startswith("took over the lease") and done[0][1]["curves"] == 0
    assert whole(store, trial, late)  # its row names its own curves, still there
    good = summary(test_acc=0.7, epochs=4)
    write(store, trial, good, new.generation)  # the new launch's run of the cell
    assert prune.prune(store, trial.grid, settled=new.settled(ended=True))["curves"] == 1
    assert whole(store, trial, good) and len(_curves(store, trial.grid)) == 1
    with pytest.raises(Fenced):  # and the old launch can no longer replace it
        write(store, trial, summary(test_acc=0.99), old.generation)
    assert whole(store, trial, good)


def test_a_takeover_and_a_newer_commit_between_the_check_and_the_swap_win(
    store, make_trial, summary, monkeypatch
):
    """The new launch takes over and commits the cell between the old commit's lease check
    and its swap: the swap finds a newer row and is refused; the newer result stays whole."""
    trial = make_trial()
    now = [1000.0]
    old = Lease(store, trial.grid, clock=lambda: now[0], stale_s=10)
    old.acquire()
    new = Lease(store, trial.grid, clock=lambda: now[0] + 11, stale_s=10)
    good = summary(test_acc=0.7, epochs=4)

    def takeover_and_commit():
        new.acquire()
        monkeypatch.undo()  # the new launch's own commit runs unhooked
        write(store, trial, good, new.generation)

    _takeover_after_the_lease_check(monkeypatch, store, trial.grid, takeover_and_commit)
    with pytest.raises(Fenced, match="newer than 1"):
        write(store, trial, summary(test_acc=0.99, epochs=2), old.generation)
    assert whole(store, trial, good) and len(_curves(store, trial.grid)) == 1
    assert prune.prune(store, trial.grid, settled=new.settled(ended=True))["curves"] == 0
    assert whole(store, trial, good)


def test_pruning_keeps_a_lost_writers_curves_until_it_can_no_longer_commit(
    store, make_trial, summary
):
    """Curves of generation 1 with no row yet: kept by a launch that took a stale lease
    over (their writer may still commit), removed by one that took a released lease, and
    by any once the cell has a row of their generation or newer."""
    trial = make_trial()
    orphan = f"{trial.grid}/epochs/{trial.key}/{layout.new_run_id(1)}.parquet"
    store.put_object(orphan, b"PAR1")
    now = [1000.0]
    Lease(store, trial.grid, clock=lambda: now[0], stale_s=10).acquire()
    taker = Lease(store, trial.grid, clock=lambda: now[0] + 11, stale_s=10)
    taker.acquire()
    assert prune.prune(store, trial.grid, settled=taker.settled())["curves"] == 0
    assert prune.prune(store, trial.grid, settled=taker.settled(ended=True))["curves"] == 0
    taker.release()
    after = Lease(store, trial.grid)
    after.acquire()  # a released lease: every writer before it has ended
    assert after.generation == 3
    assert prune.prune(store, trial.grid, settled=after.settled())["curves"] == 1
    # a grid with no lease object (a copied store): no generation is settled, rows decide
    cell = make_trial("h")
    orphan = f"h/epochs/{cell.key}/{layout.new_run_id(1)}.parquet"
    store.put_object(orphan, b"PAR1")
    assert prune.prune(store, "h")["curves"] == 0
    write(store, cell, summary(test_acc=0.5), 1)  # generation 1 committed the cell
    assert prune.prune(store, "h")["curves"] == 1
    run = store.read_trials("h").to_pylist()[0]["run_id"]
    assert run.startswith("g1-") and _curves(store, "h") == [layout.curve_name("h", cell.key, run)]
