"""The GPU acceptance run: every model in every mode for a few steps, on one device.

Modes: eager (fp32, contiguous), compiled (`train.compile`: the captured step), bf16
(autocast), channels_last, and a pack of two cells, vmapped and looped. Each run trains on a
fixed set of two batches (no augmentation, no dropout), so that the losses must fall and
every mode starts from the eager run's weights: its first loss must equal eager's (to
float, or bf16, tolerance) and at every later step its loss must stay within a share of the
loss eager has shed so far (`tolerance`); a pack's first cell is the eager cell. Prints
img/s per model and mode with the device, driver and versions; exit 1 when a check fails.
Where Ray is installed, it then runs a real 4-cell `grid launch` with `resources.gpu: 0.5`
(0 on a CPU).

Compiling is the slow part (inductor: tens of seconds per model): the fast modes run for
every model first, then the compiled mode model by model while `--budget-s` lasts; the
models it did not reach are listed as skipped, never silently dropped. Needs only torch,
torchvision, pyyaml and rich (no Ray, no boto3, no network):

    benchmarks/gpu_check.sh                      # on the GPU box: ~8 minutes at most
    benchmarks/gpu_check.sh --device cpu         # the same on a CPU, small: < 3 minutes
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import subprocess
import sys
import time

import torch
from torch import nn

from trainers import pack, runtime
from trainers.config import DEFAULTS
from trainers.fused import Fused
from trainers.models import list_models
from trainers.setup import setup
from trainers.step import make_step

FAST_MODES = ("eager", "bf16", "channels_last", "pack_vmap", "pack_loop")
# Tolerances against the eager run. FIRST: relative, on every loss (the first one has the same
# weights and batch: only rounding separates the paths). DRIFT: beyond that, a share of the
# loss eager has shed so far (`judge`).
FIRST = {"fp32": 1e-3, "bf16": 5e-2}
DRIFT = {"fp32": 0.1, "bf16": 0.25}
FALL = 0.995  # the last two steps' mean loss below 99.5 % of the first two's


# The compiled runs go first for the models of the headline tables (All-CNN-C, NIN, the
# ResNets): the time budget may not reach the rest.
COMPILE_FIRST = ("allcnn_c", "nin", "resnet9", "resnet18", "strided_a", "densenet59")


def compile_order(model: str) -> tuple[int, str]:
    return (COMPILE_FIRST.index(model) if model in COMPILE_FIRST else len(COMPILE_FIRST), model)


def config(model: str, mode: str, args, seed: int = 0) -> dict:
    cfg = copy.deepcopy(DEFAULTS)
    cfg["dataset"].update(name="synthetic", val_size=0, subset=2 * args.batch, augment=[])
    # Batch norm on: without it, several models at full width diverge in a few steps at any
    # lr that trains the others (seen on the first H200 run: resnet15/18 to nan, strided_b and
    # convpool_a collapsing to ln 10), and a diverging run's modes cannot be compared.
    cfg["model"].update(
        arch=model, width=args.width, dropout=0.0, input_dropout=0.0, batch_norm=True
    )
    cfg["train"].update(
        batch_size=args.batch,
        lr=args.lr,
        seed=seed,
        device=args.device,
        precision="bf16" if mode == "bf16" else "fp32",
        channels_last=mode == "channels_last",
        compile=mode == "compiled",
    )
    cfg["train"]["schedule"].update(name="constant")
    return cfg


def batches(run) -> list[tuple[torch.Tensor, torch.Tensor]]:
    x, y = run.data.preprocess(run.data.train_x), run.data.train_y
    b = run.config["train"]["batch_size"]
    return [
        (x[i : i + b].contiguous(memory_format=run.memory_format), y[i : i + b]) for i in (0, b)
    ]


def train_one(model: str, mode: str, args, device) -> dict:
    """`args.steps` steps of one cell (or a pack of two) in `mode`: losses, img/s, mode."""
    packed = mode.startswith("pack_")
    cfgs = [
        config(model, "eager" if packed else mode, args, seed=k) for k in range(2 if packed else 1)
    ]
    runs = [setup(c, device=device) for c in cfgs]
    loss_fn = nn.CrossEntropyLoss()
    data = [batches(r) for r in runs]
    if packed:
        fused = (
            Fused([r.model for r in runs], runs[0].memory_format) if mode == "pack_vmap" else None
        )
        steps = [make_step(r.model, r.optimizer, r.scheduler, loss_fn, **r.fmt) for r in runs]
        state = {"mode": "vmap" if fused else "loop"}

        def one(i):
            bs = [d[i % 2] for d in data]
            if fused is not None and state["mode"] == "vmap":
                try:
                    return pack.fused_step(fused, runs, bs, loss_fn, runs[0].autocast)[0][0]
                except Exception as e:  # noqa: BLE001  the trainer's fallback, reported
                    state["mode"] = f"vmap->loop ({type(e).__name__})"
            return pack.loop_step(steps, bs)[0][0]
    else:
        r = runs[0]
        step = make_step(
            r.model,
            r.optimizer,
            r.scheduler,
            loss_fn,
            captured=mode == "compiled",
            device=device,
            **r.fmt,
        )

        def one(i):
            return step(*data[0][i % 2])[0]

    for r in runs:
        r.model.train()
    losses = [one(i) for i in range(args.warmup)]
    runtime.sync(device)
    t0 = time.perf_counter()
    losses += [one(i) for i in range(args.warmup, args.steps)]
    runtime.sync(device)
    seconds = time.perf_counter() - t0
    images = (args.steps - args.warmup) * args.batch * len(runs)
    step_mode = state["mode"] if packed else step.mode
    return {
        "model": model,
        "mode": mode,
        "losses": [float(v) for v in torch.stack(losses).tolist()],
        "images_per_s": images / max(seconds, 1e-9),
        "step_mode": step_mode,
    }


def judge(run: dict, eager: dict | None) -> list[str]:
    """What is wrong with a run: its losses do not fall, or stray from eager's (`tolerance`)."""
    bad = []
    losses = run["losses"]
    if not all(v == v and abs(v) != float("inf") for v in losses):
        return ["non-finite loss"]
    if sum(losses[-2:]) >= FALL * sum(losses[:2]):
        bad.append(f"loss did not fall ({losses[0]:.3f} -> {losses[-1]:.3f})")
    if eager is not None and run is not eager:
        kind = "bf16" if run["mode"] == "bf16" else "fp32"
        want = eager["losses"]
        for t, (got, tol) in enumerate(zip(losses, tolerance(want, kind), strict=False)):
            if abs(got - want[t]) > tol:
                bad.append(f"step {t} loss {got:.4f} vs eager {want[t]:.4f} (tolerance {tol:.3g})")
                break  # the first step that strays says it; the later ones follow from it
    if "->" in str(run["step_mode"]):
        bad.append(f"fell back: {run['step_mode']}")
    return bad


