"""Load and validate a grid spec: YAML (safely) -> `Spec`, every mistake of a file reported at once.

A spec is the base trial config (`dataset`, `model`, `train`), the `grid` axes, `include` /
`exclude` cells, `resources`, `max_failures` and `tables`. `docs/spec.md` documents each key.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import os
import re
from pathlib import Path
from typing import Any

import yaml

from orchestrator.halving.rule import check_halving
from orchestrator.spec.tables import check_tables
from orchestrator.stages.section import check_stage
from trainers import config
from trainers.errors import GridError

TOP_KEYS = (
    "name",
    "description",
    "dataset",
    "model",
    "train",
    "grid",
    "include",
    "exclude",
    "resources",
    "max_failures",
    "tables",
    "table",
    "halving",
    "stage",
)
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")


@dataclasses.dataclass(frozen=True)
class Spec:
    """A validated grid spec. `base` is the resolved base config; `axes`, `include` and
    `exclude` use dotted paths; `forced` is applied to every cell last (`--smoke`);
    `halving` is the normalised `halving:` section or None (orchestrator/halving/rule.py)."""

    name: str
    description: str
    path: str
    sha256: str
    base: dict
    axes: dict[str, list]
    include: list[dict]
    exclude: list[dict]
    resources: dict
    max_failures: int
    tables: list[dict]
    forced: dict = dataclasses.field(default_factory=dict)
    halving: dict | None = None
    stage: dict | None = None  # the normalised `stage:` section (orchestrator/stages/section.py)


class _UniqueKeyLoader(yaml.SafeLoader):
    """yaml.SafeLoader (never constructs objects) that refuses duplicate keys, which plain
    YAML silently resolves to the last one: two `lr:` axes would lose one without a word."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.MarkedYAMLError(
                    "while reading a mapping",
                    node.start_mark,
                    f"duplicate key '{key}'",
                    key_node.start_mark,
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


# YAML 1.1 reads `1e-3` (no dot) as a string; every researcher writes learning rates that way.
_UniqueKeyLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"^[-+]?(?:[0-9][0-9_]*\.[0-9_]*(?:[eE][-+]?[0-9]+)?|[0-9][0-9_]*[eE][-+]?[0-9]+"
        r"|\.[0-9_]+(?:[eE][-+]?[0-9]+)?|\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    ),
    list("-+0123456789."),
)


def safe_yaml(text: str | bytes) -> Any:
    """yaml.safe_load with duplicate keys refused and `1e-3` read as a number."""
    return yaml.load(text, Loader=_UniqueKeyLoader)


def read_yaml(path: Path) -> tuple[Any, bytes]:
    """The parsed YAML document and its bytes; GridError on a missing file or bad YAML."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise GridError(f"{path}: no such spec file") from None
    except OSError as e:
        raise GridError(f"{path}: cannot read: {e.strerror}") from None
    try:
        return safe_yaml(raw), raw
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark
        where = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
        raise GridError(f"{path}{where}: YAML error: {e.problem}") from None
    except yaml.YAMLError as e:
        raise GridError(f"{path}: YAML error: {e}") from None


def parse_override(text: str) -> tuple[str, Any]:
    """`KEY=VALUE` from `--set`; VALUE is YAML (safely): `lr=[0.1,0.05]`, `batch_norm=true`."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise GridError(f"--set {text}: expected KEY=VALUE, e.g. --set train.epochs=10")
    try:
        return key.strip(), safe_yaml(value) if value.strip() else None
    except yaml.YAMLError:
        raise GridError(f"--set {text}: the value is not valid YAML") from None


def apply_overrides(doc: dict, overrides: list[str]) -> None:
    """`--set` onto the raw document. A key that is an axis replaces the axis' values;
    `grid.KEY` names an axis explicitly; anything else sets that key of the document."""
    for text in overrides:
        key, value = parse_override(text)
        grid = doc.get("grid") if isinstance(doc.get("grid"), dict) else {}
        axis = next(
            (a for a in grid if config.canonical_path(a) == config.canonical_path(key)), None
        )
        if key.startswith("grid."):
            doc.setdefault("grid", {})[key[5:]] = value if isinstance(value, list) else [value]
        elif axis is not None:
            grid[axis] = value if isinstance(value, list) else [value]
        elif key.split(".")[0] in TOP_KEYS and key.split(".")[0] not in (
            "dataset",
            "model",
            "train",
        ):
            config.set_path(doc, key, value)
        elif config.canonical_path(key) in config.PATHS:
            config.set_path(doc, config.canonical_path(key), value)
        else:
            raise GridError(f"--set {text}: {config.unknown_path(key)}")


