"""The synchronous halving (`halving.rule: sync`, orchestrator/halving/sync.py) with real Ray on
the CPU: the halving's test grid (halving_grid.py: 2 rows x 6 ascending lrs x 8 epochs,
rungs [2, 4], keep 0.5) at one slot (the `halved` fixture), at three slots, and at three
slots with the lrs in reversed order, then a launch at three slots SIGKILLed while its row
waits at rung 2, relaunched. Every run must take the same decisions, pick what the full grid
picks, and train the rule's 52 of the full grid's 96 epochs. Nothing waits on the clock:
the kill test holds a trial at a barrier (GRID_HOLD)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from orchestrator.execution import launch
from orchestrator.spec.expand import expand
from tests.orchestrator.halving_grid import (
    GRID,
    HALVING,
    copy_store,
    picks,
    six_lrs,
    trained_epochs,
)
from tests.orchestrator.test_launch import REPO, arm_hold, console, rows, wait_held

THREE_SLOTS = {"resources": {"cpu": 0.5, "gpu": 0}}  # three trials fit the 2-CPU node
RUNS = {  # name: (the lrs in the grid's order, slots)
    "three": (GRID["lr"], 3),
    "reversed": (GRID["lr"][::-1], 3),
}


def decisions(spec, store) -> dict:
    """{(activation, lr): (status, epochs trained, rung stopped at)}: by the cells' values, so
    runs whose grids list the lrs in other orders compare."""
    found = rows(store, spec.name)
    return {
        (c.params["model.activation"], c.params["train.lr"]): (
            found[c.key]["status"],
            found[c.key]["epochs"],
            found[c.key]["stopped_at"],
        )
        for c in expand(spec)
    }


@pytest.fixture(scope="module")
def sync_runs(halved, tmp_path_factory, ray_cluster):
    root = tmp_path_factory.mktemp("sync")
    out = {"one": halved["halved"][:2]}
    for name, (lrs, slots) in RUNS.items():
        spec = six_lrs(
            root / "specs", name, halving=HALVING, grid={**GRID, "lr": lrs}, **THREE_SLOTS
        )
        con, buf = console()
        rc = launch.launch(
            spec,
            store_uri=str(root / name),
            address=ray_cluster.address,
            max_concurrent=slots,
            console=con,
        )
        assert rc == 0, buf.getvalue()
        out[name] = (spec, root / name)
    return out


@pytest.mark.ray
# its setup is four launches: the shared halved (one slot) and full ones, then three slots
# and reversed; 358 s on 2 loaded cores (pytest's 300 s default ended it mid-launch once,
# which looked like a hang: each launch alone finishes, the three-slot one in ~85 s)
@pytest.mark.timeout(900)
def test_the_same_decisions_and_picks_at_one_and_three_slots_and_in_reversed_order(
    sync_runs, halved
):
    full_spec, full_store, _ = halved["full"]
    reference = decisions(*sync_runs["one"])
    stopped = {cell: d for cell, d in reference.items() if d[0] == "stopped"}
    # each row: 3 of its 6 lrs stopped at rung 2, 1 of the other 3 at rung 4
    assert sorted(d for d in stopped.values()) == [("stopped", 2, 2)] * 6 + [("stopped", 4, 4)] * 2
    for name, (spec, store) in sync_runs.items():
        assert decisions(spec, store) == reference, name
        assert picks(spec, store) == picks(full_spec, full_store), name
        assert trained_epochs(store, spec.name) == 52 <= 0.6 * 96, name


@pytest.mark.ray
def test_a_relaunch_after_a_sigkill_mid_rung_takes_the_same_decisions(
    sync_runs, tmp_path, monkeypatch, ray_cluster
):
    """The first row as the three-slot run left it; a launch of the second row at three
    slots, SIGKILLed when its slowest lr has trained to rung 2 but not reported it (so the
    row waits at the rung: none of its cells may pass it); the relaunch."""
    spec, store = sync_runs["three"]
    reference = decisions(spec, store)
    spec = six_lrs(tmp_path / "specs", "three", halving=HALVING, **THREE_SLOTS)
    cells = expand(spec)
    copy_store(store / "three", tmp_path / "runs" / "three", {c.key for c in cells[:6]})
    held = cells[11].key  # the second row's slowest lr, at its rung 2
    folder = arm_hold(monkeypatch, tmp_path, held, epoch=2)
    store = tmp_path / "runs"
    cmd = [sys.executable, "-m", "orchestrator.cli", "launch", spec.path, "--store", str(store)]
    cmd += ["--address", ray_cluster.address, "--max-concurrent", "3"]
    proc = subprocess.Popen(
        cmd,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert wait_held(folder) == f"{held}:2"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert len(rows(store, "three")) == 6  # the row waited: none of its cells was written
    monkeypatch.delenv("GRID_HOLD")

    con, buf = console()
    rc = launch.launch(
        spec, store_uri=str(store), address=ray_cluster.address, max_concurrent=3, console=con
    )
    assert rc == 0, buf.getvalue()
    assert "skipping 6 finished cells" in buf.getvalue()
    assert decisions(spec, store) == reference
    found = rows(store, "three")
    assert (found[held]["status"], found[held]["resumed_epoch"]) == ("stopped", 2)
    assert trained_epochs(store, "three") == 52  # each epoch of each cell stored once
