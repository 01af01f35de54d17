"""Validation of a spec's `tables:` section (the comparison tables `grid table` builds).

Each table is normalised to a dict with every key present and axis names as dotted paths,
which is what `results/` receives. The format is documented in docs/spec.md.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from trainers import config

METRICS = (
    "test_acc",
    "val_acc",
    "train_acc",
    "test_error",
    "val_error",
    "train_error",
    "test_loss",
    "val_loss",
    "train_loss",
)
SHOW = ("params", "wall_s", "epochs", "images_per_s")
TABLE_KEYS = (
    "name",
    "title",
    "rows",
    "columns",
    "metric",
    "at",
    "best_by",
    "over",
    "show",
    "reference",
    "reference_label",
    "baseline",
)
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def _axis(value: Any, where: str, errors: list[str]) -> str | None:
    if not isinstance(value, str):
        errors.append(f"{where}: expected an axis name, got {value!r}")
        return None
    path = config.canonical_path(value)
    if path not in config.CHECKS:
        errors.append(f"{where}: {config.unknown_path(value)}")
        return None
    return path


def _choice(value: Any, options: tuple, where: str, errors: list[str]) -> None:
    if value not in options:
        errors.append(
            f"{where}: unknown value {value!r}{config.did_you_mean(value, options)}; "
            f"choose from {', '.join(options)}"
        )


def _reference(ref: Any, rows: list[str], where: str, errors: list[str]) -> list[dict]:
    """`reference` as a list of {where, value, label}; a plain {row value: number} mapping is
    accepted for single-row-axis tables."""
    if ref is None:
        return []
    if isinstance(ref, dict):
        if len(rows) != 1:
            errors.append(
                f"{where}: a mapping of row value -> number needs exactly one row "
                f"axis; use a list of {{where: {{...}}, value: N}}"
            )
            return []
        ref = [{"where": {rows[0]: k}, "value": v} for k, v in ref.items()]
    if not isinstance(ref, list):
        errors.append(f"{where}: expected a list of {{where: {{axis: value}}, value: N}}")
        return []
    out = []
    for i, entry in enumerate(ref):
        w = f"{where}[{i}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("where"), dict):
            errors.append(f"{w}: expected {{where: {{axis: value}}, value: N}}")
            continue
        unknown = set(entry) - {"where", "value", "label"}
        if unknown:
            errors.append(f"{w}: unknown key '{sorted(unknown)[0]}'; valid: where, value, label")
        value = entry.get("value")
        if not config._is_number(value):
            errors.append(f"{w}.value: expected a number, got {value!r}")
        match = {}
        for k, v in entry["where"].items():
            path = config.canonical_path(str(k))
            if path not in config.CHECKS:
                errors.append(f"{w}.where.{k}: {config.unknown_path(str(k))}")
                continue
            err, v = config.CHECKS[path](v)
            if err:
                errors.append(f"{w}.where.{k}: {err}")
            match[path] = v
        out.append({"where": match, "value": value, "label": entry.get("label")})
    return out


def _baseline(
    doc: Any,
    rows: list[str],
    where: str,
    errors: list[str],
    values: Callable[[str], list] | None,
) -> dict | None:
    """`baseline` as {row axis path: value}: the row (or, naming some of the row axes, the
    row of each group of the others) that every other row is compared with."""
    if doc is None:
        return None
    if not isinstance(doc, dict) or not doc:
        errors.append(
            f"{where}: expected a mapping of row axis -> value, e.g. {{batch_norm: false}}"
        )
        return None
    out = {}
    for k, v in doc.items():
        w = f"{where}.{k}"
        path = _axis(k, w, errors)
        if path is None:
            continue
        if path not in rows:
            names = ", ".join(config.SHORT.get(r, r) for r in rows) or "none"
            errors.append(f"{w}: not a row axis of this table (rows: {names})")
            continue
        err, v = config.CHECKS[path](v)
        if err:
            errors.append(f"{w}: {err}")
            continue
        known = values(path) if values is not None else None
        if known is not None and v not in known:
            errors.append(
                f"{w}: no cell of the spec has {config.SHORT.get(path, path)}={v!r}; "
                f"its cells have {', '.join(repr(x) for x in known)}"
            )
            continue
        out[path] = v
    return out


def check_table(
    t: Any, where: str, errors: list[str], values: Callable[[str], list] | None = None
) -> dict | None:
    """One normalised table; `values(path)`: the values an axis takes in the spec's cells
    (None: not checked), for `baseline`."""
    if not isinstance(t, dict):
        errors.append(f"{where}: expected a mapping")
        return None
    for key in t:
        if key not in TABLE_KEYS:
            errors.append(
                f"{where}.{key}: unknown key{config.did_you_mean(key, TABLE_KEYS)}; "
                f"valid: {', '.join(TABLE_KEYS)}"
            )
    name = t.get("name", "table")
    if not isinstance(name, str) or not NAME_RE.match(name):
        errors.append(f"{where}.name: must be a folder-safe id, got {name!r}")
    rows_in = t.get("rows")
    if rows_in is None:
        errors.append(f"{where}.rows: missing (the axis or axes that make the table's rows)")
        rows_in = []
    rows_in = rows_in if isinstance(rows_in, list) else [rows_in]
    rows = [p for i, r in enumerate(rows_in) if (p := _axis(r, f"{where}.rows[{i}]", errors))]
    columns = t.get("columns")
    if columns is not None:
        columns = _axis(columns, f"{where}.columns", errors)
    over = t.get("over")
    best_by = t.get("best_by")
    if over is not None:
        over = _axis(over, f"{where}.over", errors)
    if (over is None) != (best_by is None):
        errors.append(
            f"{where}: best_by and over go together (pick the best `over` value "
            f"per row by `best_by`)"
        )
    metric = t.get("metric", "test_acc")
    _choice(metric, METRICS, f"{where}.metric", errors)
    if best_by is not None:
        _choice(best_by, METRICS, f"{where}.best_by", errors)
    at = t.get("at", "final")
    _choice(at, ("final", "best"), f"{where}.at", errors)
    show = t.get("show", [])
    show = show if isinstance(show, list) else [show]
    for i, s in enumerate(show):
        _choice(s, SHOW, f"{where}.show[{i}]", errors)
    return {
        "name": name,
        "title": str(t.get("title", name)),
        "rows": rows,
        "columns": columns,
        "metric": metric,
        "at": at,
        "best_by": best_by,
        "over": over,
        "show": show,
        "reference": _reference(t.get("reference"), rows, f"{where}.reference", errors),
        "reference_label": str(t.get("reference_label", "paper")),
        "baseline": _baseline(t.get("baseline"), rows, f"{where}.baseline", errors, values),
    }


def check_tables(
    tables: Any, errors: list[str], values: Callable[[str], list] | None = None
) -> list[dict]:
    """Normalised tables; problems are appended to `errors` as 'tables[i].key: message'.
    `values(path)`: the values an axis takes in the spec's cells (checks `baseline`)."""
    if not isinstance(tables, list):
        errors.append("tables: expected a list of tables")
        return []
    out, names = [], set()
    for i, t in enumerate(tables):
        table = check_table(t, f"tables[{i}]", errors, values)
        if table is None:
            continue
        if table["name"] in names:
            errors.append(f"tables[{i}].name: '{table['name']}' is used by another table")
        names.add(table["name"])
        out.append(table)
    return out


def leak_warnings(tables: list[dict], configs: list[dict]) -> list[str]:
    """Tables that choose by the test set: `at: best` or an `over` pick where the cells have
    no validation set (dataset.val_size 0) choose the best epoch or value by test accuracy,
    which flatters the reported number."""
    if not configs or any(c["dataset"]["val_size"] for c in configs):
        return []
    out = []
    for t in tables:
        if t["at"] == "best" or (t["over"] and t["best_by"]):
            what = "epoch" if t["at"] == "best" else config.SHORT.get(t["over"], t["over"])
            out.append(
                f"tables.{t['name']}: picks the best {what} with no validation set "
                f"(dataset.val_size: 0), so by test accuracy: a leak that flatters the "
                f"table; set dataset.val_size (e.g. 5000)"
            )
    return out
