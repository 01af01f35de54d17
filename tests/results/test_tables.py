"""results.tables.build: golden renderings of a small hand-made grid in every format, the empty
store, and the table shapes of the seed papers."""

from __future__ import annotations

import csv
import io
from types import SimpleNamespace

import pytest
from rich.console import Console

from orchestrator.cli.main import expected_cells
from results.store import open_store
from results.tables import build as tables
from trainers.errors import GridError

GOLDEN_MARKDOWN = """\
### Best lr per model: test error (%)

| arch | lr | test error (%) | 95% CI | paper | Δ | paper in CI | params | wall time |
| --- | --- | ---: | ---: | ---: | ---: | --- | ---: | ---: |
| model_a | 0.05 | 11.00 ± 1.41 (n=2) | [-1.71, 23.71] | 12.47 | -1.47 | yes | 0.84M | 1h02m |
| model_b | - | div (best of 1/2 lr; 1 failed) |  | 10.20 |  |  | 0.89M | 2m05s |
| model_c | - | missing |  | 9.74 (Springenberg) |  |  | - | - |

- model_b: 0.89M parameters, following the papers' layer tables; the papers state ~1.0M, which disagrees with their own tables.
- mean ± sample std over n runs (seeds and axes the table does not name).
- Δ = ours - paper.
- 95% CI: Student's t-interval of the mean over the n runs, mean ± t(0.975, n-1) · std / √n; an entry with n = 1 has none.
- paper in CI: whether the published number lies inside our 95% CI.
- The best lr is picked by val_acc among the lrs whose every run finished; a diverged run makes its lr the worst.
- Incomplete: 2 of 3 cells have failed, missing or unfinished runs; rerun `grid launch` to fill them (`grid table --strict` exits 1).

### Test accuracy (%) per lr

| arch | lr=0.1 | 95% CI | lr=0.05 | 95% CI | paper | Δ | paper in CI |
| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |
| model_a | 85.50 ± 0.71 (n=2) | [79.15, 91.85] | 89.00 ± 1.41 (n=2) | [76.29, 101.71] | 88.50 | +0.50 | yes |
| model_b | 91.00 (n=1, 1 failed) | - | div |  |  |  |  |
| model_c | missing |  | missing |  |  |  |  |

- mean ± sample std over n runs (seeds and axes the table does not name).
- Δ = ours - paper.
- 95% CI: Student's t-interval of the mean over the n runs, mean ± t(0.975, n-1) · std / √n; an entry with n = 1 has none.
- paper in CI: whether the published number lies inside our 95% CI.
- Incomplete: 4 of 6 cells have failed, missing or unfinished runs; rerun `grid launch` to fill them (`grid table --strict` exits 1).
"""

GOLDEN_CSV = """\
table,model.arch,train.lr,metric,at,status,mean,std,n,diverged,n_failed,n_missing,over_done,over_total,ci_low,ci_high,reference,delta,reference_in_ci,vs_baseline,test,p,p_holm,significant,seeds_needed,params,wall_s
best_lr,model_a,0.05,test_error,final,ok,11,1.4142,2,0,0,0,2,2,-1.7062,23.7062,12.47,-1.47,true,,,,,,,839242,3725
best_lr,model_b,,test_error,final,diverged,,,0,2,1,0,1,2,,,10.2,,,,,,,,,885610,125
best_lr,model_c,,test_error,final,missing,,,0,0,0,4,0,2,,,9.74,,,,,,,,,,
lr_sweep,model_a,0.1,test_acc,final,ok,85.5,0.7071,2,0,0,0,0,0,79.1469,91.8531,,,,,,,,,,,
lr_sweep,model_a,0.05,test_acc,final,ok,89,1.4142,2,0,0,0,0,0,76.2938,101.7062,88.5,0.5,true,,,,,,,,
lr_sweep,model_b,0.1,test_acc,final,ok,91,,1,0,1,0,0,0,,,,,,,,,,,,,
lr_sweep,model_b,0.05,test_acc,final,diverged,,,0,2,0,0,0,0,,,,,,,,,,,,,
lr_sweep,model_c,0.1,test_acc,final,missing,,,0,0,0,2,0,0,,,,,,,,,,,,,
lr_sweep,model_c,0.05,test_acc,final,missing,,,0,0,0,2,0,0,,,,,,,,,,,,,
"""


