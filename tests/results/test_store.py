"""results.store.local: local folders and S3 (a real moto server on loopback)."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import boto3
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from results.store import open_store, schema
from results.store.base import StoreUnreachable
from results.store.local import LocalStore
from results.store.reader import StoreWarning, unify
from results.store.s3 import S3Store
from trainers.errors import GridError

REPO = Path(__file__).resolve().parents[2]


def test_open_store_kinds(tmp_path):
    assert isinstance(open_store(None), LocalStore) and str(open_store(None)) == "./runs"
    assert isinstance(open_store(str(tmp_path)), LocalStore)
    with pytest.raises(GridError, match="unknown scheme"):
        open_store("gs://bucket/x")


def test_write_read_replace_statuses(store, make_trial, summary, put):
    store.check_writable()
    a, b = make_trial(**{"train.lr": 0.1}), make_trial(**{"train.lr": 0.05})
    put(store, a, summary(test_acc=0.5))
    put(store, b, None, error="boom")
    assert store.statuses("g") == {a.key: "completed", b.key: "failed"}
    put(store, a, summary(test_acc=0.75, epochs=2))  # rerun of the same key: replaces
    put(store, b, summary("diverged"))
    trials = store.read_trials("g")
    assert trials.num_rows == 2
    rows = {r["key"]: r for r in trials.to_pylist()}
    assert rows[a.key]["final_test_acc"] == pytest.approx(0.75) and rows[a.key]["epochs"] == 2
    assert rows[b.key]["status"] == "diverged" and rows[b.key]["error"] is None
    epochs = store.read_epochs("g").to_pylist()
    assert sorted(e["epoch"] for e in epochs if e["key"] == a.key) == [1, 2]
    assert store.statuses("g") == {a.key: "completed", b.key: "diverged"}
    assert store.list_grids() == ["g"]


def test_empty_store_reads_as_empty(store):
    assert store.read_trials("nothing").num_rows == 0
    assert store.read_epochs("nothing").num_rows == 0
    assert store.statuses("nothing") == {} and store.list_grids() == []


def test_several_grids_are_listed(store, make_trial, summary, put):
    put(store, make_trial("alpha"), summary())
    put(store, make_trial("beta"), summary())
    assert store.list_grids() == ["alpha", "beta"]
    assert len(store.read_trials("alpha")) == 1


def test_local_layout_is_readable_as_a_dataset(local_store, make_trial, summary, put):
    good = make_trial(**{"train.lr": 0.1})
    bad = make_trial(**{"train.lr": 0.2})
    put(local_store, bad, None, error="x")  # nulls in every metric column
    put(local_store, good, summary(val_acc=None))
    folder = local_store.root / "g"
    # no temp files left behind; a failure lives in its own folder, under trials/ (one
    # listing finds both) but skipped by the dataset reader and pandas ('_': hidden)
    assert {p.name for p in (folder / "trials").iterdir()} == {f"{good.key}.parquet", "_failures"}
    assert [p.name for p in (folder / "trials" / "_failures").iterdir()] == [f"{bad.key}.parquet"]
    assert ds.dataset(folder / "trials").to_table().num_rows == 1
    df = pd.read_parquet(folder / "trials")
    assert set(df["status"]) == {"completed"} and "model.arch" in df.columns
    assert set(pd.read_parquet(folder / "trials" / "_failures")["status"]) == {"failed"}
    assert {r["key"]: r["status"] for r in local_store.read_trials("g").to_pylist()} == {
        good.key: "completed",
        bad.key: "failed",
    }
    assert len(pd.read_parquet(folder / "epochs")) == 3  # the failed trial has no epochs


def test_a_failure_never_replaces_a_finished_row_and_a_success_clears_it(
    store, make_trial, summary, put
):
    cell = make_trial()
    good = put(store, cell, summary())
    put(store, cell, None, error="RuntimeError: the --force rerun died")
    rows = store.read_trials("g").to_pylist()
    assert len(rows) == 1 and rows[0]["status"] == "completed"
    assert rows[0]["final_test_acc"] == good["final_test_acc"]
    assert store.statuses("g") == {cell.key: "completed"}
    assert store.read_epochs("g").num_rows == len(summary()["history"])  # curves kept
    failures = store.read_failures("g").to_pylist()
    assert [f["error"] for f in failures] == ["RuntimeError: the --force rerun died"]
    put(store, cell, summary())  # a finished rerun replaces the row and clears the failure
    assert store.read_failures("g").num_rows == 0
    assert store.statuses("g") == {cell.key: "completed"}


def test_concurrent_writers_lose_nothing(local_store):
    """Two processes write different cells of one grid into the same folder at once."""
    script = textwrap.dedent("""
        import sys
        from types import SimpleNamespace
        from results.store import open_store
        root, tag = sys.argv[1], sys.argv[2]
        store = open_store(root)
        for i in range(8):
            key = f"{tag}{i:011d}"
            row = {"key": key, "grid": "g", "status": "completed", "final_test_acc": 0.5}
            store.write_trial("g", key, row, [{"key": key, "grid": "g", "epoch": 1}])
    """)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(local_store.root), tag], env=env, cwd=REPO
        )
        for tag in "ab"
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    statuses = local_store.statuses("g")
    assert len(statuses) == 16 and set(statuses.values()) == {"completed"}
    assert local_store.read_epochs("g").num_rows == 16


def test_corrupt_and_foreign_files_are_skipped_by_name(store, make_trial, summary, put):
    put(store, make_trial(), summary())
    foreign = pa.BufferOutputStream()
    pq.write_table(pa.table({"a": [1, 2]}), foreign)
    store.put_object("g/trials/garbage.parquet", b"PAR1 this is not parquet")
    store.put_object("g/trials/foreign.parquet", foreign.getvalue().to_pybytes())
    with pytest.warns(StoreWarning) as caught:
        trials = store.read_trials("g")
    assert trials.num_rows == 1
    messages = " ".join(str(w.message) for w in caught)
    assert "garbage.parquet" in messages and "foreign.parquet" in messages
    assert "no 'key' column" in messages


def test_files_with_new_columns_are_unified(local_store, make_trial, summary, put):
    old, new = make_trial(**{"train.lr": 0.1}), make_trial(**{"train.lr": 0.2})
    put(local_store, old, summary())
    row = schema.trial_row(new, summary(), {})
    row["final_new_metric"] = 1.5  # a later version adds a column
    local_store.write_trial("g", new.key, row, [])
    rows = {r["key"]: r for r in local_store.read_trials("g").to_pylist()}
    assert rows[new.key]["final_new_metric"] == 1.5 and rows[old.key]["final_new_metric"] is None


def test_unify_reads_clashing_types_as_text():
    t = unify(
        [
            pa.table({"key": ["a"], "x": [True]}),
            pa.table({"key": ["b"], "x": ["auto"]}),
            pa.table({"key": ["c"], "y": [1]}),
            pa.table({"key": ["d"], "y": [0.5]}),
        ]
    )
    assert t.column("x").to_pylist() == ["true", "auto", None, None]
    assert t.column("y").to_pylist() == [None, None, 1.0, 0.5]


def test_local_check_writable_fails_with_the_path(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    store = open_store(str(blocker / "runs"))
    with pytest.raises(GridError) as e:
        store.check_writable()
    assert str(blocker / "runs") in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize(
    "code, unreachable", [(errno.EIO, True), (errno.ESTALE, True), (errno.EACCES, False)]
)
def test_a_local_folder_whose_file_server_is_gone_is_unreachable(
    local_store, monkeypatch, code, unreachable
):
    """A folder on NFS whose server went away answers EIO or ESTALE: an outage (exit 3),
    which a trial retries; a permission refused is the user's to fix (exit 2)."""

    def refuse(self, data):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(Path, "write_bytes", refuse)
    with pytest.raises(GridError) as e:
        local_store.check_writable()
    assert isinstance(e.value, StoreUnreachable) == unreachable
    assert e.value.exit_status == (3 if unreachable else 2)
    assert str(e.value) == f"store {local_store.uri}: not writable: {os.strerror(code)}"


