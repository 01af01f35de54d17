"""The text formats of a laid-out table: markdown, LaTeX (booktabs), HTML and rich.

`results.tables.build` lays each table out once as a `Layout` (title, header, text cells, which
columns hold numbers, notes); these functions only write it down.
"""

from __future__ import annotations

import csv
import dataclasses
import html
import io
import json
from typing import Any

from rich.table import Table
from rich.text import Text


@dataclasses.dataclass
class Layout:
    """A table as text: title, header, rows of cells, which columns are numbers, notes."""

    title: str
    header: list[str]
    rows: list[list[str]]
    numeric: list[bool]
    notes: list[str]


def fmt_duration(seconds: float, clock: bool = False) -> str:
    """A duration for people: 45s, 2m05s, 1h02m in tables; with `clock`, 4:05 and 1:02:03
    (the launch's live progress, whose columns line up)."""
    s = int(round(max(0.0, seconds)))
    h, m, sec = s // 3600, s % 3600 // 60, s % 60
    if clock:
        return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"
    if s < 60:
        return f"{s}s"
    return f"{m}m{sec:02d}s" if s < 3600 else f"{h}h{m:02d}m"


def fmt_value(value: Any) -> str:
    """An axis value for display: yes/no, 0.05, a JSON list as crop+flip."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, str) and value.startswith("["):
        try:
            return "+".join(str(v) for v in json.loads(value)) or "none"
        except ValueError:
            return value
    return "-" if value is None else str(value)


def fmt_number(metric: str, v: float) -> str:
    """A value of `metric` as the tables write it: losses to 4 decimals, percentages to 2."""
    return f"{v:.4f}" if metric.endswith("_loss") else f"{v:.2f}"


def to_markdown(lay: Layout) -> str:
    """A `### title`, a pipe table (numbers right-aligned) and the notes as a list."""
    esc = lambda s: s.replace("|", "\\|")  # noqa: E731
    lines = [
        f"### {lay.title}",
        "",
        "| " + " | ".join(esc(h) for h in lay.header) + " |",
        "| " + " | ".join("---:" if n else "---" for n in lay.numeric) + " |",
    ]
    lines += ["| " + " | ".join(esc(c) for c in row) + " |" for row in lay.rows]
    return "\n".join(lines + ([""] + [f"- {n}" for n in lay.notes] if lay.notes else [])) + "\n"


LATEX_ESCAPES = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "±": r"$\pm$",
    "Δ": r"$\Delta$",
    "α": r"$\alpha$",
    "·": r"$\cdot$",
    "√": r"$\surd$",
}


def latex_escape(text: str) -> str:
    """`text` safe inside a LaTeX table cell (±, Δ, α, · and √ as math)."""
    return "".join(LATEX_ESCAPES.get(ch, ch) for ch in text)


def to_latex(lay: Layout, name: str) -> str:
    """A booktabs `table` float with caption, label `tab:<name>` and the notes below."""
    row = lambda cells: " & ".join(latex_escape(c) for c in cells) + r" \\"  # noqa: E731
    lines = [
        r"\begin{table}[t]",
        r"\centering",
        rf"\caption{{{latex_escape(lay.title)}}}",
        rf"\label{{tab:{name}}}",
        rf"\begin{{tabular}}{{{''.join('r' if n else 'l' for n in lay.numeric)}}}",
        r"\toprule",
        row(lay.header),
        r"\midrule",
        *[row(r) for r in lay.rows],
        r"\bottomrule",
        r"\end{tabular}",
    ]
    lines += [r"\par\smallskip\footnotesize " + latex_escape(n) + r"\par" for n in lay.notes]
    return "\n".join(lines + [r"\end{table}"]) + "\n"


HTML_MARKS = {"missing": " missing", "div": " diverged", "failed": " failed"}  # CSS hooks


def _mark(text: str) -> str:
    """A cell's CSS hook: its status, `stopped` for a halving's 'stopped @25'."""
    return " stopped" if text.startswith("stopped @") else HTML_MARKS.get(text, "")


def to_html(lay: Layout) -> str:
    """A `<table class="grid-table">` with a caption; a `missing`, `div`, `failed` or
    `stopped @N` cell gets that class (`diverged` for div) so that a page can style it."""
    esc = html.escape

    def td(c, n, tag="td"):
        return f'<{tag} class="{"num" if n else "key"}{_mark(c)}">{esc(c)}</{tag}>'

    lines = [
        '<table class="grid-table">',
        f"<caption>{esc(lay.title)}</caption>",
        "<thead><tr>"
        + "".join(td(h, n, "th") for h, n in zip(lay.header, lay.numeric, strict=True))
        + "</tr></thead>",
        "<tbody>",
    ]
    lines += [
        "<tr>" + "".join(td(c, n) for c, n in zip(r, lay.numeric, strict=True)) + "</tr>"
        for r in lay.rows
    ]
    lines += ["</tbody>", "</table>"] + [f'<p class="grid-note">{esc(n)}</p>' for n in lay.notes]
    return "\n".join(lines) + "\n"


def to_rich(lay: Layout) -> Table:
    """A rich Table for the terminal; the notes are its caption."""
    table = Table(
        title=lay.title,
        title_justify="left",
        caption="\n".join(lay.notes) or None,
        caption_justify="left",
    )
    for h, n in zip(lay.header, lay.numeric, strict=True):
        table.add_column(h, justify="right" if n else "left")
    styles = {"missing": "dim", "div": "yellow"}
    for r in lay.rows:
        table.add_row(
            *[Text(c, style="blue" if c.startswith("stopped @") else styles.get(c, "")) for c in r]
        )
    return table


def _csv_value(v: Any) -> Any:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        v = round(v, 4)
        return int(v) if v.is_integer() else v
    return "" if v is None else v


def _p_value(p: float | None) -> str | None:
    """A p-value to 4 significant digits (a small one must not round to 0)."""
    return None if p is None else f"{p:.4g}"


def to_csv(datas: list) -> str:
    """All tables as one tidy CSV: a line per cell, axes as columns, numbers unformatted: the
    95 % interval, the reference and whether it lies inside, and the baseline comparison
    (difference, test, raw and Holm-adjusted p, significance, seeds that would separate)."""
    axes = list(
        dict.fromkeys(
            p for d in datas for p in d.table["rows"] + [d.table["columns"], d.table["over"]] if p
        )
    )
    shows = list(dict.fromkeys(s for d in datas for s in d.table["show"]))
    head = [
        "table",
        *axes,
        "metric",
        "at",
        "status",
        "mean",
        "std",
        "n",
        "diverged",
        "n_failed",
        "n_missing",
        "over_done",
        "over_total",
        "ci_low",
        "ci_high",
        "reference",
        "delta",
        "reference_in_ci",
        "vs_baseline",
        "test",
        "p",
        "p_holm",
        "significant",
        "seeds_needed",
        *shows,
    ]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(head)
    for d in datas:
        t = d.table
        for (row, col), cell in d.cells.items():
            vals = dict(zip(t["rows"], row, strict=True)) | (
                {t["columns"]: col} if t["columns"] else {}
            )
            if t["over"] and t["best_by"]:
                vals[t["over"]] = cell.pick
            ref = cell.reference if cell.reference is not None else d.row_refs.get(row, (None,))[0]
            comp = d.comparisons.get((row, col))
            test = comp.test if comp is not None else None
            ci = cell.ci or (None, None)
            w.writerow(
                [
                    _csv_value(x)
                    for x in (
                        t["name"],
                        *[vals.get(a) for a in axes],
                        t["metric"],
                        t["at"],
                        cell.status,
                        cell.mean,
                        cell.std,
                        cell.n,
                        cell.diverged,
                        cell.failed,
                        cell.missing,
                        cell.over_done,
                        cell.over_total,
                        *ci,
                        ref,
                        cell.delta,
                        cell.reference_inside,
                        comp.diff if comp is not None else None,
                        test.test if test is not None else None,
                        _p_value(test.p if test is not None else None),
                        _p_value(comp.p_holm if comp is not None else None),
                        comp.significant if test is not None else None,
                        comp.seeds if comp is not None else None,
                        *[d.extras[row].get(s) for s in shows],
                    )
                ]
            )
    return buf.getvalue()
