"""The text formats of a laid-out table: markdown, LaTeX (booktabs), HTML and rich.

`results.tables` lays each table out once as a `Layout` (title, header, text cells, which
columns hold numbers, notes); these functions only write it down.
"""
from __future__ import annotations

import dataclasses
import html

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


def to_markdown(lay: Layout) -> str:
    """A `### title`, a pipe table (numbers right-aligned) and the notes as a list."""
    esc = lambda s: s.replace("|", "\\|")  # noqa: E731
    lines = [f"### {lay.title}", "", "| " + " | ".join(esc(h) for h in lay.header) + " |",
             "| " + " | ".join("---:" if n else "---" for n in lay.numeric) + " |"]
    lines += ["| " + " | ".join(esc(c) for c in row) + " |" for row in lay.rows]
    return "\n".join(lines + ([""] + [f"- {n}" for n in lay.notes] if lay.notes else [])) + "\n"


LATEX_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
                 "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
                 "^": r"\textasciicircum{}", "±": r"$\pm$", "Δ": r"$\Delta$"}


def latex_escape(text: str) -> str:
    """`text` safe inside a LaTeX table cell (± and Δ as math)."""
    return "".join(LATEX_ESCAPES.get(ch, ch) for ch in text)


def to_latex(lay: Layout, name: str) -> str:
    """A booktabs `table` float with caption, label `tab:<name>` and the notes below."""
    row = lambda cells: " & ".join(latex_escape(c) for c in cells) + r" \\"  # noqa: E731
    lines = [r"\begin{table}[t]", r"\centering", rf"\caption{{{latex_escape(lay.title)}}}",
             rf"\label{{tab:{name}}}",
             rf"\begin{{tabular}}{{{''.join('r' if n else 'l' for n in lay.numeric)}}}",
             r"\toprule", row(lay.header), r"\midrule", *[row(r) for r in lay.rows],
             r"\bottomrule", r"\end{tabular}"]
    lines += [r"\par\smallskip\footnotesize " + latex_escape(n) + r"\par" for n in lay.notes]
    return "\n".join(lines + [r"\end{table}"]) + "\n"


HTML_MARKS = {"missing": " missing", "div": " diverged", "failed": " failed"}  # CSS hooks


def to_html(lay: Layout) -> str:
    """A `<table class="grid-table">` with a caption; a `missing`, `div` or `failed` cell
    gets that class (`diverged` for div) so that a page can style it."""
    esc = html.escape
    td = lambda c, n, tag="td": (f'<{tag} class="{"num" if n else "key"}'  # noqa: E731
                                 f'{HTML_MARKS.get(c, "")}">{esc(c)}</{tag}>')
    lines = ['<table class="grid-table">', f"<caption>{esc(lay.title)}</caption>",
             "<thead><tr>" + "".join(td(h, n, "th") for h, n in zip(lay.header, lay.numeric))
             + "</tr></thead>", "<tbody>"]
    lines += ["<tr>" + "".join(td(c, n) for c, n in zip(r, lay.numeric)) + "</tr>"
              for r in lay.rows]
    lines += ["</tbody>", "</table>"] + [f'<p class="grid-note">{esc(n)}</p>' for n in lay.notes]
    return "\n".join(lines) + "\n"


def to_rich(lay: Layout) -> Table:
    """A rich Table for the terminal; the notes are its caption."""
    table = Table(title=lay.title, title_justify="left", caption="\n".join(lay.notes) or None,
                  caption_justify="left")
    for h, n in zip(lay.header, lay.numeric):
        table.add_column(h, justify="right" if n else "left")
    styles = {"missing": "dim", "div": "yellow"}
    for r in lay.rows:
        table.add_row(*[Text(c, style=styles.get(c, "")) for c in r])
    return table
