"""The Ray versions grid is tested with, and the private Ray APIs it still uses, each with
why: everything else goes through Ray's and Tune's public APIs (the trial is a
`tune.Trainable`, orchestrator/execution/slot.py).

Elsewhere: `scheduler.SlotLimit` keeps its own count of the trials that hold a slot (Tune's
`max_concurrent` counts a paused trial until it ends) and, for the cluster's fair share
(`fairshare.py`), says its search is finished while a yielded trial waits with no room:
Tune 2.60 then gives back the one idle actor it keeps for reuse
(`TuneController._cleanup_cached_actors`), which would hold a slot another grid waits for
(tests/orchestrator/test_share_cluster.py). Both are public methods of a search algorithm,
but the second leans on what Tune does with their answers.

Outside the package, benchmarks/gpu_table.py names the GPU kind as Ray does, with Ray's own
mapping from the device name (`NvidiaGPUAcceleratorManager._gpu_name_to_accelerator_type`),
so that the entry it prints for `resources.TRIALS_PER_GPU` matches a node's
`accelerator_type:<kind>` resource; the device name where it is missing.

`check_ray()` runs first in every launch: another Ray fails at once with one line, before
any trial starts, instead of a trial failing later on a changed internal.
"""

from __future__ import annotations

from pathlib import Path

from trainers.errors import GridError

# What pyproject.toml pins (`ray[tune,default]>=2.60,<2.61`): the versions the tests ran.
TESTED = ((2, 60), (2, 61))  # [lowest, highest) as (major, minor)


def check_ray(version: str | None = None) -> None:
    """GridError unless Ray's version (default: the installed one) is a tested one."""
    if version is None:
        import ray

        version = ray.__version__
    try:
        found = tuple(int(p) for p in version.split(".")[:2])
    except ValueError:
        found = None
    (lo_major, lo_minor), (hi_major, hi_minor) = TESTED
    if found is None or not TESTED[0] <= found < TESTED[1]:
        raise GridError(
            f"ray {version} is installed; grid is tested with ray>={lo_major}.{lo_minor},"
            f"<{hi_major}.{hi_minor} (pyproject.toml): pip install 'ray[tune,default]>="
            f"{lo_major}.{lo_minor},<{hi_major}.{hi_minor}'"
        )


def dashboard_missing() -> str | None:
    """Why this Ray cannot start its dashboard, or None when it can: a Ray without its
    `default` extra (aiohttp and the rest; benchmarks/ray_bundle.py's bundle for a bare GPU
    node) refuses `ray.init(include_dashboard=True)` with "Cannot include dashboard with
    missing packages". The test is Ray's own (`ray._private.utils`, Ray 2.60)."""
    try:
        import ray.dashboard.optional_deps  # noqa: F401
    except ImportError as e:
        return str(e)
    return None


def session_dir() -> Path | None:
    """This node's Ray session folder, where Ray's metrics module provisions Grafana
    dashboards (monitor.grafana_folder). Private: Ray has no public call for the session
    folder of a running node. None over Ray Client (no node here)."""
    import ray

    try:
        return Path(ray._private.worker.global_worker.node.get_session_dir_path())
    except AttributeError:
        return None


def autoscaler_node_types() -> list[dict] | None:
    """What the autoscaler reports it can launch, or None without one (session.py's
    placement check: a trial too big for every node may still fit a node type the cluster
    can add). Private: Ray keeps the cluster config in the GCS and publishes no API for it."""
    try:
        from ray._private.state import state

        config = state.get_cluster_config()
    except Exception:  # noqa: BLE001 - a cluster without it: treated as no autoscaler
        return None
    if config is None or not config.node_group_configs:
        return None
    return [
        {"name": g.name, "resources": dict(g.resources), "max_count": g.max_count}
        for g in config.node_group_configs
    ]
