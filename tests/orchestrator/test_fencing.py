"""A launch that loses its lease (another launch took the grid over: its laptop slept past
the stale time, say) stops starting trials, says so, and exits 1; the rows its running
trials finish afterwards are refused by the store. Real Ray; the loss is arranged through
the store while a trial is held at a barrier (orchestrator/execution/hooks.py)."""

from __future__ import annotations

import pytest

from orchestrator.execution import hooks
from orchestrator.spec.expand import expand
from results.store import open_store
from results.store.lease import Lease
from tests.orchestrator.test_launch import arm_hold, launch_in_thread, release, wait_held


@pytest.mark.ray
def test_a_launch_that_loses_its_lease_stops_and_exits_1(
    tiny_spec, tmp_path, monkeypatch, ray_cluster
):
    spec = tiny_spec("lost", [0.05, 0.1], train={"epochs": 2})
    first, second = (c.key for c in expand(spec))
    folder = arm_hold(monkeypatch, tmp_path, first)
    # the second cell, if it ever trained an epoch, would leave a marker here
    monkeypatch.setenv(hooks.FAIL_INJECT_ENV, f"{second}:1:1")
    monkeypatch.setenv(hooks.FAIL_INJECT_DIR_ENV, str(tmp_path / "second-ran"))
    uri = str(tmp_path / "runs")
    thread, result, buf = launch_in_thread(
        spec=spec, store_uri=uri, address=ray_cluster.address, max_concurrent=1
    )
    try:
        assert wait_held(folder) == f"{first}:1"
        store = open_store(uri)
        thief = Lease(store, "lost", stale_s=-1)  # as if the launch's heartbeat had stopped
        assert "took over the lease" in thief.acquire()
        assert thief.generation == 2
    finally:
        release(folder)
        thread.join()
    out = buf.getvalue()
    assert result["rc"] == 1, out
    assert "lost the grid's lease to another launch and stopped" in out
    store.forget()
    assert store.statuses("lost") == {}  # the held cell's late row was refused
    assert [n for n in store.list_objects("lost/epochs") if n.endswith(".parquet")] == []
    assert not (tmp_path / "second-ran").exists()  # no trial started after the loss
    thief.release()
