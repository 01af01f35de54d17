"""The All-CNN table's throughput, launched: real `grid launch`es of grids/allcnn_table.yaml's
12 architectures, one lr each, for 2 epochs on 50,000 CIFAR-sized images written in CIFAR-10's
file layout, with the captured step (`train.compile`) at 8, 4, 2 and 1 trials per GPU
(`resources.gpu` 1/8 ... 1), then eagerly at the best of those. Each launch prints:

- cells/hour and img/s per GPU, over the span from its first trial's start to its last
  trial's end (the rows' `started`/`ended`; Ray's start-up is left out, and said apart);
- the fraction of the chip's dense bf16 peak (PEAK below; precision auto trains in bf16 on
  CUDA): the cells' training FLOPs (`orchestrator.planning.cost.cell_flops`) over that span;
- the full table (the same architectures x the spec's 4 lrs x its 350 epochs) extrapolated
  from the cells' own figures (`cell_seconds`): a cell of 350 epochs costs its start-up
  (`wall_s` less its epochs) plus, from its last epoch (past the compile), measured while k
  trials shared the GPU, 350 x its training and report and its evaluation at the table's
  cadence; k x GPUs such cells run at once (a row says when some cells ran their last
  epoch beside fewer trials: there the figure is optimistic);

then `grid plan --estimate`'s figure for the same table beside them. Ray comes from this
Python or from the Ray bundle on PYTHONPATH (benchmarks/gpu_session.sh installs it).

The captured launches share one inductor cache, emptied first: the first compiles cold and
the later ones find its kernels (their rows say "cold" and "warm"), as a real table's cells
do after its first cell of each architecture; `--cold` gives each launch its own, so that
launch times compare, at the price of compiling in every one.

    python -m benchmarks.gpu_table OUT            # on a GPU node: at most ~7 minutes
    python -m benchmarks.gpu_table OUT --cpu      # the same mechanics, tiny, on a CPU (~1.5 min)

A launch is started only while the budget (`--budget-s`) holds what it should take (from the
launch before it: waves of trials scale as cells / slots); what is skipped is printed as
skipped, never left out. Everything printed is also written to OUT/table.json.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SPEC = REPO / "grids" / "allcnn_table.yaml"
GRID = "allcnn_table"
# Dense bf16 tensor-core peaks from NVIDIA's data sheets (FLOP/s, no sparsity), by a part of
# torch.cuda.get_device_name(); the first match wins, so the PCIe H100 comes before H100.
PEAK = (
    ("H100 PCIe", 756e12),
    ("H100", 989e12),
    ("H200", 989e12),
    ("A100", 312e12),
    ("L40S", 362e12),
)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "out", type=Path, help="folder for the data, the stores, the logs and table.json"
    )
    p.add_argument("--cpu", action="store_true", help="a tiny dry run on this machine's CPUs")
    p.add_argument("--per-gpu", help="trials per GPU (on --cpu: trials at once), in run order")
    p.add_argument("--archs", help="comma-separated architectures (default: all 12)")
    p.add_argument("--images", type=int, help="training-file images (50,000 as CIFAR-10)")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--budget-s", type=float, help="seconds for all the launches")
    p.add_argument("--no-estimate", action="store_true", help="skip `grid plan --estimate`")
    p.add_argument("--cold", action="store_true", help="an inductor cache per launch (cache_dir)")
    args = p.parse_args(argv)
    tiny = {"per_gpu": "2", "archs": "strided_a,allcnn_a", "images": 1200, "budget_s": 150}
    full = {"per_gpu": "8,4,2,1", "archs": None, "images": 50000, "budget_s": 300}
    for name, value in (tiny if args.cpu else full).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    args.per_gpu = [int(k) for k in args.per_gpu.split(",")]
    return args


def overrides(args, root: Path, per_gpu: int, captured: bool) -> list[str]:
    """The --set list of one launch (and of the table's spec, without its per-launch parts)."""
    sets = [
        f"dataset.root={root}",
        "dataset.download=false",
        f"train.compile={str(captured).lower()}",
    ]
    if args.archs:
        sets.append(f"arch=[{args.archs}]")
    # what is trained is what the files hold less the validation images (the cost model
    # reads it from `dataset.subset`, else it counts CIFAR-10's 50,000)
    val = args.images // 6 if args.cpu else load_spec_base()["dataset"]["val_size"]
    sets += [f"dataset.subset={args.images - val}"]
    if args.cpu:
        # 1/6 held out, the rest trained; an eighth of the width: seconds per cell on a CPU
        sets += [f"dataset.val_size={val}"]
        sets += ["model.width=0.125", "train.device=cpu", "resources.gpu=0", "resources.cpu=1"]
    else:
        from orchestrator.planning.resources import gpu_share

        sets += [f"resources.gpu={gpu_share(per_gpu):g}", "resources.cpu=auto"]
    return sets


def fastest(results: list[dict]) -> dict | None:
    """The launch whose extrapolated table is the shortest, or None."""
    return min((r for r in results if "table_h" in r), key=lambda r: r["table_h"], default=None)


def load_spec_base() -> dict:
    """The table's spec as it stands (its validation split)."""
    from orchestrator.spec.load import load_spec

    return load_spec(SPEC).base


def write_data(root: Path, images: int) -> None:
    from trainers.cifar_files import write_cifar10
    from trainers.data import make_synthetic

    if (root / "cifar-10-batches-py").exists():
        return
    x, y, tx, ty, _ = make_synthetic(images, 10000)
    write_cifar10(root, x, y, tx, ty)


def cache_dir(args, label: str) -> Path:
    """The inductor cache of a launch: one for all of them (the first captured launch
    compiles cold, the later ones find its kernels, as the cells of a real table do after
    its first cell of each architecture), or with `--cold` one each (each compiles as on a
    fresh node: launch times compare, at the price of compiling every time)."""
    return args.out / "inductor" / (label if args.cold else "shared")


def run_launch(
    args, root: Path, index: int, per_gpu: int, captured: bool, limit_s: float, cache: str
) -> dict:
    """One real `grid launch` in its own store; its figures (see the module's docstring)."""
    # its own store: a label per launch (`index`), so that the same setting twice trains twice
    label = f"{index}-{per_gpu}-per-gpu-{'captured' if captured else 'eager'}"
    store = args.out / "stores" / label
    sets = overrides(args, root, per_gpu, captured)
    command = [sys.executable, "-m", "orchestrator.cli", "launch", str(SPEC), "--yes"]
    command += ["--store", str(store), "--set", "lr=[0.01]", "--set", f"train.epochs={args.epochs}"]
    command += [x for s in sets for x in ("--set", s)]
    if args.cpu:
        command += ["--max-concurrent", str(per_gpu)]
    log = args.out / f"{label}.log"
    t0 = time.perf_counter()
    with log.open("w") as f:
        # its own session: a launch past its limit gets Ctrl-C (the launch stops its local
        # Ray and says how far each cell got), then a kill of its group
        env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(cache_dir(args, label))}
        proc = subprocess.Popen(
            command,
            cwd=args.out,
            env=env,
            stdout=f,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            rc = proc.wait(timeout=limit_s)
        except subprocess.TimeoutExpired:
            rc = f"{stop(proc)} (stopped at its limit, {limit_s:.0f}s)"
        finally:  # this script stopped (SIGTERM from `timeout`, Ctrl-C): so is the launch,
            if proc.poll() is None:  # within the 10 s `timeout -k 10` leaves before its kill
                stop(proc, grace_s=7)
    wall = time.perf_counter() - t0
    return {
        "label": label,
        "cache": cache,
        "per_gpu": per_gpu,
        "captured": captured,
        "exit": rc,
        "launch_s": wall,
        **figures(args, store, sets, per_gpu),
    }


def stop(proc: subprocess.Popen, grace_s: float = 20) -> int:
    """Ctrl-C to the launch's group (it stops its local Ray and says how far each cell got),
    then, after `grace_s`, a kill of the group; its exit status."""
    os.killpg(proc.pid, signal.SIGINT)
    try:
        return proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        return proc.wait()


def figures(args, store_path: Path, sets: list[str], per_gpu: int) -> dict:
    """The launch's figures from its rows and curves (see the module's docstring)."""
    from orchestrator.planning.cost import cell_flops
    from orchestrator.spec.expand import expand
    from orchestrator.spec.load import load_spec
    from results.store import open_store

    cells = {
        c.key: c
        for c in expand(load_spec(SPEC, [*sets, "lr=[0.01]", f"train.epochs={args.epochs}"]))
    }
    store = open_store(str(store_path))
    cols = ["key", "status", "wall_s", "started", "ended", "step_mode", "device"]
    rows = [r for r in store.read_trials(GRID, cols).to_pylist() if r["key"] in cells]
    done = [r for r in rows if r["status"] == "completed"]
    out = {
        "cells": len(cells),
        "completed": len(done),
        "devices": sorted({r["device"] for r in rows}),
        "step_modes": sorted({str(r["step_mode"]) for r in done}),
    }
    if not done:
        return out
    last, spent = {}, {}  # each cell's last epoch, and the seconds of all its epochs
    columns = ["epoch_s", "images_per_s", "epoch_wall_s"]
    for e in store.read_epochs(GRID, columns).to_pylist():
        spent[e["key"]] = spent.get(e["key"], 0.0) + (e["epoch_wall_s"] or 0.0)
        if e["epoch"] >= last.get(e["key"], {"epoch": 0})["epoch"]:
            last[e["key"]] = e
    stamp = datetime.fromisoformat
    span = max(stamp(r["ended"]) for r in done) - min(stamp(r["started"]) for r in done)
    span_s = max(span.total_seconds(), 1.0)
    gpus = 1 if args.cpu else gpu_count()  # the local Ray's node holds this machine's GPUs
    train_images = trained_images(next(iter(cells.values())).config)
    flops = sum(cell_flops(cells[r["key"]].config) for r in done)
    out.update(
        span_s=span_s,
        cells_per_hour=len(done) / span_s * 3600,
        images_per_s_per_gpu=len(done) * args.epochs * train_images / span_s / gpus,
        tflops_per_s=flops / span_s / 1e12,
        # cells whose last epoch (the one the table's time is taken from) ran beside fewer
        # trials than the setting (the second wave of 12 cells at 8 a GPU): it shared the
        # GPU less, so the table's time, which assumes the setting's sharing, is optimistic
        fewer_peers=sum(
            peers(done, r, last.get(r["key"])) < min(per_gpu * gpus, len(cells)) for r in done
        ),
    )
    peak = chip_peak()
    if peak and not args.cpu:
        out["fraction_of_peak"] = flops / span_s / (peak * gpus)
    table_spec = load_spec(SPEC, sets)  # the table these cells are a slice of
    table = expand(table_spec)[0].config["train"]
    seconds = [cell_seconds(r, last.get(r["key"]), spent, train_images, table) for r in done]
    if len(done) == len(cells) and None not in seconds:
        lrs = len(table_spec.axes["train.lr"])  # each architecture's lrs
        out["table_h"] = lrs * sum(seconds) / (per_gpu * gpus) / 3600
    return out


def peers(done: list[dict], row: dict, last: dict | None) -> int:
    """The cells (itself included) training at the middle of `row`'s last epoch."""
    stamp = datetime.fromisoformat
    epoch_s = (last or {}).get("epoch_wall_s") or 0.0
    middle = stamp(row["ended"]) - timedelta(seconds=epoch_s / 2)
    return sum(stamp(o["started"]) <= middle <= stamp(o["ended"]) for o in done)


def trained_images(config: dict) -> int:
    """Images a cell trains on each epoch: full batches of its training set."""
    from trainers.data import steps_per_epoch
    from trainers.timing import sizes

    batch = config["train"]["batch_size"]
    return steps_per_epoch(sizes(config["dataset"])[0], batch) * batch


def cell_seconds(row: dict, last: dict | None, spent: dict, images: int, table: dict) -> float:
    """A table cell's seconds (`table`: its train section, epochs and evaluation cadence),
    from a launched cell's row and last epoch: its start-up (wall time less its epochs),
    then each epoch's training (`images / images_per_s`) and report, and the evaluations
    at the table's cadence (every `eval_every`-th epoch and the last: the launch's short
    cells evaluated every epoch). None without the last epoch's times."""
    from trainers.cadence import evaluates

    if not last or not all(last.get(c) for c in ("epoch_s", "images_per_s", "epoch_wall_s")):
        return None
    train_s = images / last["images_per_s"]
    evaluate_s = max(last["epoch_s"] - train_s, 0.0)
    report_s = max(last["epoch_wall_s"] - last["epoch_s"], 0.0)
    evaluations = sum(evaluates(e, table) for e in range(1, table["epochs"] + 1))
    startup = max(row["wall_s"] - spent[row["key"]], 0.0)
    return startup + table["epochs"] * (train_s + report_s) + evaluations * evaluate_s


def gpu_count() -> int:
    import torch

    return max(torch.cuda.device_count(), 1)


def chip_peak() -> float | None:
    import torch

    if not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name(0)
    return next((peak for part, peak in PEAK if part in name), None)


def plan_estimate(args, root: Path, limit_s: float) -> dict:
    """`grid plan --estimate --json` of the table the launches extrapolate to."""
    sets = [s for s in overrides(args, root, 1, captured=True) if not s.startswith("resources.")]
    command = [sys.executable, "-m", "orchestrator.cli", "plan", str(SPEC), "--estimate", "--json"]
    command += [x for s in sets for x in ("--set", s)]
    command += ["--device", "cpu" if args.cpu else "cuda", "--slots", "1"]
    try:
        done = subprocess.run(
            command, cwd=args.out, capture_output=True, text=True, timeout=limit_s
        )
    except subprocess.TimeoutExpired:
        return {"error": f"stopped at its limit, {limit_s:.0f}s"}
    if done.returncode != 0:
        return {"error": (done.stderr.strip().splitlines() or ["?"])[-1]}
    try:
        est = json.loads(done.stdout)["estimate"]
    except (ValueError, KeyError) as e:
        return {"error": f"unreadable output ({type(e).__name__}: {e})"}
    return {
        "device": est["device"],
        "total_h": est["total_s"] / 3600,
        "wall_h": est["wall_s"] / 3600,
    }


def expected_s(results: list[dict], per_gpu: int, cells: int) -> float | None:
    """What a launch at `per_gpu` should take, from the last one that ran: its time scaled by
    the waves of trials (cells / slots) each needs."""
    ran = [r for r in results if "span_s" in r]
    if not ran:
        return None
    prev = ran[-1]
    return prev["launch_s"] * math.ceil(cells / per_gpu) / math.ceil(cells / prev["per_gpu"])


def row(r: dict) -> str:
    step = f"captured ({r.get('cache', '?')})" if r["captured"] else "eager"
    if "span_s" not in r:
        why = (
            r.get("skipped")
            or f"exit {r.get('exit')}, {r.get('completed', 0)}/{r.get('cells')} cells"
        )
        return f"{r['per_gpu']:>9}  {step:<16}  {why}"
    frac = f"{100 * r['fraction_of_peak']:.1f}%" if "fraction_of_peak" in r else "-"
    table = f"{r['table_h']:.2f} h" if "table_h" in r else "-"
    notes = []
    if r["captured"] and r["step_modes"] != ["compiled"]:
        notes.append(f"step modes {', '.join(r['step_modes'])}: not all captured")
    if r["fewer_peers"]:
        notes.append(f"{r['fewer_peers']} cells' last epoch beside fewer trials")
    return (
        f"{r['per_gpu']:>9}  {step:<16}  {r['completed']:>2}/{r['cells']:<2}  {r['launch_s']:7.0f}"
        f"  {r['span_s']:6.0f}  {r['cells_per_hour']:8.0f}  {r['images_per_s_per_gpu']:10.0f}"
        f"  {r['tflops_per_s']:7.2f}  {frac:>6}  {table:>9}"
        + (f"  ({'; '.join(notes)})" if notes else "")
    )


def main(argv=None) -> int:
    args = parse_args(argv)
    # `timeout` ends a part with SIGTERM: as Ctrl-C, so that a running launch is stopped too
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    args.out = args.out.resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    root = args.out / f"cifar-{args.images}"  # the files of one size: kept between runs
    write_data(root, args.images)
    for old in ("inductor", "stores"):  # the first launch compiles cold, each trains afresh
        shutil.rmtree(args.out / old, ignore_errors=True)
    cells = len(args.archs.split(",")) if args.archs else 12
    where = "this CPU" if args.cpu else device_line()
    print(f"gpu_table: {cells} cells x {args.epochs} epochs on {args.images} images, on {where}")
    header = (
        "trials/GPU  step              cells  launch_s  span_s  cells/h  img/s/GPU  TFLOP/s"
        "   %peak  table(350ep)"
    )
    print(header, flush=True)
    t0, results = time.perf_counter(), []
    plan = [(k, True) for k in args.per_gpu] + [(None, False)]
    for per_gpu, captured in plan:
        if per_gpu is None:  # eager at the best captured setting
            best = fastest(results)
            if best is None:
                why = "skipped: no captured launch gave the table's time to choose a setting by"
                results.append({"per_gpu": "-", "captured": False, "skipped": why})
                print(row(results[-1]), flush=True)
                break
            per_gpu = best["per_gpu"]
        left = args.budget_s - (time.perf_counter() - t0)
        expect = expected_s(results, per_gpu, cells)
        if expect is not None and expect > left or left < 10:
            expected = f"~{expect:.0f}s expected, " if expect is not None else ""
            skip = {"skipped": f"skipped: {expected}{left:.0f}s of the budget left"}
            results.append({"per_gpu": per_gpu, "captured": captured, **skip})
        else:
            warm = not args.cold and any(r.get("cache") for r in results if r["captured"])
            cache = ("warm" if warm else "cold") if captured else ""
            results.append(
                run_launch(args, root, len(results), per_gpu, captured, max(left, 10), cache)
            )
        print(row(results[-1]), flush=True)
        save(args, results)
    estimate = None if args.no_estimate else plan_estimate(args, root, 240 if args.cpu else 60)
    if estimate is not None:
        if "error" in estimate:
            print(f"grid plan --estimate: {estimate['error']}")
        else:
            print(
                f"grid plan --estimate ({estimate['device']}, one trial at a time): "
                f"{estimate['total_h']:.2f} device-hours for the table"
            )
    best, entry = fastest(results), None
    if best is not None:
        from orchestrator.planning.resources import gpu_share

        gpu = 0 if args.cpu else gpu_share(best["per_gpu"])
        print(
            f"fastest for the table here: {best['per_gpu']} trials per "
            f"{'device' if args.cpu else 'GPU'}, {'captured' if best['captured'] else 'eager'}"
            f" ({best['table_h']:.2f} h): --set resources.gpu={gpu:g} "
            f"--set train.compile={str(best['captured']).lower()}"
        )
        if not args.cpu:  # what `gpu: auto` gives on this kind, once added to the table
            entry = {ray_kind(): [best["per_gpu"], datetime.now().date().isoformat()]}
            kind, (per, day) = next(iter(entry.items()))
            print(
                "for `gpu: auto`, add to TRIALS_PER_GPU in orchestrator/planning/resources.py: "
                f'"{kind}": ({per}, "{day}"),'
            )
    save(args, results, estimate=estimate, fastest=best, trials_per_gpu=entry)
    ran = [r for r in results if "skipped" not in r]
    return 0 if ran and all(r.get("completed") == r.get("cells") for r in ran) else 1


def save(args, results: list[dict], **more) -> None:
    """OUT/table.json: written after each launch, so that a run cut short keeps what ran."""
    text = json.dumps({"results": results, **more}, indent=1, default=str)
    (args.out / "table.json").write_text(text)


def ray_kind() -> str:
    """This GPU's kind as Ray names it (a node's `accelerator_type:<kind>` resource), the key
    of TRIALS_PER_GPU: Ray's own mapping from the device name, a private function of Ray
    2.60 (the bundle's); the device name itself where it is missing."""
    import torch

    name = torch.cuda.get_device_name(0)
    try:
        from ray._private.accelerators.nvidia_gpu import NvidiaGPUAcceleratorManager
    except ImportError:
        return name
    return NvidiaGPUAcceleratorManager._gpu_name_to_accelerator_type(name) or name


def device_line() -> str:
    import torch

    if not torch.cuda.is_available():
        return "no GPU (CUDA is not available)"
    return f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}, CUDA {torch.version.cuda}"


if __name__ == "__main__":
    sys.exit(main())
