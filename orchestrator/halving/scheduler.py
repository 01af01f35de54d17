"""The halving of a launch as a Ray Tune scheduler (`orchestrator/halving/rule.py` has the rule).

Tune's ASHA and HyperBand rank every trial of an experiment against every other; a paper
table needs the ranking per row. `SyncRowHalving` (`rule: sync`, the default) pauses a trial
at each rung until its row has reached it, as Tune's HyperBandScheduler pauses a bracket,
and chooses which paused trial runs next; `RowHalving` (`rule: async`) is a FIFO scheduler
whose `on_trial_result` judges a trial at each rung against its group's records only, and
stops it when it falls below the group's cutoff.

How a stop reaches the store, under both rules: the decision is written to the store first
(`Store.write_stop`), then the trial is PAUSED (Tune saves its state, at the rung) and
resumed; its first step finds the decision and writes the cell as `stopped` from that state
without training (`orchestrator/execution/slot.py`, `_written_stopped`), and the trial ends
as done. Decided, written, then ended, as any result: never from the actor's clean-up,
which Ray cuts short when the experiment ends (an async stop written there was lost, and the
cell reported as interrupted: issue 33). A relaunch clears the decisions of the cells it
runs, so a decision whose cell never wrote its row is taken again, against the same records.

A decision that the store refuses for a while (an outage: `StoreUnreachable`) is written
again after waits that double (`write_decision`); one that could never be written is not
fatal to the launch: the cell trains on (a longer run, no lost result), the async rule judges
it again at its next result, and a line says so.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence

from ray.tune.experiment import Trial
from ray.tune.schedulers import FIFOScheduler, TrialScheduler
from ray.tune.search.basic_variant import BasicVariantGenerator

from orchestrator.halving.rule import Rungs
from orchestrator.halving.sync import decide
from results.store.base import Store, StoreError, StoreUnreachable

# Seconds between tries of a decision's write: 15.5 s in all, three times the longest S3
# outage of the fault campaign (2-5 s, docs/reliability.md); Tune's loop waits meanwhile.
STOP_WAITS = (0.5, 1.0, 2.0, 4.0, 8.0)


def write_decision(
    store: Store,
    grid: str,
    decision: dict,
    waits: Sequence[float] = STOP_WAITS,
    sleep: Callable[[float], None] = time.sleep,
) -> bool:
    """Write a halving's decision to stop a cell (`Store.write_stop`), again after each of
    `waits` while the store cannot be reached; False (with a line on stderr) when it could
    not be written, and the cell goes on."""
    key = decision["key"]
    for wait in (*waits, None):
        try:
            store.write_stop(grid, key, decision)
            return True
        except StoreUnreachable as e:
            error = e
            if wait is not None:
                sleep(wait)
        except StoreError as e:  # not an outage: another try would fail the same way
            error = e
            break
    print(
        f"{grid}: cell {key}: the halving's decision to stop it at epoch {decision['rung']} "
        f"could not be written ({error}); it trains on",
        file=sys.stderr,
        flush=True,
    )
    return False


def reported_scores(result: dict) -> dict[int, float]:
    """{rung: score} from a trial's result: Tune hands the scheduler the result flattened,
    so the trial's `rungs: {"2": 0.61}` arrives as `rungs/2`."""
    return {
        int(k.split("/", 1)[1]): float(v)
        for k, v in result.items()
        if k.startswith("rungs/") and v is not None
    }


class RowHalving(FIFOScheduler):
    """Successive halving within each table row, with the asynchronous rule (`rule:
    async`): trials run in the grid's order (FIFO), none waits for its peers, and each is
    judged once per rung."""

    def __init__(self, rungs: Rungs, store: Store, grid: str):
        super().__init__()
        self.rungs, self.store, self.grid = rungs, store, grid
        self.stops: dict[str, dict] = {}  # {cell key: decision} of this launch
        self.sleep = time.sleep  # between a decision's tries (a test's own clock)

    def __getstate__(self):  # Tune may pickle its scheduler; the store stays in the driver
        return {**self.__dict__, "store": None}

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        key = trial.config["cell"]
        taken = self.stops.get(key)
        if taken is not None:
            # A loser whose trial failed between the decision and its pause (a node or
            # worker lost) is retried from its newest checkpoint, which may be older than
            # the rung: it trains back to the rung, where the decision it got still stands
            # (its rung is judged already, and judging it again could let it pass: the
            # stop was lost, and the fault campaign counted fewer async stops under faults).
            # The decision is in the store: the resumed step writes it stopped.
            at = result.get("epoch", 0) >= taken["rung"]
            return TrialScheduler.PAUSE if at else TrialScheduler.CONTINUE
        before = set(self.rungs.judged.get(key, ()))
        decision = self.rungs.judge(key, reported_scores(result))
        if decision is not None and not write_decision(
            self.store, self.grid, decision, sleep=self.sleep
        ):
            self.rungs.judged[key].discard(decision["rung"])  # judged again next result
            decision = None
        if self.rungs.judged.get(key, set()) - before:
            stopped_at = decision["rung"] if decision else None
            self._write_record(key, self.rungs.record(key, stopped_at))
        if decision is None:
            return TrialScheduler.CONTINUE
        self.stops[key] = decision
        return TrialScheduler.PAUSE  # resumed by FIFO's choice: it writes itself as stopped

    def _write_record(self, key: str, record: dict) -> None:
        """The cell's rung record (`Store.write_rungs`), for a relaunch after a kill: one
        try, as it only informs later judgements; a line says when it could not be written."""
        try:
            self.store.write_rungs(self.grid, key, record)
        except StoreError as e:
            print(
                f"{self.grid}: cell {key}: its rung record could not be written ({e}); a "
                f"relaunch after a kill judges without it",
                file=sys.stderr,
                flush=True,
            )

    def debug_string(self) -> str:
        rule = self.rungs.rule
        return (
            f"RowHalving: rungs {rule['rungs']}, keep {rule['keep']} by {rule['metric']}, "
            f"{len(set(self.rungs.groups.values()))} groups"
        )


