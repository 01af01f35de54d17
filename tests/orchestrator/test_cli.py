"""The small commands, called in-process: models, status, train, report, plot."""

import json
import os
import re
import socket
import textwrap
from pathlib import Path

import pytest

from orchestrator.cli.main import main
from orchestrator.spec.expand import expand
from orchestrator.spec.load import load_spec, smoke
from results.store import open_store
from results.store.lease import Lease
from results.store.schema import epoch_rows, trial_row

REPO = Path(__file__).resolve().parents[2]

TINY = """
name: tiny
dataset: {name: synthetic, subset: 256, val_size: 64}
model: {arch: allcnn_c, width: 0.125, dropout: 0.0, input_dropout: 0.0}
train: {epochs: 1, batch_size: 64, lr: 0.05, schedule: {name: constant}}
grid: {lr: [0.05, 0.01, 0.1]}
"""


def test_models_json_lists_every_arch_with_params(capsys):
    assert main(["models", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert {"model_a", "strided_b", "convpool_c", "allcnn_c", "nin", "resnet9", "resnet18"} <= set(
        rows
    )
    assert rows["allcnn_c"]["params"] == 1_369_738
    assert rows["model_a"]["params"] == 839_242
    # seed 003's stated counts (with batch norm) beside ours
    assert rows["resnet18"]["params_bn"] == rows["resnet18"]["paper_params_bn"] == 11_173_962
    assert rows["resnet12"]["paper_params_bn"] == 7_827_786
    assert rows["densenet59"]["paper_params_bn"] == 614_850


def test_status_reads_the_store_without_ray(tmp_path, capsys):
    spec_path = tmp_path / "tiny.yaml"
    spec_path.write_text(textwrap.dedent(TINY))
    trials = expand(load_spec(spec_path))
    store = open_store(str(tmp_path / "runs"))
    summary = {
        "status": "completed",
        "epochs": 1,
        "params": 10,
        "wall_s": 1.0,
        "images_per_s": 100.0,
        "device": "cpu",
        "final": {
            "epoch": 1,
            "test_acc": 0.5,
            "val_acc": 0.5,
            "train_acc": 0.5,
            "test_loss": 1.0,
            "val_loss": 1.0,
            "train_loss": 1.0,
        },
        "best": {"epoch": 1, "test_acc": 0.5, "val_acc": 0.5},
        "history": [],
    }
    store.write_trial("tiny", trials[0].key, trial_row(trials[0], summary, {}), [])
    store.write_trial("tiny", trials[1].key, trial_row(trials[1], None, {}, error="boom"), [])
    assert main(["status", str(spec_path), "--store", str(tmp_path / "runs"), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["status"] for r in rows] == ["completed", "failed", "missing"]
    assert main(["status", str(spec_path), "--store", str(tmp_path / "runs")]) == 0
    assert "1 completed, 0 diverged, 1 failed, 1 missing" in capsys.readouterr().out

    # a failed rerun of the completed cell keeps its result and shows the failure; a launch
    # that holds the grid is shown
    store.write_failure("tiny", trials[0].key, trial_row(trials[0], None, {}, error="oom"))
    lease = Lease(store, "tiny")
    lease.acquire()
    assert main(["status", str(spec_path), "--store", str(tmp_path / "runs")]) == 0
    out = capsys.readouterr().out
    assert "1 completed, 0 diverged, 1 failed, 1 missing" in out
    assert "rerun failed (result kept): oom" in out
    assert f"running: a launch by {socket.gethostname()} (pid {os.getpid()}) since" in out


def test_plan_warns_when_a_table_picks_on_the_test_set(tmp_path, capsys):
    spec_path = tmp_path / "tiny.yaml"
    spec_path.write_text(
        textwrap.dedent(TINY) + "tables: [{rows: arch, over: lr, best_by: val_acc}]\n"
    )
    assert main(["plan", str(spec_path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["warnings"] == []
    assert main(["plan", str(spec_path), "--set", "dataset.val_size=0"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert re.search(r"warning: tables\.\S+: picks the best lr with no validation set", out)


def test_smoke_fits_its_resources_to_this_machine(tmp_path):
    spec_path = tmp_path / "tiny.yaml"
    spec_path.write_text(textwrap.dedent(TINY) + "resources: {cpu: 4, gpu: auto}\n")
    spec = load_spec(spec_path)
    assert smoke(spec, cpus=2).resources["cpu"] == 2 and spec.resources["cpu"] == 4
    assert smoke(spec, cpus=16).resources["cpu"] == 4


def test_train_runs_one_cell_in_process(tmp_path, capsys):
    spec_path = tmp_path / "tiny.yaml"
    spec_path.write_text(textwrap.dedent(TINY))
    key = expand(load_spec(spec_path))[1].key
    assert main(["train", str(spec_path), "--cell", key[:6]]) == 0
    out = capsys.readouterr().out
    assert f"cell {key}" in out and "epoch   1" in out and "completed after 1 epochs" in out


def test_train_unknown_cell_exits_2(tmp_path, capsys):
    spec_path = tmp_path / "tiny.yaml"
    spec_path.write_text(textwrap.dedent(TINY))
    assert main(["train", str(spec_path), "--cell", "zzzz"]) == 2
    assert "--cell zzzz: matches 0 cells of tiny" in capsys.readouterr().err


def test_bench_flags_reach_the_benchmark(monkeypatch):
    seen = {}
    import trainers.bench

    monkeypatch.setattr(trainers.bench, "main", lambda argv: seen.setdefault("argv", argv) and 0)
    assert main(["bench", "--json", "--quick"]) == 0
    assert seen["argv"] == ["--json", "--quick"]


TINY_TABLE = (
    TINY
    + """
tables:
  - {name: lrs, title: "Tiny: test accuracy (%) per lr", rows: [arch], columns: lr,
     metric: test_acc, reference: [{where: {arch: allcnn_c, lr: 0.05}, value: 55.5}]}
"""
)


def _tiny_results(tmp_path) -> tuple[str, str]:
    """A tiny spec with a table, two of its three cells written (one 2-epoch curve each)."""
    spec_path = tmp_path / "tiny.yaml"
    spec_path.write_text(textwrap.dedent(TINY_TABLE))
    store = open_store(str(tmp_path / "runs"))
    for t, acc in zip(expand(load_spec(spec_path))[:2], (0.5, 0.6), strict=True):
        history = [
            {
                "epoch": e,
                "lr": 0.05,
                "train_loss": 1.0,
                "train_acc": acc - 0.1 / e,
                "val_loss": 1.0,
                "val_acc": acc,
                "test_loss": 1.0,
                "test_acc": acc - 0.1 / e,
            }
            for e in (1, 2)
        ]
        summary = {
            "status": "completed",
            "epochs": 2,
            "params": 10,
            "wall_s": 1.0,
            "images_per_s": 100.0,
            "device": "cpu",
            "final": history[-1],
            "best": history[-1],
            "history": history,
        }
        store.write_trial("tiny", t.key, trial_row(t, summary, {}), epoch_rows(t, history))
    return str(spec_path), str(tmp_path / "runs")


def test_report_writes_one_page(tmp_path, capsys):
    spec, store = _tiny_results(tmp_path)
    assert main(["report", spec, "--store", store, "--out", str(tmp_path / "rep")]) == 0
    page = (tmp_path / "rep" / "tiny.html").read_text(encoding="utf-8")
    assert "Tiny: test accuracy (%) per lr" in page and "55.50" in page and "45.00" in page
    assert ">2 done</span>" in page and ">1 missing</span>" in page
    assert "tiny.html (in progress" in capsys.readouterr().out
    # the same grid in a store that holds none of its rows
    empty = str(tmp_path / "empty")
    assert main(["report", spec, "--store", empty, "--out", str(tmp_path / "rep")]) == 0
    assert "tiny.html (no results yet" in capsys.readouterr().out


def test_report_watch_count_stops_an_unfinished_grid(tmp_path, monkeypatch, capsys):
    spec, store = _tiny_results(tmp_path)
    import results.report.page

    waits = []
    monkeypatch.setattr(results.report.page.time, "sleep", waits.append)  # never really sleeps
    assert (
        main(
            [
                "report",
                spec,
                "--store",
                store,
                "--out",
                str(tmp_path),
                "--watch",
                "5",
                "--watch-count",
                "2",
            ]
        )
        == 0
    )
    assert waits == [5.0] and capsys.readouterr().out.count("wrote ") == 2
    assert "http-equiv" not in (tmp_path / "tiny.html").read_text()  # the last page is still


def test_report_bad_flags_exit_2(tmp_path, capsys):
    spec, store = _tiny_results(tmp_path)
    assert main(["report", spec, "--store", store, "--watch", "0"]) == 2
    assert "--watch 0: the seconds between rewrites must be > 0" in capsys.readouterr().err
    (tmp_path / "file").write_text("")
    assert main(["report", spec, "--store", store, "--out", str(tmp_path / "file")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"grid: error: --out {tmp_path / 'file'}: cannot write the report")
    assert "Traceback" not in err and len(err.splitlines()) == 1


def test_plot_format_and_size(tmp_path):
    spec, store = _tiny_results(tmp_path)
    out = tmp_path / "figs"
    assert (
        main(
            ["plot", spec, "--store", store, "--out", str(out), "--format", "svg", "--size", "one"]
        )
        == 0
    )
    assert sorted(p.name for p in out.iterdir()) == [
        "lrs_curves.svg",
        "lrs_intervals.svg",
        "lrs_lr.svg",
        "lrs_panels.svg",
    ]
    assert 'width="252pt"' in (out / "lrs_lr.svg").read_text()  # 3.5 in


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (
            ["train", "grids/quickstart.yaml", "--set", "train.device=cuda"],
            "grids/quickstart.yaml: train.device cuda",
        ),
        (["bench", "--quick", "--device", "cuda"], "--device cuda"),
        (["plan", "grids/quickstart.yaml", "--estimate", "--device", "cuda:3"], "--device cuda:3"),
    ],
)
def test_a_cuda_device_this_machine_lacks_is_one_line_and_exit_2(args, named, monkeypatch, capsys):
    import torch

    # as on a machine without a GPU (or with fewer), whatever this one has
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.chdir(REPO)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert named in err and "no CUDA GPU" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "args",
    [
        ["plan", "grids/quickstart.yaml", "--estimate", "--slots", "0"],
        ["launch", "grids/quickstart.yaml", "--dry-run", "--max-concurrent", "0"],
    ],
)
def test_a_count_of_trials_below_one_is_one_line_and_exit_2(args, monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"{args[-2]} 0: at least 1" in err and len(err.strip().splitlines()) == 1
