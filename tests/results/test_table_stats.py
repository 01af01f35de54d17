"""Intervals, baseline comparisons and references in context, in every format, on a store
with 3 seeds, 1 seed and a missing seed (tests/results/conftest.py SEED_ACC).

Expected numbers were computed apart from the code under test: the intervals from a t table
(t(0.975, 2) = 4.303: 91 ± 4.303 · 1 / sqrt(3) = [88.52, 93.48]); the p-values with scipy
(scipy.stats.ttest_rel([92.5, 93, 94], [90, 91, 92]).pvalue = 0.005865, times 2 by Holm;
ttest_ind([89.5, 91], [88, 89, 90.5], equal_var=False).pvalue = 0.3860); the seeds with an
exact power calculation over the noncentral t (24 per row for 80 % power at 0.05 / 2)."""

from __future__ import annotations

import csv
import io

import pytest
from rich.console import Console

from orchestrator.cli.main import expected_cells
from results.tables import build as tables

GOLDEN_MARKDOWN = """\
### Batch norm: test accuracy (%)

| arch | batch_norm | test accuracy (%) | 95% CI | paper | Δ | paper in CI | Δ vs batch_norm=no | p (Holm) | wall time |
| --- | --- | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: |
| model_a | no | 91.00 ± 1.00 (n=3) | [88.52, 93.48] |  |  |  | baseline |  | 1h00m |
| model_a | yes | 93.17 ± 0.76 (n=3) | [91.27, 95.06] | 93.50 | -0.33 | yes | +2.17 | 0.012 * | 1h00m |
| model_b | no | 89.17 ± 1.26 (n=3) | [86.04, 92.29] | 95.00 | -5.83 | no | baseline |  | 1h00m |
| model_b | yes | 90.25 ± 1.06 (n=2, 1 missing) | [80.72, 99.78] |  |  |  | +1.08 | 0.386 W | 1h00m |
| model_c | no | 89.00 (n=1, 2 missing) | - | 90.00 | -1.00 |  | baseline |  | 1h00m |
| model_c | yes | 91.83 ± 1.04 (n=3) | [89.25, 94.42] |  |  |  | +2.83 | - | 1h00m |

- mean ± sample std over n runs (seeds and axes the table does not name).
- Δ = ours - paper.
- 95% CI: Student's t-interval of the mean over the n runs, mean ± t(0.975, n-1) · std / √n; an entry with n = 1 has none.
- paper in CI: whether the published number lies inside our 95% CI.
- Δ vs batch_norm=no: our mean minus the baseline row's (the row with batch_norm=no and the same other values); p: a two-sided paired t-test over the seeds both rows ran, or Welch's t-test (marked W) where their seeds differ, Holm-corrected over the 2 comparisons of this table; * p < 0.05. Not tested (n = 1 on a side): 1 of the comparisons.
- arch=model_b, batch_norm=yes: not separated from the baseline (p = 0.386); 24 seeds per row would separate a difference of +1.08 at the observed spread (std 1.16, Welch t, 80% power at α = 0.05/2): 43 more runs, about 43.0 device-hours at the measured time per run.
- Incomplete: 2 of 6 cells have failed, missing or unfinished runs; rerun `grid launch` to fill them (`grid table --strict` exits 1).
"""


def render(seeds, fmt: str) -> str:
    spec, store = seeds
    console = Console(file=io.StringIO(), width=250)
    code = tables.table_command(
        spec, store, fmt=fmt, console=console, expected=expected_cells(spec)
    )
    assert code == 0
    return console.file.getvalue()


def test_markdown_golden(seeds):
    assert render(seeds, "markdown") == GOLDEN_MARKDOWN


