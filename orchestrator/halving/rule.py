"""Successive halving per table row: the spec's `halving:` section (docs/spec.md#halving).

Cells that differ only in the `over` axes (by default the learning rate) form a group: a
table row. At each rung epoch a group keeps its top `keep` fraction. Two rules:
`sync` (the default, `orchestrator/halving/sync.py`): the group's cells wait for each other at
the rung and its best candidates go on, decided from the scores alone; `async` (ASHA's rule,
Li et al., 2020; Tune's `AsyncHyperBandScheduler`, with the group in place of the whole
experiment): a cell goes on if its `metric` is in the top `keep` fraction of what its group
recorded at that rung before it, so no cell waits. A cell that stops has the status
`stopped`.

This module is the rule's part without Ray: the section's checks, the groups, the rung
records (from the store's epoch rows, then from the reports of the launch running now), the
asynchronous judgement, and the plan that `grid plan` prints. `orchestrator/halving/scheduler.py`
applies the rules as Tune schedulers.
"""

from __future__ import annotations

import json
import math
from typing import Any

from orchestrator.halving.sync import SEED
from trainers import config

KEYS = ("over", "metric", "rungs", "keep", "rule")
# sync: a row's cells wait at each rung for each other (orchestrator/halving/sync.py), the
# decisions and the saving do not depend on order, slots or timing; async: ASHA's rule
RULES = ("sync", "async")
# What a rung may rank by: never a test metric, which would choose the lr by the test set.
METRICS = ("val_acc", "val_error", "val_loss", "train_acc", "train_error", "train_loss")
DEFAULTS = {"over": ["train.lr"], "metric": "val_acc", "keep": 0.5, "rule": "sync"}


def check_halving(
    doc: Any,
    base: dict,
    axes: dict[str, list],
    include: list[dict],
    resources: dict,
    errors: list[str],
) -> dict | None:
    """The normalised section ({over: [paths], metric, rungs, keep}) or None when absent;
    each problem is appended to `errors` as 'halving.key: message'."""
    if doc is None:
        return None
    if not isinstance(doc, dict):
        errors.append(
            "halving: expected a mapping like {over: lr, metric: val_acc, "
            "rungs: [25, 100], keep: 0.5}"
        )
        return None
    for key in doc:
        if key not in KEYS:
            errors.append(
                f"halving.{key}: unknown key{config.did_you_mean(key, KEYS)}; "
                f"valid: {', '.join(KEYS)}"
            )
    out = {**DEFAULTS, "over": _over(doc.get("over", "lr"), axes, errors)}
    metric = doc.get("metric", DEFAULTS["metric"])
    if metric not in METRICS:
        why = (
            " (it would choose by the test set)"
            if str(metric).startswith("test_")
            else config.did_you_mean(metric, METRICS)
        )
        errors.append(
            f"halving.metric: {metric!r} cannot rank a rung{why}; choose from {', '.join(METRICS)}"
        )
    elif metric.startswith("val_") and 0 in _values("dataset.val_size", base, axes, include):
        errors.append(
            f"halving.metric: {metric} needs a validation set; set "
            f"dataset.val_size (e.g. 5000) or rank by a train_ metric"
        )
    out["metric"] = metric
    out["rungs"] = _rungs(doc.get("rungs"), _values("train.epochs", base, axes, include), errors)
    keep = doc.get("keep", DEFAULTS["keep"])
    if not (config._is_number(keep) and 0 < keep < 1):
        errors.append(
            f"halving.keep: the fraction of a group that goes on at each rung, in "
            f"(0, 1); got {keep!r}"
        )
    out["keep"] = keep
    rule = doc.get("rule", DEFAULTS["rule"])
    if rule not in RULES:
        errors.append(
            f"halving.rule: {rule!r}{config.did_you_mean(str(rule), RULES)}; valid: sync (a "
            f"row waits at each rung: same picks whatever the order), async (never waits)"
        )
    out["rule"] = rule
    _check_seeds(out, _values(SEED, base, axes, include), errors)
    if resources.get("pack", 1) != 1:
        errors.append(
            "halving: needs resources.pack: 1 (a pack trains its cells as one "
            "model, so one of them cannot stop alone)"
        )
    return out