def run(spec, store, fmt, tmp_path):
    out = tmp_path / f"tables.{fmt}"
    console = Console(file=io.StringIO(), width=200)
    assert (
        tables.table_command(
            spec, store, fmt=fmt, out=out, console=console, expected=expected_cells(spec)
        )
        == 0
    )
    return out.read_text(encoding="utf-8"), console.file.getvalue()


def test_markdown_golden(golden, tmp_path):
    text, said = run(*golden, "markdown", tmp_path)
    assert text == GOLDEN_MARKDOWN
    assert "wrote 2 table(s)" in said


def test_csv_golden_is_tidy_and_parses(golden, tmp_path):
    text, _ = run(*golden, "csv", tmp_path)
    assert text == GOLDEN_CSV
    assert len(list(csv.DictReader(io.StringIO(text)))) == 9


def test_latex_golden(golden, tmp_path):
    text, _ = run(*golden, "latex", tmp_path)
    for part in (
        r"\begin{tabular}{llrrrrlrr}",
        r"\toprule",
        r"\midrule",
        r"\bottomrule",
        r"\caption{Best lr per model: test error (\%)}",
        r"\label{tab:best_lr}",
        r"arch & lr & test error (\%) & 95\% CI & paper & $\Delta$ & paper in CI & params & "
        r"wall time \\",
        r"model\_a & 0.05 & 11.00 $\pm$ 1.41 (n=2) & [-1.71, 23.71] & 12.47 & -1.47 & yes & "
        r"0.84M & 1h02m \\",
        r"model\_b & 91.00 (n=1, 1 failed) & - & div &  &  &  &  \\",
        r"model\_c & missing &  & missing &  &  &  &  \\",
        r"\textasciitilde{}1.0M",
    ):
        assert part in text, part


def test_html_golden(golden, tmp_path):
    text, _ = run(*golden, "html", tmp_path)
    assert text.count('<table class="grid-table">') == 2
    for part in (
        "<caption>Best lr per model: test error (%)</caption>",
        '<th class="num">Δ</th>',
        '<td class="num">11.00 ± 1.41 (n=2)</td>',
        '<td class="num missing">missing</td>',
        '<td class="num diverged">div</td>',
        "9.74 (Springenberg)",
        '<p class="grid-note">',
    ):
        assert part in text, part


def test_rich_golden_on_the_console(golden):
    console = Console(file=io.StringIO(), width=200)
    assert tables.table_command(*golden, console=console, expected=expected_cells(golden[0])) == 0
    text = console.file.getvalue()
    for part in (
        "Best lr per model: test error (%)",
        "11.00 ± 1.41 (n=2)",
        "-1.47",
        "1h02m",
        "missing",
        "div",
        "lr=0.05",
        "+0.50",
        "model_b: 0.89M parameters",
    ):
        assert part in text, part


def test_empty_store_with_a_real_spec_renders_every_cell_missing(spec_factory, tmp_path):
    store = open_store(str(tmp_path / "empty"))
    console = Console(file=io.StringIO(), width=200)
    spec = spec_factory()
    assert (
        tables.table_command(spec, store, fmt="csv", console=console, expected=expected_cells(spec))
        == 0
    )
    said = console.file.getvalue()
    assert said.startswith(f"no results for grid golden in {tmp_path / 'empty'}")
    assert said.count(",missing,") == 3 + 6 and "Traceback" not in said


