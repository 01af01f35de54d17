"""`grid bench`: training images/s of our trainer against a naive seed-style pipeline, and
of K cells packed into one fused model against the same K cells one after another.

- ours: the data on the device as uint8, batched on-device augmentation, our optimizer, the
  loop's own `train_epoch` (bf16 autocast + channels_last on CUDA);
- naive (`trainers.naive`): what the seeds ran: torchvision's CIFAR10 reading the same
  files, PIL transforms (RandomCrop(32, padding=4), RandomHorizontalFlip, ToTensor,
  Normalize), a DataLoader, `.to(device)` per batch, fp32, `loss.item()` per step;
- packed vs sequential: `trainers.pack.train_packed_epoch` on K cells vs `train_epoch` K times.

Both sides train the same model on the same synthetic images, written as real CIFAR-10
files (`trainers.cifar_files`) to a temporary folder. Every timed block is `--steps` steps
after `--warmup` untimed ones; the two pipelines alternate block by block in rounds, the
order flipped each round (at least `--repeats` rounds, more until `--min-time` seconds),
and the median rate is reported: a busy machine slows both sides alike.
    python -m trainers.bench --device cuda --width 1.0,0.25 --batch 128 --pack 4 --json
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import tempfile
import time
from collections.abc import Callable

import torch
from torch import nn

from trainers import loop, runtime
from trainers.cifar_files import write_cifar10
from trainers.config import DEFAULTS
from trainers.data import synthetic
from trainers.fused import Fused
from trainers.naive import Naive
from trainers.naive import seed_cifar10 as _seed_cifar10  # noqa: F401  (the tests' handle)
from trainers.pack import pack_mode, train_packed_epoch
from trainers.setup import setup
from trainers.step import make_step
from trainers.timing import head

EPOCH_IMAGES = 45_000  # a CIFAR-10 training epoch after the usual 5,000-image validation split
QUICK = {
    "width": "0.125",
    "batch": 16,
    "steps": 1,
    "warmup": 1,
    "repeats": 1,
    "pack": 2,
    "min_time": 0.0,
}
MAX_ROUNDS = 25


def parser() -> argparse.ArgumentParser:
    """`grid bench`'s flags (tests/test_docs.py checks the docs' flags against them)."""
    p = argparse.ArgumentParser(prog="grid bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", default="allcnn_c")
    p.add_argument("--width", default="1.0,0.25", help="comma-separated width multipliers")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--steps", type=int, help="timed steps per block (20 on CUDA, 2 on CPU)")
    p.add_argument("--warmup", type=int, help="untimed steps first (3 on CUDA, 1 on CPU)")
    p.add_argument(
        "--repeats", type=int, default=3, help="alternating rounds at least; the median is taken"
    )
    p.add_argument(
        "--min-time",
        type=float,
        default=10.0,
        help="more rounds (up to 25) until each comparison has been timed this many seconds",
    )
    p.add_argument("--pack", type=int, default=4, help="cells to pack (0: skip packing)")
    p.add_argument("--pack-width", type=float, help="width of the packed cells (the smallest)")
    p.add_argument(
        "--pack-mode",
        default="auto",
        choices=["auto", "vmap", "loop"],
        help="fused forward (auto: vmap on CUDA, loop on CPU; see trainers/pack.py)",
    )
    p.add_argument(
        "--compile",
        action="store_true",
        help="ours with the captured step (train.compile: torch.compile; CUDA graphs on CUDA)",
    )
    p.add_argument("--naive-workers", type=int, help="DataLoader workers (2 on CUDA, 0 on CPU)")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's)")
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")
    p.add_argument("--quick", action="store_true", help="a tiny run, for tests")
    return p


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The benchmark's flags, with the device-dependent defaults filled in."""
    p = parser()
    args = p.parse_args(argv)
    if args.quick:
        for key, value in QUICK.items():
            setattr(args, key, value)
    cuda = runtime.resolve_device(args.device, "--device").type == "cuda"
    for key, on_cuda, on_cpu in (("steps", 20, 2), ("warmup", 3, 1), ("naive_workers", 2, 0)):
        if getattr(args, key) is None:
            setattr(args, key, on_cuda if cuda else on_cpu)
    try:
        args.widths = [float(w) for w in args.width.split(",") if w.strip()]
    except ValueError:
        p.error(f"--width: expected numbers separated by commas, got {args.width!r}")
    if not args.widths or min(args.widths) <= 0 or min(args.batch, args.steps, args.repeats) < 1:
        p.error("--width, --batch, --steps and --repeats must be positive")
    return args


