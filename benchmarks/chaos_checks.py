"""The fault campaign's invariants (benchmarks/chaos.py), one function each, checked after
every round against what the S3 server holds, read with boto3 and pyarrow directly (not
through the store's own readers, which are part of what is tested). Each returns the list
of what it found broken; an empty list is the invariant held.
"""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from dataclasses import dataclass, field

import pyarrow.parquet as pq

FINISHED = ("completed", "diverged", "stopped")


@dataclass
class Snapshot:
    """What the store holds for one grid."""

    rows: dict[str, dict] = field(default_factory=dict)  # trials/<key>.parquet
    curves: dict[tuple[str, str], list[dict]] = field(default_factory=dict)  # (key, run_id)
    checkpoints: set[str] = field(default_factory=set)
    lease: dict | None = None
    stops: dict[str, dict] = field(default_factory=dict)  # a halving's decisions, by key
    other: list[str] = field(default_factory=list)  # _tune/, anything else
    names: list[str] = field(default_factory=list)


def snapshot(client, bucket: str, prefix: str, grid: str) -> Snapshot:
    """Every object of the grid, read once."""
    snap = Snapshot()
    base = f"{prefix}/{grid}/"
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=base)
    names = [o["Key"] for page in pages for o in page.get("Contents", [])]
    snap.names = names

    def get(name: str) -> bytes:
        return client.get_object(Bucket=bucket, Key=name)["Body"].read()

    for name in names:
        rel = name[len(base) :]
        if rel.startswith(("failures/", "trials/_failures/")):
            continue  # an attempt's failure record: not a result (results/store/layout.py)
        if rel.startswith("trials/") and rel.endswith(".parquet"):
            row = pq.read_table(io.BytesIO(get(name))).to_pylist()
            snap.rows[rel[len("trials/") : -len(".parquet")]] = (
                row[0] if len(row) == 1 else {"rows": len(row)}
            )
        elif rel.startswith("epochs/") and rel.endswith(".parquet"):
            key, run = rel[len("epochs/") : -len(".parquet")].split("/", 1)
            snap.curves[(key, run)] = pq.read_table(io.BytesIO(get(name))).to_pylist()
        elif rel.startswith("checkpoints/"):
            snap.checkpoints.add(rel.rsplit("/", 1)[-1])
        elif rel == "_lease.json":
            snap.lease = json.loads(get(name))
        elif rel.startswith("stops/") and rel.endswith(".json"):
            snap.stops[rel[len("stops/") : -len(".json")]] = json.loads(get(name))
        else:
            snap.other.append(rel)
    return snap


def one_result_per_cell(snap: Snapshot, expected: set[str], final: bool) -> list[str]:
    """Every row is one finished result of an expected cell; once finished, every cell has
    one."""
    out = []
    for key, row in snap.rows.items():
        if row.get("rows") is not None:
            out.append(f"{key}: its row file holds {row['rows']} rows")
        elif row.get("key") != key or key not in expected:
            out.append(f"{key}: a row of cell {row.get('key')}, not of the grid's cells")
        elif row.get("status") not in FINISHED:
            out.append(f"{key}: a {row.get('status')} row in trials/")
    if final and set(snap.rows) != expected:
        out.append(f"cells without a result: {sorted(expected - set(snap.rows))}")
    return out


def row_and_curves_from_one_run(snap: Snapshot) -> list[str]:
    """Each row names its run, and that run's curves are there, of that key and run, as many
    epochs as the row says."""
    out = []
    for key, row in snap.rows.items():
        run = row.get("run_id")
        curves = snap.curves.get((key, run))
        if not run or curves is None:
            out.append(f"{key}: its row names run {run}, whose curves are missing")
            continue
        if any(c.get("key") != key or c.get("run_id") != run for c in curves):
            out.append(f"{key}: the curves of run {run} hold another key's or run's epochs")
        if len(curves) != row.get("epochs"):
            out.append(f"{key}: row says {row.get('epochs')} epochs, run {run} has {len(curves)}")
    return out


def no_finished_result_replaced(snap: Snapshot, seen: dict[str, tuple]) -> list[str]:
    """A finished result stays as it was (no --force in the campaign): the same run, the
    same generation, still finished. `seen` is updated with this round's results."""
    out = []
    for key, (run, generation) in seen.items():
        row = snap.rows.get(key)
        if row is None:
            out.append(f"{key}: its finished result (run {run}) is gone")
        elif (row.get("run_id"), row.get("generation")) != (run, generation):
            out.append(
                f"{key}: finished result run {run} (generation {generation}) replaced by "
                f"run {row.get('run_id')} (generation {row.get('generation')})"
            )
    for key, row in snap.rows.items():
        seen.setdefault(key, (row.get("run_id"), row.get("generation")))
    return out


