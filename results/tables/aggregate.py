"""From trial rows to the cells of one comparison table.

A table (a normalised `tables:` entry of the spec) groups trials by its `rows` axes and its
`columns` axis. Within each group it may first pick the value of `over` whose mean `best_by`
is best (e.g. the best lr by validation accuracy); the trials left (several seeds, or any axis
the table does not name) are averaged: mean, sample std (none for one trial) and n, and the 95 %
t-interval (`results.tables.inference`). A cell with
no completed trial is kept as missing, or as diverged when every trial of it diverged.

No table hides a hole. The pick is made only among the `over` values whose every expected
trial (each seed) finished, completed or diverged; a value with a diverged trial counts as
the worst (it loses to any value that trained). A cell whose `over` values are not all
finished says so (`best of 3/4 lr; 1 failed`), and so does a cell with a failed or missing
trial: `TableEntry.holes` counts them, and `grid table --strict` exits 1 on any.

A halving (docs/spec.md#halving) stops some runs at a rung: `stopped` is finished but not a
candidate, so the pick is among the `over` values that reached the last epoch, and a value
that was stopped is no hole (`over_stopped`); a table entry of stopped runs alone (the full
view, one column per `over` value) has the status `stopped`.
Published reference numbers are matched to cells and the difference is ours - reference.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import statistics
from collections.abc import Callable
from typing import Any

from results.store import schema
from results.tables.inference import attach_statistics
from results.tables.references import attach_references
from results.tables.stops import halving_summary, stopped_at, stopped_values

SHOW_COLUMNS = ("params", "wall_s", "epochs", "images_per_s")


@dataclasses.dataclass
class TableEntry:
    """One entry of a table (a row x column position; not a grid cell, which is one
    config): its statistics over the trials averaged, the `over` pick, the published
    number it is compared with and the difference."""

    mean: float | None = None
    std: float | None = None
    n: int = 0
    diverged: int = 0
    failed: int = 0
    pick: Any = None
    keys: list[str] = dataclasses.field(default_factory=list)
    reference: float | None = None
    reference_label: str | None = None
    delta: float | None = None
    over_total: int = 0  # the `over` values the grid defines for this cell
    over_done: int = 0  # of those, the ones whose every trial finished (pick candidates)
    over_stopped: int = 0  # of those, the ones a halving stopped (finished, no candidate)
    missing: int = 0  # expected trials with no row at all (not run yet)
    stopped: list[int] = dataclasses.field(default_factory=list)  # rungs of stopped trials
    samples: list[tuple[Any, float]] = dataclasses.field(default_factory=list)  # (seed, value)
    run_s: float | None = None  # mean wall time of a completed run (what a seed more costs)
    ci: tuple[float, float] | None = None  # the 95 % t-interval of the mean (n >= 2)

    @property
    def reference_inside(self) -> bool | None:
        """Whether the published number lies in our 95 % interval; None without either."""
        if self.ci is None or self.reference is None:
            return None
        return self.ci[0] <= self.reference <= self.ci[1]

    @property
    def holes(self) -> int:
        """Failed or missing trials, and `over` values not finished: what --strict refuses."""
        return self.failed + self.missing + (self.over_total - self.over_done - self.over_stopped)

    @property
    def status(self) -> str:
        """ok (has a mean), diverged (a trial diverged, none completed), stopped (a halving
        stopped its trials), failed (a trial failed, none finished) or missing (no trial
        ran)."""
        if self.n:
            return "ok"
        if self.diverged:
            return "diverged"
        if self.stopped and not self.failed:
            return "stopped"
        return "failed" if self.failed else "missing"

    @property
    def complete(self) -> bool:
        """Nothing left to run: no hole, and a mean, or only stopped trials."""
        return not self.holes and self.status in ("ok", "stopped")


@dataclasses.dataclass
class TableData:
    """A table's cells in display order; `columns` is [None] for a table without columns."""

    table: dict
    rows: list[tuple]
    columns: list[Any]
    cells: dict[tuple[tuple, Any], TableEntry]
    row_refs: dict[tuple, tuple[float, str | None]]  # row-wide references of column tables
    extras: dict[tuple, dict[str, float | None]]  # the `show` columns, per row
    params_by_arch: dict[str, float]
    no_val: bool = False  # the table's trials had no validation set (val_size 0)
    halving: dict | None = None  # what a halving stopped, and the epochs it saved
    # each compared entry's test against its baseline row (results.tables.inference)
    comparisons: dict[tuple[tuple, Any], Any] = dataclasses.field(default_factory=dict)


