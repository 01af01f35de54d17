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
- resized_crop: torchvision's `RandomResizedCrop(32)` with its defaults, scale (0.08, 1) and
  ratio (3/4, 4/3): a box drawn by its `get_params` (10 tries, then the centre fallback), then
  resized back to 32 x 32, bilinear, as `resized_crop` on a tensor (seed 002's "random
  resize", PyTorch 0.4.1). After crop, flip and cutout, before rotate/scale.
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
# torchvision's RandomResizedCrop defaults (unchanged since 0.2): area fraction and aspect.
RRC_SCALE = (0.08, 1.0)
RRC_RATIO = (3 / 4, 4 / 3)
RRC_TRIES = 10
# ITU-R 601-2 luma, as torchvision's rgb_to_grayscale
GRAY = (0.2989, 0.587, 0.114)


@dataclasses.dataclass
class Extra:
    """One epoch's draws: jitter factors n x 3 (brightness, contrast, saturation), affine
    n x 2 (angle in degrees, scale), mixup lambdas, one per batch."""

    jitter: Tensor | None = None
    affine: Tensor | None = None
    mixup: Tensor | None = None
    box: Tensor | None = None  # resized_crop: n x 4 (top, left, height, width) in pixels

    def rows(self, rows: slice) -> Extra:
        pick = lambda t: None if t is None else t[rows]  # noqa: E731
        return Extra(pick(self.jitter), pick(self.affine), self.mixup, pick(self.box))

    @property
    def any_image_op(self) -> bool:
        return self.jitter is not None or self.affine is not None or self.box is not None


def enabled(cfg: dict) -> bool:
    """Whether the dataset section asks for any of these augmentations."""
    ops = cfg.get("augment", [])
    return (
        "jitter" in ops
        or "resized_crop" in ops
        or any(op in ops for op in GEOMETRIC)
        or cfg.get("mixup", 0) > 0
    )


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


def draw_extra(
    n: int, batches: int, cfg: dict, gen: torch.Generator, dev, size: tuple = (32, 32)
) -> Extra:
    """The epoch's draws for `n` images (`size` H x W) in `batches` batches, in the order
    jitter, affine, resized-crop boxes, mixup."""
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
    if "resized_crop" in ops:
        out.box = resized_crop_boxes(n, size, gen, dev)
    if cfg.get("mixup", 0) > 0:
        out.mixup = beta(batches, cfg["mixup"], gen, dev)
    return out


def resized_crop_boxes(n: int, size: tuple, gen: torch.Generator, dev) -> Tensor:
    """n boxes (top, left, height, width) as torchvision's RandomResizedCrop.get_params draws
    them, batched: per image up to RRC_TRIES (area, log-ratio) draws, the first whose box fits;
    none fits: the centre crop at the nearest allowed ratio."""
    height, width = size
    area = height * width
    u = torch.rand(n, RRC_TRIES, 2, generator=gen, device=dev, dtype=torch.float64)
    target = area * (RRC_SCALE[0] + (RRC_SCALE[1] - RRC_SCALE[0]) * u[..., 0])
    lo, hi = math.log(RRC_RATIO[0]), math.log(RRC_RATIO[1])
    aspect = torch.exp(lo + (hi - lo) * u[..., 1])
    w = torch.round(torch.sqrt(target * aspect))
    h = torch.round(torch.sqrt(target / aspect))
    fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = fits.float().argmax(1, keepdim=True)  # the first try that fits (0 when none)
    w, h, ok = w.gather(1, first)[:, 0], h.gather(1, first)[:, 0], fits.any(1)
    # torchvision's fallback: the whole image, cut to the nearest allowed aspect ratio.
    in_ratio = width / height
    if in_ratio < RRC_RATIO[0]:
        fw, fh = width, round(width / RRC_RATIO[0])
    elif in_ratio > RRC_RATIO[1]:
        fw, fh = round(height * RRC_RATIO[1]), height
    else:
        fw, fh = width, height
    w, h = torch.where(ok, w, float(fw)), torch.where(ok, h, float(fh))
    off = torch.rand(n, 2, generator=gen, device=dev, dtype=torch.float64)
    top = torch.floor(off[:, 0] * (height - h + 1))
    left = torch.floor(off[:, 1] * (width - w + 1))
    top = torch.where(ok, top, torch.div(height - h, 2, rounding_mode="floor"))
    left = torch.where(ok, left, torch.div(width - w, 2, rounding_mode="floor"))
    return torch.stack([top, left, h, w], 1).float()


def resized_crop(x: Tensor, boxes: Tensor) -> Tensor:
    """Each image's box (top, left, height, width) resized to the image's size, bilinear:
    torchvision's `resized_crop` on a tensor (F.interpolate with half-pixel centres, source
    positions clamped to the box), as one grid_sample."""
    n, _, height, width = x.shape
    top, left, h, w = (boxes[:, i].to(x.dtype).view(n, 1) for i in range(4))
    ys = torch.arange(height, device=x.device, dtype=x.dtype).view(1, -1)
    xs = torch.arange(width, device=x.device, dtype=x.dtype).view(1, -1)
    # source pixel = box start + (dst + 0.5) * box / out - 0.5, clamped inside the box
    py = torch.minimum(torch.maximum(top + (ys + 0.5) * h / height - 0.5, top), top + h - 1)
    px = torch.minimum(torch.maximum(left + (xs + 0.5) * w / width - 0.5, left), left + w - 1)
    gy = (2 * py + 1) / height - 1  # grid_sample's align_corners=False normalisation
    gx = (2 * px + 1) / width - 1
    grid = torch.stack(
        [
            gx.view(n, 1, width).expand(n, height, width),
            gy.view(n, height, 1).expand(n, height, width),
        ],
        -1,
    )
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


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
