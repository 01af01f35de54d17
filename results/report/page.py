"""`grid report`: one static HTML page per grid, the page a researcher shares.

It holds each table of the spec as `grid table` gives it (reference, Δ, 95 % intervals,
baseline comparisons), the entries whose published number lies outside our interval, the
table as intervals (error bars), the learning curves as small multiples and the
lr-sensitivity figure per table, the grid's status (done,
diverged, failed with the errors, missing) and where the results came from. The page is one
file with no script and no network (`results.report.html`). `watch` rewrites it while a
launch runs; the page then reloads itself in the browser, so no server is needed.

Nothing here imports orchestrator: the caller passes the spec and its expected cells.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.text import Text

from results.figures.plots import figures, load_results
from results.figures.style import paper_style, png_bytes
from results.report.html import chips, definitions, esc, figure, page, simple_table
from results.report.probes import probe_section
from results.report.provenance import provenance_items
from results.tables.aggregate import build_table
from results.tables.build import (
    axis_label,
    entry_name,
    fmt_reference,
    fmt_value,
    full_view,
    layout,
    metric_header,
)
from results.tables.formats import fmt_number, to_html

STATUS_ORDER = ("done", "stopped", "diverged", "failed", "missing")
STORE_STATUS = {
    "completed": "done",
    "stopped": "stopped",
    "diverged": "diverged",
    "failed": "failed",
}


def cell_label(cell: dict, axes: list[str]) -> str:
    """`arch=model_a, lr=0.05`: a cell by its values on the grid's axes."""
    return ", ".join(f"{axis_label(p)}={fmt_value(cell.get(p))}" for p in axes)


def grid_status(
    trials: list[dict], expected: list[dict] | None, axes: list[str]
) -> dict[str, list[dict]]:
    """The cells by status (done, stopped, diverged, failed, missing), each as {key,
    label, error, epochs, stopped_at}; without `expected`, only the cells found."""
    found = {t["key"]: t for t in trials}
    cells = expected if expected is not None else trials
    out: dict[str, list[dict]] = {s: [] for s in STATUS_ORDER}
    for cell in cells:
        row = found.get(cell["key"])
        status = STORE_STATUS.get(row.get("status"), "failed") if row else "missing"
        out[status].append(
            {
                "key": cell["key"],
                "label": cell_label(cell, axes),
                "error": (row or {}).get("error") or "",
                "epochs": (row or {}).get("epochs"),
                "stopped_at": (row or {}).get("stopped_at"),
            }
        )
    return out


def status_section(status: dict[str, list[dict]]) -> str:
    """Counts, a bar, and the cells that did not complete, failed ones with their errors."""
    counts = {s: len(status[s]) for s in STATUS_ORDER}
    parts = [
        '<section id="status"><h2>Status</h2>',
        f"<p>{sum(counts.values())} cells.</p>",
        chips(counts),
    ]
    if status["failed"]:
        parts.append(
            "<h3>Failed</h3>"
            + simple_table(
                ["cell", "key", "error"],
                [
                    [c["label"], c["key"], f'<pre class="error">{esc(c["error"])}</pre>']
                    for c in status["failed"]
                ],
                raw_last=True,
            )
        )
    if status["stopped"]:
        parts.append(
            "<h3>Stopped by the halving</h3>"
            + simple_table(
                ["cell", "key", "stopped at rung (epoch)"],
                [[c["label"], c["key"], fmt_value(c["stopped_at"])] for c in status["stopped"]],
            )
        )
    if status["diverged"]:
        parts.append(
            "<h3>Diverged</h3>"
            + simple_table(
                ["cell", "key", "epochs before the loss went NaN/inf"],
                [[c["label"], c["key"], fmt_value(c["epochs"])] for c in status["diverged"]],
            )
        )
    if status["missing"]:
        rows = simple_table(["cell", "key"], [[c["label"], c["key"]] for c in status["missing"]])
        parts.append(
            f"<h3>Missing</h3><details{' open' if len(status['missing']) <= 8 else ''}>"
            f"<summary>{len(status['missing'])} cells have no result yet</summary>"
            f"{rows}</details>"
        )
    return "\n".join(parts + ["</section>"])


CAPTIONS = {
    "intervals": "The table as intervals: each entry's mean over its runs with the 95 % "
    "t-interval as an error bar{ref}; an entry of one run (n = 1) is a hollow marker with no "
    "bar.",
    "panels": "Learning curves, one panel per table row: {metric} per epoch (solid) and the "
    "training {kind} (dashed), one line per {vary} and seed{pick}. "
    "A cross ends a diverged run.",
    "lr": "Sensitivity to the learning rate: {header} against the learning rate, one line "
    "per table row, mean ± std over seeds{ring}.",
}


