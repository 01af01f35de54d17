"""Shared fixtures for the Ray tests of `grid launch`: tiny synthetic specs, and one Ray
cluster for the whole session (a head with no CPUs, so every trial runs on a worker node
that a test can kill)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import textwrap
from pathlib import Path

import pytest
import yaml

from orchestrator.spec.load import load_spec

# Seconds per epoch on a CPU: 128 synthetic images, a quarter-width strided All-CNN-A.
TINY = {
    "dataset": {"name": "synthetic", "subset": 128, "val_size": 32, "augment": []},
    "model": {"arch": "strided_a", "width": 0.25, "dropout": 0.0, "input_dropout": 0.0},
    # checkpoint_s 0: a checkpoint every epoch, which the resume tests count on
    "train": {
        "epochs": 1,
        "batch_size": 64,
        "lr": 0.05,
        "schedule": {"name": "constant"},
        "checkpoint_s": 0,
    },
    "resources": {"cpu": 1, "gpu": "auto"},
    "max_failures": 1,
}


def write_spec(folder: Path, name: str, lrs: list[float], **changes) -> Path:
    """A tiny grid `name` over `lrs`, in its own folder (spec names are unique per folder);
    `changes` replace top-level keys or sections (`train={...}` updates the section)."""
    doc = {
        "name": name,
        **{k: (dict(v) if isinstance(v, dict) else v) for k, v in TINY.items()},
        "grid": {"lr": lrs},
    }
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(doc.get(key), dict):
            doc[key].update(value)
        else:
            doc[key] = value
    path = folder / name / f"{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(yaml.safe_dump(doc, sort_keys=False)))
    return path


@pytest.fixture
def tiny_spec(tmp_path):
    """Factory: tiny_spec(name, lrs, overrides=(), **changes) -> loaded Spec."""

    def make(name: str, lrs: list[float], overrides=(), **changes):
        return load_spec(write_spec(tmp_path / "specs", name, lrs, **changes), overrides)

    return make


# Token auth, as Ray 2.60 gives every new local Ray. Set before ray is imported: Ray reads
# the mode once per process, and a process that started a local Ray (the local-start test)
# stays in token mode, so the session cluster must use tokens too.
os.environ.setdefault("RAY_AUTH_MODE", "token")


@pytest.fixture(scope="session")
def ray_cluster():
    """One Ray for the session's cluster tests: a head with 0 CPUs and one 2-CPU worker
    node (`cluster_utils.Cluster`: real raylets on this machine)."""
    from ray.cluster_utils import Cluster

    ensure_token()
    with node_env():
        cluster = Cluster(
            initialize_head=True,
            head_node_args={"num_cpus": 0, "include_dashboard": False, **agent_port()},
        )
        cluster.add_node(num_cpus=2, **agent_port())
    yield cluster
    cluster.shutdown()


def ensure_token() -> None:
    """The cluster token in ~/.ray/auth_token, as `ray.init()` generates it on first use."""
    from orchestrator.execution.session import token_path

    if os.environ["RAY_AUTH_MODE"] == "token" and not token_path().exists():
        subprocess.run(
            ["ray", "get-auth-token", "--generate"],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )


def agent_port() -> dict:
    """A free port for a node's dashboard agent. Ray's default (52365) would be taken by the
    session cluster, and a local Ray that a test starts beside it (test_monitor) would then
    run without an agent: its dashboard could not serve that node's logs."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return {"dashboard_agent_listen_port": s.getsockname()[1]}


@contextlib.contextmanager
def node_env():
    """The environment the cluster's nodes start with: their own (fake) S3 credentials, as
    each node of a real cluster has its own credential chain, and no S3 endpoint, which
    only the driver knows (the launch forwards it)."""
    saved = dict(os.environ)
    for name in [n for n in os.environ if n.startswith("AWS_")]:
        del os.environ[name]
    os.environ.update(
        {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing-secret",
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        }
    )
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@pytest.fixture(scope="session")
def halved(tmp_path_factory, ray_cluster):
    """The halving's test grid (halving_grid.py) launched with halving (the synchronous
    rule, one trial at a time) and without (each row's six lrs packed into one trial: the
    same cells, two trial start-ups instead of twelve); shared by test_halving.py and
    test_halving_sync.py."""
    from orchestrator.execution import launch
    from tests.orchestrator.halving_grid import HALVING, SIX_LRS, six_lrs
    from tests.orchestrator.test_launch import console

    root = tmp_path_factory.mktemp("halving")
    out = {"root": root}
    full = {"resources": {**SIX_LRS["resources"], "pack": 6}}
    for name, changes, concurrent in (("halved", {"halving": HALVING}, 1), ("full", full, None)):
        spec = six_lrs(root / "specs", name, **changes)
        con, buf = console()
        rc = launch.launch(
            spec,
            store_uri=str(root / name),
            address=ray_cluster.address,
            max_concurrent=concurrent,
            console=con,
        )
        assert rc == 0, buf.getvalue()
        out[name] = (spec, root / name, buf.getvalue())
    return out
