"""A launch's part in the cluster's fair share (`orchestrator/execution/fairshare.py`) without
a cluster: Tune's controller and the arbiter are stand-ins, so each decision (yield at an
epoch's end, resume a yielded trial first, create no trial past the share, run alone when
the arbiter is away) is checked step by step. The Ray tests are test_share_cluster.py."""

from __future__ import annotations

import json
import time
import unittest.mock
from dataclasses import dataclass, field

import ray
from ray.tune.experiment import Trial
from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from orchestrator.cli.cluster import cluster_command, rows
from orchestrator.cli.main import main
from orchestrator.execution.arbiter import Arbiter
from orchestrator.execution.fairshare import FairShare
from orchestrator.execution.submit import entrypoint
from orchestrator.halving.scheduler import SlotLimit


@dataclass
class FakeTrial:
    trial_id: str
    status: str = Trial.RUNNING
    config: dict = field(default_factory=dict)

    def __post_init__(self):
        self.config = {"cell": self.trial_id}


class FakeController:
    def __init__(self, trials):
        self.trials = trials

    def get_trials(self):
        return self.trials


class FakeClient:
    """The arbiter's answers, in turn (the last repeats); None: it cannot be reached."""

    def __init__(self, *shares):
        self.shares, self.reports = list(shares), []

    def report(self, **state):
        self.reports.append(state)
        return self.shares.pop(0) if len(self.shares) > 1 else self.shares[0]


def launch(share, n: int = 4, clock=lambda: 0.0):
    client = FakeClient(*share) if isinstance(share, tuple) else FakeClient(share)
    scheduler = FairShare(None, client, {f"t{i}": 1 for i in range(n)}, skipped=2, clock=clock)
    scheduler.searcher(None)
    return scheduler, client


def test_the_share_is_asked_before_tune_creates_a_trial_and_limits_creation():
    scheduler, client = launch(2)
    assert client.reports[0]["demand"] == 4 and client.reports[0]["held"] == 0
    assert client.reports[0]["cells_done"] == 2 and client.reports[0]["cells_left"] == 4
    slots = scheduler.slots
    assert slots.share == 2
    slots.live |= {"t0", "t1"}
    assert slots.blocked() and slots.next_trial() is None  # no third trial past the share


def test_over_its_share_a_trial_yields_at_its_epoch_end_and_resumes_first():
    scheduler, client = launch((4, 1))
    trials = [FakeTrial(f"t{i}") for i in range(3)]
    controller = FakeController(trials)
    scheduler.slots.live |= {t.trial_id for t in trials}
    # the arbiter now says 1: the first two to report an epoch yield, the third goes on
    assert scheduler.on_trial_result(controller, trials[0], {}) == TrialScheduler.PAUSE
    assert scheduler.on_trial_result(controller, trials[1], {}) == TrialScheduler.PAUSE
    assert scheduler.on_trial_result(controller, trials[2], {}) == TrialScheduler.CONTINUE
    assert scheduler.slots.yielded == {"t0", "t1"} and scheduler.yields == 2
    assert client.reports[-1]["held"] == 1 and client.reports[-1]["yielded"] == 2
    for t in trials[:2]:
        t.status = Trial.PAUSED
    # no room: neither resumes, nor does the search create a new trial
    assert scheduler.choose_trial_to_run(controller) is None
    assert scheduler.slots.next_trial() is None
    # the third ends: a yielded trial resumes, the first yielded first
    trials[2].status = Trial.TERMINATED
    scheduler.slots.on_trial_complete("t2")
    scheduler.on_trial_complete(controller, trials[2], {})
    assert scheduler.choose_trial_to_run(controller) is trials[0]
    assert scheduler.slots.yielded == {"t1"}


class PauseFirst(FIFOScheduler):
    """An inner scheduler that pauses t0 at its first result, for its own reasons."""

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        return TrialScheduler.PAUSE if trial.trial_id == "t0" else TrialScheduler.CONTINUE


def test_a_trial_its_own_scheduler_pauses_frees_its_slot_for_the_next_cell():
    """Under Tune alone a pending trial runs before a paused one (FIFO). A share of 1 must
    not turn that around: the paused trial frees its slot, the search creates the next
    trial, and FIFO runs that one first; the paused one takes its slot back on resuming."""
    client = FakeClient(1)
    scheduler = FairShare(PauseFirst(), client, {"t0": 1, "t1": 1})
    slots = scheduler.searcher(None)
    slots.live |= {"t0"}
    assert slots.blocked()
    first = FakeTrial("t0")
    controller = FakeController([first])
    assert scheduler.on_trial_result(controller, first, {}) == TrialScheduler.PAUSE
    first.status = Trial.PAUSED
    assert not slots.blocked() and slots.waiting == {"t0"}
    second = FakeTrial("t1", status=Trial.PENDING)
    slots.live.add("t1")  # the search created it
    controller.trials.append(second)
    assert scheduler.choose_trial_to_run(controller) is second
    second.status = Trial.TERMINATED
    slots.on_trial_complete("t1")
    scheduler.on_trial_complete(controller, second, {})
    assert scheduler.choose_trial_to_run(controller) is first
    assert slots.live == {"t0"} and slots.waiting == set()


def test_the_slot_limit_counts_its_own_live_trials():
    """`--max-concurrent` through the search's own count (not Tune's private one): a trial
    freed at a rung no longer counts, one taken back does."""
    slots = SlotLimit(max_concurrent=2)
    slots.live |= {"a", "b"}
    assert slots.blocked() and not slots.has_room()
    slots.free("a")
    assert not slots.blocked() and slots.has_room()
    slots.take("a")
    slots.on_trial_complete("b")
    assert slots.live == {"a"} and not slots.blocked()


