"""The GPU-resident data pipeline (airbench style).

`load_data` puts the whole data set on the device once, as uint8 (float16 after ZCA).
Batches are then built with batched tensor ops on the device: a shuffled index from a
`torch.Generator`, normalisation, random crop with zero padding, horizontal flip and cutout.
There is no DataLoader and no per-image Python.
"""
from __future__ import annotations

import math
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.datasets import CIFAR10, CIFAR100

from orchestrator.errors import GridError
from trainers.preprocess import normalize, preprocess

DEFAULT_ROOT = "~/.cache/grid/data"
SYNTHETIC_TRAIN, SYNTHETIC_TEST = 5000, 1000


@dataclass
class Data:
    """A data set on one device. Images are N x 3 x 32 x 32 uint8 (float16 after gcn_zca);
    labels int64. `mean`/`std` (1 x 3 x 1 x 1) turn stored images into model inputs."""
    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int
    mean: torch.Tensor
    std: torch.Tensor
    augment: tuple[str, ...] = ()
    crop_padding: int = 4
    cutout_size: int = 8

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """Stored images (uint8 or float16) as float32 model inputs."""
        return normalize(x, self.mean, self.std)


# ---------------------------------------------------------------- reading the raw images

def data_root(root: str | None) -> Path:
    """`dataset.root`, else $GRID_DATA, else ~/.cache/grid/data."""
    return Path(root or os.environ.get("GRID_DATA") or DEFAULT_ROOT).expanduser()


def _existing_files_ok(base: type) -> type:
    """`base` with md5 checks dropped for files already on disk (a checksum of None is an
    existence check in torchvision): offline clusters often hold re-pickled copies whose md5
    differs. A download still verifies the archive's md5."""
    return type(f"Local{base.__name__}", (base,), {
        "train_list": [[name, None] for name, _ in base.train_list],
        "test_list": [[name, None] for name, _ in base.test_list],
        "meta": {**base.meta, "md5": None},
    })


CIFAR = {"cifar10": (_existing_files_ok(CIFAR10), 10), "cifar100": (_existing_files_ok(CIFAR100), 100)}


def _first_bad_file(folder: Path, names: list[str]) -> Path | None:
    for name in names:
        try:
            with open(folder / name, "rb") as f:
                entry = pickle.load(f, encoding="latin1")
            if not isinstance(entry, dict):
                return folder / name
        except Exception:
            return folder / name
    return None


def read_cifar(name: str, root: Path, download: bool):
    """CIFAR-10/100 through torchvision's own reader: (train_x, train_y, test_x, test_y,
    num_classes) as numpy uint8 N x 3 x 32 x 32 and int64 labels."""
    cls, num_classes = CIFAR[name]
    folder = root / cls.base_folder
    names = [n for n, _ in cls.train_list + cls.test_list] + [cls.meta["filename"]]
    if not all((folder / n).is_file() for n in names):
        if not download:
            raise GridError(f"dataset.root: no {name} data in {root} (expected {folder}); put the "
                            f"python version there or point dataset.root / $GRID_DATA at it")
        try:
            cls(str(root), train=True, download=True)
        except Exception as e:
            raise GridError(f"dataset.root: no {name} data in {root} and the download failed "
                            f"({type(e).__name__}: {e}); put the python version in {folder} "
                            f"or point dataset.root / $GRID_DATA at a folder holding it") from None
    try:
        train, test = cls(str(root), train=True), cls(str(root), train=False)
        arrays = [np.ascontiguousarray(d.data.transpose(0, 3, 1, 2)) for d in (train, test)]
        labels = [np.asarray(d.targets, dtype=np.int64) for d in (train, test)]
    except Exception as e:
        bad = _first_bad_file(folder, names)
        raise GridError(f"dataset.root: corrupt {name} file {bad or folder} "
                        f"({type(e).__name__}: {e}); replace it with a fresh copy") from None
    for x, y, split in zip(arrays, labels, ("train", "test")):
        if x.dtype != np.uint8 or len(x) != len(y) or y.min() < 0 or y.max() >= num_classes:
            raise GridError(f"dataset.root: corrupt {name} {split} data in {folder} "
                            f"(images {x.dtype} x{len(x)}, labels x{len(y)})")
    return arrays[0], labels[0], arrays[1], labels[1], num_classes


def synthetic(n_train: int = SYNTHETIC_TRAIN, n_test: int = SYNTHETIC_TEST,
              num_classes: int = 10):
    """A deterministic, learnable 32x32 RGB set: each class is a coloured sinusoidal grating
    with its own orientation and frequency; random phase, amplitude, tint and pixel noise
    vary each image. Same images on every call (fixed generator); uint8 numpy like CIFAR."""
    g = torch.Generator().manual_seed(20240601)
    n = n_train + n_test
    y = (torch.arange(n) % num_classes)[torch.randperm(n, generator=g)]
    c = torch.arange(num_classes, dtype=torch.float32)
    theta = c * math.pi / num_classes                           # one orientation per class
    freq = 1.0 + (c * 7 % num_classes) / num_classes * 3.0      # 1..4 cycles per image
    colour = torch.rand(num_classes, 3, generator=g) * 2 - 1    # one tint per class
    ys, xs = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    proj = (xs * torch.cos(theta)[:, None, None] + ys * torch.sin(theta)[:, None, None]) / 32
    phase = torch.rand(n, 1, 1, generator=g) * 2 * math.pi
    amp = 0.5 + 0.5 * torch.rand(n, 1, 1, generator=g)
    wave = amp * torch.sin(2 * math.pi * freq[y, None, None] * proj[y] + phase)   # n x 32 x 32
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
        raise GridError(f"dataset.val_size: {val_size} leaves no training images "
                        f"(the training set has {n})")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    train = perm[val_size:] if subset is None else perm[val_size:val_size + subset]
    return train.sort().values, perm[:val_size].sort().values


