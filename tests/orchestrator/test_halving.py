"""Halving per table row (orchestrator/halving/rule.py, orchestrator/halving/scheduler.py): the
section's checks, the rule and its records without Ray, then real Ray on the CPU: a grid of 2
activations x 6 lrs x 8 epochs with rungs [2, 4] and keep 0.5 against the same grid without
halving, and a grown grid judged against the stored rungs.

The grid and its launches (the `halved` fixture, tests/orchestrator/conftest.py) are shared
with test_halving_sync.py, which runs the synchronous rule (the default) at other slot
counts and orders, and a launch SIGKILLed mid-rung (test_launch.py has the kill mid-epoch
of a launch without halving).
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from ray.tune.experiment import Trial
from ray.tune.schedulers import TrialScheduler

from orchestrator.cli.main import main
from orchestrator.execution import checkpoints, launch, trial
from orchestrator.halving.rule import Rungs, cell_epochs, cutoff, group_of, halving_plan
from orchestrator.halving.scheduler import STOP_WAITS, RowHalving, SyncRowHalving, write_decision
from orchestrator.spec.expand import expand
from orchestrator.spec.load import load_spec
from results.store import open_store
from results.store.base import StoreError, StoreUnreachable
from tests.orchestrator.conftest import write_spec
from tests.orchestrator.halving_grid import (
    GRID,
    HALVING,
    copy_store,
    picks,
    six_lrs,
    trained_epochs,
)
from tests.orchestrator.test_launch import console, rows
from trainers.errors import GridError

# -- the section's checks ------------------------------------------------------------------
BAD = [
    ({"over": "init", "rungs": [2], "keep": 0.5}, "halving.over: 'init' is not an axis"),
    ({"rungs": [4, 2], "keep": 0.5}, "halving.rungs[1]: rungs go in increasing order"),
    ({"rungs": [2, 8]}, "halving.rungs[1]: epoch 8 must be below train.epochs (8)"),
    ({"rungs": [0]}, "halving.rungs[0]: expected an epoch number >= 1"),
    ({"rungs": []}, "halving.rungs: give the rung epochs as a list"),
    ({"rungs": [2], "keep": 1.0}, "halving.keep: the fraction of a group that goes on"),
    ({"rungs": [2], "keep": 0}, "halving.keep: the fraction of a group that goes on"),
    (
        {"rungs": [2], "metric": "test_acc"},
        "halving.metric: 'test_acc' cannot rank a rung (it would choose by the test set)",
    ),
    ({"rungs": [2], "keeep": 0.5}, "halving.keeep: unknown key (did you mean 'keep'?)"),
    ({"rungs": [2], "rule": "syn"}, "halving.rule: 'syn' (did you mean 'sync'?); valid: sync"),
]


@pytest.mark.parametrize(
    "section,error",
    [
        (
            {"rungs": [2]},
            "halving.over: the grid runs several seeds (seed: 0, 1) and a table averages "
            "them; add seed (over: [lr, seed])",
        ),
        (
            {"over": ["lr", "seed"], "rungs": [2], "rule": "async"},
            "halving.rule: async judges each seed alone, so with several seeds (seed: 0, 1)",
        ),
    ],
)
def test_a_halving_over_seeds_stops_an_lr_with_all_its_seeds(tmp_path, capsys, section, error):
    """A group per seed, or the async rule, can stop a different lr in each seed: a row with
    no lr that ran every seed has no pick (the fault campaign's hole, docs/reliability.md)."""
    path = write_spec(
        tmp_path,
        "seeds",
        [0.1, 0.05],
        grid={"lr": [0.1, 0.05], "seed": [0, 1]},
        halving=section,
        train={"epochs": 8},
    )
    assert main(["plan", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}: {error}" in err and "Traceback" not in err
    fine = write_spec(
        tmp_path,
        "fine",
        [0.1, 0.05],
        grid={"lr": [0.1, 0.05], "seed": [0, 1]},
        halving={"over": ["lr", "seed"], "rungs": [2]},
        train={"epochs": 8},
    )
    assert main(["plan", str(fine)]) == 0


@pytest.mark.parametrize("section,error", BAD)
def test_a_bad_halving_section_is_one_line_per_problem_and_exit_2(tmp_path, capsys, section, error):
    path = write_spec(tmp_path, "bad", [0.1, 0.05], halving=section, train={"epochs": 8})
    assert main(["plan", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}: {error}" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_every_problem_of_a_section_is_reported_at_once(tmp_path):
    path = write_spec(
        tmp_path,
        "bad",
        [0.1],
        halving={"rungs": [3, 1], "keep": 2},
        resources={"pack": 2},
        dataset={"val_size": 0},
        train={"epochs": 8},
    )
    with pytest.raises(GridError) as e:
        load_spec(path)
    lines = str(e.value).splitlines()
    assert len(lines) == 4, lines
    assert any("halving.metric: val_acc needs a validation set" in ln for ln in lines)
    assert any("halving.rungs[1]: rungs go in increasing order" in ln for ln in lines)
    assert any("halving.keep" in ln for ln in lines)
    assert any("halving: needs resources.pack: 1" in ln for ln in lines)


def test_an_early_rung_is_warned_of_and_smoke_drops_the_halving(tmp_path, capsys):
    path = write_spec(
        tmp_path,
        "warn",
        [0.1, 0.05],
        halving={"rungs": [25, 100]},
        train={"epochs": 350, "schedule": {"name": "multistep", "milestones": [200, 300]}},
    )
    assert main(["plan", str(path)]) == 0
    out = capsys.readouterr().out
    assert "warning: halving.rungs: 25, 100 come before the first lr decay (epoch 200" in out
    assert "375 epochs of the full grid's 700" in out  # 2 x 25 + 1 x 325
    assert main(["plan", str(path), "--smoke"]) == 0  # one epoch: no rung, no halving
    assert "halving" not in capsys.readouterr().out


def test_rungs_are_evaluated_and_move_no_key(tmp_path):
    plain = load_spec(
        write_spec(tmp_path / "a", "g", [0.1, 0.05], train={"epochs": 8, "eval_every": 4})
    )
    halved = load_spec(
        write_spec(
            tmp_path / "b",
            "g",
            [0.1, 0.05],
            halving={"rungs": [3]},
            train={"epochs": 8, "eval_every": 4},
        )
    )
    assert [c.key for c in expand(plain)] == [c.key for c in expand(halved)]
    assert expand(halved)[0].config["train"]["eval_epochs"] == [3]


# -- the rule and its records ----------------------------------------------------------------
def test_cutoff_is_the_quantile_of_the_peers_and_the_first_cell_goes_on():
    assert cutoff([], 0.5) is None
    assert cutoff([0.4], 0.5) == 0.4
    assert cutoff([0.2, 0.6], 0.5) == pytest.approx(0.4)
    assert cutoff([0.1, 0.2, 0.3, 0.4, 0.5], 0.25) == pytest.approx(0.4)


def test_rungs_judge_each_cell_once_per_rung_within_its_group(tmp_path):
    spec = six_lrs(tmp_path, "g", halving=HALVING)
    cells = expand(spec)
    a, b = cells[:6], cells[6:]  # the two activations: two groups
    assert len({group_of(c.params, spec.halving["over"]) for c in a}) == 1
    stored = [
        {"key": a[0].key, "epoch": 2, "val_acc": 0.6},
        {"key": a[0].key, "epoch": 4, "val_acc": 0.8},
        {"key": b[0].key, "epoch": 2, "val_acc": 0.1},
    ]
    rungs = Rungs.from_epochs(spec.halving, cells, stored)
    assert rungs.judge(a[1].key, {2: 0.7}) is None  # above a[0]'s 0.6: goes on
    stop = rungs.judge(a[2].key, {2: 0.5})  # below the median of 0.6 and 0.7
    assert stop["rung"] == 2 and stop["cutoff"] == pytest.approx(0.65) and stop["peers"] == 2
    assert rungs.judge(b[1].key, {2: 0.3}) is None  # its own group: above b[0]'s 0.1
    assert rungs.judge(a[1].key, {2: 0.0, 4: 0.9}) is None  # rung 2 was judged already
    assert rungs.judge(a[3].key, {2: 0.9, 4: 0.1})["rung"] == 4  # both rungs, lowest first


def test_the_plan_gives_the_sync_rules_exact_epochs_and_the_async_rules_range(tmp_path):
    spec = six_lrs(tmp_path, "g", halving=HALVING)
    cells = expand(spec)
    plan = halving_plan(spec.halving, cells)
    # per group of 6: 6 x 2 + 3 x 2 + 2 x 4 = 26 epochs of 48 (3 of 6, then 2 of 3)
    assert (plan["groups"], plan["full_epochs"], plan["worst_epochs"]) == (2, 96, 52)
    assert plan["best_epochs"] == plan["expected_epochs"] == 52
    assert sum(cell_epochs(spec.halving, cells).values()) == pytest.approx(52)
    assert sum(cell_epochs(None, cells).values()) == 96
    assert plan["expected_saving"] == 0.458
    # async: from the full grid (ascending scores) to 6 x 2 + 6 per row (descending)
    plan = halving_plan({**spec.halving, "rule": "async"}, cells)
    assert (plan["worst_epochs"], plan["best_epochs"], plan["expected_epochs"]) == (96, 36, 96)


# -- real Ray --------------------------------------------------------------------------------
@pytest.mark.ray
def test_halving_trains_at_most_55_percent_and_picks_the_same_lrs(halved):
    spec, store, out = halved["halved"]
    full_spec, full_store, _ = halved["full"]
    assert trained_epochs(full_store, "full") == 96
    assert trained_epochs(store, "halved") <= 0.55 * 96
    assert picks(spec, store) == picks(full_spec, full_store)
    found = rows(store, "halved")
    stopped = [r for r in found.values() if r["status"] == "stopped"]
    assert stopped and all(
        r["stopped_at"] in (2, 4) and r["epochs"] == r["stopped_at"] for r in stopped
    )
    assert f"({len(stopped)} stopped at a rung by the halving)" in out
    completed = [r for r in found.values() if r["status"] == "completed"]
    assert len(completed) + len(stopped) == 12 and all(r["epochs"] == 8 for r in completed)

    con, buf = console()  # a relaunch: stopped is finished
    assert launch.launch(spec, store_uri=str(store), console=con) == 0
    assert "skipping 12 finished cells (completed, diverged or stopped" in buf.getvalue()


@pytest.mark.ray
def test_a_grown_grid_judges_its_new_lr_against_the_stored_rungs(halved, tmp_path, ray_cluster):
    _, store, _ = halved["halved"]
    grown_store = tmp_path / "runs"
    copy_store(store / "halved", grown_store / "halved")
    before = {p.name: p.stat().st_mtime_ns for p in (grown_store / "halved" / "trials").iterdir()}
    spec = six_lrs(
        tmp_path / "specs", "halved", halving=HALVING, grid={**GRID, "lr": GRID["lr"] + [0.001]}
    )
    con, buf = console()
    assert (
        launch.launch(spec, store_uri=str(grown_store), address=ray_cluster.address, console=con)
        == 0
    ), buf.getvalue()
    out = buf.getvalue()
    assert "skipping 12 finished cells" in out and "running 2 cells" in out
    assert "rung records from earlier launches" in out
    new = [c.key for c in expand(spec) if c.params["train.lr"] == 0.001]
    found = rows(grown_store, "halved")
    # the slowest lr of each row, against six stored records at rung 2: stopped there
    assert [(found[k]["status"], found[k]["epochs"]) for k in new] == [("stopped", 2)] * 2
    assert {
        p.name: p.stat().st_mtime_ns
        for p in (grown_store / "halved" / "trials").iterdir()
        if p.name in before
    } == before


# -- a decision the store refuses for a while --------------------------------------------
class Outage:
    """A store whose `write_stop` cannot reach it `fails` times, then writes."""

    def __init__(self, fails: int, error: type = StoreUnreachable):
        self.fails, self.error, self.written, self.records = fails, error, {}, {}

    def write_rungs(self, grid: str, key: str, record: dict) -> None:
        self.records[key] = record

    def write_stop(self, grid: str, key: str, decision: dict) -> None:
        if self.fails:
            self.fails -= 1
            raise self.error("s3://b/p", f"cannot write {grid}/stops/{key}.json", "no answer")
        self.written[key] = decision


def test_a_decision_is_written_again_after_waits_that_double():
    store, waited = Outage(fails=3), []
    decision = {"key": "k", "rung": 2}
    assert write_decision(store, "g", decision, sleep=waited.append)
    assert store.written == {"k": decision} and waited == [0.5, 1.0, 2.0]


def test_an_async_stop_that_cannot_be_written_lets_the_cell_go_on_and_is_taken_later(
    tmp_path, capsys
):
    """The store down for longer than the waits: the launch goes on (it ended with the
    store's error through Tune's callback), the loser trains on, and its next result is
    judged again and stopped once the store answers."""
    spec = six_lrs(tmp_path, "g", halving={**HALVING, "rule": "async"})
    cells = expand(spec)
    stored = [{"key": cells[0].key, "epoch": 2, "val_acc": 0.6}]
    store, waited = Outage(fails=len(STOP_WAITS) + 1), []
    halving = RowHalving(Rungs.from_epochs(spec.halving, cells, stored), store, "g")
    halving.sleep = waited.append
    loser = SimpleNamespace(config={"cell": cells[1].key})
    assert halving.on_trial_result(None, loser, {"rungs/2": 0.1}) == TrialScheduler.CONTINUE
    assert waited == list(STOP_WAITS) and not store.written and not halving.stops
    err = capsys.readouterr().err
    assert f"g: cell {cells[1].key}: the halving's decision to stop it at epoch 2" in err
    assert "(store s3://b/p: cannot write" in err and err.count("\n") == 1
    third = {"rungs/2": 0.1, "epoch": 3}  # the store answers again
    # paused, then resumed to write itself as stopped (as under the sync rule)
    assert halving.on_trial_result(None, loser, third) == TrialScheduler.PAUSE
    assert store.written[cells[1].key]["rung"] == 2 and cells[1].key in halving.stops
    # its rung record, for a relaunch, says that it was judged at 2 and did not pass
    assert store.records == {
        cells[1].key: {"metric": "val_acc", "scores": {"2": 0.1}, "passed": []}
    }


def test_a_relaunch_after_a_kill_judges_against_the_killed_launchs_rung_records(tmp_path):
    """The async rule writes each judgement as it takes it (`Store.write_rungs`). A relaunch
    after a kill reads the records of the cells it runs, so its first arrival at a rung is
    judged against the killed launch's scores, not alone, and a rung a cell passed stays
    passed (the fault campaign found fewer async stops under kills, docs/reliability.md).
    The records of finished cells and of cells that train from scratch are deleted."""
    spec = six_lrs(tmp_path, "g", halving={**HALVING, "rule": "async"})
    cells = expand(spec)
    a, b, c, d = (SimpleNamespace(config={"cell": x.key}) for x in cells[:4])
    store = open_store(str(tmp_path / "runs"))
    killed = RowHalving(Rungs.from_epochs(spec.halving, cells, []), store, "g")
    assert killed.on_trial_result(None, a, {"rungs/2": 0.5}) == TrialScheduler.CONTINUE
    assert killed.on_trial_result(None, b, {"rungs/2": 0.9}) == TrialScheduler.CONTINUE
    assert killed.on_trial_result(None, d, {"rungs/2": 0.1}) == TrialScheduler.PAUSE
    # ... then the driver is killed: no cell committed a row. The relaunch runs them all.
    con, buf = console()
    rungs = launch._rungs(spec, store, cells, con, fresh=frozenset())
    assert "(and 3 of unfinished cells)" in buf.getvalue()
    relaunch = RowHalving(rungs, store, "g")
    # c's first report meets a and b's scores (cutoff 0.5-0.9's median, 0.7) and stops;
    # judged alone, as before the records, it went on
    assert relaunch.on_trial_result(None, c, {"rungs/2": 0.4}) == TrialScheduler.PAUSE
    assert relaunch.stops[c.config["cell"]]["peers"] == 3
    # a passed rung 2 in the killed launch: it goes on, though c and d now sit beside it
    assert relaunch.on_trial_result(None, a, {"rungs/2": 0.5}) == TrialScheduler.CONTINUE
    # d was stopped there but never wrote itself stopped: judged again, and stopped again
    assert relaunch.on_trial_result(None, d, {"rungs/2": 0.1}) == TrialScheduler.PAUSE
    assert store.read_rungs("g", {x.key for x in cells}, stale=set())[a.config["cell"]] == {
        "metric": "val_acc",
        "scores": {"2": 0.5},
        "passed": [2],
    }
    # `--force` (every cell from scratch): the records are dropped, and c goes on alone
    rungs = launch._rungs(spec, store, cells, con, fresh=frozenset(x.key for x in cells))
    assert not store.list_objects("g/rungs")
    assert RowHalving(rungs, store, "g").on_trial_result(None, c, {"rungs/2": 0.4}) == (
        TrialScheduler.CONTINUE
    )


def test_a_decision_refused_for_another_reason_is_not_tried_again(capsys):
    store, waited = Outage(fails=1, error=StoreError), []
    assert not write_decision(store, "g", {"key": "k", "rung": 2}, sleep=waited.append)
    assert waited == [] and "it trains on" in capsys.readouterr().err


def test_a_sync_stop_that_cannot_be_written_lets_the_loser_go_on(tmp_path, capsys):
    spec = six_lrs(tmp_path, "g", halving={**HALVING, "rungs": [2]})
    cells = expand(spec)[:6]  # one row
    store = Outage(fails=100)
    rungs = Rungs.from_epochs(spec.halving, expand(spec), [])
    halving = SyncRowHalving(rungs, store, "g")
    halving.sleep = lambda s: None
    rungs.running = {c.key for c in cells}
    trials = [SimpleNamespace(config={"cell": c.key}, trial_id=c.key) for c in cells]
    answers = [halving.on_trial_result(None, t, {"rungs/2": 0.1 * i}) for i, t in enumerate(trials)]
    assert answers == [TrialScheduler.PAUSE] * 5 + [TrialScheduler.CONTINUE]  # row decided
    assert not halving.stops and capsys.readouterr().err.count("it trains on") == 3
    for t in trials[:5]:
        t.status = Trial.PAUSED
    controller, resumed = SimpleNamespace(get_trials=lambda: trials[:5]), []
    while (t := halving.choose_trial_to_run(controller)) is not None:
        t.status = Trial.RUNNING
        resumed.append(t.trial_id)
    assert resumed == [c.key for c in cells[:5]]  # losers too: none waits forever


def test_a_cell_resumed_at_its_rung_is_judged_there_by_the_async_rule(tiny_spec, tmp_path):
    """A relaunch (after a driver kill) resumes a cell from its checkpoint at the rung: its
    first report is that rung, before any epoch past it, so the async rule can still stop
    it. Before, its next report was its last epoch: in the fault campaign the async grids
    stopped 0-2 cells of 12 where the sync grids stopped 4 (docs/reliability.md)."""
    halving = {"over": "lr", "metric": "train_loss", "rungs": [1], "keep": 0.5, "rule": "async"}
    spec = tiny_spec("resumed", [0.05, 0.1], halving=halving, train={"epochs": 2})
    cells = expand(spec)
    store = open_store(str(tmp_path / "runs"))
    first = trial.UnitRun(cells[:1], store=store, spec_sha256="x", halving=spec.halving)
    first.start()
    assert first.step()["epoch"] == 1  # then the driver is killed: the cell is at its rung
    state = first.states()[cells[0].key]
    first.close()
    resumed = trial.UnitRun(cells[:1], store=store, spec_sha256="x", halving=spec.halving)
    resumed.start({cells[0].key: checkpoints.load_state(cells[0].key, state, "test")})
    report = resumed.at_rung()
    assert report is not None and report["epoch"] == 1 and set(report["rungs"]) == {"1"}
    # the relaunch's records: a peer of the same row that did far better at the rung
    rungs = Rungs.from_epochs(spec.halving, cells, [])
    judge = RowHalving(rungs, Outage(fails=0), "resumed")
    peer = SimpleNamespace(config={"cell": cells[1].key})
    assert judge.on_trial_result(None, peer, {"rungs/1": 0.0}) == TrialScheduler.CONTINUE
    flat = {f"rungs/{r}": v for r, v in report["rungs"].items()}
    cell = SimpleNamespace(config={"cell": cells[0].key})
    assert judge.on_trial_result(None, cell, flat) == TrialScheduler.PAUSE
    assert judge.stops[cells[0].key]["rung"] == 1
    # in the same launch (a retry), a cell judged there already goes on at once
    assert judge.on_trial_result(None, peer, {"rungs/1": 0.0}) == TrialScheduler.CONTINUE


@pytest.mark.ray
def test_the_async_rule_runs_to_the_end_each_loser_written_by_its_own_step(tmp_path, ray_cluster):
    """`rule: async` under Ray: a loser's decision is written, the trial paused and resumed,
    and its step writes it as stopped at its rung; the launch ends with every cell's row
    (its stops were written from the actors' clean-up, which Ray cuts short at the end of
    the experiment: a stop could be lost and its cell reported interrupted, exit 1)."""
    spec = six_lrs(tmp_path / "specs", "asyncr", halving={**HALVING, "rule": "async"})
    store = tmp_path / "runs"
    con, buf = console()
    assert (
        launch.launch(
            spec, store_uri=str(store), address=ray_cluster.address, max_concurrent=2, console=con
        )
        == 0
    ), buf.getvalue()
    found = rows(store, "asyncr")
    assert set(found) == {c.key for c in expand(spec)}
    stopped = {k: r for k, r in found.items() if r["status"] == "stopped"}
    assert stopped and len(stopped) < len(found)
    opened = open_store(str(store))
    for key, row in stopped.items():
        decision = opened.read_stop("asyncr", key)
        assert decision is not None and row["epochs"] == decision["rung"], (row, decision)
    assert "did not run" not in buf.getvalue() and "interrupted" not in buf.getvalue()
    # the rung records written as the cells were judged went with the launch's pruning
    assert opened.list_objects("asyncr/rungs") == []


def test_an_async_loser_retried_from_before_its_rung_is_stopped_there_again(tmp_path):
    """A fault between the decision and the pause: Tune retries the loser's trial from its
    newest checkpoint, older than the rung, so it trains back to the rung. There the
    decision it got stands (before, its rung counted as judged and it trained to the end:
    a lost stop); the epochs before the rung train on."""
    spec = six_lrs(tmp_path, "g", halving={**HALVING, "rule": "async"})
    cells = expand(spec)
    a, b, loser = (SimpleNamespace(config={"cell": x.key}) for x in cells[:3])
    store = open_store(str(tmp_path / "runs"))
    halving = RowHalving(Rungs.from_epochs(spec.halving, cells, []), store, "g")
    assert halving.on_trial_result(None, a, {"rungs/2": 0.5, "epoch": 2}) == TrialScheduler.CONTINUE
    assert halving.on_trial_result(None, b, {"rungs/2": 0.9, "epoch": 2}) == TrialScheduler.CONTINUE
    at_rung = {"rungs/2": 0.1, "epoch": 2}
    assert halving.on_trial_result(None, loser, at_rung) == TrialScheduler.PAUSE
    decision = store.read_stop("g", loser.config["cell"])
    assert decision["rung"] == 2
    # the trial fails before its pause; the retry resumes at epoch 1 and reports it
    assert halving.on_trial_result(None, loser, {"epoch": 1}) == TrialScheduler.CONTINUE
    # back at the rung (with the same or another score): paused again, to write itself stopped
    again = {"rungs/2": 0.95, "epoch": 2}
    assert halving.on_trial_result(None, loser, again) == TrialScheduler.PAUSE
    assert store.read_stop("g", loser.config["cell"]) == decision  # the one decision, kept
    # the others are unaffected
    assert halving.on_trial_result(None, a, {"rungs/2": 0.5, "epoch": 3}) == TrialScheduler.CONTINUE
