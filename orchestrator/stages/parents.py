"""Stages: a grid whose cells start from another grid's trained cells (docs/spec.md#stage).

A spec's `stage:` section names the parent grid's spec file and how each cell of this grid
(the child) finds its parent cell: the parent cells whose `match` axes equal the child's and
whose values are those of `where`; with `pick`, those of the value of the parent table's
`over` axis that the table picks (its `best_by`, averaged over seeds), as the table shows it.
Exactly one parent cell must remain. Cells with `train.body: scratch` need no parent.

The parent is resolved when a launch starts, from the parent's committed rows: its key, run
id and weights id go into the child's config (`train.parent`, not part of the key) and from
there into the child's row (`parent_key`, `parent_run_id`). A child whose row names another
parent run than the one resolved now (the parent was rerun with --force, or the pick moved)
is **stale**: `grid status` says so and `grid launch` trains it again.
"""

from __future__ import annotations

import copy
import dataclasses
import io
from pathlib import Path
from typing import Any

from orchestrator.spec.expand import Cell, expand
from results.store import weights as stored_weights
from trainers import config
from trainers.errors import GridError

# Where a cell runs, not what it trains: a child's value (its spec's or `--set`'s) reaches
# its parent, whose data then sits where the child's does.
WHERE = ("dataset.root", "dataset.download", "train.device")


def parent_spec(spec, keep_weights: bool = False):
    """The parent grid's spec (smoke-tested with the child under --smoke), with the child's
    `WHERE` values where they differ from the defaults; `keep_weights`: with
    `train.keep_weights` on (what --with-parents launches)."""
    import yaml

    from orchestrator.spec.load import load_spec, smoke

    path = Path(spec.path).parent / spec.stage["parent"]
    defaults = config.default_config()
    scalar = lambda v: yaml.safe_dump(v).strip().removesuffix("...").strip()  # noqa: E731
    sets = [
        f"{p}={scalar(config.get_path(spec.base, p))}"
        for p in WHERE
        if config.get_path(spec.base, p) != config.get_path(defaults, p)
    ]
    parent = load_spec(path, sets + (["train.keep_weights=true"] if keep_weights else []))
    if parent.name == spec.name.removesuffix("-smoke"):
        raise GridError(f"{spec.path}: stage.parent: a grid cannot be its own parent")
    if spec.forced:
        parent = dataclasses.replace(smoke(parent), resources=spec.resources)
    if spec.stage["pick"] is not None and not any(
        t["name"] == spec.stage["pick"] and t["over"] for t in parent.tables
    ):
        raise GridError(
            f"{spec.path}: stage.pick: {parent.path} has no table '{spec.stage['pick']}' "
            f"with best_by and over (the pick)"
        )
    return parent


@dataclasses.dataclass
class Resolution:
    """Each child cell's parent: `refs` {child key: {grid, key, run_id, weights}} for the
    cells resolved; `needed` the parent cells that must (re)train first (no finished row,
    or a row without kept weights); `rows` the parent's rows by key."""

    parent: Any
    refs: dict[str, dict]
    needed: list[Cell]
    rows: dict[str, dict]


def resolve(spec, cells: list[Cell], store, parent=None) -> Resolution:
    """Find each child cell's parent cell from the parent's committed rows (no GridError
    for missing parents: they are listed in `needed`)."""
    parent = parent or parent_spec(spec)
    pcells = expand(parent)
    rows = {r["key"]: r for r in store.read_trials(parent.name).to_pylist()}
    refs: dict[str, dict] = {}
    needed: dict[str, Cell] = {}
    for cell in cells:
        if cell.config["train"]["body"] == "scratch":
            continue
        found = _candidates(spec, cell, pcells, parent)
        if spec.stage["pick"] is not None:
            waiting = [p for p in found if (rows.get(p.key) or {}).get("status") != "completed"]
            if waiting:
                needed.update({p.key: p for p in waiting})
                continue
            found = _picked(spec, parent, found, rows)
        if len(found) != 1:
            raise GridError(_ambiguous(spec, cell, found, parent))
        p, row = found[0], rows.get(found[0].key) or {}
        if row.get("status") != "completed" or not row.get("weights_id"):
            needed[p.key] = p
            continue
        refs[cell.key] = {
            "grid": parent.name,
            "key": p.key,
            "run_id": row["run_id"],
            "weights": row["weights_id"],
        }
    return Resolution(parent, refs, list(needed.values()), rows)


def _candidates(spec, cell: Cell, pcells: list[Cell], parent) -> list[Cell]:
    stage = spec.stage
    found = [
        p
        for p in pcells
        if all(
            config.get_path(p.config, m) == config.get_path(cell.config, m) for m in stage["match"]
        )
        and all(config.get_path(p.config, w) == v for w, v in stage["where"].items())
    ]
    if not found:
        raise GridError(
            f"{spec.path}: stage: no cell of {parent.name} has "
            f"{_describe(cell.config, stage['match'], stage['where'])} (cell {cell.key})"
        )
    return found


def _describe(cfg: dict, match: list[str], where: dict) -> str:
    pairs = {m: config.get_path(cfg, m) for m in match} | where
    return ", ".join(f"{config.axis_label(k)}={v}" for k, v in pairs.items()) or "any values"


