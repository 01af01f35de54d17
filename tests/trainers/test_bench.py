"""The benchmark harness and the CIFAR-10 file writer it runs the naive baseline on."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch

from trainers import bench
from trainers.cifar_files import write_cifar10


def test_write_cifar10_is_read_back_by_torchvision_and_by_bytes_pickle(tmp_path):
    rng = np.random.default_rng(0)
    train_x = rng.integers(0, 256, (23, 3, 32, 32), dtype=np.uint8)
    train_y = rng.integers(0, 10, 23)
    test_x = rng.integers(0, 256, (7, 3, 32, 32), dtype=np.uint8)
    test_y = rng.integers(0, 10, 7)
    folder = write_cifar10(tmp_path, train_x, train_y, test_x, test_y)

    names = sorted(p.name for p in (tmp_path / "cifar-10-batches-py").iterdir())
    assert names == [
        "batches.meta",
        "data_batch_1",
        "data_batch_2",
        "data_batch_3",
        "data_batch_4",
        "data_batch_5",
        "test_batch",
    ]
    # The real files' keys: b"data" read as bytes (Python 2 pickles), "data" as latin1.
    with open(f"{folder}/data_batch_1", "rb") as f:
        batch = pickle.load(f, encoding="bytes")
    assert set(batch) == {b"data", b"labels", b"batch_label", b"filenames"}
    assert batch[b"data"].dtype == np.uint8 and batch[b"data"].shape[1] == 3072
    # R plane first, row-major: pixel (row 0, col 1) of the red channel is column 1.
    assert batch[b"data"][0, 1] == train_x[0, 0, 0, 1]
    assert batch[b"data"][0, 1024] == train_x[0, 1, 0, 0]

    cifar = bench._seed_cifar10()  # torchvision's own reader, md5s of the real set skipped
    train, test = cifar(str(tmp_path), train=True), cifar(str(tmp_path), train=False)
    assert np.array_equal(train.data.transpose(0, 3, 1, 2), train_x)
    assert train.targets == train_y.tolist() and test.targets == test_y.tolist()
    assert np.array_equal(test.data.transpose(0, 3, 1, 2), test_x)
    assert train.classes[0] == "airplane" and len(train.classes) == 10


def test_write_cifar10_rejects_images_of_the_wrong_shape(tmp_path):
    with pytest.raises(ValueError, match="uint8 N x 3 x 32 x 32"):
        write_cifar10(
            tmp_path,
            np.zeros((2, 32, 32, 3), np.uint8),
            [0, 1],
            np.zeros((1, 3, 32, 32), np.uint8),
            [0],
        )


def test_defaults_on_cpu_are_small_and_bad_widths_are_refused():
    args = bench.parse_args(["--device", "cpu"])
    assert (args.widths, args.batch, args.pack) == ([1.0, 0.25], 128, 4)
    assert (args.steps, args.warmup, args.naive_workers) == (2, 1, 0)
    with pytest.raises(SystemExit):
        bench.parse_args(["--width", "wide"])


def test_compile_gives_ours_the_captured_step_and_the_naive_side_none(tmp_path):
    args = bench.parse_args(["--quick", "--device", "cpu", "--compile"])
    bench.write_files(str(tmp_path), args)
    cfg = bench.config_for(str(tmp_path), args, 0.125, compile=args.compile)
    assert args.compile and cfg["train"]["compile"] is True
    assert bench.Ours(cfg, torch.device("cpu")).step.mode == "compiled"  # compiles at first call
    plain = bench.config_for(str(tmp_path), bench.parse_args(["--quick"]), 0.125)
    assert plain["train"]["compile"] is False
    assert bench.Ours(plain, torch.device("cpu")).step.mode == "eager"


def test_quick_json_has_every_field_with_positive_rates(capsys):
    threads = torch.get_num_threads()
    try:
        assert bench.main(["--quick", "--json", "--device", "cpu", "--threads", "1"]) == 0
    finally:
        torch.set_num_threads(threads)
    out = json.loads(capsys.readouterr().out)
    (run,) = out["runs"]
    assert {
        "device",
        "arch",
        "width",
        "batch",
        "ours_images_per_s",
        "naive_images_per_s",
        "ratio",
    } <= set(run)
    assert run["device"] == "cpu" and run["arch"] == "allcnn_c" and run["batch"] == 16
    for key in ("ours_images_per_s", "naive_images_per_s", "ratio", "ours_epoch_s"):
        assert run[key] > 0, key
    pack = out["pack"]
    assert {"k", "width", "packed_images_per_s", "sequential_images_per_s", "ratio"} <= set(pack)
    assert pack["k"] == 2 and pack["width"] == 0.125
    for key in ("packed_images_per_s", "sequential_images_per_s", "ratio"):
        assert pack[key] > 0, key
    assert run["ratio"] == pytest.approx(run["ours_images_per_s"] / run["naive_images_per_s"])
