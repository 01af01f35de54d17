"""The Ray session of a launch: start a local Ray with its dashboard or join a cluster, print
how to reach the dashboard, describe the cluster for the resource decision, and check every
node before any trial starts (pre-flight).

The session's runtime env forwards the store's non-secret S3 settings to every trial
(`AWS_ENDPOINT_URL*`, `AWS_DEFAULT_REGION`, `AWS_REGION`): on a cluster where only the head
has them, trials would otherwise write to AWS instead of the MinIO/Ceph endpoint.
Credentials are never forwarded: each node uses its own credential chain.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import ray
from ray.job_config import JobConfig
from rich.console import Console

from orchestrator.execution import monitor, raycompat
from results.store.base import Store
from trainers.errors import GridError

# Ray and Tune talk a lot; `grid launch` shows its own progress. Defaults only: a user's
# own setting of any of these wins.
QUIET_ENV = {
    "RAY_AIR_NEW_OUTPUT": "0",  # the legacy reporter, which verbose=0 silences
    "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1",  # no CSV/JSON/TensorBoard: the store has it
    "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0",  # 1 per epoch: intended
}
QUIET_LOGGERS = {
    "ray": logging.WARNING,
    "ray.tune": logging.ERROR,
    # trial failures: shown by the progress display and the final report
    "ray.tune.execution.tune_controller": logging.CRITICAL,
    "ray._private.authentication.authentication_token_setup": logging.ERROR,
}
FORWARD_ENV = ("AWS_DEFAULT_REGION", "AWS_REGION")  # and every AWS_ENDPOINT_URL*
SECRET_ENV = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
)


def forwarded_env(environ: dict[str, str] | None = None) -> dict[str, str]:
    """The S3 settings that trials must share with the driver; never a credential."""
    environ = os.environ if environ is None else environ
    out = {
        k: v
        for k, v in environ.items()
        if (k in FORWARD_ENV or k.startswith("AWS_ENDPOINT_URL")) and k not in SECRET_ENV
    }
    return out


def starts_local(address: str | None) -> bool:
    """Whether `ray_session(address)` starts a new Ray on this machine."""
    return not ray.is_initialized() and not (address or os.environ.get("RAY_ADDRESS"))


def job_env_vars() -> dict[str, str]:
    """The env vars of the Ray job this driver runs in (`grid launch --submit`), if any:
    every worker of the job has them already, and Ray refuses to set one twice."""
    raw = os.environ.get("RAY_JOB_CONFIG_JSON_ENV_VAR")
    if not raw:
        return {}
    try:
        return dict((json.loads(raw).get("runtime_env") or {}).get("env_vars") or {})
    except (ValueError, AttributeError):
        return {}


@contextlib.contextmanager
def ray_session(
    address: str | None,
    dashboard_host: str,
    console: Console,
    metadata: dict[str, str] | None = None,
) -> Iterator[bool]:
    """Connected to Ray for the block: the caller's connection if there is one, else the
    cluster at `address` / RAY_ADDRESS, else a new local Ray with its dashboard. The job
    carries `metadata` (the dashboard's Jobs page shows it). Yields whether a local Ray was
    started here; disconnects (and stops it) at the end."""
    for name, value in QUIET_ENV.items():
        os.environ.setdefault(name, value)
    if ray.is_initialized():  # e.g. a notebook or a test that connected already
        yield False
        return
    address = address or os.environ.get("RAY_ADDRESS") or None
    # Ray 2.60 turns token auth on for a new local Ray (RAY_AUTH_MODE=token in this process,
    # token in ~/.ray/auth_token); that stays process-wide after ray.shutdown().
    _quiet_loggers()
    kw = {"log_to_driver": False, "logging_level": logging.WARNING}
    if address not in (None, "auto", "local"):
        check_reachable(address)
    in_job = job_env_vars()
    kw["runtime_env"] = {"env_vars": {k: v for k, v in forwarded_env().items() if k not in in_job}}
    kw["job_config"] = JobConfig(metadata=dict(metadata or {}))
    try:
        missing = raycompat.dashboard_missing() if address is None else None
        if address is None:  # "local": a new Ray, never one `ray start` left running
            ctx = ray.init(
                address="local",
                include_dashboard=missing is None,
                dashboard_host=dashboard_host,
                **kw,
            )
        else:
            ctx = ray.init(address=address, **kw)
    except (ConnectionError, RuntimeError, ValueError) as e:
        where = f"--address {address}" if address else "local Ray"
        raise GridError(f"{where}: cannot start or join Ray: {' '.join(str(e).split())}") from None
    try:
        _quiet_loggers()  # again: ray.init configures the "ray" logger
        if missing is not None:  # a Ray without its dashboard: the launch runs all the same
            console.print(f"Ray dashboard: not started: this Ray lacks its packages ({missing})")
        else:
            _print_dashboard(console, ctx.dashboard_url, local=address is None, host=dashboard_host)
        for line in monitor.where_lines():
            console.print(line, highlight=False, soft_wrap=True)
        yield address is None
    finally:
        ray.shutdown()


def check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """GridError at once when host:port does not answer (Ray itself retries for minutes)."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise GridError(f"--address {address}: expected auto, host:port or ray://host:port")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as e:
        raise GridError(
            f"--address {address}: no Ray there ({e.strerror or e}); start one "
            f"with `ray start --head` (docs/cluster.md)"
        ) from None


def _quiet_loggers() -> None:
    for name, level in QUIET_LOGGERS.items():
        logging.getLogger(name).setLevel(level)


def token_path() -> Path:
    """Where Ray keeps the cluster token (RAY_AUTH_TOKEN_PATH, else ~/.ray/auth_token)."""
    return Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token")


def _print_dashboard(console: Console, url: str | None, *, local: bool, host: str) -> None:
    if not url:
        console.print("Ray dashboard: not running on this cluster")
        return
    url = url if "://" in url else f"http://{url}"
    if os.environ.get("RAY_AUTH_MODE", "").lower() == "token":
        login = (
            f"log in with the token in {token_path()} (the page asks for it; for the API: "
            f"header 'Authorization: Bearer <token>')"
        )
    else:
        login = "no token authentication on this cluster"
    console.print(f"Ray dashboard: {url}  ({login})")
    if local and host not in ("127.0.0.1", "localhost"):
        console.print(
            f"[yellow]the dashboard listens on {host}: reachable from the network; "
            f"anyone with the token can run code on this machine[/]"
        )


def check_shared_store(store: Store) -> None:
    """A local folder only works when every trial runs on this machine."""
    if getattr(store, "root", None) is None:
        return  # s3://: shared by construction
    ips = sorted({n["NodeManagerAddress"] for n in ray.nodes() if n.get("Alive")})
    here = ray.util.get_node_ip_address()
    if len(ips) > 1 or (ips and here not in ips):
        raise GridError(
            f"store {store.uri}: a local folder, but the Ray cluster runs on "
            f"{', '.join(ips)}; a multi-node cluster needs a shared store: "
            f"--store s3://bucket/prefix"
        )


def describe_cluster(local: bool) -> dict:
    """The cluster as `orchestrator.planning.resources` reads it: alive nodes' resources, the node
    types an autoscaler can add (None without one), and whether it is our local Ray."""
    nodes = [dict(n.get("Resources", {})) for n in ray.nodes() if n.get("Alive")]
    return {
        "nodes": nodes,
        "node_types": None if local else raycompat.autoscaler_node_types(),
        "local": local,
    }


def preflight_nodes(datasets: list[dict]) -> list[str]:
    """Check on every alive node, with one small task each, that the data sets are there or
    can be downloaded (`trainers.data.check_data`); GridError naming the node and
    dataset.root otherwise. Returns one line per node and data set."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from trainers.data import check_data

    @ray.remote(num_cpus=0, max_retries=0)
    def check(cfgs: list[dict]) -> list[str]:
        return [check_data(c) for c in cfgs]

    nodes = [n for n in ray.nodes() if n.get("Alive")]
    # A node listed alive may be gone by the time its check is scheduled or runs (a spot
    # node reclaimed, a raylet killed: found by the fault campaign, docs/reliability.md).
    # It trains nothing, so it is skipped with a line, not a failed launch; a node that
    # comes back later is checked by its trials, whose data errors are not retried.
    gone = (
        ray.exceptions.TaskUnschedulableError,
        ray.exceptions.NodeDiedError,
        ray.exceptions.WorkerCrashedError,
    )
    refs = [  # by node, not by address: one host may run several raylets
        (
            n["NodeManagerAddress"],
            check.options(
                scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)
            ).remote(datasets),
        )
        for n in nodes
    ]
    lines = []
    for ip, ref in refs:
        try:
            lines += [f"{ip}: {line}" for line in ray.get(ref)]
        except gone as e:
            lines.append(f"{ip}: left the cluster before its check ({type(e).__name__})")
        except ray.exceptions.RayTaskError as e:
            cause = getattr(e, "cause", None)
            message = str(cause) if isinstance(cause, GridError) else str(e).splitlines()[-1]
            raise GridError(f"{message} (on node {ip})") from None
    return lines
