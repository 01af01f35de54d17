"""The look of every figure: paper sizes, a colour-blind-safe palette with line styles and
markers, wrapped titles, legends outside the data, and PNG / SVG / PDF output.

Styled as SciencePlots styles a paper figure: 8 pt text, thin lines, a one-column (3.5 in)
or two-column (7.2 in) width. Colours are Okabe & Ito's eight (distinct for the common colour
vision deficiencies; lines skip the faint yellow); past seven series the line style changes
too, and every series has its own marker, so 12+ rows stay apart in print and in greyscale.
"""

from __future__ import annotations

import contextlib
import io
import math
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import matplotlib
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

FORMATS = ("png", "svg", "pdf")
# Okabe & Ito (2008), "Color Universal Design"; black last: it reads as an axis in a crowd.
OKABE_ITO = ("#E69F00", "#56B4E9", "#009E73", "#0072B2", "#D55E00", "#CC79A7", "#F0E442", "#000000")
# Lines use seven of them: the yellow is too faint on white for a thin line (1.2:1).
LINE_COLOURS = tuple(c for c in OKABE_ITO if c != "#F0E442")
LINESTYLES = ("-", "--", ":", "-.")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">", "h", "p")
# Widths of a figure in a one- or two-column paper (IEEE/NeurIPS-like: 3.5 in, 7.2 in).
WIDTHS = {"one": 3.5, "two": 7.2}
FEW_EPOCHS = 12  # up to this many points per line, each point gets a marker
STYLE = {
    "font.size": 8,
    "axes.titlesize": 8,
    "axes.labelsize": 8,
    "legend.fontsize": 7,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "figure.titlesize": 9,
    "lines.linewidth": 1.2,
    "lines.markersize": 3.5,
    "axes.linewidth": 0.6,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "grid.linewidth": 0.5,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "legend.frameon": False,
    "savefig.dpi": 200,
    "pdf.fonttype": 42,
    "ps.fonttype": 42,  # TrueType in the PDF: editable, journals accept it
    "svg.hashsalt": "grid",  # stable ids: the same figure gives the same SVG bytes
}


def series_style(i: int, points: int = 0) -> dict:
    """Colour, line style and marker of series `i`; markers on every point when a line has
    few points (a one-epoch curve is then a dot, not nothing)."""
    style = {
        "color": LINE_COLOURS[i % len(LINE_COLOURS)],
        "linestyle": LINESTYLES[(i // len(LINE_COLOURS)) % len(LINESTYLES)],
        "marker": MARKERS[i % len(MARKERS)],
    }
    if points > FEW_EPOCHS:
        style["markevery"] = max(1, points // 8)  # still tell lines apart, without clutter
    return style


def epoch_axis(ax: Any, last_epoch: int) -> None:
    """An x axis of whole epochs: every epoch ticked when there are few (one epoch is a
    tick at 1, not 0.95 ... 1.05), else integer ticks."""
    if last_epoch <= FEW_EPOCHS:
        ax.set_xticks(range(1, last_epoch + 1))
        ax.set_xlim(0.6, last_epoch + 0.4)
    else:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))


@contextlib.contextmanager
def paper_style() -> Iterator[None]:
    """matplotlib settings for the figures drawn and saved inside the block."""
    with matplotlib.rc_context(STYLE):
        yield


def new_figure(size: str = "two", height: float | None = None) -> Figure:
    """A figure `size` ('one' or 'two' columns) wide with constrained layout, which keeps
    titles, labels and outside legends on the canvas. No pyplot: no global state."""
    if size not in WIDTHS:
        raise ValueError(f"size must be one of {', '.join(WIDTHS)}, not {size!r}")
    width = WIDTHS[size]
    # Wide figures are kept low: a two-column figure sits across a page with text below it.
    fig = Figure(
        figsize=(width, height or width * (0.75 if size == "one" else 0.48)), layout="constrained"
    )
    FigureCanvasAgg(fig)
    return fig


def wrap_title(title: str, width_in: float, fontsize: float = 9) -> str:
    """`title` broken into lines that fit `width_in` inches (about 0.6 em per character)."""
    chars = max(16, int(width_in * 72 / (fontsize * 0.6)))
    lines = math.ceil(len(title) / chars)
    # Balanced lines: "... (Springenberg et al. 2015, Table" + "3)" reads badly.
    return "\n".join(textwrap.wrap(title, min(chars, math.ceil(len(title) / lines) + 8))) or title


def set_title(fig: Figure, title: str) -> None:
    """The figure's title, wrapped to its width, never clipped."""
    fig.suptitle(wrap_title(title, fig.get_figwidth()), fontsize=STYLE["figure.titlesize"])


def legend_outside(fig: Figure, handles: list, labels: list[str], title: str | None = None) -> None:
    """One legend for the figure, below the axes and as many columns wide as its labels
    allow: never over the data, and never beside a title that spans the width."""
    if not handles:
        return
    fontsize = STYLE["legend.fontsize"]
    label_in = max(len(s) for s in labels) * fontsize * 0.55 / 72 + 0.45  # text + handle
    ncols = max(1, min(len(handles), int(fig.get_figwidth() * 0.95 / label_in)))
    fig.legend(
        handles,
        labels,
        loc="outside lower center",
        ncols=ncols,
        title=title,
        title_fontsize=fontsize,
        handlelength=2.6,
        columnspacing=1.2,
    )


def save(fig: Figure, path: Path, fmt: str = "png") -> Path:
    """Write `fig` as `path` with the suffix of `fmt` (png, svg or pdf); returns the path."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    path = Path(path).with_suffix("." + fmt)
    # No creation date in the files: the same results give the same bytes.
    meta = {"png": {"Software": None}, "svg": {"Date": None}, "pdf": {"CreationDate": None}}
    fig.savefig(path, format=fmt, metadata={"Creator": "grid", **meta[fmt]})
    return path


def png_bytes(fig: Figure) -> bytes:
    """`fig` as PNG bytes, for embedding in a page."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    return buf.getvalue()
