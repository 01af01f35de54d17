"""Every command the README names, run as users run it: the `grid` program in its own
process (`python -m orchestrator.cli`, the same `main()` the installed script calls, with
no argv), so that what the program installs at process level (orchestrator/cli/no_pandas.py)
is tested too. In-process tests call `main(argv)`, where it is never installed.

One tiny store is shared: the quickstart grid with one finished cell. Elsewhere, as the
program too: `grid launch` that trains (test_launch.py, test_halving_sync.py), `grid launch
--submit --follow` (test_submit.py), `grid bench` and `grid train` with ray unimportable
(tests/test_gpu_box.py).
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.spec.expand import expand
from orchestrator.spec.load import load_spec
from results.store import open_store
from results.store.schema import epoch_rows, trial_row
from tests.results.conftest import FAKE_PROVENANCE, fake_summary

REPO = Path(__file__).resolve().parents[2]
SPEC = str(REPO / "grids" / "quickstart.yaml")
ONE_KIND = ("--set", "arch=[allcnn_c]", "--set", "batch_norm=[false]")  # one unit to time


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    """The quickstart grid's store with its first cell finished (a fake run)."""
    root = tmp_path_factory.mktemp("program")
    cell = expand(load_spec(SPEC))[0]
    summary = fake_summary()
    row = trial_row(cell, summary, FAKE_PROVENANCE)
    open_store(str(root / "runs")).write_trial(
        cell.grid, cell.key, row, epoch_rows(cell, summary["history"])
    )
    return root


def grid(root: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """`grid ARGS` in a fresh process, in `root`, as the installed program runs."""
    return subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", *args],
        cwd=root,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "HOME": str(root), **(env or {})},
        capture_output=True,
        text=True,
        timeout=240,
    )


def ok(done: subprocess.CompletedProcess, code: int = 0) -> str:
    assert done.returncode == code and "Traceback" not in done.stderr, done.stderr[-3000:]
    return done.stdout


def test_plan_with_its_estimate(store):
    """`--estimate` trains a few steps; torch._dynamo asks importlib whether pandas exists,
    which the pandas blocker of the read-only commands once answered with an exception."""
    out = ok(grid(store, "plan", SPEC, *ONE_KIND, "--estimate", "--device", "cpu", "--slots", "1"))
    assert "device-hours" in out and "1 kinds of unit timed" in out.replace("\n", " ")
    cells = json.loads(ok(grid(store, "plan", SPEC, "--json", "--smoke")))
    assert len(cells["cells"]) == 8


def test_status_table_plot_and_report_read_the_store(store):
    status = json.loads(ok(grid(store, "status", SPEC, "--json", "--all")))
    assert [c["status"] for c in status].count("completed") == 1
    table = ok(grid(store, "table", SPEC, "--format", "markdown", "--full"), code=0)
    assert "| arch" in table
    ok(grid(store, "table", SPEC, "--strict", "--format", "csv", "--out", "t.csv"), code=1)
    assert (store / "t.csv").read_text().startswith("table,model.arch,")
    ok(grid(store, "plot", SPEC, "--out", "figs", "--format", "svg", "--size", "one"))
    assert list((store / "figs").glob("*.svg"))
    ok(grid(store, "report", SPEC, "--out", "pages", "--store", "runs"))
    assert (store / "pages" / "quickstart.html").exists()


def test_launch_dry_run_models_and_train(store):
    out = ok(grid(store, "launch", SPEC, "--dry-run", "--store", "runs", "--max-concurrent", "2"))
    assert "skipping 1 finished cell" in out.replace("\n", " ")
    models = json.loads(ok(grid(store, "models", "--json")))
    assert {"allcnn_c", "resnet9"} <= {m["name"] for m in models}
    sets = ("train.epochs=1", "dataset.subset=64")
    key = expand(load_spec(SPEC, sets))[-1].key
    args = ("--set", sets[0], "--set", sets[1], "--cell", key[:6])
    assert "completed after 1 epochs" in ok(grid(store, "train", SPEC, *args))


def test_bad_input_is_one_line_and_exit_2(store):
    done = grid(store, "plan", "no-such.yaml", "--estimate")
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("grid: error: ")


def test_a_store_that_cannot_be_reached_is_exit_3_not_bad_input(store):
    """Exit 2 says "fix your input"; an S3 endpoint that does not answer is an outage,
    which a script or the engineer on call retries later: its own status and one line."""
    with socket.socket() as s:  # a loopback port where nothing listens
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing-secret",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_MAX_ATTEMPTS": "1",
        "AWS_CONFIG_FILE": str(store / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(store / "no-aws-credentials"),
    }
    for command in (("status", SPEC), ("launch", SPEC, "--dry-run")):
        done = grid(store, *command, "--store", "s3://bucket/prefix", env=env)
        assert done.returncode == 3, done.stderr
        assert done.stderr.startswith("grid: error: store s3://bucket/prefix: ")
        assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert "3  the store could not be reached" in ok(grid(store, "--help"))
