"""The halving of a launch as a Ray Tune scheduler (`orchestrator/halving.py` has the rule).

Tune's ASHA ranks every trial of an experiment against every other; a paper table needs the
ranking per row. `RowHalving` is a FIFO scheduler whose `on_trial_result` judges a trial at
each rung against its group's records only, and answers STOP when it falls below the
group's cutoff.

How a stop reaches the store: before answering STOP, the scheduler writes its decision to
the store (`Store.write_stop`). Tune then takes the trial away from its actor, which it
either keeps for the next trial (`reset_config`) or ends (`cleanup`); in both, the slot
ends the unit it was training (`orchestrator/slot.py`, `GridSlot._end`): it finds the
decision in the store and writes the cell as `stopped` (a trial taken away without one was
paused or interrupted, e.g. by Ctrl-C, and writes nothing). A relaunch clears the decisions
of the cells it runs, so a decision whose cell never wrote its row is taken again, against
the same records.
"""

from __future__ import annotations

from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from orchestrator.halving import Rungs
from results.store import Store


def reported_scores(result: dict) -> dict[int, float]:
    """{rung: score} from a trial's result: Tune hands the scheduler the result flattened,
    so the trial's `rungs: {"2": 0.61}` arrives as `rungs/2`."""
    return {
        int(k.split("/", 1)[1]): float(v)
        for k, v in result.items()
        if k.startswith("rungs/") and v is not None
    }


class RowHalving(FIFOScheduler):
    """Successive halving within each table row, with the asynchronous rule: trials run in
    the grid's order (FIFO), none waits for its peers, and each is judged once per rung."""

    def __init__(self, rungs: Rungs, store: Store, grid: str):
        super().__init__()
        self.rungs, self.store, self.grid = rungs, store, grid
        self.stops: dict[str, dict] = {}  # {cell key: decision} of this launch

    def __getstate__(self):  # Tune may pickle its scheduler; the store stays in the driver
        return {**self.__dict__, "store": None}

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        decision = self.rungs.judge(trial.config["cell"], reported_scores(result))
        if decision is None:
            return TrialScheduler.CONTINUE
        self.store.write_stop(self.grid, decision["key"], decision)
        self.stops[decision["key"]] = decision
        return TrialScheduler.STOP

    def debug_string(self) -> str:
        rule = self.rungs.rule
        return (
            f"RowHalving: rungs {rule['rungs']}, keep {rule['keep']} by {rule['metric']}, "
            f"{len(set(self.rungs.groups.values()))} groups"
        )
