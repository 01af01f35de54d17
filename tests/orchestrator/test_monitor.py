"""What a running grid shows in Ray's own tools: the plain parts (titles, job metadata, the
epoch line, the Grafana dashboard's queries), then a real local Ray whose dashboard API is
read with the token while a trial is held at a barrier (GRID_HOLD): the grid's slot actor,
which trains cell after cell, its log naming each cell it starts, the job's metadata, and
the `grid_` metrics on the node's Prometheus endpoint, which every query of the Grafana
dashboard must name."""

from __future__ import annotations

import json
import re
import threading
import urllib.error
import urllib.request

import pytest
import ray

from orchestrator.execution import monitor, session
from orchestrator.execution.progress import epoch_line
from orchestrator.spec.expand import expand
from tests.orchestrator.test_launch import (
    REPO,
    arm_hold,
    launch_in_thread,
    release,
    rows,
    wait_held,
)

EXPORT_INTERVAL_MS = 500  # how often the test's Ray exports metrics


def dashboard_queries() -> list[str]:
    doc = json.loads(monitor.DASHBOARD_JSON.read_text())
    exprs = [t["expr"] for p in doc["panels"] for t in p["targets"]]
    exprs += [v["definition"] for v in doc["templating"]["list"] if v.get("definition")]
    return exprs


def queried_metrics() -> set[str]:
    return {m for e in dashboard_queries() for m in re.findall(r"\bray_grid_\w+", e)}


# -- without Ray ----------------------------------------------------------------------------
def test_grafana_dashboard_is_json_and_queries_only_grid_metrics():
    doc = json.loads(monitor.DASHBOARD_JSON.read_text())
    titles = {p["title"] for p in doc["panels"]}
    assert {
        "Cells by status",
        "Validation accuracy per cell",
        "Images/s per node",
        "Images/s per GPU",
    } <= titles
    assert all(p["targets"] for p in doc["panels"])
    assert queried_metrics() == monitor.exported_names()  # each one queried, none unknown


def test_unit_title_names_grid_cells_and_axis_values(tiny_spec):
    cells = expand(tiny_spec("title", [0.05, 0.1]))
    assert monitor.unit_title("title", cells[:1]) == f"title {cells[0].key} lr=0.05"
    pack = monitor.unit_title("title", cells)
    assert pack == f"title {cells[0].key} lr=0.05; {cells[1].key} lr=0.1"


def test_job_metadata_counts_and_no_credentials(tiny_spec):
    spec = tiny_spec("meta", [0.05, 0.1])
    meta = monitor.job_metadata(spec, "s3://key:secret@bucket/pre", total=2, to_run=1, skipped=1)
    assert meta["grid"] == "meta" and meta["grid_spec_sha256"] == spec.sha256
    assert (meta["grid_cells_total"], meta["grid_cells_to_run"], meta["grid_cells_skipped"]) == (
        "2",
        "1",
        "1",
    )
    assert meta["grid_store"] == "s3://bucket/pre" and meta["grid_spec"] == spec.path
    assert all(isinstance(v, str) for v in meta.values()) and meta["grid_version"]
    assert "grid_cells_to_run" not in monitor.job_metadata(
        spec, "runs", total=2, to_run=None, skipped=None
    )


def test_epoch_line_reads_like_grid_train():
    m = {
        "epoch": 2,
        "lr": 0.05,
        "train_loss": 0.69314,
        "train_acc": 0.5,
        "val_loss": 0.7,
        "val_acc": 0.25,
        "test_loss": None,
        "test_acc": 0.375,
        "epoch_s": 1.25,
        "images_per_s": 1234.5,
    }
    assert epoch_line(m, 30) == (
        "epoch   2/30  lr 0.05  train loss 0.6931 acc 50.00%  val "
        "loss 0.7000 acc 25.00%  test acc 37.50%  1.2s  1,234 img/s"
    )


# -- real Ray -------------------------------------------------------------------------------
def _json(url: str, token: str):
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            body = resp.read().decode()
    except urllib.error.HTTPError as e:  # say what the dashboard answered
        raise AssertionError(f"{url}: HTTP {e.code}: {e.read().decode()[:2000]}") from None
    return json.loads(body) if body.lstrip()[:1] in "[{" else body


def _metric_lines(url: str, wanted: set[str], cell: str) -> list[str]:
    """The endpoint's `ray_grid_*` lines once every wanted metric is there and the held
    cell's epoch gauge is. The gauges were set before the trial reached its barrier; Ray
    exports them on its own timer (RAY_metrics_report_interval_ms), which no test can hook,
    so this waits for that state, scraping once per export interval, with no deadline of its
    own: a loaded machine makes it slower, never wrong, and pytest's timeout bounds it."""
    interval = threading.Event()  # never set: its wait is one export interval
    while True:
        with urllib.request.urlopen(url, timeout=30) as resp:
            lines = [ln for ln in resp.read().decode().splitlines() if ln.startswith("ray_grid_")]
        names = {ln.split("{", 1)[0] for ln in lines}
        if wanted <= names and any(
            ln.startswith("ray_grid_cell_epoch{") and f'cell="{cell}"' in ln for ln in lines
        ):
            return lines
        interval.wait(EXPORT_INTERVAL_MS / 1000)


