"""K models of one architecture as one vmapped model, for the packed trainer's vmap mode.

`torch.vmap` over `torch.func.functional_call` runs each model on its OWN batch: every conv
becomes one grouped conv (groups = K) and every batch norm one with K x C channels.

The parameters are laid out once, when the `Fused` is built (once per pack, and again only
when the set of cells training changes): one K x P buffer, row k holding model k's P
parameter values, and each model's parameters re-pointed at views of its row. The fused
forward then reads every stacked weight as a view of that buffer (no `torch.stack` per
step), the backward writes one K x P gradient buffer, and each model's `.grad` is a view of
its row, so each cell's own optimizer steps its own parameters in place, as unpacked.
Batch-norm buffers are stacked the same way (`share_buffers`).
"""

from __future__ import annotations

import copy
import math
import warnings

import torch
from torch import nn
from torch.func import functional_call

# vmap has no batching rule for as_strided_ (in adaptive average pooling): it loops over
# the K cells for that one small op, and warns; expected, not news.
NO_AS_STRIDED_RULE = r".*batching rule for aten::as_strided_"


class Fused:
    """K models of one architecture as one vmapped model: `fused(x)` maps K x B x 3 x H x W
    inputs (cell k's batch at x[k]) to K x B x classes logits, each conv one grouped conv.
    Call `zero_grad()` before each backward (not the optimizers' own, which would drop the
    gradient views)."""

    def __init__(self, models: list[nn.Module], memory_format=torch.contiguous_format):
        self.base = copy.deepcopy(models[0]).to("meta")  # the structure; holds no data
        self.nhwc = memory_format == torch.channels_last
        self.flat, self.layout = flatten_params(models, self.nhwc)
        self.buffers = share_buffers(models)
        self._vmapped = torch.vmap(self._forward, randomness="different")

    def _forward(self, params: dict, buffers: dict, x: torch.Tensor) -> torch.Tensor:
        return functional_call(self.base, (params, buffers), (x,))

    def stack_inputs(self, xs: list[torch.Tensor]) -> torch.Tensor:
        """The K cells' batches (each B x C x H x W) as K x B x C x H x W; with channels_last,
        laid out B x H x W x K x C so that vmap's grouped conv input (B x K*C x H x W) is
        channels_last without a copy."""
        if self.nhwc:
            return torch.stack([x.permute(0, 2, 3, 1) for x in xs], 3).permute(3, 0, 4, 1, 2)
        return torch.stack(xs)

    def zero_grad(self) -> None:
        self.flat.grad.zero_()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.base.train()
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=NO_AS_STRIDED_RULE)
            # Views, made anew each step (a view op per parameter; no data moves).
            params = {n: _view(self.flat, *at, self.nhwc) for n, at in self.layout.items()}
            return self._vmapped(params, self.buffers, x)


def _view(row: torch.Tensor, offset: int, shape: torch.Size, nhwc: bool) -> torch.Tensor:
    """Elements [offset, offset + numel) of the last dim of `row` (P, or K x P) as `shape`;
    a 4-d weight with channels_last is stored Cout x kh x kw x Cin, so that it (and vmap's
    grouped-conv weight K*Cout x Cin x kh x kw) is channels_last without a copy."""
    lead = row.shape[:-1]
    chunk = row[..., offset : offset + math.prod(shape)]
    if nhwc and len(shape) == 4:
        o, i, h, w = shape
        perm = [d + len(lead) for d in (0, 3, 1, 2)]
        return chunk.view(*lead, o, h, w, i).permute(*range(len(lead)), *perm)
    return chunk.view(*lead, *shape)


def flatten_params(models: list[nn.Module], nhwc: bool) -> tuple[torch.Tensor, dict]:
    """One K x P leaf buffer (and its K x P gradient) holding the models' parameters;
    each model's parameters and their `.grad` become views of its row. Returns the buffer
    and its layout, {name: (offset, shape)}."""
    named = [dict(m.named_parameters()) for m in models]
    layout, offset = {}, 0
    for name, p in named[0].items():
        layout[name] = (offset, p.shape)
        offset += p.numel()
    first = next(iter(named[0].values()))
    flat = torch.empty(len(models), offset, device=first.device, dtype=first.dtype)
    flat.grad = torch.zeros_like(flat)
    with torch.no_grad():
        for k, params in enumerate(named):
            for name, p in params.items():
                view = _view(flat[k], *layout[name], nhwc)
                view.copy_(p)
                p.data = view
                p.grad = _view(flat.grad[k], *layout[name], nhwc)
    flat.requires_grad_(True)
    return flat, layout


def share_buffers(models: list[nn.Module]) -> dict[str, torch.Tensor]:
    """Stack the models' buffers (batch-norm running stats) into one K x ... tensor per name
    and make each model's buffer a view of its slice: batch norm's in-place updates under
    vmap land in the stack, and each model (eval, state_dict) sees its own."""
    names = [n for n, _ in models[0].named_buffers()]
    stacked = {n: torch.stack([m.get_buffer(n) for m in models]) for n in names}
    for k, model in enumerate(models):
        for name in names:
            owner, _, leaf = name.rpartition(".")
            model.get_submodule(owner)._buffers[leaf] = stacked[name][k]
    return stacked
