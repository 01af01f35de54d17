"""`grid status`: each cell's status from the store (no Ray), its last failure, and the launch
that holds the grid now, if one does."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

from rich.console import Console
from rich.table import Table
from rich.text import Text

from orchestrator.spec.expand import expand
from results.store.lease import describe, read_holder, why_stale
from trainers.config import axis_label

COLOURS = {
    "completed": "green",
    "stopped": "blue",
    "diverged": "yellow",
    "failed": "red",
    "missing": "dim",
    # a stage's cell whose parent was retrained (orchestrator/stages/parents.py)
    "stale": "magenta",
}


def fmt_axis(v) -> str:
    """An axis value in a plan or status table: 0.05, not 0.05000000000000000277."""
    return f"{v:g}" if isinstance(v, float) else str(v)


def cell_rows(spec, store) -> list[dict]:
    """{key, status, params, error} per cell; `error` is the last failed attempt's (also of
    a finished cell whose --force rerun failed: its result is kept)."""
    # The cells are expanded while the store is read: a cold read of many rows waits on
    # its reading processes (~1 s of 10,000 cells' expansion then costs nothing).
    with ThreadPoolExecutor(1) as pool:
        expanding = pool.submit(expand, spec)
        found = store.statuses(spec.name)
        cells = expanding.result()
    if spec.stage is not None:  # a stage: finished cells whose parent run changed are stale
        from orchestrator.stages import parents as stages

        res = stages.resolve(spec, cells, store)
        found = {**found, **dict.fromkeys(stages.stale_keys(spec, res.refs, store), "stale")}
    failures = {r["key"]: r for r in store.read_failures(spec.name, ["error"]).to_pylist()}
    rows = []
    for t in cells:
        fail = failures.get(t.key)
        error = (fail.get("error") or "failed").splitlines()[0] if fail else None
        rows.append(
            {
                "key": t.key,
                "status": found.get(t.key, "missing"),
                "params": t.params,
                "error": error,
            }
        )
    return rows


def launch_line(spec, store, now: float | None = None) -> tuple[dict | None, str | None]:
    """(the lease's holder, a line about it) for the launch that holds the grid, if any."""
    holder = read_holder(store, spec.name)
    if holder is None:
        return None, None
    now = time.time() if now is None else now
    stale = why_stale(holder, now)
    if stale:
        return holder, (
            f"a launch by {describe(holder, now)} stopped without releasing the "
            f"grid ({stale}); the next `grid launch` takes it over"
        )
    return holder, f"running: a launch by {describe(holder, now)}"


SHOWN = 200  # a table of more cells lists only the unfinished ones (`--all`: every cell)


def status_command(
    spec, store, as_json: bool = False, console: Console | None = None, all_cells: bool = False
) -> int:
    """Print the per-cell table, the counts and what the store holds (or JSON); always 0.
    A grid of more than SHOWN cells lists only its cells without a result (failed, missing),
    the first SHOWN of them, unless `all_cells`: 10,000 rows are read by no one, and take
    rich half a minute to lay out."""
    if as_json:  # a list of cells, as before the lease existed: scripts read it
        print(json.dumps(cell_rows(spec, store), indent=1))
        return 0
    usage = usage_line(spec, store)  # first: where it lists the grid, the rows reuse that
    rows = cell_rows(spec, store)
    _, line = launch_line(spec, store)
    console = console or Console()
    if line:
        console.print(Text(line, style="bold"))
    table = Table(title=f"{spec.name}: status", title_justify="left")
    axes = list(rows[0]["params"])
    for a in axes:
        table.add_column(axis_label(a))
    table.add_column("key", style="cyan")
    table.add_column("status")
    table.add_column("last failure")
    shown = rows
    if not all_cells and len(rows) > SHOWN:
        shown = [r for r in rows if r["status"] not in ("completed", "diverged", "stopped")]
    for r in shown[: len(shown) if all_cells else SHOWN]:
        note = r["error"] or ""
        if note and r["status"] != "failed":
            note = f"rerun failed (result kept): {note}"
        table.add_row(
            *[fmt_axis(r["params"][a]) for a in axes],
            r["key"],
            f"[{COLOURS[r['status']]}]{r['status']}[/]",
            Text(note, style="red"),
        )
    if shown:
        console.print(table)
    if len(shown) != len(rows) or len(shown) > SHOWN and not all_cells:
        console.print(
            f"({min(len(shown), SHOWN)} of {len(rows)} cells listed: "
            f"{'the first ' if len(shown) > SHOWN else ''}cells without a result; "
            "--all lists every cell)"
        )
    counts = {s: sum(r["status"] == s for r in rows) for s in COLOURS}
    console.print(
        ", ".join(
            f"{n} {s}"
            for s, n in counts.items()
            if n or s not in ("stopped", "stale") or (s == "stopped" and spec.halving)
        )
    )
    if spec.stage is not None:
        _parents_line(spec, store, console)
    if counts["stale"]:
        console.print(
            f"{counts['stale']} stale cells: their parent was retrained; `grid launch` reruns them"
        )
    console.print(usage, soft_wrap=True)
    return 0


def usage_line(spec, store) -> str:
    """What the store holds for the grid: as the last launch counted it (one GET), else
    counted now (a listing of the whole grid, curves included: N/500 requests on S3)."""
    from results.store.prune import recorded_usage

    found = recorded_usage(store, spec.name)
    if found is None:
        objects, size = store.usage(spec.name)
        when = ""
    else:
        objects, size = found["objects"], found["bytes"]
        when = f" (counted by the last launch, {found['counted'].replace('+00:00', 'Z')})"
    return f"store: {objects:,} objects, {_bytes(size)} under {store.uri}/{spec.name}{when}"


def _parents_line(spec, store, console: Console) -> None:
    """A stage: the parent cells its cells still wait for, and the command that trains them."""
    from orchestrator.stages import parents as stages

    res = stages.resolve(spec, expand(spec), store)
    if res.needed:
        console.print(
            f"waiting for {len(res.needed)} parent cells of {res.parent.name} (no finished "
            f"result with kept weights): grid launch {spec.path} --with-parents"
            f"{' --smoke' if spec.forced else ''} --store {store.uri}",
            soft_wrap=True,
        )


def _bytes(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1000
    return f"{n} B"
