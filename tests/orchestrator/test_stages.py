"""Stages (orchestrator/stages/parents.py, stagelaunch.py): a grid whose cells start from another
grid's trained cells. Without Ray: the `stage:` section's checks and the parent's
resolution. With real Ray and moto's S3, on CIFAR-10 and CIFAR-100 written here in their real
on-disk layouts: a child refused while its parents are missing, `--with-parents` training
both stages in one command, the frozen child's body equal to its parent's kept weights, a
relaunch that skips everything, and a parent rerun that makes its children stale until
`grid launch` trains them again."""

from __future__ import annotations

import io
import json
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from orchestrator.cli.main import main
from orchestrator.spec.expand import expand
from orchestrator.spec.load import load_spec
from orchestrator.stages import parents as stages
from results.store import open_store
from results.store import weights as stored_weights
from trainers.cifar_files import write_cifar10, write_cifar100
from trainers.errors import GridError

MODEL = "{arch: strided_a, width: 0.25, dropout: 0.0, input_dropout: 0.0}"
TRAIN = (
    "{epochs: 1, batch_size: 64, schedule: {name: constant}, checkpoint_s: 0, keep_weights: true}"
)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    """CIFAR-10 (200 train, 50 test) and CIFAR-100 (3 train, 1 test image per class)."""
    root = tmp_path_factory.mktemp("cifar")
    rng = np.random.default_rng(0)
    palette = rng.integers(30, 226, size=(100, 3))

    def images(labels):
        x = palette[labels][:, :, None, None] + rng.normal(0, 25, (len(labels), 3, 32, 32))
        return np.clip(x, 0, 255).astype(np.uint8)

    y10, t10 = np.arange(200) % 10, np.arange(50) % 10
    write_cifar10(root, images(y10), y10, images(t10), t10)
    y100, t100 = np.arange(300) % 100, np.arange(100)
    write_cifar100(root, images(y100), y100, images(t100), t100)
    return root


def write_specs(folder: Path, root: Path, child_extra: str = "") -> tuple[Path, Path]:
    """c10.yaml (the parent: lr 0.05 and 0.1 on CIFAR-10, a pick table) and sub.yaml (the
    child: fine-tuned and frozen on 5 CIFAR-100 classes, each from the picked parent)."""
    folder.mkdir(parents=True, exist_ok=True)
    data = f"download: false, root: '{root}', augment: []"
    (folder / "c10.yaml").write_text(
        textwrap.dedent(f"""\
        name: c10
        dataset: {{name: cifar10, val_size: 20, {data}}}
        model: {MODEL}
        train: {TRAIN}
        grid: {{lr: [0.05, 0.1]}}
        resources: {{cpu: 1}}
        max_failures: 0
        tables:
          - {{name: lrpick, rows: [arch], metric: test_error, best_by: val_acc, over: lr}}
        """)
    )
    (folder / "sub.yaml").write_text(
        textwrap.dedent(f"""\
        name: sub
        dataset: {{name: cifar100, classes: [people], val_size: 5, {data}}}
        model: {MODEL}
        train: {TRAIN}
        grid: {{body: [finetune, frozen]}}
        include: [{{body: finetune, lr: 1.0e-9}}]   # its body moves by ~1e-9: the loaded one
        resources: {{cpu: 1}}
        max_failures: 0
        stage: {{parent: c10.yaml, match: [arch], pick: lrpick{child_extra}}}
        """)
    )
    return folder / "c10.yaml", folder / "sub.yaml"


# -- without Ray ----------------------------------------------------------------------------
def test_stage_keys_are_checked_one_line_each(tmp_path, data_root):
    _, child = write_specs(tmp_path, data_root)
    text = child.read_text().replace(
        "stage: {parent: c10.yaml, match: [arch], pick: lrpick}",
        "stage: {parent: c11.yaml, match: [archh], pik: x}",
    )
    child.write_text(text)
    with pytest.raises(GridError) as e:
        load_spec(child)
    lines = str(e.value).splitlines()
    assert any("stage.parent: no spec file c11.yaml beside sub.yaml" in ln for ln in lines)
    assert any("stage.match: unknown key 'archh' (did you mean 'arch'?)" in ln for ln in lines)
    assert any("stage.pik: unknown key (did you mean 'pick'?)" in ln for ln in lines)
    assert all(ln.startswith(f"{child}: stage.") for ln in lines)


