"""The cells a launch runs and the Tune trials they make: which cells have no result yet,
and how they group into units (one cell, or a pack of cells trained as one model)."""

from __future__ import annotations

from orchestrator.spec.expand import Cell
from results.store.schema import FINISHED


def select_cells(
    trials: list[Cell], statuses: dict[str, str], force: bool = False, halving: bool = False
) -> tuple[list[Cell], list[Cell]]:
    """(cells to run, cells skipped): completed and diverged cells are skipped unless
    `force`, and so are stopped ones while the spec halves (without its `halving:` section,
    a stopped cell trains in full); failed and missing ones run."""
    if force:
        return list(trials), []
    finished = FINISHED if halving else tuple(s for s in FINISHED if s != "stopped")
    todo = [t for t in trials if statuses.get(t.key) not in finished]
    done = [t for t in trials if statuses.get(t.key) in finished]
    return todo, done


def group_cells(trials: list[Cell], pack: int) -> list[list[Cell]]:
    """The cells as Tune trials: one cell each for pack 1; else up to `pack` cells that
    differ only in lr, seed, init, weight decay or schedule (`trainers.pack.pack_key`) per
    trial, in grid order."""
    if pack <= 1:
        return [[t] for t in trials]
    from trainers.pack import can_pack, pack_key  # torch: only imported when packing

    groups: dict[str, list[Cell]] = {}
    for t in trials:
        # torch.compile'd cells train alone, and so do a stage's cells that start from a
        # parent's weights (trainers/transfer.py loads one model's body)
        single = not can_pack([t.config]) or t.config["train"]["body"] != "scratch"
        groups.setdefault(t.key if single else pack_key(t.config), []).append(t)
    units = []
    for cells in groups.values():
        units += [cells[i : i + pack] for i in range(0, len(cells), pack)]
    order = {t.key: i for i, t in enumerate(trials)}
    return sorted(units, key=lambda u: order[u[0].key])


def unit_label(cells: list[Cell]) -> str:
    """The Tune trial's name: the cell key, `+N` for a pack of N more cells."""
    return cells[0].key + (f"+{len(cells) - 1}" if len(cells) > 1 else "")
