"""`grid launch --submit`: the plain parts (ids, entrypoint, runtime env, addresses) without
Ray, then a real `ray start --head` on loopback with token auth, in its own temp dir and on
its own ports (never the session's cluster, which other tests use): a tiny grid submitted as
a Ray Job and followed to its end, a second submit refused while the first job's trial is
held at a barrier (GRID_HOLD), and every cell in the store."""

from __future__ import annotations

import getpass
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest

from orchestrator.cli.main import main
from orchestrator.execution import hooks, submit
from orchestrator.spec.expand import expand
from tests.orchestrator.conftest import ensure_token
from tests.orchestrator.test_launch import REPO, arm_hold, release, rows, wait_held
from trainers.errors import GridError

MARK = "GRID_TEST_RAY_HEAD"  # in the environment of every process of the test's Ray


# -- without Ray ----------------------------------------------------------------------------
def test_submission_ids_follow_grid_and_store():
    a = submit.submission_prefix("g", "s3://bucket/a")
    assert a == submit.submission_prefix("g", "s3://bucket/a") and a.startswith("grid-g-")
    assert a != submit.submission_prefix("g", "s3://bucket/b")
    assert a != submit.submission_prefix("h", "s3://bucket/a")
    assert submit.submission_prefix("g", "s3://k:secret@bucket/a") == a  # credentials never count
    assert submit.store_for_job("s3://bucket/a") == "s3://bucket/a"
    assert submit.store_for_job("runs") == str(Path("runs").resolve())


def test_entrypoint_and_runtime_env(tiny_spec, monkeypatch):
    spec = tiny_spec("entry", [0.05])
    cmd = submit.entrypoint(
        spec,
        "/abs/runs",
        sets=["lr=[0.1, 0.2]"],
        smoke=True,
        force=False,
        wait=True,
        max_concurrent=3,
    )
    assert cmd == (
        "python -m orchestrator.cli launch entry.yaml --store /abs/runs "
        "--from-submit --set 'lr=[0.1, 0.2]' --smoke --wait --max-concurrent 3"
    )
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://minio:9000")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.setenv(hooks.HOLD_ENV, "abc:1:/tmp/x")
    env = submit.runtime_env("name: entry\n")
    assert Path(env["working_dir"]) == REPO and "/runs/" in env["excludes"]
    assert env["env_vars"][submit.SPEC_ENV] == "name: entry\n"
    assert env["env_vars"]["AWS_ENDPOINT_URL"] == "http://minio:9000"
    assert env["env_vars"][hooks.HOLD_ENV] == "abc:1:/tmp/x"
    assert "secret" not in str(env)


def test_the_jobs_driver_knows_the_env_vars_its_job_sets(monkeypatch):
    """Ray refuses a ray.init env var that the job's runtime env sets too: the driver of a
    --submit job leaves those out (session.ray_session)."""
    from orchestrator.execution.session import job_env_vars

    monkeypatch.delenv("RAY_JOB_CONFIG_JSON_ENV_VAR", raising=False)
    assert job_env_vars() == {}
    monkeypatch.setenv(
        "RAY_JOB_CONFIG_JSON_ENV_VAR",
        json.dumps(
            {"runtime_env": {"working_dir": "gcs://x.zip", "env_vars": {"AWS_REGION": "eu"}}}
        ),
    )
    assert job_env_vars() == {"AWS_REGION": "eu"}


def test_spec_comes_back_from_the_environment(monkeypatch):
    monkeypatch.setenv(submit.SPEC_ENV, "name: back\n")
    path = Path(submit.spec_from_env("some/dir/back.yaml"))
    assert path.name == "back.yaml" and path.read_text() == "name: back\n"
    monkeypatch.delenv(submit.SPEC_ENV)
    with pytest.raises(GridError, match="--from-submit: no spec"):
        submit.spec_from_env("back.yaml")


def test_submit_dry_run_says_what_it_would_send(tiny_spec, tmp_path, capsys):
    spec = tiny_spec("dry", [0.05])
    store = tmp_path / "runs"
    assert main(["launch", spec.path, "--submit", "--dry-run", "--store", str(store)]) == 0
    out = capsys.readouterr().out
    assert f"would submit dry as Ray job {submit.submission_prefix('dry', str(store))}-<n>: " in out
    # the job carries who submitted it and the grid's share (docs/cluster.md)
    share = f"--owner {getpass.getuser()} --weight 1 --priority 0"
    assert f"launch dry.yaml --store {store} --from-submit {share} (dry run" in out


def test_submit_needs_a_dashboard_address(tiny_spec, monkeypatch, capsys):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    for bad in (None, "auto", "ray://head:10001"):
        with pytest.raises(GridError, match="--submit needs the cluster's dashboard address"):
            submit.dashboard_address(bad)
    assert submit.dashboard_address("head:8265") == "http://head:8265"
    spec = tiny_spec("addr", [0.05])
    assert main(["launch", spec.path, "--follow"]) == 2
    assert "--follow: only with --submit" in capsys.readouterr().err
    with socket.socket() as s:  # nobody listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert main(["launch", spec.path, "--submit", "--address", f"127.0.0.1:{port}"]) == 2
    err = capsys.readouterr().err
    assert f"--address http://127.0.0.1:{port}: no Ray dashboard answers there" in err
    assert len(err.splitlines()) == 1


# -- real Ray: `ray start --head` -------------------------------------------------------------
def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _ours(pid: str, temp: str) -> bool:
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return f"{MARK}={temp}".encode() in environ or temp.encode() in cmdline