def load_data(dataset_cfg: dict, device: torch.device | str, seed: int) -> Data:
    """Load, split and preprocess the data set of `dataset_cfg` onto `device` (see
    docs/design.md for the keys). Bad roots and corrupt files raise GridError."""
    cfg, root = dataset_cfg, data_root(dataset_cfg.get("root"))
    if cfg["name"] == "synthetic":
        train_x, train_y, test_x, test_y, num_classes = synthetic()
    else:
        train_x, train_y, test_x, test_y, num_classes = read_cifar(cfg["name"], root,
                                                                   cfg.get("download", True))
    tr, va = split_indices(len(train_y), cfg.get("val_size", 0), cfg.get("subset"), seed)
    to = lambda a: torch.from_numpy(np.ascontiguousarray(a)).to(device)  # noqa: E731
    x_all, y_all = to(train_x), to(train_y)
    tr, va = tr.to(device), va.to(device)
    x_tr, others, mean, std = preprocess(cfg.get("preprocess", "standardize"), x_all[tr],
                                         [x_all[va], to(test_x)], root / "grid_cache")
    return Data(train_x=x_tr, train_y=y_all[tr], val_x=others[0], val_y=y_all[va],
                test_x=others[1], test_y=to(test_y), num_classes=num_classes,
                mean=mean, std=std, augment=tuple(cfg.get("augment", ())),
                crop_padding=cfg.get("crop_padding", 4), cutout_size=cfg.get("cutout_size", 8))


# ---------------------------------------------------------------- batched augmentation

def random_crop(x: torch.Tensor, padding: int, gen: torch.Generator) -> torch.Tensor:
    """Zero-pad by `padding` and crop back to size at a random offset per image."""
    n, _, h, w = x.shape
    padded = F.pad(x, (padding,) * 4).permute(0, 2, 3, 1)               # n x H x W x c
    dy, dx = torch.randint(0, 2 * padding + 1, (2, n, 1), device=x.device, generator=gen)
    rows = dy + torch.arange(h, device=x.device)                         # n x h
    cols = dx + torch.arange(w, device=x.device)                         # n x w
    idx = torch.arange(n, device=x.device)[:, None, None]
    return padded[idx, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


def random_flip(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Mirror each image left-right with probability 1/2."""
    flip = torch.rand(x.shape[0], device=x.device, generator=gen) < 0.5
    return torch.where(flip[:, None, None, None], x.flip(3), x)


def cutout(x: torch.Tensor, size: int, gen: torch.Generator) -> torch.Tensor:
    """Zero a size x size square (clipped at the border) at a random centre per image
    (DeVries & Taylor, 2017); zero is the data mean after normalisation."""
    n, _, h, w = x.shape
    cy, cx = torch.randint(0, max(h, w), (2, n, 1), device=x.device, generator=gen)
    r, c = torch.arange(h, device=x.device), torch.arange(w, device=x.device)
    in_r = (r >= cy - size // 2) & (r < cy - size // 2 + size)           # n x h
    in_c = (c >= cx - size // 2) & (c < cx - size // 2 + size)           # n x w
    return x.masked_fill((in_r[:, :, None] & in_c[:, None, :])[:, None], 0)


def augment(x: torch.Tensor, gen: torch.Generator, names, crop_padding: int = 4,
            cutout_size: int = 8) -> torch.Tensor:
    """Apply the named augmentations (crop, flip, cutout; in that order) to a float batch."""
    if "crop" in names and crop_padding > 0:
        x = random_crop(x, crop_padding, gen)
    if "flip" in names:
        x = random_flip(x, gen)
    if "cutout" in names and cutout_size > 0:
        x = cutout(x, cutout_size, gen)
    return x


def steps_per_epoch(n: int, batch_size: int) -> int:
    """Full batches per epoch (the last partial batch is dropped); at least one."""
    return max(1, n // batch_size)


def train_batches(data: Data, batch_size: int, gen: torch.Generator
                  ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """One epoch of shuffled, normalised, augmented (x float32, y) training batches."""
    n = len(data.train_y)
    perm = torch.randperm(n, device=data.train_y.device, generator=gen)
    for i in range(steps_per_epoch(n, batch_size)):
        idx = perm[i * batch_size:(i + 1) * batch_size]
        x = augment(data.normalize(data.train_x[idx]), gen, data.augment,
                    data.crop_padding, data.cutout_size)
        yield x, data.train_y[idx]


def data_generator(device: torch.device | str, seed: int) -> torch.Generator:
    """The generator behind shuffling and augmentation, on the data's device."""
    return torch.Generator(device=torch.device(device)).manual_seed(seed)
