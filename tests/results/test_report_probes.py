"""The report's probe section, from real Parquet rows: filters, weight norms, gradient
curves; nothing for a grid without probes."""

from __future__ import annotations

import io
from datetime import datetime, timezone
from types import SimpleNamespace

import numpy as np
from rich.console import Console

from results.figures.plots import load_results
from results.report.page import render_report
from results.report.probes import filter_image

NOW = datetime(2026, 12, 1, tzinfo=timezone.utc)


def _quiet() -> Console:
    return Console(file=io.StringIO())


def test_filter_image_tiles_each_filter_scaled_on_its_own():
    w = np.arange(2 * 3 * 2 * 2, dtype=np.float32).reshape(2, 3, 2, 2)
    w[1] *= -10
    img = filter_image({"shape": [2, 3, 2, 2], "values": w.flatten().tolist()})
    assert img.shape == (1 * 3 + 1, 2 * 3 + 1, 3)  # one row of two 2 x 2 tiles, 1 px gaps
    for i, (r, c) in enumerate([(1, 1), (1, 4)]):
        f = w[i].transpose(1, 2, 0)
        ref = (f - f.min()) / (f.max() - f.min())
        np.testing.assert_allclose(img[r : r + 2, c : c + 2], ref, rtol=1e-6)
    assert (img[0] == 1).all()  # white gaps


def _probed_summary(summary):
    s = summary()
    s["probes"] = {
        "filters": {
            "layer": "stem",
            "shape": [4, 3, 3, 3],
            "values": [0.1 * i for i in range(108)],
        },
        "weight_norms": {"stem": 1.5, "fc": 0.25},
    }
    s["history"] = [
        {**h, "grad_norm.stem": 0.1 / h["epoch"], "grad_norm.fc": 0.01} for h in s["history"]
    ]
    return s


def test_probes_show_in_the_report(local_store, make_trial, summary, put):
    put(local_store, make_trial("p", **{"model.arch": "nin"}), _probed_summary(summary))
    put(local_store, make_trial("p", **{"model.arch": "resnet9"}), summary())
    spec = SimpleNamespace(name="p", axes={"model.arch": ["nin", "resnet9"]}, tables=[])
    trials, epochs = load_results(spec, local_store, None, _quiet())
    text, _ = render_report(spec, trials, epochs, None, now=NOW)
    assert '<section id="probes">' in text
    assert "arch=nin: first-layer filters (stem, [4, 3, 3, 3])" in text
    assert "arch=nin: relative gradient norm per layer and epoch" in text
    assert "<td>arch=nin</td><td>1.5</td><td>0.25</td>" in text
    assert "arch=resnet9: first-layer" not in text  # the unprobed cell has no figure


def test_no_probe_no_section(local_store, make_trial, summary, put):
    put(local_store, make_trial("q", **{"model.arch": "nin"}), summary())
    spec = SimpleNamespace(name="q", axes={"model.arch": ["nin"]}, tables=[])
    trials, epochs = load_results(spec, local_store, None, _quiet())
    assert 'id="probes"' not in render_report(spec, trials, epochs, None, now=NOW)[0]
