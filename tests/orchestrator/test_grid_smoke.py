"""Every shipped grid runs `--smoke` to a table on CIFAR files the test writes in the real
on-disk layout.

The cheap check covers every grid: the last cell of its --smoke variant (the includes, where
the special cases sit, come last), on 128 images, trains in this process as `grid train`
does; its row goes to a real local Parquet store, and `grid table --smoke` renders every
table of the grid from it. One grid goes through the real thing, `grid launch --smoke`
under Ray, to its table: Ray per grid would cost minutes each on a 2-core machine, and the
Ray path is the same for every grid (the trainer sees only a config).
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest

from orchestrator.cli.main import main
from orchestrator.execution import launch
from orchestrator.spec.expand import expand
from orchestrator.spec.load import load_spec, smoke
from results.store import open_store
from results.store.schema import epoch_rows, provenance, trial_row
from tests.trainers.conftest import one_thread, write_fake_cifar10  # noqa: F401 (a fixture)
from trainers import config
from trainers.cifar_files import write_cifar100
from trainers.loop import drive, epochs
from trainers.setup import setup

GRIDS = sorted((Path(__file__).parents[2] / "grids").glob("*.yaml"))
# --smoke trains 512 images and validates on 128: the written set must hold both.
N_TRAIN, N_TEST = 700, 100


@pytest.fixture(scope="module")
def cifar_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cifar")
    data = write_fake_cifar10(root, n_train=N_TRAIN, n_test=N_TEST)
    # CIFAR-100 for the stages' subsets: 30 training images a class (a 10-class subset holds
    # --smoke's 128 validation and 128 training images), the CIFAR-10 images reused
    n = 3000
    images = lambda k: np.resize(data["train_x"], (k, 3, 32, 32))  # noqa: E731
    write_cifar100(root, images(n), np.arange(n) % 100, images(N_TEST * 10), np.arange(1000) % 100)
    return root


def _overrides(root: Path) -> list[str]:
    return [f"dataset.root={root}", "dataset.download=false", "train.device=cpu"]


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("path", GRIDS, ids=lambda p: p.stem)
def test_every_grid_s_smoke_cell_trains_to_its_table(path, cifar_root, tmp_path, capsys):
    # 128 training images instead of --smoke's 512 (its cap keeps the smaller): the 50-layer
    # toy and ResNet-18 cells then take seconds, not a minute, on a shared 2-core machine.
    sets = [*_overrides(cifar_root), "dataset.subset=128"]
    spec = load_spec(path, sets)
    cells = expand(smoke(spec))
    cell = cells[-1]
    weights = _parent_weights(spec, cell, sets) if spec.stage else None
    summary = drive(epochs(cell.config, weights=weights), lambda epoch: None)
    assert summary["status"] in ("completed", "diverged") and summary["epochs"] == 1
    runs = str(tmp_path / "runs")
    args = ["table", str(path), "--smoke", "--store", runs, "--format", "markdown"]
    args += [f"--set={o}" for o in sets]

    def table() -> str:
        capsys.readouterr()
        assert main(args) == 0
        return capsys.readouterr().out

    empty = table()
    now = datetime.now(timezone.utc)
    row = trial_row(cell, summary, provenance("0" * 64, now, now, "cpu"))
    open_store(runs).write_trial(cell.grid, cell.key, row, epoch_rows(cell, summary["history"]))
    out = table()
    # every table of the grid is rendered, and the trained cell changed them
    assert out.count("### ") == len(spec.tables) and out.count("|") > 10 and out != empty
    missing = f"{len(cells)} of {len(cells)} cells have failed, missing or unfinished"
    assert missing not in out


def _parent_weights(spec, cell, sets: list[str]) -> dict:
    """A stage's cell starts from its parent cell's weights: here the parent's model as
    its --smoke cell builds it (its body must fit the child's; training it adds nothing)."""
    parent = smoke(load_spec(Path(spec.path).parent / spec.stage["parent"], sets))
    match = spec.stage["match"]
    pcell = next(
        p
        for p in expand(parent)
        if all(config.get_path(p.config, m) == config.get_path(cell.config, m) for m in match)
    )
    return setup(pcell.config).model.state_dict()


@pytest.mark.ray
def test_one_grid_launches_smoke_under_ray_to_its_table(cifar_root, tmp_path, ray_cluster, capsys):
    # allcnn_preproc: four inputs, one of which (raw 0-255) may blow up: a diverged cell is a
    # result, so the launch exits 0 and the table shows it.
    path = Path(__file__).parents[2] / "grids" / "allcnn_preproc.yaml"
    spec = smoke(load_spec(path, _overrides(cifar_root)), cpus=1)
    runs = str(tmp_path / "runs")
    assert launch.launch(spec, store_uri=runs, address=ray_cluster.address) == 0
    statuses = open_store(runs).statuses(spec.name)
    assert len(statuses) == 4 and set(statuses.values()) <= {"completed", "diverged"}
    capsys.readouterr()
    args = ["table", str(path), "--smoke", "--store", runs, "--format", "markdown", "--strict"]
    assert main([*args, *(f"--set={o}" for o in _overrides(cifar_root))]) == 0
    out = capsys.readouterr().out
    for prep in ("raw", "none", "center", "gcn_zca"):
        assert prep in out


@pytest.mark.ray
def test_a_stage_grid_launches_smoke_with_its_parents_under_ray(
    cifar_root, tmp_path, ray_cluster, capsys
):
    # allcnn_transfer_vehicles: its parent (allcnn_variants' allcnn_c, --smoke) first, then
    # its three cells (from scratch, fine-tuned, frozen) on the CIFAR-100 vehicles, one command
    path = Path(__file__).parents[2] / "grids" / "allcnn_transfer_vehicles.yaml"
    runs = str(tmp_path / "runs")
    sets = [f"--set={o}" for o in _overrides(cifar_root)]
    args = ["launch", str(path), "--smoke", "--store", runs, "--address", ray_cluster.address]
    assert main([*args, *sets, "--with-parents", "--yes"]) == 0, capsys.readouterr()
    store = open_store(runs)
    assert set(store.statuses("allcnn_variants-smoke").values()) == {"completed"}
    assert set(store.statuses("allcnn_transfer_vehicles-smoke").values()) == {"completed"}
    capsys.readouterr()
    table = ["table", str(path), "--smoke", "--store", runs, "--format", "markdown", "--strict"]
    assert main([*table, *sets]) == 0
    out = capsys.readouterr().out
    assert all(body in out for body in ("scratch", "finetune", "frozen"))