def _check_seeds(halving: dict, seeds: set, errors: list[str]) -> None:
    """Several seeds: a table averages an lr over its seeds and picks among the lrs that ran
    every seed, so the halving must stop an lr with all its seeds (`over: [lr, seed]`, the
    sync rule's candidates). A group per seed (seed not in `over`), or the async rule (which
    judges each seed alone), can stop a different lr in each seed and leave a row with no lr
    that ran them all: no pick, a hole in the table (found by the fault campaign,
    docs/reliability.md)."""
    if len(seeds) < 2:
        return
    values = ", ".join(map(str, sorted(seeds, key=str)))
    if halving["rule"] == "async":
        errors.append(
            f"halving.rule: async judges each seed alone, so with several seeds (seed: "
            f"{values}) a row can end with every lr stopped in some seed and no lr for its "
            f"table to pick; use rule: sync with over: [lr, seed]"
        )
    elif SEED not in halving["over"]:
        errors.append(
            f"halving.over: the grid runs several seeds (seed: {values}) and a table "
            f"averages them; add seed (over: [lr, seed]) so that an lr goes on or stops with "
            f"all its seeds (else each seed stops its own lrs, and a row can end with no lr "
            f"that ran every seed)"
        )


def _over(value: Any, axes: dict[str, list], errors: list[str]) -> list[str]:
    names = value if isinstance(value, list) else [value]
    paths = []
    for i, name in enumerate(names):
        where = f"halving.over[{i}]" if isinstance(value, list) else "halving.over"
        path = config.canonical_path(str(name))
        if not isinstance(name, str) or path not in config.CHECKS:
            errors.append(f"{where}: {config.unknown_path(str(name))}")
        elif path not in axes:
            errors.append(
                f"{where}: '{name}' is not an axis of grid:; the cells of a group "
                f"differ only in the `over` axes"
            )
        else:
            paths.append(path)
    if not names:
        errors.append("halving.over: give the axis (or axes) a group varies, e.g. lr")
    return paths


def _values(path: str, base: dict, axes: dict[str, list], include: list[dict]) -> set:
    """Every value config path `path` takes in the spec's cells."""
    found = set(axes.get(path, [config.get_path(base, path)]))
    return found | {cell[path] for cell in include if path in cell}


def _rungs(value: Any, epochs: set, errors: list[str]) -> list[int]:
    if not (isinstance(value, list) and value):
        errors.append(
            f"halving.rungs: give the rung epochs as a list, e.g. [25, 100]; got {value!r}"
        )
        return []
    out = []
    for i, r in enumerate(value):
        if not (isinstance(r, int) and not isinstance(r, bool) and r > 0):
            errors.append(f"halving.rungs[{i}]: expected an epoch number >= 1, got {r!r}")
            continue
        if out and r <= out[-1]:
            errors.append(f"halving.rungs[{i}]: rungs go in increasing order ({r} after {out[-1]})")
        shortest = min((e for e in epochs if isinstance(e, int)), default=None)
        if shortest is not None and r >= shortest:
            errors.append(
                f"halving.rungs[{i}]: epoch {r} must be below train.epochs "
                f"({shortest}): a rung is judged before the last epoch"
            )
        out.append(r)
    return out


def halving_warnings(halving: dict | None, configs: list[dict]) -> list[str]:
    """A rung before a step of the lr schedule: rankings taken under a high constant lr
    often flip after the decay (docs/spec.md#halving)."""
    if not halving:
        return []
    steps = sorted(
        {
            m
            for c in configs
            if c["train"]["schedule"]["name"] == "multistep"
            for m in c["train"]["schedule"]["milestones"]
        }
    )
    early = [r for r in halving["rungs"] if steps and r < steps[0]]
    if not early:
        return []
    return [
        f"halving.rungs: {', '.join(map(str, early))} come before the first lr decay "
        f"(epoch {steps[0]}, train.schedule.milestones): rankings under a high constant "
        f"lr often flip after the decay, so a late-blooming lr may be stopped"
    ]


def score(metrics: dict, metric: str) -> float | None:
    """An epoch's `metric` as a score where higher is better (an error ranks as its
    accuracy, a loss as its negative); None when the epoch did not measure it or it is not
    finite (a diverged epoch is not ranked)."""
    split, _, kind = metric.rpartition("_")
    value = metrics.get(f"{split}_{'loss' if kind == 'loss' else 'acc'}")
    if value is None or not math.isfinite(value):
        return None
    return -value if kind == "loss" else value


def group_of(params: dict[str, Any], over: list[str]) -> str:
    """A cell's group: its axis values without the `over` axes (stable across launches and
    grown grids: adding an lr keeps every old cell's group)."""
    rest = {p: v for p, v in params.items() if p not in over}
    return json.dumps(rest, sort_keys=True, default=str)


