"""The statistics of a table as its columns and notes say them (`results.tables.inference`
computes them): the 95 % interval, whether the published number lies in it, each row
against its baseline with a Holm-corrected p-value, and the seeds that would separate rows
that are not separated yet. One run (n = 1) gets no interval and no mark, only its n.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from results.tables import stats
from results.tables.formats import fmt_number, fmt_value
from trainers.config import axis_label

CI_HEADER = "95% CI"


def has_intervals(data: Any) -> bool:
    """Whether any entry of `data` has two runs or more, so the table has an interval column."""
    return any(c.n > 1 for c in data.cells.values())


def interval_text(cell: Any, metric: str) -> str:
    """'[9.59, 12.41]'; '-' for an entry with one run; '' without a result."""
    if cell.ci is None:
        return "-" if cell.n == 1 else ""
    return f"[{fmt_number(metric, cell.ci[0])}, {fmt_number(metric, cell.ci[1])}]"


def inside_text(cell: Any) -> str:
    """'yes' or 'no': the published number inside our interval; '' when either is missing."""
    inside = cell.reference_inside
    return "" if inside is None else ("yes" if inside else "no")


def baseline_name(table: dict) -> str:
    """`batch_norm=no`: the baseline in words."""
    return ", ".join(f"{axis_label(p)}={fmt_value(v)}" for p, v in table["baseline"].items())


def baseline_headers(table: dict) -> list[str]:
    return [f"Δ vs {baseline_name(table)}", "p (Holm)"]


def fmt_p(p: float) -> str:
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def comparison_texts(data: Any, row: tuple, col: Any) -> list[str]:
    """[difference to the baseline, Holm-adjusted p with '*' when significant]; the
    baseline row says so; '-' for p where a side has one run (no test, no mark)."""
    comp = data.comparisons.get((row, col))
    if comp is None:
        return ["baseline", ""] if data.table.get("baseline") else ["", ""]
    diff = "" if comp.diff is None else f"{comp.diff:+.2f}"
    if comp.test is None:
        return [diff, "-" if comp.diff is not None else ""]
    welch = " W" if comp.test.test == "Welch t" else ""
    return [diff, fmt_p(comp.p_holm) + welch + (" *" if comp.significant else "")]


def _interval_notes(data: Any) -> list[str]:
    cells = data.cells.values()
    out = []
    if has_intervals(data):
        out.append(
            "95% CI: Student's t-interval of the mean over the n runs, mean ± "
            "t(0.975, n-1) · std / √n; an entry with n = 1 has none."
        )
    elif any(c.n == 1 for c in cells):
        out.append("One run per entry (n = 1): no spread, so no interval and no test.")
    if any(c.reference_inside is not None for c in cells):
        label = data.table["reference_label"]
        out.append(f"{label} in CI: whether the published number lies inside our 95% CI.")
    return out


def _test_note(data: Any) -> str:
    comps = [c for c in data.comparisons.values() if c.test is not None]
    kinds = {c.test.test for c in comps}
    how = (
        "a two-sided paired t-test over the seeds both rows ran"
        if kinds <= {"paired t"}
        else "Welch's two-sided t-test (the rows ran different seeds)"
        if kinds == {"Welch t"}
        else "a two-sided paired t-test over the seeds both rows ran, or Welch's t-test "
        "(marked W) where their seeds differ"
    )
    untested = sum(c.test is None and c.diff is not None for c in data.comparisons.values())
    if not comps:
        why = "; not tested: a test needs two runs or more on each side" if untested else ""
        return (
            f"Δ vs {baseline_name(data.table)}: our mean minus the baseline row's (the row "
            f"with {baseline_name(data.table)} and the same other values){why}."
        )
    return (
        f"Δ vs {baseline_name(data.table)}: our mean minus the baseline row's (the row with "
        f"{baseline_name(data.table)} and the same other values); p: {how}, Holm-corrected "
        f"over the {len(comps)} comparisons of this table; * p < {stats.ALPHA:g}."
        + (f" Not tested (n = 1 on a side): {untested} of the comparisons." if untested else "")
    )


def _seeds_note(name: str, comp: Any) -> str:
    test = comp.test
    head = f"{name}: not separated from the baseline (p = {fmt_p(comp.p_holm)})"
    if comp.seeds is None:
        return head + "; no number of seeds would separate the observed means."
    cost = (
        f", about {comp.cost_s / 3600:,.1f} device-hours at the measured time per run"
        if comp.cost_s is not None
        else ""
    )
    return (
        f"{head}; {comp.seeds} seeds per row would separate a difference of "
        f"{test.diff:+.2f} at the observed spread (std {test.sd:.2f}, {test.test}, "
        f"{stats.POWER:.0%} power at α = {stats.ALPHA:g}/{comp.tests}): "
        f"{comp.extra_runs} more runs{cost}."
    )


def stat_notes(data: Any, name: Callable[[tuple, Any], str]) -> list[str]:
    """The notes the statistics add: the interval's method, the reference check, the test
    and its correction, and per comparison not separated the seeds that would separate it
    (`name(row, col)`: an entry in words)."""
    out = _interval_notes(data)
    if data.comparisons:
        out.append(_test_note(data))
    for (row, col), comp in data.comparisons.items():
        if comp.test is not None and not comp.significant:
            out.append(_seeds_note(name(row, col), comp))
    return out
