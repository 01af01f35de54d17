"""The benchmarks' own specs stay valid as the spec language grows stricter (benchmarks/scale.py
was refused by the seeds check of the halving for a release before anyone ran it)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from orchestrator.spec.expand import expand
from orchestrator.spec.load import load_spec

ROOT = Path(__file__).resolve().parents[1]


def test_the_scale_benchmarks_spec_loads_and_expands_to_n_cells(tmp_path):
    found = importlib.util.spec_from_file_location("scale", ROOT / "benchmarks" / "scale.py")
    scale = importlib.util.module_from_spec(found)
    found.loader.exec_module(scale)
    path = tmp_path / "scale.yaml"
    path.write_text(scale.spec_text("scale", 1000))
    spec = load_spec(str(path))
    assert len(expand(spec)) == 1000 and spec.halving["over"] == ["train.lr"]
