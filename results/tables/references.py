"""Published reference numbers matched to the entries of a table: each entry gets its most
specific matching reference and the difference ours - reference (`results/tables/aggregate.py`)."""

from __future__ import annotations

from typing import Any

from results.store import schema


def _match(ref: dict, table: dict, row: tuple, col: Any, cell_trials: list[dict]) -> int | None:
    """How many `where` keys of `ref` this cell matches (None if one differs). Keys that are
    not the table's axes are checked against the cell's trials; `over` is not checked: a
    reference is compared with whatever value our pick is."""
    coords = dict(zip(table["rows"], row, strict=True))
    if table["columns"]:
        coords[table["columns"]] = col
    hits = 0
    for path, value in ref["where"].items():
        value = schema.encode(path, value)
        if path in coords:
            if coords[path] != value:
                return None
            hits += 1
        elif path != table["over"] and cell_trials:
            if any(t.get(path) != value for t in cell_trials):
                return None
    return hits


def attach_references(data, by_cell: dict[tuple, list[dict]]) -> None:
    """Give each entry of `data` (a `results.tables.aggregate.TableData`) its most specific
    matching reference and ours - reference. In a table with columns, a reference that does
    not name the column axis applies to the whole row."""
    table, column = data.table, data.table["columns"]
    for (row, col), cell in data.cells.items():
        best, best_hits = None, -1
        for ref in table["reference"]:
            if column and column not in ref["where"]:
                continue
            hits = _match(ref, table, row, col, by_cell.get((row, col), []))
            if hits is not None and hits > best_hits:
                best, best_hits = ref, hits
        if best is not None:
            cell.reference, cell.reference_label = float(best["value"]), best.get("label")
            cell.delta = None if cell.mean is None else cell.mean - cell.reference
    if column:
        for row in data.rows:
            for ref in table["reference"]:
                if column not in ref["where"] and _match(ref, table, row, None, []) is not None:
                    data.row_refs[row] = (float(ref["value"]), ref.get("label"))
                    break
