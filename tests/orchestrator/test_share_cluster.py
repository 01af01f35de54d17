"""Grids sharing one cluster (`orchestrator/execution/arbiter.py`, `fairshare.py`), on a real
local Ray of two nodes with two one-CPU slots each: weights split the slots, a grid of
higher priority takes every slot it can use, yields lose no epoch, and a launch outlives
its arbiter killed mid-run.

Each launch is a `grid launch` process of its own (as on a cluster: one driver per grid);
the test holds grid A's trials together after their first epoch (GRID_RENDEZVOUS, named
pipes and a lock: no clock), so that the next grid arrives while A holds every slot. What
each launch held and was allowed is read afterwards from the arbiter's history of reports.
"""

from __future__ import annotations

import contextlib
import fcntl
import getpass
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import ray

from orchestrator.execution import arbiter, hooks
from orchestrator.spec.expand import expand
from results.store import open_store
from tests.orchestrator.conftest import agent_port, ensure_token, node_env

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def four_slots():
    """Two worker nodes of 2 CPUs (4 one-CPU slots) and a head with none; this process is
    connected to it, to read and kill the arbiter."""
    from ray.cluster_utils import Cluster

    ensure_token()
    with node_env():
        cluster = Cluster(
            initialize_head=True,
            head_node_args={"num_cpus": 0, "include_dashboard": False, **agent_port()},
        )
        for _ in range(2):
            cluster.add_node(num_cpus=2, **agent_port())
    ray.init(address=cluster.address, namespace="test-share")
    yield cluster
    ray.shutdown()
    cluster.shutdown()


@contextlib.contextmanager
def gate(folder: Path):
    """GRID_RENDEZVOUS closed: yields arrive(n), which waits for n trials at the gate."""
    folder.mkdir(parents=True)
    os.mkfifo(folder / "arrived")
    with open(folder / "gate", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)

        def arrive(n: int) -> list[str]:
            got: list[str] = []
            while len(got) < n:
                with open(folder / "arrived") as pipe:  # blocks until a trial writes
                    got += pipe.read().splitlines()
            return got

        yield arrive
        fcntl.flock(lock, fcntl.LOCK_UN)


