"""What a bare GPU box runs needs neither Ray nor boto3: `grid train`, `grid bench` and the
acceptance check `benchmarks/gpu_check.py` are run in a fresh Python in which importing
either fails (as it would where they are not installed), and none of them imports them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# Run in a child: make ray, boto3 and botocore unimportable, run a command, report what loaded.
CHILD = """
import importlib.abc, json, runpy, sys
BLOCKED = ("ray", "boto3", "botocore")
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r} (blocked)")
        return None
sys.meta_path.insert(0, Block())
sys.argv = sys.argv[1:]
code = 0
try:
    runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
except SystemExit as e:
    code = e.code or 0
loaded = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
print("CHILD " + json.dumps({"code": code, "loaded": loaded}))
"""


def run_child(module: str, *args: str, tmp_path: Path) -> tuple[dict, str]:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, module, *args],
        cwd=REPO,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    line = [s for s in done.stdout.splitlines() if s.startswith("CHILD ")]
    assert line, done.stdout[-2000:] + done.stderr[-2000:]
    return json.loads(line[-1][6:]), done.stdout + done.stderr


def test_grid_train_needs_no_ray_or_boto3(tmp_path):
    spec = REPO / "grids" / "quickstart.yaml"
    got, out = run_child(
        "orchestrator.cli",
        "train",
        str(spec),
        "--set",
        "train.epochs=1",
        "--set",
        "dataset.subset=64",
        tmp_path=tmp_path,
    )
    assert got == {"code": 0, "loaded": []}, out
    assert "completed after 1 epochs" in out


def test_grid_bench_needs_no_ray_or_boto3(tmp_path):
    got, out = run_child(
        "orchestrator.cli", "bench", "--quick", "--device", "cpu", "--pack", "0", tmp_path=tmp_path
    )
    assert got == {"code": 0, "loaded": []}, out


@pytest.mark.timeout(300)
def test_gpu_check_runs_without_ray_and_checks_the_losses(tmp_path):
    report = tmp_path / "check.json"
    got, out = run_child(
        "benchmarks.gpu_check",
        "--device",
        "cpu",
        "--models",
        "strided_a,resnet9",
        "--steps",
        "6",
        "--budget-s",
        "0",  # no time for compiling: the compiled runs are listed as skipped
        "--json",
        str(report),
        tmp_path=tmp_path,
    )
    assert got == {"code": 0, "loaded": []}, out
    result = json.loads(report.read_text())
    runs = {(r["model"], r["mode"]): r for r in result["runs"]}
    modes = ("eager", "bf16", "channels_last", "pack_vmap", "pack_loop")
    assert set(runs) == {(m, mode) for m in ("strided_a", "resnet9") for mode in modes}
    assert all(not r["problems"] and r["images_per_s"] > 0 for r in runs.values())
    # the compiled runs in COMPILE_FIRST's order (the headline tables' models first)
    assert result["skipped"] == ["resnet9", "strided_a"] and result["launch"] is None
    assert "Ray is not installed here" in out and "device cpu" in out
    # the same weights and batches: the first losses agree across the fp32 modes
    first = {mode: runs[("resnet9", mode)]["losses"][0] for mode in modes}
    assert first["channels_last"] == pytest.approx(first["eager"], rel=1e-3)
    assert first["pack_loop"] == first["eager"]


def test_the_loss_check_passes_a_float_equivalent_path_and_flags_an_lr_a_quarter_off():
    # `judge` bounds each step's loss by a share of the loss eager has shed so far: a path
    # that is eager's in another summation order passes; one whose update is 25 % too
    # large or too small (what a compiled optimizer step with a stale lr would do) fails
    # at the first steps, where the old last-loss check could not see it.
    import copy

    import torch

    from benchmarks import gpu_check

    args = gpu_check.parse_args(["--device", "cpu", "--models", "strided_a"])
    cpu = torch.device("cpu")
    eager = gpu_check.train_one("strided_a", "eager", args, cpu)
    assert gpu_check.judge(eager, eager) == []
    assert (
        gpu_check.judge(gpu_check.train_one("strided_a", "channels_last", args, cpu), eager) == []
    )
    for scale in (1.25, 0.8):
        off = copy.copy(args)
        off.lr = args.lr * scale
        problems = gpu_check.judge(gpu_check.train_one("strided_a", "eager", off, cpu), eager)
        assert len(problems) == 1 and "vs eager" in problems[0], (scale, problems)


def test_the_launch_check_runs_grid_on_its_spec_with_the_callers_python_path(tmp_path, monkeypatch):
    # gpu_session.sh puts an installed Ray bundle on PYTHONPATH: the launch's child keeps it,
    # after the checkout, and is given the spec file it wrote.
    import subprocess as sp

    import torch

    from benchmarks import gpu_launch

    seen = {}

    def fake_run(command, env, **kw):
        seen.update(command=command, env=env, spec=Path(command[4]).is_file())
        return sp.CompletedProcess(command, 0, "", "")

    monkeypatch.setenv("PYTHONPATH", str(tmp_path / "bundle-site"))
    monkeypatch.setattr(gpu_launch.subprocess, "run", fake_run)
    got = gpu_launch.run_launch(torch.device("cpu"))
    assert seen["command"][2:4] == ["orchestrator.cli", "launch"] and seen["spec"]
    assert seen["env"]["PYTHONPATH"].split(":") == [str(REPO), str(tmp_path / "bundle-site")]
    assert not got["ok"] and got["rows"] == 0  # nothing ran: no rows
