"""The synchronous halving rule (orchestrator/rowsync.py) and its Tune scheduler
(orchestrator/scheduler.SyncRowHalving) without Ray: the scheduler is driven through Tune's
scheduler calls by a small stand-in for Tune's controller, which runs the trials it holds
in an order drawn from a seeded generator (as timing would), with as many slots as asked.
The real-Ray runs are in test_halving_sync.py."""

from __future__ import annotations

import random
from types import SimpleNamespace

import pytest
from ray.tune.experiment import Trial
from ray.tune.schedulers import TrialScheduler

from orchestrator.halving import Rungs
from orchestrator.rowsync import candidate_of, decide, kept, row_epochs
from orchestrator.scheduler import SyncRowHalving

RULE = {"over": ["train.lr"], "metric": "val_acc", "rungs": [2, 4], "keep": 0.5, "rule": "sync"}
LRS = [0.1, 0.05, 0.02, 0.01, 0.005, 0.002]


def test_kept_rounds_up_and_keeps_one():
    assert [kept(n, 0.5) for n in range(7)] == [0, 1, 1, 2, 2, 3, 3]
    assert kept(5, 0.25) == 2 and kept(1, 0.1) == 1


def test_a_decision_ranks_candidates_by_their_mean_over_seeds_ties_by_their_text():
    over = ["train.lr", "train.seed"]
    cells = {
        f"{lr}-{seed}": {"train.lr": lr, "train.seed": seed} for lr in LRS[:4] for seed in (0, 1)
    }
    cands: dict[str, list[str]] = {}
    for key, params in cells.items():
        cands.setdefault(candidate_of(params, over), []).append(key)
    assert len(cands) == 4  # the seeds of an lr are one candidate
    # lr 0.1: one seed best of all but a poor mean; 0.05 and 0.02 tie
    scores = {
        "0.1-0": {2: 0.9},
        "0.1-1": {2: 0.1},
        "0.05-0": {2: 0.6},
        "0.05-1": {2: 0.6},
        "0.02-0": {2: 0.7},
        "0.02-1": {2: 0.5},
        "0.01-0": {2: 0.55},
    }
    assert decide(cands, scores, set(), 2, 0.5) is None  # 0.01-1 is neither there nor done
    d = decide(cands, scores, {"0.01-1"}, 2, 0.5)  # it diverged: 0.01 is ranked by its seed 0
    assert d["kept"] == [candidate_of(cells["0.02-0"], over), candidate_of(cells["0.05-0"], over)]
    assert d["means"][candidate_of(cells["0.1-0"], over)] == pytest.approx(0.5)
    assert d["cutoff"] == pytest.approx(0.6) and d["ranked"] == 4


def test_row_epochs_count_each_rungs_kept():
    assert row_epochs([1] * 6, 8, [2, 4], 0.5) == 6 * 2 + 3 * 2 + 2 * 4
    assert row_epochs([3] * 4, 10, [2], 0.5) == 12 * 2 + 6 * 8  # two lrs of three seeds on


# -- the scheduler, driven as Tune drives it -------------------------------------------------
class Store:
    def __init__(self):
        self.stops: dict[str, dict] = {}

    def write_stop(self, grid, key, decision):
        self.stops[key] = decision


def accuracy(lr: float, epoch: int) -> float:
    """Higher lrs learn faster in these 8 epochs; every lr's curve rises."""
    return round(lr * 5 * epoch / (1 + lr * 5 * epoch), 6)


def simulate(lrs: list[float], slots: int, seed: int) -> tuple[dict, int]:
    """Run 2 rows x `lrs` x 8 epochs through SyncRowHalving; each turn, one trial holding
    a slot (drawn by `seed`) trains an epoch. Returns ({cell: (status, epochs)}, epochs)."""
    cells = [
        SimpleNamespace(key=f"{arch}-{lr}", params={"model.arch": arch, "train.lr": lr})
        for arch in ("a", "b")
        for lr in lrs
    ]
    store = Store()
    scheduler = SyncRowHalving(Rungs.from_epochs(RULE, cells, []), store, "g")
    limit = scheduler.searcher(slots)
    trials = [
        SimpleNamespace(config={"cell": c.key}, status=None, trial_id=c.key, epoch=0) for c in cells
    ]
    controller = SimpleNamespace(get_trials=lambda: [t for t in trials if t.status])
    queue, rng, out, trained = list(trials), random.Random(seed), {}, 0
    while len(out) < len(trials):
        while queue and limit.has_room():  # the searcher: a new trial per free slot
            t = queue.pop(0)
            t.status = Trial.PENDING
            limit.take(t.trial_id)
        chosen = scheduler.choose_trial_to_run(controller)
        if chosen is not None and chosen.status == Trial.PAUSED:
            chosen.status = Trial.PENDING
        running = [t for t in trials if t.status in (Trial.PENDING, Trial.RUNNING)]
        assert running, "deadlock: every trial waits"
        t = rng.choice(running)
        t.status = Trial.RUNNING
        key = t.config["cell"]
        if key in store.stops:  # a resumed loser writes itself stopped, trains nothing
            out[key] = ("stopped", t.epoch)
            t.status = Trial.TERMINATED
            limit.free(t.trial_id)
            scheduler.on_trial_complete(controller, t, {})
            continue
        t.epoch += 1
        trained += 1
        lr = float(key.split("-")[1])
        result = {"epoch": t.epoch}
        result.update({f"rungs/{r}": accuracy(lr, r) for r in (2, 4) if r <= t.epoch})
        if t.epoch == 8:
            out[key] = ("completed", 8)
            t.status = Trial.TERMINATED
            limit.free(t.trial_id)
            scheduler.on_trial_complete(controller, t, result)
        elif scheduler.on_trial_result(controller, t, result) == TrialScheduler.PAUSE:
            t.status = Trial.PAUSED
    return out, trained


def test_the_decisions_and_epochs_are_the_same_whatever_the_order_and_the_slots():
    reference, epochs = simulate(LRS, slots=1, seed=0)
    assert epochs == 2 * row_epochs([1] * 6, 8, [2, 4], 0.5) == 52
    completed = sorted(k for k, (s, _) in reference.items() if s == "completed")
    assert completed == ["a-0.05", "a-0.1", "b-0.05", "b-0.1"]  # 3 of 6 on at 2, 2 of 3 at 4
    assert {k: e for k, (s, e) in reference.items() if s == "stopped"} == {
        **{f"{a}-{lr}": 2 for a in "ab" for lr in LRS[3:]},
        **{f"{a}-0.02": 4 for a in "ab"},
    }
    for lrs in (LRS, LRS[::-1]):
        for slots in (1, 2, 3, 5, 12):
            for seed in range(3):
                assert simulate(lrs, slots, seed) == (reference, 52), (lrs, slots, seed)
