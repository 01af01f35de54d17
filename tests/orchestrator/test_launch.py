"""`grid launch`: the plain parts (progress, cell selection and packing, the test hooks,
the store checks) without Ray, then real Ray on the CPU: a local start with its dashboard,
skipping and growing a grid, a SIGKILLed launch and its lease taken over, a second launch
refused, injected failures, a failed --force rerun that keeps the result, pre-flight checks,
a user error not retried, S3 settings forwarded to workers, and a dead worker node.

The Ray tests share one `cluster_utils.Cluster` (conftest.py); one goes through the local
start path. Each trains a few tiny synthetic cells for one to three epochs. A test that must
act while a trial runs holds the trial at a barrier (`orchestrator/execution/hooks.py`, GRID_HOLD:
named pipes) instead of polling: nothing here waits on the clock.
"""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pyarrow.dataset as pads
import pytest
import ray
from rich.console import Console

from orchestrator.cli.main import main
from orchestrator.execution import checkpoints, hooks, launch, session, trial
from orchestrator.execution.progress import GridProgress, fmt_duration
from orchestrator.execution.units import group_cells, select_cells, unit_label
from orchestrator.spec.expand import expand
from results.store import checkpoints as stored_checkpoints
from results.store import open_store
from results.store.lease import read_holder
from tests.orchestrator.chaos_events import ChaosEvents
from tests.orchestrator.conftest import agent_port, node_env
from trainers.errors import GridError

REPO = Path(__file__).resolve().parents[2]


def console() -> tuple[Console, io.StringIO]:
    buf = io.StringIO()
    return Console(file=buf, width=200, color_system=None), buf


def rows(store_dir: Path, grid: str) -> dict[str, dict]:
    table = open_store(str(store_dir)).read_trials(grid).to_pylist()
    return {r["key"]: r for r in table}


# -- without Ray ----------------------------------------------------------------------------
def test_progress_counts_best_and_estimate():
    now = [100.0]
    p = GridProgress(
        "g", {"a": (1, 2), "b+1": (2, 2), "c": (1, 2)}, skipped=3, clock=lambda: now[0]
    )
    assert p.remaining_s() is None  # nothing measured yet
    p.start("a")
    now[0] += 10
    p.result("a", {"epoch": 1, "val_acc": 0.5})
    p.result("b+1", {"epoch": 1, "val_acc": 0.7, "test_acc": 0.9})
    # 3 cell-epochs in 10 s; left: a 1, b+1 2 x 1, c 2 -> 5 cell-epochs
    assert p.remaining_s() == pytest.approx(5 * 10 / 3)
    assert p.best == ("val_acc", 0.7, "b+1")
    p.retry("a")
    p.result("a", {"epoch": 1})  # the retry repeats epoch 1: not counted again
    assert p.epochs_done == 3
    p.finish("b+1")
    p.fail("c", "boom")
    assert p.counts() == {"done": 5, "running": 1, "pending": 0, "failed": 1}
    line = p.summary_line()
    assert "5/7 cells done" in line and "1 failed" in line and "best val_acc 70.00%" in line


def test_progress_render_lists_running_trials():
    p = GridProgress("g", {"k1": (1, 3), "k2+3": (4, 3)}, clock=lambda: 0.0)
    p.result("k2+3", {"epoch": 2})
    con, buf = console()
    con.print(p.render())
    out = buf.getvalue()
    assert "k2+3 (4 cells)" in out and "2/3" in out and "k1" not in out.split("\n", 1)[1]
    assert fmt_duration(3725) == "1:02:05" and fmt_duration(65) == "1:05"


def test_select_skips_finished_and_force_reruns(tiny_spec):
    trials = expand(tiny_spec("sel", [0.1, 0.2, 0.3, 0.4]))
    statuses = {trials[0].key: "completed", trials[1].key: "diverged", trials[2].key: "failed"}
    todo, done = select_cells(trials, statuses)
    assert [t.key for t in todo] == [trials[2].key, trials[3].key]
    assert [t.key for t in done] == [trials[0].key, trials[1].key]
    assert select_cells(trials, statuses, force=True) == (trials, [])


