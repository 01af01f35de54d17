"""What happens to the images on the device: normalisation (fitted once) and augmentation.

`Preprocess` normalises the uint8 images (once, at load: `trainers.data.load_data`). An
epoch's augmentation is drawn from a device `torch.Generator` in a few large ops
(`draw_augment`) and applied to thousands of images per op (`apply_augment`): batched tensor
ops, no per-image Python. Normalising before augmenting makes the pad of a random crop and
the hole of a cutout zeros in normalised space: the training mean colour for `standardize`,
as in DeVries & Taylor's cutout; it also means `gcn_zca` and `stretch` see the image, not
the padding.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
from pathlib import Path

import torch
from torch import Tensor

# GCN as in pylearn2's make_cifar10_gcn_whitened.py (Goodfellow et al.'s maxout CIFAR, the
# preprocessing Springenberg et al. cite): each image minus its mean, scaled to L2 norm 55,
# i.e. a per-pixel RMS of about 1 over 3072 values.
GCN_SCALE = 55.0
# pylearn2's ZCA filter_bias: added to the covariance's eigenvalues, so directions with
# less variance than ~0.1 (noise) are not blown up.
ZCA_BIAS = 0.1
# Seed 000's contrast stretch: each channel's 2nd and 98th percentiles become 0 and 1.
STRETCH_LO, STRETCH_HI = 0.02, 0.98
ZCA_CACHE_VERSION = "gcn55-zca0.1-v1"  # part of the cache key: bump when the maths changes
_ZCA_MEMO: dict[str, tuple[Tensor, Tensor]] = {}


@dataclasses.dataclass
class Preprocess:
    """uint8 N x 3 x 32 x 32 -> float32, the same on train, val and test images.

    `mean`/`std`: per-channel (standardize; center has only the mean); `mean`/`zca`:
    per-dimension mean and the 3072 x 3072 whitening matrix (gcn_zca); nothing for none,
    raw and stretch."""

    name: str
    mean: Tensor | None = None
    std: Tensor | None = None
    zca: Tensor | None = None

    def __call__(self, x: Tensor) -> Tensor:
        if self.name == "raw":  # the uint8 values as they are, 0..255 (seed 001 §3.1.1)
            return x.float()
        x = x.float().div_(255)
        if self.name == "center":  # [0, 1] minus the training mean colour, not scaled
            return x - self.mean.view(1, 3, 1, 1)
        if self.name == "standardize":
            return (x - self.mean.view(1, 3, 1, 1)) / self.std.view(1, 3, 1, 1)
        if self.name == "gcn_zca":
            return ((gcn(x) - self.mean) @ self.zca).view_as(x)
        if self.name == "stretch":
            return stretch(x)
        return x


def fit_preprocess(name: str, train_x: Tensor, cache_dir: Path | None = None) -> Preprocess:
    """Fit `name` (none | raw | center | standardize | gcn_zca | stretch) on the uint8
    training images.

    gcn_zca's mean and matrix are cached in `cache_dir` (when given and writable) under a
    hash of the training images, so the eigendecomposition runs once per split. ZCA needs
    many more images than its 3072 dimensions: fitted on a few hundred (a `subset`, the
    984-image sample) it amplifies everything outside their span and test accuracy suffers."""
    if name in ("none", "stretch", "raw"):
        return Preprocess(name)
    if name in ("standardize", "center"):
        mean, std = channel_stats(train_x)
        return Preprocess(name, mean=mean, std=std if name == "standardize" else None)
    if name == "gcn_zca":
        mean, zca = _cached_zca(train_x, cache_dir)
        return Preprocess(name, mean=mean, zca=zca)
    from trainers.errors import GridError

    raise GridError(
        f"dataset.preprocess: unknown preprocessing {name!r}; "
        "choose from none, raw, center, standardize, gcn_zca, stretch"
    )


def channel_stats(x: Tensor) -> tuple[Tensor, Tensor]:
    """Exact per-channel mean and std of uint8 images in [0, 1], from 256-bin histograms
    (no float copy of the whole data set)."""
    levels = torch.arange(256, device=x.device, dtype=torch.float64) / 255
    hist = torch.stack([torch.bincount(x[:, c].reshape(-1), minlength=256) for c in range(3)])
    p = hist.double() / hist.sum(1, keepdim=True)
    mean = p @ levels
    std = (p @ levels.square() - mean.square()).clamp_min(1e-12).sqrt()
    return mean.float(), std.float()


def gcn(x: Tensor) -> Tensor:
    """Global contrast normalisation: N x D rows with zero mean and L2 norm GCN_SCALE."""
    x = x.reshape(x.shape[0], -1)
    x = x - x.mean(1, keepdim=True)
    norm = x.norm(dim=1, keepdim=True)
    return x * (GCN_SCALE / torch.where(norm < 1e-8, torch.ones_like(norm), norm))


def zca_fit(x: Tensor, bias: float = ZCA_BIAS, chunk: int = 4096) -> tuple[Tensor, Tensor]:
    """ZCA of the rows of `x` (N x D floats): (mean, W) with W = V diag(1/sqrt(l + bias)) V^T
    over the covariance's eigenpairs (l, V), as pylearn2 does.

    With fewer rows than dimensions the covariance has rank < D, so the eigenpairs come from
    the N x N Gram matrix and the null space gets 1/sqrt(bias): the same W, far cheaper."""
    n, d = x.shape
    mean = x.double().mean(0)
    if n >= d:
        cov = torch.zeros(d, d, dtype=torch.float64, device=x.device)
        for i in range(0, n, chunk):
            c = x[i : i + chunk] - mean.float()
            cov += (c.T @ c).double()
        lam, vec = torch.linalg.eigh(cov / n)
    else:
        c = x.double() - mean
        mu, u = torch.linalg.eigh(c @ c.T / n)
        keep = mu > 1e-9 * mu.max().clamp_min(1e-30)
        lam, vec = mu[keep], (c.T @ u[:, keep]) / (n * mu[keep]).sqrt()
    lam = lam.clamp_min(0)
    inner = vec * ((lam + bias).rsqrt() - bias**-0.5)
    w = inner @ vec.T + torch.eye(d, dtype=torch.float64, device=x.device) * bias**-0.5
    return mean.float(), w.float()


def _cached_zca(train_x: Tensor, cache_dir: Path | None) -> tuple[Tensor, Tensor]:
    digest = hashlib.sha256(ZCA_CACHE_VERSION.encode())
    digest.update(train_x.cpu().numpy().tobytes())
    key = digest.hexdigest()[:16]
    if key in _ZCA_MEMO:
        mean, w = _ZCA_MEMO[key]
        return mean.to(train_x.device), w.to(train_x.device)
    path = Path(cache_dir) / "grid-cache" / f"zca-{key}.pt" if cache_dir else None
    saved = _load_quietly(path) if path is not None else None
    if saved is not None:
        mean, w = saved["mean"].to(train_x.device), saved["zca"].to(train_x.device)
    else:
        mean, w = zca_fit(gcn(train_x.float().div_(255)))
        if path is not None:
            _save_quietly({"mean": mean.cpu(), "zca": w.cpu()}, path)
    _ZCA_MEMO[key] = (mean, w)
    return mean, w


def _load_quietly(path: Path) -> dict | None:
    """The cached fit, or None when missing or unreadable (a torn write: refit it)."""
    try:
        return torch.load(path, map_location="cpu") if path.is_file() else None
    except Exception:
        return None


def _save_quietly(obj: dict, path: Path) -> None:
    """Write atomically; a read-only data folder only costs the cache."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # pid, not torch.randint: drawing from the global RNG here would change the
        # model init of a run that misses the cache against one that hits it.
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        torch.save(obj, tmp)
        tmp.replace(path)
    except OSError:
        pass


