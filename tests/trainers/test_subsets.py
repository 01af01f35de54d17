"""CIFAR-100 class subsets (`dataset.classes`): the real on-disk layout written here, read by
the loader (torchvision's CIFAR100 class), the images of the chosen classes only, their labels
renumbered 0..k-1 and the head sized to k."""

from __future__ import annotations

import numpy as np
import pytest

from trainers import config, subsets
from trainers.cifar_files import write_cifar100
from trainers.data import cifar_class, load_data
from trainers.errors import GridError
from trainers.setup import setup


@pytest.fixture(scope="module")
def cifar100(tmp_path_factory):
    """(root, fine labels of train, of test): 2 train and 1 test image per class."""
    root = tmp_path_factory.mktemp("c100")
    rng = np.random.default_rng(0)
    train_y, test_y = np.arange(200) % 100, np.arange(100)
    # each image's first pixel is its fine label: the test reads which image it got
    train_x = rng.integers(0, 255, (200, 3, 32, 32), dtype=np.uint8)
    test_x = rng.integers(0, 255, (100, 3, 32, 32), dtype=np.uint8)
    train_x[:, 0, 0, 0], test_x[:, 0, 0, 0] = train_y, test_y
    write_cifar100(root, train_x, train_y, test_x, test_y)
    return root


def _data(root, classes):
    cfg = config.default_config()["dataset"]
    cfg.update(name="cifar100", root=str(root), download=False, val_size=0, classes=classes)
    return load_data(cfg, "cpu", 0)


def test_the_written_layout_is_cifar100s(cifar100):
    ds = cifar_class("cifar100")[0](str(cifar100), train=True)
    assert len(ds.data) == 200 and sorted(set(ds.targets)) == list(range(100))
    assert subsets.read_fine_names(cifar100 / "cifar-100-python" / "meta") == list(subsets.FINE)


@pytest.mark.parametrize(
    "classes, names",
    [
        (
            "vehicles",
            sorted(subsets.SUPERCLASSES["vehicles_1"] + subsets.SUPERCLASSES["vehicles_2"]),
        ),
        (["people"], ["baby", "boy", "girl", "man", "woman"]),
        (["apple", 3, "wolf"], ["apple", "bear", "wolf"]),
    ],
)
def test_a_subset_keeps_its_classes_renumbered(cifar100, classes, names):
    data = _data(cifar100, classes)
    assert data.num_classes == len(names)
    old = [subsets.FINE.index(n) for n in names]
    for x, y, per in ((data.train_x, data.train_y, 2), (data.test_x, data.test_y, 1)):
        assert len(y) == per * len(names)
        # the image's own fine label (its first pixel) maps to its new label
        assert [old[int(v)] for v in y] == x[:, 0, 0, 0].tolist()


def test_the_head_is_sized_to_the_subset(cifar100, small_config):
    cfg = small_config
    cfg["dataset"].update(name="cifar100", root=str(cifar100), subset=None, classes=["people"])
    run = setup(cfg)
    assert run.model(run.data.preprocess(run.data.train_x[:2])).shape == (2, 5)


def test_bad_classes_are_one_line_errors():
    check = config.CHECKS["dataset.classes"]
    assert "did you mean 'fish'" in check(["fsh"])[0]
    assert "named subsets: vehicles" in check("vehicle")[0]
    assert check(["apple"])[0].startswith("a subset needs at least 2 classes")
    assert check([])[0] and check(None) == (None, None)
    assert check(["b" + "ear", 0]) == (None, ["apple", "bear"])


def test_classes_of_another_data_set_are_refused(cifar100):
    cfg = config.default_config()["dataset"]
    cfg.update(name="synthetic", classes="vehicles", val_size=0)
    with pytest.raises(GridError, match="dataset.classes: subsets are of cifar100"):
        load_data(cfg, "cpu", 0)
