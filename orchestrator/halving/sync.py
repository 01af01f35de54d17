"""The synchronous halving rule (`halving.rule: sync`, the default; docs/spec.md#halving),
without Ray.

At each rung, a row's cells wait for each other: the rung is decided once every cell of the
row still in the running has reached it or finished (diverged, failed, or finished in an
earlier launch). Then the row's candidates (the values of the `over` axes other than the
seed: with `over: [lr, seed]`, an lr and all its seeds) are ranked by their mean score at
the rung over their cells, best first, ties broken by the candidate's own text (a stable
order), and the first `kept(n)` of the n ranked go on; the others stop at this rung.

A decision depends on the scores alone: not on the order the cells ran in, how many ran at
once, or when they reported. The scores come from the store (the epoch rows of finished
cells) and from the cells of the running launch (their reports, which a resumed cell makes
from its checkpoint's history), so a relaunch after a kill takes the same decisions again.
`orchestrator/scheduler.SyncRowHalving` applies the rule with Tune's PAUSE.
"""

from __future__ import annotations

import json
import math
from typing import Any

SEED = "train.seed"


def kept(n: int, keep: float) -> int:
    """How many of a rung's n ranked candidates go on: the `keep` fraction rounded up (a
    rung never keeps fewer than it promises), at least one; none of none."""
    return min(n, max(1, math.ceil(keep * n - 1e-9))) if n else 0


def candidate_of(params: dict[str, Any], over: list[str]) -> str:
    """A cell's candidate in its row: its values of the `over` axes but the seed."""
    return json.dumps({p: params.get(p) for p in over if p != SEED}, sort_keys=True, default=str)


def decide(
    candidates: dict[str, list[str]],
    scores: dict[str, dict[int, float]],
    ready: set[str],
    rung: int,
    keep: float,
) -> dict | None:
    """The decision at `rung` of a row's candidates still in the running ({candidate: its
    cell keys}): None while a cell is neither at the rung (a score in `scores`) nor finished
    (in `ready`); else {"kept": [candidates], "means": {candidate: mean}, "cutoff": the
    lowest kept mean, "ranked": n}. A candidate without a score at the rung (every cell
    diverged or failed before it) is not ranked and does not go on."""
    for keys in candidates.values():
        if any(rung not in scores.get(k, {}) and k not in ready for k in keys):
            return None
    means = {}
    for cand, keys in candidates.items():
        values = [scores[k][rung] for k in keys if rung in scores.get(k, {})]
        if values:
            means[cand] = sum(values) / len(values)
    order = sorted(means, key=lambda c: (-means[c], c))
    chosen = order[: kept(len(order), keep)]
    return {
        "kept": chosen,
        "means": means,
        "cutoff": means[chosen[-1]] if chosen else None,
        "ranked": len(order),
    }


def row_epochs(sizes: list[int], epochs: int, rungs: list[int], keep: float) -> int:
    """The epochs a row trains under the rule when no cell diverges or fails: `sizes` is the
    number of cells of each candidate (its seeds). Every candidate trains to the first rung;
    the `kept` of each rung train on to the next, the last rung's to `epochs`."""
    bounds = [0, *rungs, epochs]
    field = sorted(sizes, reverse=True)  # which candidates go on is unknown: count the most
    total = 0
    for i in range(len(bounds) - 1):
        total += sum(field) * (bounds[i + 1] - bounds[i])
        field = field[: kept(len(field), keep)]
    return total


def async_best_row(sizes: list[int], epochs: int, rungs: list[int]) -> int:
    """The fewest epochs a row trains under the asynchronous rule: the cells report best
    first, so each cell after the first falls below its peers' cutoff at the first rung."""
    cells = sum(sizes)
    return cells * rungs[0] + (epochs - rungs[0]) if cells else 0