def test_local_check_writable_leaves_no_probe(local_store):
    local_store.check_writable()
    assert list(local_store.root.iterdir()) == []


def test_s3_objects_are_where_the_layout_says(s3_uri, make_trial, summary, put):
    store = open_store(s3_uri)
    assert isinstance(store, S3Store)
    trial = make_trial()
    put(store, trial, summary())
    s3 = boto3.client("s3")
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=store.bucket)["Contents"])
    body = s3.get_object(Bucket=store.bucket, Key=keys[-1])["Body"].read()
    row = pq.read_table(pa.BufferReader(body)).to_pylist()[0]
    assert row["key"] == trial.key
    assert keys == [  # the curves under the run id that the row, written last, names
        f"results/g/epochs/{trial.key}/{row['run_id']}.parquet",
        f"results/g/trials/{trial.key}.parquet",
    ]


def test_s3_unreachable_endpoint_is_a_grid_error(dead_endpoint):
    store = open_store("s3://bucket/prefix")
    with pytest.raises(GridError) as e:
        store.check_writable()
    message = str(e.value)
    assert message.startswith("store s3://bucket/prefix: not writable")
    assert "\n" not in message and "testing-secret" not in message


def test_s3_lease_operations_with_the_endpoint_down_are_store_errors(dead_endpoint):
    # Found by the fault campaign: with the S3 server down, the lease's read raised
    # botocore's EndpointConnectionError, which the launch's lease check (it forgives a
    # StoreError: the heartbeat looks again) let through, and the launch died (exit 1).
    store = open_store("s3://bucket/prefix")
    calls = {
        "read": lambda: store.read_tagged("g/_lease.json"),
        "create": lambda: store.create("g/_lease.json", b"{}"),
        "replace": lambda: store.replace_if("g/_lease.json", b"{}", "etag"),
        "delete": lambda: store.delete_if("g/_lease.json", "etag"),
    }
    for what, call in calls.items():
        with pytest.raises(StoreUnreachable) as e:  # a StoreError that a trial retries
            call()
        assert str(e.value).startswith(f"store s3://bucket/prefix: cannot {what} g/_lease.json")
        assert "\n" not in str(e.value), what


