"""results.tables.aggregate: metric units, averaging, best-by picks, missing/diverged,
references."""

from __future__ import annotations

import pytest

from results.store import schema
from results.tables import aggregate

PROV = {"spec_sha256": "0" * 64}


def rows(make_trial, summary, cells):
    """Trial rows from [(params dict, status, test_acc, val_acc)]."""
    out = []
    for params, status, test_acc, val_acc in cells:
        s = None if status == "failed" else summary(status, test_acc, val_acc)
        error = "x" if s is None else None
        out.append(schema.trial_row(make_trial(**params), s, PROV, error=error))
    return out


@pytest.mark.parametrize(
    "metric,expected",
    [("test_acc", 91.5), ("test_error", 8.5), ("val_acc", 80.0), ("test_loss", 0.5)],
)
def test_metric_units(metric, expected):
    row = {"final_test_acc": 0.915, "final_val_acc": 0.8, "final_test_loss": 0.5}
    assert aggregate.metric_value(row, metric) == pytest.approx(expected)


def test_metric_at_best_and_missing_values():
    row = {"best_test_acc": 0.7, "final_val_acc": None, "final_test_acc": float("nan")}
    assert aggregate.metric_value(row, "test_acc", "best") == pytest.approx(70.0)
    assert (
        aggregate.metric_value(row, "val_acc") is None
        and aggregate.metric_value(row, "test_acc") is None
    )


def test_seeds_average_with_sample_std(make_trial, summary, table):
    data = rows(
        make_trial,
        summary,
        [({"train.seed": s}, "completed", acc, 0.5) for s, acc in enumerate([0.90, 0.92, 0.94])],
    )
    cell = aggregate.build_table(table(rows=["model.arch"]), data).cells[(("allcnn_c",), None)]
    assert cell.n == 3 and cell.mean == pytest.approx(92.0) and cell.std == pytest.approx(2.0)
    # 92 ± t(0.975, 2) 2 / sqrt(3), t(0.975, 2) = 4.303 (any t table)
    assert cell.ci == pytest.approx((92 - 4.9683, 92 + 4.9683), abs=1e-4)
    assert cell.samples == [(0, pytest.approx(90.0)), (1, pytest.approx(92.0)), (2, 94.0)]
    one = aggregate.build_table(table(), data[:1]).cells[(("allcnn_c",), None)]
    assert one.n == 1 and one.std is None and one.ci is None  # one run: no spread, no interval


def test_best_by_picks_over_value_per_row(make_trial, summary, table):
    data = rows(
        make_trial,
        summary,
        [
            ({"model.arch": "model_a", "train.lr": 0.1}, "completed", 0.95, 0.70),
            ({"model.arch": "model_a", "train.lr": 0.05}, "completed", 0.90, 0.80),
            ({"model.arch": "model_b", "train.lr": 0.1}, "completed", 0.85, 0.90),
            ({"model.arch": "model_b", "train.lr": 0.05}, "diverged", 0.10, 0.10),
        ],
    )
    t = table(best_by="val_acc", over="train.lr", metric="test_error")
    cells = aggregate.build_table(t, data, axes={"model.arch": ["model_b", "model_a"]}).cells
    assert list(cells) == [(("model_b",), None), (("model_a",), None)]  # the spec's order
    a, b = cells[(("model_a",), None)], cells[(("model_b",), None)]
    assert a.pick == 0.05 and a.mean == pytest.approx(10.0)  # by val acc, not by test acc
    assert b.pick == 0.1 and b.mean == pytest.approx(15.0) and b.diverged == 0


def test_best_by_loss_prefers_lower(make_trial, summary, table):
    data = rows(
        make_trial,
        summary,
        [({"train.lr": lr}, "completed", acc, 0.5) for lr, acc in ((0.1, 0.9), (0.2, 0.6))],
    )
    for r, loss in zip(data, (0.9, 0.3), strict=True):
        r["final_val_loss"] = loss
    cell = aggregate.build_table(table(best_by="val_loss", over="train.lr"), data).cells
    assert cell[(("allcnn_c",), None)].pick == 0.2


def test_diverged_missing_and_mixed_cells(make_trial, summary, table):
    data = rows(
        make_trial,
        summary,
        [
            ({"model.arch": "model_a", "train.seed": 0}, "diverged", 0.1, 0.1),
            ({"model.arch": "model_a", "train.seed": 1}, "diverged", 0.1, 0.1),
            ({"model.arch": "model_b", "train.seed": 0}, "diverged", 0.1, 0.1),
            ({"model.arch": "model_b", "train.seed": 1}, "completed", 0.9, 0.9),
            ({"model.arch": "model_c", "train.seed": 0}, "failed", None, None),
        ],
    )
    axes = {"model.arch": ["model_a", "model_b", "model_c", "nin"]}
    cells = aggregate.build_table(table(), data, axes=axes).cells
    assert cells[(("model_a",), None)].status == "diverged"
    b = cells[(("model_b",), None)]
    assert b.status == "ok" and b.n == 1 and b.diverged == 1 and b.mean == pytest.approx(90.0)
    c = cells[(("model_c",), None)]
    assert c.status == "failed" and c.failed == 1 and c.holes == 1
    assert cells[(("nin",), None)].status == "missing"  # an axis value never run is kept


def test_expected_cells_filter_and_order(make_trial, summary, table):
    data = rows(
        make_trial,
        summary,
        [
            ({"model.arch": "model_a"}, "completed", 0.9, 0.9),
            ({"model.arch": "model_b"}, "completed", 0.5, 0.5),
        ],
    )
    expected = [
        {"key": "0" * 12, "model.arch": "nin"},
        {"key": data[0]["key"], "model.arch": "model_a"},
    ]
    result = aggregate.build_table(table(), data, expected)
    assert result.rows == [("nin",), ("model_a",)]  # model_b is not this spec's cell
    assert result.cells[(("nin",), None)].status == "missing"


