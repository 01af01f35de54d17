"""`grid table`: the spec's comparison tables from the store, beside the published numbers.

Each table is laid out once as header + text rows + notes (`layout`), then written as a rich
table, markdown, LaTeX (booktabs) or HTML (`results.tables.formats`); CSV is the tidy form instead,
one line per cell with mean, std, n, reference and difference as numbers.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.text import Text

from results.store.reader import StoreWarning
from results.tables import stat_text
from results.tables.aggregate import TableData, TableEntry, build_table
from results.tables.formats import (
    Layout,
    fmt_duration,
    fmt_number,
    fmt_value,
    to_csv,
    to_html,
    to_latex,
    to_markdown,
    to_rich,
)
from results.tables.stops import halving_note
from trainers.config import axis_label
from trainers.errors import GridError

FORMATS = ("rich", "markdown", "latex", "csv", "html")
METRIC_LABELS = {"acc": "accuracy (%)", "error": "error (%)", "loss": "loss"}
SHOW_LABELS = {
    "params": "params",
    "wall_s": "wall time",
    "epochs": "epochs",
    "images_per_s": "images/s",
}
# The papers' own approximate sizes for B and C (seeds/001 Table 1, seeds/002: ~1 M and
# ~1.3 M) disagree with their layer tables (0.89 M and 0.95 M); our models follow the tables.
PARAM_NOTES = {
    arch: stated
    for stated, archs in (("~1.0M", ("model_b", "strided_b")), ("~1.3M", ("model_c", "strided_c")))
    for arch in archs
}


def fmt_params(n: float) -> str:
    """1.37M, 12.3K: millions to compare with the papers' ~1.3 M."""
    if n >= 1e5:
        return f"{n / 1e6:.2f}M"
    return f"{n / 1e3:.1f}K" if n >= 1e3 else f"{n:.0f}"


def fmt_extra(name: str, value: float | None) -> str:
    if value is None:
        return "-"
    return {
        "params": fmt_params,
        "wall_s": fmt_duration,
        "images_per_s": lambda v: f"{v:,.0f}",
    }.get(name, lambda v: f"{v:g}")(value)


def hole_note(cell: TableEntry, over: str = "") -> str:
    """'best of 3/4 lr; 1 failed; 2 missing', or '' for a cell without holes."""
    parts = []
    if cell.over_total and cell.over_done + cell.over_stopped < cell.over_total:
        parts.append(f"best of {cell.over_done}/{cell.over_total} {over}".rstrip())
    parts += [f"{cell.failed} failed"] if cell.failed else []
    parts += [f"{cell.missing} missing"] if cell.missing else []
    return "; ".join(parts)


def fmt_cell(
    cell: TableEntry, metric: str, pick: str = "", over: str = "", say_n: bool = False
) -> str:
    """'12.34', '12.34 ± 0.56 (n=3)', 'div', 'stopped @25', 'failed' or 'missing' (+ ' @lr=0.05'
    for a pick), with the cell's holes: '9.00 (best of 1/2 lr; 1 failed)'. `say_n`: an entry
    of one run says so, '12.34 (n=1)' (in a table whose other entries have intervals)."""
    hole = hole_note(cell, over)
    if cell.status != "ok":  # the holes are news only where part of the cell finished
        text = {"diverged": "div"}.get(cell.status, cell.status)
        if cell.status == "stopped":  # a halving stopped it at that rung
            text += " @" + "/".join(str(r) for r in sorted(set(cell.stopped)))
        return text + (f" ({hole})" if hole and cell.over_done else "")
    text = fmt_number(metric, cell.mean)
    counts = [f"n={cell.n}"] if cell.n > 1 or cell.diverged or say_n else []
    counts += [f"{cell.diverged} div"] if cell.diverged else []
    counts += [hole] if hole else []
    if cell.n > 1:
        text += f" ± {fmt_number(metric, cell.std)}"
    return text + (f" ({', '.join(counts)})" if counts else "") + pick


def entry_name(table: dict, row: tuple, col: Any = None) -> str:
    """`arch=model_a, lr=0.05`: a table entry by its row (and column) values."""
    coords = list(zip(table["rows"], row, strict=True))
    coords += [(table["columns"], col)] if table["columns"] else []
    return ", ".join(f"{axis_label(p)}={fmt_value(v)}" for p, v in coords)


def fmt_reference(value: float | None, label: str | None, metric: str) -> str:
    if value is None:
        return ""
    return fmt_number(metric, value) + (f" ({label})" if label else "")