def metric_value(row: dict, metric: str, at: str = "final") -> float | None:
    """`metric` of a trial row in the table's unit: accuracy and error in percent
    (error = 100 - accuracy), losses as they are; None when not measured."""
    split, _, kind = metric.rpartition("_")
    value = row.get(f"{at}_{split}_{'loss' if kind == 'loss' else 'acc'}")
    if value is None or not math.isfinite(value):
        return None
    if kind == "acc":
        return 100.0 * value
    return 100.0 * (1.0 - value) if kind == "error" else value


def higher_is_better(metric: str) -> bool:
    return metric.endswith("_acc")


def _stats(values: list[float]) -> tuple[float | None, float | None]:
    """Mean and sample std; no std for one value (n = 1 has no spread to show)."""
    if not values:
        return None, None
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def summarise(trials: list[dict], metric: str, at: str) -> TableEntry:
    """Mean, std and n of the completed trials' metric, each value with its seed, the mean
    wall time of a run; counts of diverged and failed."""
    done = [
        (t, v)
        for t in trials
        if t.get("status") == "completed"
        if (v := metric_value(t, metric, at)) is not None
    ]
    values = [v for _, v in done]
    mean, std = _stats(values)
    walls = [t["wall_s"] for t, _ in done if t.get("wall_s") is not None]
    return TableEntry(
        mean=mean,
        std=std,
        n=len(values),
        samples=[(t.get("train.seed"), v) for t, v in done],
        run_s=statistics.fmean(walls) if walls else None,
        diverged=sum(t.get("status") == "diverged" for t in trials),
        failed=sum(t.get("status") == "failed" for t in trials),
        keys=[t["key"] for t in trials],
        stopped=[stopped_at(t) for t in trials if t.get("status") == "stopped"],
    )


def _finished(
    trials: list[dict], expected: int | None, statuses: tuple = ("completed", "diverged")
) -> bool:
    done = [t for t in trials if t.get("status") in statuses]
    return bool(done) and len(done) == len(trials) and (expected is None or len(done) >= expected)


def pick_over(
    trials: list[dict],
    table: dict,
    order: Callable[[Any], Any],
    expected: dict[Any, int] | None = None,
) -> tuple[Any, list, int]:
    """(the `over` value with the best mean `best_by`, its trials, how many values were
    candidates). Candidates are the values whose trials all finished (`expected`: how many
    trials each value should have) and reached their last epoch (not stopped); a value with
    a diverged trial scores worst. (None, [], n) when no candidate has a `best_by` result;
    ties go to the first in axis order."""
    over, best_by, at = table["over"], table["best_by"], table["at"]
    groups: dict[Any, list[dict]] = {}
    for t in trials:
        groups.setdefault(t.get(over), []).append(t)
    scored = []
    candidates = [
        v for v in sorted(groups, key=order) if _finished(groups[v], (expected or {}).get(v))
    ]
    for value in candidates:
        if any(t.get("status") == "diverged" for t in groups[value]):
            scored.append((-math.inf, value))
            continue
        mean, _ = _stats(
            [v for t in groups[value] if (v := metric_value(t, best_by, at)) is not None]
        )
        if mean is not None:
            scored.append((mean if higher_is_better(best_by) else -mean, value))
    if not scored or max(scored)[0] == -math.inf:
        return None, [], len(candidates)
    best = max(score for score, _ in scored)
    value = next(v for score, v in scored if score == best)
    return value, groups[value], len(candidates)


def axis_order(path: str, axes: dict[str, list]) -> Callable[[Any], Any]:
    """Sort key for the values of axis `path`: the spec's order first, then natural order."""
    listed = [schema.encode(path, v) for v in axes.get(path, [])]

    def key(value: Any) -> tuple:
        if value in listed:
            return (0, listed.index(value))
        if value is None:
            return (2,)
        return (1, isinstance(value, str), value)

    return key


def _coords(table: dict, source: list[dict]) -> tuple[list[tuple], list[Any]]:
    rows = list(dict.fromkeys(tuple(t.get(p) for p in table["rows"]) for t in source))
    column = table["columns"]
    cols = list(dict.fromkeys(t.get(column) for t in source)) if column else [None]
    return rows, cols


def _merge(first: list, then: list, key: Callable) -> list:
    return first + sorted((v for v in dict.fromkeys(then) if v not in first), key=key)