def test_csv_has_the_statistics_in_columns_of_their_own(seeds):
    rows = {
        (r["model.arch"], r["model.batch_norm"]): r
        for r in csv.DictReader(io.StringIO(render(seeds, "csv")))
    }
    a, a_bn = rows[("model_a", "false")], rows[("model_a", "true")]
    assert (float(a["ci_low"]), float(a["ci_high"])) == pytest.approx((88.5159, 93.4841))
    assert a["vs_baseline"] == "" and a["p"] == ""  # the baseline itself
    assert a_bn["test"] == "paired t" and float(a_bn["vs_baseline"]) == pytest.approx(2.1667)
    assert float(a_bn["p"]) == pytest.approx(0.005865, rel=1e-3)
    assert float(a_bn["p_holm"]) == pytest.approx(2 * 0.005865, rel=1e-3)
    assert a_bn["significant"] == "true" and a_bn["seeds_needed"] == ""
    assert a_bn["reference_in_ci"] == "true"
    b, b_bn = rows[("model_b", "false")], rows[("model_b", "true")]
    assert b["reference_in_ci"] == "false"  # 95 lies above [86.04, 92.29]
    assert b_bn["test"] == "Welch t" and b_bn["n"] == "2" and b_bn["n_missing"] == "1"
    assert float(b_bn["p"]) == pytest.approx(0.3860, rel=1e-3)
    assert float(b_bn["p_holm"]) == pytest.approx(0.3860, rel=1e-3)  # Holm: max(0.0117, 0.386)
    assert b_bn["significant"] == "false" and b_bn["seeds_needed"] == "24"
    c, c_bn = rows[("model_c", "false")], rows[("model_c", "true")]
    # one seed: no spread, no interval, no reference mark and no test, only n = 1
    assert (c["n"], c["std"], c["ci_low"], c["ci_high"], c["reference_in_ci"]) == (
        "1",
        "",
        "",
        "",
        "",
    )
    assert float(c_bn["vs_baseline"]) == pytest.approx(2.8333)
    assert (c_bn["test"], c_bn["p"], c_bn["p_holm"], c_bn["significant"]) == ("", "", "", "")


def test_latex(seeds):
    text = render(seeds, "latex")
    for part in (
        r"\begin{tabular}{llrrrrlrrr}",
        r"arch & batch\_norm & test accuracy (\%) & 95\% CI & paper & $\Delta$ & paper in CI & "
        r"$\Delta$ vs batch\_norm=no & p (Holm) & wall time \\",
        r"model\_a & yes & 93.17 $\pm$ 0.76 (n=3) & [91.27, 95.06] & 93.50 & -0.33 & yes & +2.17 "
        r"& 0.012 * & 1h00m \\",
        r"model\_b & yes & 90.25 $\pm$ 1.06 (n=2, 1 missing) & [80.72, 99.78] &  &  &  & +1.08 & "
        r"0.386 W & 1h00m \\",
        r"model\_c & no & 89.00 (n=1, 2 missing) & - & 90.00 & -1.00 &  & baseline &  & 1h00m \\",
        r"t(0.975, n-1) $\cdot$ std / $\surd$n",
        r"at $\alpha$ = 0.05/2",
    ):
        assert part in text, part


def test_html(seeds):
    text = render(seeds, "html")
    for part in (
        '<th class="num">95% CI</th>',
        '<th class="key">paper in CI</th>',
        '<th class="num">Δ vs batch_norm=no</th><th class="num">p (Holm)</th>',
        '<td class="num">[88.52, 93.48]</td>',
        '<td class="num">0.012 *</td>',
        '<td class="key">no</td>',
        '<td class="num">89.00 (n=1, 2 missing)</td><td class="num">-</td>',
        "24 seeds per row would separate a difference of +1.08",
    ):
        assert part in text, part


def test_rich(seeds):
    text = render(seeds, "rich")
    for part in (
        "[91.27, 95.06]",
        "0.012 *",
        "0.386 W",
        "89.00 (n=1, 2 missing)",
        "43.0 device-hours",
    ):
        assert part in text, part


def test_one_seed_everywhere_says_n_1_and_nothing_more(seeds):
    spec, store = seeds
    rows = [r for r in store.read_trials(spec.name).to_pylist() if r["train.seed"] == 0]
    (data,) = tables.build_tables(spec, rows)
    assert all(c.n == 1 and c.ci is None and c.std is None for c in data.cells.values())
    assert all(c.test is None for c in data.comparisons.values())
    text = tables.render([data], "markdown")
    assert "95% CI" not in text and "±" not in text and "*" not in text
    assert "| model_a | yes | 92.50 | 93.50 | -1.00 | +2.50 | - | 1h00m |" in text
    assert "One run per entry (n = 1): no spread, so no interval and no test." in text


def test_an_empty_store_claims_no_test(seeds, tmp_path):
    from results.store import open_store

    spec, _ = seeds
    console = Console(file=io.StringIO(), width=250)
    empty = open_store(str(tmp_path / "empty"))
    assert tables.table_command(spec, empty, fmt="markdown", console=console) == 0
    text = console.file.getvalue()
    assert "| model_a | no | missing |  |  | baseline |  | - |" in text
    assert "95% CI" not in text and "not tested" not in text and "seeds per row" not in text
