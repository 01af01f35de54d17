"""Fixtures for the data pipeline and loop tests: a small fake CIFAR-10 written in the real
python-pickle layout, and a resolved trial config shrunk to CPU-test size."""

from __future__ import annotations

import copy
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

# docs/design.md "The resolved config", with every key present, shrunk to seconds on a CPU.
SMALL_CONFIG = {
    "dataset": {
        "name": "synthetic",
        "root": None,
        "download": False,
        "augment": ["crop", "flip"],
        "crop_padding": 2,
        "cutout_size": 8,
        "preprocess": "standardize",
        "val_size": 0,
        "subset": 600,
    },
    "model": {
        "arch": "strided_a",
        "init": "he_normal",
        "activation": "relu",
        "batch_norm": True,
        "dropout": 0.0,
        "input_dropout": 0.0,
        "width": 0.25,
    },
    "train": {
        "epochs": 2,
        "batch_size": 50,
        "lr": 0.05,
        "optimizer": {"name": "sgd", "momentum": 0.9, "nesterov": True, "weight_decay": 5e-4},
        "schedule": {"name": "constant", "milestones": [], "gamma": 0.1, "warmup_epochs": 0},
        "label_smoothing": 0.0,
        "seed": 0,
        "precision": "auto",
        "channels_last": "auto",
        "compile": False,
        "device": "cpu",
    },
}


def write_fake_cifar10(
    root: Path, n_train: int = 200, n_test: int = 50, *, keys: str = "bytes", seed: int = 0
) -> dict:
    """Write `root/cifar-10-batches-py` as the CIFAR site ships it: data_batch_1..5,
    test_batch, batches.meta, each a pickled dict with 'data' (uint8 N x 3072: the R, G and
    B planes, each 32x32 row-major), 'labels', 'batch_label', 'filenames'.

    keys="bytes" writes b'data' keys (files re-pickled by Python 3 / numpy 2 tools, like
    the offline copies clusters hold); keys="str" writes 'data', as the official Python 2
    pickles load. Each class is a distinct colour plus noise, so a small CNN learns it.
    Returns the images (N x 3 x 32 x 32) and labels that were written."""
    rng = np.random.default_rng(seed)
    palette = rng.integers(30, 226, size=(10, 3))
    k = (lambda s: s.encode()) if keys == "bytes" else (lambda s: s)

    def images(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = np.arange(n) % 10
        rng.shuffle(y)
        x = palette[y][:, :, None, None] + rng.normal(0, 25, size=(n, 3, 32, 32))
        return np.clip(x, 0, 255).astype(np.uint8), y

    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    train_x, train_y = images(n_train)
    test_x, test_y = images(n_test)
    chunks = np.array_split(np.arange(n_train), 5)
    for i, idx in enumerate(chunks, 1):
        _dump(folder / f"data_batch_{i}", train_x[idx], train_y[idx], k, f"training batch {i} of 5")
    _dump(folder / "test_batch", test_x, test_y, k, "testing batch 1 of 1")
    meta = {
        k("label_names"): [
            "airplane",
            "automobile",
            "bird",
            "cat",
            "deer",
            "dog",
            "frog",
            "horse",
            "ship",
            "truck",
        ],
        k("num_cases_per_batch"): len(chunks[0]),
        k("num_vis"): 3072,
    }
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump(meta, f)
    return {"train_x": train_x, "train_y": train_y, "test_x": test_x, "test_y": test_y}


def _dump(path: Path, x: np.ndarray, y: np.ndarray, k, label: str) -> None:
    batch = {
        k("batch_label"): label.encode(),
        k("labels"): [int(v) for v in y],
        k("data"): x.reshape(len(x), 3072),  # C order: R plane, G plane, B plane
        k("filenames"): [f"img_{i:04d}.png".encode() for i in range(len(x))],
    }
    with open(path, "wb") as f:
        pickle.dump(batch, f)


@pytest.fixture(scope="session")
def fake_cifar10(tmp_path_factory) -> tuple[Path, dict]:
    """(root, written arrays) of a 200 train / 50 test fake CIFAR-10 with b'data' keys."""
    root = tmp_path_factory.mktemp("cifar_root")
    return root, write_fake_cifar10(root)


@pytest.fixture
def write_cifar():
    """`write_fake_cifar10(root, n_train=200, n_test=50, *, keys="bytes", seed=0)`."""
    return write_fake_cifar10


@pytest.fixture
def small_config():
    """A fresh copy of SMALL_CONFIG; tests override what they exercise."""
    return copy.deepcopy(SMALL_CONFIG)


@pytest.fixture
def one_thread():
    """Tiny convs on a shared 2-core box: one intra-op thread avoids spin-waiting threads."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def no_kept_step():
    """A test that trains a captured cell leaves its compiled step kept for the process's
    next cell of the same key (trainers/reuse.py); the next test starts without it."""
    yield
    from trainers import reuse

    reuse.forget()