def test_group_cells_packs_only_what_differs_in_packable_axes(tiny_spec):
    spec = tiny_spec(
        "pk", [0.1, 0.2, 0.3], grid={"lr": [0.1, 0.2, 0.3], "model.width": [0.25, 0.5]}
    )
    trials = expand(spec)
    assert [[t.key for t in u] for u in group_cells(trials, 1)] == [[t.key] for t in trials]
    units = group_cells(trials, 2)
    assert sorted(len(u) for u in units) == [1, 1, 2, 2]
    for unit in units:  # one width per pack, lr free
        assert len({t.config["model"]["width"] for t in unit}) == 1
    assert sorted(t.key for u in units for t in u) == sorted(t.key for t in trials)
    assert unit_label(units[0]) == units[0][0].key + "+1"


def test_fail_inject_hook_counts_attempts_in_marker_files(tmp_path, monkeypatch):
    monkeypatch.setenv(hooks.FAIL_INJECT_ENV, "abc:2:2,*:9:1")
    monkeypatch.setenv(hooks.FAIL_INJECT_DIR_ENV, str(tmp_path))
    hooks.at_epoch("abc123", 1)  # not its epoch
    for attempt in (1, 2):
        with pytest.raises(hooks.InjectedFailure, match=f"{attempt}/2"):
            hooks.at_epoch("abc123", 2)
    hooks.at_epoch("abc123", 2)  # exhausted: trains on
    with pytest.raises(hooks.InjectedFailure):
        hooks.at_epoch("zzz", 9, resumed=True)  # resumed at or past the epoch
    assert sorted(p.name for p in tmp_path.iterdir()) == ["abc123-1", "abc123-2", "zzz-1"]


def test_error_text_is_one_line_then_frames():
    try:
        raise ValueError("bad\nthing")
    except ValueError as e:
        text = trial.error_text(e)
    head, *frames = text.splitlines()
    assert head == "ValueError: bad thing"
    assert frames and "test_error_text_is_one_line_then_frames" in "\n".join(frames)


def test_local_store_is_refused_on_a_multi_node_cluster(tmp_path, monkeypatch):
    monkeypatch.setattr(
        ray,
        "nodes",
        lambda: [
            {"NodeManagerAddress": "10.0.0.1", "Alive": True},
            {"NodeManagerAddress": "10.0.0.2", "Alive": True},
        ],
    )
    with pytest.raises(GridError, match="needs a shared store: --store s3://"):
        session.check_shared_store(open_store(str(tmp_path)))


def test_forwarded_env_has_the_s3_settings_and_never_a_credential():
    env = {
        "AWS_ENDPOINT_URL": "http://minio:9000",
        "AWS_ENDPOINT_URL_S3": "http://minio:9000",
        "AWS_DEFAULT_REGION": "eu-west-1",
        "AWS_REGION": "eu-west-1",
        "AWS_ACCESS_KEY_ID": "AKIA",
        "AWS_SECRET_ACCESS_KEY": "secret",
        "AWS_SESSION_TOKEN": "token",
        "HOME": "/root",
    }
    assert session.forwarded_env(env) == {
        k: env[k]
        for k in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_DEFAULT_REGION", "AWS_REGION")
    }


def test_unreachable_address_is_a_grid_error(tiny_spec, tmp_path):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(GridError, match=f"--address 127.0.0.1:{port}: no Ray there"):
        launch.launch(
            tiny_spec("addr", [0.1]), store_uri=str(tmp_path), address=f"127.0.0.1:{port}"
        )
    with pytest.raises(GridError, match="expected auto, host:port"):
        session.check_reachable("nonsense")
    assert not ray.is_initialized()


def test_tune_storage_under_the_store(tmp_path, monkeypatch):
    path, _ = checkpoints.tune_storage(open_store(str(tmp_path / "runs")), "g")
    assert Path(path) == (tmp_path / "runs" / "g" / "_tune").resolve()
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    path, fs = checkpoints.tune_storage(open_store("s3://bucket/pre"), "g")
    assert path == "bucket/pre/g/_tune" and fs.type_name == "s3"