def config_for(
    root: str,
    args: argparse.Namespace,
    width: float,
    seed: int = 0,
    lr: float = 0.05,
    compile: bool = False,
) -> dict:
    """A resolved config (the defaults: All-CNN recipe) on the benchmark's files."""
    cfg = copy.deepcopy(DEFAULTS)
    cfg["dataset"].update(name="cifar10", root=root, download=False, val_size=0)
    cfg["model"].update(arch=args.arch, width=width)
    cfg["train"].update(
        batch_size=args.batch, seed=seed, lr=lr, device=args.device, compile=compile
    )
    return cfg


class Ours:
    """Our trainer's steps: `loop.train_epoch` over exactly `steps` batches."""

    def __init__(self, cfg: dict, device: torch.device):
        self.cell, self.batch = setup(cfg, device=device), cfg["train"]["batch_size"]
        self.fmt, self.device = self.cell.fmt, device
        self.loss_fn = nn.CrossEntropyLoss()
        c = self.cell
        self.step = make_step(
            c.model,
            c.optimizer,
            c.scheduler,
            self.loss_fn,
            captured=bool(cfg["train"]["compile"]),
            device=device,
            **self.fmt,
        )

    def run(self, steps: int) -> int:
        runtime.configure_cudnn(self.device)  # as setup sets it: Naive turns it off
        c = head(self.cell, steps * self.batch)
        c.model.train()
        loop.train_epoch(self.step, c.data, c.gen, self.batch)
        return steps * self.batch


class Packed:
    """K cells (seeds 0..K-1, lrs around 0.05) packed (`mode` vmap or loop), or, with mode
    None, trained one after another."""

    def __init__(self, cfgs: list[dict], device: torch.device, mode: str | None):
        self.ours, self.mode = [Ours(cfg, device) for cfg in cfgs], mode
        self.fmt = self.ours[0].fmt
        self.fused = (
            Fused([o.cell.model for o in self.ours], self.fmt["memory_format"])
            if mode == "vmap"
            else None
        )

    def run(self, steps: int) -> int:
        if self.mode is None:
            return sum(o.run(steps) for o in self.ours)
        runtime.configure_cudnn(self.ours[0].device)
        batch = self.ours[0].batch
        cells = [head(o.cell, steps * batch) for o in self.ours]
        train_packed_epoch(cells, self.ours[0].loss_fn, batch, fused=self.fused, **self.fmt)
        return steps * batch * len(cells)


def measure(
    runners: dict[str, object], args: argparse.Namespace, device: torch.device
) -> tuple[dict[str, float], int]:
    """(median images/s of each runner, rounds): alternating rounds, the order flipped each
    round, at least `args.repeats` of them and more until `args.min_time` seconds."""
    for r in runners.values():
        r.run(args.warmup)
    rates: dict[str, list[float]] = {name: [] for name in runners}
    rounds, spent = 0, 0.0
    while rounds < args.repeats or (spent < args.min_time and rounds < MAX_ROUNDS):
        for name in list(runners) if rounds % 2 == 0 else list(reversed(runners)):
            runtime.sync(device)
            t0 = time.perf_counter()
            images = runners[name].run(args.steps)
            runtime.sync(device)
            seconds = time.perf_counter() - t0
            rates[name].append(images / seconds)
            spent += seconds
        rounds += 1
    return {name: statistics.median(v) for name, v in rates.items()}, rounds


