"""What a launch reads from the store: the grid's statuses once before its trials (and once
after, for its report), not again under the lease unless another launch held the grid in
between; a launch with nothing to run lists `trials/` once and starts nothing. And every row
the driver writes (a failure of a trial that died without writing one) carries the lease's
generation and is fenced like the trials' rows."""

from __future__ import annotations

import io
from types import SimpleNamespace

import pytest
from rich.console import Console

from orchestrator.execution import launch
from orchestrator.spec.expand import expand
from results.store import open_store, prune
from results.store.lease import Lease, peek, unchanged_since
from tests.results.conftest import fake_summary
from tests.results.test_commit import write


def quiet() -> tuple[Console, io.StringIO]:
    buf = io.StringIO()
    return Console(file=buf, width=200, color_system=None), buf


def test_a_launch_with_nothing_to_run_lists_trials_once(tiny_spec, s3_uri, monkeypatch):
    spec = tiny_spec("done", [0.05, 0.1])
    writer = open_store(s3_uri)
    for cell in expand(spec):
        write(writer, cell, fake_summary())
    prune.prune(writer, "done")  # as a launch leaves the grid: the index
    calls: list[str] = []
    real = open_store

    def counted(uri):
        store = real(uri)
        store.client.meta.events.register(
            "before-call.s3", lambda model, **kw: calls.append(model.name)
        )
        return store

    monkeypatch.setattr(launch, "open_store", counted)
    out, buf = quiet()
    assert launch.launch(spec, store_uri=s3_uri, console=out) == 0
    assert "all 2 cells are finished" in buf.getvalue()
    # the write probe (a PUT and a DELETE), the lease's state, one listing; the rows come
    # from this machine's cache (the prune above read them), else from the index: one GET
    assert sorted(calls) == ["DeleteObject", "GetObject", "ListObjectsV2", "PutObject"]


def test_the_statuses_read_before_the_lease_hold_unless_a_launch_came_between(tmp_path):
    store = open_store(str(tmp_path / "runs"))

    def acquired() -> Lease:
        lease = Lease(store, "g")
        lease.acquire()
        return lease

    seen = peek(store, "g")  # no lease yet: the first launch creates it
    first = acquired()
    assert seen is None and unchanged_since(seen, first)
    first.release()
    seen = peek(store, "g")
    second = acquired()  # nobody came between: the read before the lease still holds
    assert seen == (1, True) and unchanged_since(seen, second)
    second.release()
    seen = peek(store, "g")
    acquired().release()  # another launch ran (and wrote) between our read and our lease
    assert not unchanged_since(seen, acquired())


def test_the_driver_s_failure_rows_carry_the_generation_and_are_fenced(tiny_spec, tmp_path):
    spec = tiny_spec("drv", [0.05, 0.1])
    a, b = expand(spec)
    store = open_store(str(tmp_path / "runs"))
    now = [1000.0]
    mine = Lease(store, "drv", clock=lambda: now[0], stale_s=10)
    mine.acquire()

    def died(cell):  # a Tune result whose trial died without writing its failure
        return SimpleNamespace(
            error=RuntimeError("node died"), metrics={}, config={"cell": cell.key}
        )

    out, buf = quiet()
    assert launch._finish(spec, store, [[a]], [died(a)], "2000", out, mine) == 1
    assert [(r["key"], r["generation"]) for r in store.read_failures("drv").to_pylist()] == [
        (a.key, 1)
    ]
    now[0] += 11  # this launch's heartbeat stopped: another one takes the grid over
    thief = Lease(store, "drv", clock=lambda: now[0], stale_s=10)
    thief.acquire()
    assert launch._finish(spec, store, [[b]], [died(b)], "2000", out, mine) == 1
    assert f"failure of {b.key} not recorded" in buf.getvalue()
    assert "another launch took the grid over" in buf.getvalue()
    store.forget()
    assert [r["key"] for r in store.read_failures("drv").to_pylist()] == [a.key]


