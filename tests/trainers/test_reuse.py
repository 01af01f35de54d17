"""A slot's captured step kept across its cells (`trainers.reuse`): the second cell of the
same architecture in one process compiles nothing, and trains as it would in a fresh one."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from trainers import reuse
from trainers.loop import train
from trainers.setup import setup

pytestmark = [
    pytest.mark.skipif(
        shutil.which("gcc") is None and shutil.which("cc") is None,
        reason="torch.compile on a CPU needs a C compiler",
    ),
    pytest.mark.usefixtures("one_thread"),
]

REPO = Path(__file__).resolve().parents[2]

# Train one cell in a fresh Python and print its per-epoch losses (the fresh-process twin).
FRESH = """
import json, sys, torch
torch.set_num_threads(1)
from trainers.loop import train
seen = []
train(json.loads(sys.argv[1]), report=lambda m, s: seen.append(m))
print("LOSSES " + json.dumps([v for m in seen for v in (m["train_loss"], m["test_loss"])]))
"""


def _cell(small_config, seed: int, lr: float) -> dict:
    cfg = small_config
    cfg["dataset"].update(subset=200, augment=[])
    cfg["model"].update(width=0.125)
    cfg["train"].update(compile=True, epochs=2, seed=seed, lr=lr)
    return cfg


def _losses(seen: list[dict]) -> list[float]:
    return [v for m in seen for v in (m["train_loss"], m["test_loss"])]


def test_a_second_cell_reuses_the_compiled_step_and_trains_as_in_a_fresh_process(
    small_config,
):
    import copy

    from torch._dynamo.utils import counters

    first = _cell(copy.deepcopy(small_config), seed=0, lr=0.05)
    second = _cell(small_config, seed=1, lr=0.02)
    reuse.forget()
    graphs = counters["stats"]["unique_graphs"]
    assert train(first)["step_mode"] == "compiled"
    compiled_first = counters["stats"]["unique_graphs"] - graphs
    seen: list[dict] = []
    graphs = counters["stats"]["unique_graphs"]
    summary = train(second, report=lambda m, s: seen.append(m))
    assert summary["step_mode"] == "compiled"
    assert compiled_first > 0  # the first cell compiled its step, forward and evaluation
    assert counters["stats"]["unique_graphs"] == graphs  # the second compiled nothing
    done = subprocess.run(
        [sys.executable, "-c", FRESH, json.dumps(second)],
        cwd=REPO,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "HOME": str(REPO)},
        capture_output=True,
        text=True,
        timeout=280,
    )
    line = [s for s in done.stdout.splitlines() if s.startswith("LOSSES ")]
    assert line, done.stdout[-2000:] + done.stderr[-2000:]
    fresh = json.loads(line[-1][7:])
    # A fresh optimizer's first step has no momentum buffer; the kept one's is zeroed
    # (0.9 * 0 + g = g): the same numbers, through another compiled branch, so rounding may
    # differ in the last bits.
    assert _losses(seen) == pytest.approx(fresh, rel=1e-5), (_losses(seen), fresh)
    reuse.forget()


def test_a_cell_is_copied_into_the_kept_step_and_an_other_key_is_not(small_config):
    import copy

    from trainers.step import capture

    cfg = _cell(copy.deepcopy(small_config), seed=0, lr=0.05)
    kept = setup(cfg)
    before = {k: v.clone() for k, v in kept.model.state_dict().items()}
    new = setup(_cell(copy.deepcopy(small_config), seed=3, lr=0.02))
    assert reuse.step_key(new) == reuse.step_key(kept)  # lr, seed and init are numbers
    weights = {k: v.clone() for k, v in new.model.state_dict().items()}
    first = next(kept.model.parameters())
    kept.optimizer.state[first]["momentum_buffer"] = torch.ones_like(first)  # a trained one's
    capture(kept.model, kept.optimizer)  # (compiled lazily: nothing runs here)
    model, optimizer = kept.model, kept.optimizer
    reuse.adopt(new, model, optimizer)
    assert new.model is model and new.optimizer is optimizer
    assert new.scheduler.optimizer is optimizer
    for k, v in model.state_dict().items():
        assert torch.equal(v, weights[k]) and (v.ndim < 2 or not v.equal(before[k]))
    assert float(optimizer.param_groups[0]["lr"]) == pytest.approx(0.02)
    # a fresh cell's optimizer has no state: the kept one's is zeroed, as it starts
    assert float(optimizer.state[next(model.parameters())]["momentum_buffer"].abs().sum()) == 0
    wider = _cell(copy.deepcopy(small_config), seed=0, lr=0.05)
    wider["model"]["width"] = 0.25
    assert reuse.step_key(setup(wider)) != reuse.step_key(kept)
    other = copy.deepcopy(cfg)
    other["train"]["optimizer"]["weight_decay"] = 0.0
    assert reuse.step_key(setup(other)) != reuse.step_key(kept)


def test_a_resumed_cells_optimizer_state_is_copied_into_the_kept_buffers(small_config):
    import copy

    kept = setup(_cell(copy.deepcopy(small_config), seed=0, lr=0.05))
    new = setup(_cell(copy.deepcopy(small_config), seed=1, lr=0.05))
    first, theirs = next(kept.model.parameters()), next(new.model.parameters())
    buffer = torch.zeros_like(first)
    kept.optimizer.state[first]["momentum_buffer"] = buffer  # what a CUDA graph replays on
    new.optimizer.state[theirs]["momentum_buffer"] = torch.full_like(theirs, 2.0)  # resumed
    reuse.adopt(new, kept.model, kept.optimizer)
    assert new.optimizer.state[first]["momentum_buffer"] is buffer  # the same tensor, in place
    assert bool((buffer == 2.0).all())
    second = list(kept.model.parameters())[1]  # no state yet in either: none made up
    assert not new.optimizer.state.get(second)
