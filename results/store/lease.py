"""One launch per grid and store at a time: a lease object in the store.

`<store>/<grid>/_lease.json` names the launch that holds the grid (host, pid, start, and a
heartbeat the holder refreshes every HEARTBEAT_S). It is created atomically (O_EXCL-style
link locally, a conditional PUT `If-None-Match: *` on S3), refreshed and released with
compare-and-swap (`If-Match` on S3, a file lock locally), so two launches never both hold it.

A lease whose holder is gone is taken over: at once when the holder ran on this host and its
pid is dead (a SIGKILLed `grid launch`), else once its heartbeat is older than STALE_S (the
holder's machine died). An S3-compatible server that ignores the conditions (an old MinIO)
is caught by reading the lease back after writing it: of two racing launches only the one
whose token is there goes on.

Each acquisition bumps the lease's `generation` (1, 2, ...): the launch passes it to its
trials, every write of a result carries it, and the store refuses a write whose generation
is older than the lease's (`results.store.base.Store._fence`): a launch that lost its lease (a
laptop asleep past STALE_S, an S3 outage) replaces nothing. So that the count survives, a
release does not delete the object but marks it `released` (with its generation); a
released lease is free to take. A holder that finds the lease taken sets `lost`: the launch
stops starting trials and exits 1.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timezone

from results.store.base import LEASE, Store
from trainers.errors import GridError

HEARTBEAT_S = 15.0
STALE_S = 120.0  # 8 missed heartbeats: a driver paused by a loaded machine is not dead


class LeaseHeld(GridError):
    """Another launch holds the grid's lease."""


def _now_iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="seconds")


def _ago(seconds: float) -> str:
    s = max(0, round(seconds))
    return f"{s} s" if s < 120 else f"{s // 60} min"


def describe(holder: dict, now: float) -> str:
    """'host (pid 123) since 2026-...Z, heartbeat 5 s ago'."""
    return (
        f"{holder.get('host')} (pid {holder.get('pid')}) since {holder.get('started')}, "
        f"heartbeat {_ago(now - holder.get('heartbeat', 0))} ago"
    )


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def why_stale(holder: dict, now: float, stale_s: float = STALE_S) -> str | None:
    """Why a lease's holder is gone (None while it may be alive)."""
    if holder.get("host") == socket.gethostname() and not _pid_alive(int(holder.get("pid", 0))):
        return f"its process {holder.get('pid')} on this host is gone"
    age = now - float(holder.get("heartbeat", 0))
    if age > stale_s:
        return f"no heartbeat for {_ago(age)} (more than {stale_s:g} s)"
    return None


def read_holder(store: Store, grid: str) -> dict | None:
    """The lease of `grid` as a dict (None when no launch holds it)."""
    found = _read(store, grid)
    return None if found is None or found.get("released") else found


def peek(store: Store, grid: str) -> tuple[int, bool] | None:
    """(generation, released) of the grid's lease, None when it has none: one GET. A launch
    peeks before it reads the statuses; if its `Lease.found` is the same released lease (or
    none), no launch wrote in between, and the statuses it read still hold."""
    found = _read(store, grid)
    return None if found is None else _state(found)


def unchanged_since(seen: tuple[int, bool] | None, lease: Lease) -> bool:
    """Whether no launch held the grid between `peek` (`seen`) and `lease`'s acquisition."""
    return seen == lease.found and (seen is None or seen[1])


def _state(holder: dict) -> tuple[int, bool]:
    return int(holder.get("generation") or 0), bool(holder.get("released"))


def _read(store: Store, grid: str) -> dict | None:
    """The lease object as a dict, released or not (None when there is none)."""
    found = store.read_tagged(f"{grid}/{LEASE}")
    return None if found is None else _parse(found[0])


def _parse(data: bytes) -> dict:
    try:
        return json.loads(data)
    except ValueError:
        return {"host": "?", "pid": 0, "started": "?", "heartbeat": 0}  # a torn foreign file