def metric_header(table: dict) -> str:
    split, _, kind = table["metric"].rpartition("_")
    at = " at best epoch" if table["at"] == "best" else ""
    return f"{split} {METRIC_LABELS[kind]}{at}"


def _body(data: TableData) -> tuple[list[str], list[list[str]], list[bool]]:
    t = data.table
    col_refs = {
        c: any(data.cells[(r, c)].reference is not None for r in data.rows) for c in data.columns
    }
    header = [axis_label(p) for p in t["rows"]]
    numeric = [False] * len(header)
    ci = stat_text.has_intervals(data)

    def add(name: str, is_number: bool = True) -> None:
        header.append(name)
        numeric.append(is_number)

    for c in data.columns:  # the same order as _row
        if t["columns"]:
            add(f"{axis_label(t['columns'])}={fmt_value(c)}")
        else:
            if t["best_by"]:
                add(axis_label(t["over"]), False)
            add(metric_header(t))
        if ci:
            add(stat_text.CI_HEADER)
        if col_refs[c]:
            add(t["reference_label"])
            add("Δ")
            if ci:
                add(f"{t['reference_label']} in CI", False)
        for h in stat_text.baseline_headers(t) if t.get("baseline") else []:
            add(h)
    if data.row_refs:
        add(t["reference_label"])
    for s in t["show"]:
        add(SHOW_LABELS[s])
    return header, [_row(data, r, col_refs) for r in data.rows], numeric


def _row(data: TableData, row: tuple, col_refs: dict) -> list[str]:
    t, metric = data.table, data.table["metric"]
    out = [fmt_value(v) for v in row]
    ci = stat_text.has_intervals(data)
    for c in data.columns:
        cell = data.cells[(row, c)]
        if not t["columns"] and t["best_by"]:
            out.append(fmt_value(cell.pick) if cell.pick is not None else "-")
        pick = (
            f" @{axis_label(t['over'])}={fmt_value(cell.pick)}"
            if t["columns"] and t["best_by"] and cell.pick is not None
            else ""
        )
        out.append(fmt_cell(cell, metric, pick, axis_label(t["over"]) if t["over"] else "", ci))
        out += [stat_text.interval_text(cell, metric)] if ci else []
        if col_refs[c]:
            out += [
                fmt_reference(cell.reference, cell.reference_label, metric),
                "" if cell.delta is None else f"{cell.delta:+.2f}",
            ]
            out += [stat_text.inside_text(cell)] if ci else []
        out += stat_text.comparison_texts(data, row, c) if t.get("baseline") else []
    if data.row_refs:
        out.append(fmt_reference(*data.row_refs.get(row, (None, None)), metric))
    out += [fmt_extra(s, data.extras[row].get(s)) for s in t["show"]]
    return out


def notes(data: TableData) -> list[str]:
    """Footnotes: the parameter-count caveat of the papers' B and C models, the legend."""
    out = []
    if "params" in data.table["show"]:
        for arch, params in data.params_by_arch.items():
            if arch in PARAM_NOTES:
                out.append(
                    f"{arch}: {fmt_params(params)} parameters, following the papers' "
                    f"layer tables; the papers state {PARAM_NOTES[arch]}, which "
                    f"disagrees with their own tables."
                )
    cells = data.cells.values()
    if any(c.n > 1 for c in cells):
        out.append("mean ± sample std over n runs (seeds and axes the table does not name).")
    if any(c.reference is not None for c in cells):
        out.append(f"Δ = ours - {data.table['reference_label']}.")
    out += stat_text.stat_notes(data, lambda row, col: entry_name(data.table, row, col))
    t = data.table
    if t["over"] and t["best_by"]:
        over = axis_label(t["over"])
        out.append(
            f"The best {over} is picked by {t['best_by']} among the {over}s whose every "
            f"run finished; a diverged run makes its {over} the worst."
        )
    if data.halving:
        out.append(halving_note(data))
    holes = sum(not c.complete for c in cells)
    if holes:
        out.append(
            f"Incomplete: {holes} of {len(data.cells)} cells have failed, missing or "
            f"unfinished runs; rerun `grid launch` to fill them (`grid table --strict` "
            f"exits 1)."
        )
    if leaks_test(data):
        out.append(
            "Warning: no validation set (dataset.val_size 0), so the best epoch or "
            "value is chosen by test accuracy: the reported number is optimistic."
        )
    return out


