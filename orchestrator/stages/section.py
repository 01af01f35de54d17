"""The `stage:` section of a spec (docs/spec.md#stage), checked: the parent grid's spec file
and how each cell finds its parent cell there (`orchestrator/stages/parents.py` resolves it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from trainers import config

STAGE_KEYS = ("parent", "match", "where", "pick")


def check_stage(doc: Any, path: Path, errors: list[str]) -> dict | None:
    """The `stage:` section, normalised ({parent: path, match: [dotted], where: {dotted:
    value}, pick: table name or None}); None when the spec has none."""
    if doc is None:
        return None
    if not isinstance(doc, dict):
        errors.append(f"stage: expected a mapping (parent, match, where, pick), got {doc!r}")
        return None
    for key in doc:
        if key not in STAGE_KEYS:
            hint = config.did_you_mean(key, STAGE_KEYS)
            errors.append(f"stage.{key}: unknown key{hint}; valid: {', '.join(STAGE_KEYS)}")
    parent = doc.get("parent")
    if not isinstance(parent, str) or not parent:
        errors.append("stage.parent: missing (the parent grid's spec file, relative to this one)")
    elif not (path.parent / parent).is_file():
        errors.append(f"stage.parent: no spec file {parent} beside {path.name}")
    match = doc.get("match", [])
    if not isinstance(match, list):
        errors.append(f"stage.match: expected a list of axis names, got {match!r}")
        match = []
    paths = [config.canonical_path(str(m)) for m in match]
    for m, p in zip(match, paths, strict=True):
        if p not in config.CHECKS:
            errors.append(f"stage.match: {config.unknown_path(str(m))}")
    where = doc.get("where", {})
    if not isinstance(where, dict):
        errors.append(f"stage.where: expected a mapping of axis: value, got {where!r}")
        where = {}
    errs, where = config.check_leaves(config.flatten(where), "stage.where.")
    errors += errs
    pick = doc.get("pick")
    if pick is not None and not isinstance(pick, str):
        errors.append(f"stage.pick: expected the name of a table of the parent spec, got {pick!r}")
    return {"parent": parent, "match": paths, "where": where, "pick": pick}
