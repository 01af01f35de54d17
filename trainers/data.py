"""The GPU-resident data pipeline (airbench style): `load_data` puts the whole data set on
the device once, as uint8 (preprocessed per augmentation chunk) or float32 (preprocessed at
load), as `dataset.on_device` says; each epoch's shuffle and augmentation (random crop with
zero padding, flip, cutout) are drawn from a `torch.Generator` for the whole epoch at once
and applied by batched tensor ops on the device (`trainers.preprocess`). No DataLoader, no
per-image Python."""

from __future__ import annotations

import contextlib
import fcntl
import functools
import math
import os
import pickle
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from trainers import augment_extra, subsets
from trainers.errors import GridError
from trainers.preprocess import Draws, Preprocess, apply_augment, draw_augment, fit_preprocess

DEFAULT_ROOT = "~/.cache/grid/data"
SYNTHETIC_TRAIN, SYNTHETIC_TEST = 5000, 1000
AUGMENT_CHUNK = 10_000  # images augmented per op (whole batches): 123 MB of CIFAR float32


@dataclass
class Data:
    """A data set on one device: images N x 3 x 32 x 32, labels int64 (val may be empty).
    The images are stored uint8 (as read: `prep` then runs on each augmented chunk and each
    evaluated batch) or preprocessed float32 (`prep` applied once by `load_data`), as
    `dataset.on_device` says (`storage`). `cfg` is the
    dataset section: augment/crop_padding/cutout_size drive `train_batches`."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int
    prep: Preprocess
    cfg: dict

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        """Stored images as float32 model inputs by the fitted `dataset.preprocess` (none,
        standardize, gcn_zca whitening or stretch; already applied to float images); no
        augmentation."""
        return self.prep(x) if x.dtype == torch.uint8 else x


# ---------------------------------------------------------------- reading the raw images


def data_root(root: str | None) -> Path:
    """`dataset.root`, else $GRID_DATA, else ~/.cache/grid/data."""
    return Path(root or os.environ.get("GRID_DATA") or DEFAULT_ROOT).expanduser()


def read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR pickle: (uint8 N x 3 x 32 x 32, int64 labels); GridError naming the file.

    The official files are Python 2 pickles whose keys load as str ("data"); copies
    re-pickled by Python 3 tools (numpy 2) have bytes keys (b"data"), on which torchvision's
    own reader fails with KeyError 'data'. Both are accepted."""
    try:
        with open(path, "rb") as f:
            entry = pickle.load(f, encoding="latin1")
        entry = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in entry.items()}
        x = np.asarray(entry["data"]).reshape(-1, 3, 32, 32)
        y = np.asarray(entry["labels"] if "labels" in entry else entry["fine_labels"], np.int64)
    except Exception as e:  # truncated, garbage, or not a CIFAR batch
        raise GridError(
            f"dataset.root: corrupt CIFAR file {path} ({type(e).__name__}: {e}); "
            "replace it with a fresh copy"
        ) from None
    if x.dtype != np.uint8 or y.shape != (len(x),):
        raise GridError(
            f"dataset.root: corrupt CIFAR file {path} ({x.dtype} images x{len(x)}, {y.size} labels)"
        )
    return x, y


class _ExistingFolder:
    """Mixin for torchvision's CIFAR classes: a folder that already holds the files is used
    as it is, with an existence check instead of md5s (offline clusters hold re-pickled
    copies whose md5s differ) and read by `read_batch`. A missing folder is still fetched
    by torchvision's `download()`, which verifies the archive's md5."""

    def __init__(self, root: str, train: bool = True, download: bool = False) -> None:
        from torchvision.datasets.vision import VisionDataset

        VisionDataset.__init__(self, root)
        self.train = train
        if download:
            self.download()
        if not self._check_integrity():
            raise RuntimeError(f"no {self.base_folder} in {self.root}")
        parts = [
            read_batch(Path(self.root, self.base_folder, name))
            for name, _ in (self.train_list if train else self.test_list)
        ]
        # N x H x W x C, torchvision's own layout for `.data`.
        self.data = np.concatenate([x for x, _ in parts]).transpose(0, 2, 3, 1)
        self.targets = np.concatenate([y for _, y in parts]).tolist()

    def _check_integrity(self) -> bool:
        return all(
            Path(self.root, self.base_folder, name).is_file()
            for name, _ in self.train_list + self.test_list
        )