def test_s3_missing_bucket_is_a_grid_error(s3_uri):
    store = open_store("s3://no-such-bucket-here/x")
    with pytest.raises(GridError, match="no-such-bucket-here"):
        store.check_writable()
    with pytest.raises(GridError, match="cannot list"):
        store.read_trials("g")


def test_a_store_error_survives_pickling_as_ray_sends_it_from_a_trial():
    """Ray pickles a trial's exception to the driver: the store's error must arrive as
    itself, with its message (the default pickling rebuilt it from the message alone, and
    the driver reported a TypeError from its __init__ instead)."""
    import pickle

    from results.store.base import Fenced, StoreError

    for cls in (StoreError, StoreUnreachable, Fenced):
        e = pickle.loads(pickle.dumps(cls("s3://b/p", "cannot delete g/checkpoints/k", "down")))
        assert type(e) is cls and isinstance(e, GridError)
        assert str(e) == "store s3://b/p: cannot delete g/checkpoints/k: down"
        assert (e.uri, e.action, e.reason) == ("s3://b/p", "cannot delete g/checkpoints/k", "down")


def test_rung_records_read_those_asked_for_skip_torn_ones_and_delete_the_stale(store):
    records = {f"k{i:03d}": {"metric": "val_acc", "scores": {"5": i / 100}, "passed": [5]}
               for i in range(40)}  # fmt: skip
    for key, record in records.items():
        store.write_rungs("g", key, record)
    store.put_object("g/rungs/torn.json", b'{"metric": "val_')  # a write cut short
    asked = {f"k{i:03d}" for i in range(30)} | {"torn", "never-written"}
    stale = {f"k{i:03d}" for i in range(30, 35)}
    got = store.read_rungs("g", asked, stale)
    assert got == {k: records[k] for k in sorted(asked) if k in records}
    left = {n.rsplit("/", 1)[-1] for n in store.list_objects("g/rungs")}
    assert left == {f"{k}.json" for k in records if k not in stale} | {"torn.json"}


def test_clearing_the_stops_of_cells_that_run_again_deletes_only_theirs(store):
    for key in ("a", "b", "c"):
        store.write_stop("g", key, {"rung": 4, "metric": "val_acc"})
    assert store.clear_stops("g", {"a", "c", "never-stopped"}) == 2
    assert [store.read_stop("g", k) for k in ("a", "b", "c")] == [
        None,
        {"metric": "val_acc", "rung": 4},
        None,
    ]
    assert store.clear_stops("g2", {"a"}) == 0  # a grid without stops: one listing, nothing else


