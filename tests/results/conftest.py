"""Fixtures for the results tests: fake trials and summaries, stores, a real S3 on loopback.

The S3 server (tests/conftest.py) is moto's standalone server on 127.0.0.1; each test gets
its own bucket and fake credentials through monkeypatch.
"""

from __future__ import annotations

import hashlib
import json
import socket
from datetime import datetime, timezone
from types import SimpleNamespace

import pytest

from results.store import open_store, schema
from tests.conftest import aws_env
from trainers.config import default_config, set_path

FAKE_PROVENANCE = {
    "spec_sha256": "0" * 64,
    "grid_version": "0.1.0",
    "git_commit": None,
    "python_version": "3.11.0",
    "torch_version": "2.0.0",
    "ray_version": "2.0.0",
    "cuda_version": None,
    "device": "cpu",
    "hostname": "test-host",
    "started": "2024-01-01T00:00:00+00:00",
    "ended": "2024-01-01T01:00:00+00:00",
}


@pytest.fixture
def make_trial():
    """make_trial(grid, **{dotted path: value}) -> a Cell stand-in with a stable fake key."""

    def make(grid: str = "g", **params):
        cfg = default_config()
        for path, value in params.items():
            set_path(cfg, path, value)
        key = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:12]
        return SimpleNamespace(key=key, grid=grid, params=dict(params), config=cfg)

    return make


def fake_summary(
    status: str = "completed",
    test_acc: float = 0.9,
    val_acc: float | None = 0.9,
    params: int = 1000,
    epochs: int = 3,
    wall_s: float = 60.0,
) -> dict:
    """A trainers.loop.train summary with a rising test accuracy ending at `test_acc`."""
    history = [
        {
            "epoch": e,
            "lr": 0.1,
            "train_loss": 1.0 / e,
            "train_acc": test_acc,
            "val_loss": None if val_acc is None else 1.0,
            "val_acc": val_acc,
            "test_loss": 0.5,
            "test_acc": test_acc - 0.1 * (epochs - e) / epochs,
            "epoch_s": 1.0,
            "images_per_s": 500.0,
        }
        for e in range(1, epochs + 1)
    ]
    if status == "diverged":
        history[-1]["train_loss"] = float("nan")
    return {
        "status": status,
        "epochs": epochs,
        "params": params,
        "wall_s": wall_s,
        "images_per_s": 500.0,
        "device": "cpu",
        "final": history[-1],
        "best": max(history, key=lambda h: h["val_acc"] or h["test_acc"]),
        "history": history,
    }


@pytest.fixture
def summary():
    return fake_summary


@pytest.fixture
def put():
    """put(store, trial, summary_or_None, error=None): write one trial's result rows."""

    def write(store, trial, summ, error=None):
        row = schema.trial_row(trial, summ, FAKE_PROVENANCE, error=error)
        store.write_trial(
            trial.grid, trial.key, row, schema.epoch_rows(trial, (summ or {}).get("history"))
        )
        return row

    return write


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path):
    """The same test on a local folder and on moto's S3 server."""
    if request.param == "local":
        return open_store(str(tmp_path / "runs"))
    return open_store(request.getfixturevalue("s3_uri"))


@pytest.fixture
def local_store(tmp_path):
    return open_store(str(tmp_path / "runs"))


