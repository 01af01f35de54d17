"""The report's probe section (`train.probes`, trainers/probes.py): each probed cell's
first-layer filters as small RGB images (seed 001 Figs 3-4, seed 003 Fig. 2), the weight
norm of every layer (seed 003 Fig. 12), and the relative gradient norm per layer and epoch
as curves (seed 003 Figs 5 and 7). Empty when no cell of the grid was probed."""

from __future__ import annotations

import json
import math

import numpy as np

from results.figures.style import new_figure, paper_style, png_bytes
from results.report.html import figure, simple_table

MAX_CELLS = 24  # figures per section: a page, not a dump
GRAD = "grad_norm."


def filter_image(probe: dict) -> np.ndarray:
    """The first conv's filters (out x 3 x k x k) tiled as one RGB image, each filter
    scaled to [0, 1] on its own (as the reports draw them), one pixel of gap."""
    out, c, kh, kw = probe["shape"]
    w = np.asarray(probe["values"], dtype=np.float32).reshape(out, c, kh, kw)[:, :3]
    lo = w.min(axis=(1, 2, 3), keepdims=True)
    span = np.maximum(w.max(axis=(1, 2, 3), keepdims=True) - lo, 1e-12)
    w = ((w - lo) / span).transpose(0, 2, 3, 1)  # out x k x k x rgb
    if w.shape[-1] == 1:
        w = np.repeat(w, 3, axis=-1)
    cols = math.ceil(math.sqrt(out))
    rows = math.ceil(out / cols)
    tile = np.ones((rows * (kh + 1) + 1, cols * (kw + 1) + 1, 3), dtype=np.float32)
    for i in range(out):
        r, q = divmod(i, cols)
        tile[1 + r * (kh + 1) : 1 + r * (kh + 1) + kh, 1 + q * (kw + 1) : 1 + q * (kw + 1) + kw] = (
            w[i]
        )
    return tile


def _filters_png(probe: dict) -> bytes:
    with paper_style():
        fig = new_figure("one")
        ax = fig.add_subplot()
        ax.imshow(filter_image(probe), interpolation="nearest")
        ax.set_axis_off()
        return png_bytes(fig)


def _grad_history(epochs: dict[str, list[dict]], trial: dict) -> list[dict]:
    """The trial's epochs that carry gradient norms (other cells' columns read as null)."""
    rows = epochs.get(trial["key"], [])
    return [e for e in rows if any(k.startswith(GRAD) and v is not None for k, v in e.items())]


def _grads_png(history: list[dict]) -> bytes:
    layers = [k for k, v in history[0].items() if k.startswith(GRAD) and v is not None]
    with paper_style():
        fig = new_figure("one")
        ax = fig.add_subplot()
        epochs = [h["epoch"] for h in history]
        for k in layers:
            ax.plot(epochs, [h.get(k) for h in history], label=k[len(GRAD) :])
        ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.set_ylabel("|grad| / |w|")
        if len(layers) <= 12:
            ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize="x-small")
        return png_bytes(fig)


def probe_section(trials: list[dict], epochs: dict[str, list[dict]], label) -> str:
    """The section's HTML ('' without probes); `label(row)` names a cell."""
    probed = [
        t
        for t in trials
        if t.get("probe.filters") or t.get("probe.weight_norms") or _grad_history(epochs, t)
    ][:MAX_CELLS]
    if not probed:
        return ""
    parts = ['<section id="probes"><h2>Probes</h2>']
    norms = {
        t["key"]: json.loads(t["probe.weight_norms"]) for t in probed if t.get("probe.weight_norms")
    }
    if norms:
        layers = list(dict.fromkeys(k for n in norms.values() for k in n))
        rows = [
            [label(t)] + [f"{norms[t['key']].get(k, float('nan')):.3g}" for k in layers]
            for t in probed
            if t["key"] in norms
        ]
        parts.append("<h3>Weight norm per layer (Frobenius, at the end)</h3>")
        parts.append(simple_table(["cell"] + layers, rows))
    for t in probed:
        name = label(t)
        if t.get("probe.filters"):
            probe = json.loads(t["probe.filters"])
            caption = f"{name}: first-layer filters ({probe['layer']}, {probe['shape']})"
            parts.append(figure(_filters_png(probe), caption, caption, "filters"))
        history = _grad_history(epochs, t)
        if history:
            caption = f"{name}: relative gradient norm per layer and epoch"
            parts.append(figure(_grads_png(history), caption, caption, "grads"))
    return "\n".join(parts + ["</section>"]) if len(parts) > 1 else ""