def test_dry_run_starts_nothing(tiny_spec, tmp_path):
    con, buf = console()
    spec = tiny_spec("dry", [0.1, 0.2])
    assert launch.launch(spec, store_uri=str(tmp_path / "runs"), dry_run=True, console=con) == 0
    out = buf.getvalue()
    assert "would run 2 cells as 2 Tune trials" in out and "lr=0.2" in out
    assert not ray.is_initialized()


# -- real Ray -------------------------------------------------------------------------------
def _get(url: str, token: str | None, *, cookie: bool = False) -> int:
    req = urllib.request.Request(url)
    if token and cookie:  # what the dashboard page keeps after its login prompt
        req.add_header("Cookie", f"ray-authentication-token={token}")
    elif token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status
    except urllib.error.HTTPError as e:
        return e.code


@pytest.mark.ray
def test_local_start_dashboard_skip_and_grow(tiny_spec, tmp_path, monkeypatch, ray_cluster):
    """Local Ray with its dashboard (token auth), every cell stored; a relaunch runs
    nothing; a grown grid runs only its new cell (on the session cluster)."""
    seen = {}
    real = session._print_dashboard

    def check_dashboard(con, url, *, local, host):  # runs while the local Ray is up
        real(con, url, local=local, host=host)
        if not local:  # the session cluster, joined to grow the grid: no dashboard
            return
        token = session.token_path().read_text().strip()
        seen.update(
            url=url,
            local=local,
            auth=os.environ.get("RAY_AUTH_MODE"),
            with_token=_get(f"http://{url}/api/version", token),
            cookie=_get(f"http://{url}/nodes?view=summary", token, cookie=True),
            without=_get(f"http://{url}/api/version", None),
        )

    monkeypatch.setattr(session, "_print_dashboard", check_dashboard)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    store = tmp_path / "runs"
    spec = tiny_spec("e2e", [0.05, 0.1])
    con, buf = console()
    assert launch.launch(spec, store_uri=str(store), console=con) == 0
    assert seen["local"] and seen["url"].startswith("127.0.0.1:")
    assert seen["with_token"] == 200 and seen["cookie"] == 200
    assert seen["without"] == (401 if seen["auth"] == "token" else 200)
    assert "Ray dashboard: http://127.0.0.1:" in buf.getvalue() and "auth_token" in buf.getvalue()
    keys = {t.key for t in expand(spec)}
    found = rows(store, "e2e")
    assert set(found) == keys and {r["status"] for r in found.values()} == {"completed"}
    assert not ray.is_initialized()

    con, buf = console()
    assert launch.launch(spec, store_uri=str(store), console=con) == 0
    assert "skipping 2 finished cells" in buf.getvalue() and "nothing to run" in buf.getvalue()
    assert "Ray dashboard" not in buf.getvalue()  # Ray was not even started

    mtimes = {p.name: p.stat().st_mtime_ns for p in (store / "e2e" / "trials").iterdir()}
    grown = tiny_spec("e2e", [0.05, 0.1], overrides=["lr=[0.05,0.1,0.4]"])
    con, buf = console()
    assert launch.launch(grown, store_uri=str(store), address=ray_cluster.address, console=con) == 0
    assert "skipping 2 finished cells" in buf.getvalue()
    assert "running 1 cells as 1 Tune trials" in buf.getvalue()
    found = rows(store, "e2e")
    assert len(found) == 3 and {r["status"] for r in found.values()} == {"completed"}
    assert {
        p.name: p.stat().st_mtime_ns
        for p in (store / "e2e" / "trials").iterdir()
        if p.name in mtimes
    } == mtimes  # the finished cells were not touched


def arm_hold(monkeypatch, tmp_path: Path, key: str, epoch: int = 1) -> Path:
    """Arm GRID_HOLD for cell `key` after epoch `epoch`: the folder with its two pipes."""
    folder = tmp_path / "hold"
    folder.mkdir()
    os.mkfifo(folder / "held")
    os.mkfifo(folder / "release")
    monkeypatch.setenv(hooks.HOLD_ENV, f"{key}:{epoch}:{folder}")
    return folder


def wait_held(folder: Path) -> str:
    """Block until the held trial is at the barrier (it opens the pipe for writing)."""
    with open(folder / "held") as pipe:
        return pipe.read().strip()