def cutoff(peers: list[float], keep: float) -> float | None:
    """The score a cell must reach to go on: the (1 - keep) quantile of its peers' scores at
    the rung (linear interpolation, as numpy's percentile and Tune's ASHA); None without
    peers: the first cell of a group at a rung always goes on."""
    if not peers:
        return None
    xs = sorted(peers)
    pos = (1 - keep) * (len(xs) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def rung_scores(history: list[dict], halving: dict) -> dict[int, float]:
    """{rung: score} of the rungs a cell's history (epoch e at index e-1) has reached."""
    out = {}
    for rung in halving["rungs"]:
        if rung <= len(history):
            value = score(history[rung - 1], halving["metric"])
            if value is not None:
                out[rung] = value
    return out


class Rungs:
    """A launch's rung records and the decisions taken on them. The records of finished
    cells come from the store's epoch rows (what an earlier launch trained, or the old
    cells of a grown grid), those of cells an earlier launch judged but did not finish (it
    was killed) from the async rule's rung records (`add_records`); the cells of this launch
    add theirs as they report. A cell is judged once per rung, against its group's other
    records at that rung."""

    def __init__(self, halving: dict, groups: dict[str, str]):
        self.rule, self.groups = halving, groups  # groups: {cell key: group} of the spec
        self.scores: dict[str, dict[int, float]] = {}
        self.judged: dict[str, set[int]] = {}
        self.candidates: dict[str, str] = {}  # {cell key: candidate} (orchestrator/halving/sync.py)
        self.running: set[str] = set(groups)  # the cells this launch trains (the rest finished)

    @classmethod
    def from_epochs(cls, halving: dict, cells: list, epoch_rows: list[dict]) -> Rungs:
        """The records of `cells` (the spec's, with `key` and `params`) found in the store's
        epoch rows."""
        from orchestrator.halving.sync import candidate_of

        rungs = cls(halving, {c.key: group_of(c.params, halving["over"]) for c in cells})
        rungs.candidates = {c.key: candidate_of(c.params, halving["over"]) for c in cells}
        for row in epoch_rows:
            if row.get("key") in rungs.groups and row.get("epoch") in halving["rungs"]:
                value = score(row, halving["metric"])
                if value is not None:
                    rungs.scores.setdefault(row["key"], {})[row["epoch"]] = value
        return rungs

    def add_records(self, records: dict[str, dict]) -> int:
        """Take the rung records that the async rule wrote in an earlier launch for cells
        that have not committed their rows yet (`Store.read_rungs`): their scores are peers
        at once, and a rung a cell passed stays passed (ASHA promotes a cell once), so a
        relaunch after a kill judges against what the killed launch recorded, not only
        against the committed rows. A record of another metric is left out. The number of
        scores taken."""
        taken = 0
        for key, record in records.items():
            if key not in self.groups or record.get("metric") != self.rule["metric"]:
                continue
            try:
                scores = {int(r): float(v) for r, v in record.get("scores", {}).items()}
                passed = {int(r) for r in record.get("passed", [])}
            except (TypeError, ValueError, AttributeError):
                continue  # not a record this release wrote
            scores = {r: v for r, v in scores.items() if r in self.rule["rungs"]}
            self.scores.setdefault(key, {}).update(scores)
            self.judged.setdefault(key, set()).update(passed & set(scores))
            taken += len(scores)
        return taken

    def record(self, key: str, stopped_at: int | None = None) -> dict:
        """Cell `key`'s rung record for `Store.write_rungs`: its scores at the rungs judged
        (in this launch, or passed in an earlier one) and the rungs it passed (all but
        `stopped_at`)."""
        judged = self.judged.get(key, set())
        scores = {r: v for r, v in self.scores.get(key, {}).items() if r in judged}
        return {
            "metric": self.rule["metric"],
            "scores": {str(r): v for r, v in sorted(scores.items())},
            "passed": sorted(r for r in judged if r != stopped_at),
        }

    def peers(self, key: str, rung: int) -> list[float]:
        """The scores at `rung` of the other cells of `key`'s group."""
        group = self.groups.get(key)
        return [
            s[rung]
            for k, s in self.scores.items()
            if k != key and rung in s and self.groups.get(k) == group
        ]

    def judge(self, key: str, scores: dict[int, float]) -> dict | None:
        """Judge cell `key` at each rung of `scores` ({rung: score}) not judged yet, lowest
        first, recording each score. None: it goes on; else the decision that stops it."""
        judged = self.judged.setdefault(key, set())
        for rung in sorted(r for r in scores if r in self.rule["rungs"] and r not in judged):
            value, peers = scores[rung], self.peers(key, rung)
            bar = cutoff(peers, self.rule["keep"])
            judged.add(rung)
            self.scores.setdefault(key, {})[rung] = value
            if bar is not None and value < bar:
                return {
                    "key": key,
                    "rung": rung,
                    "metric": self.rule["metric"],
                    "score": value,
                    "cutoff": bar,
                    "peers": len(peers),
                }
        return None


def _rows(halving: dict, cells: list) -> dict[str, dict[str, list]]:
    """{group: {candidate: [cells]}} (orchestrator/halving/sync.py)."""
    from orchestrator.halving.sync import candidate_of

    rows: dict[str, dict[str, list]] = {}
    for c in cells:
        group = rows.setdefault(group_of(c.params, halving["over"]), {})
        group.setdefault(candidate_of(c.params, halving["over"]), []).append(c)
    return rows


def cell_epochs(halving: dict | None, cells: list) -> dict[str, float]:
    """The epochs each cell is expected to train (what `--estimate` counts): all of them
    without halving, or under the asynchronous rule (its worst case: the full grid); under
    the synchronous rule, its row's exact epochs when nothing diverges (`rowsync.row_epochs`),
    shared evenly by the row's cells."""
    if not halving or halving.get("rule", "sync") != "sync":
        return {c.key: float(c.config["train"]["epochs"]) for c in cells}
    from orchestrator.halving.sync import row_epochs

    out = {}
    for row in _rows(halving, cells).values():
        members = [c for cs in row.values() for c in cs]
        epochs = members[0].config["train"]["epochs"]
        total = row_epochs(
            [len(cs) for cs in row.values()], epochs, halving["rungs"], halving["keep"]
        )
        out.update({c.key: total / len(members) for c in members})
    return out


def halving_plan(halving: dict, cells: list) -> dict[str, Any]:
    """The plan's "halving" object: the section, the number of groups, the full grid's
    epochs and the rule's worst and best cases (with no cell diverging). Synchronous: both
    are the exact epochs (`rowsync.row_epochs`). Asynchronous: the worst is the full grid
    (each cell reports better than the ones before it), the best is each row's first cell
    alone past the first rung. `expected_epochs` is what `--estimate` counts: the worst."""
    from orchestrator.halving.sync import async_best_row

    full = sum(c.config["train"]["epochs"] for c in cells)
    sync = round(sum(cell_epochs({**halving, "rule": "sync"}, cells).values()))
    rows = _rows(halving, cells)
    if halving.get("rule", "sync") == "sync":
        worst = best = sync
    else:
        worst = full
        best = sum(
            async_best_row(
                [len(cs) for cs in row.values()],
                next(iter(row.values()))[0].config["train"]["epochs"],
                halving["rungs"],
            )
            for row in rows.values()
        )
    return {
        **halving,
        "groups": len(rows),
        "full_epochs": full,
        "worst_epochs": worst,
        "best_epochs": best,
        "expected_epochs": worst,
        "expected_saving": round(1 - worst / full, 3) if full else 0.0,
    }


def plan_lines(halving: dict | None, cells: list) -> list[str]:
    """What `grid plan` says of the halving (`halving_plan`)."""
    if not halving:
        return []
    p = halving_plan(halving, cells)
    over = ", ".join(config.axis_label(a) for a in halving["over"])
    groups = f"{p['groups']} group{'s' if p['groups'] != 1 else ''}"
    head = (
        f"halving ({halving.get('rule', 'sync')}): {groups} over {over}, rungs at epochs "
        f"{', '.join(map(str, halving['rungs']))}, keep {halving['keep']:g} by "
        f"{halving['metric']}"
    )
    saved = 1 - p["best_epochs"] / p["full_epochs"] if p["full_epochs"] else 0.0
    if halving.get("rule", "sync") == "sync":
        return [
            head,
            f"  {p['worst_epochs']} epochs of the full grid's {p['full_epochs']} "
            f"({p['expected_saving']:.0%} saved), worst and best case alike: each rung keeps "
            f"a fixed number of each row whatever the order or the slots (fewer epochs only "
            f"if runs diverge)",
        ]
    return [
        head,
        f"  worst case {p['worst_epochs']} epochs (the full grid: each cell reports better "
        f"than the ones before it), best case {p['best_epochs']} ({saved:.0%} saved); "
        f"where it lands depends on the order and timing of the reports",
    ]
