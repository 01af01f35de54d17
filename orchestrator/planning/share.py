"""How the grids on one cluster share its slots: weighted fair share by water-filling, capped
by each grid's demand, a higher priority served first. No Ray: the arbiter
(`orchestrator/execution/arbiter.py`) calls `allocate` with what each launch reported.

A grid's **demand** is the trials it could run now (running, waiting to start, or paused
by a yield: not those paused at a halving's rung). Among the grids of the highest priority
that still want slots, the next slot goes to the grid with the least slots for its weight
(held / weight after taking it, ties to the larger weight, then to the grid registered
first), until every one has its demand or no slot is left; what remains goes to the next
priority. So on 4 slots grids of weights 1 and 3, both with more work than slots, get 1
and 3; a grid that wants fewer than its share leaves the rest to the others (a slot never
idles while any grid has work); and a grid with no work waiting takes no share.

This is the rule the issue states ("slots in proportion to its weight among the grids that
have work waiting"), not Determined's, which it cites: Determined shares in proportion to
weight x demand (8 slots, demands 10 and 30: 2 and 6), so a grid of 2,000 cells would hold
nearly every slot against one of 10: the starvation the issue is about. Here 10 and 30 on
8 slots get 4 and 4, and with weight 3 on the first, 6 and 2.

A slot is the resource one trial of the grid asks for, counted in the pool it draws from:
GPUs when its trials take a GPU, else CPUs. Grids in different pools do not compete, and a
grid whose trial needs 2 CPUs takes 2 of the pool's CPUs per trial.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

EPS = 1e-9  # fractional resources (0.5 GPU a trial): sums within rounding still fit


@dataclass(frozen=True)
class Claim:
    """What one launch asks for: its grid, weight, priority, the trials it could run now
    (`demand`), the resource one trial takes in its pool (`size`), and its registration
    order (`since`, earlier first on ties)."""

    grid: str
    demand: int
    weight: float = 1.0
    priority: int = 0
    size: float = 1.0
    pool: str = "CPU"
    since: float = 0.0


def allocate(claims: Iterable[Claim], capacity: dict[str, float]) -> dict[str, int]:
    """{grid: trials it may run} for each claim, from `capacity` ({pool: resource}, the
    cluster's CPUs and GPUs). A pool missing from `capacity` has none."""
    claims = list(claims)
    out = {c.grid: 0 for c in claims}
    for pool in {c.pool for c in claims}:
        members = [c for c in claims if c.pool == pool]
        out.update(_fill(members, float(capacity.get(pool, 0.0))))
    return out


def _fill(claims: list[Claim], left: float) -> dict[str, int]:
    """Water-filling within one pool, priority by priority."""
    out = {c.grid: 0 for c in claims}
    for priority in sorted({c.priority for c in claims}, reverse=True):
        wanting = [c for c in claims if c.priority == priority and c.demand > 0]
        while True:
            fits = [c for c in wanting if out[c.grid] < c.demand and c.size <= left + EPS]
            if not fits:
                break
            pick = min(
                fits, key=lambda c: ((out[c.grid] + 1) * c.size / c.weight, -c.weight, c.since)
            )
            out[pick.grid] += 1
            left -= pick.size
    return out
