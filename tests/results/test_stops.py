"""results.tables.stops and the tables of a halved grid: a stopped run is finished, never the pick
and never a hole; the notes give the epochs saved; the full view and the report show each
stopped lr as `stopped @rung`."""

from __future__ import annotations

from types import SimpleNamespace

from results.report.page import grid_status, render_report
from results.store import schema
from results.tables import aggregate
from results.tables.build import full_view, layout, table_command
from results.tables.formats import to_html
from results.tables.stops import halving_summary

PROV = {"spec_sha256": "0" * 64}
BEST_LR = {"best_by": "val_acc", "over": "train.lr"}


def halved_rows(make_trial, summary) -> list[dict]:
    """One row of four lrs: 0.1 and 0.05 reached epoch 8, 0.02 was stopped at rung 4 and
    0.01 at rung 2, with a better val accuracy than the picks (an early ranking only)."""
    out = []
    for lr, status, epochs, val in (
        (0.1, "completed", 8, 0.8),
        (0.05, "completed", 8, 0.7),
        (0.02, "stopped", 4, 0.9),
        (0.01, "stopped", 2, 0.95),
    ):
        row = schema.trial_row(
            make_trial(**{"train.lr": lr, "train.epochs": 8}),
            summary(status, val, val, epochs=epochs),
            PROV,
        )
        row["stopped_at"] = epochs if status == "stopped" else None
        out.append(row)
    return out


def test_the_pick_is_among_the_runs_that_reached_the_last_epoch(make_trial, summary, table):
    trials = halved_rows(make_trial, summary)
    data = aggregate.build_table(table(**BEST_LR), trials)
    cell = data.cells[(("allcnn_c",), None)]
    assert cell.pick == 0.1 and cell.status == "ok"  # not the stopped 0.01's 0.95
    assert (cell.over_done, cell.over_stopped, cell.over_total, cell.holes) == (2, 2, 4, 0)
    assert cell.complete
    assert data.halving == {"stopped": 2, "runs": 4, "rungs": [2, 4], "trained": 22, "full": 32}
    notes = layout(data).notes
    assert any(
        "stopped 2 of 4 runs at a rung (epoch 2, 4): 22 of 32 epochs trained, "
        "31% saved against the full grid" in n
        for n in notes
    )
    assert not any("Incomplete" in n for n in notes)


def test_the_full_view_shows_every_lr_with_its_rung(make_trial, summary, table):
    trials = halved_rows(make_trial, summary)
    full = aggregate.build_table(
        full_view(table(**BEST_LR)), trials, axes={"train.lr": [0.1, 0.05, 0.02, 0.01]}
    )  # the spec's order
    lay = layout(full)
    assert lay.header == ["arch", "lr=0.1", "lr=0.05", "lr=0.02", "lr=0.01"]
    assert lay.rows == [["allcnn_c", "80.00", "70.00", "stopped @4", "stopped @2"]]
    assert '<td class="num stopped">stopped @4</td>' in to_html(lay)


def test_strict_passes_a_halved_table_and_fails_a_missing_lr(make_trial, summary, table, tmp_path):
    trials = halved_rows(make_trial, summary)
    spec = SimpleNamespace(name="g", tables=[table(**BEST_LR)], axes={})
    store = SimpleNamespace(read_trials=lambda grid: _Rows(trials))
    assert table_command(spec, store, fmt="markdown", strict=True, out=tmp_path / "t.md") == 0
    store = SimpleNamespace(read_trials=lambda grid: _Rows(trials[:3]))
    expected = [
        {"key": t["key"], "train.lr": t["train.lr"], "model.arch": "allcnn_c"} for t in trials
    ]
    assert (
        table_command(
            spec, store, fmt="markdown", strict=True, expected=expected, out=tmp_path / "t.md"
        )
        == 1
    )  # lr 0.01 has no row at all


class _Rows:
    def __init__(self, rows):
        self.rows = rows

    def to_pylist(self):
        return self.rows


def test_the_report_lists_stopped_cells_and_the_full_view(make_trial, summary, table):
    trials = halved_rows(make_trial, summary)
    status = grid_status(trials, None, ["train.lr"])
    assert [(c["label"], c["stopped_at"]) for c in status["stopped"]] == [
        ("lr=0.02", 4),
        ("lr=0.01", 2),
    ]
    spec = SimpleNamespace(
        name="g", tables=[table(**BEST_LR)], axes={}, description="", path="g.yaml"
    )
    html, finished = render_report(spec, trials, {}, None)
    assert finished and "2 stopped" in html and "Stopped by the halving" in html
    assert "stopped @2" in html and "table: every lr" in html


def test_no_summary_without_a_stopped_run(make_trial, summary):
    row = schema.trial_row(make_trial(), summary(), PROV)
    assert halving_summary([row]) is None