class SlotLimit(BasicVariantGenerator):
    """Tune's grid search with a limit that counts the trials that hold a slot (`live`): a
    trial paused at a rung, or by any scheduler's PAUSE, frees its slot for the next cell, so
    a row wider than the slots reaches its rung instead of waiting forever (Tune's own
    `max_concurrent` counts a paused trial as live until it ends). `SyncRowHalving` and
    `fairshare.FairShare` free and take the slots. The base search is given no limit of its
    own: the count is this class's, not Tune's private one.

    The search is not finished while a trial waits at a rung: Tune keeps a stopped trial's
    actor for the next trial (`reuse_actors`) only while more trials may come, so a search
    that ended when its last cell was created would make each resume start a new process
    (and import torch: seconds per resume, most of a small halved grid's time)."""

    def __init__(self, max_concurrent: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.limit = max_concurrent  # 0: no limit but the share's
        self.live: set[str] = set()  # created, not ended, and not paused
        self.waiting: set[str] = set()  # trials paused at a rung, not yet resumed or ended
        # The cluster's fair share (orchestrator/execution/fairshare.py): the trials this
        # launch may run now (None: as many as it likes), and those paused to yield a slot
        # to another grid. A yielded trial keeps its place among the live ones, so no new
        # trial starts before it resumes.
        self.share: int | None = None
        self.yielded: set[str] = set()
        self.ask = None  # asks the arbiter again (FairShare.refresh)

    def free(self, trial_id: str) -> None:
        self.live.discard(trial_id)
        self.waiting.add(trial_id)

    def take(self, trial_id: str) -> None:
        self.live.add(trial_id)
        self.waiting.discard(trial_id)
        self.yielded.discard(trial_id)

    def ended(self, trial_id: str) -> None:
        self.live.discard(trial_id)
        self.waiting.discard(trial_id)
        self.yielded.discard(trial_id)

    def on_trial_complete(self, trial_id: str, result=None, error: bool = False) -> None:
        self.live.discard(trial_id)
        super().on_trial_complete(trial_id, result=result, error=error)

    def running(self) -> int:
        """The trials that hold or want a slot now: live and not yielded."""
        return len(self.live - self.yielded)

    def blocked(self) -> bool:
        """No new trial: the limit, or the share, is taken by the live ones (yielded
        included: they keep their place)."""
        if self.limit and len(self.live) >= self.limit:
            return True
        return self.share is not None and len(self.live) >= self.share

    def next_trial(self):
        if self.blocked() and self.ask is not None:
            self.ask()  # Tune waits here, asking every second, while no trial is live
        if self.blocked():
            return None
        trial = super().next_trial()
        if trial is not None:
            self.live.add(trial.trial_id)
        return trial

    def is_finished(self) -> bool:
        # Held back by the share while a trial yielded, with no room to resume it: say
        # finished, so that Tune lets the yielded trial's actor go instead of keeping it idle
        # for the next trial (Tune keeps one actor, which holds a slot another grid waits
        # for). The experiment cannot end while the yielded trial is paused; once the share
        # grows, the search goes on.
        if self.yielded and not self.has_room():
            return True
        return super().is_finished() and not self.waiting and not self.yielded

    def has_room(self) -> bool:
        running = self.running()
        if self.share is not None and running >= self.share:
            return False
        return not self.limit or running < self.limit


class SyncRowHalving(FIFOScheduler):
    """Successive halving within each table row, with the synchronous rule
    (orchestrator/halving/sync.py): a trial that reaches a rung its row has not decided is
    PAUSED (Tune checkpoints it and frees its slot) until every cell of its row has reached
    the rung or finished. The rung is then decided from the scores alone; its winners are
    resumed (`choose_trial_to_run`) and go on; its losers' decisions are written to the
    store and they are resumed too, so that each writes itself as `stopped` from its own
    state without training (orchestrator/execution/slot.py): a row and its curves come from the same
    run, and nothing the driver holds is needed for a result."""

    def __init__(self, rungs: Rungs, store: Store, grid: str):
        super().__init__()
        self.rungs, self.store, self.grid = rungs, store, grid
        self.stops: dict[str, dict] = {}  # {cell key: decision} of this launch
        self.sleep = time.sleep  # between a decision's tries (a test's own clock)
        self.decisions: dict[tuple[str, int], dict] = {}  # {(group, rung): rowsync.decide}
        self.ended: set[str] = set()  # cells whose trial ended in this launch
        self.slots = SlotLimit()
        rows: dict[str, dict[str, list[str]]] = {}
        for key, group in rungs.groups.items():
            rows.setdefault(group, {}).setdefault(rungs.candidates[key], []).append(key)
        self.rows = rows

    def __getstate__(self):  # Tune may pickle its scheduler; the store stays in the driver
        return {**self.__dict__, "store": None, "slots": None}

    def searcher(self, max_concurrent: int | None) -> SlotLimit:
        """The experiment's search algorithm: its grid with the slot limit."""
        self.slots = SlotLimit(max_concurrent=max_concurrent or 0)
        return self.slots

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        key = trial.config["cell"]
        self.rungs.scores.setdefault(key, {}).update(reported_scores(result))
        self._decide(self.rungs.groups[key])
        if self._resumable(key) and key not in self.stops:
            return TrialScheduler.CONTINUE
        self.slots.free(trial.trial_id)  # waits at its rung, or lost it: resumed to write
        return TrialScheduler.PAUSE

    def on_trial_complete(self, tune_controller, trial, result: dict) -> None:
        self._ended(trial)

    def on_trial_error(self, tune_controller, trial) -> None:
        self._ended(trial)

    def on_trial_remove(self, tune_controller, trial) -> None:
        """A paused or pending trial removed: the launch is ending (Ctrl-C). Not a result:
        its row's rung is not decided without it."""
        self.slots.ended(trial.trial_id)

    def _ended(self, trial) -> None:
        key = trial.config["cell"]
        self.slots.ended(trial.trial_id)
        self.ended.add(key)
        self._decide(self.rungs.groups[key])

    def choose_trial_to_run(self, tune_controller):
        trials = tune_controller.get_trials()
        for trial in trials:
            if trial.status == Trial.PENDING:
                return trial
        if not self.slots.has_room():
            return None
        for trial in trials:
            if trial.status == Trial.PAUSED and self._resumable(trial.config["cell"]):
                self.slots.take(trial.trial_id)
                return trial
        return None

    def _resumable(self, key: str) -> bool:
        """Every rung the cell has reached is decided."""
        group = self.rungs.groups[key]
        return all((group, r) in self.decisions for r in self.rungs.scores.get(key, {}))

    def _decide(self, group: str) -> None:
        """Decide the group's rungs that can be, lowest first; write the losers' stops."""
        rule, candidates = self.rungs.rule, self.rows[group]
        ready = {
            k
            for keys in candidates.values()
            for k in keys
            if k not in self.rungs.running or k in self.ended
        }
        field = list(candidates)
        for rung in rule["rungs"]:
            decision = self.decisions.get((group, rung))
            if decision is None:
                decision = decide(
                    {c: candidates[c] for c in field},
                    self.rungs.scores,
                    ready,
                    rung,
                    rule["keep"],
                )
                if decision is None:
                    return
                self.decisions[(group, rung)] = decision
                self._stop_losers(group, field, decision, rung)
            field = decision["kept"]

    def _stop_losers(self, group: str, field: list[str], decision: dict, rung: int) -> None:
        for cand in field:
            if cand in decision["kept"]:
                continue
            for key in self.rows[group][cand]:
                if key not in self.rungs.running or key in self.ended:
                    continue
                stop = {
                    "key": key,
                    "rung": rung,
                    "metric": self.rungs.rule["metric"],
                    "score": self.rungs.scores.get(key, {}).get(rung),
                    "mean": decision["means"].get(cand),
                    "cutoff": decision["cutoff"],
                    "peers": decision["ranked"] - 1,
                    "rule": "sync",
                }
                if write_decision(self.store, self.grid, stop, sleep=self.sleep):
                    self.stops[key] = stop  # else it goes on as if kept

    def debug_string(self) -> str:
        rule = self.rungs.rule
        return (
            f"SyncRowHalving: rungs {rule['rungs']}, keep {rule['keep']} by "
            f"{rule['metric']}, {len(self.rows)} rows"
        )
