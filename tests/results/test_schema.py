"""results.store.schema: flat trial rows, epoch rows, provenance and stable column types."""

from __future__ import annotations

import json
import re
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from results.store import schema

PROV = {
    "spec_sha256": "ab" * 32,
    "device": "cpu",
    "hostname": "h",
    "started": "2024-01-01T00:00:00+00:00",
    "ended": "2024-01-01T00:01:00+00:00",
}


def test_trial_row_is_flat_with_dotted_config_params_metrics(make_trial, summary):
    trial = make_trial(**{"model.arch": "allcnn_c", "train.lr": 0.05})
    row = schema.trial_row(trial, summary(test_acc=0.9, val_acc=0.8, params=123), PROV)
    assert row["key"] == trial.key and row["grid"] == "g" and row["status"] == "completed"
    assert row["model.arch"] == "allcnn_c" and row["param.model.arch"] == "allcnn_c"
    assert row["train.lr"] == 0.05 and row["param.train.lr"] == 0.05
    assert row["train.optimizer.weight_decay"] == 0.001
    assert row["train.schedule.milestones"] == "[200,250,300]"  # lists: JSON text
    assert json.loads(row["dataset.augment"]) == ["crop", "flip"]
    assert row["final_test_acc"] == pytest.approx(0.9) and row["final_val_acc"] == 0.8
    assert row["best_epoch"] == 1 and row["final_epoch"] == 3 and row["epochs"] == 3
    assert row["params"] == 123 and row["error"] is None and row["device"] == "cpu"
    assert row["spec_sha256"] == "ab" * 32 and row["schema_version"] == schema.SCHEMA_VERSION
    assert not any(isinstance(v, (dict, list)) for v in row.values())


def test_failed_trial_row_has_error_and_no_metrics(make_trial):
    row = schema.trial_row(make_trial(), None, PROV, error="RuntimeError: CUDA out of memory")
    assert row["status"] == "failed" and row["error"].startswith("RuntimeError")
    assert row["final_test_acc"] is None and row["best_val_acc"] is None and row["params"] is None
    assert schema.trial_row(make_trial(), None, PROV)["error"]  # never a silent failure


def test_diverged_status_is_kept(make_trial, summary):
    row = schema.trial_row(make_trial(), summary("diverged"), PROV)
    assert row["status"] == "diverged" and row["final_train_loss"] != row["final_train_loss"]


def test_epoch_rows_one_per_epoch_with_every_metric(make_trial, summary):
    trial = make_trial()
    rows = schema.epoch_rows(trial, summary(epochs=4, val_acc=None)["history"])
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4]
    assert all(r["key"] == trial.key and r["grid"] == "g" for r in rows)
    assert set(schema.EPOCH_FIELDS) <= set(rows[0]) and rows[0]["val_acc"] is None
    assert schema.epoch_rows(trial, None) == []


def test_column_types_are_the_same_for_every_outcome(make_trial, summary):
    """A failed row (all metrics null) and a completed one must share one schema, or the
    folder does not read as one dataset."""
    t = make_trial(**{"train.channels_last": True})
    done = schema.to_table([schema.trial_row(t, summary(), PROV)], {})
    failed = schema.to_table([schema.trial_row(t, None, PROV, error="x")], {})
    assert done.schema.equals(failed.schema)
    assert done.schema.field("train.channels_last").type == pa.string()
    assert done.column("train.channels_last").to_pylist() == ["true"]
    assert done.schema.field("dataset.subset").type == pa.int64()
    assert done.schema.field("final_val_acc").type == pa.float64()
    assert done.schema.field("best_epoch").type == pa.int64()


def test_empty_epochs_table_keeps_its_columns():
    t = schema.to_table([], {"key": "k"}, columns=tuple(schema.EPOCH_TYPES))
    assert t.num_rows == 0 and t.schema.field("test_acc").type == pa.float64()


def test_schema_metadata_holds_run_metadata(tmp_path, make_trial, summary):
    row = schema.trial_row(make_trial(), summary(), PROV)
    path = tmp_path / "t.parquet"
    pq.write_table(schema.to_table([row], schema.file_metadata(row)), path)
    meta = pq.read_schema(path).metadata
    assert meta[b"grid.spec_sha256"] == b"ab" * 32
    assert meta[b"grid.schema_version"] == str(schema.SCHEMA_VERSION).encode()
    assert meta[b"grid.key"] == row["key"].encode()


def test_provenance_fields_and_no_environment(monkeypatch, utc):
    monkeypatch.setattr(schema, "_torch_versions", lambda: ("2.9.0", "12.4"))
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "very-secret-value")
    had_ray = "ray" in sys.modules
    p = schema.provenance("cd" * 32, utc(2024, 5, 1, 12), utc(2024, 5, 1, 13, 30), "NVIDIA H100")
    assert set(schema.PROVENANCE) == set(p)
    assert p["spec_sha256"] == "cd" * 32 and p["device"] == "NVIDIA H100"
    assert p["started"] == "2024-05-01T12:00:00+00:00" and p["ended"].endswith("+00:00")
    assert p["torch_version"] == "2.9.0" and p["cuda_version"] == "12.4"
    assert p["grid_version"] and p["hostname"]
    assert p["git_commit"] is None or re.fullmatch(r"[0-9a-f]{40}", p["git_commit"])
    assert ("ray" in sys.modules) == had_ray  # read from package metadata, never imported
    assert "very-secret-value" not in json.dumps(p)


def test_provenance_git_commit_is_none_outside_a_checkout(monkeypatch, tmp_path):
    monkeypatch.setattr(
        schema.subprocess, "run", lambda *a, **k: (_ for _ in ()).throw(FileNotFoundError("git"))
    )
    assert schema._git_commit() is None
