"""`grid plot`: the figures of each table of a spec, as PNG, SVG or PDF.

Per table (`figures`):
- `intervals`: each table entry's mean with its 95 % interval as an error bar and the
  published number beside it (`results.figures.intervals`);
- `curves`: the table's metric per epoch, one line per table cell, averaged over the trials
  the cell averages (seeds, and the picked `over` value when the table picks one);
- `panels`: small multiples, one panel per table row, one line per learning rate (or `over`
  / `columns` value) and seed, training and evaluation metric, the picked value drawn bold;
- `lr`, when the table varies the learning rate: the metric against the learning rate, one
  line per row, mean ± std over seeds, the picked lr ringed.
The look (palette, sizes, legends, wrapped titles) lives in `results.figures.style`.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, NullLocator
from rich.console import Console
from rich.text import Text

from results.figures.intervals import intervals_figure
from results.figures.panels import epoch_series, panels_figure
from results.figures.style import (
    epoch_axis,
    legend_outside,
    new_figure,
    paper_style,
    save,
    series_style,
    set_title,
)
from results.tables.aggregate import TableData, axis_order, build_table, metric_value
from results.tables.build import axis_label, fmt_value, metric_header, read_rows, skipped_files
from trainers.errors import GridError

LR = "train.lr"


def row_label(data: TableData, row: tuple, col: Any = None) -> str:
    """`arch=model_a, bn=yes` (+ the column's value): a table cell in words."""
    parts = [
        f"{axis_label(p)}={fmt_value(v)}" for p, v in zip(data.table["rows"], row, strict=True)
    ]
    if data.table["columns"]:
        parts.append(f"{axis_label(data.table['columns'])}={fmt_value(col)}")
    return ", ".join(parts)


def metric_axis_label(metric: str) -> str:
    """The y label of a per-epoch metric: `test error (%)`, `val accuracy (%)`, `train loss`."""
    return metric_header({"metric": metric, "at": "final"})


def curves_figure(
    data: TableData, epochs: dict[str, list[dict]], size: str = "two", titled: bool = True
) -> Figure | None:
    """The table's metric per epoch, one line per cell (mean over its trials); None when no
    cell has a curve."""
    metric = data.table["metric"]
    fig = new_figure(size)
    ax = fig.add_subplot()
    handles, labels = [], []
    for i, ((row, col), cell) in enumerate(data.cells.items()):
        xs, ys = epoch_series(cell.keys, epochs, metric)
        if xs:
            (line,) = ax.plot(xs, ys, **series_style(i, len(xs)))
            handles.append(line)
            labels.append(
                row_label(data, row, col) + (" (div)" if cell.status == "diverged" else "")
            )
    if not handles:
        return None
    ax.set(xlabel="epoch", ylabel=metric_axis_label(metric))
    epoch_axis(ax, max(max(line.get_xdata()) for line in handles))
    if titled:
        set_title(fig, data.table["title"])
    legend_outside(fig, handles, labels)
    return fig


def _lr_points(data: TableData, trials: list[dict], row: tuple) -> list[tuple]:
    t = data.table
    mine = [
        x
        for x in trials
        if tuple(x.get(p) for p in t["rows"]) == row
        and x.get("status") == "completed"
        and x.get(LR) is not None
    ]
    points = []
    for lr in sorted({x[LR] for x in mine}, key=axis_order(LR, {})):
        vals = [
            v
            for x in mine
            if x[LR] == lr
            if (v := metric_value(x, t["metric"], t["at"])) is not None
        ]
        if vals:
            points.append(
                (lr, statistics.fmean(vals), statistics.stdev(vals) if len(vals) > 1 else 0.0)
            )
    return points


def _picked_lr(data: TableData, row: tuple) -> Any:
    if data.table["over"] != LR or data.table["columns"]:
        return None
    return data.cells[(row, None)].pick


def lr_figure(
    data: TableData, trials: list[dict], size: str = "two", titled: bool = True
) -> Figure | None:
    """The table's metric against the learning rate, one line per row (log x axis), the lr
    the table picked ringed; None when nothing completed."""
    fig = new_figure(size)
    ax = fig.add_subplot()
    handles, labels, lrs = [], [], set()
    for i, row in enumerate(data.rows):
        points = _lr_points(data, trials, row)
        if not points:
            continue
        xs, ys, es = zip(*points, strict=True)
        style = series_style(i, len(xs))
        bars = ax.errorbar(xs, ys, yerr=es, capsize=2, elinewidth=0.6, **style)
        handles.append(bars.lines[0])
        labels.append(row_label(data, row))
        lrs.update(xs)
        if (pick := _picked_lr(data, row)) in xs:
            ax.plot(
                [pick],
                [ys[xs.index(pick)]],
                marker="o",
                markersize=9,
                fillstyle="none",
                color=style["color"],
                linestyle="none",
                markeredgewidth=1.0,
            )
    if not lrs:
        return None
    if any(_picked_lr(data, r) is not None for r in data.rows):
        handles.append(
            Line2D(
                [], [], marker="o", markersize=9, fillstyle="none", color="0.3", linestyle="none"
            )
        )
        labels.append(f"picked by {data.table['best_by']}")
    ax.set_xscale("log")
    ax.set_xticks(sorted(lrs))  # the grid's own learning rates, written as in the spec
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set(xlabel="learning rate", ylabel=metric_header(data.table))
    if titled:
        set_title(fig, data.table["title"])
    legend_outside(fig, handles, labels)
    return fig


def figures(
    data: TableData,
    trials: list[dict],
    epochs: dict[str, list[dict]],
    size: str = "two",
    titled: bool = True,
) -> dict[str, Figure]:
    """Every figure of one table, by kind (`intervals`, `curves`, `panels`, `lr`); kinds with
    nothing to draw are left out. `titled`: the table's title on each (a page shows it once
    instead). Call inside `figstyle.paper_style()`."""
    out = {
        "intervals": intervals_figure(data, size, titled),
        "curves": curves_figure(data, epochs, size, titled),
        "panels": panels_figure(data, trials, epochs, size, titled),
    }
    if LR in (data.table["over"], data.table["columns"]):
        out["lr"] = lr_figure(data, trials, size, titled)
    return {kind: fig for kind, fig in out.items() if fig is not None}


def load_results(
    spec: Any, store: Any, expected: list[dict] | None, console: Console
) -> tuple[list[dict], dict[str, list[dict]]]:
    """The spec's trial rows (only its own cells when `expected` is given) and their epoch
    rows by key, each key's epochs in order."""
    trials = read_rows(store, spec.name, console)
    if expected is not None:
        keys = {e["key"] for e in expected}
        trials = [t for t in trials if t["key"] in keys]
    with skipped_files(console):
        epoch_rows = store.read_epochs(spec.name).to_pylist() if trials else []
    epochs: dict[str, list[dict]] = {}
    for e in sorted(epoch_rows, key=lambda e: e["epoch"]):
        epochs.setdefault(e["key"], []).append(e)
    return trials, epochs


def plot_command(
    spec: Any,
    store: Any,
    out_dir: str | Path,
    console: Console | None = None,
    fmt: str = "png",
    size: str = "two",
    expected: list[dict] | None = None,
) -> int:
    """Write `<out_dir>/<table>_<kind>.<fmt>` for every figure of every table of `spec`;
    0 even when the store has no results yet. `expected`: the spec's cells as
    `results.tables.build.build_tables` takes them (None: every trial found)."""
    console = console or Console()
    trials, epochs = load_results(spec, store, expected, console)
    if not trials:
        console.print(Text(f"no results for grid {spec.name} in {store}; nothing to plot"))
        return 0
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise GridError(f"--out {out_dir}: cannot create the folder: {e.strerror or e}") from None
    written = []
    with paper_style():
        for table in spec.tables:
            data = build_table(table, trials, expected, getattr(spec, "axes", {}) or {})
            for kind, fig in figures(data, trials, epochs, size).items():
                written.append(save(fig, out / f"{data.table['name']}_{kind}", fmt))
    for path in written:
        console.print(Text(f"wrote {path}"))
    if not written:
        console.print(Text(f"{spec.name}: no learning curves in {store} to plot"))
    return 0
