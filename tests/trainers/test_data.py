"""The data pipeline: CIFAR files through torchvision's classes, the split, the synthetic
set and the fitted preprocessing (the augmentation: test_augment.py)."""

from __future__ import annotations

import shutil
import urllib.error

import numpy as np
import pytest
import torch

from trainers import preprocess
from trainers.data import load_data, split_indices, synthetic
from trainers.errors import GridError
from trainers.preprocess import GCN_SCALE, ZCA_BIAS, fit_preprocess, gcn, stretch, zca_fit


def cifar_cfg(root, **kw) -> dict:
    cfg = {
        "name": "cifar10",
        "root": str(root),
        "download": False,
        "augment": ["crop", "flip"],
        "crop_padding": 4,
        "cutout_size": 8,
        "preprocess": "standardize",
        "val_size": 0,
        "subset": None,
    }
    return {**cfg, **kw}


# ---------------------------------------------------------------- CIFAR files


@pytest.mark.parametrize("keys", ["bytes", "str"])
def test_cifar_folder_loads_as_written(tmp_path, write_cifar, keys):
    # Re-pickled (b'data') and official-style ('data') files both load, md5s notwithstanding.
    written = write_cifar(tmp_path, keys=keys)
    data = load_data(cifar_cfg(tmp_path), "cpu", seed=0)
    # Stored as read (uint8, dataset.on_device: auto with standardize).
    assert data.train_x.dtype == torch.uint8 and data.train_x.shape == (200, 3, 32, 32)
    assert data.test_x.shape == (50, 3, 32, 32) and data.num_classes == 10
    assert data.val_x.shape[0] == 0 and data.train_y.dtype == torch.int64
    # R, G, B planes row-major: the written images come back pixel for pixel, in order.
    raw = torch.from_numpy(written["train_x"])
    assert torch.equal(data.train_x, raw)
    # float32: preprocessed once, the fitted standardisation of what was written.
    f32 = load_data(cifar_cfg(tmp_path, on_device="float32"), "cpu", seed=0)
    assert f32.train_x.dtype == torch.float32
    assert torch.equal(f32.train_x, data.prep(raw))
    assert torch.equal(f32.preprocess(f32.train_x), f32.train_x)  # not applied twice
    assert torch.equal(data.preprocess(data.train_x), f32.train_x)
    assert np.array_equal(data.test_y.numpy(), written["test_y"])


def test_existing_folder_is_never_downloaded_again(fake_cifar10, monkeypatch):
    import torchvision.datasets.cifar as tv_cifar

    def no_network(*a, **k):
        raise AssertionError("tried to download although the files are there")

    monkeypatch.setattr(tv_cifar, "download_and_extract_archive", no_network)
    data = load_data(cifar_cfg(fake_cifar10[0], download=True), "cpu", seed=0)
    assert data.train_x.shape[0] == 200


def test_missing_data_without_download_names_the_root(tmp_path):
    with pytest.raises(GridError) as e:
        load_data(cifar_cfg(tmp_path / "nowhere"), "cpu", seed=0)
    msg = str(e.value)
    assert "\n" not in msg and "nowhere" in msg and "GRID_DATA" in msg