def load_spec(path: str | Path, overrides: list[str] | tuple = ()) -> Spec:
    """Read, override (`--set`) and validate a spec; GridError lists every problem at once."""
    path = Path(path)
    doc, raw = read_yaml(path)
    if not isinstance(doc, dict):
        raise GridError(
            f"{path}: expected a mapping of spec keys at the top, got {type(doc).__name__}"
        )
    doc = copy.deepcopy(doc)
    apply_overrides(doc, list(overrides))
    errors: list[str] = []
    spec = _validate(doc, path, errors)
    errors += _duplicate_names(path, spec.name if spec else None)
    if errors:
        raise GridError("\n".join(f"{path}: {e}" for e in errors))
    digest = hashlib.sha256(raw + "\n".join(overrides).encode()).hexdigest()
    return dataclasses.replace(spec, sha256=digest)


def _validate(doc: dict, path: Path, errors: list[str]) -> Spec | None:
    for key in doc:
        if key not in TOP_KEYS:
            errors.append(f"{key}: {_unknown_top(key)}")
    name = doc.get("name")
    if name is None:
        errors.append("name: missing (a folder-safe id such as 'allcnn_table')")
    elif not isinstance(name, str) or not NAME_RE.match(name):
        errors.append(f"name: must be a folder-safe id (a-z, 0-9, _ . -), got {name!r}")
    base = _base_config(doc, errors)
    axes = _axes(doc.get("grid", {}), errors)
    include = _cells(doc.get("include", []), "include", errors)
    exclude = _cells(doc.get("exclude", []), "exclude", errors)
    resources = _resources(doc.get("resources", {}), errors)
    max_failures = doc.get("max_failures", 2)
    if not (
        isinstance(max_failures, int) and not isinstance(max_failures, bool) and max_failures >= 0
    ):
        errors.append(f"max_failures: expected a whole number >= 0, got {max_failures!r}")
    if "table" in doc and "tables" in doc:
        errors.append("table: give either 'table' (one) or 'tables' (a list), not both")
    tables_doc = doc.get("tables", [doc["table"]] if "table" in doc else [])
    tables = check_tables(tables_doc, errors, lambda p: _axis_values(p, base, axes, include))
    halving = check_halving(doc.get("halving"), base, axes, include, resources, errors)
    stage = check_stage(doc.get("stage"), path, errors)
    description = doc.get("description", "")
    if not isinstance(description, str):
        errors.append(f"description: expected text, got {description!r}")
    if errors:
        return None
    return Spec(
        name=name,
        description=description,
        path=str(path),
        sha256="",
        base=base,
        axes=axes,
        include=include,
        exclude=exclude,
        resources=resources,
        max_failures=max_failures,
        tables=tables,
        halving=halving,
        stage=stage,
    )


def _unknown_top(key: Any) -> str:
    if isinstance(key, str) and config.canonical_path(key) in config.PATHS:
        return (
            f"unknown top-level key; config keys go under their section "
            f"('{config.canonical_path(key)}') or under 'grid:' as an axis"
        )
    return (
        f"unknown top-level key{config.did_you_mean(key, TOP_KEYS)}; valid: {', '.join(TOP_KEYS)}"
    )


def _base_config(doc: dict, errors: list[str]) -> dict:
    base = config.default_config()
    for section in ("dataset", "model", "train"):
        value = doc.get(section, {})
        if not isinstance(value, dict):
            errors.append(f"{section}: expected a mapping, got {value!r}")
            continue
        errs, clean = config.check_leaves(config.flatten(value, section + "."), "")
        errors += errs
        for p, v in clean.items():
            config.set_path(base, p, v)
    return base


