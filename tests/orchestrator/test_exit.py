"""`grid`'s own exit path: a launch leaves nothing of its Ray session behind in the process
that ran it. An ObjectRef that outlives `ray.shutdown()` is released later, by a later
session's core worker or during the interpreter's tear-down, where Ray's native threads are
stopping in no set order (a CI run once ended in SIGSEGV there). `tune.with_parameters` kept
one per parameter in a module-level registry for the life of the process, which is why each
trial takes its cells in its own config instead (experiment._tuner)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from tests.orchestrator.conftest import write_spec
from tests.orchestrator.test_launch import REPO

SCRIPT = textwrap.dedent(
    """
    import gc, sys
    import ray
    from orchestrator.cli.main import main

    rc = main(sys.argv[1:])
    gc.collect()
    refs = sum(isinstance(o, ray.ObjectRef) for o in gc.get_objects())
    print(f"rc={rc} ray_initialized={ray.is_initialized()} object_refs={refs}", flush=True)
    sys.exit(rc)
    """
)


@pytest.mark.ray
def test_a_launch_leaves_no_ray_object_behind_and_exits_cleanly(tmp_path):
    spec = write_spec(tmp_path / "specs", "leave", [0.05, 0.1])
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["PYTHONPATH"] = str(REPO)
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, "launch", str(spec), "--store", str(tmp_path / "runs")],
        env=env,
        capture_output=True,
        text=True,
        timeout=280,
    )
    said = done.stdout.strip().splitlines()
    assert said and said[-1] == "rc=0 ray_initialized=False object_refs=0", done.stderr[-3000:]
    assert done.returncode == 0, done.stderr[-3000:]  # no crash in the tear-down
