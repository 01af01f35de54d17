"""The table as a figure of intervals: each entry's mean with its 95 % t-interval as an error
bar, the published number beside it, so a reader sees at a glance which gaps the seeds can
and cannot explain (`results.tables.inference` computes the intervals).

One line of the y axis per table row; with `columns`, one colour per column value, offset a
little within the row. An entry of one run (n = 1) is a hollow marker with no bar: it has no
interval, and the figure draws none.
"""

from __future__ import annotations

from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from results.figures.style import LINE_COLOURS, MARKERS, legend_outside, new_figure, set_title
from results.tables.aggregate import TableData
from results.tables.build import axis_label, fmt_value, metric_header

ROW_HEIGHT = 0.22  # inches per table row: readable at 7 pt in a two-column figure


def _row_name(data: TableData, row: tuple) -> str:
    return ", ".join(fmt_value(v) for v in row)


def intervals_figure(data: TableData, size: str = "two", titled: bool = True) -> Figure | None:
    """Each entry's mean with its 95 % interval, and the published numbers as diamonds;
    None when no entry has a mean."""
    if not any(c.mean is not None for c in data.cells.values()):
        return None
    rows, cols = data.rows, data.columns
    fig = new_figure(size, height=1.3 + ROW_HEIGHT * len(rows) * max(1, len(cols) / 2))
    ax = fig.add_subplot()
    step = 0.7 / len(cols)
    handles, labels, refs, single = [], [], False, False
    for j, col in enumerate(cols):
        colour, marker = LINE_COLOURS[j % len(LINE_COLOURS)], MARKERS[j % len(MARKERS)]
        for i, row in enumerate(rows):
            cell = data.cells[(row, col)]
            y = i + (j - (len(cols) - 1) / 2) * step
            if cell.reference is not None:
                ax.plot([cell.reference], [y], "D", color="0.15", fillstyle="none", markersize=5)
                refs = True
            if cell.mean is None:
                continue
            if cell.ci is None:  # one run: a point without a made-up spread
                ax.plot([cell.mean], [y], marker, color=colour, fillstyle="none")
                single = True
                continue
            low, high = cell.ci
            ax.errorbar(
                [cell.mean],
                [y],
                xerr=[[cell.mean - low], [high - cell.mean]],
                fmt=marker,
                color=colour,
                capsize=2,
                elinewidth=0.8,
            )
        if data.table["columns"]:
            handles.append(Line2D([], [], marker=marker, color=colour, linestyle="-"))
            labels.append(f"{axis_label(data.table['columns'])}={fmt_value(col)}")
    if not data.table["columns"]:
        handles.append(Line2D([], [], marker=MARKERS[0], color=LINE_COLOURS[0], linestyle="-"))
        labels.append("mean, 95% CI")
    if single:
        handles.append(Line2D([], [], marker="o", color="0.4", fillstyle="none", linestyle=""))
        labels.append("n = 1: no interval")
    if refs:
        handles.append(Line2D([], [], marker="D", color="0.15", fillstyle="none", linestyle=""))
        labels.append(data.table["reference_label"])
    ax.set_yticks(range(len(rows)), [_row_name(data, r) for r in rows])
    ax.set_ylim(len(rows) - 0.5, -0.5)  # the table's first row on top, as in the table
    ax.set(xlabel=metric_header(data.table), ylabel=", ".join(map(axis_label, data.table["rows"])))
    ax.grid(axis="x", linewidth=0.4, alpha=0.5)
    if titled:
        set_title(fig, data.table["title"])
    legend_outside(fig, handles, labels)
    return fig
