"""K models of one architecture as one vmapped model, for the packed trainer's vmap mode.

`torch.vmap` over `torch.func.functional_call` runs each model on its OWN batch: every conv
becomes one grouped conv (groups = K) and every batch norm one with K x C channels. The
parameters stay each model's own leaf tensors, stacked inside the forward (torch.stack's
backward hands each model its gradient); batch-norm buffers are stacked once, with each
model's buffer a view of its slice (`share_buffers`).
"""
from __future__ import annotations

import copy
import warnings

import torch
from torch import nn
from torch.func import functional_call

# vmap has no batching rule for as_strided_ (in adaptive average pooling): it loops over
# the K cells for that one small op, and warns; expected, not news.
NO_AS_STRIDED_RULE = r".*batching rule for aten::as_strided_"


class Fused:
    """K models of one architecture as one vmapped model: `fused(x)` maps K x B x 3 x H x W
    inputs (cell k's batch at x[k]) to K x B x classes logits, each conv one grouped conv."""

    def __init__(self, models: list[nn.Module], memory_format=torch.contiguous_format):
        self.base = copy.deepcopy(models[0]).to("meta")  # the structure; holds no data
        self.params = [dict(m.named_parameters()) for m in models]
        self.nhwc = memory_format == torch.channels_last
        self.buffers = share_buffers(models)
        self._vmapped = torch.vmap(self._forward, randomness="different")

    def _forward(self, params: dict, buffers: dict, x: torch.Tensor) -> torch.Tensor:
        return functional_call(self.base, (params, buffers), (x,))

    def stack(self, tensors: list[torch.Tensor]) -> torch.Tensor:
        """torch.stack of the K cells' parameters; with channels_last, 4-d weights laid out
        K x Cout x kh x kw x Cin so that vmap's grouped conv (weight K*Cout x Cin x kh x kw)
        sees a channels_last weight without a copy."""
        if self.nhwc and tensors[0].dim() == 4:
            return torch.stack([t.permute(0, 2, 3, 1) for t in tensors]).permute(0, 1, 4, 2, 3)
        return torch.stack(tensors)

    def stack_inputs(self, xs: list[torch.Tensor]) -> torch.Tensor:
        """The K cells' batches (each B x C x H x W) as K x B x C x H x W; with channels_last,
        laid out B x H x W x K x C so that vmap's grouped conv input (B x K*C x H x W) is
        channels_last without a copy."""
        if self.nhwc:
            return torch.stack([x.permute(0, 2, 3, 1) for x in xs], 3).permute(3, 0, 4, 1, 2)
        return torch.stack(xs)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        params = {n: self.stack([p[n] for p in self.params]) for n in self.params[0]}
        self.base.train()
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=NO_AS_STRIDED_RULE)
            return self._vmapped(params, self.buffers, x)


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
