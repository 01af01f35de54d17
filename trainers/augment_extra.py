"""The reports' other augmentations, batched on the device like crop and flip: colour
jitter, random rotation and scale (seed 002 §1.4, seed 003 §4.10), and Mixup (seed 003).

Each epoch draws their random numbers from the data generator after crop, flip and cutout
(`draw_extra`, only for the ops the config names, so a config without them draws nothing
more and trains as before). Per image they are what torchvision does to one image:
- jitter: `adjust_brightness`, `adjust_contrast`, `adjust_saturation` with factors uniform in
  [1 - j, 1 + j] (ColorJitter(j, j, j)), in that fixed order (ColorJitter shuffles it per
  image), on the [0, 1] pixels: the normalisation is undone and redone around it, so it
  needs a per-channel one (none, raw, center, standardize). It runs before the crop, so the
  crop's padding stays the mean colour.
- rotate / scale: `affine(angle, scale)` about the centre, bilinear, zeros outside (the mean
  colour after normalisation), after crop, flip and cutout; angle uniform in +-degrees,
  scale uniform in [1 - s, 1 + s]. One grid_sample for both.
- mixup: transforms.v2.MixUp per batch: lambda ~ Beta(alpha, alpha), each image mixed with
  its neighbour in the batch (`roll(1, 0)`), one-hot targets mixed alike.
"""

from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F
from torch import Tensor

from trainers.errors import GridError

GEOMETRIC = ("rotate", "scale")
# ITU-R 601-2 luma, as torchvision's rgb_to_grayscale
GRAY = (0.2989, 0.587, 0.114)


@dataclasses.dataclass
class Extra:
    """One epoch's draws: jitter factors n x 3 (brightness, contrast, saturation), affine
    n x 2 (angle in degrees, scale), mixup lambdas, one per batch."""

    jitter: Tensor | None = None
    affine: Tensor | None = None
    mixup: Tensor | None = None

    def rows(self, rows: slice) -> Extra:
        pick = lambda t: None if t is None else t[rows]  # noqa: E731
        return Extra(pick(self.jitter), pick(self.affine), self.mixup)

    @property
    def any_image_op(self) -> bool:
        return self.jitter is not None or self.affine is not None


def enabled(cfg: dict) -> bool:
    """Whether the dataset section asks for any of these augmentations."""
    ops = cfg.get("augment", [])
    return "jitter" in ops or any(op in ops for op in GEOMETRIC) or cfg.get("mixup", 0) > 0


def _uniform(n: int, k: int, lo: float, hi: float, gen: torch.Generator, dev) -> Tensor:
    return lo + (hi - lo) * torch.rand(n, k, generator=gen, device=dev)


def beta(n: int, alpha: float, gen: torch.Generator, dev) -> Tensor:
    """n draws from Beta(alpha, alpha) by Johnk's rejection method (uniforms only, so the
    draws come from `gen`: torch.distributions takes no generator)."""
    out: list[Tensor] = []
    while sum(len(t) for t in out) < n:
        u = torch.rand(2, 4 * n + 8, generator=gen, device=dev).pow(1 / alpha)
        keep = (u.sum(0) <= 1) & (u.sum(0) > 0)
        out.append((u[0] / u.sum(0))[keep])
    return torch.cat(out)[:n]


def draw_extra(n: int, batches: int, cfg: dict, gen: torch.Generator, dev) -> Extra:
    """The epoch's draws for `n` images in `batches` batches, in the order jitter, affine,
    mixup."""
    ops, out = cfg.get("augment", []), Extra()
    if "jitter" in ops:
        j = cfg["jitter"]
        out.jitter = _uniform(n, 3, max(0.0, 1 - j), 1 + j, gen, dev)
    if any(op in ops for op in GEOMETRIC):
        deg = cfg["rotate_degrees"] if "rotate" in ops else 0.0
        s = cfg["scale_range"] if "scale" in ops else 0.0
        out.affine = torch.cat(
            [_uniform(n, 1, -deg, deg, gen, dev), _uniform(n, 1, 1 - s, 1 + s, gen, dev)], 1
        )
    if cfg.get("mixup", 0) > 0:
        out.mixup = beta(batches, cfg["mixup"], gen, dev)
    return out


def channel_affine(prep) -> tuple[Tensor, Tensor]:
    """(shift, scale) per channel with input = (pixel01 - shift) / scale for a per-channel
    preprocessing; GridError naming `dataset.augment` for the others."""
    one, zero = torch.ones(3), torch.zeros(3)
    if prep.name == "none":
        return zero, one
    if prep.name == "raw":
        return zero, one / 255
    if prep.name == "center":
        return prep.mean.cpu(), one
    if prep.name == "standardize":
        return prep.mean.cpu(), prep.std.cpu()
    raise GridError(
        f"dataset.augment: jitter needs a per-channel preprocess (none, raw, center, "
        f"standardize), not {prep.name!r}"
    )


def jitter(x: Tensor, factors: Tensor, prep) -> Tensor:
    """Brightness, contrast, saturation of each image (factors n x 3), on its [0, 1]
    pixels, clamped as torchvision clamps after each step."""
    shift, scale = (t.to(x.device).view(1, 3, 1, 1) for t in channel_affine(prep))
    img = (x * scale + shift).clamp(0, 1)
    b, c, s = (factors[:, i].view(-1, 1, 1, 1) for i in range(3))
    img = (img * b).clamp(0, 1)
    mean = _gray(img).mean(dim=(1, 2, 3), keepdim=True)
    img = (c * img + (1 - c) * mean).clamp(0, 1)
    img = (s * img + (1 - s) * _gray(img)).clamp(0, 1)
    return (img - shift) / scale


def _gray(img: Tensor) -> Tensor:
    w = torch.tensor(GRAY, device=img.device, dtype=img.dtype).view(1, 3, 1, 1)
    return (img * w).sum(1, keepdim=True)


def affine(x: Tensor, params: Tensor) -> Tensor:
    """Rotate (degrees, counter-clockwise) and scale each image about its centre: one
    grid_sample, bilinear, zeros outside, as torchvision's affine on a square image."""
    rad = params[:, 0] * (math.pi / 180)
    cos, sin = rad.cos() / params[:, 1], rad.sin() / params[:, 1]
    zero = torch.zeros_like(cos)
    theta = torch.stack([torch.stack([cos, sin, zero], 1), torch.stack([-sin, cos, zero], 1)], 1)
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def mixup(x: Tensor, y: Tensor, lam: Tensor, num_classes: int) -> tuple[Tensor, Tensor]:
    """A batch mixed with itself rolled by one, and its soft targets (v2.MixUp)."""
    lam = lam.to(x.dtype)
    target = F.one_hot(y, num_classes).to(x.dtype)
    return lam * x + (1 - lam) * x.roll(1, 0), lam * target + (1 - lam) * target.roll(1, 0)
