"""The longest cells first, simulated: 1,000 cells whose costs are drawn like
`allcnn_table`'s, on 16 slots, started in four orders, each slot taking the next cell as
soon as it is free (Tune's FIFO over the order it was given). The end time is compared with
the lower bound max(total / slots, longest cell), which no order can beat.

    PYTHONPATH=. python benchmarks/share_sim.py --cells 1000 --slots 16 --draws 20 \\
        --out docs/share_sim --json

The cells: each draws one of `allcnn_table`'s 48 cells (12 models x 4 lrs) at random; its
predicted cost is that cell's FLOPs (`orchestrator/planning/cost.py`, the launch's cost
model), its true cost the prediction times its model's error (one per model and draw,
log-normal, sigma `--model-error`: the cost model is within ~1.5x of a timed estimate,
BENCHMARKS.md) times the run's own noise (per cell, sigma `--noise`). The orders:

- FIFO, grid order: as `expand` lists them (model by model, the YAML's order): what a launch
  did before issue 35;
- FIFO, shuffled: the draws' order, a grid with no pattern;
- LPT, the model: `orchestrator/planning/order.longest_first` on the predicted costs, what a
  grid's first launch does (nothing measured yet);
- LPT, corrected: the same on costs corrected per model by measured time
  (`order.predicted_costs`), as a relaunch does once each model has a finished cell: here the
  correction is taken from one finished cell per model, so it still carries that cell's
  noise.

Pure Python and the cost model (a meta-device pass per model: no training), seconds to run.
"""

from __future__ import annotations

import argparse
import heapq
import json
import random
import statistics
from pathlib import Path

TAIL = 0.03  # the right panel shows the end: before it, every order keeps every slot busy
ORDERS = ("FIFO, grid order", "FIFO, shuffled", "LPT, the model", "LPT, corrected")


def end_time(costs: list[float], slots: int) -> tuple[float, list[tuple[float, float]]]:
    """List scheduling: each cost, in the order given, starts on the first slot free.
    Returns the end time and the (start, end) of each cell."""
    free = [0.0] * slots
    heapq.heapify(free)
    spans = []
    for cost in costs:
        start = heapq.heappop(free)
        spans.append((start, start + cost))
        heapq.heappush(free, start + cost)
    return max(end for _, end in spans), spans


def lower_bound(costs: list[float], slots: int) -> float:
    """No order ends before every slot has done its share, nor before the longest cell."""
    return max(sum(costs) / slots, max(costs))


def table_cells() -> list[tuple[str, float]]:
    """(model, predicted seconds) of allcnn_table's cells, in the grid's order."""
    from orchestrator.planning.cost import CPU_FLOPS, cell_flops
    from orchestrator.spec.expand import expand
    from orchestrator.spec.load import load_spec

    spec = load_spec(Path(__file__).resolve().parents[1] / "grids" / "allcnn_table.yaml")
    return [(c.params["model.arch"], cell_flops(c.config) / CPU_FLOPS) for c in expand(spec)]


def one_draw(table, n: int, slots: int, model_error: float, noise: float, rng) -> dict:
    """The four orders' end times over the lower bound, for one draw of `n` cells."""
    from orchestrator.planning import order
    from orchestrator.spec.expand import Cell

    picks = [rng.randrange(len(table)) for _ in range(n)]
    bias = {model: rng.lognormvariate(0.0, model_error) for model, _ in table}
    cells, truth = [], {}
    for i, pick in enumerate(picks):
        model, predicted = table[pick]
        cell = Cell(key=f"c{i:04d}", grid="sim", params={"model": model}, config={})
        cells.append((pick, cell, predicted))
        truth[cell.key] = predicted * bias[model] * rng.lognormvariate(0.0, noise)
    predicted = {c.key: p for _, c, p in cells}
    # one finished cell per model measured, noise and all: what a relaunch corrects with
    first = {}
    for _, c, p in cells:
        first.setdefault(c.params["model"], (c, truth[c.key], p))
    factor = {m: wall / p for m, (_, wall, p) in first.items()}
    corrected = {c.key: p * factor[c.params["model"]] for _, c, p in cells}
    units = {
        ORDERS[0]: [[c] for _, c, _ in sorted(cells, key=lambda x: x[0])],  # stable: draws
        ORDERS[1]: [[c] for _, c, _ in cells],
        ORDERS[2]: order.longest_first([[c] for _, c, _ in cells], predicted),
        ORDERS[3]: order.longest_first([[c] for _, c, _ in cells], corrected),
    }
    bound = lower_bound(list(truth.values()), slots)
    out = {"bound": bound, "ratio": {}, "spans": {}}
    for name, ordered in units.items():
        end, spans = end_time([truth[u[0].key] for u in ordered], slots)
        out["ratio"][name] = end / bound
        out["spans"][name] = spans
    return out