def tolerance(eager: list[float], kind: str) -> list[float]:
    """How far a mode's loss at each step may be from eager's: FIRST (relative) plus DRIFT of
    the loss eager has shed by that step.

    Two float-equivalent paths (another summation order: channels_last kernels, inductor's
    fusions, a vmapped pack) start one rounding apart, and training amplifies that
    difference step by step: on a net that memorises its two batches the trajectories
    part visibly after a few steps (torch 2.14.1, CPU, resnet18: channels_last and compiled
    agree with eager to 3e-4 over the first 3 losses, then end at 0.707 against eager's
    0.745, 5 % of the last loss). The last loss is the worst yardstick: it shrinks towards
    0 while the difference grows with the training done, so a tolerance relative to it
    raises false alarms on exactly the models that learn best. What the amplified rounding
    does stay within is a small share of the loss shed so far (<= 3 % of it in every
    mode of that run), while a real error of a path (a wrong gradient, a step that ignores
    momentum or its lr, an lr 25 % off: `tests/test_gpu_box.py`) changes how much is
    learned, by more than DRIFT of it, from the first steps on. Every step is checked, so
    the early steps, where the shed loss is small, hold a path to FIRST's tight tolerance."""
    shed = 0.0
    out = []
    for t, loss in enumerate(eager):
        shed = max(shed, eager[0] - loss) if t else 0.0
        out.append(FIRST[kind] * abs(loss) + DRIFT[kind] * shed)
    return out


def environment(device) -> dict:
    """The device, its driver and the library versions, for the header and BENCHMARKS.md."""
    import torchvision

    env = {
        "device": runtime.device_name(device),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "python": platform.python_version(),
        "host": platform.node(),
        "threads": torch.get_num_threads(),
    }
    if device.type == "cuda":
        env["capability"] = ".".join(map(str, torch.cuda.get_device_capability(device)))
        env["driver"] = _driver()
    return env


