"""The cluster's arbiter: one detached, named Ray actor (`grid-arbiter` in the `grid`
namespace) that every launch on the cluster reports to, and that answers each with the
trials it may run now (`orchestrator/planning/share.py`: weighted fair share, priority
first). Nothing of ours runs beside Ray: the actor lives in the cluster (the GCS keeps its
name), the first launch creates it, and Ray restarts it if its process dies.

A report carries everything the arbiter knows of a launch (grid, owner, weight, priority,
the resource a trial takes, its demand, the trials it holds, cells done and left, its
estimated finish), so the arbiter keeps no state that a restart could lose: a restarted (or
re-created) arbiter knows every launch again at its next report. A launch that stops
reporting for `EXPIRE_S` is dropped (a killed driver's slots go back to the others); one
that ends says so (`leave`).

If the arbiter cannot be reached (dead, restarting, or slower than `TIMEOUT_S`), the launch
runs alone, as before there was an arbiter, and reports again at its next refresh: Ray
brings the arbiter back, or the launch creates it again.
"""

from __future__ import annotations

import collections
import logging
import os
import time
from typing import Any

import ray

from orchestrator.planning.share import Claim, allocate
from trainers.errors import GridError

NAME, NAMESPACE = "grid-arbiter", "grid"
TIMEOUT_S = 10.0  # a report's answer; longer, and the launch runs alone until the next one
# A launch reports at least every few seconds (fairshare.REFRESH_S) while it runs; after a
# minute of silence its driver is gone (killed, or its node lost), and its slots with it.
EXPIRE_S = 60.0
HISTORY = 10_000  # reports kept for `history` (a few hundred bytes each)


@ray.remote(num_cpus=0, max_restarts=-1)
class Arbiter:
    """The actor: {launch id: its last report}, and the shares of the launches in it."""

    def __init__(self, expire_s: float = EXPIRE_S):
        self.launches: dict[str, dict[str, Any]] = {}
        self.expire_s = expire_s
        # the last reports, in order, with the share each got: what `history` shows
        self.reports: collections.deque = collections.deque(maxlen=HISTORY)

    def report(self, entry: dict[str, Any]) -> int:
        """Record a launch's report; the trials it may run now. A launch of the same grid
        and store replaces any earlier one: the grid's lease allows one at a time, so the
        earlier was killed (its slots go back at once, not after `EXPIRE_S`)."""
        for key in [
            k
            for k, e in self.launches.items()
            if k != entry["id"] and (e["grid"], e["store"]) == (entry["grid"], entry["store"])
        ]:
            del self.launches[key]
        self.launches[entry["id"]] = {**entry, "seen": time.time()}
        allowed = self._allowed()[entry["id"]]
        self.reports.append({**entry, "seen": time.time(), "allowed": allowed})
        return allowed

    def history(self) -> list[dict[str, Any]]:
        """The last `HISTORY` reports since this actor started, oldest first."""
        return list(self.reports)

    def leave(self, launch_id: str) -> None:
        self.launches.pop(launch_id, None)

    def snapshot(self) -> list[dict[str, Any]]:
        """Every launch's last report with its share (`allowed`), highest priority first."""
        allowed = self._allowed()
        rows = [{**e, "allowed": allowed[k]} for k, e in self.launches.items()]
        return sorted(rows, key=lambda r: (-r["priority"], r["since"]))

    def _allowed(self) -> dict[str, int]:
        now = time.time()
        for key in [k for k, e in self.launches.items() if now - e["seen"] > self.expire_s]:
            del self.launches[key]
        claims = [
            Claim(
                grid=key,
                demand=e["demand"],
                weight=e["weight"],
                priority=e["priority"],
                size=e["size"],
                pool=e["pool"],
                since=e["since"],
            )
            for key, e in self.launches.items()
        ]
        return allocate(claims, ray.cluster_resources())


def connect(create: bool = True):
    """The arbiter's handle: the running one, else (`create`) a new one; None when there is
    none and `create` is False."""
    try:
        return ray.get_actor(NAME, namespace=NAMESPACE)
    except ValueError:
        if not create:
            return None
    return Arbiter.options(
        name=NAME, namespace=NAMESPACE, lifetime="detached", get_if_exists=True
    ).remote()


class Client:
    """A launch's side: `report(...)` sends what it holds and wants and returns its share,
    or None while the arbiter cannot be reached (the launch runs alone)."""

    def __init__(self, info: dict[str, Any], say=None, connect=connect):
        self.info = {**info, "since": time.time()}  # id, grid, owner, weight, priority, ...
        self.say = say or (lambda text: None)
        self.connect = connect
        self.handle = None
        self.alone = False

    def report(self, **state: Any) -> int | None:
        try:
            if self.handle is None:
                self.handle = self.connect()
            allowed = ray.get(self.handle.report.remote({**self.info, **state}), timeout=TIMEOUT_S)
        except Exception as e:  # noqa: BLE001 - dead, restarting, slow: the launch goes on
            self.handle = None
            if not self.alone:
                self.say(
                    f"the cluster's arbiter cannot be reached ({type(e).__name__}): "
                    "this launch runs alone until it is back"
                )
            self.alone = True
            return None
        if self.alone:
            self.say("the cluster's arbiter is back: this launch shares the cluster again")
        self.alone = False
        return allowed

    def leave(self) -> None:
        try:
            handle = self.handle or self.connect(create=False)
            if handle is not None:
                ray.get(handle.leave.remote(self.info["id"]), timeout=TIMEOUT_S)
        except Exception:  # noqa: BLE001 - it expires anyway
            pass


def cluster_launches(address: str | None = None) -> list[dict[str, Any]] | None:
    """Every launch the arbiter of the cluster at `address` (default RAY_ADDRESS, else the
    one `ray start` left on this machine) knows, with its share: `grid status --cluster`.
    None when the cluster has no arbiter (no launch since it started)."""
    from orchestrator.execution import session

    if ray.is_initialized():  # a caller connected already (a test, a notebook)
        return _snapshot()
    address = address or os.environ.get("RAY_ADDRESS") or "auto"
    if address != "auto":
        session.check_reachable(address)
    try:
        ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise GridError(
            f"--address {address}: cannot join Ray: {' '.join(str(e).split())}"
        ) from None
    try:
        return _snapshot()
    finally:
        ray.shutdown()


def _snapshot() -> list[dict[str, Any]] | None:
    handle = connect(create=False)
    if handle is None:
        return None
    try:
        return ray.get(handle.snapshot.remote(), timeout=TIMEOUT_S)
    except Exception as e:  # noqa: BLE001 - restarting, or dead for good
        raise GridError(f"the cluster's arbiter did not answer ({type(e).__name__})") from None