def stretch(x: Tensor) -> Tensor:
    """Seed 000's contrast stretch: per image and channel, (p - lo) / (hi - lo) with lo, hi
    the 2nd and 98th percentiles, clipped to [0, 1]. `x` is float N x C x H x W in [0, 1]."""
    flat = x.reshape(x.shape[0], x.shape[1], -1).sort(dim=2).values
    lo, hi = _percentile(flat, STRETCH_LO), _percentile(flat, STRETCH_HI)
    span = (hi - lo).clamp_min(1 / 255)  # a flat channel stays flat instead of dividing by 0
    return ((x - lo[..., None, None]) / span[..., None, None]).clamp_(0, 1)


def _percentile(sorted_x: Tensor, q: float) -> Tensor:
    """Linear-interpolated percentile of the last dim (numpy's default method)."""
    pos = q * (sorted_x.shape[-1] - 1)
    i, frac = int(math.floor(pos)), pos - math.floor(pos)
    return sorted_x[..., i] * (1 - frac) + sorted_x[..., min(i + 1, sorted_x.shape[-1] - 1)] * frac


# ---- augmentation: an epoch's random draws at once, applied to thousands of images per op ----


@dataclasses.dataclass
class Draws:
    """Random augmentation parameters, one row per image (None: not in the config): crop
    offsets (dy, dx) in [0, 2 * padding] of the zero-padded image, a left-right flip with
    probability 1/2, and cutout centres (cy, cx) anywhere in the image."""

    shift: Tensor | None = None  # n x 2, int64
    flip: Tensor | None = None  # n, bool
    centre: Tensor | None = None  # n x 2, int64

    def __getitem__(self, rows: slice) -> Draws:
        return Draws(
            *(None if t is None else t[rows] for t in (self.shift, self.flip, self.centre))
        )