def test_empty_store(tmp_path, table):
    spec = SimpleNamespace(
        name="empty",
        axes={"model.arch": ["model_a", "model_b"]},
        tables=[
            table(
                name="t",
                title="T",
                reference=[{"where": {"model.arch": "model_a"}, "value": 90.0, "label": None}],
            )
        ],
    )
    store = open_store(str(tmp_path / "runs"))
    console = Console(file=io.StringIO(), width=200)
    assert tables.table_command(spec, store, fmt="markdown", console=console) == 0
    said = console.file.getvalue()
    assert f"no results for grid empty in {tmp_path / 'runs'}" in said
    assert "| model_a | missing | 90.00 |  |" in said and "| model_b | missing |  |  |" in said


def test_spec_without_tables(tmp_path):
    console = Console(file=io.StringIO(), width=200)
    spec = SimpleNamespace(name="none", axes={}, tables=[])
    assert tables.table_command(spec, open_store(str(tmp_path)), console=console) == 0
    assert "defines no tables" in console.file.getvalue()


def test_unknown_format_and_unwritable_out(golden, tmp_path):
    with pytest.raises(GridError, match="--format"):
        tables.table_command(*golden, fmt="xlsx")
    with pytest.raises(GridError, match="--out"):
        tables.table_command(
            *golden,
            fmt="csv",
            out=tmp_path / "no" / "such" / "dir.csv",
            console=Console(file=io.StringIO()),
        )


@pytest.mark.parametrize(
    "seconds,text", [(45, "45s"), (125, "2m05s"), (3725, "1h02m"), (90000, "25h00m")]
)
def test_fmt_duration(seconds, text):
    assert tables.fmt_duration(seconds) == text


@pytest.mark.parametrize(
    "n,text",
    [
        (1_369_738, "1.37M"),
        (885_610, "0.89M"),
        (11_173_962, "11.17M"),
        (12_345, "12.3K"),
        (42, "42"),
    ],
)
def test_fmt_params(n, text):
    assert tables.fmt_params(n) == text


def test_fmt_value():
    assert [tables.fmt_value(v) for v in (True, False, 0.05, '["crop","flip"]', None, "nin")] == [
        "yes",
        "no",
        "0.05",
        "crop+flip",
        "-",
        "nin",
    ]


def nin_rows(make_trial, summary, put, store):
    """seeds/004 Table 2's shape: activation x batch norm x init, no validation split."""
    for act, bn, init, acc in (
        ("elu", True, "he_normal", 0.915),
        ("relu", False, "he_normal", 0.9),
    ):
        trial = make_trial(
            "nin",
            **{
                "model.activation": act,
                "model.batch_norm": bn,
                "model.init": init,
                "model.arch": "nin",
            },
        )
        put(store, trial, summary(test_acc=acc, val_acc=None, params=966_986, wall_s=10_700))


def test_seed_004_activation_bn_init_table(local_store, make_trial, summary, put, table):
    nin_rows(make_trial, summary, put, local_store)
    axes = {
        "model.activation": ["relu", "elu"],
        "model.batch_norm": [False, True],
        "model.init": ["xavier_uniform", "he_normal"],
    }
    t = table(
        name="nin",
        title="NIN",
        rows=list(axes),
        show=["params", "wall_s"],
        reference_label="seeds/004",
        reference=[
            {
                "where": {
                    "model.activation": "elu",
                    "model.batch_norm": True,
                    "model.init": "he_normal",
                },
                "value": 91.67,
                "label": "ELU+BN+WI",
            }
        ],
    )
    spec = SimpleNamespace(name="nin", axes=axes, tables=[t])
    text = tables.render(
        tables.build_tables(spec, local_store.read_trials("nin").to_pylist()), "markdown"
    )
    lines = [line for line in text.splitlines() if line.startswith("| ")]
    assert lines[0] == (
        "| activation | batch_norm | init | test accuracy (%) | seeds/004 | Δ "
        "| params | wall time |"
    )
    assert len(lines) == 2 + 8  # every combination
    assert "| elu | yes | he_normal | 91.50 | 91.67 (ELU+BN+WI) | -0.17 | 0.97M | 2h58m |" in text
    assert "| relu | no | xavier_uniform | missing |" in text