def _caption(kind: str, table: dict) -> str:
    split, _, metric_kind = table["metric"].rpartition("_")
    metric_kind = {"acc": "accuracy"}.get(metric_kind, metric_kind)
    metric = f"{split} {metric_kind}"
    best = table["best_by"] and table["over"]
    return CAPTIONS[kind].format(
        metric=metric,
        kind=metric_kind,
        header=metric_header(table),
        vary=axis_label(table["over"] or table["columns"] or "train.lr"),
        pick=f"; bold: the {axis_label(table['over'])} picked by {table['best_by']}"
        if best
        else "",
        ring=f"; ringed: the lr picked by {table['best_by']}" if best else "",
        ref=f", and the published number ({table['reference_label']}) as a diamond"
        if table["reference"]
        else "",
    )


def outside_section(data: Any) -> str:
    """The entries whose published number lies outside our 95 % interval, as a list under
    the table ('' when every reference is inside, or none can be judged)."""
    outside = [
        (coord, cell) for coord, cell in data.cells.items() if cell.reference_inside is False
    ]
    if not outside:
        return ""
    metric, label = data.table["metric"], data.table["reference_label"]
    rows = [
        [
            entry_name(data.table, row, col),
            f"{fmt_number(metric, cell.mean)} (n={cell.n})",
            f"[{fmt_number(metric, cell.ci[0])}, {fmt_number(metric, cell.ci[1])}]",
            fmt_reference(cell.reference, cell.reference_label, metric),
            f"{cell.delta:+.2f}",
        ]
        for (row, col), cell in outside
    ]
    return f'<h3 class="outside">{esc(label)} outside our 95% interval</h3>' + simple_table(
        ["entry", "ours", "95% CI", label, "Δ"], rows, cls="outside"
    )


def figure_key(table: dict) -> tuple:
    """What a table's figures depend on: two tables with the same key draw the same figures
    (e.g. one grid against two papers' numbers)."""
    return (
        tuple(table["rows"]),
        table["columns"],
        table["metric"],
        table["at"],
        table["best_by"],
        table["over"],
    )


def table_section(
    spec: Any,
    table: dict,
    trials: list[dict],
    epochs: dict[str, list[dict]],
    expected: list[dict] | None,
    same_as: str | None = None,
) -> str:
    """One table of the spec: as `grid table` gives it, then its figures (or, with
    `same_as`, a pointer to the table that already shows them)."""
    data = build_table(table, trials, expected, getattr(spec, "axes", {}) or {})
    name = data.table["name"]
    parts = [
        f'<section id="table-{esc(name)}"><h2>Table <code>{esc(name)}</code></h2>',
        f'<div class="scroll">{to_html(layout(data))}</div>',
        outside_section(data),
    ]
    if data.halving and table["over"]:  # every value of `over`, stopped ones with their rung
        full = build_table(full_view(table), trials, expected, getattr(spec, "axes", {}) or {})
        parts.append(f'<div class="scroll">{to_html(layout(full))}</div>')
    if same_as is not None:
        parts.append(
            f'<p class="muted">Its figures are those of <a href="#table-{esc(same_as)}">'
            f"<code>{esc(same_as)}</code></a>: the same cells, metric and pick.</p>"
        )
        return "\n".join(parts + ["</section>"])
    with paper_style():
        figs = figures(data, trials, epochs, "two", titled=False)
        for kind in ("intervals", "panels", "lr"):
            if kind in figs:
                parts.append(
                    figure(
                        png_bytes(figs[kind]), f"{name} {kind}", _caption(kind, data.table), kind
                    )
                )
    if not figs:
        parts.append('<p class="muted">No learning curves yet.</p>')
    return "\n".join(parts + ["</section>"])