@pytest.fixture
def dead_endpoint(monkeypatch, tmp_path):
    """AWS_ENDPOINT_URL pointing at a loopback port where nothing listens."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    aws_env(monkeypatch, tmp_path, f"http://127.0.0.1:{port}")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")  # no retry backoff: fail at once
    return port


@pytest.fixture
def utc():
    return lambda *a: datetime(*a, tzinfo=timezone.utc)


def table_spec(**kw) -> dict:
    """A normalised `tables:` entry (as orchestrator.spec.tables hands it over)."""
    t = {
        "name": "table",
        "title": "table",
        "rows": ["model.arch"],
        "columns": None,
        "metric": "test_acc",
        "at": "final",
        "best_by": None,
        "over": None,
        "show": [],
        "reference_label": "paper",
        "reference": [],
        "baseline": None,
    }
    t.update(kw)
    return t


@pytest.fixture
def table():
    return table_spec


GOLDEN_TABLES = [
    table_spec(
        name="best_lr",
        title="Best lr per model: test error (%)",
        metric="test_error",
        best_by="val_acc",
        over="train.lr",
        show=["params", "wall_s"],
        reference=[
            {"where": {"model.arch": "model_a"}, "value": 12.47, "label": None},
            {"where": {"model.arch": "model_b"}, "value": 10.2, "label": None},
            {"where": {"model.arch": "model_c"}, "value": 9.74, "label": "Springenberg"},
        ],
    ),
    table_spec(
        name="lr_sweep",
        title="Test accuracy (%) per lr",
        columns="train.lr",
        reference=[
            {"where": {"model.arch": "model_a", "train.lr": 0.05}, "value": 88.5, "label": None}
        ],
    ),
]
# (arch, lr, seed) -> (status, test_acc, val_acc); model_c has no result at all.
GOLDEN_OUTCOMES = {
    ("model_a", 0.1, 0): ("completed", 0.85, 0.80),
    ("model_a", 0.1, 1): ("completed", 0.86, 0.82),
    ("model_a", 0.05, 0): ("completed", 0.88, 0.84),
    ("model_a", 0.05, 1): ("completed", 0.90, 0.86),
    ("model_b", 0.1, 0): ("completed", 0.91, 0.90),
    ("model_b", 0.1, 1): ("failed", None, None),
    ("model_b", 0.05, 0): ("diverged", 0.10, 0.10),
    ("model_b", 0.05, 1): ("diverged", 0.10, 0.10),
}
GOLDEN_SIZE = {"model_a": (839_242, 3725.0), "model_b": (885_610, 125.0)}


def golden_spec(tables=None):
    """A real Spec (3 archs x 2 lrs x 2 seeds) built directly, without loading YAML."""
    from orchestrator.spec.load import Spec

    return Spec(
        name="golden",
        description="",
        path="golden.yaml",
        sha256="0" * 64,
        base=default_config(),
        axes={
            "model.arch": ["model_a", "model_b", "model_c"],
            "train.lr": [0.1, 0.05],
            "train.seed": [0, 1],
        },
        include=[],
        exclude=[],
        resources={},
        max_failures=0,
        tables=GOLDEN_TABLES if tables is None else tables,
    )


@pytest.fixture
def spec_factory():
    return golden_spec


@pytest.fixture
def golden(local_store, put, make_trial):
    """(spec, store) with the golden results written, plus one stale row of another cell."""
    from orchestrator.spec.expand import expand

    spec = golden_spec()
    for trial in expand(spec):
        cell = (
            trial.config["model"]["arch"],
            trial.config["train"]["lr"],
            trial.config["train"]["seed"],
        )
        if cell not in GOLDEN_OUTCOMES:
            continue
        status, test_acc, val_acc = GOLDEN_OUTCOMES[cell]
        params, wall_s = GOLDEN_SIZE[cell[0]]
        summ = (
            None
            if status == "failed"
            else fake_summary(status, test_acc, val_acc, params=params, wall_s=wall_s)
        )
        put(local_store, trial, summ, error="CUDA error" if summ is None else None)
    stale = make_trial("golden", **{"model.arch": "model_c", "train.epochs": 1})
    put(local_store, stale, fake_summary(test_acc=0.99, val_acc=0.99))
    return spec, local_store


# A table over seeds 0-2 with a baseline (tests/results/test_table_stats.py): test accuracy
# (%) per (arch, batch norm) and seed; None: that seed has no result. model_a: 3 seeds each
# side (paired); model_b with batch norm: a missing seed (Welch); model_c without: 1 seed.
SEED_ACC = {
    ("model_a", False): [90.0, 91.0, 92.0],
    ("model_a", True): [92.5, 93.0, 94.0],
    ("model_b", False): [88.0, 89.0, 90.5],
    ("model_b", True): [89.5, 91.0, None],
    ("model_c", False): [89.0, None, None],
    ("model_c", True): [91.0, 91.5, 93.0],
}
SEED_TABLE = table_spec(
    name="bn",
    title="Batch norm: test accuracy (%)",
    rows=["model.arch", "model.batch_norm"],
    baseline={"model.batch_norm": False},
    show=["wall_s"],
    reference=[
        {
            "where": {"model.arch": "model_a", "model.batch_norm": True},
            "value": 93.5,
            "label": None,
        },
        {
            "where": {"model.arch": "model_b", "model.batch_norm": False},
            "value": 95.0,
            "label": None,
        },
        {
            "where": {"model.arch": "model_c", "model.batch_norm": False},
            "value": 90.0,
            "label": None,
        },
    ],
)


@pytest.fixture
def seeds(local_store, put):
    """(spec, store): SEED_ACC written, each run one hour of wall time."""
    import dataclasses

    from orchestrator.spec.expand import expand

    spec = dataclasses.replace(
        golden_spec([SEED_TABLE]),
        name="bn",
        axes={
            "model.arch": ["model_a", "model_b", "model_c"],
            "model.batch_norm": [False, True],
            "train.seed": [0, 1, 2],
        },
    )
    for trial in expand(spec):
        model = trial.config["model"]
        acc = SEED_ACC[(model["arch"], model["batch_norm"])][trial.config["train"]["seed"]]
        if acc is not None:
            put(local_store, trial, fake_summary(test_acc=acc / 100, wall_s=3600.0))
    return spec, local_store
