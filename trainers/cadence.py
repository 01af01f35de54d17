"""How often a cell evaluates and checkpoints: speed, never the trained numbers.

Both cadences are `NON_IDENTITY` config keys (`trainers/config.py`), so they move no cell key:
- `train.eval_every`: validation and test every K epochs and always after the last one (and
  at the epochs of `train.eval_epochs`, which a halving's rungs are added to). The
  final epoch's metrics are computed exactly as before; the epochs in between have None for
  val_* and test_*, and "best" (`at: best`) is the best of the evaluated epochs.
- `train.checkpoint_every` / `train.checkpoint_s`: a checkpoint once N epochs or T seconds
  have passed since the last one, and always after the last epoch (or when every cell of a
  trial has stopped). A retry resumes at the last checkpoint and redoes the epochs after it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

# `eval_every: auto` when no table reads `at: best`: about this many evaluated epochs per
# run, enough points for a learning curve, at 1/18 of the evaluation cost on 350 epochs.
EVAL_POINTS = 20


def eval_every(value, epochs: int, uses_best: bool) -> int:
    """`train.eval_every` as a number of epochs. auto: 1 when a table picks the best epoch
    (`at: best` needs every epoch's val accuracy), else ceil(epochs / EVAL_POINTS); a
    cell trained without a spec (`train()` called directly) reads auto as 1."""
    if value != "auto":
        return int(value)
    return 1 if uses_best else max(1, math.ceil(epochs / EVAL_POINTS))


def evaluates(epoch: int, train_cfg: dict) -> bool:
    """Whether epoch `epoch` (1-based) evaluates on val and test: every `eval_every`-th
    epoch, the epochs of `eval_epochs` (the rungs of a halving, which rank by them) and the
    last."""
    every = eval_every(train_cfg.get("eval_every", "auto"), train_cfg["epochs"], True)
    return (
        epoch % every == 0
        or epoch >= train_cfg["epochs"]
        or epoch in train_cfg.get("eval_epochs", ())
    )


class CheckpointCadence:
    """Decides after which epochs a trial checkpoints (`train.checkpoint_every`, epochs;
    `train.checkpoint_s`, seconds of wall time since the last checkpoint or the start)."""

    def __init__(
        self, train_cfg: dict, start_epoch: int = 0, clock: Callable[[], float] = time.monotonic
    ):
        self.every = train_cfg.get("checkpoint_every")
        self.seconds = float(train_cfg.get("checkpoint_s", 0.0))
        self.clock = clock
        self.last_epoch, self.last_time = start_epoch, clock()

    def due(self, epoch: int, final: bool) -> bool:
        """Whether to checkpoint now, after `epoch`; `final`: nothing trains after it."""
        if final or self.seconds <= 0:
            return True
        if self.every is not None and epoch - self.last_epoch >= self.every:
            return True
        return self.clock() - self.last_time >= self.seconds

    def done(self, epoch: int) -> None:
        """A checkpoint of `epoch` was taken: the next one is counted from here."""
        self.last_epoch, self.last_time = epoch, self.clock()
