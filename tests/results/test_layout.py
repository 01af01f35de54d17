"""One listing per command: failures live under `trials/` (results/store/layout.py), so a command
lists `trials/` once (N/1000 requests on S3) and reads nothing it has; a store of the
previous release (failures in `failures/`) still reads, and a launch's pruning moves its
failures under `trials/`. Requests are counted with botocore's own event hook on a real
moto server."""

from __future__ import annotations

import io

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from results.store import open_store, prune, reader, schema
from tests.results.conftest import fake_summary
from tests.results.test_commit import write


def counted(uri: str, calls: list[str]):
    """A store whose every S3 request is appended to `calls` by name."""
    store = open_store(uri)
    store.client.meta.events.register(
        "before-call.s3", lambda model, **kw: calls.append(model.name)
    )
    return store


def parquet(table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


def fail(store, trial, error="boom"):
    store.write_failure("g", trial.key, schema.trial_row(trial, None, {}, error=error))


def test_a_command_lists_trials_once_and_finds_the_failures_there(
    s3_uri, make_trial, summary, monkeypatch, tmp_path
):
    done, failed = make_trial(**{"train.lr": 0.1}), make_trial(**{"train.lr": 0.2})
    writer = open_store(s3_uri)
    write(writer, done, summary())
    fail(writer, failed)
    assert writer.list_objects("g/trials") == sorted(
        [f"g/trials/{done.key}.parquet", f"g/trials/_failures/{failed.key}.parquet"]
    )
    prune.prune(writer, "g")  # what a launch does under its lease: the index
    monkeypatch.setenv("GRID_CACHE_DIR", str(tmp_path / "another-machine"))
    calls: list[str] = []
    store = counted(s3_uri, calls)
    # what `grid status` reads: the statuses, the failures' errors, the rows
    assert store.statuses("g") == {done.key: "completed", failed.key: "failed"}
    assert store.read_failures("g", ["error"]).column("error").to_pylist() == ["boom"]
    assert store.read_trials("g").num_rows == 2
    # one listing of trials/ (no failures/ folder: the trials index, read first, says
    # there is none), then the failures' index (this machine's cache is empty)
    assert sorted(calls) == ["GetObject", "GetObject", "ListObjectsV2"]
    calls.clear()
    assert counted(s3_uri, calls).statuses("g") == {done.key: "completed", failed.key: "failed"}
    assert calls == ["ListObjectsV2"]  # the machine's cache holds every row now


def test_failures_of_the_previous_release_read_and_a_prune_moves_them(store, make_trial, summary):
    done, failed = make_trial(**{"train.lr": 0.1}), make_trial(**{"train.lr": 0.2})
    write(store, done, summary())
    old = schema.trial_row(failed, None, {}, error="old release: died")
    store.put_object(  # where the previous release wrote it
        f"g/failures/{failed.key}.parquet",
        schema.to_table([old], schema.file_metadata(old)).to_pandas().to_parquet(),
    )
    store.forget()
    assert store.statuses("g") == {done.key: "completed", failed.key: "failed"}
    assert prune.prune(store, "g")["moved"] == 1
    assert store.list_objects("g/failures") == []
    assert f"g/trials/_failures/{failed.key}.parquet" in store.list_objects("g/trials")
    store.forget()
    assert store.statuses("g") == {done.key: "completed", failed.key: "failed"}
    assert store.read_failures("g").column("error").to_pylist() == ["old release: died"]
    assert "moved" not in prune.prune(store, "g")  # once
    write(store, failed, summary())  # a finished rerun clears the failure, in either place
    assert store.read_failures("g").num_rows == 0


def test_the_failures_folder_reads_as_a_flat_table(local_store, make_trial):
    """What docs/results.md shows: `trials/` holds the finished rows only for pandas; the
    failures are one more folder, with their errors."""
    a, b = make_trial(**{"train.lr": 0.1}), make_trial(**{"train.lr": 0.2})
    fail(local_store, a, "RuntimeError: x")
    fail(local_store, b, "RuntimeError: y")
    prune.prune(local_store, "g")
    failures = pd.read_parquet(local_store.root / "g" / "trials" / "_failures")
    assert sorted(failures["error"]) == ["RuntimeError: x", "RuntimeError: y"]
    assert sorted(local_store.statuses("g").values()) == ["failed", "failed"]


def test_a_thousand_rows_list_in_one_page(s3_uri, make_trial, monkeypatch, tmp_path):
    """S3 lists 1,000 keys a page: a grid of 1,000 cells costs a command exactly one listing
    page (the curves, the index, checkpoints live outside `trials/`)."""
    writer = open_store(s3_uri)
    row = schema.trial_row(make_trial(), fake_summary(epochs=1), {})
    keys = [f"{i:012x}" for i in range(1000)]
    table = schema.to_table([{**row, "key": k} for k in keys], schema.file_metadata(row))
    for i, key in enumerate(keys):  # rows only: the curves live outside trials/
        writer.put_object(f"g/trials/{key}.parquet", parquet(table.slice(i, 1)))
    # the index as a launch's pruning leaves it (built here from the listing's tags, not by
    # reading back the 1,000 rows: that would be the test's minute)
    listed = writer.scan_objects("g/trials")
    names = [f"g/trials/{k}.parquet" for k in keys]
    index = table.append_column(reader._FILE, pa.array(names)).append_column(
        reader._TAG, pa.array([listed[n][0] for n in names])
    )
    writer.put_object(
        "g/_index/trials.parquet", parquet(index.replace_schema_metadata({reader.MOVED: b"1"}))
    )
    monkeypatch.setenv("GRID_CACHE_DIR", str(tmp_path / "another-machine"))
    calls: list[str] = []
    store = counted(s3_uri, calls)
    assert len(store.statuses("g")) == 1000 and store.read_failures("g").num_rows == 0
    assert sorted(calls) == ["GetObject", "ListObjectsV2"]  # the trials index, one page
