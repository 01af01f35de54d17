"""A trial's life (orchestrator/execution/slot.py): the Ray version check and a cell's checkpoint by
key in a folder and on S3 without Ray; then on real Ray: a retry that resumes from the
checkpoint found by key in the store, a trial paused by a scheduler that frees its slot and
resumes from Tune's checkpoint, and a worker SIGKILLed inside an epoch whose retry resumes.
(The reused actor training two cells in turn, seen through the dashboard, is in
test_monitor.py.) Nothing waits on the clock: the failures are the test hooks'
(orchestrator/execution/hooks.py) and the pause is decided from a trial's report.
"""

from __future__ import annotations

import os
import signal

import pytest
from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from orchestrator.execution import checkpoints, experiment, hooks, launch, raycompat, slot
from orchestrator.spec.expand import expand
from results.store import checkpoints as stored_checkpoints
from results.store import open_store
from results.store.base import Fenced, StoreError, StoreUnreachable
from tests.orchestrator.chaos_events import ChaosEvents
from tests.orchestrator.test_launch import (
    arm_hold,
    console,
    launch_in_thread,
    release,
    rows,
    wait_held,
)
from trainers.errors import GridError


def epochs_of(store, grid: str) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for e in open_store(str(store)).read_epochs(grid).to_pylist():
        out.setdefault(e["key"], []).append(e["epoch"])
    return {k: sorted(v) for k, v in out.items()}


def tune_checkpoints(store, grid: str) -> list:
    return sorted((store / grid / "_tune").glob("*/*/checkpoint_*"))


def test_an_untested_ray_is_refused_in_one_line():
    raycompat.check_ray()  # the installed one is a tested one
    raycompat.check_ray("2.60.3")
    for version in ("2.59.0", "2.61.0", "3.0.0", "nightly"):
        with pytest.raises(
            GridError, match=r"ray .* is installed; grid is tested with ray>=2\.60,<2\.61"
        ) as e:
            raycompat.check_ray(version)
        assert "\n" not in str(e.value)


def test_a_cells_checkpoint_is_one_object_by_key(tmp_path):
    store = open_store(str(tmp_path / "runs"))
    assert stored_checkpoints.read(store, "g", "abc") is None
    stored_checkpoints.write(store, "g", "abc", b"state")
    assert stored_checkpoints.read(store, "g", "abc") == b"state"
    assert stored_checkpoints.listed(store, "g") == {"abc"}
    assert (tmp_path / "runs" / "g" / "checkpoints" / "abc").read_bytes() == b"state"
    stored_checkpoints.delete(store, "g", "abc")
    assert stored_checkpoints.read(store, "g", "abc") is None


def test_a_cells_checkpoint_on_s3(s3_uri):
    store = open_store(s3_uri)
    assert stored_checkpoints.read(store, "g", "abc") is None  # a 404, not an error
    stored_checkpoints.write(store, "g", "abc", b"state")
    assert stored_checkpoints.read(store, "g", "abc") == b"state"
    stored_checkpoints.delete(store, "g", "abc")
    assert stored_checkpoints.listed(store, "g") == set()