def bench(args: argparse.Namespace, root: str, log: Callable[[str], None]) -> dict:
    """Every comparison of `args` on the CIFAR-10 files under `root`: {"runs", "pack"}."""
    device = runtime.resolve_device(args.device, "--device")
    name = runtime.device_name(device)
    runs = []
    for width in args.widths:
        log(f"width {width}: ours vs naive")
        cfg = config_for(root, args, width, compile=args.compile)  # packs never compile
        rates, rounds = measure(
            {"ours": Ours(cfg, device), "naive": Naive(cfg, device, args.naive_workers)},
            args,
            device,
        )
        runs.append(
            {
                "device": name,
                "arch": args.arch,
                "width": width,
                "batch": args.batch,
                "compile": args.compile,
                "rounds": rounds,
                "ours_images_per_s": rates["ours"],
                "naive_images_per_s": rates["naive"],
                "ratio": rates["ours"] / rates["naive"],
                "ours_epoch_s": EPOCH_IMAGES / rates["ours"],
                "naive_epoch_s": EPOCH_IMAGES / rates["naive"],
            }
        )
    result = {"runs": runs, "pack": None}
    if args.pack >= 1:
        width = args.pack_width or min(args.widths)
        log(f"width {width}: {args.pack} cells packed vs sequential")
        cfgs = [
            config_for(root, args, width, seed=k, lr=0.05 * (1 + 0.1 * k)) for k in range(args.pack)
        ]
        mode = pack_mode(args.pack_mode, device)
        rates, rounds = measure(
            {"packed": Packed(cfgs, device, mode), "sequential": Packed(cfgs, device, None)},
            args,
            device,
        )
        result["pack"] = {
            "device": name,
            "arch": args.arch,
            "k": args.pack,
            "width": width,
            "mode": mode,
            "rounds": rounds,
            "batch": args.batch,
            "packed_images_per_s": rates["packed"],
            "sequential_images_per_s": rates["sequential"],
            "ratio": rates["packed"] / rates["sequential"],
            "packed_epoch_s": args.pack * EPOCH_IMAGES / rates["packed"],
            "sequential_epoch_s": args.pack * EPOCH_IMAGES / rates["sequential"],
        }
    return result


def write_files(root: str, args: argparse.Namespace) -> None:
    """Synthetic images as CIFAR-10 files: enough for every naive step without a restart."""
    need = args.batch * (args.warmup + args.steps * max(args.repeats, MAX_ROUNDS))
    n_train = min(50_000, max(need, 2 * args.batch))  # at most CIFAR-10's 50,000
    train_x, train_y, test_x, test_y, _ = synthetic(n_train=n_train, n_test=100)
    write_cifar10(root, train_x, train_y, test_x, test_y)


def render(result: dict, settings: dict) -> None:
    """`bench`'s result as rich tables on the terminal."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    first = result["runs"][0]
    ours = "ours, captured step" if first.get("compile") else "ours"
    t = Table(title=f"Training images/s: {ours} vs naive ({first['device']})")
    for col in (
        "arch",
        "width",
        "batch",
        "ours img/s",
        "naive img/s",
        "ratio",
        "ours s/epoch",
        "naive s/epoch",
    ):
        t.add_column(col, justify="left" if col == "arch" else "right")
    for r in result["runs"]:
        t.add_row(
            r["arch"],
            f"{r['width']:g}",
            str(r["batch"]),
            f"{r['ours_images_per_s']:.1f}",
            f"{r['naive_images_per_s']:.1f}",
            f"{r['ratio']:.2f}x",
            f"{r['ours_epoch_s']:.1f}",
            f"{r['naive_epoch_s']:.1f}",
        )
    console.print(t)
    p = result["pack"]
    if p:
        t = Table(
            title=f"{p['k']} cells packed ({p['mode']}) vs one after another (width {p['width']:g})"
        )
        for col in (
            "packed img/s",
            "sequential img/s",
            "ratio",
            "packed s/epoch",
            "sequential s/epoch",
        ):
            t.add_column(col, justify="right")
        t.add_row(
            f"{p['packed_images_per_s']:.1f}",
            f"{p['sequential_images_per_s']:.1f}",
            f"{p['ratio']:.2f}x",
            f"{p['packed_epoch_s']:.1f}",
            f"{p['sequential_epoch_s']:.1f}",
        )
        console.print(t)
    console.print(
        f"s/epoch: {EPOCH_IMAGES:,} images (per cell x {p['k'] if p else 1} when "
        f"packed), extrapolated. Settings: {settings}"
    )


def main(argv: list[str]) -> int:
    """Run the benchmark (`grid bench ARGS`); prints rich tables or, with --json, JSON."""
    args = parse_args(argv[1:] if argv[:1] == ["--"] else argv)  # `grid bench -- --json`
    if args.threads:
        torch.set_num_threads(args.threads)
    settings = {
        k: getattr(args, k) for k in ("steps", "warmup", "repeats", "min_time", "naive_workers")
    }
    settings["threads"] = torch.get_num_threads()
    log = (lambda s: None) if args.json else (lambda s: print(f"grid bench: {s}", flush=True))
    with tempfile.TemporaryDirectory(prefix="grid-bench-") as root:
        write_files(root, args)
        result = bench(args, root, log)
    result.update(settings=settings, torch=torch.__version__)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        render(result, settings)
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