def _axes(grid: Any, errors: list[str]) -> dict[str, list]:
    if not isinstance(grid, dict):
        errors.append(f"grid: expected a mapping of axis -> list of values, got {grid!r}")
        return {}
    axes: dict[str, list] = {}
    for name, values in grid.items():
        path = config.canonical_path(str(name))
        if path in axes:
            errors.append(f"grid.{name}: the same axis as '{config.SHORT.get(path, path)}' above")
            continue
        if path not in config.CHECKS:
            errors.append(f"grid.{name}: " + config.unknown_path(str(name)))
            continue
        if not isinstance(values, list):
            values = [values]
        if not values:
            errors.append(f"grid.{name}: empty axis (give at least one value)")
            continue
        clean = []
        for i, v in enumerate(values):
            err, v = config.CHECKS[path](v)
            if err:
                errors.append(f"grid.{name}[{i}]: {err}")
            clean.append(v)
        axes[path] = clean
    return axes


def _axis_values(path: str, base: dict, axes: dict[str, list], include: list[dict]) -> list:
    """Every value config path `path` takes in the spec's cells (the base's when no axis
    varies it), in the spec's order."""
    found = list(axes[path]) if path in axes else [config.get_path(base, path)]
    return list(dict.fromkeys(found + [c[path] for c in include if path in c]))


def _cells(entries: Any, where: str, errors: list[str]) -> list[dict]:
    if not isinstance(entries, list):
        errors.append(f"{where}: expected a list of mappings, got {entries!r}")
        return []
    cells = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or not entry:
            errors.append(f"{where}[{i}]: expected a non-empty mapping of key: value")
            continue
        errs, clean = config.check_leaves(config.flatten(entry), f"{where}[{i}].")
        errors += errs
        cells.append(clean)
    return cells


def _resources(res: Any, errors: list[str]) -> dict:
    out = {"cpu": 1.0, "gpu": "auto", "pack": 1}
    if not isinstance(res, dict):
        errors.append(f"resources: expected a mapping, got {res!r}")
        return out
    for key, value in res.items():
        if key not in out:
            errors.append(
                f"resources.{key}: unknown key{config.did_you_mean(key, out)}; "
                f"valid: cpu, gpu, pack"
            )
            continue
        out[key] = value
    gpu, cpu, pack = out["gpu"], out["cpu"], out["pack"]
    if gpu != "auto" and not (config._is_number(gpu) and 0 <= gpu <= 1):
        errors.append(
            f"resources.gpu: a trial trains on one device: give a fraction in (0, 1], "
            f"0 for CPU only, or auto; got {gpu!r}"
        )
    if cpu != "auto" and not (config._is_number(cpu) and cpu > 0):
        errors.append(f"resources.cpu: expected a number > 0 or auto, got {cpu!r}")
    if not (isinstance(pack, int) and not isinstance(pack, bool) and pack >= 1):
        errors.append(f"resources.pack: expected a whole number >= 1, got {pack!r}")
    return out


def _duplicate_names(path: Path, name: str | None) -> list[str]:
    """Two specs in one folder with the same name would write into the same store folder."""
    if not name:
        return []
    clashes = []
    for other in sorted(path.parent.glob("*.y*ml")):
        if other.resolve() == path.resolve():
            continue
        try:
            text = other.read_text()
            if name not in text:  # cannot be named so: no need to parse it (0.3 s for 30)
                continue
            doc = yaml.safe_load(text)
        except (yaml.YAMLError, OSError, UnicodeDecodeError):
            continue  # that file's own problems are reported when it is loaded
        if isinstance(doc, dict) and doc.get("name") == name:
            clashes.append(
                f"name: '{name}' is also the name of {other.name}; grid names "
                f"must be unique (they name the results folder)"
            )
    return clashes


def smoke(spec: Spec, cpus: int | None = None) -> Spec:
    """The same grid shrunk to seconds per cell, under its own name so its results never mix
    with the real grid's: 1 epoch, 512 training images, a quarter of the width; a trial asks
    for no more CPUs than this machine has (`cpus`, default os.cpu_count()), so a spec sized
    for a GPU node still smoke-tests on a laptop. One epoch has no rung: no halving."""
    forced = {
        "train.epochs": 1,
        "dataset.subset": 512,
        "dataset.val_size": 128,
        "model.width": 0.25,
    }
    cpus = cpus or os.cpu_count() or 1
    cpu = spec.resources["cpu"]
    resources = {**spec.resources, "cpu": cpu if cpu == "auto" else min(cpu, float(cpus))}
    return dataclasses.replace(
        spec, name=f"{spec.name}-smoke", forced=forced, resources=resources, halving=None
    )