def _driver() -> str | None:
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        )
        return out.stdout.strip().splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        return None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="gpu_check", description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    p.add_argument("--models", default="*", help="comma-separated names, or * for all")
    p.add_argument(
        "--modes",
        default=",".join((*FAST_MODES, "compiled")),
        help="comma-separated modes (default: all; without eager, no run is compared to it)",
    )
    p.add_argument("--width", type=float, help="model width (cuda 1.0, cpu 0.125)")
    p.add_argument("--batch", type=int, help="batch size (cuda 128, cpu 16)")
    p.add_argument("--steps", type=int, help="steps per run (cuda 30, cpu 8)")
    p.add_argument("--warmup", type=int, default=2, help="untimed first steps")
    p.add_argument("--lr", type=float, default=0.02)
    p.add_argument("--budget-s", type=float, help="seconds for everything (cuda 420, cpu 150)")
    p.add_argument("--no-launch", action="store_true", help="skip the `grid launch` check")
    p.add_argument("--json", help="also write the results to this file")
    args = p.parse_args(argv)
    cuda = args.device.startswith("cuda")
    for key, on_cuda, on_cpu in (
        ("width", 1.0, 0.125),
        ("batch", 128, 16),
        ("steps", 30, 8),
        ("budget_s", 420.0, 150.0),
    ):
        if getattr(args, key) is None:
            setattr(args, key, on_cuda if cuda else on_cpu)
    args.models = list_models() if args.models == "*" else args.models.split(",")
    args.modes = args.modes.split(",")
    unknown = set(args.modes) - {*FAST_MODES, "compiled"}
    if unknown:
        p.error(f"--modes: unknown {', '.join(sorted(unknown))}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    t0 = time.perf_counter()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("gpu_check: no CUDA device here; run with --device cpu", file=sys.stderr)
        return 2
    env = environment(device)
    print("gpu_check: " + ", ".join(f"{k} {v}" for k, v in env.items()))
    results, problems, skipped = [], [], []
    eager: dict[str, dict] = {}
    plan = [(m, mode) for m in args.models for mode in FAST_MODES if mode in args.modes]
    if "compiled" in args.modes:
        plan += [(m, "compiled") for m in sorted(args.models, key=compile_order)]
    for model, mode in plan:
        if mode == "compiled" and time.perf_counter() - t0 > args.budget_s * 0.6:
            skipped.append(model)  # a compile may take a minute: stop while there is time
            continue
        try:
            run = train_one(model, mode, args, device)
        except Exception as e:  # noqa: BLE001  a check reports every failure, then exits 1
            run = {
                "model": model,
                "mode": mode,
                "losses": [],
                "images_per_s": 0.0,
                "step_mode": None,
                "error": f"{type(e).__name__}: {e}",
            }
        if mode == "eager":
            eager[model] = run
        run["problems"] = [run["error"]] if "error" in run else judge(run, eager.get(model))
        results.append(run)
        problems += [f"{model} {mode}: {p}" for p in run["problems"]]
        print(
            f"{model:11s} {mode:14s} {run['images_per_s']:9.0f} img/s  loss "
            + (f"{run['losses'][0]:.3f} -> {run['losses'][-1]:.3f}" if run["losses"] else "-")
            + (f"  FAIL: {'; '.join(run['problems'])}" if run["problems"] else "  ok"),
            flush=True,
        )
    if skipped:
        print(f"compiled mode skipped (--budget-s {args.budget_s:g}): {', '.join(skipped)}")
    launch = None if args.no_launch else launch_check(device)
    if launch is not None:
        print(f"grid launch, 4 cells: {launch['summary']}")
        if not launch["ok"]:
            problems.append(f"grid launch: {launch['summary']}")
    total = time.perf_counter() - t0
    print(
        f"gpu_check: {len(results)} runs, {len(problems)} problems, "
        f"{len(skipped)} compiled runs skipped, {total:.0f}s on {env['device']}"
    )
    for p in problems:
        print(f"  {p}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "environment": env,
                    "runs": results,
                    "skipped": skipped,
                    "launch": launch,
                    "seconds": total,
                },
                f,
                indent=1,
            )
    return 1 if problems else 0


def launch_check(device) -> dict | None:
    """Where Ray is installed: a real `grid launch` of 4 tiny cells (`benchmarks/gpu_launch`);
    None without Ray."""
    import importlib.util

    try:
        ray = importlib.util.find_spec("ray")
    except ImportError:  # an import hook that refuses it: as good as not installed
        ray = None
    if ray is None:
        print("grid launch check skipped: Ray is not installed here")
        return None
    from benchmarks.gpu_launch import run_launch

    return run_launch(device)


if __name__ == "__main__":
    raise SystemExit(main())