@functools.cache
def cifar_class(name: str) -> tuple[type, int]:
    """(torchvision's CIFAR class for `name` with the mixin, its classes), built at first
    use: importing torchvision costs ~2 s (it imports torch._dynamo), which every trial
    process would pay at its start, on synthetic data too."""
    from torchvision.datasets import CIFAR10, CIFAR100

    base, num_classes = {"cifar10": (CIFAR10, 10), "cifar100": (CIFAR100, 100)}[name]
    return type(f"Local{base.__name__}", (_ExistingFolder, base), {}), num_classes


def read_cifar(name: str, root: Path, download: bool):
    """CIFAR-10/100 via torchvision's classes (download + md5): (train_x, train_y, test_x, test_y,
    num_classes) as numpy uint8 N x 3 x 32 x 32 and int64 labels."""
    cls, num_classes = cifar_class(name)
    folder = root / cls.base_folder
    names = [n for n, _ in cls.train_list + cls.test_list] + [cls.meta["filename"]]
    if not all((folder / n).is_file() for n in names):
        if not download:
            raise GridError(
                f"dataset.root: no {name} data in {root} (expected {folder}); put the "
                f"python version there or point dataset.root / $GRID_DATA at it"
            )
        _download(cls, name, root, folder, names)
    train, test = cls(str(root), train=True), cls(str(root), train=False)  # GridError if corrupt
    arrays = [np.ascontiguousarray(d.data.transpose(0, 3, 1, 2)) for d in (train, test)]
    labels = [np.asarray(d.targets, dtype=np.int64) for d in (train, test)]
    for x, y, split in zip(arrays, labels, ("train", "test"), strict=True):
        if x.dtype != np.uint8 or len(x) != len(y) or y.min() < 0 or y.max() >= num_classes:
            raise GridError(
                f"dataset.root: corrupt {name} {split} data in {folder} "
                f"(images {x.dtype} x{len(x)}, labels x{len(y)})"
            )
    return arrays[0], labels[0], arrays[1], labels[1], num_classes


@contextlib.contextmanager
def _download_lock(root: Path) -> Iterator[None]:
    """One download per node: the trials of a fresh node wait here for the first one's
    download instead of extracting into the same folder at once."""
    try:
        root.mkdir(parents=True, exist_ok=True)
        f = open(root / ".grid-download.lock", "a")
    except OSError as e:
        raise GridError(
            f"dataset.root: cannot create {root} for the download ({e.strerror or e})"
        ) from None
    with f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def _download(cls, name: str, root: Path, folder: Path, names: list[str]) -> None:
    with _download_lock(root):
        if all((folder / n).is_file() for n in names):
            return  # another trial of this node downloaded it while we waited
        try:
            cls(str(root), train=True, download=True)
        except Exception as e:
            raise GridError(
                f"dataset.root: no {name} data in {root} and the download failed "
                f"({type(e).__name__}: {' '.join(str(e).split())}); put the python "
                f"version in {folder} or point dataset.root / $GRID_DATA at a "
                f"folder holding it"
            ) from None


def check_data(dataset_cfg: dict) -> str:
    """Pre-flight, before any trial starts: the data set is readable here, downloading it
    (under the node's lock) when `download` allows; GridError naming dataset.root otherwise.
    Returns a short description of what was found."""
    name = dataset_cfg["name"]
    if name == "synthetic":
        return "synthetic data (generated in each trial)"
    root = data_root(dataset_cfg.get("root"))
    read_cifar(name, root, dataset_cfg.get("download", True))
    return f"{name} in {root}"


def synthetic(n_train: int = SYNTHETIC_TRAIN, n_test: int = SYNTHETIC_TEST, num_classes: int = 10):
    """`make_synthetic`'s arrays, generated once per process (copies: callers may write)."""
    arrays = _synthetic_memo(n_train, n_test, num_classes)
    return *(a.copy() for a in arrays[:4]), num_classes


@functools.lru_cache(maxsize=2)
def _synthetic_memo(n_train: int, n_test: int, num_classes: int):
    return make_synthetic(n_train, n_test, num_classes)