def _many_rows(local_store, make_trial, summary, put, monkeypatch, tmp_path) -> dict:
    """Three rows and a corrupt file in a folder store read from PROCESSES_FROM files (here
    2) by 2 processes; {key: test accuracy} of the rows."""
    from results.store import reader

    monkeypatch.setenv("GRID_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(reader, "PROCESSES_FROM", 2)
    monkeypatch.setattr(reader, "_cores", lambda: 2)
    trials = [make_trial(**{"train.lr": lr}) for lr in (0.1, 0.2, 0.3)]
    for i, t in enumerate(trials):
        put(local_store, t, summary(test_acc=0.5 + i / 10))
    local_store.put_object("g/trials/garbage.parquet", b"PAR1 this is not parquet")
    return {t.key: 0.5 + i / 10 for i, t in enumerate(trials)}


def _read_whole(store) -> tuple[list, str]:
    """[(key, test accuracy)] of every row read (in the reader's order), and its warnings."""
    with pytest.warns(StoreWarning) as caught:
        rows = store.read_trials("g").to_pylist()
    return [(r["key"], r["final_test_acc"]) for r in rows], " ".join(str(w.message) for w in caught)


def _workers(monkeypatch) -> list:
    """The reading processes started (their argv), counted as they start."""
    started = []
    real = subprocess.Popen

    def popen(args, *a, **k):
        started.append(args)
        return real(args, *a, **k)

    monkeypatch.setattr(subprocess, "Popen", popen)
    return started


def test_many_files_of_a_folder_are_read_in_worker_processes_with_their_warnings(
    local_store, make_trial, summary, put, monkeypatch, tmp_path
):
    """From PROCESSES_FROM files a folder store's rows are decoded in worker processes, one
    per core (reader.py, `_read_in_processes`): reading here is made to fail, and the rows
    still come back once each, with the corrupt file's warning said in this process. A
    command that needs key and status only reads them the same way, and its second read
    needs no worker."""
    from results.store import reader

    rows = _many_rows(local_store, make_trial, summary, put, monkeypatch, tmp_path)
    started = _workers(monkeypatch)
    (tmp_path / "uuid.py").write_text("raise SystemExit('the current folder was imported')\n")
    monkeypatch.chdir(tmp_path)  # a stray module in the folder the command runs in
    real = reader._read_batches

    def here(store, names, kind, columns):
        assert not names, "a part was read in this process, not in a worker"
        return real(store, names, kind, columns)

    monkeypatch.setattr(reader, "_read_batches", here)
    found, warned = _read_whole(local_store)
    assert sorted(found) == sorted(rows.items())  # once each
    assert "garbage.parquet" in warned and "not a readable Parquet file" in warned
    assert "reading process failed" not in warned and len(started) == 2
    # key and status only (`_narrow_rows`, from NARROW_FROM files), on another machine
    monkeypatch.setattr(reader, "NARROW_FROM", 2)
    monkeypatch.setenv("GRID_CACHE_DIR", str(tmp_path / "another-cache"))
    started.clear()
    with pytest.warns(StoreWarning, match="garbage.parquet"):
        assert open_store(str(local_store.root)).statuses("g") == dict.fromkeys(rows, "completed")
    assert len(started) == 2
    started.clear()
    monkeypatch.setattr(reader, "_read_batches", real)  # the corrupt file, read again here
    with pytest.warns(StoreWarning, match="garbage.parquet"):
        assert open_store(str(local_store.root)).statuses("g") == dict.fromkeys(rows, "completed")
    assert started == []  # the rows from the narrow read's cache: no worker


@pytest.mark.parametrize(
    ("script", "why"),
    [
        ("exit 3", "exit 3"),  # it starts and fails
        ("echo not a pickle", "unreadable answer"),  # it answers something else
        (None, "No such file"),  # it cannot start
    ],
)
def test_a_reading_process_that_fails_costs_only_speed_and_says_so(
    local_store, make_trial, summary, put, monkeypatch, tmp_path, script, why
):
    """Each part of a worker that fails is read in the command's own process, whole and
    once, with a warning that says so."""
    rows = _many_rows(local_store, make_trial, summary, put, monkeypatch, tmp_path)
    python = tmp_path / "python"
    if script is not None:
        python.write_text(f"#!/bin/sh\n{script}\n")
        python.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(python))
    started = _workers(monkeypatch)
    found, warned = _read_whole(local_store)
    assert sorted(found) == sorted(rows.items()) and "garbage.parquet" in warned
    assert warned.count("a reading process failed") == 2 and why in warned
    assert len(started) == 2
