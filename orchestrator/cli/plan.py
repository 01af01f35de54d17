"""`grid plan`: a spec's cells and keys, the work in epochs, the halving's plan, and with
`--estimate` the device-hours measured on this machine (`orchestrator/planning/estimate.py`)."""

from __future__ import annotations

import json

from rich.console import Console
from rich.table import Table

from orchestrator.cli.status import fmt_axis
from orchestrator.halving.rule import halving_plan, halving_warnings, plan_lines
from orchestrator.planning.estimate import describe, estimate, hours
from orchestrator.spec.expand import expand
from orchestrator.spec.tables import leak_warnings
from trainers.config import axis_label
from trainers.errors import GridError


def plan_command(
    spec,
    as_json: bool = False,
    estimate: bool = False,
    device: str = "auto",
    slots: int | None = None,
    console: Console | None = None,
) -> int:
    """Print the plan (a table, or JSON with `as_json`); 0."""
    cells = expand(spec)
    configs = [t.config for t in cells]
    warnings = leak_warnings(spec.tables, configs) + halving_warnings(spec.halving, configs)
    est = _estimate(spec, cells, device, slots) if estimate else None
    if as_json:
        out = {
            "grid": spec.name,
            "count": len(cells),
            "warnings": warnings,
            "cells": [{"key": t.key, "params": t.params, "config": t.config} for t in cells],
        }
        if spec.halving:
            out["halving"] = halving_plan(spec.halving, cells)
        if est is not None:
            keys = ("device", "total_s", "slots", "wall_s", "cells", "memory")
            out["estimate"] = {k: est[k] for k in keys}
        print(json.dumps(out, indent=1))
        return 0
    console = console or Console()
    console.print(_cells_table(spec, cells, est))
    epochs = sum(t.config["train"]["epochs"] for t in cells)
    console.print(
        f"{len(cells)} cells x epochs = [bold]{epochs}[/bold] epochs of training "
        f"({spec.resources['pack']} cell(s) per cell process)"
    )
    if spec.stage is not None:  # a stage: its parent spec and pick are checked here too
        from orchestrator.stages.parents import parent_spec

        stage, parent = spec.stage, parent_spec(spec)
        pick = f", the pick of its table {stage['pick']}" if stage["pick"] else ""
        console.print(
            f"stage: cells with body finetune or frozen start from a cell of {parent.name} "
            f"({parent.path}) with the same {', '.join(map(axis_label, stage['match'])) or '-'}"
            f"{pick}; resolved when `grid launch` starts (`grid status` shows them)",
            highlight=False,
        )
    for line in plan_lines(spec.halving, cells) + (describe(est) if est else []):
        console.print(line, highlight=False)
    for w in warnings:
        console.print(f"[yellow]warning: {w}[/]", highlight=False)
    return 0


def _cells_table(spec, cells, est: dict | None) -> Table:
    axes = list(cells[0].params)
    table = Table(title=f"{spec.name}: {len(cells)} cells", title_justify="left")
    table.add_column("#", justify="right", style="dim")
    for a in axes:
        table.add_column(axis_label(a))
    table.add_column("key", style="cyan")
    seconds = {c["key"]: c["seconds"] for c in est["cells"]} if est else {}
    if est:
        table.add_column("estimate", justify="right")
    for i, t in enumerate(cells, 1):
        extra = [hours(seconds[t.key])] if est else []
        table.add_row(str(i), *[fmt_axis(t.params[a]) for a in axes], t.key, *extra)
    return table


def _estimate(spec, cells, device: str, slots: int | None) -> dict:
    from trainers.config import device as check_device

    if device != "auto" and check_device(device)[0] is not None:
        raise GridError(f"--device {device}: expected auto, cpu, cuda or cuda:N")
    return estimate(spec, cells, device, slots)