@pytest.mark.parametrize("where", ["local", "s3"])
def test_a_torn_checkpoint_falls_back_to_the_one_before_it(where, tmp_path, request):
    """A new checkpoint keeps the one it replaces until it is whole: a torn newest costs one
    checkpoint interval. After a fall back, the next write keeps the good one, not the
    torn one."""
    uri = str(tmp_path / "runs") if where == "local" else request.getfixturevalue("s3_uri")
    store = open_store(uri)
    assert checkpoints.newest_state(store, "g", "abc") == (None, False)
    for epoch in (1, 2):
        stored_checkpoints.write(store, "g", "abc", checkpoints.serialise({"epoch": epoch}))
    assert checkpoints.newest_state(store, "g", "abc") == ({"epoch": 2}, True)
    newest = stored_checkpoints.read(store, "g", "abc")
    store.put_object(stored_checkpoints.name("g", "abc"), newest[: len(newest) // 2])  # torn
    with pytest.warns(checkpoints.CheckpointWarning, match="resuming from the one before it"):
        assert checkpoints.newest_state(store, "g", "abc") == ({"epoch": 1}, False)
    stored_checkpoints.write(store, "g", "abc", checkpoints.serialise({"epoch": 2}), keep=False)
    store.put_object(stored_checkpoints.name("g", "abc"), b"torn again")
    with pytest.warns(checkpoints.CheckpointWarning):
        assert checkpoints.newest_state(store, "g", "abc") == ({"epoch": 1}, False)
    assert stored_checkpoints.listed(store, "g") == {"abc"}
    stored_checkpoints.delete(store, "g", "abc")
    assert stored_checkpoints.read_previous(store, "g", "abc") is None
    assert stored_checkpoints.listed(store, "g") == set()


@pytest.mark.ray
def test_a_torn_newest_checkpoint_resumes_from_the_one_before_not_from_scratch(
    tiny_spec, tmp_path, monkeypatch, ray_cluster
):
    """The fault campaign's `checkpoint` fault, by hooks: held right after epoch 2's
    checkpoint (GRID_HOLD), the test truncates it; the trial then dies inside epoch 3
    (GRID_KILL). The retry resumes from epoch 1's checkpoint (it retrained from epoch 1)."""
    spec = tiny_spec("torn", [0.05], train={"epochs": 3})
    (key,) = (t.key for t in expand(spec))
    folder = arm_hold(monkeypatch, tmp_path, key, epoch=2)
    (tmp_path / "kill").mkdir()
    monkeypatch.setenv(hooks.KILL_ENV, f"{key}:3:{tmp_path / 'kill'}")
    store = tmp_path / "runs"
    thread, result, buf = launch_in_thread(
        spec=spec, store_uri=str(store), address=ray_cluster.address
    )
    try:
        assert wait_held(folder) == f"{key}:2"
        newest = store / "torn" / "checkpoints" / key
        newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])
    finally:
        release(folder)
        thread.join()
    assert result["rc"] == 0 and (tmp_path / "kill" / f"killed-{key}").exists()
    row = rows(store, "torn")[key]
    assert row["status"] == "completed" and row["resumed_epoch"] == 1 and row["epochs"] == 3
    assert epochs_of(store, "torn") == {key: [1, 2, 3]}
    assert stored_checkpoints.listed(open_store(str(store)), "torn") == set()


@pytest.mark.ray
def test_a_retry_resumes_from_the_checkpoint_found_by_key(
    tiny_spec, tmp_path, monkeypatch, ray_cluster
):
    """The cell fails right after epoch 1's checkpoint; Tune has no checkpoint of its own
    for it, so the retry's epoch 1 can only come from `<grid>/checkpoints/<key>`; once the
    result is committed the checkpoint is gone."""
    spec = tiny_spec("bykey", [0.05], train={"epochs": 2})
    (key,) = (t.key for t in expand(spec))
    monkeypatch.setenv(hooks.FAIL_INJECT_ENV, f"{key}:1:1")
    monkeypatch.setenv(hooks.FAIL_INJECT_DIR_ENV, str(tmp_path / "markers"))
    store = tmp_path / "runs"
    con, buf = console()
    assert launch.launch(spec, store_uri=str(store), address=ray_cluster.address, console=con) == 0
    row = rows(store, "bykey")[key]
    assert row["status"] == "completed" and row["resumed_epoch"] == 1 and row["epochs"] == 2
    assert epochs_of(store, "bykey") == {key: [1, 2]}
    assert "retry   " in buf.getvalue()
    assert tune_checkpoints(store, "bykey") == []  # not Tune's: the store's, by key
    assert stored_checkpoints.listed(open_store(str(store)), "bykey") == set()


class PauseOnce(FIFOScheduler):
    """PAUSEs the grid's first cell once, on its report of epoch 1."""

    def __init__(self, key: str):
        super().__init__()
        self.key, self.paused = key, False

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        if trial.config["cell"] == self.key and result.get("epoch") == 1 and not self.paused:
            self.paused = True
            return TrialScheduler.PAUSE
        return TrialScheduler.CONTINUE


@pytest.mark.ray
def test_a_paused_trial_frees_its_slot_and_resumes_from_its_checkpoint(
    tiny_spec, tmp_path, monkeypatch, ray_cluster
):
    """One slot (a trial takes both CPUs of the worker node), two cells: the first is paused
    after epoch 1, the second (pending: Tune's FIFO runs it before a paused one) trains in
    the freed slot to its end, then the first resumes at epoch 2 and completes with each epoch
    once. The cadence takes no checkpoint before the last epoch, so epoch 1 can only come
    from the checkpoint Tune took at the pause."""
    spec = tiny_spec(
        "pause",
        [0.05, 0.1],
        train={"epochs": 3, "checkpoint_s": 3600, "checkpoint_every": 9},
        resources={"cpu": 2},
    )
    first, second = (t.key for t in expand(spec))
    scheduler = PauseOnce(first)
    monkeypatch.setattr(experiment, "make_scheduler", lambda rungs, store, grid: scheduler)
    store = tmp_path / "runs"
    con, buf = console()
    assert (
        launch.launch(spec, store_uri=str(store), address=ray_cluster.address, console=con) == 0
    ), buf.getvalue()
    assert scheduler.paused
    found = rows(store, "pause")
    assert {r["status"] for r in found.values()} == {"completed"}
    assert found[first]["resumed_epoch"] == 1 and found[second]["resumed_epoch"] == 0
    # the resumed attempt of the first cell started after the second cell had finished
    assert found[first]["started"] >= found[second]["ended"]
    assert epochs_of(store, "pause") == {first: [1, 2, 3], second: [1, 2, 3]}
    # the pause's checkpoint (Tune's own) is pruned once every cell has finished
    # (results/store/prune.py)
    assert tune_checkpoints(store, "pause") == []


