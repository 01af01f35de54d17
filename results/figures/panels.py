"""Learning curves as small multiples: one panel per table row, one line per trial.

In each panel every trial of the row is drawn (each learning rate, or `over` / `columns`
value, and each seed): its evaluation metric solid and its training metric dashed, in the
colour of its value; the value the table picked is drawn bold, and a diverged run ends in a
cross. Panels share their axes, so rows compare at a glance.
"""

from __future__ import annotations

import math
import statistics
from typing import Any

from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from results.figures.style import (
    FEW_EPOCHS,
    LINE_COLOURS,
    MARKERS,
    epoch_axis,
    legend_outside,
    new_figure,
    set_title,
    wrap_title,
)
from results.tables.aggregate import TableData
from results.tables.build import METRIC_LABELS, axis_label, fmt_value

VARY = ("train.lr", "train.seed")  # what the lines of a panel differ by, after over/columns
PANEL_HEIGHT = 1.35  # inches per row of panels: readable at 7 pt in a two-column figure


def epoch_value(epoch: dict, metric: str) -> float | None:
    """`metric` (`test_error`, `val_acc`, `train_loss`...) of one epoch row, in the tables'
    unit: accuracy and error in percent, loss as is; None when not measured or not finite."""
    split, _, kind = metric.rpartition("_")
    value = epoch.get(f"{split}_{'loss' if kind == 'loss' else 'acc'}")
    if value is None or not math.isfinite(value):
        return None
    if kind == "loss":
        return value
    return 100.0 * value if kind == "acc" else 100.0 * (1.0 - value)


def epoch_series(
    keys: list[str], epochs: dict[str, list[dict]], metric: str
) -> tuple[list[int], list[float]]:
    """Mean `metric` per epoch over the trials `keys`."""
    by_epoch: dict[int, list[float]] = {}
    for key in keys:
        for e in epochs.get(key, []):
            if (v := epoch_value(e, metric)) is not None:
                by_epoch.setdefault(e["epoch"], []).append(v)
    xs = sorted(by_epoch)
    return xs, [statistics.fmean(by_epoch[x]) for x in xs]


def _vary(data: TableData, trials: list[dict]) -> str | None:
    """The axis the lines of a panel differ by: the table's `over`, its `columns`, else lr or
    seed when they vary; None when every trial of a row is the same config."""
    t = data.table
    for path in (t["over"], t["columns"], *VARY):
        if path and len({x.get(path) for x in trials}) > 1:
            return path
    return None


def _values(vary: str | None, trials: list[dict]) -> list[Any]:
    if vary is None:
        return [None]
    found = {x.get(vary) for x in trials}
    return sorted(found, key=lambda v: (v is None, isinstance(v, str), v if v is not None else 0))


def _draw_trial(
    ax: Any, trial: dict, epochs: list[dict], metric: str, colour_index: int, picked: bool
) -> bool:
    """The evaluation (solid) and training (dashed) curves of one trial; False when empty."""
    kind = metric.rpartition("_")[2]
    eval_xy = [(e["epoch"], v) for e in epochs if (v := epoch_value(e, metric)) is not None]
    train_xy = [
        (e["epoch"], v) for e in epochs if (v := epoch_value(e, f"train_{kind}")) is not None
    ]
    if not eval_xy and not train_xy:
        return False
    style = {
        "color": LINE_COLOURS[colour_index % len(LINE_COLOURS)],
        "marker": MARKERS[colour_index % len(MARKERS)] if len(epochs) <= FEW_EPOCHS else None,
        "markersize": 4.5 if picked else 3,
        "linewidth": 2.0 if picked else 0.9,
    }
    if eval_xy:
        ax.plot(*zip(*eval_xy, strict=True), linestyle="-", **style)
    if train_xy and not metric.startswith("train_"):  # hollow: apart from eval at one epoch
        ax.plot(
            *zip(*train_xy, strict=True),
            linestyle="--",
            alpha=0.7,
            markerfacecolor="white",
            **style,
        )
    if trial.get("status") == "diverged" and eval_xy:
        ax.plot(*eval_xy[-1], marker="x", color="black", markersize=6, linestyle="none")
    return True


