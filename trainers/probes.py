"""Probes of what a cell learned (seed 001 Figs 3-4 and seed 003 Figs 2 and 12: first-layer
filters and kernel magnitudes; seed 003 Figs 5 and 7: the relative gradient norm of each
layer), asked for by `train.probes` (docs/spec.md).

- `filters`: the first conv's weights at the end, stored with the result (`probe.filters`),
  drawn by `grid report` as one small RGB image per filter.
- `weight_norms`: each conv and linear layer's weight norm at the end (`probe.weight_norms`).
- `grad_norms`: per epoch and layer, the mean over the epoch's steps of the Frobenius norm of
  the weight's gradient divided by the norm of the weight (seed 003's "relative gradient
  norm"), as the epoch columns `grad_norm.<layer>`: curves beside the loss.
Layers are the modules' names (`features.0.0`); biases and norms are left out.
"""

from __future__ import annotations

import torch
from torch import nn

PROBES = ("filters", "weight_norms", "grad_norms")
DECIMALS = 5  # stored filters: enough for an image, a fraction of the JSON


def layer_weights(model: nn.Module) -> list[tuple[str, torch.Tensor]]:
    """(module name, weight) of every conv and linear layer, in forward-definition order."""
    return [
        (name, m.weight)
        for name, m in model.named_modules()
        if isinstance(m, (nn.Conv2d, nn.Linear))
    ]


@torch.no_grad()
def final_probes(model: nn.Module, names: list[str]) -> dict:
    """The end-of-training probes among `names`: {"filters": {"shape", "values"},
    "weight_norms": {layer: norm}}; {} when none is asked for."""
    out: dict = {}
    layers = layer_weights(model)
    if "filters" in names and layers:
        w = layers[0][1].detach().float().cpu()
        out["filters"] = {
            "layer": layers[0][0],
            "shape": list(w.shape),
            "values": [round(v, DECIMALS) for v in w.flatten().tolist()],
        }
    if "weight_norms" in names:
        out["weight_norms"] = {n: float(w.detach().float().norm()) for n, w in layers}
    return out


class GradNorms:
    """Relative gradient norms summed on the device after each step; `epoch()` returns
    their means as metrics and starts the next epoch."""

    def __init__(self, model: nn.Module):
        self.layers = layer_weights(model)
        self.sums: torch.Tensor | None = None
        self.steps = 0

    @torch.no_grad()
    def after_step(self) -> None:
        grads = [w.grad for _, w in self.layers]
        if any(g is None for g in grads):
            return
        ratio = torch.stack(torch._foreach_norm(grads)) / torch.stack(
            torch._foreach_norm([w.detach() for _, w in self.layers])
        ).clamp_min(1e-12)
        self.sums = ratio.float() if self.sums is None else self.sums + ratio.float()
        self.steps += 1

    def epoch(self) -> dict[str, float]:
        if self.sums is None:
            return {}
        means = (self.sums / self.steps).tolist()
        self.sums, self.steps = None, 0
        return {f"grad_norm.{n}": v for (n, _), v in zip(self.layers, means, strict=True)}
