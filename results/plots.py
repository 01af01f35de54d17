"""`grid plot`: PNG figures of each table of a spec, drawn with matplotlib's Agg canvas.

Per table: the test accuracy per epoch of each table row (and column), averaged over the
trials the table averages (seeds, and the picked `over` value when the table picks one);
and, when the table varies the learning rate (`over` or `columns` is train.lr), the table's
metric against the learning rate, one line per row, mean ± std over seeds.
"""
from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator, NullLocator
from rich.console import Console
from rich.text import Text

from trainers.errors import GridError
from results.aggregate import TableData, axis_order, build_table, metric_value
from results.tables import axis_label, fmt_value, metric_header, read_rows, skipped_files

LR = "train.lr"


def _label(data: TableData, row: tuple, col: Any = None) -> str:
    parts = [f"{axis_label(p)}={fmt_value(v)}" for p, v in zip(data.table["rows"], row)]
    if data.table["columns"]:
        parts.append(f"{axis_label(data.table['columns'])}={fmt_value(col)}")
    return ", ".join(parts)


def _new_figure() -> Figure:
    fig = Figure(figsize=(7, 4.5), dpi=100)  # a new canvas per figure: no pyplot, no globals
    FigureCanvasAgg(fig)
    return fig


def _curves(keys: list[str], epochs: dict[str, list[dict]]) -> tuple[list[int], list[float]]:
    """Mean test accuracy (%) per epoch over the trials `keys`."""
    by_epoch: dict[int, list[float]] = {}
    for key in keys:
        for e in epochs.get(key, []):
            if e.get("test_acc") is not None:
                by_epoch.setdefault(e["epoch"], []).append(100.0 * e["test_acc"])
    xs = sorted(by_epoch)
    return xs, [statistics.fmean(by_epoch[x]) for x in xs]


def plot_curves(data: TableData, epochs: dict[str, list[dict]], path: Path) -> bool:
    """Test accuracy per epoch, one line per table cell; False when there is nothing to draw."""
    fig = _new_figure()
    ax = fig.add_subplot()
    drawn = 0
    for (row, col), cell in data.cells.items():
        xs, ys = _curves(cell.keys, epochs)
        if xs:
            label = _label(data, row, col) + (" (diverged)" if cell.status == "diverged" else "")
            ax.plot(xs, ys, label=label, linewidth=1.2)
            drawn += 1
    if not drawn:
        return False
    ax.set(xlabel="epoch", ylabel="test accuracy (%)", title=data.table["title"][:90])
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.savefig(path)
    return True


def _lr_points(data: TableData, trials: list[dict], row: tuple) -> list[tuple]:
    t = data.table
    mine = [x for x in trials if tuple(x.get(p) for p in t["rows"]) == row
            and x.get("status") == "completed" and x.get(LR) is not None]
    points = []
    for lr in sorted({x[LR] for x in mine}, key=axis_order(LR, {})):
        vals = [v for x in mine if x[LR] == lr if (v := metric_value(x, t["metric"], t["at"]))
                is not None]
        if vals:
            points.append((lr, statistics.fmean(vals),
                           statistics.stdev(vals) if len(vals) > 1 else 0.0))
    return points


def plot_lr(data: TableData, trials: list[dict], path: Path) -> bool:
    """The table's metric against the learning rate, one line per row (log x axis)."""
    fig = _new_figure()
    ax = fig.add_subplot()
    lrs: set[float] = set()
    for row in data.rows:
        points = _lr_points(data, trials, row)
        if points:
            xs, ys, es = zip(*points)
            ax.errorbar(xs, ys, yerr=es, marker="o", capsize=3, label=_label(data, row))
            lrs.update(xs)
    if not lrs:
        return False
    ax.set_xscale("log")
    ax.set_xticks(sorted(lrs))  # the grid's own learning rates, written as in the spec
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set(xlabel="learning rate", ylabel=metric_header(data.table), title=data.table["title"][:90])
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.savefig(path)
    return True


def plot_command(spec: Any, store: Any, out_dir: str | Path,
                 console: Console | None = None, expected: list[dict] | None = None) -> int:
    """Write `<out_dir>/<table>_curves.png` (and `<table>_lr.png`) for every table of
    `spec`; 0 even when the store has no results yet. `expected`: the spec's cells as
    `results.tables.build_tables` takes them (None: every trial found)."""
    console = console or Console()
    trials = read_rows(store, spec.name, console)
    if not trials:
        console.print(Text(f"no results for grid {spec.name} in {store}; nothing to plot"))
        return 0
    with skipped_files(console):
        epoch_table = store.read_epochs(spec.name)
    epochs: dict[str, list[dict]] = {}
    for e in epoch_table.to_pylist():
        epochs.setdefault(e["key"], []).append(e)
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise GridError(f"--out {out_dir}: cannot create the folder: {e.strerror or e}") from None
    if expected is not None:  # only this spec's cells, as in its tables
        keys = {e["key"] for e in expected}
        trials = [t for t in trials if t["key"] in keys]
    written = []
    for table in spec.tables:
        data = build_table(table, trials, expected, getattr(spec, "axes", {}) or {})
        name = data.table["name"]
        if plot_curves(data, epochs, out / f"{name}_curves.png"):
            written.append(out / f"{name}_curves.png")
        if LR in (data.table["over"], data.table["columns"]) and \
                plot_lr(data, trials, out / f"{name}_lr.png"):
            written.append(out / f"{name}_lr.png")
    for path in written:
        console.print(Text(f"wrote {path}"))
    if not written:
        console.print(Text(f"{spec.name}: no learning curves in {store} to plot"))
    return 0
