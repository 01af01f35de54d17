"""results.figures.plots and results.figures.style: figures as PNG, SVG and PDF, fit for a paper."""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET
from types import SimpleNamespace

import matplotlib.image
import pytest
from rich.console import Console

from orchestrator.cli.main import expected_cells
from results.figures.plots import curves_figure, figures, load_results, lr_figure, plot_command
from results.figures.style import (
    FORMATS,
    LINE_COLOURS,
    OKABE_ITO,
    WIDTHS,
    new_figure,
    paper_style,
    series_style,
    set_title,
    wrap_title,
)
from results.store import open_store
from results.tables.aggregate import build_table

PNG = b"\x89PNG\r\n\x1a\n"
LONG = (
    "CIFAR-10 test error (%) without augmentation, best lr per model, against the "
    "numbers of Springenberg et al. (2015), Table 3, and of the seeds' reproduction"
)


def quiet() -> Console:
    return Console(file=io.StringIO(), width=200)


def golden_data(golden, index=0):
    """(TableData, trials, epochs) of the golden grid's table `index`."""
    spec, store = golden
    expected = expected_cells(spec)
    trials, epochs = load_results(spec, store, expected, quiet())
    return build_table(spec.tables[index], trials, expected, spec.axes), trials, epochs


def test_plot_command_writes_valid_pngs(golden, tmp_path):
    out = tmp_path / "figures"
    console = quiet()
    assert plot_command(*golden, out, console=console, expected=expected_cells(golden[0])) == 0
    names = sorted(p.name for p in out.iterdir())
    # both tables vary the lr (over, columns): intervals, curves, panels and metric vs lr
    assert names == [
        f"{t}_{k}.png"
        for t in ("best_lr", "lr_sweep")
        for k in ("curves", "intervals", "lr", "panels")
    ]
    for path in out.iterdir():
        assert path.read_bytes().startswith(PNG)
        height, width, _ = matplotlib.image.imread(path).shape
        assert width == round(WIDTHS["two"] * 200) and height > 300  # 7.2 in at 200 dpi
    assert "best_lr_panels.png" in console.file.getvalue()


def test_pdf_is_a_one_page_paper_figure(golden, tmp_path):
    pypdf = pytest.importorskip("pypdf")
    assert plot_command(*golden, tmp_path, console=quiet(), fmt="pdf", size="one") == 0
    pdfs = sorted(tmp_path.glob("*.pdf"))
    assert len(pdfs) == 8 and not list(tmp_path.glob("*.png"))
    for path in pdfs:
        assert path.read_bytes().startswith(b"%PDF-")
        reader = pypdf.PdfReader(path)
        assert len(reader.pages) == 1
        assert float(reader.pages[0].mediabox.width) == pytest.approx(WIDTHS["one"] * 72)
    text = pypdf.PdfReader(tmp_path / "best_lr_lr.pdf").pages[0].extract_text()
    assert "learning rate" in text and "test error (%)" in text  # TrueType text, not paths


def test_svg_is_valid_xml_with_the_paper_width(golden, tmp_path):
    assert plot_command(*golden, tmp_path, console=quiet(), fmt="svg") == 0
    svgs = sorted(tmp_path.glob("*.svg"))
    assert len(svgs) == 8
    for path in svgs:
        root = ET.parse(path).getroot()
        assert root.tag == "{http://www.w3.org/2000/svg}svg"
        assert float(root.get("width").removesuffix("pt")) == pytest.approx(WIDTHS["two"] * 72)
    # the same results give the same bytes (no dates, stable ids)
    first = (tmp_path / "best_lr_lr.svg").read_bytes()
    plot_command(*golden, tmp_path, console=quiet(), fmt="svg")
    assert (tmp_path / "best_lr_lr.svg").read_bytes() == first


def test_twelve_series_are_all_distinct_and_colour_blind_safe():
    styles = [series_style(i, points=3) for i in range(16)]
    combos = {(s["color"], s["linestyle"], s["marker"]) for s in styles}
    assert len(combos) == 16
    assert len({(s["color"], s["linestyle"]) for s in styles[:12]}) == 12
    assert all(s["color"] in OKABE_ITO for s in styles)
    assert "#F0E442" not in LINE_COLOURS  # the faint yellow is kept off lines
    assert "markevery" not in series_style(0, points=1)  # every point of a short curve
    assert series_style(0, points=350)["markevery"] > 1


def _inside(inner, outer, tol=1.0) -> bool:
    return (
        inner.x0 >= outer.x0 - tol
        and inner.y0 >= outer.y0 - tol
        and inner.x1 <= outer.x1 + tol
        and inner.y1 <= outer.y1 + tol
    )


def test_long_titles_wrap_and_stay_on_the_canvas():
    assert max(len(line) for line in wrap_title(LONG, WIDTHS["one"]).splitlines()) < len(LONG)
    for size in WIDTHS:
        with paper_style():
            fig = new_figure(size)
            fig.add_subplot().plot([1, 2], [3, 4])
            set_title(fig, LONG)
            renderer = fig.canvas.get_renderer()
            fig.canvas.draw()
            title = fig._suptitle.get_window_extent(renderer)
        assert _inside(title, fig.bbox), (size, title, fig.bbox)
        assert "\n" in fig._suptitle.get_text()


