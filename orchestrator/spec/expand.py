"""Pure functions from a Spec to its ordered list of cells, each with a stable key.

The key (`orchestrator/spec/keys.py`) hashes what sets the cell's resolved config apart from a
frozen baseline: the same cell has the same key across runs, machines, YAML key order and
releases that add options, and any value that changes training changes it. That key is what
lets `grid launch` skip finished cells and run only the new cells of a grown grid.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
from typing import Any

from orchestrator.spec.keys import cell_key, leaves
from orchestrator.spec.load import Spec
from trainers import config
from trainers.cadence import eval_every
from trainers.errors import GridError


@dataclasses.dataclass(frozen=True)
class Cell:
    """One cell: its key, its grid, its axis values (dotted path -> value), its config."""

    key: str
    grid: str
    params: dict[str, Any]
    config: dict

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Cell:
        return cls(**d)


def _cap(current: Any, cap: Any) -> Any:
    # --smoke shrinks: numbers are capped (an epochs axis of [1, 5] stays distinct below the
    # cap), and an unset subset gets the cap.
    if config._is_number(current) and config._is_number(cap):
        return min(current, cap)
    return cap


def _copy(value: Any) -> Any:
    """A deep copy of a config value: YAML's dicts and lists copied, its scalars shared. 2x
    faster than `copy.deepcopy`, whose memo bookkeeping cost ~0.3 s of every command that
    expands a grid of 10,000 cells; a pickle round trip is faster still, but makes a new
    object of every string, ~60 MB more for such a grid."""
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    if isinstance(value, (str, int, float, bool, type(None))):
        return value
    return copy.deepcopy(value)


def resolve(spec: Spec, overrides: dict[str, Any]) -> dict:
    """The base config with one cell's overrides (dotted paths) applied."""
    cfg = _copy(spec.base)
    for path, value in overrides.items():
        config.set_path(cfg, path, _copy(value))
    for path, cap in spec.forced.items():
        config.set_path(cfg, path, _cap(config.get_path(cfg, path), cap))
    # `eval_every: auto` is settled here, where the tables are known (trainers/cadence.py);
    # it is NON_IDENTITY, so the number it becomes moves no key.
    train = cfg["train"]
    uses_best = any(t.get("at") == "best" for t in spec.tables)
    train["eval_every"] = eval_every(train["eval_every"], train["epochs"], uses_best)
    if spec.halving:  # a rung ranks by its epoch's val metrics: they must be measured
        train["eval_epochs"] = sorted(set(train["eval_epochs"]) | set(spec.halving["rungs"]))
    return cfg


def _matches(cfg: dict, rule: dict[str, Any]) -> bool:
    return all(config.get_path(cfg, path) == value for path, value in rule.items())


def cell_overrides(spec: Spec) -> list[dict[str, Any]]:
    """The product of the axes (the base cell when there are none), then the includes.
    A spec with includes and no `grid` at all is just its includes."""
    cells: list[dict[str, Any]] = []
    if spec.axes or not spec.include:
        paths = list(spec.axes)
        cells = [
            dict(zip(paths, combo, strict=True)) for combo in itertools.product(*spec.axes.values())
        ]
    return cells + [dict(c) for c in spec.include]


def expand(spec: Spec) -> list[Cell]:
    """Spec -> ordered, de-duplicated trials (first occurrence wins)."""
    axis_paths = list(spec.axes) + [p for c in spec.include for p in c if p not in spec.axes]
    axis_paths = list(dict.fromkeys(axis_paths))
    trials, seen = [], set()
    defaults = leaves(config.DEFAULTS)  # once per grid, not once per cell
    for overrides in cell_overrides(spec):
        cfg = resolve(spec, overrides)
        if any(_matches(cfg, rule) for rule in spec.exclude):
            continue
        if cfg["dataset"]["classes"] is not None and cfg["dataset"]["name"] != "cifar100":
            raise GridError(
                f"{spec.path}: dataset.classes: class subsets are of cifar100, but a cell "
                f"has dataset.name {cfg['dataset']['name']}"
            )
        if cfg["train"]["body"] != "scratch" and spec.stage is None:
            raise GridError(
                f"{spec.path}: train.body: {cfg['train']['body']} starts from a parent cell; "
                "add a stage: section naming the parent grid (docs/spec.md#stage)"
            )
        key = cell_key(cfg, defaults)
        if key in seen:
            continue
        seen.add(key)
        params = {p: config.get_path(cfg, p) for p in axis_paths}
        trials.append(Cell(key=key, grid=spec.name, params=params, config=cfg))
    if not trials:
        raise GridError(f"{spec.path}: exclude: removes every cell of the grid; nothing to run")
    return trials