def test_parents_resolve_through_the_pick_once_every_candidate_finished(tmp_path, data_root):
    _, child = write_specs(tmp_path, data_root)
    spec = load_spec(child)
    store = open_store(str(tmp_path / "runs"))
    res = stages.resolve(spec, expand(spec), store)
    parents = expand(res.parent)
    assert {p.key for p in res.needed} == {p.key for p in parents} and not res.refs
    message = stages.missing_message(spec, res, "s3://b/r")
    assert f"grid launch {child} --store s3://b/r --with-parents" in message
    assert all(p.key in message for p in parents) and "\n" not in message


def test_an_ambiguous_parent_names_the_axes_to_match(tmp_path, data_root):
    _, child = write_specs(tmp_path, data_root)
    child.write_text(child.read_text().replace(", pick: lrpick", ""))
    spec = load_spec(child)
    with pytest.raises(GridError, match=r"2 cells of c10 fit cell .* differ in lr: add"):
        stages.resolve(spec, expand(spec), open_store(str(tmp_path / "runs")))


def test_status_and_a_dry_run_name_the_missing_parents(tmp_path, data_root, capsys):
    _, child = write_specs(tmp_path, data_root)
    runs = str(tmp_path / "runs")
    assert main(["status", str(child), "--store", runs]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "waiting for 2 parent cells of c10" in out and f"{child} --with-parents" in out
    assert main(["launch", str(child), "--store", runs, "--dry-run"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "have no finished result with kept weights" in out
    assert "would run 3 cells as 3 Tune trials (dry run: nothing started)" in out
    assert open_store(runs).statuses("c10") == {}
    assert main(["plan", str(child)]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "start from a cell of c10" in out and "the pick of its table lrpick" in out


def _commit(store, cell, val_acc: float, weights: bool = True) -> dict:
    """A finished row of `cell` as a trial writes it (with kept weights)."""
    from datetime import datetime, timezone

    from results.store.schema import epoch_rows, provenance, trial_row

    metrics = {"epoch": 1, "val_acc": val_acc, "test_acc": val_acc, "train_loss": 1.0}
    summary = {"status": "completed", "epochs": 1, "final": metrics, "best": metrics}
    now = datetime.now(timezone.utc)
    row = trial_row(cell, summary, provenance("0" * 64, now, now, "cpu"))
    row.update(stages.parent_columns(cell))  # as orchestrator/execution/trial.py writes it
    if weights:
        row["weights_id"] = stages.write_weights(store, cell, b"weights")
    store.write_trial(cell.grid, cell.key, row, epoch_rows(cell, [metrics]))
    store.forget()
    return {r["key"]: r for r in store.read_trials(cell.grid).to_pylist()}[cell.key]


def test_the_pick_is_the_tables_and_a_new_parent_run_makes_children_stale(tmp_path, data_root):
    _, child = write_specs(tmp_path, data_root)
    spec = load_spec(child)
    store = open_store(str(tmp_path / "runs"))
    cells = expand(spec)
    low, high = expand(stages.parent_spec(spec))  # lr 0.05, lr 0.1
    _commit(store, low, 0.5)
    assert [p.key for p in stages.resolve(spec, cells, store).needed] == [high.key]
    row = _commit(store, high, 0.5)  # a tie: the first lr, as `grid table` picks
    res = stages.resolve(spec, cells, store)
    assert {r["key"] for r in res.refs.values()} == {low.key}
    row = _commit(store, high, 0.75)  # better now: the pick moves to lr 0.1
    res = stages.resolve(spec, cells, store)
    assert {(r["key"], r["run_id"]) for r in res.refs.values()} == {(high.key, row["run_id"])}
    for c in stages.attach(cells, res.refs):  # the children trained from that parent run
        _commit(store, c, 0.5, weights=False)
    assert stages.stale_keys(spec, res.refs, store) == set()
    _commit(store, high, 0.8)  # the parent retrained (--force): a new run id
    res = stages.resolve(spec, cells, store)
    assert stages.stale_keys(spec, res.refs, store) == {c.key for c in cells}
    _commit(store, high, 0.8, weights=False)  # a run without kept weights: needed again
    assert [p.key for p in stages.resolve(spec, cells, store).needed] == [high.key]


@pytest.mark.parametrize(
    "change, expected",
    [
        (("classes: [people]", "classes: [peeple]"), "dataset.classes: unknown CIFAR-100 class"),
        (("name: cifar100,", "name: cifar10,"), "dataset.classes: class subsets are of cifar100"),
        (("stage: {", "x: {"), "train.body: finetune starts from a parent cell; add a stage:"),
        (("body: [finetune, frozen]", "body: [finetune, warm]"), "grid.body[1]: unknown body"),
    ],
)
def test_a_bad_stage_spec_exits_2_in_one_line(tmp_path, data_root, capsys, change, expected):
    _, child = write_specs(tmp_path, data_root)
    child.write_text(child.read_text().replace(*change).replace("x: {", "# x: {"))
    assert main(["plan", str(child)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"grid: error: {child}: ") and expected in err, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err


# -- with Ray and S3 ------------------------------------------------------------------------
def _rows(uri: str, grid: str) -> dict[str, dict]:
    return {r["key"]: r for r in open_store(uri).read_trials(grid).to_pylist()}


def _picked(parents: dict[str, dict]) -> dict:
    """The parent the table `lrpick` picks: the best final val_acc, ties to the first lr."""
    ranked = sorted(parents.values(), key=lambda r: (-r["final_val_acc"], r["train.lr"]))
    return ranked[0]


def _status(capsys, child: Path, uri: str) -> dict[str, str]:
    capsys.readouterr()
    assert main(["status", str(child), "--store", uri, "--json"]) == 0
    return {r["key"]: r["status"] for r in json.loads(capsys.readouterr().out)}


@pytest.mark.ray
def test_two_stages_on_s3(tmp_path, data_root, s3_uri, ray_cluster, capsys):
    parent_path, child = write_specs(tmp_path / "specs", data_root)
    run = ["--store", s3_uri, "--address", ray_cluster.address]
    spec = load_spec(child)
    children = {(c.params["train.body"], c.params["train.lr"]): c.key for c in expand(spec)}

    # 1. refused before any trial: the parents have no result
    assert main(["launch", str(child), *run]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert "2 parent cells of c10 have no finished result" in err and "--with-parents" in err
    assert _rows(s3_uri, "c10") == {} and _rows(s3_uri, "sub") == {}

    # 2. --with-parents: both stages in one command
    assert main(["launch", str(child), *run, "--with-parents"]) == 0, capsys.readouterr()
    parents = _rows(s3_uri, "c10")
    assert {r["status"] for r in parents.values()} == {"completed"} and len(parents) == 2
    assert all(r["weights_id"] for r in parents.values())
    picked = _picked(parents)
    found = _rows(s3_uri, "sub")
    assert set(found) == set(children.values())
    for r in found.values():
        assert r["status"] == "completed"
        assert (r["parent_grid"], r["parent_key"]) == ("c10", picked["key"])
        assert r["parent_run_id"] == picked["run_id"]

    # 3. the children started from the parent's weights: the frozen body is the parent's,
    # tensor for tensor, and so is the body fine-tuned at lr 1e-9 (to 1e-6); the head is
    # new, sized to the subset's 5 classes; at lr 0.05 fine-tuning moves the body
    store = open_store(s3_uri)
    load = lambda grid, r: torch.load(  # noqa: E731
        io.BytesIO(stored_weights.read(store, grid, r["key"], r["weights_id"])),
        weights_only=True,
    )
    theirs = load("c10", picked)
    frozen = load("sub", found[children["frozen", 0.05]])
    still = load("sub", found[children["finetune", 1e-9]])
    finetuned = load("sub", found[children["finetune", 0.05]])
    head = {n for n, t in frozen.items() if t.shape != theirs[n].shape}
    assert head and all(frozen[n].shape[0] == 5 for n in head)
    body = [n for n in frozen if n not in head]
    assert body and all(torch.equal(frozen[n], theirs[n]) for n in body)
    assert all(torch.allclose(still[n], theirs[n], atol=1e-6) for n in body)
    assert any(not torch.allclose(finetuned[n], theirs[n], atol=1e-6) for n in body)

    # 4. a relaunch skips everything
    epochs = open_store(s3_uri).read_epochs("sub").num_rows
    capsys.readouterr()
    assert main(["launch", str(child), *run, "--with-parents"]) == 0
    assert "all 3 cells are finished; nothing to run" in capsys.readouterr().out
    assert _rows(s3_uri, "c10") == parents and _rows(s3_uri, "sub") == found
    assert open_store(s3_uri).read_epochs("sub").num_rows == epochs

    # 5. the parent retrained (--force): its children are stale, and a launch retrains them
    assert main(["launch", str(parent_path), *run, "--force"]) == 0
    assert set(_status(capsys, child, s3_uri).values()) == {"stale"}
    assert main(["launch", str(child), *run]) == 0
    again = _rows(s3_uri, "c10")
    picked = _picked(again)
    assert {r["parent_run_id"] for r in _rows(s3_uri, "sub").values()} == {picked["run_id"]}
    assert set(_status(capsys, child, s3_uri).values()) == {"completed"}
    # the parents' older weights are gone: one object per cell
    kept = [n for n in store.list_objects("c10/weights") if n.endswith(".pt")]
    assert sorted(kept) == sorted(
        stored_weights.name("c10", r["key"], r["weights_id"]) for r in again.values()
    )
