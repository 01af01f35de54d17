"""Which unit a launch starts first: the longest (LPT, longest processing time first).

Tune starts a grid's trials in the order it is given them, and a long cell started last sets
the end time: `allcnn_table`'s cells differ up to ~6x in cost. Started longest first onto
the free slots, a grid ends within 4/3 of the best order's time (Graham 1969); the
simulation in `benchmarks/share_sim.py` measures how close (BENCHMARKS.md).

A cell's predicted cost is the launch's quick cost model (`cost.cell_flops` over the epochs
it is expected to train), corrected per kind of unit (`estimate.signature`: what sets a
step's cost) by the wall time that the grid's finished cells measured: the median of their
measured seconds over their predicted ones, for the epochs each trained. A kind with no
finished cell takes the median over every kind (the model's error on this machine), and
without any finished cell the model's seconds stand. A pack's cost is its cells' sum.

A halving's rungs need another order: a row's rung is decided once every cell of the row
reached it, and a paused cell holds its state until then. Under a halving the rows (the
halving's groups) start longest first, each row's cells one after another in the grid's
order, so that a row's rungs are decided as early as the slots allow.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable

from orchestrator.spec.expand import Cell

Unit = list[Cell]


def longest_first(
    units: list[Unit], costs: dict[str, float], groups: dict[str, str] | None = None
) -> list[Unit]:
    """`units` by predicted cost, the longest first (ties keep the grid's order). `costs`:
    {cell key: seconds}; `groups`: {cell key: halving group}, when the spec halves: then the
    groups by their total cost, longest first, each group's units in the grid's order."""

    def unit_cost(unit: Unit) -> float:
        return sum(costs[c.key] for c in unit)

    if not groups:
        return sorted(units, key=unit_cost, reverse=True)  # sorted() is stable
    totals: dict[str, float] = {}
    for unit in units:
        group = groups[unit[0].key]
        totals[group] = totals.get(group, 0.0) + unit_cost(unit)
    rank = {g: i for i, g in enumerate(sorted(totals, key=totals.__getitem__, reverse=True))}
    return sorted(units, key=lambda u: rank[groups[u[0].key]])


def corrections(
    measured: Iterable[tuple[str, float, float]],
) -> tuple[dict[str, float], float]:
    """({kind: factor}, the factor for any other kind) from (kind, measured seconds,
    predicted seconds) of finished cells: the medians of measured over predicted, per kind
    and over all; 1.0 without a measurement."""
    ratios: dict[str, list[float]] = {}
    for kind, seconds, predicted in measured:
        if seconds and seconds > 0 and predicted > 0:
            ratios.setdefault(kind, []).append(seconds / predicted)
    if not ratios:
        return {}, 1.0
    every = [r for rs in ratios.values() for r in rs]
    return {k: statistics.median(rs) for k, rs in ratios.items()}, statistics.median(every)


def predicted_costs(
    todo: list[Cell],
    epochs: dict[str, float],
    finished: dict[str, tuple[Cell, float, float]],
    seconds: Callable[[dict, float], float],
    kind: Callable[[Cell], str],
) -> dict[str, float]:
    """{key: predicted seconds} of the cells `todo`, each training `epochs[key]`: the model's
    `seconds(config, epochs)`, times its kind's correction from `finished` ({key: (cell,
    measured wall seconds, epochs it trained)})."""
    measured = (
        (kind(cell), wall, seconds(cell.config, trained))
        for cell, wall, trained in finished.values()
        if trained
    )
    factors, default = corrections(measured)
    return {c.key: seconds(c.config, epochs[c.key]) * factors.get(kind(c), default) for c in todo}
