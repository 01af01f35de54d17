"""Pre-flight checks of the cells against the devices (`orchestrator/planning/preflight.py`): plain
functions over a cluster description, then through `grid launch`, which exits 2 with one
line naming the keys before Ray starts (an explicit `resources.gpu`)."""

from __future__ import annotations

import pytest

from orchestrator.cli.main import main
from orchestrator.planning import preflight
from orchestrator.spec.expand import expand
from tests.orchestrator.conftest import write_spec
from trainers.errors import GridError

A100 = {"CPU": 16.0, "GPU": 8.0, "accelerator_type:A100": 1.0}
V100 = {"CPU": 16.0, "GPU": 8.0, "accelerator_type:V100": 1.0}


def _cells(tiny_spec, **train):
    spec = tiny_spec("pf", [0.05, 0.1], train=train)
    return spec, expand(spec)


@pytest.mark.parametrize(
    ("device", "gpu", "says"),
    [
        ("cuda", 0.0, "train.device: cuda with resources.gpu"),
        ("cuda:1", 0.0, "train.device: cuda:1"),
        ("cpu", 0.5, "train.device: cpu with resources.gpu"),
    ],
)
def test_device_against_gpus_is_one_line_naming_both_keys(tiny_spec, device, gpu, says):
    spec, cells = _cells(tiny_spec, device=device)
    with pytest.raises(GridError) as e:
        preflight.check_devices(spec, cells, gpu)
    assert says in str(e.value) and "resources.gpu" in str(e.value)
    assert str(spec.path) in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize(
    ("device", "gpu"), [("cuda", 1.0), ("cpu", 0.0), ("auto", 0.5), ("auto", 0)]
)
def test_matching_device_and_gpus_pass(tiny_spec, device, gpu):
    spec, cells = _cells(tiny_spec, device=device)
    assert preflight.check_devices(spec, cells, gpu) is None


def test_bf16_is_refused_on_gpus_without_native_bf16_and_auto_is_not(tiny_spec):
    spec, cells = _cells(tiny_spec, precision="bf16")
    old = preflight.gpu_kinds({"nodes": [V100, {"CPU": 4.0}]})
    assert old == {"V100": False}
    with pytest.raises(GridError, match=r"train.precision: bf16 .*V100"):
        preflight.check_precision(spec, cells, 1.0, old)
    # Ampere and newer, a CPU-only launch, or auto precision: nothing to refuse.
    preflight.check_precision(spec, cells, 1.0, preflight.gpu_kinds({"nodes": [A100]}))
    preflight.check_precision(spec, cells, 0.0, old)
    spec, cells = _cells(tiny_spec, precision="auto")
    preflight.check_precision(spec, cells, 1.0, old)


def test_gpu_kinds_read_autoscaler_types_and_the_local_capability():
    cluster = {"nodes": [], "node_types": [{"name": "g", "resources": V100, "max_count": 2}]}
    assert preflight.gpu_kinds(cluster) == {"V100": False}
    assert preflight.gpu_kinds({"nodes": []}, (7, 5)) == {"sm_75": False}
    assert preflight.gpu_kinds({"nodes": []}, (9, 0)) == {"sm_90": True}
    assert preflight.native_bf16("H100") and preflight.native_bf16("SOME_NEW_GPU")
    assert not preflight.native_bf16("T4")


def test_a_compiled_pack_is_refused(tiny_spec):
    spec = tiny_spec("pk", [0.05, 0.1], train={"compile": True}, resources={"pack": 2})
    with pytest.raises(GridError, match=r"resources.pack: 2 with train.compile: true"):
        preflight.check_packs(spec, expand(spec))
    spec = tiny_spec("pk2", [0.05, 0.1], resources={"pack": 2})
    preflight.check_packs(spec, expand(spec))


def test_check_runs_all_three_on_a_cluster_description(tiny_spec):
    spec, cells = _cells(tiny_spec, precision="bf16", device="auto")
    cluster = {"nodes": [V100], "node_types": None, "local": False}
    with pytest.raises(GridError, match="bf16"):
        preflight.check(spec, cells, 1.0, cluster)
    preflight.check(spec, cells, 0.0, cluster)


def test_launch_exits_2_before_ray_starts(tmp_path, capsys):
    path = write_spec(
        tmp_path, "cudazero", [0.05], train={"device": "cuda"}, resources={"cpu": 1, "gpu": 0}
    )
    code = main(["launch", str(path), "--store", str(tmp_path / "runs"), "--yes"])
    err = capsys.readouterr().err
    assert code == 2
    assert "train.device: cuda with resources.gpu: 0" in err and len(err.strip().splitlines()) == 1
