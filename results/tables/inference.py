"""What a table can claim from its seeds: each entry's 95 % interval, each row against its
baseline row, and how many seeds a comparison that does not separate would need.

The interval is Student's t over the entry's runs (none for n = 1). A table with `baseline`
(`{batch_norm: false}`, docs/spec.md#tables) compares every other row with the row that has
the baseline's values and the same values of the other row axes, column by column: a paired
t-test by seed when both entries ran the same seeds, Welch's t-test otherwise, and Holm's
correction over every comparison the table makes. Where that is not significant, the seeds
per row that would be (80 % power at the observed difference and spread, at level 0.05 / m,
so the comparison would pass Holm too) and their cost at the runs' measured wall time: what
a run of that row took, not the FLOP model of `orchestrator/planning` (results/ does not
import orchestrator, and a measured time is the better estimate once runs exist).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from results.tables import stats


@dataclasses.dataclass
class Comparison:
    """One entry against its baseline entry: the test (None when a side has n < 2), its
    Holm-adjusted p-value, and, when not significant, the seeds per row that would be, the
    runs that adds to the two entries and their cost in device-seconds (None: not timed)."""

    baseline: tuple
    diff: float | None = None
    test: stats.Test | None = None
    p_holm: float | None = None
    tests: int = 0  # the comparisons Holm corrects over (the table's tested ones)
    seeds: int | None = None
    extra_runs: int = 0
    cost_s: float | None = None

    @property
    def significant(self) -> bool:
        return self.p_holm is not None and self.p_holm < stats.ALPHA


def baseline_row(table: dict, row: tuple) -> tuple | None:
    """The row `row` is compared with: its values, the baseline's on the axes it names;
    None for a table without a baseline."""
    base = table.get("baseline")
    if not base:
        return None
    return tuple(base.get(p, v) for p, v in zip(table["rows"], row, strict=True))


def compare_entries(entry: Any, base: Any) -> stats.Test | None:
    """`entry` against `base` (`TableEntry`s): paired by seed when both ran the same seeds,
    each once; Welch otherwise; None when either has fewer than two runs."""
    if entry.n < 2 or base.n < 2:
        return None
    mine, theirs = dict(entry.samples), dict(base.samples)
    unique = len(mine) == entry.n and len(theirs) == base.n and None not in mine
    if unique and mine.keys() == theirs.keys():
        seeds = sorted(mine)
        return stats.paired_t([mine[s] for s in seeds], [theirs[s] for s in seeds])
    return stats.welch_t([v for _, v in entry.samples], [v for _, v in base.samples])


def _plan(comp: Comparison, entry: Any, base: Any) -> None:
    """Seeds per row that would separate a comparison that is not significant, and what the
    missing runs of the two entries cost."""
    test = comp.test
    comp.seeds = stats.seeds_needed(
        test.diff, test.sd, test.test == "paired t", alpha=stats.ALPHA / comp.tests
    )
    if comp.seeds is None:
        return
    more = [(max(0, comp.seeds - e.n), e.run_s) for e in (entry, base)]
    comp.extra_runs = sum(k for k, _ in more)
    if all(s is not None for k, s in more if k):
        comp.cost_s = sum(k * s for k, s in more if k)


def attach_statistics(data: Any) -> None:
    """Give each entry of `data` (`results.tables.aggregate.TableData`) its 95 % interval,
    and, with a baseline, each other row's entries their `Comparison`, Holm-corrected over
    the table's tests."""
    for entry in data.cells.values():
        entry.ci = stats.t_interval([v for _, v in entry.samples])
    table = data.table
    for row in data.rows:
        base_row = baseline_row(table, row)
        if base_row is None or base_row == row or base_row not in data.rows:
            continue
        for col in data.columns:
            entry, base = data.cells[(row, col)], data.cells[(base_row, col)]
            diff = None if entry.mean is None or base.mean is None else entry.mean - base.mean
            comp = Comparison(baseline=base_row, diff=diff, test=compare_entries(entry, base))
            data.comparisons[(row, col)] = comp
    tested = [c for c in data.comparisons.values() if c.test is not None]
    for comp, p in zip(tested, stats.holm([c.test.p for c in tested]), strict=True):
        comp.p_holm, comp.tests = p, len(tested)
    for (row, col), comp in data.comparisons.items():
        if comp.test is not None and not comp.significant:
            _plan(comp, data.cells[(row, col)], data.cells[(comp.baseline, col)])