def full_view(table: dict) -> dict:
    """A table with its `over` axis as the columns, so every value shows (a number, `div`
    or `stopped @25`) instead of the pick; the old columns axis joins the rows."""
    if not table["over"]:
        return table
    rows = table["rows"] + ([table["columns"]] if table["columns"] else [])
    return {
        **table,
        "name": f"{table['name']}-full",
        "rows": rows,
        "columns": table["over"],
        "over": None,
        "best_by": None,
        "reference": [],
        "title": f"{table['title']}: every {axis_label(table['over'])}",
    }


def leaks_test(data: TableData) -> bool:
    """The table picks on the test set: `at: best` or a pick, with no validation set."""
    t = data.table
    picks = t["at"] == "best" or (t["over"] and t["best_by"])
    return bool(picks) and bool(data.no_val)


def has_holes(datas: list[TableData]) -> bool:
    """Whether any table has a failed, missing or unfinished cell (`--strict`)."""
    return any(not c.complete for d in datas for c in d.cells.values())


def layout(data: TableData) -> Layout:
    header, rows, numeric = _body(data)
    return Layout(
        title=data.table["title"], header=header, rows=rows, numeric=numeric, notes=notes(data)
    )


def build_tables(
    spec: Any, trials: list[dict], expected: list[dict] | None = None, full: bool = False
) -> list[TableData]:
    """Every table of `spec` from trial rows. `expected`: the flat configs (with `key`) of
    the spec's cells, from the caller that can expand the spec (see `build_table`);
    `full`: each table in its full view (`full_view`)."""
    axes = getattr(spec, "axes", {}) or {}
    return [build_table(full_view(t) if full else t, trials, expected, axes) for t in spec.tables]


def render(datas: list[TableData], fmt: str) -> str:
    """Every table in one text format (not rich)."""
    if fmt == "csv":
        return to_csv(datas)
    writers = {
        "markdown": lambda d: to_markdown(layout(d)),
        "html": lambda d: to_html(layout(d)),
        "latex": lambda d: to_latex(layout(d), d.table["name"]),
    }
    return "\n".join(writers[fmt](d) for d in datas)


@contextlib.contextmanager
def skipped_files(console: Console) -> Iterator[None]:
    """Report the result files a store read skipped (corrupt, foreign) on the console."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", StoreWarning)
        yield
    for w in caught:
        if issubclass(w.category, StoreWarning):
            console.print(Text(f"warning: {w.message}", style="yellow"))
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)


def read_rows(store: Any, grid: str, console: Console) -> list[dict]:
    """The grid's trial rows, as dicts."""
    with skipped_files(console):
        return store.read_trials(grid).to_pylist()


def _write(out: str | Path, text: str) -> None:
    try:
        Path(out).write_text(text, encoding="utf-8")
    except OSError as e:
        raise GridError(f"--out {out}: cannot write: {e.strerror or e}") from None


def table_command(
    spec: Any,
    store: Any,
    fmt: str = "rich",
    out: str | Path | None = None,
    console: Console | None = None,
    expected: list[dict] | None = None,
    strict: bool = False,
    full: bool = False,
) -> int:
    """Print (or write to `out`) every table of `spec` from `store`; 0 even with no results,
    unless `strict`: then 1 when a table has a hole. `expected`: the spec's cells as
    `build_tables` takes them (None: every row found)."""
    if fmt not in FORMATS:
        raise GridError(f"--format {fmt}: choose from {', '.join(FORMATS)}")
    console = console or Console()
    if not spec.tables:
        console.print(Text(f"{spec.name} defines no tables (add a `tables:` section to the spec)"))
        return 0
    rows = read_rows(store, spec.name, console)
    if not rows:
        console.print(Text(f"no results for grid {spec.name} in {store}"))
    datas = build_tables(spec, rows, expected, full)
    if fmt == "rich":
        sink = console if out is None else Console(file=io.StringIO(), width=160, no_color=True)
        for i, d in enumerate(datas):
            if i:
                sink.print()
            sink.print(to_rich(layout(d)))
        text = None if out is None else sink.file.getvalue()
    else:
        text = render(datas, fmt)
        if out is None:
            console.out(text, highlight=False, end="")
    if out is not None:
        _write(out, text)
        console.print(Text(f"wrote {len(datas)} table(s) to {out}"))
    if strict and has_holes(datas):
        console.print(
            Text(
                "--strict: the tables have holes (failed, missing or unfinished cells); exit 1",
                style="red",
            )
        )
        return 1
    return 0