def render_report(
    spec: Any,
    trials: list[dict],
    epochs: dict[str, list[dict]],
    expected: list[dict] | None,
    refresh: float | None = None,
    now: datetime | None = None,
) -> tuple[str, bool]:
    """The page's HTML, and whether the grid is finished (every expected cell completed,
    stopped or diverged: nothing left to change)."""
    now = now or datetime.now(timezone.utc)
    axes = list(getattr(spec, "axes", {}) or {})
    status = grid_status(trials, expected, axes)
    finished = not status["missing"] and not status["failed"]
    tables = getattr(spec, "tables", []) or []
    nav = "".join(f'<a href="#table-{esc(t["name"])}">{esc(t["name"])}</a>' for t in tables)
    head = [
        f"<header><h1>{esc(spec.name)}</h1>",
        f"<p>{esc(getattr(spec, 'description', '') or '')}</p>",
        f'<p class="muted">spec <code>{esc(str(getattr(spec, "path", "")))}</code> · '
        f"report of {now.strftime('%Y-%m-%d %H:%M:%S')} UTC</p>",
    ]
    if refresh and not finished:
        head.append(
            f'<p class="live">Live: rewritten every {refresh:g} s while the grid '
            f"runs; this page reloads itself.</p>"
        )
    head.append(
        f'<nav><a href="#status">status</a>{nav}<a href="#provenance">provenance</a></nav></header>'
    )
    body = head + [status_section(status)]
    drawn: dict[tuple, str] = {}
    for t in tables:
        body.append(table_section(spec, t, trials, epochs, expected, drawn.get(figure_key(t))))
        drawn.setdefault(figure_key(t), t["name"])
    if not tables:
        body.append(
            '<p class="muted">The spec defines no tables (add a <code>tables:</code> section).</p>'
        )
    body.append(probe_section(trials, epochs, lambda row: cell_label(row, axes) or row["key"]))
    body.append(
        '<section id="provenance"><h2>Provenance</h2>'
        f"{definitions(provenance_items(spec, trials, now))}</section>"
    )
    body.append(
        "<footer>Written by <code>grid report</code>: one file, no network. Paper "
        "figures as PDF or SVG: <code>grid plot SPEC --format pdf --out DIR</code>."
        "</footer>"
    )
    return page(
        f"grid report: {spec.name}", "\n".join(body), refresh if refresh and not finished else None
    ), finished


def write_atomic(path: Path, text: str) -> None:
    """Write `text` to `path` through a temp file and a rename: a browser reloading the page
    never reads half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "x", encoding="utf-8") as f:  # "x": the umask's mode, never clobbered
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_report(
    spec: Any,
    store: Any,
    out_dir: str | Path,
    expected: list[dict] | None,
    console: Console,
    refresh: float | None = None,
) -> tuple[Path, bool]:
    """Read the store, write `<out_dir>/<grid>.html`; the path and whether the grid is
    finished. An unwritable folder raises OSError (the CLI names the flag)."""
    trials, epochs = load_results(spec, store, expected, console)
    text, finished = render_report(spec, trials, epochs, expected, refresh)
    path = Path(out_dir) / f"{spec.name}.html"
    write_atomic(path, text)
    return path, finished


def watch(
    step: Callable[[bool], bool],
    every: float,
    wait: Callable[[float], Any] | None = None,
    rounds: int | None = None,
) -> int:
    """Call `step(last)` now and every `every` seconds until it returns True (finished) or
    after `rounds` calls; a Ctrl-C ends with one last call. Returns the number of calls.
    `wait` (default: time.sleep, looked up at call time) is injectable: tests never sleep."""
    wait = wait or time.sleep
    calls = 0
    try:
        while True:
            last = rounds is not None and calls + 1 >= rounds
            calls += 1
            if step(last) or last:
                return calls
            wait(every)
    except KeyboardInterrupt:
        step(True)
        return calls + 1


def report_command(
    spec: Any,
    store: Any,
    out_dir: str | Path,
    expected: list[dict] | None,
    console: Console | None = None,
    every: float | None = None,
    rounds: int | None = None,
    wait: Callable[[float], Any] | None = None,
) -> int:
    """Write the report once, or with `every` rewrite it until the grid is finished (or
    `rounds` writes, or Ctrl-C); 0."""
    console = console or Console()

    def step(last: bool) -> bool:
        path, finished = write_report(
            spec, store, out_dir, expected, console, refresh=None if last or not every else every
        )
        # a store with no row of the grid yet (nothing launched, or another --store) is
        # not a grid in progress; the statuses are the ones the page just read
        state = "finished" if finished else "in progress"
        if not finished and not store.statuses(spec.name):
            state = "no results yet"
        console.print(Text(f"wrote {path} ({state}, {datetime.now():%H:%M:%S})"), soft_wrap=True)
        return finished

    if every is None:
        step(True)
    else:
        watch(step, every, wait, rounds)
    return 0
