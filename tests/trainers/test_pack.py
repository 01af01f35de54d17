"""The packed trainer: K cells in one fused model train as their unpacked runs do."""

from __future__ import annotations

import copy
import functools
import io
import math

import pytest
import torch

from trainers import data as data_mod
from trainers.config import DEFAULTS
from trainers.loop import train
from trainers.pack import can_pack, pack_key, train_packed

COMPARED = ("lr", "train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc")
_small_synthetic = functools.lru_cache(maxsize=None)(data_mod.synthetic)


@pytest.fixture(autouse=True)
def small_and_single_threaded(monkeypatch):
    # A smaller synthetic set (fast evaluation), generated once; copies, as callers may write.
    monkeypatch.setattr(
        data_mod,
        "synthetic",
        lambda *a, **k: tuple(
            v.copy() if hasattr(v, "copy") else v for v in _small_synthetic(256, 200)
        ),
    )
    # Tiny models: one thread is as fast, and immune to OpenMP spinning on a busy machine.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def cell(lr=0.05, seed=0, init="he_normal", wd=1e-3, schedule="cosine", bn=False, epochs=2):
    """A tiny cell. SiLU, not ReLU: at a ReLU kink a one-ulp difference between the grouped
    and the single conv flips a gradient entry, so ReLU runs agree only to ~1e-4."""
    c = copy.deepcopy(DEFAULTS)
    c["dataset"].update(name="synthetic", val_size=32, subset=64)
    c["model"].update(
        arch="allcnn_c",
        width=0.125,
        dropout=0.0,
        input_dropout=0.0,
        batch_norm=bn,
        init=init,
        activation="silu",
    )
    c["train"].update(epochs=epochs, batch_size=16, lr=lr, seed=seed, device="cpu")
    c["train"]["optimizer"]["weight_decay"] = wd
    c["train"]["schedule"].update(name=schedule, milestones=[1])
    return c


def assert_same_history(got: list[dict], want: list[dict]) -> None:
    assert [m["epoch"] for m in got] == [m["epoch"] for m in want]
    for g, w in zip(got, want, strict=True):
        assert set(g) == set(w)
        for key in COMPARED:
            if w[key] is None or math.isnan(w[key]):
                assert g[key] is None or math.isnan(g[key]), key
            else:
                assert g[key] == pytest.approx(w[key], rel=1e-4, abs=1e-5), (g["epoch"], key)


@pytest.mark.parametrize("bn", [False, True], ids=["plain", "batchnorm"])
def test_packed_cells_match_their_unpacked_runs_and_a_diverging_one_drops_out(bn):
    configs = [
        cell(0.05, 0, bn=bn),
        cell(0.02, 1, "orthogonal", 5e-4, "multistep", bn=bn),
        cell(1e6, 0, bn=bn),
    ]  # lr 1e6: NaN in the first epoch; seed 0: shares data
    unpacked = [train(c) for c in configs]
    reported: list[list[tuple[dict, dict]]] = [[], [], []]
    reports = [lambda m, s, i=i: reported[i].append((m, s)) for i in range(3)]
    packed = train_packed(configs, reports, mode="vmap")  # auto picks loop on a CPU

    assert [s["status"] for s in packed] == ["completed", "completed", "diverged"]
    assert [s["epochs"] for s in packed] == [2, 2, 1]
    for got, want in zip(packed, unpacked, strict=True):
        assert set(got) == set(want) and got["status"] == want["status"]
        assert got["params"] == want["params"]
        assert_same_history(got["history"], want["history"])
    # Reports: every epoch of every cell, then none for the diverged cell.
    assert [[m["epoch"] for m, _ in r] for r in reported] == [[1, 2], [1, 2], [1]]
    for r, _summary in zip(reported, packed, strict=True):
        metrics, state = r[-1]
        assert state["epoch"] == metrics["epoch"] and state["history"][-1] == metrics
        assert {"model", "optimizer", "scheduler", "rng"} <= set(state)
    if bn:  # each cell keeps its own running statistics
        means = [
            state["model"]["features.0.1.running_mean"]
            for (_, state) in (r[-1] for r in reported[:2])
        ]
        assert not torch.equal(means[0], means[1])