def each_epoch_once(snap: Snapshot) -> list[str]:
    """A committed run's curves hold epochs 1..n, each once."""
    out = []
    for key, row in snap.rows.items():
        epochs = [c.get("epoch") for c in snap.curves.get((key, row.get("run_id")), [])]
        if epochs and sorted(epochs) != list(range(1, len(epochs) + 1)):
            out.append(f"{key}: its curves hold epochs {sorted(epochs)}")
    return out


def no_trial_trained_a_finished_cell(trained_after_finish: list[str]) -> list[str]:
    """The campaign's trial events (GRID_CHAOS): no cell trained (an epoch, or an attempt
    resumed) while its finished row was in the store."""
    return list(trained_after_finish)


def lease_released(snap: Snapshot, exited_itself: bool) -> list[str]:
    """A launch that ended by itself (not killed) released the grid's lease."""
    if not exited_itself or snap.lease is None or snap.lease.get("released"):
        return []
    return [f"the lease is still held after the launch exited: {snap.lease}"]


def table_has_every_row_and_pick(
    spec_path: str, store: str, env: dict, widths: int, halved: bool = False
) -> list[str]:
    """`grid table --strict` (exit 1 on a hole) gives a row per width, each with its value
    and its pick, as a fault-free run's table does (under a halving, the pick is among the
    lrs that ran to the end: at least one, the others stopped at the rung)."""

    def table(flag: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "orchestrator.cli", "table", spec_path, "--store", store]
            + ["--format", "csv", flag],
            env=env,
            capture_output=True,
            text=True,
        )

    done = table("--strict")
    if done.returncode != 0:
        # every lr of every row with its status, so that a hole can be read from the log
        # after the campaign's store is gone
        full = table("--full")
        return [
            f"grid table --strict exited {done.returncode}: "
            f"{(done.stdout + done.stderr).strip()[-600:]}\n--full:\n{full.stdout.strip()}"
        ]
    rows = list(csv.DictReader(io.StringIO(done.stdout)))
    holes = [
        r
        for r in rows
        if r.get("status") != "ok"
        or not r.get("mean")
        or not r.get("train.lr")
        or r.get("n_missing") != "0"
        or (r.get("over_done") != r.get("over_total") and not halved)
        or int(r.get("over_done") or 0) < 1
    ]
    if len(rows) != widths or holes:
        return [f"the table is not a row per width with its value and pick: {done.stdout}"]
    return []


def halving_held(snap: Snapshot, epochs: int, rung: int) -> list[str]:
    """A halved grid, once finished: every `stopped` row stopped at the rung, with the
    decision that stopped it in the store (`stops/<key>.json`, naming that rung); every
    `completed` row trained every epoch; and no cell has a decision but another status (a
    stop written and then lost, or a cell trained on past its stop). A grid with no stopped
    cell is not a failure: the asynchronous rule keeps every cell of a group that reaches the
    rung in increasing order of score, and tied scores all go on."""
    out = []
    for key, row in snap.rows.items():
        decision = snap.stops.get(key)
        if row.get("status") == "stopped":
            if row.get("epochs") != rung:
                out.append(f"{key}: stopped after {row.get('epochs')} epochs, its rung is {rung}")
            if decision is None or decision.get("rung") != rung:
                out.append(f"{key}: stopped, but its decision is {decision}")
        elif row.get("status") == "completed" and row.get("epochs") != epochs:
            out.append(f"{key}: completed after {row.get('epochs')} of {epochs} epochs")
        if decision is not None and row.get("status") != "stopped":
            out.append(
                f"{key}: a decision to stop it at rung {decision.get('rung')}, yet it is "
                f"{row.get('status')}"
            )
    return out


def no_orphans(snap: Snapshot) -> list[str]:
    """Once every cell finished: no checkpoint, no curves that no row names, nothing of
    Tune's (`_tune/`) left, and no halving decision but a stopped cell's (it stays as that
    cell's record, docs/results.md; failures stay too: the record of what failed)."""
    out = []
    stray = sorted(k for k in snap.stops if snap.rows.get(k, {}).get("status") != "stopped")
    if stray:
        out.append(f"decisions of cells not stopped: {stray}")
    if snap.checkpoints:
        out.append(f"checkpoints left: {sorted(snap.checkpoints)}")
    named = {(k, r.get("run_id")) for k, r in snap.rows.items()}
    orphans = sorted(f"{k}/{r}" for k, r in snap.curves if (k, r) not in named)
    if orphans:
        out.append(f"curves no row names: {orphans}")
    # the grid's row index (results/store/reader.py) stays; so do folder markers ("<grid>/")
    other = [n for n in snap.other if not n.startswith("_index/") and not n.endswith("/") and n]
    if other:
        out.append(f"other objects left: {other[:5]} ({len(other)} in all)")
    return out
