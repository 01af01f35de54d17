"""`grid plan SPEC --estimate`: how long the grid's cells take on this machine's device.

Each distinct kind of unit (architecture and model options x batch size x pack size, what
sets a step's cost) is timed once for a few real steps (`trainers.timing.time_unit`); a
cell's estimate is its share of its unit's time:

    setup + epochs x steps per epoch x step + evaluated epochs x (val + test images) x image

and the wall time is the units scheduled longest first onto `slots` parallel trial slots.
Not counted: Ray's start (seconds) and per-epoch reporting (small: `train.checkpoint_s`).

The device memory of one trial (`memory`) is counted, not measured: the data set as it sits
on the device (`dataset.on_device`), weights, gradients and optimizer states, and the
activations of a batch (`trainers/footprint.py`); the largest unit's is printed.
"""

from __future__ import annotations

import json
import os
from typing import Any

from orchestrator.execution.units import group_cells
from orchestrator.spec.expand import Cell

STEPS, WARMUP = 3, 1  # timed steps per kind of unit, after untimed ones (compile, autotune)


def signature(unit: list[Cell]) -> str:
    """What sets a step's cost: the model section, the data's shape and augmentation, the
    batch, the step's recipe, and the number of cells packed."""
    cfg = unit[0].config
    d, t = cfg["dataset"], cfg["train"]
    return json.dumps(
        {
            "model": {k: v for k, v in cfg["model"].items() if k != "init"},
            "data": [d["augment"], d["preprocess"]],
            "batch": t["batch_size"],
            "step": [
                t["precision"],
                t["channels_last"],
                t["compile"],
                t["optimizer"]["name"],
                t["device"],
            ],
            "k": len(unit),
        },
        sort_keys=True,
        default=str,
    )


def unit_seconds(unit: list[Cell], timing: dict[str, float], epochs: float | None = None) -> float:
    """The unit's estimated seconds from its kind's timing; `epochs`: the epochs it is
    expected to train (a halving stops cells early), default all of them."""
    from trainers.cadence import evaluates
    from trainers.data import steps_per_epoch
    from trainers.timing import sizes

    cfg = unit[0].config
    train_n, eval_n = sizes(cfg["dataset"])
    full = cfg["train"]["epochs"]
    epochs = full if epochs is None else epochs
    steps = epochs * steps_per_epoch(train_n, cfg["train"]["batch_size"])
    evals = sum(evaluates(e, cfg["train"]) for e in range(1, full + 1)) * epochs / full
    return (
        timing["setup_s"]
        + steps * timing["step_s"]
        + evals * eval_n * timing["eval_image_s"] * len(unit)
    )


def cpus_per_trial(spec) -> int:
    """Whole CPUs a trial on this machine's CPU gets: `resources.cpu`, at least 1 (`auto`
    is 1 for trials on CPUs, `orchestrator.planning.resources.decide_cpu`)."""
    cpu = spec.resources.get("cpu") or 1
    return 1 if cpu == "auto" else max(1, int(cpu))


def default_slots(spec, device) -> int:
    """Trials this machine runs at once: its GPUs, or its CPUs over `resources.cpu`."""
    import torch

    if device.type == "cuda":
        return max(1, torch.cuda.device_count())
    return max(1, (os.cpu_count() or 1) // cpus_per_trial(spec))


def wall_time(units: list[float], slots: int) -> float:
    """Longest first onto the least-loaded slot: the wall time of `units` seconds."""
    loads = [0.0] * max(1, slots)
    for s in sorted(units, reverse=True):
        loads[loads.index(min(loads))] += s
    return max(loads)


def estimate(
    spec, trials: list[Cell], device_name: str = "auto", slots: int | None = None
) -> dict[str, Any]:
    """The plan's "estimate" object: {"device", "total_s", "slots", "wall_s", "cells":
    [{"key", "seconds"}]} (device-seconds per cell; total over the cells)."""
    import torch

    from trainers import runtime

    device = runtime.resolve_device(device_name, "--device")
    units = group_cells(trials, int(spec.resources.get("pack") or 1))
    threads = torch.get_num_threads()
    if device.type == "cpu":  # a trial gets as many threads as CPUs (Ray's OMP_NUM_THREADS)
        torch.set_num_threads(cpus_per_trial(spec))
    from orchestrator.halving.rule import cell_epochs

    epochs = cell_epochs(spec.halving, trials)
    try:
        timings, cells, unit_totals = _time_units(units, device, epochs)
    finally:
        torch.set_num_threads(threads)
    slots = slots or default_slots(spec, device)
    return {
        "memory": memory(units, device.type == "cuda"),
        "device": runtime.device_name(device),
        "total_s": sum(c["seconds"] for c in cells),
        "slots": slots,
        "wall_s": wall_time(unit_totals, slots),
        "cells": cells,
        "kinds": len(timings),
        "halving": spec.halving["rule"] if spec.halving else None,
    }


def memory(units: list[list[Cell]], gpu: bool) -> dict[str, int]:
    """The device memory of the unit that needs the most (`trainers.footprint.unit_memory`)."""
    from trainers.footprint import unit_memory
    from trainers.timing import sizes

    found = [unit_memory([t.config for t in u], sizes(u[0].config["dataset"]), gpu) for u in units]
    return max(found, key=lambda m: m["total"], default={"total": 0})


def gigabytes(n: float) -> str:
    """`1.23 GB`, `45 MB`."""
    return f"{n / 1e9:.2f} GB" if n >= 1e9 else f"{n / 1e6:.0f} MB"


def _time_units(
    units: list[list[Cell]], device, epochs: dict[str, float]
) -> tuple[dict, list[dict], list[float]]:
    from trainers.timing import time_unit

    timings: dict[str, dict] = {}
    cells, unit_totals = [], []
    for unit in units:
        sig = signature(unit)
        if sig not in timings:
            timings[sig] = time_unit([t.config for t in unit], device, STEPS, WARMUP)
        seconds = unit_seconds(unit, timings[sig], max(epochs[t.key] for t in unit))
        unit_totals.append(seconds)
        cells += [{"key": t.key, "seconds": seconds / len(unit)} for t in unit]
    return timings, cells, unit_totals


def hours(seconds: float) -> str:
    """`1h02m`, `4m44s`, `12s`."""
    s = round(seconds)
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


def describe(est: dict[str, Any]) -> list[str]:
    """The estimate as lines for the console."""
    where = est["device"]
    cpu = " (this estimate is for the CPU: no GPU here)" if where == "cpu" else ""
    halving = {
        "sync": " (the halving's exact epochs)",
        "async": " (the halving's worst case: the full grid)",
    }.get(est.get("halving") or "", "")
    return [
        f"estimate on {where}{cpu}{halving}: {est['total_s'] / 3600:.2f} device-hours "
        f"({hours(est['total_s'])}) for {len(est['cells'])} cells, {est['kinds']} kinds "
        f"of unit timed; wall time with {est['slots']} parallel slot(s): "
        f"{hours(est['wall_s'])}"
    ] + memory_lines(est.get("memory"))


def memory_lines(mem: dict | None) -> list[str]:
    """The memory per trial as a console line (none when not counted)."""
    if not mem or not mem.get("total"):
        return []
    return [
        f"device memory per trial: up to {gigabytes(mem['total'])} (data {gigabytes(mem['data'])}"
        f", weights + grads + optimizer {gigabytes(mem['model'])}, activations "
        f"{gigabytes(mem['activations'])}; plus the CUDA context, ~0.5 GB, on a GPU)"
    ]
