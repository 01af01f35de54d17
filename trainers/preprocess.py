"""What happens to a batch on the device: normalisation (fitted once) and augmentation.

The data set stays uint8 on the device; each batch is normalised by `Preprocess` and then
augmented, all in batched tensor ops with a device `torch.Generator`, no per-image Python.
Normalising before augmenting makes the pad of a random crop and the hole of a cutout zeros
in normalised space: the training mean colour for `standardize`, as in DeVries & Taylor's
cutout; it also means `gcn_zca` and `stretch` see the image, not the padding.
"""
from __future__ import annotations

import dataclasses
import hashlib
import math
import os
from pathlib import Path

import torch
import torch.nn.functional as F
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

    `mean`/`std`: per-channel (standardize); `mean`/`zca`: per-dimension mean and the
    3072 x 3072 whitening matrix (gcn_zca); nothing for none and stretch."""
    name: str
    mean: Tensor | None = None
    std: Tensor | None = None
    zca: Tensor | None = None

    def __call__(self, x: Tensor) -> Tensor:
        x = x.float().div_(255)
        if self.name == "standardize":
            return (x - self.mean.view(1, 3, 1, 1)) / self.std.view(1, 3, 1, 1)
        if self.name == "gcn_zca":
            return ((gcn(x) - self.mean) @ self.zca).view_as(x)
        if self.name == "stretch":
            return stretch(x)
        return x


def fit_preprocess(name: str, train_x: Tensor, cache_dir: Path | None = None) -> Preprocess:
    """Fit `name` (none | standardize | gcn_zca | stretch) on the uint8 training images.

    gcn_zca's mean and matrix are cached in `cache_dir` (when given and writable) under a
    hash of the training images, so the eigendecomposition runs once per split. ZCA needs
    many more images than its 3072 dimensions: fitted on a few hundred (a `subset`, the
    984-image sample) it amplifies everything outside their span and test accuracy suffers."""
    if name in ("none", "stretch"):
        return Preprocess(name)
    if name == "standardize":
        mean, std = channel_stats(train_x)
        return Preprocess(name, mean=mean, std=std)
    if name == "gcn_zca":
        mean, zca = _cached_zca(train_x, cache_dir)
        return Preprocess(name, mean=mean, zca=zca)
    from trainers.errors import GridError
    raise GridError(f"dataset.preprocess: unknown preprocessing {name!r}; "
                    "choose from none, standardize, gcn_zca, stretch")


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
            c = x[i:i + chunk] - mean.float()
            cov += (c.T @ c).double()
        lam, vec = torch.linalg.eigh(cov / n)
    else:
        c = x.double() - mean
        mu, u = torch.linalg.eigh(c @ c.T / n)
        keep = mu > 1e-9 * mu.max().clamp_min(1e-30)
        lam, vec = mu[keep], (c.T @ u[:, keep]) / (n * mu[keep]).sqrt()
    lam = lam.clamp_min(0)
    inner = vec * ((lam + bias).rsqrt() - bias ** -0.5)
    w = inner @ vec.T + torch.eye(d, dtype=torch.float64, device=x.device) * bias ** -0.5
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


# ---- augmentation: float N x C x H x W batches, random numbers from `gen` on the device ----

def augment(x: Tensor, dataset_cfg: dict, gen: torch.Generator) -> Tensor:
    """The config's augmentations in the usual order: crop, flip, then cutout."""
    ops = dataset_cfg["augment"]
    if "crop" in ops and dataset_cfg["crop_padding"] > 0:
        x = random_crop(x, dataset_cfg["crop_padding"], gen)
    if "flip" in ops:
        x = random_flip(x, gen)
    if "cutout" in ops and dataset_cfg["cutout_size"] > 0:
        x = cutout(x, dataset_cfg["cutout_size"], gen)
    return x


def random_crop(x: Tensor, padding: int, gen: torch.Generator) -> Tensor:
    """Random translation by up to `padding` pixels each way: zero-pad, then crop back.

    Zero padding (torchvision's RandomCrop(32, padding) and the papers' "translations"),
    not reflect (airbench's): after normalisation the zeros are the mean colour."""
    n, _, h, w = x.shape
    padded = F.pad(x, (padding,) * 4)
    dy, dx = torch.randint(0, 2 * padding + 1, (2, n, 1), generator=gen, device=x.device)
    rows = dy + torch.arange(h, device=x.device)  # n x h: source rows of each image
    cols = dx + torch.arange(w, device=x.device)
    batch = torch.arange(n, device=x.device)[:, None, None]
    return padded[batch, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


def random_flip(x: Tensor, gen: torch.Generator) -> Tensor:
    """Mirror each image left-right with probability 1/2."""
    flip = torch.rand(x.shape[0], generator=gen, device=x.device) < 0.5
    return torch.where(flip[:, None, None, None], x.flip(3), x)


def cutout(x: Tensor, size: int, gen: torch.Generator) -> Tensor:
    """Zero a size x size square per image, centred anywhere so it may be clipped by the
    border (DeVries & Taylor, 2017)."""
    n, _, h, w = x.shape
    cy = torch.randint(0, h, (n, 1), generator=gen, device=x.device) - size // 2
    cx = torch.randint(0, w, (n, 1), generator=gen, device=x.device) - size // 2
    r, c = torch.arange(h, device=x.device), torch.arange(w, device=x.device)
    in_rows = (r >= cy) & (r < cy + size)  # n x h
    in_cols = (c >= cx) & (c < cx + size)
    hole = in_rows[:, :, None] & in_cols[:, None, :]
    return x.masked_fill(hole[:, None], 0.0)
