"""What a halving stopped, as the tables see it (docs/spec.md#halving): a `stopped` run is
finished but never a pick candidate, and the epochs it did not train are the saving."""

from __future__ import annotations

from typing import Any

from results.store import schema
from trainers.config import axis_label


def stopped_at(trial: dict) -> int:
    """The rung a halving stopped a trial at (its epochs, for a row without the column)."""
    return int(trial.get("stopped_at") or trial.get("epochs") or 0)


def stopped_values(trials: list[dict], over: str, expected: dict[Any, int] | None) -> int:
    """How many `over` values a halving stopped: every trial finished, one or more stopped."""
    groups: dict[Any, list[dict]] = {}
    for t in trials:
        groups.setdefault(t.get(over), []).append(t)
    return sum(
        all(t.get("status") in schema.FINISHED for t in g)
        and len(g) >= (expected or {}).get(v, 0)
        and any(t.get("status") == "stopped" for t in g)
        for v, g in groups.items()
    )


def halving_summary(trials: list[dict]) -> dict | None:
    """{stopped, runs, rungs, trained, full}: the finished runs a halving stopped and at
    which rungs, and the epochs they trained against the epochs of the full grid; None
    when no run was stopped."""
    runs = [t for t in trials if t.get("status") in schema.FINISHED]
    halted = [t for t in runs if t.get("status") == "stopped"]
    if not halted:
        return None
    return {
        "stopped": len(halted),
        "runs": len(runs),
        "rungs": sorted({stopped_at(t) for t in halted}),
        "trained": sum(t.get("epochs") or 0 for t in runs),
        "full": sum(t.get("train.epochs") or t.get("epochs") or 0 for t in runs),
    }


def halving_note(data) -> str:
    """A table's note (`results.tables.aggregate.TableData`): what the halving stopped and
    saved, and what the pick was made among."""
    h, t = data.halving, data.table
    rungs = ", ".join(str(r) for r in h["rungs"])
    saved = 1 - h["trained"] / h["full"] if h["full"] else 0.0
    head = (
        f"Successive halving stopped {h['stopped']} of {h['runs']} runs at a rung (epoch "
        f"{rungs}): {h['trained']} of {h['full']} epochs trained, {saved:.0%} saved "
        f"against the full grid."
    )
    if not t["over"]:  # the full view: every value is a column
        return head + " A stopped run shows the rung it stopped at."
    over = axis_label(t["over"])
    return (
        f"{head} Each row's {over} is picked among the runs that reached their last "
        f"epoch; `grid table --full` shows every {over}."
    )
