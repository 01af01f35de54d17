"""Write images as CIFAR-10's (and CIFAR-100's) own python-pickle files, so code that reads
real CIFAR (our data loader, torchvision.datasets.CIFAR10/CIFAR100) can run offline on
synthetic images.

The layout is the one the CIFAR site ships (https://www.cs.toronto.edu/~kriz/cifar.html):
`<root>/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}`, each a pickled dict
with b"data" (uint8, N x 3072: the R plane, then G, then B, each 32x32 row-major),
b"labels" (list of int), b"batch_label" and b"filenames".

CIFAR-100's: `<root>/cifar-100-python/{train, test, meta}`; `train` and `test` hold b"data",
b"fine_labels", b"coarse_labels", b"batch_label" and b"filenames", `meta` holds
b"fine_label_names" and b"coarse_label_names" (both alphabetical: the label order).

The real files were pickled by Python 2, whose `str` keys load as bytes with
`pickle.load(f, encoding="bytes")` (b"data") and as str with `encoding="latin1"` ("data", what
torchvision uses). `_Py2Pickler` writes keys and names with Python 2's string opcode so both
readers work on these files exactly as on the real ones.
"""

from __future__ import annotations

import os
import pickle
import struct

import numpy as np

FOLDER = "cifar-10-batches-py"
N_TRAIN_BATCHES = 5  # the real set splits its 50,000 training images into 5 files
CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


class _Py2Str(bytes):
    """Bytes to be pickled as a Python 2 `str`."""


class _Py2Pickler(pickle._Pickler):
    """The pure-Python pickler, plus Python 2's (SHORT_)BINSTRING opcode for `_Py2Str`."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_py2_str(self, obj: _Py2Str) -> None:
        n = len(obj)
        if n < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([n]) + bytes(obj))
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", n) + bytes(obj))
        self.memoize(obj)

    dispatch[_Py2Str] = save_py2_str


def _dump(obj: dict, path: str) -> None:
    with open(path, "wb") as f:
        _Py2Pickler(f, protocol=2).dump(obj)  # protocol 2: Python 2's cPickle default


def _check(x: np.ndarray, y: np.ndarray, what: str) -> None:
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[1:] != (3, 32, 32):
        raise ValueError(
            f"{what}: expected uint8 N x 3 x 32 x 32 images, got {x.dtype} {tuple(x.shape)}"
        )
    if len(y) != len(x):
        raise ValueError(f"{what}: {len(x)} images but {len(y)} labels")


def _write_batch(path: str, x: np.ndarray, y: np.ndarray, label: str, offset: int) -> None:
    batch = {
        _Py2Str(b"batch_label"): _Py2Str(label.encode()),
        _Py2Str(b"labels"): [int(v) for v in y],
        # N x 3 x 32 x 32 in C order is exactly N x 3072 as R, G, B planes, each row-major.
        _Py2Str(b"data"): np.ascontiguousarray(x).reshape(len(x), 3 * 32 * 32),
        _Py2Str(b"filenames"): [
            _Py2Str(f"synthetic_{offset + i:05d}.png".encode()) for i in range(len(x))
        ],
    }
    _dump(batch, path)


def write_cifar10(
    root: str | os.PathLike,
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
) -> str:
    """Write uint8 N x 3 x 32 x 32 images and their labels (0-9) as the CIFAR-10 python
    files under `root`; returns the `cifar-10-batches-py` folder. The training images are
    split over data_batch_1..5 in order (some may be empty when there are fewer than 5)."""
    train_x, test_x = np.asarray(train_x), np.asarray(test_x)
    train_y, test_y = np.asarray(train_y), np.asarray(test_y)
    _check(train_x, train_y, "train")
    _check(test_x, test_y, "test")
    folder = os.path.join(os.fspath(root), FOLDER)
    os.makedirs(folder, exist_ok=True)
    bounds = np.linspace(0, len(train_x), N_TRAIN_BATCHES + 1).round().astype(int)
    for i in range(N_TRAIN_BATCHES):
        lo, hi = bounds[i], bounds[i + 1]
        _write_batch(
            os.path.join(folder, f"data_batch_{i + 1}"),
            train_x[lo:hi],
            train_y[lo:hi],
            f"training batch {i + 1} of {N_TRAIN_BATCHES}",
            lo,
        )
    _write_batch(os.path.join(folder, "test_batch"), test_x, test_y, "testing batch 1 of 1", 0)
    meta = {
        _Py2Str(b"label_names"): [_Py2Str(c.encode()) for c in CLASSES],
        _Py2Str(b"num_cases_per_batch"): int(bounds[1] - bounds[0]),
        _Py2Str(b"num_vis"): 3 * 32 * 32,
    }
    _dump(meta, os.path.join(folder, "batches.meta"))
    return folder


def write_cifar100(
    root: str | os.PathLike,
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
) -> str:
    """Write uint8 N x 3 x 32 x 32 images and their fine labels (0-99) as the CIFAR-100
    python files under `root` (the coarse labels follow from the fine ones, as in the real
    set); returns the `cifar-100-python` folder."""
    from trainers.subsets import COARSE, FINE, SUPERCLASSES

    coarse_of = {f: COARSE.index(c) for c, fs in SUPERCLASSES.items() for f in fs}
    folder = os.path.join(os.fspath(root), "cifar-100-python")
    os.makedirs(folder, exist_ok=True)
    for split, x, y in (("train", train_x, train_y), ("test", test_x, test_y)):
        x, y = np.asarray(x), np.asarray(y)
        _check(x, y, split)
        batch = {
            _Py2Str(b"batch_label"): _Py2Str(f"{split}ing batch 1 of 1".encode()),
            _Py2Str(b"fine_labels"): [int(v) for v in y],
            _Py2Str(b"coarse_labels"): [coarse_of[FINE[int(v)]] for v in y],
            _Py2Str(b"data"): np.ascontiguousarray(x).reshape(len(x), 3 * 32 * 32),
            _Py2Str(b"filenames"): [
                _Py2Str(f"synthetic_{i:05d}.png".encode()) for i in range(len(x))
            ],
        }
        _dump(batch, os.path.join(folder, split))
    meta = {
        _Py2Str(b"fine_label_names"): [_Py2Str(n.encode()) for n in FINE],
        _Py2Str(b"coarse_label_names"): [_Py2Str(n.encode()) for n in COARSE],
    }
    _dump(meta, os.path.join(folder, "meta"))
    return folder
