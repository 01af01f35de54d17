"""What a unit costs without training it: its model's FLOPs and parameters, read from one
forward pass on the meta device (no memory, no compute: milliseconds), and the device memory
one trial needs.

`grid launch` states its cost from these before it starts (`orchestrator/planning/estimate.py`,
`quick`), and `grid plan --estimate` prints the memory per trial beside its timed estimate.
"""

from __future__ import annotations

import functools
import json

import torch
from torch.utils.flop_counter import FlopCounterMode

from trainers.data import AUGMENT_CHUNK, storage
from trainers.models import create_model, model_options

IMAGE = 3 * 32 * 32  # values of one CIFAR image
NUM_CLASSES = {"cifar10": 10, "cifar100": 100, "synthetic": 10}
# Activation memory: each layer's output is kept for the backward, and the backward holds
# about as much again in gradients of activations at its peak.
ACTIVATION_FACTOR = 2
# Optimizer states per parameter: SGD's momentum buffer, Adam's two moments.
STATES = {"sgd": 1, "adam": 2, "adamw": 2}


@functools.lru_cache(maxsize=64)
def _model_cost(model_json: str, num_classes: int) -> tuple[int, float, float]:
    model_cfg = json.loads(model_json)
    with torch.device("meta"):
        model = create_model(model_cfg["arch"], num_classes=num_classes, **model_options(model_cfg))
    outputs = [0]

    def count(_module, _inputs, out):
        if isinstance(out, torch.Tensor):
            outputs[0] += out.numel()

    leaves = [m for m in model.modules() if not list(m.children())]
    hooks = [m.register_forward_hook(count) for m in leaves]
    batch = 2
    with FlopCounterMode(display=False) as flops:
        model(torch.empty(batch, 3, 32, 32, device="meta"))
    for h in hooks:
        h.remove()
    params = sum(p.numel() for p in model.parameters())
    return params, flops.get_total_flops() / batch, outputs[0] / batch


def model_cost(config: dict) -> dict:
    """{"params", "flops" (forward FLOPs per image, a multiply-add counting 2), "activations"
    (values of the layers' outputs per image)} of the config's model."""
    classes = NUM_CLASSES.get(config["dataset"]["name"], 10)
    params, flops, acts = _model_cost(
        json.dumps(config["model"], sort_keys=True, default=str), classes
    )
    return {"params": params, "flops": flops, "activations": acts}


def unit_memory(configs: list[dict], images: tuple[int, int], gpu: bool) -> dict:
    """Bytes of device memory one trial of the unit `configs` (K cells) needs: {"data",
    "model", "activations", "total"}. `images`: (training, evaluated) images of a cell;
    `gpu`: bf16 activations where the recipe uses them. The CUDA context (~0.5 GB) and the
    allocator's slack are not counted."""
    cfg = configs[0]
    train_n, eval_n = images
    per_pixel = 1 if storage(cfg["dataset"]) == "uint8" else 4
    seeds = len({c["train"]["seed"] for c in configs})  # cells of one seed share the data
    chunk = min(AUGMENT_CHUNK, train_n) * IMAGE * 4 * 2  # a float chunk and its padded copy
    data = seeds * (train_n + eval_n) * IMAGE * per_pixel + chunk
    cost = model_cost(cfg)
    states = STATES.get(cfg["train"]["optimizer"]["name"], 1)
    model = len(configs) * cost["params"] * 4 * (2 + states)  # weights, grads, states
    bf16 = gpu and cfg["train"]["precision"] in ("auto", "bf16")
    act_bytes = 2 if bf16 else 4
    activations = (
        len(configs)
        * cfg["train"]["batch_size"]
        * cost["activations"]
        * act_bytes
        * ACTIVATION_FACTOR
    )
    return {
        "data": data,
        "model": model,
        "activations": activations,
        "total": data + model + activations,
    }