def _legend(
    fig: Figure, data: TableData, vary: str | None, values: list, picks: bool, diverged: bool
) -> None:
    metric = data.table["metric"]
    split, _, kind = metric.rpartition("_")
    handles, labels = [], []
    if vary is not None:
        for i, v in enumerate(values):
            handles.append(
                Line2D(
                    [],
                    [],
                    color=LINE_COLOURS[i % len(LINE_COLOURS)],
                    marker=MARKERS[i % len(MARKERS)],
                    markersize=3,
                )
            )
            labels.append(f"{axis_label(vary)}={fmt_value(v)}")
    handles.append(Line2D([], [], color="0.2", marker="o", markersize=3))
    labels.append(f"{split} {METRIC_LABELS[kind].split(' ')[0]}")
    if split != "train":
        handles.append(
            Line2D(
                [],
                [],
                color="0.2",
                linestyle="--",
                alpha=0.7,
                marker="o",
                markersize=3,
                markerfacecolor="white",
            )
        )
        labels.append(f"train {METRIC_LABELS[kind].split(' ')[0]}")
    if picks:
        handles.append(Line2D([], [], color="0.2", linewidth=2.0))
        labels.append(f"bold: {axis_label(data.table['over'])} picked by {data.table['best_by']}")
    if diverged:
        handles.append(Line2D([], [], color="black", marker="x", linestyle="none"))
        labels.append("diverged")
    legend_outside(fig, handles, labels)


def _panel(
    ax: Any,
    data: TableData,
    row: tuple,
    trials: list[dict],
    epochs: dict[str, list[dict]],
    vary: str | None,
    values: list,
) -> tuple[bool, bool]:
    """Every trial of table row `row` in one panel; (a picked value drawn, a run diverged)."""
    t = data.table
    pick = data.cells[(row, None)].pick if not t["columns"] and t["best_by"] else None
    mine = [x for x in trials if tuple(x.get(p) for p in t["rows"]) == row]
    colour = (lambda x: values.index(x.get(vary))) if vary else (lambda x: 0)  # noqa: E731
    drawn = picks = diverged = False
    for x in sorted(mine, key=lambda x: (colour(x), x.get("train.seed") or 0)):
        picked = pick is not None and x.get(t["over"]) == pick
        drawn |= _draw_trial(ax, x, epochs.get(x["key"], []), t["metric"], colour(x), picked)
        picks |= picked
        diverged |= x.get("status") == "diverged"
    if not drawn:
        ax.text(0.5, 0.5, "no curves", transform=ax.transAxes, ha="center", color="0.5")
    return picks, diverged


def panels_figure(
    data: TableData,
    trials: list[dict],
    epochs: dict[str, list[dict]],
    size: str = "two",
    titled: bool = True,
) -> Figure | None:
    """One panel per table row with every trial's curves; None when no trial has epochs."""
    t = data.table
    if not data.rows or not any(epochs.get(x["key"]) for x in trials):
        return None
    vary = _vary(data, trials)
    values = _values(vary, trials)
    ncols = min(len(data.rows), 4 if size == "two" else 2)
    fig = new_figure(size, height=PANEL_HEIGHT * math.ceil(len(data.rows) / ncols) + 1.0)
    axes = fig.subplots(
        math.ceil(len(data.rows) / ncols), ncols, sharex=True, sharey=True, squeeze=False
    ).ravel()
    last_epoch = max((e["epoch"] for x in trials for e in epochs.get(x["key"], [])), default=1)
    picks = diverged = False
    for ax, row in zip(axes, data.rows, strict=False):
        p, d = _panel(ax, data, row, trials, epochs, vary, values)
        picks, diverged = picks or p, diverged or d
        label = ", ".join(
            f"{axis_label(a)}={fmt_value(v)}" if isinstance(v, bool) else fmt_value(v)
            for a, v in zip(t["rows"], row, strict=True)
        )
        ax.set_title(wrap_title(label, fig.get_figwidth() / ncols, 8), fontsize=7.5)
        epoch_axis(ax, last_epoch)
    for i, ax in enumerate(axes):
        if i >= len(data.rows):
            ax.set_visible(False)
        elif i + ncols >= len(data.rows):  # nothing drawn below it: it carries the x axis
            ax.xaxis.set_tick_params(labelbottom=True)
            ax.set_xlabel("epoch")
    fig.supylabel(METRIC_LABELS[t["metric"].rpartition("_")[2]], fontsize=8)
    if titled:
        set_title(fig, f"{t['title']}: learning curves per row")
    _legend(fig, data, vary, values, picks, diverged)
    return fig
