"""results.report.page: the grid's page, checked as HTML and as a real headless Chromium
draws it."""

from __future__ import annotations

import base64
import io
import re
import shutil
import subprocess
from datetime import datetime, timezone

import pytest
from rich.console import Console

from results.figures.plots import load_results
from results.report.page import render_report, report_command, watch, write_report

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)
# Values of both golden tables, as `grid table` writes them.
TABLE_VALUES = (
    "11.00 ± 1.41 (n=2)",
    "12.47",
    "-1.47",
    "9.74 (Springenberg)",
    "0.84M",
    "1h02m",
    "88.50",
    "missing",
    "div",
)


def expected_cells(spec) -> list[dict]:
    """What the CLI passes to results/: the spec's cells as flat configs with their keys."""
    from orchestrator.spec.expand import expand
    from results.store.schema import flat_config

    return [{"key": t.key, **flat_config(t.config)} for t in expand(spec)]


def quiet() -> Console:
    return Console(file=io.StringIO(), width=200)


def golden_page(golden, refresh=None) -> tuple[str, bool]:
    spec, store = golden
    expected = expected_cells(spec)
    trials, epochs = load_results(spec, store, expected, quiet())
    return render_report(spec, trials, epochs, expected, refresh=refresh, now=NOW)


def test_page_holds_tables_status_figures_and_provenance(golden):
    text, finished = golden_page(golden)
    assert not finished  # model_c has no result, model_b one failed seed
    assert text.count('<table class="grid-table">') == 2
    for value in TABLE_VALUES:
        assert value in text, value
    assert '<td class="num diverged">div</td>' in text
    for count in ("5 done", "2 diverged", "1 failed", "4 missing"):
        assert f">{count}</span>" in text, count
    assert '<pre class="error">CUDA error</pre>' in text  # the failed cell's error
    imgs = re.findall(r'<img alt="([^"]+)" src="data:image/png;base64,([^"]+)"', text)
    assert [alt for alt, _ in imgs] == [
        "best_lr intervals",
        "best_lr panels",
        "best_lr lr",
        "lr_sweep intervals",
        "lr_sweep panels",
        "lr_sweep lr",
    ]
    assert all(base64.b64decode(data).startswith(b"\x89PNG") for _, data in imgs)
    # provenance: host, device-hours (4 x 3725 s + 3 x 125 s), dates
    assert "test-host" in text and "4.24 device-hours" in text
    assert "2024-01-01 00:00 to 2024-01-01 01:00 UTC" in text


def test_page_lists_the_references_outside_the_interval(seeds):
    spec, store = seeds
    expected = expected_cells(spec)
    trials, epochs = load_results(spec, store, expected, quiet())
    text, _ = render_report(spec, trials, epochs, expected, now=NOW)
    head = '<h3 class="outside">paper outside our 95% interval</h3>'
    assert text.count(head) == 1
    listed = text.split(head)[1].split("</table>")[0]
    # model_b without batch norm: 95.00 above [86.04, 92.29]; model_a's 93.50 lies inside
    # [91.27, 95.06] and model_c's 90.00 has no interval to judge (n = 1): neither is listed
    assert listed.count("<tr>") == 2  # the header and one entry
    for cell in ("arch=model_b, batch_norm=no", "89.17 (n=3)", "[86.04, 92.29]", "95.00", "-5.83"):
        assert f"<td>{cell}</td>" in listed, cell
    assert "<td>0.012 *</td>" not in listed and '<td class="num">0.012 *</td>' in text
    assert re.search(r'<img alt="bn intervals" src="data:image/png;base64,', text)
    assert "95 % t-interval as an error bar, and the published number (paper)" in text


def test_no_list_when_every_reference_is_inside(golden):
    text, _ = golden_page(golden)
    assert 'class="outside"' not in text  # 12.47 and 88.50 lie in their (wide, n = 2) CIs


def test_tables_with_the_same_figures_draw_them_once(spec_factory, golden):
    from tests.results.conftest import GOLDEN_TABLES

    _, store = golden
    twin = dict(GOLDEN_TABLES[0], name="twin", reference_label="other paper")
    spec = spec_factory(tables=[GOLDEN_TABLES[0], twin])
    trials, epochs = load_results(spec, store, expected_cells(spec), quiet())
    text, _ = render_report(spec, trials, epochs, expected_cells(spec), now=NOW)
    assert text.count('<table class="grid-table">') == 2 and text.count("<img") == 3
    assert 'Its figures are those of <a href="#table-best_lr">' in text


def test_page_needs_no_network_and_no_script(golden):
    text, _ = golden_page(golden, refresh=30)
    assert "<script" not in text and "<link" not in text
    assert not re.search(r'(src|href)="(https?:)?//', text)
    assert '<meta http-equiv="refresh" content="30">' in text  # live while unfinished
    assert "Live: rewritten every 30 s" in text


def test_a_finished_grid_does_not_reload(local_store, make_trial, summary, put, table):
    from types import SimpleNamespace

    put(local_store, make_trial("p", **{"model.arch": "nin"}), summary())
    spec = SimpleNamespace(name="p", axes={"model.arch": ["nin"]}, tables=[table(name="t")])
    trials, epochs = load_results(spec, local_store, None, quiet())
    text, finished = render_report(spec, trials, epochs, None, refresh=30, now=NOW)
    assert finished and "http-equiv" not in text
    assert ">1 done</span>" in text and ">0 missing</span>" in text