@ray.remote(num_cpus=0)
def module_file() -> str:
    import orchestrator

    return orchestrator.__file__


@pytest.mark.ray
def test_dashboard_shows_the_running_grid(tiny_spec, tmp_path, monkeypatch):
    """One slot, two cells of two epochs; the second is held after its epoch 1. The one
    actor has trained the first cell and now trains the second (a reused actor): it is
    named as the grid's slot, its log says when it started each cell and has each one's
    epoch lines, the metrics are tagged with each cell, the job carries the grid's
    metadata, and the node's Prometheus text has every metric the Grafana dashboard
    queries. Both rows are right at the end."""
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setenv("RAY_metrics_report_interval_ms", str(EXPORT_INTERVAL_MS))
    spec = tiny_spec("watch", [0.05, 0.1], train={"epochs": 2})
    first, held = expand(spec)
    folder = arm_hold(monkeypatch, tmp_path, held.key)
    store = tmp_path / "runs"
    thread, result, buf = launch_in_thread(spec=spec, store_uri=str(store), max_concurrent=1)
    try:
        wait_held(folder)
        # the workers run this checkout's code (not another install of the package)
        assert ray.get(module_file.remote()).startswith(str(REPO / "orchestrator"))
        said = buf.getvalue()
        url = re.search(r"Ray dashboard: (http://\S+)", said).group(1)
        scrape = re.search(r"Prometheus metrics \(ray_grid_\*\): (http://\S+/metrics)", said).group(
            1
        )
        assert re.search(r"Grafana dashboard: \S+/metrics/grafana/dashboards/grid_", said)
        token = session.token_path().read_text().strip()

        actors = _json(f"{url}/logical/actors", token)["data"]["actors"].values()
        slots = [a for a in actors if a["className"] == "GridSlot"]
        assert len(slots) == 1, [(a["className"], a["reprName"], a["state"]) for a in actors]
        assert slots[0]["state"] == "ALIVE" and slots[0]["reprName"] == "GridSlot(watch)"
        log = _json(
            f"{url}/api/v0/logs/file?actor_id={slots[0]['actorId']}&suffix=out&lines=50", token
        )
        lines = [ln for ln in log.splitlines() if ln.strip()]
        starts = [ln for ln in lines if ln.startswith("starts ")]
        assert starts == [f"starts watch {first.key} lr=0.05", f"starts watch {held.key} lr=0.1"]
        at = lines.index(starts[1])  # each cell's epoch lines follow its start line
        assert any(ln.startswith(f"{first.key} epoch   2/2  lr 0.05  ") for ln in lines[:at])
        assert any(ln.startswith(f"{held.key} epoch   1/2  lr 0.1  ") for ln in lines[at:])
        assert not any(ln.startswith(held.key) for ln in lines[:at]), lines
        assert "img/s" in log

        jobs = [
            j
            for j in _json(f"{url}/api/jobs/", token)
            if (j.get("metadata") or {}).get("grid") == "watch"
        ]
        assert len(jobs) == 1 and jobs[0]["status"] == "RUNNING"
        meta = jobs[0]["metadata"]
        assert (
            meta["grid_cells_total"],
            meta["grid_cells_to_run"],
            meta["grid_cells_skipped"],
        ) == ("2", "2", "0")
        assert meta["grid_store"] == str(store) and meta["grid_spec_sha256"] == spec.sha256

        lines = _metric_lines(scrape, queried_metrics(), held.key)
        tagged = [ln for ln in lines if f'cell="{held.key}"' in ln and 'grid="watch"' in ln]
        done = [ln for ln in lines if f'cell="{first.key}"' in ln and 'grid="watch"' in ln]
        assert any(ln.startswith("ray_grid_cell_epoch{") and ln.endswith(" 2.0") for ln in done)
        assert {ln.split("{", 1)[0] for ln in tagged} >= {
            "ray_grid_cell_epoch",
            "ray_grid_cell_train_loss",
            "ray_grid_cell_val_acc",
            "ray_grid_cell_test_acc",
            "ray_grid_cell_images_per_s",
        }
        assert any(
            ln.startswith("ray_grid_cell_epoch{") and ln.endswith(" 1.0") for ln in tagged
        ), tagged
        assert any(ln.startswith("ray_grid_cells{") and 'status="running"' in ln for ln in lines), (
            lines
        )
    finally:
        release(folder)
        thread.join()
    assert result["rc"] == 0, buf.getvalue()
    found = rows(store, "watch")
    assert set(found) == {held.key, first.key}
    assert {r["status"] for r in found.values()} == {"completed"}
    assert {r["epochs"] for r in found.values()} == {2}