def figure(draws: list[dict], slots: int, path: Path) -> list[Path]:
    """Left: each draw's end time over the bound, per order; right: the first draw's busy
    slots over time, FIFO in the grid's order against LPT corrected."""
    from results.figures.style import legend_outside, new_figure, paper_style, save, series_style

    with paper_style():
        fig = new_figure("two")
        left, right = fig.subplots(1, 2)
        for i, name in enumerate(ORDERS):
            ys = [d["ratio"][name] for d in draws]
            xs = [i + (j - len(ys) / 2) * 0.3 / len(ys) for j in range(len(ys))]
            left.plot(xs, ys, **{**series_style(i), "linestyle": "none"})
        left.axhline(1.05, color="black", linewidth=0.6, linestyle="--")
        left.set_xticks(range(len(ORDERS)), [o.replace(", ", ",\n") for o in ORDERS])
        left.set_ylabel("end time / lower bound")
        left.set_title(f"{len(draws)} draws; dashed: the 1.05x target")
        handles = []
        for i, name in enumerate((ORDERS[0], ORDERS[3])):
            spans = draws[0]["spans"][name]
            times = sorted({t for s in spans for t in s})
            busy = [sum(s <= t < e for s, e in spans) for t in times]
            style = series_style(0 if i == 0 else 3)
            (line,) = right.step(
                [t / 3600 for t in times], busy, where="post", color=style["color"]
            )
            handles.append(line)
        end = max(e for name in ORDERS for _, e in draws[0]["spans"][name]) / 3600
        right.set_xlim(end * (1 - TAIL), end * 1.002)
        right.set_xlabel("hours (the cost model's CPU-seconds)")
        right.set_ylabel(f"busy slots of {slots}")
        right.set_title(f"one draw: the last {TAIL:.0%} of the time")
        legend_outside(fig, handles, [ORDERS[0], ORDERS[3]])
        path.parent.mkdir(parents=True, exist_ok=True)
        return [save(fig, path, fmt) for fmt in ("png", "svg")]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cells", type=int, default=1000)
    p.add_argument("--slots", type=int, default=16)
    p.add_argument("--draws", type=int, default=20)
    p.add_argument("--model-error", type=float, default=0.25)
    p.add_argument("--noise", type=float, default=0.05)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None, help="figure path, without suffix")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    rng = random.Random(args.seed)
    table = table_cells()
    draws = [
        one_draw(table, args.cells, args.slots, args.model_error, args.noise, rng)
        for _ in range(args.draws)
    ]
    summary = {
        name: {
            "median": statistics.median(d["ratio"][name] for d in draws),
            "max": max(d["ratio"][name] for d in draws),
        }
        for name in ORDERS
    }
    costs = [s for _, s in table]
    print(
        f"{args.cells} cells drawn from allcnn_table's {len(table)} (costs {min(costs):.0f}-"
        f"{max(costs):.0f} s, {max(costs) / min(costs):.1f}x), {args.slots} slots, "
        f"{args.draws} draws: end time / max(total / slots, longest cell)"
    )
    for name, s in summary.items():
        print(f"  {name:18s} median {s['median']:.4f}  max {s['max']:.4f}")
    if args.out:
        for path in figure(draws, args.slots, args.out):
            print(f"figure: {path}")
    if args.json:
        print(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, **summary}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