def release(folder: Path) -> None:
    with open(folder / "release", "w"):
        pass


def launch_in_thread(**kw) -> tuple[threading.Thread, dict, io.StringIO]:
    con, buf = console()
    result: dict = {}
    thread = threading.Thread(target=lambda: result.update(rc=launch.launch(console=con, **kw)))
    thread.start()
    return thread, result, buf


@pytest.mark.ray
def test_sigkilled_launch_relaunches_to_one_row_per_cell(
    tiny_spec, tmp_path, monkeypatch, ray_cluster
):
    """A launch SIGKILLed while a cell is held mid-trial: its lease is taken over at once
    (its pid is gone), the held cell resumes, and every cell ends with one row."""
    spec = tiny_spec("kill", [0.05, 0.1, 0.2, 0.3], train={"epochs": 2})
    held_key = expand(spec)[0].key
    folder = arm_hold(monkeypatch, tmp_path, held_key)
    store = tmp_path / "runs"
    trials_dir = store / "kill" / "trials"
    cmd = [
        sys.executable,
        "-m",
        "orchestrator.cli",
        "launch",
        spec.path,
        "--store",
        str(store),
        "--address",
        ray_cluster.address,
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        assert wait_held(folder) == f"{held_key}:1"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (trials_dir / f"{held_key}.parquet").exists()  # killed mid-grid
    monkeypatch.delenv(hooks.HOLD_ENV)

    con, buf = console()
    assert launch.launch(spec, store_uri=str(store), address=ray_cluster.address, console=con) == 0
    out = buf.getvalue()
    assert f"took over the lease of {socket.gethostname()} (pid {proc.pid})" in out
    assert f"its process {proc.pid} on this host is gone" in out
    keys = {t.key for t in expand(spec)}
    assert {p.stem for p in trials_dir.glob("*.parquet")} == keys
    assert pads.dataset(str(trials_dir)).count_rows() == 4  # one row per key as a dataset
    found = rows(store, "kill")
    assert set(found) == keys and {r["status"] for r in found.values()} == {"completed"}
    assert all(r["epochs"] == 2 for r in found.values())
    assert found[held_key]["resumed_epoch"] == 1  # from the killed launch's checkpoint
    assert read_holder(open_store(str(store)), "kill") is None  # released at the end


@pytest.mark.ray
def test_a_launch_killed_after_its_last_commit_is_tidied_by_the_next(
    tiny_spec, tmp_path, monkeypatch, ray_cluster
):
    """The fault campaign (benchmarks/chaos.py): the launch and its trial SIGKILLed right
    after the grid's last commit. The next launch has nothing to run; it still takes the
    lease over and removes what the killed one left: Tune's folder and the last checkpoint."""
    spec = tiny_spec("lastcommit", [0.05], train={"epochs": 1})
    cmd = [sys.executable, "-m", "orchestrator.cli", "launch", spec.path, "--store"]
    cmd += [str(tmp_path / "runs"), "--address", ray_cluster.address]
    driver: list[subprocess.Popen] = []

    def kill_both(event: str, key: str, epoch: int, pid: int) -> bool:
        if event != "commit":
            return True
        driver[0].kill()
        os.kill(pid, signal.SIGKILL)  # before it deletes its checkpoint
        return False

    events = ChaosEvents(tmp_path / "ev.sock", kill_both)
    monkeypatch.setenv(hooks.CHAOS_ENV, str(tmp_path / "ev.sock"))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    try:
        driver.append(subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL))
        assert driver[0].wait() == -signal.SIGKILL
    finally:
        events.close()
    grid = tmp_path / "runs" / "lastcommit"
    (key,) = (t.key for t in expand(spec))
    assert (grid / "trials" / f"{key}.parquet").exists()  # committed, then killed
    assert (grid / "checkpoints" / key).exists() and any((grid / "_tune").rglob("*.json"))

    con, buf = console()
    assert launch.launch(spec, store_uri=str(tmp_path / "runs"), console=con) == 0
    assert "nothing to run" in buf.getvalue()
    assert not (grid / "checkpoints" / key).exists()
    assert [p for p in (grid / "_tune").rglob("*") if p.is_file()] == []
    assert read_holder(open_store(str(tmp_path / "runs")), "lastcommit") is None


