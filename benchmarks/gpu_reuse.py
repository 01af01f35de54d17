"""A slot's captured step kept across its cells (`trainers/reuse.py`), checked on a device:
cell B trained after cell A in one process compiles nothing (dynamo's graph count does not
move) and trains as B does in a fresh process. On a CPU the test suite checks this to 1e-5
(tests/trainers/test_reuse.py); on CUDA, the step is also a CUDA graph replayed on the kept
buffers, which only a GPU can check, and cuDNN's kernel choice and bf16 rounding may differ
between the two processes, so each epoch's train and test loss must agree within the
device's `REL`.

    python -m benchmarks.gpu_reuse                      # cuda, All-CNN-C at full width
    python -m benchmarks.gpu_reuse --device cpu --width 0.125 --model strided_a   # ~30 s
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# How far B's losses may be from the fresh process's: on a CPU, rounding in the last bits;
# on CUDA, two processes' cuDNN choices and bf16 rounding. A broken copy is far off either way.
REL = {"cpu": 1e-5, "cuda": 0.02}
FRESH = """
import json, sys
from trainers.loop import train
seen = []
train(json.loads(sys.argv[1]), report=lambda m, s: seen.append(m))
print("LOSSES " + json.dumps([v for m in seen for v in (m["train_loss"], m["test_loss"])]))
"""


def cell(args, seed: int, lr: float) -> dict:
    from trainers.config import DEFAULTS

    cfg = copy.deepcopy(DEFAULTS)
    cfg["dataset"].update(name="synthetic", subset=args.images, val_size=0, augment=[])
    cfg["model"].update(arch=args.model, width=args.width, dropout=0.0, input_dropout=0.0)
    cfg["model"].update(batch_norm=True)
    cfg["train"].update(epochs=2, batch_size=128, lr=lr, seed=seed, compile=True)
    cfg["train"].update(device=args.device, checkpoint_s=1e9)
    cfg["train"]["schedule"].update(name="constant")
    return cfg


def losses(seen: list[dict]) -> list[float]:
    return [v for m in seen for v in (m["train_loss"], m["test_loss"])]


def check(args) -> dict:
    """{"ok", "summary", ...}: A then B in this process, B again in a fresh one."""
    from torch._dynamo.utils import counters

    from trainers import reuse
    from trainers.loop import train

    first, second = cell(args, seed=0, lr=0.05), cell(args, seed=1, lr=0.02)
    reuse.forget()
    t0 = time.perf_counter()
    graphs = counters["stats"]["unique_graphs"]
    mode_a = train(first)["step_mode"]
    compiled_a, a_s = counters["stats"]["unique_graphs"] - graphs, time.perf_counter() - t0
    seen: list[dict] = []
    graphs, t0 = counters["stats"]["unique_graphs"], time.perf_counter()
    mode_b = train(second, report=lambda m, s: seen.append(m))["step_mode"]
    compiled_b, b_s = counters["stats"]["unique_graphs"] - graphs, time.perf_counter() - t0
    try:
        done = subprocess.run(
            [sys.executable, "-c", FRESH, json.dumps(second)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=args.timeout_s,
        )
        line = [s for s in done.stdout.splitlines() if s.startswith("LOSSES ")]
        fresh = json.loads(line[-1][7:]) if line else None
        why = done.stderr[-500:]
    except subprocess.TimeoutExpired:
        fresh, why = None, f"it ran past --timeout-s {args.timeout_s:g}"
    kept = losses(seen)
    comparable = fresh and len(fresh) == len(kept) and all(map(math.isfinite, kept + fresh))
    worst = (
        max(abs(k - f) / max(abs(f), 1e-12) for k, f in zip(kept, fresh, strict=True))
        if comparable
        else None
    )
    rel = REL["cuda" if args.device.startswith("cuda") else "cpu"]
    problems = []
    if (mode_a, mode_b) != ("compiled", "compiled"):
        problems.append(f"step modes {mode_a}, {mode_b} (a fallback: see the warning above)")
    if compiled_a == 0 or compiled_b != 0:
        problems.append(f"graphs compiled: A {compiled_a}, B {compiled_b} (B should compile none)")
    if fresh is None:
        problems.append(f"the fresh process printed no losses: {why}")
    elif worst is None:
        problems.append(f"losses not comparable (a NaN, or another count): {kept} vs {fresh}")
    elif worst > rel:
        problems.append(f"B's losses kept {kept} vs fresh {fresh}: {worst:.2e} apart > {rel:g}")
    return {
        "ok": not problems,
        "problems": problems,
        "seconds": {"A": a_s, "B": b_s},
        "graphs": {"A": compiled_a, "B": compiled_b},
        "losses": {"kept": kept, "fresh": fresh},
        "summary": (
            f"{args.model} width {args.width:g} on {args.device}: A {a_s:.1f}s ({compiled_a} "
            f"graphs compiled), B {b_s:.1f}s ({compiled_b}), B's losses vs a fresh process "
            + (f"{worst:.2e} apart (at most {rel:g})" if worst is not None else "missing")
        ),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--model", default="allcnn_c")
    p.add_argument("--width", type=float, default=1.0)
    p.add_argument("--images", type=int, default=1024)
    p.add_argument("--timeout-s", type=float, default=240)
    p.add_argument("--json", help="write the result here")
    args = p.parse_args(argv)
    result = check(args)
    print(f"gpu_reuse: {result['summary']}: {'ok' if result['ok'] else 'FAIL'}")
    for problem in result["problems"]:
        print(f"  {problem}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