@pytest.mark.ray
def test_a_worker_killed_inside_an_epoch_is_retried_from_its_checkpoint(
    tiny_spec, tmp_path, monkeypatch, ray_cluster
):
    """The trial's worker SIGKILLs itself in the step of epoch 2 (GRID_KILL): no row, no
    report; Tune retries the trial on a new actor, which resumes from epoch 1."""
    spec = tiny_spec("killed", [0.05], train={"epochs": 2})
    (key,) = (t.key for t in expand(spec))
    (tmp_path / "kill").mkdir()
    monkeypatch.setenv(hooks.KILL_ENV, f"{key}:2:{tmp_path / 'kill'}")
    store = tmp_path / "runs"
    con, buf = console()
    assert launch.launch(spec, store_uri=str(store), address=ray_cluster.address, console=con) == 0
    assert (tmp_path / "kill" / f"killed-{key}").exists()  # the kill happened
    row = rows(store, "killed")[key]
    assert row["status"] == "completed" and row["resumed_epoch"] == 1 and row["epochs"] == 2
    assert epochs_of(store, "killed") == {key: [1, 2]}
    assert "retry   " in buf.getvalue()


@pytest.mark.ray
def test_a_trial_killed_after_its_commit_is_not_trained_again(
    tiny_spec, tmp_path, monkeypatch, ray_cluster
):
    """A fault of the campaign (benchmarks/chaos.py, a kill at a `commit` event): a worker
    killed between its row's commit and Tune hearing `done` was retried, and the retry
    resumed the cell from its last checkpoint and committed it again (a new run replacing the
    finished one). The retry now sees the row its own launch committed and ends at once."""
    spec = tiny_spec("aftercommit", [0.05], train={"epochs": 2})
    (key,) = (t.key for t in expand(spec))
    killed = []

    def kill_at_commit(event: str, k: str, epoch: int, pid: int) -> bool:
        if event == "commit" and not killed:
            killed.append(pid)
            os.kill(pid, signal.SIGKILL)  # its row is written; Tune has not heard `done`
            return False
        return True

    events = ChaosEvents(tmp_path / "ev.sock", kill_at_commit)
    monkeypatch.setenv(hooks.CHAOS_ENV, str(tmp_path / "ev.sock"))
    store = tmp_path / "runs"
    con, buf = console()
    try:
        rc = launch.launch(spec, store_uri=str(store), address=ray_cluster.address, console=con)
    finally:
        events.close()
    assert killed  # the kill happened, after the commit
    assert rc == 0, buf.getvalue()
    done = events.events.index(("commit", key, 2))
    assert events.events[:done] == [("epoch", key, 1), ("epoch", key, 2)]
    assert events.events[done + 1 :] == []  # no attempt resumed or trained it again
    row = rows(store, "aftercommit")[key]
    assert row["status"] == "completed" and row["resumed_epoch"] == 0
    assert epochs_of(store, "aftercommit") == {key: [1, 2]}
    assert [p.name for p in (store / "aftercommit" / "epochs" / key).iterdir()] == [
        f"{row['run_id']}.parquet"
    ]  # one run: the first commit's


def test_a_store_outage_in_a_trial_is_retried_but_a_user_error_or_a_fenced_write_is_not():
    # Found by the long fault campaign: a trial whose commit met the S3 server down failed
    # its cell "(not retried)" like a user error, and the launch ended with a failed cell.
    outage = StoreUnreachable("s3://b/p", "cannot write g/epochs/k.parquet", "Could not connect")
    assert not slot.final(outage)  # Tune retries the trial from its checkpoint
    assert slot.final(GridError("dataset.root: no cifar10 data in /x"))
    assert slot.final(StoreError("s3://b/p", "cannot read g/weights/k.pt", "NoSuchKey"))
    assert slot.final(Fenced("s3://b/p", "commit g/trials/k.parquet", "the lease moved on"))