def test_legend_sits_outside_the_data(golden):
    data, trials, _ = golden_data(golden)
    with paper_style():
        fig = lr_figure(data, trials)
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        legend = fig.legends[0].get_window_extent(renderer)
        axes = fig.axes[0].get_window_extent(renderer)
    assert _inside(legend, fig.bbox)
    assert legend.y1 <= axes.y0 or legend.x0 >= axes.x1  # below or beside, never over


def test_curves_axis_and_values_follow_the_table_metric(golden):
    data, _, epochs = golden_data(golden)  # best_lr: metric test_error
    with paper_style():
        fig = curves_figure(data, epochs)
    ax = fig.axes[0]
    assert ax.get_ylabel() == "test error (%)"
    # model_a picks lr 0.05 (better val acc); its seeds end at test acc 0.88 and 0.90
    first = ax.get_lines()[0]
    assert first.get_ydata()[-1] == pytest.approx(100 - 89.0)
    assert first.get_marker() not in (None, "None", "")  # 3 epochs: markers on


def test_one_epoch_curves_are_drawn_as_markers(local_store, make_trial, summary, put, table):
    put(local_store, make_trial("p", **{"model.arch": "nin"}), summary(epochs=1))
    spec = SimpleNamespace(name="p", axes={}, tables=[table(name="t")])
    trials, epochs = load_results(spec, local_store, None, quiet())
    data = build_table(spec.tables[0], trials, None, {})
    with paper_style():
        fig = curves_figure(data, epochs)
    (line,) = fig.axes[0].get_lines()
    assert len(line.get_xdata()) == 1 and line.get_marker() not in (None, "None", "")
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["1"]


def test_panels_one_per_row_picked_lr_bold(golden):
    data, trials, epochs = golden_data(golden)
    with paper_style():
        fig = figures(data, trials, epochs)["panels"]
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in visible] == ["model_a", "model_b", "model_c"]
    model_a = visible[0].get_lines()
    assert len(model_a) == 8  # 2 lrs x 2 seeds, test and train each
    bold = {line.get_color() for line in model_a if line.get_linewidth() == 2.0}
    assert len(bold) == 1 and len([ln for ln in model_a if ln.get_linewidth() == 2.0]) == 4
    assert any(t.get_text() == "no curves" for t in visible[2].texts)  # model_c: no results
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "lr=0.05" in labels and "test error" in labels and "train error" in labels


def test_plot_command_without_lr_axis_draws_intervals_curves_and_panels(
    local_store, make_trial, summary, put, table, tmp_path
):
    put(local_store, make_trial("p", **{"model.arch": "nin"}), summary())
    spec = SimpleNamespace(name="p", axes={}, tables=[table(name="t")])
    assert plot_command(spec, local_store, tmp_path / "f", console=quiet()) == 0
    assert sorted(p.name for p in (tmp_path / "f").iterdir()) == [
        "t_curves.png",
        "t_intervals.png",
        "t_panels.png",
    ]


def test_plot_command_on_an_empty_store(spec_factory, tmp_path):
    console = quiet()
    store = open_store(str(tmp_path / "runs"))
    assert plot_command(spec_factory(), store, tmp_path / "figs", console=console) == 0
    assert "no results for grid golden" in console.file.getvalue()
    assert not (tmp_path / "figs").exists()


def test_formats_are_the_cli_choices():
    from orchestrator.cli.main import parser

    plot = parser()._subparsers._group_actions[0].choices["plot"]
    fmt = next(a for a in plot._actions if a.dest == "format")
    assert tuple(fmt.choices) == FORMATS


def test_intervals_figure_draws_the_95_ci_and_no_bar_for_one_seed(seeds):
    """Each entry's error bar spans its t-interval; the n = 1 entry is a bare hollow point."""
    from results.figures.intervals import intervals_figure

    spec, store = seeds
    trials, _ = load_results(spec, store, expected_cells(spec), quiet())
    data = build_table(spec.tables[0], trials, expected_cells(spec), spec.axes)
    with paper_style():
        fig = intervals_figure(data, titled=False)
    ax = fig.axes[0]
    bars = [c for c in ax.containers if hasattr(c, "has_xerr") and c.has_xerr]
    assert len(bars) == 5  # six entries, one of them a single run
    spans = sorted(
        tuple(round(x, 2) for x in seg[:, 0]) for b in bars for seg in b.lines[2][0].get_segments()
    )
    assert (88.52, 93.48) in spans  # model_a without batch norm: 91 ± 4.303 / sqrt(3)
    assert [t.get_text() for t in ax.get_yticklabels()][4] == "model_c, no"
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels == ["mean, 95% CI", "n = 1: no interval", "paper"]
