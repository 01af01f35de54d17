"""The launch lease, on a local folder and on moto's S3 server (which honours If-None-Match
and If-Match on PUT and DELETE, as S3 and MinIO do)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading

import pytest

from results.store.lease import LEASE, STALE_S, Lease, LeaseHeld, held, read_holder


def test_second_lease_is_refused_naming_the_holder(store):
    first = Lease(store, "g")
    assert first.acquire() is None
    with pytest.raises(LeaseHeld) as caught:
        Lease(store, "g").acquire()
    message = str(caught.value)
    holder = read_holder(store, "g")
    assert f"(pid {holder['pid']}) since {holder['started']}" in message
    assert holder["host"] in message and "--wait" in message
    assert Lease(store, "other-grid").acquire() is None  # one lease per grid
    first.release()
    assert read_holder(store, "g") is None
    second = Lease(store, "g")
    assert second.acquire() is None and read_holder(store, "g")["token"] == second.token


def test_stale_heartbeat_is_taken_over_and_the_old_holder_knows(store):
    now = [1000.0]
    old = Lease(store, "g", clock=lambda: now[0])
    old.acquire()
    now[0] += 10
    assert old.refresh()  # the heartbeat moves on
    assert read_holder(store, "g")["heartbeat"] == 1010.0
    now[0] += STALE_S - 1
    with pytest.raises(LeaseHeld):  # our own pid is alive: only the heartbeat can tell
        Lease(store, "g", clock=lambda: now[0]).acquire()
    now[0] += 2
    new = Lease(store, "g", clock=lambda: now[0])
    said = new.acquire()
    assert said.startswith("took over the lease of ") and "no heartbeat for" in said
    assert read_holder(store, "g")["token"] == new.token
    assert not old.refresh()  # the old holder lost it and is told so
    old.release()  # a no-op: it is not ours any more
    assert read_holder(store, "g")["token"] == new.token


def test_a_takeover_between_a_refreshs_swap_and_its_read_back_is_a_lost_lease(store, monkeypatch):
    """The heartbeat's compare-and-swap succeeds, then another launch takes the lease over
    before the refresh reads the new tag back: the refresh must not keep the taker's tag
    (it did, and its release then freed the taker's lease)."""
    now = [1000.0]
    old = Lease(store, "g", clock=lambda: now[0])
    old.acquire()
    taker = Lease(store, "g", clock=lambda: now[0] + STALE_S + 1)  # old's heartbeat: stale
    swap, done = store.replace_if, []

    def replace_if(name, data, tag):
        ok = swap(name, data, tag)
        if ok and not done and json.loads(data)["token"] == old.token:
            done.append(taker.acquire())  # between the swap and the read back
        return ok

    monkeypatch.setattr(store, "replace_if", replace_if)
    assert not old.refresh() and old.lost.is_set()
    assert done[0].startswith("took over the lease of ")
    old.release()  # not ours: leaves the taker's lease alone
    assert read_holder(store, "g")["token"] == taker.token
    assert not old.check() and taker.check() and taker.refresh()


def test_dead_holder_on_this_host_is_taken_over_at_once(store):
    proc = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    dead = Lease(store, "g")
    dead.body["pid"] = int(proc.stdout)  # a launch that was SIGKILLed: its pid is gone
    dead.acquire()
    said = Lease(store, "g").acquire()
    assert f"its process {int(proc.stdout)} on this host is gone" in said


def test_racing_launches_get_one_lease(store):
    barrier = threading.Barrier(4)
    won, lost = [], []

    def race():
        lease = Lease(store, "g")
        barrier.wait()
        try:
            lease.acquire()
            won.append(lease.token)
        except LeaseHeld:
            lost.append(lease.token)

    threads = [threading.Thread(target=race) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 1 and len(lost) == 3
    assert read_holder(store, "g")["token"] == won[0]


def test_held_waits_for_the_holder_and_releases_at_the_end(store):
    first = Lease(store, "g")
    first.acquire()
    said = []

    def sleep(_seconds):  # the holder finishes while the second launch waits
        first.release()

    with held(Lease(store, "g"), wait=True, say=said.append, sleep=sleep) as lease:
        assert read_holder(store, "g")["token"] == lease.token
    assert said and said[0].startswith("waiting (--wait): grid g in store")
    assert read_holder(store, "g") is None
    with pytest.raises(LeaseHeld):
        first.acquire() or Lease(store, "g").acquire()


def test_lease_file_is_not_a_result(local_store):
    lease = Lease(local_store, "g")
    lease.acquire()
    body = json.loads((local_store.root / "g" / LEASE).read_text())
    assert set(body) == {"grid", "host", "pid", "started", "heartbeat", "token", "generation"}
    assert local_store.read_trials("g").num_rows == 0 and local_store.list_grids() == []