def draw_augment(
    n: int,
    dataset_cfg: dict,
    gen: torch.Generator,
    device: torch.device,
    size: tuple[int, int] = (32, 32),
) -> Draws:
    """The config's random parameters for `n` images in at most four draws from `gen`
    (instead of several small ops per batch): crop, then flip, then cutout."""
    ops, h, w = dataset_cfg["augment"], size[0], size[1]
    kw = {"generator": gen, "device": device}
    out = Draws()
    if "crop" in ops and dataset_cfg["crop_padding"] > 0:
        out.shift = torch.randint(0, 2 * dataset_cfg["crop_padding"] + 1, (n, 2), **kw)
    if "flip" in ops:
        out.flip = torch.rand(n, **kw) < 0.5
    if "cutout" in ops and dataset_cfg["cutout_size"] > 0:
        out.centre = torch.stack(
            [torch.randint(0, h, (n,), **kw), torch.randint(0, w, (n,), **kw)], 1
        )
    return out


def apply_augment(
    x: Tensor, draws: Draws, dataset_cfg: dict, index: Tensor | None = None
) -> Tensor:
    """`x[index]` (default: all of `x`, float N x C x H x W) augmented as `draws` says, in
    the usual order: a random crop of the zero-padded image, a flip, then cutout.

    One gather does the crop and flip of every image (each output pixel reads its source
    pixel, clamped into the image) and one masked fill writes the zeros: the padding the
    crop brought in and the cutout hole. Zero padding (torchvision's RandomCrop(32, padding)
    and the papers' "translations"), not reflect (airbench's): after normalisation the
    zeros are the mean colour, as in DeVries & Taylor's cutout."""
    _, c, h, w = x.shape
    dev = x.device
    rows, cols, zero = _source_pixels(draws, dataset_cfg, h, w, dev)
    if draws.centre is not None:
        hole = _hole(draws.centre, dataset_cfg["cutout_size"], h, w)
        zero = hole if zero is None else zero | hole
    index = torch.arange(len(x), device=dev) if index is None else index
    if rows is None:  # no crop, no flip: a plain row gather
        out = x.index_select(0, index)
    else:
        out = x[
            index[:, None, None, None],
            torch.arange(c, device=dev)[None, :, None, None],
            rows[:, None, :, None],
            cols[:, None, None, :],
        ]
    return out if zero is None else out.masked_fill_(zero[:, None], 0.0)


def _source_pixels(draws: Draws, dataset_cfg: dict, h: int, w: int, dev: torch.device):
    """(rows n x h, cols n x w, outside n x h x w or None): where each output pixel of the
    crop and flip reads from in the unpadded image, clamped, and which pixels read padding.
    (None, None, None) without crop and flip. Crop then flip: out[i, j] = img[i + dy - p,
    (w - 1 - j if flipped else j) + dx - p]."""
    if draws.shift is None and draws.flip is None:
        return None, None, None
    n = len(draws.shift if draws.shift is not None else draws.flip)
    rows = torch.arange(h, device=dev).expand(n, h)
    cols = torch.arange(w, device=dev).expand(n, w)
    if draws.flip is not None:
        cols = torch.where(draws.flip[:, None], cols.flip(1), cols)
    if draws.shift is None:
        return rows, cols, None
    pad = dataset_cfg["crop_padding"]
    rows = rows + (draws.shift[:, :1] - pad)
    cols = cols + (draws.shift[:, 1:] - pad)
    outside = ((rows < 0) | (rows >= h))[:, :, None] | ((cols < 0) | (cols >= w))[:, None, :]
    return rows.clamp(0, h - 1), cols.clamp(0, w - 1), outside


def _hole(centre: Tensor, size: int, h: int, w: int) -> Tensor:
    """n x h x w: a size x size square per image around `centre`, clipped by the border
    (DeVries & Taylor, 2017)."""
    top, left = centre[:, :1] - size // 2, centre[:, 1:] - size // 2
    r, c = torch.arange(h, device=centre.device), torch.arange(w, device=centre.device)
    in_rows = (r >= top) & (r < top + size)  # n x h
    in_cols = (c >= left) & (c < left + size)
    return in_rows[:, :, None] & in_cols[:, None, :]
