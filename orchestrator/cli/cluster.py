"""`grid status --cluster`: every grid launched on the cluster now, as its arbiter knows it
(`orchestrator/execution/arbiter.py`): owner, weight, priority, slots held (and its share),
cells done and left, and the estimated finish."""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone

from rich.console import Console
from rich.table import Table

from orchestrator.planning.estimate import hours

FIELDS = ("grid", "owner", "weight", "priority", "held", "allowed", "demand", "yielded")


def rows(launches: list[dict]) -> list[dict]:
    """The arbiter's reports as status rows: the fields above, `cells_done`, `cells_left`,
    `finish` (ISO time, or None before a cell finished), `pool` and `store`."""
    out = []
    for e in launches:
        finish = e.get("finish")
        out.append(
            {
                **{k: e.get(k) for k in FIELDS},
                "cells_done": e.get("cells_done"),
                "cells_left": e.get("cells_left"),
                "finish": None
                if finish is None
                else datetime.fromtimestamp(finish, timezone.utc).isoformat(timespec="seconds"),
                "pool": e.get("pool"),
                "store": e.get("store"),
            }
        )
    return out


def cluster_command(
    launches: list[dict] | None, as_json: bool = False, console: Console | None = None
) -> int:
    """Print the cluster's grids (or JSON: a list of rows); always 0."""
    found = rows(launches or [])
    if as_json:
        print(json.dumps(found, indent=1))
        return 0
    console = console or Console()
    if not found:
        console.print("no grid is running on this cluster")
        return 0
    table = Table(title="grids on this cluster", title_justify="left")
    for name in ("grid", "owner", "weight", "priority", "slots (share)", "done", "left"):
        table.add_column(name, justify="left" if name in ("grid", "owner") else "right")
    table.add_column("finish (est.)")
    now = time.time()
    for r, e in zip(found, launches, strict=True):
        finish = e.get("finish")
        when = "-" if finish is None else f"{r['finish']} (in {hours(max(0.0, finish - now))})"
        table.add_row(
            r["grid"],
            r["owner"],
            f"{r['weight']:g}",
            str(r["priority"]),
            f"{r['held']} ({r['allowed']} {r['pool']})",
            str(r["cells_done"]),
            str(r["cells_left"]),
            when,
        )
    console.print(table)
    return 0