def coordinates(
    table: dict, trials: list[dict], expected: list[dict] | None, axes: dict[str, list]
) -> tuple[list[tuple], list[Any]]:
    """Row and column values in display order: the expected cells' order (the grid's), then
    anything else found, sorted; without expected cells, sorted by the spec's axis order."""
    orders = [axis_order(p, axes) for p in table["rows"]]
    row_key = lambda r: tuple(o(v) for o, v in zip(orders, r, strict=True))  # noqa: E731
    col_key = axis_order(table["columns"], axes) if table["columns"] else (lambda v: 0)
    seen_rows, seen_cols = _coords(table, trials)
    if expected is not None:
        rows, cols = _coords(table, expected)
    else:  # a stand-in spec: the product of the axes the table names, when it names axes
        paths, column = table["rows"], table["columns"]
        rows = (
            [
                tuple(schema.encode(p, v) for p, v in zip(paths, combo, strict=True))
                for combo in itertools.product(*(axes[p] for p in paths))
            ]
            if all(p in axes for p in paths)
            else []
        )
        cols = [schema.encode(column, v) for v in axes.get(column, [])] if column else [None]
    return _merge(rows, seen_rows, row_key), _merge(cols, seen_cols, col_key)


def _extras(trials: list[dict], show: list[str]) -> dict[str, float | None]:
    done = [t for t in trials if t.get("status") == "completed"] or trials
    out = {}
    for name in show:
        values = [t[name] for t in done if t.get(name) is not None]
        out[name] = statistics.fmean(values) if values else None
    return out


def build_table(
    table: dict,
    trials: list[dict],
    expected: list[dict] | None = None,
    axes: dict[str, list] | None = None,
) -> TableData:
    """The cells of `table` from trial rows (dicts with the store's columns). `expected`:
    the flat configs (`schema.flat_config`, plus `key`) of the spec's cells: only those
    trials count, and every expected row and column is shown, found or not."""
    axes = axes or {}
    if expected is not None:
        wanted = {e["key"] for e in expected}
        trials = [t for t in trials if t.get("key") in wanted]
    rows, cols = coordinates(table, trials, expected, axes)
    groups: dict[tuple, list[dict]] = {}
    for t in trials:
        coord = (
            tuple(t.get(p) for p in table["rows"]),
            t.get(table["columns"]) if table["columns"] else None,
        )
        groups.setdefault(coord, []).append(t)
    wanted_counts = _expected_counts(table, expected)
    cells, used = {}, {}
    for coord in ((r, c) for r in rows for c in cols):
        group, counts = groups.get(coord, []), wanted_counts.get(coord)
        if table["over"] and table["best_by"]:
            pick, chosen, done = pick_over(group, table, axis_order(table["over"], axes), counts)
            chosen = chosen or [t for t in group if t.get("status") not in ("completed", "stopped")]
            over_total = (
                len(counts) if counts is not None else len({t.get(table["over"]) for t in group})
            )
            halted = stopped_values(group, table["over"], counts)
        else:
            pick, chosen, done, over_total, halted = None, group, 0, 0, 0
        cells[coord] = summarise(chosen, table["metric"], table["at"])
        cells[coord].pick = pick
        cells[coord].over_total, cells[coord].over_done = over_total, min(done, over_total)
        cells[coord].over_stopped = halted
        want = sum(counts.values()) if counts is not None else len(group)
        cells[coord].missing = max(0, want - len(group))
        # the failed trials of the `over` values that were not candidates count too
        cells[coord].failed = sum(t.get("status") == "failed" for t in group)
        used[coord] = chosen
    data = TableData(
        table=table, rows=rows, columns=cols, cells=cells, row_refs={}, extras={}, params_by_arch={}
    )
    attach_references(data, used)
    attach_statistics(data)
    for row in rows:
        data.extras[row] = _extras([t for c in cols for t in used[(row, c)]], table["show"])
    archs: dict[str, list] = {}
    for t in (t for chosen in used.values() for t in chosen):
        if t.get("model.arch") is not None and t.get("params") is not None:
            archs.setdefault(t["model.arch"], []).append(t["params"])
    data.params_by_arch = {a: statistics.fmean(v) for a, v in archs.items()}
    sizes = [t.get("dataset.val_size") for t in (expected or trials)]
    data.no_val = bool(sizes) and all(v == 0 for v in sizes)
    data.halving = halving_summary(trials)
    return data


def _expected_counts(table: dict, expected: list[dict] | None) -> dict[tuple, dict[Any, int]]:
    """{(row, column): {over value: expected trials}} (over value None without `over`)."""
    out: dict[tuple, dict[Any, int]] = {}
    for e in expected or []:
        coord = (
            tuple(e.get(p) for p in table["rows"]),
            e.get(table["columns"]) if table["columns"] else None,
        )
        value = e.get(table["over"]) if table["over"] and table["best_by"] else None
        counts = out.setdefault(coord, {})
        counts[value] = counts.get(value, 0) + 1
    return out if expected is not None else {}
