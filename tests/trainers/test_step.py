"""The captured step (`train.compile`: torch.compile of the forward, backward and optimizer
step) against the eager one: the same losses, step by step, in fp32 on the CPU."""

from __future__ import annotations

import copy
import shutil

import pytest
import torch
from torch import nn

from trainers.optim import build_optimizer, build_schedule
from trainers.step import make_forward, make_step

pytestmark = pytest.mark.skipif(
    shutil.which("gcc") is None and shutil.which("cc") is None,
    reason="torch.compile on a CPU needs a C compiler",
)


def _cell(train_cfg: dict, model: nn.Module):
    optimizer = build_optimizer(model.parameters(), train_cfg)
    return optimizer, build_schedule(optimizer, train_cfg, steps_per_epoch=4)


def test_each_new_cell_in_one_process_gets_its_own_compiled_step(small_config):
    # A reused slot trains cell after cell in one process. Without a reset, dynamo's cache
    # entries for the optimizer step piled up (one per dead optimizer) until its recompile
    # limit, and from the 5th cell on the step compiled nothing and ran eagerly, silently.
    from torch._dynamo.utils import counters

    from trainers.models import create_model

    train_cfg = {**small_config["train"], "compile": True, "epochs": 1}
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))
    graphs = []
    for seed in range(5):
        torch.manual_seed(seed)
        model = create_model(
            "strided_a", num_classes=10, width=0.125, dropout=0.0, input_dropout=0.0
        )
        before = counters["stats"]["unique_graphs"]
        step = make_step(model, *_cell(train_cfg, model), nn.CrossEntropyLoss(), captured=True)
        step(x, y)
        graphs.append(counters["stats"]["unique_graphs"] - before)
        assert step.mode == "compiled"
    assert graphs[0] > 0 and graphs == [graphs[0]] * 5  # every cell compiled, the 5th too


def test_captured_and_eager_steps_agree_in_fp32_on_the_cpu(small_config):
    from trainers.models import create_model

    torch.manual_seed(0)
    model = create_model(
        "strided_a", num_classes=10, width=0.125, dropout=0.0, input_dropout=0.0, batch_norm=True
    )
    twin = copy.deepcopy(model)
    train_cfg = {
        **small_config["train"],
        "lr": 0.05,
        "schedule": {"name": "cosine", "milestones": [], "gamma": 0.1, "warmup_epochs": 0},
        "epochs": 1,
    }
    loss_fn = nn.CrossEntropyLoss()
    eager = make_step(model, *_cell(train_cfg, model), loss_fn)
    captured_opt, captured_sched = _cell({**train_cfg, "compile": True}, twin)
    captured = make_step(twin, captured_opt, captured_sched, loss_fn, captured=True)
    assert isinstance(captured_opt.param_groups[0]["lr"], torch.Tensor)  # no recompiles
    g = torch.Generator().manual_seed(1)
    batches = [
        (torch.randn(16, 3, 32, 32, generator=g), torch.randint(0, 10, (16,), generator=g))
        for _ in range(4)
    ]
    model.train(), twin.train()
    got = [captured(x, y) for x, y in batches]
    want = [eager(x, y) for x, y in batches]
    for (loss_c, hits_c), (loss_e, hits_e) in zip(got, want, strict=True):
        assert loss_c.item() == pytest.approx(loss_e.item(), rel=1e-4, abs=1e-5)
        assert hits_c.item() == hits_e.item()
    assert (
        float(captured_opt.param_groups[0]["lr"])
        == pytest.approx(model_lr := float(captured_sched.get_last_lr()[0]))
        and model_lr < 0.05
    )
    for p, q in zip(
        model.parameters(), twin.parameters(), strict=True
    ):  # the steps moved them alike
        assert torch.allclose(p, q, rtol=1e-3, atol=1e-5)
    x = batches[0][0]
    model.eval(), twin.eval()
    with torch.no_grad():  # evaluation on the same (compiled) path
        out = make_forward(twin, captured=True)(x)
        assert torch.allclose(out, make_forward(model)(x), rtol=1e-3, atol=1e-4)