@pytest.mark.ray
def test_a_second_launch_is_refused_while_the_first_runs(
    tiny_spec, tmp_path, monkeypatch, ray_cluster
):
    spec = tiny_spec("twice", [0.05, 0.1], train={"epochs": 2})
    first_key = expand(spec)[0].key
    folder = arm_hold(monkeypatch, tmp_path, first_key)
    store = str(tmp_path / "runs")
    thread, result, buf_a = launch_in_thread(
        spec=spec, store_uri=store, address=ray_cluster.address
    )
    wait_held(folder)  # the first launch is mid-grid, holding the lease
    con, buf_b = console()
    assert launch.launch(spec, store_uri=store, address=ray_cluster.address, console=con) == 1
    said = buf_b.getvalue()
    assert f"is being launched by {socket.gethostname()} (pid {os.getpid()}) since" in said
    assert "--wait" in said and "running" not in said  # it started nothing
    release(folder)
    thread.join()
    assert result["rc"] == 0, buf_a.getvalue()
    found = rows(tmp_path / "runs", "twice")
    assert {r["status"] for r in found.values()} == {"completed"} and len(found) == 2
    epochs = open_store(store).read_epochs("twice").to_pylist()
    assert sorted((e["key"], e["epoch"]) for e in epochs) == sorted(
        (k, e) for k in found for e in (1, 2)
    )  # each cell trained once


@pytest.mark.ray
def test_force_trains_from_scratch_and_a_failed_rerun_keeps_the_result(
    tiny_spec, tmp_path, monkeypatch, ray_cluster
):
    spec = tiny_spec("force", [0.05], train={"epochs": 2}, max_failures=0)
    key = expand(spec)[0].key
    store = str(tmp_path / "runs")
    run = dict(spec=spec, store_uri=store, address=ray_cluster.address)
    # 1. the cell fails after epoch 1: its epoch-1 checkpoint stays for a later launch
    monkeypatch.setenv(hooks.FAIL_INJECT_ENV, f"{key}:1:1")
    monkeypatch.setenv(hooks.FAIL_INJECT_DIR_ENV, str(tmp_path / "markers1"))
    assert launch.launch(console=console()[0], **run) == 1
    assert stored_checkpoints.read(open_store(store), "force", key) is not None
    # 2. --force ignores that checkpoint: it trains from epoch 1
    con, buf = console()
    assert launch.launch(force=True, console=con, **run) == 0
    assert "resuming" not in buf.getvalue()
    before = rows(tmp_path / "runs", "force")[key]
    assert before["status"] == "completed" and before["resumed_epoch"] == 0
    # 3. a --force rerun that fails keeps the completed row, its curves and the table
    monkeypatch.setenv(hooks.FAIL_INJECT_ENV, f"{key}:1:9")
    monkeypatch.setenv(hooks.FAIL_INJECT_DIR_ENV, str(tmp_path / "markers2"))
    con, buf = console()
    assert launch.launch(force=True, console=con, **run) == 1
    assert "the earlier completed result is kept" in buf.getvalue()
    after = rows(tmp_path / "runs", "force")[key]
    assert after == before
    assert open_store(store).read_epochs("force").num_rows == 2
    failure = open_store(store).read_failures("force").to_pylist()
    assert [f["key"] for f in failure] == [key]
    assert failure[0]["error"].startswith("InjectedFailure: injected failure 1/9")


