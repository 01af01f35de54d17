"""The launch part of `benchmarks/gpu_check.py`: a real `grid launch` of 4 tiny cells on a
local Ray, with `resources.gpu: 0.5` on a GPU (two trials share it) and 0 on a CPU; it
passes when all 4 cells complete and each row names the device it trained on."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def spec(device) -> dict:
    cuda = device.type == "cuda"
    return {
        "name": "gpu-check",
        "dataset": {"name": "synthetic", "subset": 256, "val_size": 64, "augment": ["crop"]},
        "model": {"arch": "strided_a", "width": 0.25, "dropout": 0.0, "input_dropout": 0.0},
        "train": {"epochs": 2, "batch_size": 64, "device": "auto" if cuda else "cpu"},
        "grid": {"lr": [0.01, 0.02, 0.05, 0.1]},
        "resources": {"cpu": 1, "gpu": 0.5 if cuda else 0},
        "max_failures": 0,
    }


def run_launch(device, timeout_s: float = 600) -> dict:
    """{"ok", "summary", "seconds", "rows"}: the launch's exit status and its rows."""
    import pyarrow.parquet as pq

    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        path = Path(tmp) / "gpu-check.yaml"
        path.write_text(yaml.safe_dump(spec(device), sort_keys=False))
        # The checkout first, then what the caller has (a Ray bundle's site: gpu_session.sh)
        python_path = [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(python_path)}
        command = [sys.executable, "-m", "orchestrator.cli", "launch", str(path)]
        command += ["--store", str(Path(tmp) / "runs"), "--yes"]
        try:
            done = subprocess.run(
                command, env=env, cwd=tmp, capture_output=True, text=True, timeout=timeout_s
            )
        except subprocess.TimeoutExpired:
            return {"ok": False, "summary": f"timed out after {timeout_s:g}s", "rows": []}
        folder = Path(tmp) / "runs" / "gpu-check" / "trials"
        rows = [pq.read_table(p).to_pylist()[0] for p in sorted(folder.glob("*.parquet"))]
    statuses = sorted(r["status"] for r in rows)
    devices = sorted({r["device"] for r in rows})
    ok = done.returncode == 0 and statuses == ["completed"] * 4
    summary = f"exit {done.returncode}, {len(rows)} rows {statuses}, on {devices}"
    if not ok:
        summary += " | " + " ".join(done.stdout.splitlines()[-3:] + done.stderr.splitlines()[-3:])
    return {"ok": ok, "summary": summary, "rows": len(rows)}