def test_write_report_is_atomic_and_named_by_grid(golden, tmp_path):
    spec, store = golden
    path, finished = write_report(spec, store, tmp_path / "out", expected_cells(spec), quiet())
    assert path == tmp_path / "out" / "golden.html" and not finished
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["golden.html"]  # no temp left
    assert path.read_text(encoding="utf-8").startswith("<!doctype html>")


def test_watch_stops_when_finished_without_sleeping():
    waits, lasts = [], []
    results = iter([False, False, True])

    def step(last: bool) -> bool:
        lasts.append(last)
        return next(results)

    assert watch(step, 7, wait=waits.append) == 3
    assert waits == [7, 7] and lasts == [False, False, False]


def test_watch_count_bounds_the_rewrites_and_ctrl_c_writes_a_last_page():
    lasts = []
    assert watch(lambda last: lasts.append(last) or False, 5, wait=lambda s: None, rounds=3) == 3
    assert lasts == [False, False, True]  # the last page is written without the reload

    lasts.clear()

    def interrupted(_seconds):
        raise KeyboardInterrupt

    assert watch(lambda last: lasts.append(last) or False, 5, wait=interrupted) == 2
    assert lasts == [False, True]


def test_report_command_follows_a_launch_until_done(
    spec_factory, local_store, put, summary, tmp_path
):
    """The wait between rewrites is where the launch progresses: here it writes the rest."""
    from orchestrator.spec.expand import expand

    spec = spec_factory()
    trials = expand(spec)
    put(local_store, trials[0], summary())
    pages = []

    def launch_progresses(seconds):
        pages.append((tmp_path / "golden.html").read_text(encoding="utf-8"))
        for t in trials[1:]:
            put(local_store, t, summary())

    console = quiet()
    assert (
        report_command(
            spec,
            local_store,
            tmp_path,
            expected_cells(spec),
            console,
            every=60,
            wait=launch_progresses,
        )
        == 0
    )
    final = (tmp_path / "golden.html").read_text(encoding="utf-8")
    assert len(pages) == 1 and 'http-equiv="refresh" content="60"' in pages[0]
    assert ">1 done</span>" in pages[0] and ">11 missing</span>" in pages[0]
    assert "http-equiv" not in final and ">12 done</span>" in final
    out = console.file.getvalue()
    assert "(in progress" in out and "(finished" in out


# --- in a real browser -------------------------------------------------------------------

PROBE = (
    "<script>window.addEventListener('load', () => { for (const img of document.images)"
    " img.setAttribute('data-decoded', img.complete ? img.naturalWidth : 0);"
    " document.body.setAttribute('data-probe', 'done'); });</script>"
)


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    pytest.skip("chromium is not installed (apt-get install chromium); .ci/run installs it")


def _browse(tmp_path, *args: str) -> str:
    cmd = [
        _chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--hide-scrollbars",
        f"--user-data-dir={tmp_path / 'profile'}",
        *args,
    ]
    return subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=120).stdout


def test_chromium_renders_the_report(golden, tmp_path):
    import numpy as np
    from PIL import Image

    spec, store = golden
    browser = _chromium()
    path, _ = write_report(spec, store, tmp_path, expected_cells(spec), quiet())
    # The page itself has no script: a copy with a probe says whether each image decoded.
    probe = tmp_path / "probe.html"
    probe.write_text(path.read_text(encoding="utf-8").replace("</body>", PROBE + "</body>"))
    dom = _browse(tmp_path, "--virtual-time-budget=10000", "--dump-dom", probe.as_uri())
    assert 'data-probe="done"' in dom
    decoded = [int(w) for w in re.findall(r'data-decoded="(\d+)"', dom)]
    assert len(decoded) == 6 and all(w == 1440 for w in decoded)  # 7.2 in at 200 dpi
    for value in TABLE_VALUES:
        assert value in dom, value
    shot = tmp_path / "page.png"
    _browse(tmp_path, "--window-size=1200,4000", f"--screenshot={shot}", path.as_uri())
    pixels = np.asarray(Image.open(shot).convert("RGB")).reshape(-1, 3).astype(int)
    ink = float((pixels.min(axis=1) < 200).mean())
    assert ink > 0.01, f"the page looks blank ({ink:.1%} ink) in {browser}"
    # The figures' sky blue (Okabe-Ito, second series) is painted: the page CSS never uses it.
    sky = np.abs(pixels - (0x56, 0xB4, 0xE9)).max(axis=1) < 12
    assert sky.sum() > 200


def test_chromium_shows_the_error_bars_and_the_references_outside(seeds, tmp_path):
    spec, store = seeds
    path, _ = write_report(spec, store, tmp_path, expected_cells(spec), quiet())
    probe = tmp_path / "probe.html"
    probe.write_text(path.read_text(encoding="utf-8").replace("</body>", PROBE + "</body>"))
    dom = _browse(tmp_path, "--virtual-time-budget=10000", "--dump-dom", probe.as_uri())
    assert 'data-probe="done"' in dom
    images = re.findall(r'<img alt="([^"]+)"[^>]*data-decoded="(\d+)"', dom)
    assert images == [("bn intervals", "1440"), ("bn panels", "1440")]
    assert "paper outside our 95% interval" in dom
    assert "<td>arch=model_b, batch_norm=no</td><td>89.17 (n=3)</td>" in dom
    shot = tmp_path / "page.png"
    _browse(tmp_path, "--window-size=1200,2400", f"--screenshot={shot}", path.as_uri())
    assert shot.stat().st_size > 10_000