def test_references_and_delta(make_trial, summary, table):
    data = rows(
        make_trial,
        summary,
        [
            ({"model.arch": "model_a", "train.lr": 0.1}, "completed", 0.90, 0.9),
            ({"model.arch": "model_a", "train.lr": 0.05}, "completed", 0.80, 0.9),
            ({"model.arch": "model_b", "train.lr": 0.1}, "completed", 0.70, 0.9),
        ],
    )
    refs = [
        {"where": {"model.arch": "model_a"}, "value": 88.0, "label": None},
        {"where": {"model.arch": "model_a", "train.lr": 0.05}, "value": 81.0, "label": "L"},
        {"where": {"model.arch": "model_b"}, "value": 71.0, "label": None},
    ]
    plain = aggregate.build_table(table(reference=refs[:1]), data).cells[(("model_a",), None)]
    assert plain.reference == 88.0 and plain.delta == pytest.approx(85.0 - 88.0)
    cols = aggregate.build_table(table(columns="train.lr", reference=refs), data)
    cell = cols.cells[(("model_a",), 0.05)]
    assert cell.reference == 81.0 and cell.reference_label == "L"
    assert cell.delta == pytest.approx(-1.0)
    assert cols.cells[(("model_a",), 0.1)].reference is None
    assert cols.row_refs == {("model_a",): (88.0, None), ("model_b",): (71.0, None)}


def test_reference_on_a_non_table_axis_checks_the_trials(make_trial, summary, table):
    data = rows(make_trial, summary, [({"train.label_smoothing": 0.1}, "completed", 0.9, 0.9)])
    hit = {
        "where": {"model.arch": "allcnn_c", "train.label_smoothing": 0.1},
        "value": 1.0,
        "label": None,
    }
    miss = {
        "where": {"model.arch": "allcnn_c", "train.label_smoothing": 0.0},
        "value": 2.0,
        "label": None,
    }
    assert (
        aggregate.build_table(table(reference=[miss, hit]), data)
        .cells[(("allcnn_c",), None)]
        .reference
        == 1.0
    )


def test_show_extras_and_params_by_arch(make_trial, summary, table):
    data = rows(
        make_trial,
        summary,
        [({"model.arch": "model_b", "train.seed": s}, "completed", 0.9, 0.9) for s in (0, 1)],
    )
    data[1]["wall_s"] = 120.0
    result = aggregate.build_table(table(show=["params", "wall_s"]), data)
    assert result.extras[("model_b",)] == {"params": 1000, "wall_s": 90.0}
    assert result.params_by_arch == {"model_b": 1000}


def test_expected_cells_of_a_stand_in_spec_is_none(table):
    from types import SimpleNamespace

    from orchestrator.cli.main import expected_cells

    assert expected_cells(SimpleNamespace(name="x", axes={}, tables=[table()])) is None


def _lr_rows(make_trial, summary, outcomes):
    return rows(
        make_trial,
        summary,
        [
            ({"model.arch": "allcnn_c", "train.lr": lr}, status, acc, acc)
            for lr, status, acc in outcomes
        ],
    )


def test_pick_is_only_among_finished_lrs_and_flags_the_rest(make_trial, summary, table):
    data = _lr_rows(
        make_trial,
        summary,
        [(0.1, "completed", 0.5), (0.05, "failed", None), (0.01, "completed", 0.4)],
    )
    expected = [
        {"key": r["key"], "model.arch": "allcnn_c", "train.lr": r["train.lr"]} for r in data
    ]
    expected.append({"key": "f" * 12, "model.arch": "allcnn_c", "train.lr": 0.2})  # not run
    cell = aggregate.build_table(table(best_by="val_acc", over="train.lr"), data, expected).cells[
        (("allcnn_c",), None)
    ]
    assert cell.pick == 0.1 and cell.mean == pytest.approx(50.0)
    assert (cell.over_done, cell.over_total, cell.failed, cell.missing) == (2, 4, 1, 1)
    assert cell.holes > 0 and cell.status == "ok"


def test_a_diverged_lr_is_the_worst_not_ignored(make_trial, summary, table):
    data = _lr_rows(make_trial, summary, [(0.25, "diverged", 0.1), (0.1, "completed", 0.3)])
    cell = aggregate.build_table(table(best_by="val_acc", over="train.lr"), data).cells[
        (("allcnn_c",), None)
    ]
    assert cell.pick == 0.1 and cell.over_done == cell.over_total == 2 and cell.holes == 0
    only = _lr_rows(make_trial, summary, [(0.25, "diverged", 0.1)])
    cell = aggregate.build_table(table(best_by="val_acc", over="train.lr"), only).cells[
        (("allcnn_c",), None)
    ]
    assert cell.pick is None and cell.status == "diverged"


def test_an_lr_with_an_unfinished_seed_is_no_candidate(make_trial, summary, table):
    data = rows(
        make_trial,
        summary,
        [
            ({"model.arch": "m", "train.lr": 0.1, "train.seed": 0}, "completed", 0.9, 0.9),
            ({"model.arch": "m", "train.lr": 0.1, "train.seed": 1}, "failed", None, None),
            ({"model.arch": "m", "train.lr": 0.05, "train.seed": 0}, "completed", 0.6, 0.6),
            ({"model.arch": "m", "train.lr": 0.05, "train.seed": 1}, "completed", 0.7, 0.7),
        ],
    )
    cell = aggregate.build_table(table(best_by="val_acc", over="train.lr"), data).cells[
        (("m",), None)
    ]
    assert cell.pick == 0.05 and cell.n == 2 and (cell.over_done, cell.over_total) == (1, 2)