def stop_ray_under(temp: str) -> None:
    """Kill the processes of the Ray started in `temp` (and only those: `ray stop` would
    stop every Ray on the machine)."""
    for pid in [p for p in os.listdir("/proc") if p.isdigit() and int(p) != os.getpid()]:
        if _ours(pid, temp):
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass


# Tries of `ray start`: Ray 2.60 gives a new head a fixed 30 s to register its raylet with
# the GCS (ray/_private/node.py, `raylet_start_wait_time_s`), which a 2-core machine that
# already runs the session's cluster can miss (seen once in CI: "The current node timed out
# during startup"). A second try, with what the first left stopped, on fresh ports.
HEAD_TRIES = 2


@pytest.fixture(scope="module")
def ray_head():
    """A Ray head on loopback with token auth and its dashboard; yields its dashboard URL."""
    ensure_token()
    temp = tempfile.mkdtemp(prefix="gsub", dir="/tmp")  # short: Ray's socket paths are bounded
    try:
        for attempt in range(1, HEAD_TRIES + 1):
            ports, done = _start_head(temp)
            if done.returncode == 0:
                break
            stop_ray_under(temp)
            assert attempt < HEAD_TRIES, done.stdout + done.stderr
        yield f"http://127.0.0.1:{ports['dashboard-port']}"
    finally:
        stop_ray_under(temp)
        shutil.rmtree(temp, ignore_errors=True)


def _start_head(temp: str) -> tuple[dict, subprocess.CompletedProcess]:
    """`ray start --head` in `temp`, on free ports: (the ports, what it returned)."""
    names = (
        "port",
        "dashboard-port",
        "ray-client-server-port",
        "dashboard-agent-listen-port",
        "dashboard-agent-grpc-port",
        "runtime-env-agent-port",
        "metrics-export-port",
        "node-manager-port",
        "object-manager-port",
    )
    ports = dict(zip(names, free_ports(len(names)), strict=True))
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update({"RAY_AUTH_MODE": "token", MARK: temp})
    cmd = [
        "ray",
        "start",
        "--head",
        "--node-ip-address=127.0.0.1",
        "--dashboard-host=127.0.0.1",
        f"--temp-dir={temp}",
        "--num-cpus=2",
        "--num-gpus=0",
        "--include-dashboard=true",
        "--disable-usage-stats",
        *[f"--{n}={p}" for n, p in ports.items()],
    ]
    return ports, subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)


def unblock_if_it_ends(proc: subprocess.Popen, folder: Path) -> None:
    """When `proc` (following the job) ends while the test still waits at the barrier, say
    so through the barrier's pipe instead of leaving the test blocked."""

    def watch() -> None:
        proc.wait()
        try:
            fd = os.open(folder / "held", os.O_WRONLY | os.O_NONBLOCK)
        except OSError:  # no one waits there (any more)
            return
        with os.fdopen(fd, "w") as pipe:
            pipe.write(f"the job ended first (exit {proc.returncode})\n")

    threading.Thread(target=watch, daemon=True).start()


def _grid(*args: str) -> list[str]:
    return [sys.executable, "-m", "orchestrator.cli", "launch", *args]


@pytest.mark.ray
def test_submit_runs_the_grid_as_a_ray_job(tiny_spec, tmp_path, monkeypatch, ray_head):
    spec = tiny_spec("sub", [0.05, 0.1], train={"epochs": 2})
    held = expand(spec)[0].key
    folder = arm_hold(monkeypatch, tmp_path, held)  # forwarded to the job by --submit
    store = tmp_path / "runs"
    argv = [spec.path, "--store", str(store), "--submit", "--address", ray_head]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    follow = subprocess.Popen(
        _grid(*argv, "--follow"),
        cwd=REPO,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    reached = False
    try:
        said, found = "", None
        while not found:  # Ray's upload of the checkout is logged first
            line = follow.stdout.readline()
            assert line, f"--follow ended before the job was submitted:\n{said}"
            said += line
            found = re.search(r"submitted sub as Ray job (grid-sub-\w+-\d+): 2 of 2 cells", line)
        job_id = found.group(1)
        unblock_if_it_ends(follow, folder)
        assert wait_held(folder) == f"{held}:1"  # the job's trial is mid-grid
        reached = True
        again = subprocess.run(
            _grid(*argv), cwd=REPO, env=env, capture_output=True, text=True, timeout=120
        )
        assert again.returncode == 1, again.stdout + again.stderr
        assert f"is already running as Ray job {job_id} (RUNNING)" in again.stdout
        assert "nothing submitted" in again.stdout
    finally:
        if reached:
            release(folder)
        else:  # the held trial stays at its barrier; the cluster goes at teardown
            follow.kill()
    # --follow ends when the job does. Read through the same buffered pipe as readline
    # above: communicate() would read the raw pipe and drop what readline buffered.
    out = follow.stdout.read()
    follow.wait()
    assert follow.returncode == 0, said + out
    assert f"ray job logs -f {job_id}" in out and "sub: all 2 cells finished" in out
    assert f"Ray job {job_id}: SUCCEEDED" in out

    from ray.job_submission import JobSubmissionClient

    info = JobSubmissionClient(ray_head, headers=submit.auth_headers()).get_job_info(job_id)
    assert info.metadata["grid"] == "sub" and info.metadata["grid_cells_total"] == "2"
    assert info.metadata["grid_store"] == str(store)
    found = rows(store, "sub")
    assert set(found) == {t.key for t in expand(spec)}
    assert {r["status"] for r in found.values()} == {"completed"}