def make_synthetic(
    n_train: int = SYNTHETIC_TRAIN, n_test: int = SYNTHETIC_TEST, num_classes: int = 10
):
    """A deterministic, learnable 32x32 RGB set: each class is a coloured sinusoidal grating
    with its own orientation and frequency; random phase, amplitude, tint and pixel noise
    vary each image. Same images on every call (fixed generator); uint8 numpy like CIFAR."""
    g = torch.Generator().manual_seed(20240601)
    n = n_train + n_test
    y = (torch.arange(n) % num_classes)[torch.randperm(n, generator=g)]
    c = torch.arange(num_classes, dtype=torch.float32)
    theta = c * math.pi / num_classes  # one orientation per class
    freq = 1.0 + (c * 7 % num_classes) / num_classes * 3.0  # 1..4 cycles per image
    colour = torch.rand(num_classes, 3, generator=g) * 2 - 1  # one tint per class
    ys, xs = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    proj = (xs * torch.cos(theta)[:, None, None] + ys * torch.sin(theta)[:, None, None]) / 32
    phase = torch.rand(n, 1, 1, generator=g) * 2 * math.pi
    amp = 0.5 + 0.5 * torch.rand(n, 1, 1, generator=g)
    wave = amp * torch.sin(2 * math.pi * freq[y, None, None] * proj[y] + phase)  # n x 32 x 32
    base = 0.5 + 0.08 * torch.randn(n, 3, 1, 1, generator=g)
    img = base + 0.25 * wave[:, None] * colour[y, :, None, None]
    img = img + 0.08 * torch.randn(n, 3, 32, 32, generator=g)
    x = (img.clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    y = y.numpy()
    return x[:n_train], y[:n_train], x[n_train:], y[n_train:], num_classes


# ---------------------------------------------------------------- splitting and loading


def split_indices(n: int, val_size: int, subset: int | None, seed: int):
    """(train, val) index tensors: `val_size` images held out after a shuffle seeded by
    `seed`, then at most `subset` of the rest; disjoint, sorted, same for the same seed."""
    if val_size >= n:
        raise GridError(
            f"dataset.val_size: {val_size} leaves no training images (the training set has {n})"
        )
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    train = perm[val_size:] if subset is None else perm[val_size : val_size + subset]
    return train.sort().values, perm[:val_size].sort().values


def load_data(dataset_cfg: dict, device: torch.device | str, seed: int) -> Data:
    """Load, split and preprocess the data set of `dataset_cfg` onto `device` (see
    docs/design.md for the keys). Bad roots and corrupt files raise GridError."""
    cfg, root = dataset_cfg, data_root(dataset_cfg.get("root"))
    if cfg["name"] == "synthetic":
        train_x, train_y, test_x, test_y, num_classes = synthetic()
    else:
        train_x, train_y, test_x, test_y, num_classes = read_cifar(
            cfg["name"], root, cfg.get("download", True)
        )
    if cfg.get("classes") is not None:  # a CIFAR-100 subset: its images, labels 0..k-1
        if cfg["name"] != "cifar100":
            raise GridError(f"dataset.classes: subsets are of cifar100, not {cfg['name']}")
        cifar100, _ = cifar_class("cifar100")
        meta = root / cifar100.base_folder / cifar100.meta["filename"]
        train_x, train_y, test_x, test_y, num_classes = subsets.select(
            cfg["classes"], meta, train_x, train_y, test_x, test_y
        )
    tr, va = split_indices(len(train_y), cfg.get("val_size", 0), cfg.get("subset"), seed)
    to = lambda a: torch.from_numpy(np.ascontiguousarray(a)).to(device)  # noqa: E731
    x_all, y_all = to(train_x), to(train_y)
    tr, va = tr.to(device), va.to(device)
    prep = fit_preprocess(cfg.get("preprocess", "standardize"), x_all[tr], root)
    test = to(test_x)
    if storage(cfg) == "float32":
        # The fitted preprocessing once, not per chunk and evaluated batch: for gcn_zca a
        # 3072 x 3072 matmul per image. It precedes augmentation (padding and cutout are
        # zeros of the input space) either way.
        x_all, test = prepare(prep, x_all), prepare(prep, test)
    return Data(
        train_x=x_all[tr],
        train_y=y_all[tr],
        val_x=x_all[va],
        val_y=y_all[va],
        test_x=test,
        test_y=to(test_y),
        num_classes=num_classes,
        prep=prep,
        cfg={"augment": [], "crop_padding": 4, "cutout_size": 8, **cfg},
    )


def storage(dataset_cfg: dict) -> str:
    """`dataset.on_device`: uint8 (as read, 1 byte a pixel: CIFAR-10's 60,000 images are
    184 MB, per seed and per trial on a shared GPU) or float32 (preprocessed once at load:
    737 MB). auto: uint8 for none and standardize (elementwise: well under 1 % of a step);
    float32 for stretch (a sort per image) and gcn_zca (a 3072 x 3072 matmul per image),
    which cost 5-10 % of a small model's CPU step per epoch (BENCHMARKS.md)."""
    on = dataset_cfg.get("on_device", "auto")
    if on == "auto":
        return "float32" if dataset_cfg.get("preprocess") in ("stretch", "gcn_zca") else "uint8"
    return on


def prepare(prep: Preprocess, x: torch.Tensor, chunk: int = 5000) -> torch.Tensor:
    """uint8 images through the fitted `prep` as float32 model inputs, chunk by chunk (the
    peak is one chunk's float temporaries, not the whole set's)."""
    out = torch.empty(x.shape, dtype=torch.float32, device=x.device)
    for i in range(0, len(x), chunk):
        out[i : i + chunk] = prep(x[i : i + chunk])
    return out


# ---------------------------------------------------------------- batches


def steps_per_epoch(n: int, batch_size: int) -> int:
    """Full batches per epoch (the last partial batch is dropped); at least one."""
    return max(1, n // batch_size)


def train_batches(
    data: Data, batch_size: int, gen: torch.Generator
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """One epoch of shuffled, preprocessed, augmented (x float32, y) training batches.

    The epoch's random numbers are drawn before its first batch, in a few large ops: the
    shuffle, then every image's crop offsets, flip and cutout centre (`draw_augment`). The
    images are augmented `AUGMENT_CHUNK` at a time (one gather, one masked fill), a batch
    is a view into its chunk: a few ops per 10,000 images instead of ~25 per batch, and one
    chunk's memory, not the epoch's augmented copy (BENCHMARKS.md)."""
    n, device = len(data.train_y), data.train_y.device
    total = min(n, steps_per_epoch(n, batch_size) * batch_size)  # the dropped tail: no draws
    order = torch.randperm(n, device=device, generator=gen)[:total]
    draws = draw_augment(total, data.cfg, gen, device, tuple(data.train_x.shape[-2:]))
    extra = None
    if augment_extra.enabled(data.cfg):  # jitter, rotate, scale, mixup: drawn after the rest
        size = tuple(data.train_x.shape[-2:])
        extra = augment_extra.draw_extra(total, total // batch_size, data.cfg, gen, device, size)
    chunk = max(1, AUGMENT_CHUNK // batch_size) * batch_size  # whole batches per chunk
    for start in range(0, total, chunk):
        idx = order[start : start + chunk]
        rows = slice(start, start + chunk)
        if extra is not None and extra.any_image_op:
            x = _augmented_extra(data, idx, draws[rows], extra.rows(rows))
        else:
            x = _augmented(data, idx, draws[rows])
        y = data.train_y[idx]
        for i in range(0, len(idx), batch_size):
            xb, yb = x[i : i + batch_size], y[i : i + batch_size]
            if extra is not None and extra.mixup is not None:
                lam = extra.mixup[(start + i) // batch_size]
                xb, yb = augment_extra.mixup(xb, yb, lam, data.num_classes)
            yield xb, yb


def _augmented(data: Data, idx: torch.Tensor, draws: Draws) -> torch.Tensor:
    """Training images `idx`, preprocessed (uint8 ones here, first), then augmented: padding
    and holes are zeros of the input space, and stretch/gcn_zca see no padding."""
    if data.train_x.dtype == torch.uint8:
        return apply_augment(data.preprocess(data.train_x[idx]), draws, data.cfg)
    return apply_augment(data.train_x, draws, data.cfg, index=idx)


def _augmented_extra(
    data: Data, idx: torch.Tensor, draws: Draws, extra: augment_extra.Extra
) -> torch.Tensor:
    """`_augmented` with colour jitter before the crop, and the random resized crop and
    rotation/scale after cutout."""
    x = data.preprocess(data.train_x[idx])
    if extra.jitter is not None:
        x = augment_extra.jitter(x, extra.jitter, data.prep)
    x = apply_augment(x, draws, data.cfg)
    if extra.box is not None:
        x = augment_extra.resized_crop(x, extra.box)
    return x if extra.affine is None else augment_extra.affine(x, extra.affine)


def data_generator(device: torch.device | str, seed: int) -> torch.Generator:
    """The generator behind shuffling and augmentation, on the data's device."""
    return torch.Generator(device=torch.device(device)).manual_seed(seed)
