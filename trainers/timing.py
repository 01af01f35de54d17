"""A few real steps of a unit (one cell, or K cells packed), timed on this machine's device:
what `grid plan --estimate` scales up to a whole grid.

The unit is built as a launch builds it (`trainers.setup.setup`, the loop's step or the
packed trainer's), on synthetic images of the same shape as its data set: a step's time does
not depend on what the pixels show, and the estimate needs no download.
"""

from __future__ import annotations

import copy
import dataclasses
import time

import torch
from torch import nn

from trainers import runtime
from trainers.data import SYNTHETIC_TEST, SYNTHETIC_TRAIN
from trainers.loop import evaluate, train_epoch
from trainers.pack import pack_mode, train_packed_epoch
from trainers.setup import setup
from trainers.step import make_step

CIFAR_TRAIN, CIFAR_TEST = 50_000, 10_000


def sizes(dataset_cfg: dict) -> tuple[int, int]:
    """(training images, evaluated images: val + test) of a dataset section."""
    synthetic = dataset_cfg["name"] == "synthetic"
    total, test = (SYNTHETIC_TRAIN, SYNTHETIC_TEST) if synthetic else (CIFAR_TRAIN, CIFAR_TEST)
    val = dataset_cfg.get("val_size", 0)
    train = total - val
    if dataset_cfg.get("subset") is not None:
        train = min(train, dataset_cfg["subset"])
    return train, val + test


def _stand_in(config: dict, images: int, device: torch.device) -> dict:
    cfg = copy.deepcopy(config)
    cfg["dataset"].update(name="synthetic", val_size=0, subset=images, root=None, classes=None)
    cfg["train"]["device"] = str(device)
    # A stage's cell is timed from its own init: no parent's weights here, and a frozen
    # body's steps are timed as fine-tuned ones (an upper bound)
    cfg["train"]["body"] = "scratch"
    return cfg


def head(run, images: int):
    """`run` (a `trainers.setup.Run`) training on only its first `images` training images:
    one epoch is then a fixed number of steps."""
    data = dataclasses.replace(
        run.data, train_x=run.data.train_x[:images], train_y=run.data.train_y[:images]
    )
    return dataclasses.replace(run, data=data)


def time_unit(
    configs: list[dict], device: torch.device, steps: int = 3, warmup: int = 1
) -> dict[str, float]:
    """Seconds of one training step of the unit `configs` (all K cells), of one evaluated
    image per cell, and of building it (`setup_s`), from `steps` timed steps after
    `warmup` untimed ones (which also pay for cuDNN autotuning and compilation)."""
    batch = configs[0]["train"]["batch_size"]
    images = min(batch * (steps + warmup), SYNTHETIC_TRAIN)
    t0 = time.perf_counter()
    runs = [setup(_stand_in(c, images, device), device=device) for c in configs]
    setup_s = time.perf_counter() - t0
    loss_fn = nn.CrossEntropyLoss()
    fmt = runs[0].fmt
    if len(runs) == 1:
        r = runs[0]
        step = make_step(
            r.model,
            r.optimizer,
            r.scheduler,
            loss_fn,
            device=device,
            captured=bool(r.config["train"]["compile"]),
            **fmt,
        )
        one = lambda n: train_epoch(step, head(r, n * batch).data, r.gen, batch)  # noqa: E731
    else:
        from trainers.fused import Fused

        fused = (
            Fused([r.model for r in runs], fmt["memory_format"])
            if pack_mode("auto", device) == "vmap"
            else None
        )

        def one(n):
            return train_packed_epoch(
                [head(r, n * batch) for r in runs], loss_fn, batch, fused=fused, **fmt
            )

    one(warmup)
    runtime.sync(device)
    t1 = time.perf_counter()
    one(steps)
    runtime.sync(device)
    step_s = (time.perf_counter() - t1) / steps
    r = runs[0]
    test = r.data.test_x[: min(len(r.data.test_x), 1000)]
    evaluate(r.model, test, r.data.test_y[: len(test)], r.data.preprocess, **fmt)  # warm-up
    runtime.sync(device)
    t2 = time.perf_counter()
    evaluate(r.model, test, r.data.test_y[: len(test)], r.data.preprocess, **fmt)
    runtime.sync(device)
    eval_s = (time.perf_counter() - t2) / len(test)
    return {
        "step_s": step_s,
        "eval_image_s": eval_s,
        "setup_s": setup_s,
        "device": runtime.device_name(device),
    }