def start(cluster, spec_path: Path, store: Path, *flags: str, hold: Path | None = None):
    """`grid launch` of a spec as a process of its own; its output is read line by line."""
    env = {k: v for k, v in os.environ.items() if k not in hooks.ENV}
    env["PYTHONPATH"] = str(REPO)
    if hold is not None:
        env[hooks.RENDEZVOUS_ENV] = str(hold)
    cmd = [sys.executable, "-m", "orchestrator.cli", "launch", str(spec_path)]
    cmd += ["--store", str(store), "--address", cluster.address, "--yes", *flags]
    return subprocess.Popen(
        cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def wait_line(proc, text: str) -> list[str]:
    """The launch's output up to its first line containing `text` (it blocks on the pipe)."""
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if text in line:
            return lines
    raise AssertionError(f"the launch ended before {text!r}:\n{''.join(lines)}")


def finish(proc) -> str:
    out = proc.stdout.read()
    assert proc.wait() == 0, out
    return out


def history() -> list[dict]:
    return ray.get(arbiter.connect(create=False).history.remote())


def states(reports: list[dict]) -> list[dict[str, dict]]:
    """After each report, every grid's latest report: the cluster as the arbiter saw it."""
    latest: dict[str, dict] = {}
    out = []
    for r in reports:
        latest[r["grid"]] = r
        out.append(dict(latest))
    return out


def check_cells(spec, store: Path, epochs: int) -> dict[str, dict]:
    """Every cell completed its `epochs`, its curves hold each epoch once (the fault
    campaign's `each_epoch_once`)."""
    s = open_store(str(store))
    rows = {r["key"]: r for r in s.read_trials(spec.name).to_pylist()}
    assert set(rows) == {c.key for c in expand(spec)}
    curves = s.read_epochs(spec.name, columns=["epoch"]).to_pylist()
    for key, row in rows.items():
        assert row["status"] == "completed", row
        got = sorted(c["epoch"] for c in curves if c["key"] == key)
        assert got == list(range(1, row["epochs"] + 1)), (key, got)
        assert row["epochs"] == epochs
    return rows


def test_weights_split_the_slots_and_yields_lose_no_epoch(four_slots, tmp_path, tiny_spec):
    a = tiny_spec("share_a", [0.01, 0.02, 0.05, 0.1], train={"epochs": 5})
    b = tiny_spec("share_b", [0.01, 0.02, 0.03, 0.05, 0.1, 0.2], train={"epochs": 3})
    store = tmp_path / "runs"
    with gate(tmp_path / "hold") as arrive:
        first = start(four_slots, Path(a.path), store, hold=tmp_path / "hold")
        assert len(arrive(4)) == 4  # A alone holds every slot, its trials at the gate
        second = start(four_slots, Path(b.path), store, "--weight", "3")
        wait_line(second, "running 6 cells")
    out_a, out_b = finish(first), finish(second)
    rows_a, rows_b = check_cells(a, store, 5), check_cells(b, store, 3)
    # three of A's cells yielded their slots to B and resumed from where they paused
    assert sum(1 for r in rows_a.values() if (r.get("resumed_epoch") or 0) > 0) >= 3, out_a
    assert all(not r.get("resumed_epoch") for r in rows_b.values()), out_b
    reports = [r for r in history() if r["grid"] in ("share_a", "share_b")]
    seen = states(reports)
    both = [s for s in seen if len(s) == 2]
    assert any(s["share_a"]["allowed"] == 1 and s["share_b"]["allowed"] == 3 for s in both)
    # A and B held 1 and 3 slots at once
    assert any(s["share_a"]["held"] == 1 and s["share_b"]["held"] == 3 for s in both), reports
    # once A held its share, it never held more while its share was 1
    at_share = False
    for r in (r for r in reports if r["grid"] == "share_a"):
        at_share = at_share or (r["allowed"] == 1 and r["held"] <= 1)
        if at_share and r["allowed"] == 1 and r["demand"] > 1:
            assert r["held"] <= 1, r
    assert {r["weight"] for r in reports if r["grid"] == "share_b"} == {3.0}


def test_a_grid_of_higher_priority_takes_every_slot_it_can_use(four_slots, tmp_path, tiny_spec):
    a = tiny_spec("prio_a", [0.01, 0.02, 0.05, 0.1], train={"epochs": 5})
    c = tiny_spec("prio_c", [0.01, 0.02, 0.05, 0.1], train={"epochs": 2})
    store = tmp_path / "runs"
    with gate(tmp_path / "hold") as arrive:
        first = start(four_slots, Path(a.path), store, "--weight", "9", hold=tmp_path / "hold")
        assert len(arrive(4)) == 4
        urgent = start(four_slots, Path(c.path), store, "--priority", "1")
        wait_line(urgent, "running 4 cells")
    out_a, _ = finish(first), finish(urgent)
    rows_a = check_cells(a, store, 5)
    check_cells(c, store, 2)
    assert all(r["resumed_epoch"] for r in rows_a.values()), out_a  # all four yielded
    reports = [r for r in history() if r["grid"] in ("prio_a", "prio_c")]
    both = [s for s in states(reports) if len(s) == 2]
    assert any(s["prio_a"]["allowed"] == 0 and s["prio_c"]["allowed"] == 4 for s in both)
    assert any(s["prio_a"]["held"] == 0 and s["prio_c"]["held"] == 4 for s in both), reports
    emptied = False
    for r in (r for r in reports if r["grid"] == "prio_a"):
        emptied = emptied or (r["allowed"] == 0 and r["held"] == 0)
        if emptied and r["allowed"] == 0 and r["demand"] > 0:  # (0 at its very end)
            assert r["held"] == 0, r


def test_a_launch_goes_on_when_the_arbiter_dies_and_registers_again(
    four_slots, tmp_path, tiny_spec
):
    spec = tiny_spec("alone", [0.01, 0.02, 0.05, 0.1], train={"epochs": 3})
    store = tmp_path / "runs"
    with gate(tmp_path / "hold") as arrive:
        proc = start(four_slots, Path(spec.path), store, hold=tmp_path / "hold")
        assert len(arrive(4)) == 4
        before = [r for r in history() if r["grid"] == "alone"]
        # `grid status --cluster --json`, as the program: the grid, its owner and counts
        listed = subprocess.run(
            [sys.executable, "-m", "orchestrator.cli", "status", "--cluster", "--json"]
            + ["--address", four_slots.address],
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            capture_output=True,
            text=True,
        )
        assert listed.returncode == 0, listed.stderr
        (row,) = [r for r in json.loads(listed.stdout) if r["grid"] == "alone"]
        assert row["owner"] == getpass.getuser() and row["weight"] == 1 and row["priority"] == 0
        assert row["cells_done"] == 0 and row["cells_left"] == 4 and row["allowed"] == 4
        killed = time.time()
        ray.kill(arbiter.connect(create=False), no_restart=False)  # Ray restarts it, empty
    finish(proc)
    check_cells(spec, store, 3)
    assert before  # it had registered
    again = [r for r in history() if r["grid"] == "alone"]
    assert again and min(r["seen"] for r in again) > killed  # the restarted one's records
    assert again[-1]["cells_done"] == 4 and again[-1]["demand"] == 0