def test_missing_data_is_found_before_ray_starts(tiny_spec, tmp_path, capsys):
    spec = tiny_spec(
        "nodata",
        [0.05],
        dataset={"name": "cifar10", "download": False, "root": str(tmp_path / "no-data")},
    )
    assert main(["launch", spec.path, "--store", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"grid: error: dataset.root: no cifar10 data in {tmp_path / 'no-data'}")
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert not ray.is_initialized()


@pytest.mark.ray
def test_a_trial_too_big_for_this_machine_is_refused_before_training(tiny_spec, tmp_path, capsys):
    spec = tiny_spec("huge", [0.05], resources={"cpu": 4096, "gpu": 0})
    assert main(["launch", spec.path, "--store", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert "resources: a trial asks for 4096 CPUs" in err and "--set resources.cpu=" in err
    assert len(err.splitlines()) == 1 and not ray.is_initialized()


@pytest.mark.ray
def test_missing_data_on_a_cluster_node_is_named(tiny_spec, tmp_path, ray_cluster):
    spec = tiny_spec(
        "nodata",
        [0.05],
        dataset={"name": "cifar10", "download": False, "root": str(tmp_path / "no-data")},
    )
    with pytest.raises(GridError, match=r"^dataset.root: no cifar10 data in .* \(on node "):
        launch.launch(
            spec,
            store_uri=str(tmp_path / "runs"),
            address=ray_cluster.address,
            console=console()[0],
        )


@pytest.mark.ray
def test_a_node_gone_before_its_data_check_is_skipped_not_fatal(tmp_path, ray_cluster, monkeypatch):
    # Found by the fault campaign: a node killed just before a relaunch was still listed
    # alive, its pinned check was unschedulable, and the launch died with a traceback.
    # Here the listing names one node that does not exist, beside the real ones.
    real = ray.nodes
    ghost = {"Alive": True, "NodeID": "ab" * 28, "NodeManagerAddress": "10.255.255.1"}
    monkeypatch.setattr(ray, "nodes", lambda: [*real(), ghost])
    datasets = [{"name": "synthetic"}]
    with session.ray_session(ray_cluster.address, "127.0.0.1", console()[0]):
        lines = session.preflight_nodes(datasets)
        alive = [n for n in real() if n["Alive"]]
    assert "10.255.255.1: left the cluster before its check (TaskUnschedulableError)" in lines
    checked = [line for line in lines if line.endswith("synthetic data (generated in each trial)")]
    assert len(checked) == len(alive) == len(lines) - 1  # every real node, one line each


@pytest.mark.ray
def test_a_user_error_in_a_trial_is_not_retried(tiny_spec, tmp_path, ray_cluster):
    # all 5000 synthetic training images held out: found only when the trial loads its data
    spec = tiny_spec("usererr", [0.05], dataset={"val_size": 5000}, max_failures=2)
    key = expand(spec)[0].key
    con, buf = console()
    assert (
        launch.launch(
            spec, store_uri=str(tmp_path / "runs"), address=ray_cluster.address, console=con
        )
        == 1
    )
    error = rows(tmp_path / "runs", "usererr")[key]["error"]
    assert error.startswith("dataset.val_size: 5000 leaves no training images")
    assert "\n" not in error and "Traceback" not in error
    out = buf.getvalue()
    assert f"retry   {key}" not in out and f"failed  {key}: {error} (not retried)" in out


@pytest.mark.ray
def test_s3_store_reached_by_workers_that_only_the_driver_configured(
    tiny_spec, s3_uri, ray_cluster
):
    """The cluster's nodes started without AWS_ENDPOINT_URL (conftest): the trials find
    moto's server only through the settings the launch forwards, never the credentials."""
    spec = tiny_spec("s3", [0.05, 0.1])
    con, buf = console()
    assert launch.launch(spec, store_uri=s3_uri, address=ray_cluster.address, console=con) == 0, (
        buf.getvalue()
    )
    store = open_store(s3_uri)
    found = store.read_trials("s3").to_pylist()
    assert {r["status"] for r in found} == {"completed"} and len(found) == 2
    assert not any("testing-secret" in str(v) for r in found for v in r.values())


@pytest.mark.ray
def test_injected_failures_retry_from_checkpoint_then_exhaust(
    tiny_spec, tmp_path, monkeypatch, ray_cluster
):
    spec = tiny_spec("inject", [0.05, 0.1], train={"epochs": 2})
    retried, doomed = (t.key for t in expand(spec))
    monkeypatch.setenv(hooks.FAIL_INJECT_ENV, f"{retried}:1:1,{doomed}:1:9")
    monkeypatch.setenv(hooks.FAIL_INJECT_DIR_ENV, str(tmp_path / "markers"))
    store = tmp_path / "runs"
    con, buf = console()
    assert launch.launch(spec, store_uri=str(store), address=ray_cluster.address, console=con) == 1
    found = rows(store, "inject")
    # One failure after epoch 1, then the retry resumed from epoch 1's checkpoint.
    assert found[retried]["status"] == "completed" and found[retried]["resumed_epoch"] == 1
    epochs = open_store(str(store)).read_epochs("inject").to_pylist()
    assert sorted(e["epoch"] for e in epochs if e["key"] == retried) == [1, 2]
    # max_failures 1: two attempts, then a failed row with the error, listed at the end.
    assert found[doomed]["status"] == "failed"
    assert found[doomed]["error"].startswith("InjectedFailure: injected failure 2/9")
    out = buf.getvalue()
    assert "1 of 2 cells did not finish" in out and f"{doomed}" in out
    assert "InjectedFailure" in out.split("did not finish", 1)[1]
    markers = sorted(p.name for p in (tmp_path / "markers").iterdir())
    assert markers == sorted([f"{retried}-1", f"{doomed}-1", f"{doomed}-2"])


@pytest.mark.ray
def test_worker_node_killed_mid_trial(tiny_spec, tmp_path, monkeypatch, ray_cluster):
    """The node running the trial dies while the trial is held after its first checkpoint;
    a fresh node joins and Tune retries the trial there: the grid completes (the head has
    no CPUs for trials)."""
    spec = tiny_spec("node", [0.05], train={"epochs": 2})
    folder = arm_hold(monkeypatch, tmp_path, expand(spec)[0].key)
    store = tmp_path / "runs"
    thread, result, buf = launch_in_thread(
        spec=spec, store_uri=str(store), address=ray_cluster.address
    )
    wait_held(folder)  # epoch 1 is checkpointed; the trial waits at the barrier
    assert not any((store / "node" / "trials").glob("*.parquet"))  # mid-trial
    for node in list(ray_cluster.worker_nodes):
        ray_cluster.remove_node(node)
    with node_env():
        ray_cluster.add_node(num_cpus=2, **agent_port())
    thread.join()
    assert result.get("rc") == 0, buf.getvalue()
    found = rows(store, "node")
    assert len(found) == 1 and {r["status"] for r in found.values()} == {"completed"}
    assert list(found.values())[0]["resumed_epoch"] == 1
    assert "retry   " in buf.getvalue()  # Tune saw the trial die with its node


def test_run_unit_packs_checkpoints_per_epoch_and_resumes(tiny_spec, tmp_path):
    """Without Ray: a pack of two cells checkpoints once per epoch with both states; a
    rerun from the epoch-1 checkpoint resumes there and writes full histories."""
    trials = expand(tiny_spec("unit", [0.05, 0.1], train={"epochs": 2}))
    calls = []
    statuses = trial.run_unit(
        trials,
        store_uri=str(tmp_path / "runs"),
        spec_sha256="x",
        checkpoint=lambda m, files: calls.append((m, files)),
    )
    assert statuses == ["completed", "completed"]
    assert [m["epoch"] for m, _ in calls] == [1, 2] and all(m["cells"] == 2 for m, _ in calls)
    assert set(calls[0][1]) == {t.key for t in trials}

    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    for key, data in calls[0][1].items():
        (ckpt / checkpoints.state_file(key)).write_bytes(data)
    resumes = checkpoints.load_states(ckpt, [t.key for t in trials])
    trial.run_unit(trials[:1], store_uri=str(tmp_path / "again"), spec_sha256="x", resumes=resumes)
    row = rows(tmp_path / "again", "unit")[trials[0].key]
    assert row["resumed_epoch"] == 1 and row["epochs"] == 2
    epochs = open_store(str(tmp_path / "again")).read_epochs("unit").to_pylist()
    assert sorted(e["epoch"] for e in epochs) == [1, 2]


def test_unusable_checkpoints_are_discarded_and_the_cell_starts_over(tiny_spec, tmp_path):
    """Without Ray: a torn file, a file of the 0.1 format and a state of another model are
    discarded with a warning; the cell trains from epoch 1 and completes."""
    import torch

    cell = expand(tiny_spec("bad", [0.05], train={"epochs": 2}))[0]
    other = expand(
        tiny_spec("other", [0.05], train={"epochs": 2}, model={"arch": "nin", "width": 0.25})
    )[0]
    saved = []
    trial.run_unit(
        [other],
        store_uri=str(tmp_path / "o"),
        spec_sha256="x",
        checkpoint=lambda m, files: saved.append(files[other.key]),
    )
    folder = tmp_path / "ckpt"
    folder.mkdir()
    path = folder / checkpoints.state_file(cell.key)
    path.write_bytes(saved[0][:200])  # torn
    with pytest.warns(
        checkpoints.CheckpointWarning, match=f"cell {cell.key}: checkpoint discarded"
    ):
        assert checkpoints.load_states(folder, [cell.key]) == {}
    torch.save({"epoch": 1, "model": {}}, path)  # a bare state, as 0.1 wrote
    with pytest.warns(checkpoints.CheckpointWarning, match="format None, expected 2"):
        assert checkpoints.load_states(folder, [cell.key]) == {}
    path.write_bytes(saved[0])  # readable, but another model's state
    resumes = checkpoints.load_states(folder, [cell.key])
    with pytest.warns(checkpoints.CheckpointWarning, match="cannot restore the checkpoint"):
        assert trial.run_unit(
            [cell], store_uri=str(tmp_path / "runs"), spec_sha256="x", resumes=resumes
        ) == ["completed"]
    row = rows(tmp_path / "runs", "bad")[cell.key]
    assert row["resumed_epoch"] == 0 and row["epochs"] == 2


@pytest.mark.ray
def test_a_corrupt_checkpoint_of_an_earlier_launch_is_discarded(
    tiny_spec, tmp_path, monkeypatch, ray_cluster
):
    spec = tiny_spec("corrupt", [0.05], train={"epochs": 2}, max_failures=0)
    key = expand(spec)[0].key
    store = str(tmp_path / "runs")
    monkeypatch.setenv(hooks.FAIL_INJECT_ENV, f"{key}:1:1")
    monkeypatch.setenv(hooks.FAIL_INJECT_DIR_ENV, str(tmp_path / "markers"))
    assert (
        launch.launch(spec, store_uri=store, address=ray_cluster.address, console=console()[0]) == 1
    )
    assert stored_checkpoints.listed(open_store(store), "corrupt") == {key}
    # the only checkpoint (none before it to fall back to) replaced by a torn one
    stored_checkpoints.write(open_store(store), "corrupt", key, b"not a checkpoint", keep=False)
    con, buf = console()
    assert launch.launch(spec, store_uri=store, address=ray_cluster.address, console=con) == 0
    assert "resuming 1 cells" in buf.getvalue()  # found, then discarded by the trial
    row = rows(tmp_path / "runs", "corrupt")[key]
    assert row["status"] == "completed" and row["resumed_epoch"] == 0 and row["epochs"] == 2


@pytest.mark.ray
def test_ctrl_c_says_how_far_each_cell_got_and_that_the_next_launch_resumes_it(
    tiny_spec, tmp_path, monkeypatch, ray_cluster
):
    """Ctrl-C (SIGINT to `grid launch`) while the cell is held after its first epoch's
    checkpoint: the end report says it trained 1 of 3 epochs and resumes from epoch 1."""
    spec = tiny_spec("ctrlc", [0.05], train={"epochs": 3})
    (key,) = (t.key for t in expand(spec))
    folder = arm_hold(monkeypatch, tmp_path, key, epoch=1)
    cmd = [sys.executable, "-m", "orchestrator.cli", "launch", spec.path, "--store"]
    cmd += [str(tmp_path / "runs"), "--address", ray_cluster.address]
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200"}
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert wait_held(folder) == f"{key}:1"
        proc.send_signal(signal.SIGINT)
    finally:
        release(folder)
        out, _ = proc.communicate(timeout=240)
    assert proc.returncode == 1  # the cell did not finish (docs/launching.md, "Exit statuses")
    said = " ".join(out.split())
    assert (
        f"{key} lr=0.05: interrupted after 1 of 3 epochs; the next launch resumes it from "
        "its checkpoint of epoch 1" in said
    ), out