def test_failed_download_is_a_grid_error(tmp_path, monkeypatch):
    import torchvision.datasets.cifar as tv_cifar

    def offline(*a, **k):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(tv_cifar, "download_and_extract_archive", offline)
    with pytest.raises(GridError) as e:
        load_data(cifar_cfg(tmp_path, download=True), "cpu", seed=0)
    assert "download failed" in str(e.value) and str(tmp_path) in str(e.value)


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_corrupt_file_names_the_file(fake_cifar10, tmp_path, damage):
    shutil.copytree(fake_cifar10[0] / "cifar-10-batches-py", tmp_path / "cifar-10-batches-py")
    bad = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    raw = bad.read_bytes()
    bad.write_bytes(raw[: len(raw) // 2] if damage == "truncate" else b"\x00garbage" * 99)
    with pytest.raises(GridError, match="data_batch_3"):
        load_data(cifar_cfg(tmp_path), "cpu", seed=0)


# ---------------------------------------------------------------- split and synthetic


def test_val_split_is_deterministic_disjoint_and_seeded():
    train, val = split_indices(200, 30, None, seed=1)
    again_train, again_val = split_indices(200, 30, None, seed=1)
    assert torch.equal(train, again_train) and torch.equal(val, again_val)
    assert len(val) == 30 and len(train) == 170
    assert set(train.tolist()).isdisjoint(val.tolist())
    assert set(train.tolist()) | set(val.tolist()) == set(range(200))
    assert not torch.equal(val, split_indices(200, 30, None, seed=2)[1])
    sub, sub_val = split_indices(200, 30, 50, seed=1)
    assert torch.equal(sub_val, val) and len(sub) == 50 and set(sub.tolist()) <= set(train.tolist())


def test_val_split_through_load_data(fake_cifar10):
    data = load_data(cifar_cfg(fake_cifar10[0], val_size=40), "cpu", seed=3)
    assert data.val_x.shape == (40, 3, 32, 32) and data.train_x.shape[0] == 160
    rows = {x.numpy().tobytes() for x in data.train_x}
    assert not any(x.numpy().tobytes() in rows for x in data.val_x)  # disjoint images


def test_val_size_larger_than_the_data_is_a_grid_error(fake_cifar10):
    with pytest.raises(GridError, match="dataset.val_size"):
        load_data(cifar_cfg(fake_cifar10[0], val_size=200), "cpu", seed=0)


def test_synthetic_is_deterministic_and_balanced():
    a, b = synthetic(), synthetic()
    assert all(np.array_equal(u, v) for u, v in zip(a[:4], b[:4], strict=True))
    train_x, train_y, test_x, test_y, num_classes = a
    assert train_x.shape == (5000, 3, 32, 32) and test_x.shape == (1000, 3, 32, 32)
    assert train_x.dtype == np.uint8 and num_classes == 10
    counts = np.bincount(train_y, minlength=10)
    assert counts.min() > 400 and train_x.std() > 10  # every class present, not a flat image


# ---------------------------------------------------------------- preprocessing


def _images(n: int = 64, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    smooth = torch.rand(n, 3, 4, 4, generator=g).repeat_interleave(8, 2).repeat_interleave(8, 3)
    noise = torch.rand(n, 3, 32, 32, generator=g)
    return (200 * smooth + 55 * noise).to(torch.uint8)


def test_standardize_gives_zero_mean_unit_std_per_channel():
    x = _images()
    out = fit_preprocess("standardize", x)(x)
    assert out.dtype == torch.float32 and out.shape == x.shape
    assert torch.allclose(out.mean((0, 2, 3)), torch.zeros(3), atol=1e-4)
    assert torch.allclose(out.std((0, 2, 3), unbiased=False), torch.ones(3), atol=1e-3)


def test_gcn_rows_have_zero_mean_and_norm_55():
    out = gcn(_images().float() / 255)
    assert torch.allclose(out.mean(1), torch.zeros(len(out)), atol=1e-4)
    assert torch.allclose(out.norm(dim=1), torch.full((len(out),), GCN_SCALE), rtol=1e-4)


def test_zca_whitens_training_data(tmp_path, monkeypatch):
    x = _images(200)
    prep = fit_preprocess("gcn_zca", x, cache_dir=tmp_path)
    out = prep(x).reshape(len(x), -1).double()
    assert torch.isfinite(out).all()
    assert out.mean(0).abs().max() < 1e-3
    # Whitened covariance: eigenvalues l / (l + bias) in [0, 1); the strongest ones near 1.
    centred = out - out.mean(0)
    eig = torch.linalg.eigvalsh(centred @ centred.T / len(x))  # the covariance's nonzero ones
    assert eig.min() > -1e-4 and eig.max() < 1.0 and eig.max() > 0.9
    # Cached next to the data under a hash of the images: a fresh process reads it back.
    assert len(list((tmp_path / "grid-cache").glob("zca-*.pt"))) == 1
    monkeypatch.setattr(preprocess, "_ZCA_MEMO", {})
    monkeypatch.setattr(preprocess, "zca_fit", lambda *a, **k: pytest.fail("refitted"))
    again = fit_preprocess("gcn_zca", x, cache_dir=tmp_path)
    assert torch.equal(again.zca, prep.zca)


@pytest.mark.parametrize("rows", [20, 100])
def test_zca_matches_pylearn2s_formula(rows):
    # pylearn2: V diag(1/sqrt(l + bias)) V^T over the covariance's eigenpairs. Fewer rows
    # than dimensions (20 < 48) takes the Gram-matrix route, which must give the same W.
    x = torch.randn(rows, 48, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    mean, w = zca_fit(x.float())
    c = x - x.mean(0)
    lam, vec = torch.linalg.eigh(c.T @ c / len(x))
    expected = vec @ torch.diag((lam.clamp_min(0) + ZCA_BIAS).rsqrt()) @ vec.T
    assert torch.allclose(w.double(), expected, atol=1e-4)
    assert torch.allclose(mean.double(), x.mean(0), atol=1e-5)


def test_stretch_maps_2nd_and_98th_percentiles_to_0_and_1():
    x = _images(8).float() / 255
    out = stretch(x)
    assert torch.isfinite(out).all() and out.min() >= 0 and out.max() <= 1
    flat = x.reshape(8, 3, -1).numpy()
    lo, hi = np.percentile(flat, 2, axis=2), np.percentile(flat, 98, axis=2)
    expect = np.clip((flat - lo[..., None]) / (hi - lo)[..., None], 0, 1)
    assert np.allclose(out.reshape(8, 3, -1).numpy(), expect, atol=1e-5)
    frac_low = (out.reshape(8, 3, -1) <= 0).float().mean(2)
    assert (frac_low > 0.01).all() and (frac_low < 0.05).all()  # ~2% clipped at the bottom


DOWNLOADER = """
import sys
import numpy as np
import torchvision.datasets.cifar as tv_cifar
from trainers import cifar_files
from trainers.data import check_data

root, log = sys.argv[1:3]

def fake_download(url, download_root, **kw):  # the network, as torchvision calls it
    with open(log, "a") as f:
        f.write("download\\n")
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (50, 3, 32, 32), dtype=np.uint8)
    y = rng.integers(0, 10, 50)
    cifar_files.write_cifar10(download_root, x, y, x[:10], y[:10])

tv_cifar.download_and_extract_archive = fake_download
print("ready", flush=True)
sys.stdin.read()  # start together: both wait here until the test closes their stdin
print(check_data({"name": "cifar10", "root": root, "download": True}))
"""


def test_two_trials_on_a_fresh_node_download_once(tmp_path):
    """Two processes need the data set at once: one downloads under the node's file lock,
    the other waits and finds it there."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    log = tmp_path / "downloads.log"
    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(repo)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", DOWNLOADER, str(tmp_path / "data"), str(log)],
            env=env,
            cwd=repo,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    assert [p.stdout.readline() for p in procs] == ["ready\n", "ready\n"]
    for p in procs:  # both are ready: release them together
        p.stdin.close()
    outs = [p.stdout.read() for p in procs]
    for p in procs:
        p.wait()
    assert [p.returncode for p in procs] == [0, 0]
    assert log.read_text() == "download\n"
    assert all(f"cifar10 in {tmp_path / 'data'}" in out for out in outs)
