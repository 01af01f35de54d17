"""A launch's part in the cluster's fair share, as a Tune scheduler around the launch's own
(Tune's FIFO, or a halving's): it reports to the arbiter (`arbiter.py`) and holds the
launch to the share it gets back.

- **Fewer trials than its share**: the search (`scheduler.SlotLimit`) creates a new trial
  only while the launch's live trials are fewer than its share; Tune starts it on the next
  free slot. With no other grid waiting, the share is every slot the launch can use.
- **Over its share** (another grid came, or one of higher priority): at each trial's next
  epoch boundary (`on_trial_result`), while it holds more than its share, the trial is
  PAUSED, as the synchronous halving pauses a trial at a rung: Tune saves its checkpoint
  (`GridSlot.save_checkpoint`, to the store too) and frees its slot. Nothing is trained
  twice: the trial resumes from that checkpoint.
- **Its place kept**: a yielded trial resumes before any new trial of the launch starts
  (it counts among the live ones while it waits), as soon as the share has room again.

The share is asked again at each trial's result and at least every `REFRESH_S` (Tune asks
the scheduler what to run at every step of its loop, and the search for a trial every
second while none of the launch's trials is live). While the arbiter cannot be reached
the launch runs alone (no share), and reports again at the next refresh.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from ray.tune.experiment import Trial
from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from orchestrator.execution.arbiter import Client
from orchestrator.halving.scheduler import SlotLimit

REFRESH_S = 2.0  # how stale a launch's view of the shares may be: a yield waits this long


class FairShare(TrialScheduler):
    """The launch's scheduler (`inner`) held to the cluster's share (`client`)."""

    def __init__(
        self,
        inner: TrialScheduler | None,
        client: Client,
        units: dict[str, int],
        skipped: int = 0,
        clock: Callable[[], float] = time.monotonic,
    ):
        super().__init__()
        self.inner = inner or FIFOScheduler()
        self.client, self.clock = client, clock
        self.units, self.skipped = units, skipped  # {unit label: its cells}, cells finished before
        self.slots = SlotLimit()
        self.done: set[str] = set()  # unit labels whose trial ended
        self.yields = 0  # trials paused to yield a slot, in this launch
        self.last = None  # when the share was last asked
        self.controller = None  # Tune's, as its last call gave it: whose trials run
        self.started = clock()

    def __getstate__(self):  # Tune may pickle its scheduler; the client stays in the driver
        return {**self.__dict__, "client": None, "slots": None}

    def searcher(self, max_concurrent: int | None) -> SlotLimit:
        """The experiment's search: the inner scheduler's slot limit, or one of its own."""
        if hasattr(self.inner, "searcher"):
            self.slots = self.inner.searcher(max_concurrent)
        else:
            self.slots = SlotLimit(max_concurrent=max_concurrent or 0)
        # Tune waits for the search alone while none of its trials is live: the search
        # asks for the share then (else a launch held at 0 would never hear it grew)
        self.slots.ask = self.refresh
        self.refresh(force=True)  # the share before Tune creates its first trials
        return self.slots

    # -- Tune's calls, passed to the inner scheduler -----------------------------------------
    @property
    def metric(self):
        return self.inner.metric

    @property
    def stops(self) -> dict:
        """The halving's decisions, by cell (experiment.TuneProgress shows them)."""
        return getattr(self.inner, "stops", {})

    def set_search_properties(self, metric, mode, **spec) -> bool:
        return self.inner.set_search_properties(metric, mode, **spec)

    def on_trial_add(self, tune_controller, trial) -> None:
        self.inner.on_trial_add(tune_controller, trial)

    def on_trial_error(self, tune_controller, trial) -> None:
        self._ended(trial)
        self.inner.on_trial_error(tune_controller, trial)

    def on_trial_complete(self, tune_controller, trial, result) -> None:
        self._ended(trial)
        self.inner.on_trial_complete(tune_controller, trial, result)
        self.refresh(force=True)

    def on_trial_remove(self, tune_controller, trial) -> None:
        self.slots.ended(trial.trial_id)
        self.inner.on_trial_remove(tune_controller, trial)

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        self.controller = tune_controller
        decision = self.inner.on_trial_result(tune_controller, trial, result)
        self.refresh(force=True)
        if decision == TrialScheduler.CONTINUE and self._over_share():
            self.slots.yielded.add(trial.trial_id)  # still live: it keeps its place
            self.yields += 1
            return TrialScheduler.PAUSE
        if decision == TrialScheduler.PAUSE and trial.trial_id not in self.slots.waiting:
            # paused by the inner scheduler for its own reasons (a halving frees its own):
            # its slot is free for the next cell, as under Tune alone, where a pending trial
            # runs before a paused one
            self.slots.free(trial.trial_id)
        return decision

    def choose_trial_to_run(self, tune_controller):
        self.controller = tune_controller
        self.refresh()
        for trial in tune_controller.get_trials():
            if trial.status == Trial.PAUSED and trial.trial_id in self.slots.yielded:
                if not self.slots.has_room():
                    return None
                self.slots.take(trial.trial_id)  # resumed first: its place in the order
                return trial
        trial = self.inner.choose_trial_to_run(tune_controller)
        if trial is not None and trial.trial_id in self.slots.waiting:
            self.slots.take(trial.trial_id)  # a paused trial resumed: it holds a slot again
        return trial

    def debug_string(self) -> str:
        return f"FairShare(share {self.slots.share}): {self.inner.debug_string()}"

    # -- the share --------------------------------------------------------------------------
    def refresh(self, force: bool = False) -> None:
        """Report to the arbiter and take its answer as the share (every `REFRESH_S`, or at
        once when `force`)."""
        now = self.clock()
        if not force and self.last is not None and now - self.last < REFRESH_S:
            return
        self.last = now
        left = len(self.units) - len(self.done)
        demand = max(0, left - len(self.slots.waiting))  # a trial at a rung wants no slot
        if self.slots.limit:
            demand = min(demand, self.slots.limit)
        done = sum(self.units[label] for label in self.done)
        share = self.client.report(
            demand=demand,
            held=self._running(),
            yielded=len(self.slots.yielded),
            cells_done=self.skipped + done,
            cells_left=sum(self.units.values()) - done,
            finish=self._finish(now, left),
        )
        # nothing left to start: no limit, so that the search can say it is done (Tune
        # ends the experiment only once its search found no further trial)
        self.slots.share = None if demand == 0 else share

    def _running(self) -> int:
        """The trials that hold a slot now (a trial told to yield holds it until paused)."""
        if self.controller is None:
            return 0
        return sum(
            t.status == Trial.RUNNING and t.trial_id not in self.slots.yielded
            for t in self.controller.get_trials()
        )

    def _over_share(self) -> bool:
        """More trials hold slots than the share: the next to reach an epoch yields. A trial
        created but not started (waiting for a slot) does not count: it yields nothing."""
        return self.slots.share is not None and self._running() > self.slots.share

    def _ended(self, trial) -> None:
        self.done.add(trial.config["cell"])
        self.slots.ended(trial.trial_id)

    def _finish(self, now: float, left: int) -> float | None:
        """The estimated finish (epoch seconds): the units left at the rate units have
        ended so far; None before the first one ends."""
        if not self.done:
            return None
        return time.time() + (now - self.started) / len(self.done) * left
