"""The synchronous halving rule (orchestrator/halving/sync.py) and its Tune scheduler
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

from orchestrator.halving.rule import Rungs
from orchestrator.halving.scheduler import SyncRowHalving
from orchestrator.halving.sync import candidate_of, decide, kept, row_epochs

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


def simulate(lrs, slots, seed, *, done=None, at=None, turns=None):
    """Run 2 rows x `lrs` x 8 epochs through SyncRowHalving: each turn, one trial holding a
    slot (drawn by `seed`) trains an epoch and reports, except that a trial (re)started at
    a rung epoch first reports it without training, as GridSlot does. `done`: the cells an
    earlier launch finished ({cell: (status, epochs)}), `at`: the epochs of the others'
    checkpoints; `turns`: stop there (a kill). Returns (done, epochs trained, at)."""
    cells = [
        SimpleNamespace(key=f"{arch}-{lr}", params={"model.arch": arch, "train.lr": lr})
        for arch in ("a", "b")
        for lr in lrs
    ]
    done, at = dict(done or {}), dict(at or {})
    stored = [  # the epoch rows of the finished cells
        {"key": k, "epoch": e, "val_acc": accuracy(lr_of(k), e)}
        for k, (_, n) in done.items()
        for e in range(1, n + 1)
    ]
    rungs = Rungs.from_epochs(RULE, cells, stored)
    rungs.running = {c.key for c in cells if c.key not in done}
    store = Store()
    scheduler = SyncRowHalving(rungs, store, "g")
    limit = scheduler.searcher(slots)
    trials = [
        SimpleNamespace(config={"cell": c.key}, status=None, trial_id=c.key, fresh=True)
        for c in cells
        if c.key in rungs.running
    ]
    controller = SimpleNamespace(get_trials=lambda: [t for t in trials if t.status])
    queue, rng, trained, turn = list(trials), random.Random(seed), 0, 0
    while any(t.status != Trial.TERMINATED for t in trials) and turn != turns:
        turn += 1
        while queue and limit.has_room():  # the searcher: a new trial per free slot
            t = queue.pop(0)
            t.status = Trial.PENDING
            limit.take(t.trial_id)
        chosen = scheduler.choose_trial_to_run(controller)
        if chosen is not None and chosen.status == Trial.PAUSED:
            chosen.status, chosen.fresh = Trial.PENDING, True
        running = [t for t in trials if t.status in (Trial.PENDING, Trial.RUNNING)]
        assert running, "deadlock: every trial waits"
        t = rng.choice(running)
        t.status, key = Trial.RUNNING, t.config["cell"]
        if key in store.stops:  # a resumed loser writes itself stopped, trains nothing
            done[key] = ("stopped", at.pop(key, 0))
            t.status = Trial.TERMINATED
            limit.free(t.trial_id)
            scheduler.on_trial_complete(controller, t, {})
            continue
        if not (t.fresh and at.get(key, 0) in RULE["rungs"]):
            at[key] = at.get(key, 0) + 1
            trained += 1
        t.fresh = False
        epoch = at[key]
        result = {"epoch": epoch}
        result.update({f"rungs/{r}": accuracy(lr_of(key), r) for r in (2, 4) if r <= epoch})
        if epoch == 8:
            done[key] = ("completed", at.pop(key))
            t.status = Trial.TERMINATED
            limit.free(t.trial_id)
            scheduler.on_trial_complete(controller, t, result)
        elif scheduler.on_trial_result(controller, t, result) == TrialScheduler.PAUSE:
            t.status = Trial.PAUSED
    return done, trained, at


def lr_of(key: str) -> float:
    return float(key.split("-")[1])


def test_the_decisions_and_epochs_are_the_same_whatever_the_order_and_the_slots():
    reference, epochs, _ = simulate(LRS, slots=1, seed=0)
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
                assert simulate(lrs, slots, seed)[:2] == (reference, 52), (lrs, slots, seed)


@pytest.mark.parametrize("turns", [5, 13, 30, 45, 60])
def test_a_relaunch_after_a_kill_takes_the_same_decisions(turns):
    """A launch killed after `turns` turns; the relaunch, from what it left: the finished
    cells' rows and the others' checkpoints. Together they train the same 52 epochs."""
    reference, _, _ = simulate(LRS, slots=3, seed=1)
    done, first, at = simulate(LRS, slots=3, seed=2, turns=turns)
    assert at and max(at.values()) < 8  # killed before the end
    final, second, left = simulate(LRS[::-1], slots=2, seed=3, done=done, at=at)
    assert final == reference and not left
    assert first + second == 52