class Lease:
    """The lease of one grid in one store, for one launch."""

    def __init__(
        self,
        store: Store,
        grid: str,
        *,
        clock: Callable[[], float] = time.time,
        stale_s: float = STALE_S,
    ):
        self.store, self.grid, self.clock, self.stale_s = store, grid, clock, stale_s
        self.name = f"{grid}/{LEASE}"
        self.token = uuid.uuid4().hex
        now = clock()
        self.body = {
            "grid": grid,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "started": _now_iso(now),
            "heartbeat": now,
            "token": self.token,
            "generation": 1,
        }
        self.tag: str | None = None
        self.lost = threading.Event()  # set when another launch took the lease
        self.found: tuple[int, bool] | None = None  # what `acquire` found: see `peek`

    @property
    def generation(self) -> int:
        """This launch's generation: what its writes carry."""
        return int(self.body["generation"])

    def settled(self, *, ended: bool = False) -> Callable[[int], bool]:
        """Which lease generations have no writer left, as far as this launch knows (for
        pruning: results/store/prune.py, `stale_curves`): every one before its own when the
        lease it took had been released (or there was none), none when it took over a stale
        lease (that launch may still be writing somewhere); and its own once its trials
        `ended`."""
        clean = self.found is None or self.found[1]
        mine = self.generation
        return lambda g: (clean and g < mine) or (ended and g == mine)

    def _data(self) -> bytes:
        return json.dumps(self.body, sort_keys=True).encode()

    def acquire(self) -> str | None:
        """Take the lease; returns a line saying whose stale lease was taken over, if one
        was. LeaseHeld naming the holder when a live launch holds it."""
        if self.store.create(self.name, self._data()):
            self.found = None
            return self._confirm(None)
        found = self.store.read_tagged(self.name)
        if found is None:  # released between the two calls
            return self.acquire()
        holder, tag = _parse(found[0]), found[1]
        self.found = _state(holder)
        now = self.clock()
        self.body["generation"] = int(holder.get("generation") or 0) + 1
        why = "released" if holder.get("released") else why_stale(holder, now, self.stale_s)
        if why is None:
            raise LeaseHeld(
                f"grid {self.grid} in store {self.store.uri} is being launched by "
                f"{describe(holder, now)}; wait for it (`grid launch --wait`) or "
                f"watch it with `grid status`"
            )
        self.body["heartbeat"] = now
        if not self.store.replace_if(self.name, self._data(), tag):
            return self.acquire()  # someone else moved first: look again
        if why == "released":
            return self._confirm(None)
        return self._confirm(f"took over the lease of {describe(holder, now)}: {why}")

    def _confirm(self, said: str | None) -> str | None:
        found = self.store.read_tagged(self.name)
        if found is None or json.loads(found[0]).get("token") != self.token:
            holder = read_holder(self.store, self.grid) or {}
            raise LeaseHeld(
                f"grid {self.grid} in store {self.store.uri}: another launch took "
                f"the lease at the same moment ({describe(holder, self.clock())})"
            )
        self.tag = found[1]
        return said

    def refresh(self) -> bool:
        """Move the heartbeat on; False (and `lost` set) when the lease is no longer ours."""
        self.body["heartbeat"] = self.clock()
        if self.tag is None or not self.store.replace_if(self.name, self._data(), self.tag):
            self.lost.set()
            return False
        # The swap's new tag, read back. A takeover may land between the two requests: keep
        # a tag only with our own token in its body, else another launch's lease would be
        # taken for ours (and our release would then free it, issue 33).
        found = self.store.read_tagged(self.name)
        if found is None or _parse(found[0]).get("token") != self.token:
            self.tag = None
            self.lost.set()
            return False
        self.tag = found[1]
        return True

    def check(self) -> bool:
        """Whether the lease is still ours, by one read of it; sets `lost` when not."""
        if self.lost.is_set():
            return False
        found = self.store.read_tagged(self.name)
        if found is None or json.loads(found[0]).get("token") != self.token:
            self.lost.set()
            return False
        return True

    def release(self) -> None:
        """Give the lease back (only if it is still ours): marked released, its generation
        kept for the next launch to count on."""
        if self.tag is not None:
            body = {**self.body, "released": True, "heartbeat": self.clock()}
            self.store.replace_if(self.name, json.dumps(body, sort_keys=True).encode(), self.tag)
            self.tag = None


@contextlib.contextmanager
def held(
    lease: Lease,
    *,
    wait: bool = False,
    say: Callable[[str], None] = print,
    heartbeat_s: float = HEARTBEAT_S,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[Lease]:
    """The lease for the block, its heartbeat refreshed by a thread; with `wait`, wait for a
    live holder to finish instead of failing."""
    waiting = False
    while True:
        try:
            taken = lease.acquire()
            break
        except LeaseHeld as e:
            if not wait:
                raise
            if not waiting:
                say(f"waiting (--wait): {e}")
            waiting = True
            sleep(heartbeat_s)
    if taken:
        say(taken)
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(heartbeat_s):
            try:
                if not lease.refresh():
                    say(
                        f"lost the lease of grid {lease.grid} to another launch: "
                        "starting no more trials; this launch's results are refused"
                    )
                    return
            except GridError as e:  # a store hiccup: try again at the next beat
                say(f"warning: lease heartbeat failed: {e}")

    thread = threading.Thread(target=beat, name="grid-lease-heartbeat", daemon=True)
    thread.start()
    try:
        yield lease
    finally:
        stop.set()
        thread.join()
        lease.release()
