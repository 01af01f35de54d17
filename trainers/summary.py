"""What an epoch reports and what a cell's training returns, without torch.

The divergence rule lives here, in one torch-free function, so the trainers and the
orchestrator's trial (which must not import torch to decide) apply the same rule.
"""

from __future__ import annotations

import math

# An epoch's metrics (docs/design.md). `images_per_s` is training throughput only: images
# of the training pass per second of it, evaluation excluded; inside a pack it is per cell
# (each cell's own images over the pack's shared training time). `epoch_wall_s` is the
# epoch's whole wall time, its report (checkpoint, upload) included: the overhead is
# epoch_wall_s - epoch_s.
METRIC_KEYS = (
    "epoch",
    "lr",
    "train_loss",
    "train_acc",
    "val_loss",
    "val_acc",
    "test_loss",
    "test_acc",
    "epoch_s",
    "images_per_s",
    "epoch_wall_s",
)


def diverged(metrics: dict) -> bool:
    """A NaN/inf loss in an epoch's metrics. The eval losses count too: the epoch's last
    step can blow up the weights after the train loss (averaged before each update) was
    still finite."""
    losses = [metrics.get(m) for m in ("train_loss", "val_loss", "test_loss")]
    return not all(math.isfinite(v) for v in losses if v is not None)


def summarize(history: list[dict], status: str, params: int, wall_s: float, device: str) -> dict:
    """The summary of docs/design.md; best is by val_acc (test_acc when there is no val)."""
    # Epochs between evaluations (`train.eval_every`) have no val/test: best is among the
    # evaluated ones.
    key = "val_acc" if any(h.get("val_acc") is not None for h in history) else "test_acc"
    scored = [h for h in history if h[key] is not None and math.isfinite(h[key])]
    best = max(scored, key=lambda h: h[key]) if scored else (history[-1] if history else {})
    # Same images every epoch: the run's rate is the harmonic mean of the epochs' rates.
    rates = [h["images_per_s"] for h in history if h["images_per_s"] > 0]
    ips = len(rates) / sum(1 / r for r in rates) if rates else 0.0
    return {
        "status": status,
        "epochs": len(history),
        "params": params,
        "wall_s": wall_s,
        "images_per_s": ips,
        "device": device,
        "final": dict(history[-1]) if history else {},
        "best": dict(best),
        "history": [dict(h) for h in history],
    }
