"""Placement on Ray's declared GPUs, on this CPU machine: a cluster of its own whose worker
node declares 2 GPUs (`cluster_utils.Cluster`, real raylets; the session cluster of
conftest.py has none and stays as it is). The trials train on the CPU (`train.device: auto`
finds no CUDA device) while Ray accounts the GPUs and sets CUDA_VISIBLE_DEVICES per trial.

What each trial saw is read from its `GRID_RENDEZVOUS` record (`orchestrator/execution/hooks.py`),
written inside the trial; every trial of a test is held at the hook's gate until all of
them have arrived, so "running at once" is an event the test observed, not a timing:
- `gpu: 0.5`: four trials at once on two GPUs, two per GPU;
- `gpu: 0.25` with `cpu: auto`: eight trials of half a CPU at once, four per GPU;
- `gpu: auto`: resolved from the cluster (1 per trial), one GPU each;
- packs: one trial per GPU, the cells of a pack on their trial's one GPU.
"""

from __future__ import annotations

import collections
import contextlib
import fcntl
import json
import os
from pathlib import Path

import pytest

from orchestrator.execution import hooks
from results.store import open_store
from tests.orchestrator.conftest import agent_port, ensure_token, node_env
from tests.orchestrator.test_launch import launch_in_thread

pytestmark = [pytest.mark.ray, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def gpu_cluster():
    """A head with no CPUs and one worker node with 4 CPUs and 2 (declared) GPUs."""
    from ray.cluster_utils import Cluster

    ensure_token()
    with node_env():
        cluster = Cluster(
            initialize_head=True,
            head_node_args={
                "num_cpus": 0,
                "num_gpus": 0,
                "include_dashboard": False,
                **agent_port(),
            },
        )
        cluster.add_node(num_cpus=4, num_gpus=2, **agent_port())
    yield cluster
    cluster.shutdown()


@contextlib.contextmanager
def rendezvous(tmp_path, monkeypatch):
    """Arm GRID_RENDEZVOUS with its gate closed; yields (folder, arrive(n) -> [(key, pid)]),
    which waits on the named pipe for n trials, then opens the gate."""
    folder = tmp_path / "rendezvous"
    folder.mkdir()
    os.mkfifo(folder / "arrived")
    monkeypatch.setenv(hooks.RENDEZVOUS_ENV, str(folder))
    with open(folder / "gate", "w") as gate:
        fcntl.flock(gate, fcntl.LOCK_EX)

        def arrive(n: int) -> list[list[str]]:
            got: list[list[str]] = []
            while len(got) < n:
                with open(folder / "arrived") as pipe:  # blocks until a trial writes
                    got += [line.split() for line in pipe.read().splitlines()]
            fcntl.flock(gate, fcntl.LOCK_UN)
            return got

        yield folder, arrive


def seen(folder: Path) -> dict[str, dict]:
    """{key: what the trial of that cell saw}."""
    return {r["key"]: r for r in (json.loads(p.read_text()) for p in folder.glob("seen-*.json"))}


def run(gpu_cluster, tiny_spec, tmp_path, monkeypatch, n: int, name: str, lrs, **changes):
    """Launch the tiny grid on the GPU cluster, wait for `n` trials at the gate, let them
    finish; (rc, what each cell saw, the arrivals, the console text, the rows)."""
    spec = tiny_spec(name, lrs, **changes)
    store = tmp_path / "runs"
    with rendezvous(tmp_path, monkeypatch) as (folder, arrive):
        thread, result, buf = launch_in_thread(
            spec=spec, store_uri=str(store), address=gpu_cluster.address
        )
        arrived = arrive(n)
        thread.join()
    rows = {r["key"]: r for r in open_store(str(store)).read_trials(name).to_pylist()}
    return result["rc"], seen(folder), arrived, buf.getvalue(), rows


def test_half_gpu_trials_run_two_per_gpu(gpu_cluster, tiny_spec, tmp_path, monkeypatch):
    rc, saw, arrived, out, rows = run(
        gpu_cluster,
        tiny_spec,
        tmp_path,
        monkeypatch,
        4,
        "half",
        [0.01, 0.02, 0.05, 0.1],
        resources={"cpu": 1, "gpu": 0.5},
    )
    assert rc == 0, out
    assert "1 CPU + 0.5 GPU each" in " ".join(out.split())
    assert len({pid for _, pid in arrived}) == 4  # four trials, all running at once
    per_gpu = collections.Counter(s["cuda"] for s in saw.values())
    assert sorted(per_gpu) == ["0", "1"] and set(per_gpu.values()) == {2}
    assert {r["status"] for r in rows.values()} == {"completed"} and len(rows) == 4
    assert {r["device"] for r in rows.values()} == {"cpu"}  # Ray's GPUs, the CPU's work


def test_cpu_auto_fits_every_quarter_gpu_trial_the_node_holds(
    gpu_cluster, tiny_spec, tmp_path, monkeypatch
):
    # 2 GPUs at 0.25 each hold 8 trials; with `cpu: 1` only 4 would fit the node's 4 CPUs
    # and the GPUs would stay half used. `cpu: auto` gives each 0.5 CPU: all 8 run at once.
    rc, saw, arrived, out, rows = run(
        gpu_cluster,
        tiny_spec,
        tmp_path,
        monkeypatch,
        8,
        "quarter",
        [0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.07, 0.08],
        resources={"cpu": "auto", "gpu": 0.25},
    )
    text = " ".join(out.split())
    assert rc == 0, out
    assert "0.5 CPU + 0.25 GPU each" in text and "cpu auto -> 0.5 per trial" in text
    assert len({pid for _, pid in arrived}) == 8  # eight trials, all running at once
    per_gpu = collections.Counter(s["cuda"] for s in saw.values())
    assert sorted(per_gpu) == ["0", "1"] and set(per_gpu.values()) == {4}
    assert {s["threads"] for s in saw.values()} == {"1"}  # Ray: at least one thread
    assert {r["status"] for r in rows.values()} == {"completed"} and len(rows) == 8


def test_gpu_auto_is_decided_from_the_cluster(gpu_cluster, tiny_spec, tmp_path, monkeypatch):
    rc, saw, arrived, out, rows = run(
        gpu_cluster,
        tiny_spec,
        tmp_path,
        monkeypatch,
        2,
        "auto",
        [0.05, 0.1],
        resources={"cpu": 1, "gpu": "auto"},
    )
    text = " ".join(out.split())
    assert rc == 0, out
    assert "gpu auto -> 1 per trial: the cluster has 2 GPUs" in text
    assert "1 CPU + 1 GPU each" in text
    assert sorted(s["cuda"] for s in saw.values()) == ["0", "1"]  # one GPU each, not shared
    assert len(rows) == 2


def test_packs_take_one_gpu_each(gpu_cluster, tiny_spec, tmp_path, monkeypatch):
    rc, saw, arrived, out, rows = run(
        gpu_cluster,
        tiny_spec,
        tmp_path,
        monkeypatch,
        2,
        "packs",
        [0.01, 0.02, 0.05, 0.1],
        resources={"cpu": 1, "gpu": "auto", "pack": 2},
    )
    assert rc == 0, out
    assert "running 4 cells as 2 Tune trials" in " ".join(out.split())
    by_pid = collections.defaultdict(set)
    for s in saw.values():
        by_pid[s["pid"]].add(s["cuda"])
    assert len(by_pid) == 2 and all(len(g) == 1 for g in by_pid.values())  # a pack: one GPU
    assert sorted(g for gs in by_pid.values() for g in gs) == ["0", "1"]  # one pack per GPU
    assert {r["step_mode"] for r in rows.values()} == {"loop"}  # auto on a CPU
    assert len(rows) == 4 and {r["status"] for r in rows.values()} == {"completed"}


def test_a_cpu_device_on_gpus_decided_by_auto_is_refused_before_any_trial(
    gpu_cluster, tiny_spec, tmp_path
):
    from orchestrator.execution import launch
    from tests.orchestrator.test_launch import console
    from trainers.errors import GridError

    spec = tiny_spec("cpuauto", [0.05], train={"device": "cpu"}, resources={"gpu": "auto"})
    con, _ = console()
    with pytest.raises(GridError, match=r"train.device: cpu with resources.gpu: auto \(-> 1\)"):
        launch.launch(
            spec, store_uri=str(tmp_path / "runs"), address=gpu_cluster.address, console=con
        )
    assert open_store(str(tmp_path / "runs")).statuses("cpuauto") == {}