def test_seed_002_best_validation_accuracy_table(local_store, make_trial, summary, put, table):
    put(
        local_store,
        make_trial("v", **{"model.arch": "model_a"}),
        summary(test_acc=0.8, val_acc=0.85),
    )
    t = table(
        rows=["model.arch"],
        metric="val_acc",
        at="best",
        show=["params", "epochs"],
        reference=[{"where": {"model.arch": "model_a"}, "value": 85.0, "label": None}],
    )
    spec = SimpleNamespace(name="v", axes={}, tables=[t])
    text = tables.render(
        tables.build_tables(spec, local_store.read_trials("v").to_pylist()), "markdown"
    )
    assert "| arch | val accuracy (%) at best epoch | paper | Δ | params | epochs |" in text
    assert "| model_a | 85.00 | 85.00 | +0.00 | 1.0K | 3 |" in text


def test_table_command_reports_a_corrupt_file_by_name(golden):
    spec, store = golden
    (store.root / "golden" / "trials" / "broken.parquet").write_bytes(b"not parquet at all")
    console = Console(file=io.StringIO(), width=300)
    assert (
        tables.table_command(
            spec, store, fmt="markdown", console=console, expected=expected_cells(spec)
        )
        == 0
    )
    said = console.file.getvalue()
    assert "warning:" in said and "broken.parquet" in said
    assert "| model_a | 0.05 | 11.00 ± 1.41 (n=2) |" in said  # the rest still renders


def test_a_failed_lr_flags_the_row_and_strict_exits_1(
    local_store, make_trial, summary, put, table, tmp_path
):
    spec = SimpleNamespace(
        name="g",
        axes={"train.lr": [0.1, 0.05]},
        tables=[table(name="t", title="T", metric="test_acc", best_by="val_acc", over="train.lr")],
    )
    put(local_store, make_trial(**{"train.lr": 0.1}), summary(test_acc=0.5, val_acc=0.5))
    put(local_store, make_trial(**{"train.lr": 0.05}), None, error="RuntimeError: boom")
    console = Console(file=io.StringIO(), width=200)
    assert tables.table_command(spec, local_store, fmt="markdown", console=console) == 0
    said = console.file.getvalue()
    assert "| allcnn_c | 0.1 | 50.00 (best of 1/2 lr; 1 failed) |" in said
    assert "Incomplete: 1 of 1 cells" in said
    assert (
        tables.table_command(spec, local_store, fmt="markdown", console=console, strict=True) == 1
    )
    assert "--strict: the tables have holes" in console.file.getvalue()


def test_a_failed_rerun_leaves_the_table_unchanged(local_store, make_trial, summary, put, table):
    spec = SimpleNamespace(
        name="g",
        axes={"train.lr": [0.1, 0.05]},
        tables=[table(name="t", title="T", metric="test_acc", best_by="val_acc", over="train.lr")],
    )
    cells = [make_trial(**{"train.lr": lr}) for lr in (0.1, 0.05)]
    put(local_store, cells[0], summary(test_acc=0.09, val_acc=0.09))
    put(local_store, cells[1], summary(test_acc=0.427, val_acc=0.43))

    def render() -> str:
        console = Console(file=io.StringIO(), width=200)
        assert (
            tables.table_command(spec, local_store, fmt="markdown", console=console, strict=True)
            == 0
        )
        return console.file.getvalue()

    before = render()
    assert "| allcnn_c | 0.05 | 42.70 |" in before
    put(local_store, cells[1], None, error="RuntimeError: the --force rerun died")
    assert render() == before
