"""The live progress of `grid launch`: what has finished, what runs, what is left, and when.

`GridProgress` is plain state fed by events (a trial started, reported an epoch, finished,
failed, is retried) and rendered with rich; the Tune callback in `orchestrator/execution/launch.py`
feeds it. No Ray here, so the counting and the estimate are unit-tested without a cluster.

A "unit" is one Tune trial: one cell, or a pack of cells trained as one model.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

from rich.console import Group
from rich.table import Table
from rich.text import Text

from results.tables import formats

BEST_METRICS = ("val_acc", "test_acc")  # the first one a trial reports is the one shown
SHOW_RUNNING = 8  # rows of running trials shown; more are summarised in one line


@dataclasses.dataclass
class Unit:
    """One Tune trial as the display sees it."""

    label: str
    cells: int
    epochs: int
    state: str = "pending"  # pending | running | done | failed
    epoch: int = 0  # last epoch reported
    retries: int = 0
    started: float | None = None
    error: str | None = None


class GridProgress:
    """Counts of cells done / running / pending / failed, the best metric so far, elapsed
    time and an estimate of the time left, rendered as a rich renderable."""

    def __init__(
        self,
        grid: str,
        units: dict[str, tuple[int, int]],
        skipped: int = 0,
        clock: Callable[[], float] = time.monotonic,
    ):
        """`units`: label -> (cells in it, epochs per cell); `skipped`: cells already done."""
        self.grid = grid
        self.units = {label: Unit(label, n, e) for label, (n, e) in units.items()}
        self.skipped = skipped
        self.clock = clock
        self.t0 = clock()
        self.epochs_done = 0  # epochs trained in this launch (resumed ones not counted)
        self.best: tuple[str, float, str] | None = None  # (metric, value, label)

    # -- events -------------------------------------------------------------------------
    def start(self, label: str) -> None:
        unit = self.units[label]
        unit.state, unit.started = "running", self.clock()

    def result(self, label: str, metrics: dict) -> None:
        unit = self.units[label]
        if unit.state != "running":
            self.start(label)
        epoch = int(metrics.get("epoch") or 0)
        # One report is one epoch trained (a resumed attempt's first report too); a retry
        # that repeats an epoch is not counted twice.
        if epoch > unit.epoch:
            self.epochs_done += unit.cells
        unit.epoch = max(unit.epoch, epoch)
        self._offer_best(label, metrics)

    def finish(self, label: str) -> None:
        self.units[label].state = "done"

    def fail(self, label: str, error: str | None) -> None:
        unit = self.units[label]
        unit.state, unit.error = "failed", error

    def retry(self, label: str) -> None:
        unit = self.units[label]
        unit.state, unit.retries = "pending", unit.retries + 1

    def _offer_best(self, label: str, metrics: dict) -> None:
        for name in BEST_METRICS:
            value = metrics.get(name)
            if isinstance(value, (int, float)):
                if self.best is None or (self.best[0] == name and value > self.best[1]):
                    self.best = (name, float(value), label)
                return

    # -- derived ------------------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        """Cells per state (a pack counts its cells); `done` includes the skipped ones."""
        out = {"done": self.skipped, "running": 0, "pending": 0, "failed": 0}
        for unit in self.units.values():
            out[unit.state] += unit.cells
        return out

    def elapsed(self) -> float:
        return self.clock() - self.t0

    def remaining_s(self) -> float | None:
        """Epochs left x the launch's observed seconds per epoch (all trials together);
        None until an epoch has finished."""
        if self.epochs_done == 0:
            return None
        left = sum(
            u.cells * (u.epochs - u.epoch)
            for u in self.units.values()
            if u.state in ("pending", "running")
        )
        return left * self.elapsed() / self.epochs_done

    # -- rendering ----------------------------------------------------------------------
    def summary_line(self) -> str:
        c = self.counts()
        total = sum(c.values())
        parts = [
            f"{self.grid}: {c['done']}/{total} cells done",
            f"{c['running']} running",
            f"{c['pending']} pending",
            f"{c['failed']} failed",
        ]
        if self.best:
            parts.append(f"best {self.best[0]} {self.best[1]:.2%} ({self.best[2]})")
        left = self.remaining_s()
        parts.append(f"elapsed {fmt_duration(self.elapsed())}")
        parts.append(f"~{fmt_duration(left)} left" if left is not None else "estimating")
        return " | ".join(parts)

    def render(self) -> Group:
        """The summary line and a table of the running trials."""
        running = [u for u in self.units.values() if u.state == "running"]
        table = Table(box=None, pad_edge=False, show_header=bool(running))
        for col in ("running", "epoch", "retries", "for"):
            table.add_column(col, style="cyan" if col == "running" else None)
        now = self.clock()
        for unit in running[:SHOW_RUNNING]:
            table.add_row(
                unit.label + (f" ({unit.cells} cells)" if unit.cells > 1 else ""),
                f"{unit.epoch}/{unit.epochs}",
                str(unit.retries),
                fmt_duration(now - (unit.started or now)),
            )
        parts = [Text(self.summary_line(), style="bold"), table]
        if len(running) > SHOW_RUNNING:
            parts.append(Text(f"... and {len(running) - SHOW_RUNNING} more running"))
        return Group(*parts)


def fmt_duration(seconds: float) -> str:
    """1:02:03 / 4:05 style: `results.tables.formats.fmt_duration` as a clock."""
    return formats.fmt_duration(seconds, clock=True)


def epoch_line(m: dict, epochs: int | None = None) -> str:
    """One epoch's metrics on one line, as `grid train` and each trial's own log print it:
    'epoch   2/30  lr 0.05  train loss 0.6931 acc 51.20%  val loss ... acc ...  test ...'."""

    def part(name: str) -> str:
        loss, acc = m.get(f"{name}_loss"), m.get(f"{name}_acc")
        if loss is None and acc is None:
            return ""
        return (
            f"  {name}"
            + ("" if loss is None else f" loss {loss:.4f}")
            + ("" if acc is None else f" acc {acc:.2%}")
        )

    total = f"/{epochs}" if epochs else ""
    lr = "" if m.get("lr") is None else f"  lr {m['lr']:.4g}"
    speed = "" if m.get("images_per_s") is None else f"  {m['images_per_s']:,.0f} img/s"
    took = "" if m.get("epoch_s") is None else f"  {m['epoch_s']:.1f}s"
    return (
        f"epoch {m['epoch']:>3}{total}{lr}{part('train')}{part('val')}{part('test')}{took}{speed}"
    )