def _saved(state: dict) -> dict:
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=False)


def test_resume_per_cell_reproduces_the_uninterrupted_pack_and_the_loop_resumes_it():
    configs = [cell(0.05, 0, bn=True), cell(0.1, 1, "xavier_uniform", bn=True)]
    for c in configs:
        c["dataset"]["val_size"] = 0  # no validation set: val_* are None
    states: list[list[dict]] = [[], []]
    full = train_packed(
        configs, [lambda m, s, i=i: states[i].append(_saved(s)) for i in range(2)], mode="vmap"
    )
    # Cell 0 resumes after epoch 1; cell 1 starts over, trains epoch 1 alone, then both.
    resumed = train_packed(configs, resumes=[states[0][0], None], mode="vmap")
    assert full[0]["final"]["val_acc"] is None and full[0]["final"]["test_acc"] > 0
    for got, want in zip(resumed, full, strict=True):
        assert got["status"] == "completed" and got["epochs"] == 2
        assert_same_history(got["history"], want["history"])
    # A packed cell's checkpoint has the loop's shape: the loop resumes it too.
    alone = train(configs[1], resume=states[1][0])
    assert alone["epochs"] == 2
    assert_same_history(alone["history"], full[1]["history"])


def test_pack_key_groups_cells_that_differ_only_in_packable_fields():
    base = cell()
    same = [cell(lr=0.1), cell(seed=3), cell(init="lsuv"), cell(wd=0.0), cell(schedule="onecycle")]
    assert {pack_key(c) for c in same} == {pack_key(base)}
    assert can_pack([base] + same)
    others = []
    for section, key, value in [
        ("model", "width", 0.25),
        ("model", "arch", "nin"),
        ("model", "batch_norm", True),
        ("model", "dropout", 0.5),
        ("train", "batch_size", 32),
        ("train", "epochs", 3),
        ("train", "precision", "bf16"),
        ("dataset", "subset", 128),
    ]:
        c = cell()
        c[section][key] = value
        others.append(c)
    keys = {pack_key(c) for c in others}
    assert len(keys) == len(others) and pack_key(base) not in keys
    assert not can_pack([base, others[0]])
    compiled = cell()
    compiled["train"]["compile"] = True
    assert not can_pack([compiled]) and not can_pack([])
    with pytest.raises(ValueError, match="train them apart"):
        train_packed([base, others[0]])


def test_loop_mode_is_bit_for_bit_the_unpacked_runs_even_with_relu():
    configs = [cell(0.05, 0, bn=True), cell(0.02, 1, "orthogonal", bn=True)]
    for c in configs:
        c["model"]["activation"] = "relu"
        c["train"]["epochs"] = 1
    unpacked = [train(c) for c in configs]
    packed = train_packed(configs, mode="loop")
    for got, want in zip(packed, unpacked, strict=True):
        assert [{k: m[k] for k in COMPARED} for m in got["history"]] == [
            {k: m[k] for k in COMPARED} for m in want["history"]
        ]


def test_vmap_mode_runs_the_gpu_recipe_bf16_channels_last_on_cpu():
    configs = [cell(0.05, 0, bn=True), cell(0.02, 1, bn=True)]
    for c in configs:
        c["train"].update(epochs=1, precision="bf16", channels_last=True)
    unpacked = [train(c) for c in configs]
    packed = train_packed(configs, mode="vmap")
    for got, want in zip(packed, unpacked, strict=True):
        assert got["status"] == "completed"
        # bf16 rounding differs between grouped and plain convs: close, not equal.
        assert got["final"]["train_loss"] == pytest.approx(want["final"]["train_loss"], rel=1e-2)
        assert got["final"]["test_loss"] == pytest.approx(want["final"]["test_loss"], rel=1e-2)
