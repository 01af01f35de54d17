"""What keeping the images on the device as uint8 costs (`dataset.on_device`), per training
step, against the step itself: the decision behind `dataset.on_device: auto`.

uint8 preprocesses each augmentation chunk (and each evaluated batch) instead of the whole
set once at load. The data path alone (`trainers.data.train_batches` over one epoch, no
model) is timed with the images stored uint8 and float32, alternating, and the difference
per step is set against a real training step of the model (the loop's `train_epoch`, a few
steps), per preprocessing: the overhead in % of step time.

    python benchmarks/uint8_cost.py --arch allcnn_c --width 1.0 --batch 128 --threads 1
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time

import torch
from torch import nn

from trainers import runtime
from trainers.config import DEFAULTS
from trainers.data import load_data, train_batches
from trainers.loop import train_epoch
from trainers.setup import setup
from trainers.step import make_step
from trainers.timing import head

PREPROCESS = ("standardize", "stretch", "gcn_zca")


def config(args, preprocess: str, on_device: str) -> dict:
    cfg = copy.deepcopy(DEFAULTS)
    cfg["dataset"].update(
        name="synthetic", val_size=0, preprocess=preprocess, on_device=on_device, root=args.root
    )
    cfg["model"].update(arch=args.arch, width=args.width)
    cfg["train"].update(batch_size=args.batch, device=args.device)
    return cfg


def data_seconds(cfgs: list[dict], device, repeats: int) -> tuple[list[float], int]:
    """Median seconds of one epoch of the data path (augmented batches, no model) of each
    config, the configs alternating (the order flipped each round): a busy machine slows
    them alike."""
    datas = [load_data(c["dataset"], device, 0) for c in cfgs]
    batch = cfgs[0]["train"]["batch_size"]
    times: list[list[float]] = [[] for _ in cfgs]
    for r in range(repeats):
        order = list(range(len(cfgs)))[:: 1 if r % 2 == 0 else -1]
        for i in order:
            gen = torch.Generator(device=device).manual_seed(r)
            runtime.sync(device)
            t0 = time.perf_counter()
            for x, _y in train_batches(datas[i], batch, gen):
                x.sum()  # touch the batch, as a step would
            runtime.sync(device)
            times[i].append(time.perf_counter() - t0)
    return [statistics.median(t) for t in times], len(datas[0].train_y) // batch


def step_seconds(cfg: dict, device, steps: int) -> float:
    run = setup(cfg, device=device)
    step = make_step(run.model, run.optimizer, run.scheduler, nn.CrossEntropyLoss(), **run.fmt)
    batch = cfg["train"]["batch_size"]
    run.model.train()
    train_epoch(step, head(run, batch).data, run.gen, batch)  # warm-up
    runtime.sync(device)
    t0 = time.perf_counter()
    train_epoch(step, head(run, steps * batch).data, run.gen, batch)
    runtime.sync(device)
    return (time.perf_counter() - t0) / steps


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", default="allcnn_c")
    p.add_argument("--width", type=float, default=1.0)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1, help="a trial's CPUs (resources.cpu)")
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--root", default=None, help="where gcn_zca caches its matrix")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = runtime.resolve_device(args.device, "--device")
    step_s = step_seconds(config(args, "standardize", "uint8"), device, args.steps)
    rows = []
    for prep in PREPROCESS:
        cfgs = [config(args, prep, on) for on in ("float32", "uint8")]
        (f32, u8), steps = data_seconds(cfgs, device, args.repeats)
        extra = (u8 - f32) / steps
        rows.append(
            {
                "preprocess": prep,
                "float32_epoch_data_s": f32,
                "uint8_epoch_data_s": u8,
                "extra_per_step_ms": extra * 1000,
                "step_ms": step_s * 1000,
                "overhead_pct": 100 * extra / step_s,
            }
        )
        print(
            f"{prep:12s} data path per epoch: float32 {f32:.2f}s, uint8 {u8:.2f}s; "
            f"+{extra * 1000:.2f} ms/step on a {step_s * 1000:.0f} ms step "
            f"({args.arch} x{args.width:g}, batch {args.batch}, {args.threads} thread(s), "
            f"{runtime.device_name(device)}): {100 * extra / step_s:+.2f} %"
        )
    print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
