"""What a trial asks for, decided from fake cluster descriptions (no Ray)."""

import pytest

from orchestrator.planning.resources import check_placement, decide_cpu, decide_gpu
from trainers.errors import GridError

LAPTOP = {"nodes": [{"CPU": 2.0}], "node_types": None, "local": True}
GPU_NODE = {"nodes": [{"CPU": 8.0, "GPU": 2.0}], "node_types": None, "local": False}
AUTOSCALING = {
    "nodes": [{"CPU": 4.0}],
    "local": False,
    "node_types": [
        {"name": "head", "resources": {"CPU": 4.0}, "max_count": 1},
        {"name": "gpu-worker", "resources": {"CPU": 8.0, "GPU": 1.0}, "max_count": 4},
    ],
}


def test_gpu_auto_follows_the_gpus_up_now():
    assert decide_gpu("auto", GPU_NODE) == (1.0, "gpu auto -> 1 per trial: the cluster has 2 GPUs")
    gpu, why = decide_gpu("auto", LAPTOP)
    assert gpu == 0.0 and "this machine has no GPU" in why


def test_gpu_auto_counts_gpu_nodes_an_autoscaler_can_add():
    gpu, why = decide_gpu("auto", AUTOSCALING)
    assert gpu == 1.0 and "autoscaler can add GPU nodes (gpu-worker)" in why
    capped = {**AUTOSCALING, "node_types": [dict(AUTOSCALING["node_types"][1], max_count=0)]}
    gpu, why = decide_gpu("auto", capped)
    assert gpu == 0.0 and "nor can its autoscaler add one" in why


def test_an_explicit_gpu_share_is_kept():
    assert decide_gpu(0.5, LAPTOP)[0] == 0.5 and decide_gpu(0, GPU_NODE)[0] == 0.0


def test_a_trial_too_big_for_a_local_ray_is_a_grid_error_with_the_fix():
    assert check_placement({"CPU": 2.0, "GPU": 0.0}, LAPTOP) is None
    with pytest.raises(
        GridError,
        match=r"asks for 4 CPUs and 0 GPUs, but this machine has 2 "
        r"CPUs and 0 GPUs.*--set resources.cpu=2",
    ):
        check_placement({"CPU": 4.0, "GPU": 0.0}, LAPTOP)
    with pytest.raises(GridError, match="--set resources.gpu=0"):
        check_placement({"CPU": 1.0, "GPU": 1.0}, LAPTOP)


def test_on_a_cluster_an_autoscaler_node_type_counts_and_else_it_warns():
    assert check_placement({"CPU": 8.0, "GPU": 1.0}, AUTOSCALING) is None
    said = check_placement({"CPU": 16.0, "GPU": 1.0}, AUTOSCALING)
    assert said.startswith("no node of the cluster has 16 CPUs and 1 GPUs")


@pytest.mark.parametrize(
    ("gpu", "cpus", "gpus", "want"),
    [
        (0.25, 16, 1, 4.0),  # one GPU, 4 trials: 4 CPUs each
        (0.5, 16, 8, 1.0),  # 16 trials on 16 CPUs
        (0.25, 16, 8, 0.5),  # 32 trials: half a CPU each, so that all of them fit
        (1.0, 16, 8, 2.0),
        (0.3, 16, 1, 5.0),  # 3 whole trials per GPU: 16 / 3, whole CPUs above 1
    ],
)
def test_cpu_auto_spreads_a_gpu_nodes_cpus_over_the_trials_its_gpus_hold(gpu, cpus, gpus, want):
    node = {"nodes": [{"CPU": float(cpus), "GPU": float(gpus)}], "node_types": None}
    cpu, why = decide_cpu("auto", gpu, node)
    assert cpu == want and why.startswith(f"cpu auto -> {want:g} per trial")
    trials = int(gpus / gpu + 1e-9)
    assert cpu * trials <= cpus  # every trial the GPUs hold fits the node's CPUs at once


def test_cpu_auto_takes_the_smallest_share_the_autoscaler_and_a_fixed_cpu():
    assert decide_cpu("auto", 0.5, AUTOSCALING)[0] == 4.0  # the GPU worker type: 8 CPUs, 2 trials
    two = {"nodes": [{"CPU": 16.0, "GPU": 2.0}, {"CPU": 8.0, "GPU": 2.0}], "node_types": None}
    assert decide_cpu("auto", 1.0, two)[0] == 4.0  # fits both nodes
    assert decide_cpu("auto", 0.0, GPU_NODE) == (1.0, "cpu auto -> 1 per trial: trials on CPUs")
    assert decide_cpu("auto", 0.5, LAPTOP)[0] == 1.0
    assert decide_cpu(3, 0.5, GPU_NODE) == (3.0, "resources.cpu: 3 (from the spec)")


H200_NODE = {
    "nodes": [{"CPU": 16.0, "GPU": 1.0, "accelerator_type:H200": 1.0}],
    "node_types": None,
    "local": False,
}


def test_gpu_auto_gives_the_trials_per_gpu_measured_on_that_kind(monkeypatch):
    """TRIALS_PER_GPU (benchmarks/gpu_table.py's fastest setting per GPU kind) sets `auto`'s
    share of a GPU on the kinds it lists; the CPUs are then spread over those trials."""
    from orchestrator.planning import resources

    monkeypatch.setattr(resources, "TRIALS_PER_GPU", {"H200": (4, "2026-12-08")})
    gpu, why = decide_gpu("auto", H200_NODE)
    assert gpu == 0.25 and "4 trials per H200 GPU" in why and "2026-12-08" in why
    assert decide_cpu("auto", gpu, H200_NODE)[0] == 4.0  # 16 CPUs over its 4 trials
    # a node of a kind not measured (or without the kind) may take any trial: 1 per GPU
    for other in ({"CPU": 8.0, "GPU": 1.0, "accelerator_type:A100": 1.0}, {"GPU": 1.0}):
        mixed = {**H200_NODE, "nodes": [*H200_NODE["nodes"], other]}
        assert decide_gpu("auto", mixed) == (1.0, "gpu auto -> 1 per trial: the cluster has 2 GPUs")
    # GPU nodes an autoscaler can add, of a measured kind
    scaling = {
        **AUTOSCALING,
        "node_types": [
            AUTOSCALING["node_types"][0],
            {"name": "h200", "resources": H200_NODE["nodes"][0], "max_count": 2},
        ],
    }
    gpu, why = decide_gpu("auto", scaling)
    assert gpu == 0.25 and "autoscaler can add GPU nodes (h200)" in why
    # three trials a GPU: a share Ray can count (units of 1e-4) of which three fit one GPU
    monkeypatch.setattr(resources, "TRIALS_PER_GPU", {"H200": (3, "2026-12-08")})
    gpu = decide_gpu("auto", H200_NODE)[0]
    assert gpu == 0.3333 and 3 * gpu <= 1.0


def test_gpu_auto_is_one_per_gpu_where_nothing_or_one_was_measured(monkeypatch):
    from orchestrator.planning import resources

    one = (1.0, "gpu auto -> 1 per trial: the cluster has 1 GPUs")
    for table in ({}, {"H200": (1, "2026-12-08")}, {"H100": (8, "2026-12-08")}):
        monkeypatch.setattr(resources, "TRIALS_PER_GPU", table)
        assert decide_gpu("auto", H200_NODE) == one