def test_without_the_arbiter_the_launch_runs_alone():
    scheduler, _ = launch(None)
    assert scheduler.slots.share is None and not scheduler.slots.blocked()
    trials = [FakeTrial("t0"), FakeTrial("t1")]
    controller = FakeController(trials)
    assert scheduler.on_trial_result(controller, trials[0], {}) == TrialScheduler.CONTINUE


def test_with_nothing_left_to_start_the_share_no_longer_limits():
    """Tune ends an experiment once its search found no further trial: a share of 0 at the
    end must not keep it from looking."""
    scheduler, client = launch(0, n=1)
    trial = FakeTrial("t0", status=Trial.TERMINATED)
    scheduler.on_trial_complete(FakeController([trial]), trial, {})
    assert client.reports[-1]["demand"] == 0 and scheduler.slots.share is None


def test_a_yielded_trial_with_no_room_lets_tune_give_its_actor_back():
    scheduler, _ = launch(1)
    slots = scheduler.slots
    slots.live |= {"t0", "t1"}
    slots.yielded.add("t0")
    assert not slots.has_room() and slots.is_finished()  # Tune flushes its idle actor
    slots.share = 2
    assert slots.has_room() and not slots.is_finished()


def test_the_estimated_finish_follows_the_rate_of_finished_units():
    now = [0.0]
    scheduler, client = launch(4, clock=lambda: now[0])
    assert client.reports[-1]["finish"] is None
    now[0] = 100.0
    trial = FakeTrial("t0", status=Trial.TERMINATED)
    scheduler.on_trial_complete(FakeController([trial]), trial, {})
    left_s = client.reports[-1]["finish"] - time.time()
    assert 290 < left_s <= 300  # 3 units left at 100 s each


LAUNCHES = [
    {
        "grid": "big",
        "owner": "ada",
        "weight": 1.0,
        "priority": 0,
        "held": 1,
        "allowed": 1,
        "demand": 40,
        "yielded": 3,
        "cells_done": 10,
        "cells_left": 1990,
        "finish": 2_000_000_000.0,
        "pool": "GPU",
        "store": "s3://lab/grid",
    },
    {
        "grid": "small",
        "owner": "bo",
        "weight": 3.0,
        "priority": 1,
        "held": 3,
        "allowed": 3,
        "demand": 10,
        "yielded": 0,
        "cells_done": 0,
        "cells_left": 10,
        "finish": None,
        "pool": "GPU",
        "store": "s3://lab/grid",
    },
]


def test_status_cluster_lists_every_grid(capsys):
    from rich.console import Console

    assert cluster_command(LAUNCHES, console=Console(width=200)) == 0
    out = capsys.readouterr().out
    assert "big" in out and "ada" in out and "1 (1 GPU)" in out and "1990" in out
    assert "small" in out and "bo" in out and "3 (3 GPU)" in out
    assert "2033-05-18T03:33:20+00:00" in out  # the finish, in UTC
    assert cluster_command(LAUNCHES, as_json=True) == 0
    found = json.loads(capsys.readouterr().out)
    assert found == rows(LAUNCHES) and found[1]["finish"] is None
    assert cluster_command(None) == 0
    assert "no grid is running" in capsys.readouterr().out


def test_bad_share_flags_are_one_line_and_exit_2(tmp_path, capsys):
    from tests.orchestrator.conftest import write_spec

    spec = write_spec(tmp_path, "flags", [0.05])
    for args, words in (
        (["launch", str(spec), "--weight", "0"], "--weight 0"),
        (["launch", str(spec), "--weight", "nan"], "--weight nan"),
        (["status"], "give a spec"),
        (["status", str(spec), "--cluster"], "give no spec"),
    ):
        assert main(args) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and words in err and err.startswith("grid: error: ")


def test_a_submitted_launch_carries_its_share(tiny_spec):
    spec = tiny_spec("sub", [0.05])
    share = {"owner": "ada", "weight": 2.5, "priority": 1}
    command = entrypoint(
        spec,
        "s3://b/p",
        sets=[],
        smoke=False,
        force=False,
        wait=False,
        max_concurrent=None,
        share=share,
    )
    assert command.endswith("--owner ada --weight 2.5 --priority 1")


def test_while_tune_waits_for_its_search_the_share_is_asked_again():
    """With no trial live, Tune asks only the search (every second): a launch held at 0
    must still hear that its share grew."""
    now = [0.0]
    scheduler, client = launch((0, 2), clock=lambda: now[0])
    slots = scheduler.slots
    assert slots.share == 0 and slots.blocked()
    now[0] = 10.0  # past REFRESH_S
    slots.next_trial()
    assert slots.share == 2 and not slots.blocked()


def test_a_relaunch_of_the_same_grid_and_store_replaces_the_killed_one():
    arbiter = Arbiter.__ray_actor_class__()  # the class itself, without a cluster
    base = {"weight": 1.0, "priority": 0, "size": 1.0, "pool": "CPU", "since": 0.0}
    ray_resources = {"CPU": 2.0}
    with unittest.mock.patch.object(ray, "cluster_resources", lambda: ray_resources):
        killed = {**base, "id": "k", "grid": "g", "store": "s", "demand": 4}
        other = {**base, "id": "o", "grid": "g", "store": "elsewhere", "demand": 4}
        assert arbiter.report(killed) == 2
        assert arbiter.report(other) == 1  # the same grid in another store: its own launch
        assert arbiter.report({**killed, "id": "again"}) == 1
        assert {e["id"] for e in arbiter.snapshot()} == {"o", "again"}