def _picked(spec, parent, found: list[Cell], rows: dict[str, dict]) -> list[Cell]:
    """The candidates of the `over` value that the parent's pick table picks among them:
    `results.tables.aggregate.pick_over`, the rule `grid table` applies to the parent's rows (the
    best mean `best_by`, seeds averaged, a diverged value last, ties to the first in axis
    order)."""
    from results.tables.aggregate import axis_order, pick_over

    table = next(t for t in parent.tables if t["name"] == spec.stage["pick"])
    over = table["over"]
    value, _, _ = pick_over([rows[p.key] for p in found], table, axis_order(over, parent.axes))
    if value is None:  # every candidate diverged: the table picks none either
        raise GridError(
            f"{spec.path}: stage.pick: the table {table['name']} of {parent.name} picks no "
            f"{config.axis_label(over)} for {_describe(found[0].config, spec.stage['match'], {})}"
            " (no candidate has a result to rank)"
        )
    return [p for p in found if rows[p.key].get(over) == value]


def _ambiguous(spec, cell: Cell, found: list[Cell], parent) -> str:
    differ = sorted({p for c in found for p, v in c.params.items() if v != found[0].params.get(p)})
    return (
        f"{spec.path}: stage: {len(found)} cells of {parent.name} fit cell {cell.key} "
        f"({_describe(cell.config, spec.stage['match'], spec.stage['where'])}); they differ "
        f"in {', '.join(map(config.axis_label, differ)) or 'nothing'}: add those axes to "
        f"stage.match or stage.where"
    )


def missing_message(spec, res: Resolution, store_uri: str | None) -> str:
    """The one-line refusal of a launch whose parents are not ready, with the command."""
    store = f" --store {store_uri}" if store_uri else ""
    smoke = " --smoke" if spec.forced else ""
    cells = ", ".join(f"{p.key} ({_params(p)})" for p in res.needed[:5])
    more = f" and {len(res.needed) - 5} more" if len(res.needed) > 5 else ""
    return (
        f"{spec.path}: stage.parent: {len(res.needed)} parent cells of {res.parent.name} have "
        f"no finished result with kept weights: {cells}{more}; run `grid launch "
        f"{spec.path}{smoke}{store} --with-parents` (or `grid launch {res.parent.path}"
        f"{smoke}{store}` with train.keep_weights: true)"
    )


def _params(cell: Cell) -> str:
    return ", ".join(f"{config.axis_label(a)}={v}" for a, v in cell.params.items())


def attach(cells: list[Cell], refs: dict[str, dict]) -> list[Cell]:
    """The cells with their parents in `train.parent` (the trial reads the weights)."""
    out = []
    for c in cells:
        if c.key in refs:
            cfg = copy.deepcopy(c.config)
            cfg["train"]["parent"] = dict(refs[c.key])
            c = dataclasses.replace(c, config=cfg)
        out.append(c)
    return out


def stale_keys(spec, refs: dict[str, dict], store) -> set[str]:
    """The child cells whose finished row started from another parent run than the one
    resolved now (a parent rerun with --force, or a pick that moved)."""
    rows = store.read_trials(spec.name).to_pylist()
    stale = set()
    for r in rows:
        ref = refs.get(r["key"])
        if ref is None or r.get("status") not in ("completed", "diverged", "stopped"):
            continue
        if (r.get("parent_key"), r.get("parent_run_id")) != (ref["key"], ref["run_id"]):
            stale.add(r["key"])
    return stale


# -- the trial's side: weights in the store, the row's provenance ---------------------------


def parent_columns(cell: Cell) -> dict:
    """The row's columns naming the parent cell and run a stage's cell started from."""
    ref = cell.config["train"].get("parent")
    if not ref:
        return {}
    return {"parent_grid": ref["grid"], "parent_key": ref["key"], "parent_run_id": ref["run_id"]}


def model_bytes(state_dict: dict) -> bytes:
    """A model's state_dict as the bytes the store keeps (`torch.save`, on the CPU)."""
    import torch

    buf = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in state_dict.items()}, buf)
    return buf.getvalue()


def write_weights(store, cell: Cell, data: bytes) -> str:
    return stored_weights.write(store, cell.grid, cell.key, data)


def prune_weights(store, cell: Cell, keep: str) -> None:
    stored_weights.prune_cell(store, cell.grid, cell.key, keep)


def read_parent_weights(store, cell: Cell) -> dict:
    """The state_dict of the parent run a stage's cell starts from; GridError if gone."""
    import torch

    ref = cell.config["train"].get("parent")
    if not ref:
        raise GridError(
            f"train.body: cell {cell.key} starts from a parent but none was resolved; "
            "launch it with `grid launch` (the spec's stage: section)"
        )
    data = stored_weights.read(store, ref["grid"], ref["key"], ref["weights"])
    if data is None:
        raise GridError(
            f"stage.parent: the weights of parent cell {ref['grid']}/{ref['key']} (run "
            f"{ref['run_id']}) are gone from the store; relaunch with --with-parents"
        )
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
