"""Pruning removes what no reader needs (stale curves, temp files of killed writes, a
finished launch's Tune folder) and nothing else; `usage` counts what the store holds."""

from __future__ import annotations

import os
import subprocess
import sys

from results.store import prune, schema
from results.store.lease import Lease
from tests.results.test_commit import write, write_previous_release


def names(store, grid="g") -> set[str]:
    """The grid's files but the rows' index, which each prune rewrites."""
    return {n for n in store.list_objects(grid) if not n.startswith(f"{grid}/_index/")}


def test_pruning_removes_stale_curves_and_the_tune_folder_only(store, make_trial, summary):
    a, b, c, d = (make_trial(**{"train.lr": lr}) for lr in (0.1, 0.2, 0.3, 0.4))
    write(store, a, summary(test_acc=0.5))
    first_run = store.read_trials("g", ["run_id"]).to_pylist()[0]["run_id"]
    final_a = summary(test_acc=0.6, epochs=2)
    write(store, a, final_a)  # a rerun: the first run's curves are stale
    write_previous_release(store, b, summary(test_acc=0.4))
    final_b = summary(test_acc=0.45, epochs=4)
    write(store, b, final_b)  # the old layout's curves of b are stale now
    final_c = summary(test_acc=0.3)
    write_previous_release(store, c, final_c)  # still committed: kept
    killed = f"g/epochs/{a.key}/0123456789abcdef.parquet"  # curves whose row never came
    store.put_object(killed, b"PAR1")
    Lease(store, "g").acquire()
    store.write_stop("g", c.key, {"rung": 1})
    store.write_failure("g", c.key, schema.trial_row(c, None, {}, error="boom"))
    tune = "g/_tune/g/trial_1/checkpoint_000001/state.pt"
    store.put_object(tune, b"x")
    record = {"metric": "val_acc", "scores": {"1": 0.5}, "passed": [1]}
    for t in (a, d):  # the async halving's rung records: a finished since, d did not
        store.write_rungs("g", t.key, record)
    before = names(store)
    stale = {
        f"g/epochs/{a.key}/{first_run}.parquet",
        killed,
        f"g/epochs/{b.key}.parquet",
        f"g/rungs/{a.key}.json",
    }
    assert stale < before

    assert prune.prune(store, "g") == {"curves": 3, "temp": 0, "tune": 0, "rungs": 1}
    assert names(store) == before - stale
    assert set(store.list_objects("g/_index")) == {
        *(f"g/_index/{k}.parquet" for k in ("trials", "failures")),
        "g/_index/usage.json",
    }
    assert all(whole_of(store, t, s) for t, s in ((a, final_a), (b, final_b), (c, final_c)))
    assert prune.prune(store, "g", tune=True)["tune"] == 1
    # the lease, the stop, the failure, d's rung record and every committed file stay
    assert names(store) == before - stale - {tune}
    assert store.read_rungs("g", {d.key}, stale=set()) == {d.key: record}
    assert prune.prune(store, "g", tune=True) == {"curves": 0, "temp": 0, "tune": 0, "rungs": 0}


def whole_of(store, trial, summ) -> bool:
    """`summ`'s row and curves for `trial`, among the grid's other cells."""
    store.forget()
    row = next(r for r in store.read_trials("g").to_pylist() if r["key"] == trial.key)
    curve = sorted(
        (e["epoch"], e["test_acc"])
        for e in store.read_epochs("g").to_pylist()
        if e["key"] == trial.key
    )
    return row["final_test_acc"] == summ["final"]["test_acc"] and [a for _, a in curve] == [
        h["test_acc"] for h in summ["history"]
    ]


def test_temp_files_of_dead_writers_go_those_of_live_ones_stay(local_store, make_trial, summary):
    trial = make_trial()
    write(local_store, trial, summary())
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        text=True,
        capture_output=True,
        check=True,
    )
    dead_pid = int(dead.stdout)
    folder = local_store.root / "g" / "trials"
    gone = folder / f".{trial.key}.parquet.{dead_pid}.0badc0de.tmp"
    mine = folder / f".{trial.key}.parquet.{os.getpid()}.0badc0de.tmp"
    odd = folder / ".something.tmp"  # no pid: kept while young
    for f in (gone, mine, odd):
        f.write_bytes(b"torn")
    assert prune.dead_temp_files(local_store, "g") == [f"g/trials/{gone.name}"]
    assert prune.prune(local_store, "g")["temp"] == 1
    assert not gone.exists() and mine.exists() and odd.exists()
    future = odd.stat().st_mtime + prune.ORPHAN_TMP_S + 1
    # a pid-less temp file goes once it is old; this live process's never does
    assert prune.dead_temp_files(local_store, "g", now=future) == [f"g/trials/{odd.name}"]
    assert local_store.statuses("g") == {trial.key: "completed"}


def test_usage_counts_the_objects_and_bytes_of_the_grid(store, make_trial, summary):
    assert store.usage("g") == (0, 0)
    write(store, make_trial(), summary())
    objects, size = store.usage("g")
    assert objects == 2 and size > 1000
    assert store.statuses("g")  # reuses the usage's listing