@pytest.mark.ray
def test_a_launch_reads_the_statuses_once_before_its_trials(
    tiny_spec, tmp_path, monkeypatch, ray_cluster
):
    spec = tiny_spec("once", [0.05, 0.1], train={"epochs": 1})
    done, todo = expand(spec)
    uri = str(tmp_path / "runs")
    write(open_store(uri), done, fake_summary(epochs=1))
    scans: list[str] = []
    real = open_store

    def counted(u):
        store = real(u)
        scan = store.scan_objects
        store.scan_objects = lambda folder: (scans.append(folder), scan(folder))[1]
        return store

    monkeypatch.setattr(launch, "open_store", counted)
    out, buf = quiet()
    assert launch.launch(spec, store_uri=uri, address=ray_cluster.address, console=out) == 0, (
        buf.getvalue()
    )
    assert "skipping 1 finished cells" in buf.getvalue()
    # the rows: once before the trials (the lease found no launch in between), once after
    # for the report; the whole grid: once by each pruning, at the start and at the end
    assert scans.count("once/trials") == 2, scans
    assert scans.count("once") == 2, scans
    assert set(open_store(uri).statuses("once").values()) == {"completed"}
    assert todo.key in open_store(uri).statuses("once")


def test_status_lists_trials_once_and_shows_the_size_the_last_launch_counted(
    tiny_spec, s3_uri, monkeypatch, tmp_path
):
    from orchestrator.cli.status import status_command

    spec = tiny_spec("sized", [0.05, 0.1])
    writer = open_store(s3_uri)
    for cell in expand(spec):
        write(writer, cell, fake_summary())
    out, buf = quiet()
    assert status_command(spec, writer, console=out) == 0  # no count yet: counted now
    assert "store: 4 objects, " in buf.getvalue() and "counted by" not in buf.getvalue()
    prune.prune(writer, "sized")
    monkeypatch.setenv("GRID_CACHE_DIR", str(tmp_path / "another-machine"))
    calls: list[str] = []
    store = open_store(s3_uri)
    store.client.meta.events.register(
        "before-call.s3", lambda model, **kw: calls.append(model.name)
    )
    out, buf = quiet()
    assert status_command(spec, store, console=out) == 0
    text = buf.getvalue()
    assert "2 completed" in text
    # 2 rows, 2 curves, the rows' index and the usage record
    assert "store: 6 objects, " in text and "(counted by the last launch, " in text
    # one listing of trials/; the usage record, the lease, the rows' index (a new machine)
    assert sorted(calls) == ["GetObject"] * 3 + ["ListObjectsV2"], calls


def test_an_interrupted_launch_says_how_far_each_cell_got_and_that_it_resumes(tiny_spec, tmp_path):
    """Ctrl-C: Tune ends the trials and returns their last reports; each unfinished cell is
    listed with the epochs it trained and what the next launch does with it (it said "did
    not run (interrupted)" of a cell 119 epochs into 120)."""
    spec = tiny_spec("ctrlc", [0.05, 0.1, 0.2], train={"epochs": 120})
    a, b, c = expand(spec)
    store = open_store(str(tmp_path / "runs"))

    def stopped(cell, **metrics):  # Tune's result of a trial ended by the interrupt
        return SimpleNamespace(error=None, metrics=metrics, config={"cell": cell.key})

    results = [
        stopped(a, epoch=119, epochs=120, checkpoint_epoch=118),
        stopped(b, epoch=2, epochs=120, checkpoint_epoch=0),
        stopped(c),
    ]
    out, buf = quiet()
    assert launch._finish(spec, store, [[a], [b], [c]], results, "2000", out) == 1
    said = buf.getvalue()
    assert (
        f"{a.key} lr=0.05: interrupted after 119 of 120 epochs; the next launch resumes it "
        "from its checkpoint of epoch 118" in said
    )
    assert f"{b.key} lr=0.1: interrupted after 2 of 120 epochs; no checkpoint yet" in said
    assert f"{c.key} lr=0.2: interrupted before its first epoch; the next launch runs it" in said
    assert "did not run" not in said


def test_a_node_that_left_before_its_data_check_is_said():
    out, buf = quiet()
    launch._say_nodes(["10.0.0.1: cifar10 at /data: ok", "10.0.0.2: left the cluster (X)"], out)
    assert buf.getvalue().splitlines() == [
        "data: 10.0.0.1: cifar10 at /data: ok",
        "data: 10.0.0.2: left the cluster (X)",
    ]
