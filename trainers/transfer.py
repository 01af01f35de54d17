"""A stage's cell starts from its parent's weights (`train.body`): the body is loaded, the
head is the model's own, built fresh for this data set's classes, and the body is then
fine-tuned (`finetune`, its lr `train.lr * train.body_lr`) or kept fixed (`frozen`).

The **head** is the model's classifier: its last `Conv2d` or `Linear` (All-CNN's and NIN's
class conv, a 1x1 conv, or a dense layer with `model.head: fc`; a ResNet's or DenseNet's
`Linear`) and every layer registered after it (the class conv's batch norm). Everything else
is the **body**. The loading is torch's own: `load_state_dict(body, strict=False)`, which
leaves the head as the model's init drew it; `requires_grad_(False)` freezes the body, and an
optimizer parameter group gives it its own lr (`trainers.optim.build_optimizer`).

A frozen body's batch-norm layers still update their running statistics in training mode
(they normalise the new data set's batches); its weights and biases do not change.
"""

from __future__ import annotations

import torch
from torch import nn

from trainers.errors import GridError

BODIES = ("scratch", "finetune", "frozen")


def head_names(model: nn.Module) -> set[str]:
    """The state_dict names of `model`'s head (parameters and buffers)."""
    modules = list(model.named_modules())
    last = max(
        (i for i, (_, m) in enumerate(modules) if isinstance(m, (nn.Conv2d, nn.Linear))),
        default=None,
    )
    if last is None:
        raise GridError(f"train.body: {type(model).__name__} has no conv or linear classifier")
    names = set()
    for prefix, module in modules[last:]:
        for n, _ in [*module.named_parameters(recurse=False), *module.named_buffers(recurse=False)]:
            names.add(f"{prefix}.{n}" if prefix else n)
    return names


def load_body(model: nn.Module, weights: dict[str, torch.Tensor]) -> list[str]:
    """Load the body of `weights` (a parent's `state_dict`) into `model`; the head keeps
    its fresh init. Returns the names loaded. GridError when the parent has no tensor of
    that name and shape: the child's model section must build the parent's body."""
    head = head_names(model)
    body = {}
    for name, own in model.state_dict().items():
        if name in head:
            continue
        theirs = weights.get(name)
        if theirs is None or theirs.shape != own.shape:
            got = "none" if theirs is None else tuple(theirs.shape)
            raise GridError(
                f"train.body: the parent's weights do not fit this model's body ({name}: "
                f"{tuple(own.shape)} here, {got} in the parent); match the model keys "
                f"(stage.match) or give the child the parent's model section"
            )
        body[name] = theirs
    result = model.load_state_dict(body, strict=False)
    assert not result.unexpected_keys and set(result.missing_keys) <= head
    return sorted(body)


def body_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The body's parameters (every parameter but the head's)."""
    head = head_names(model)
    return [p for n, p in model.named_parameters() if n not in head]


def prepare(model: nn.Module, train_cfg: dict, weights: dict | None, resumed: bool):
    """Apply `train.body` to a built, initialised model: load the parent's body (unless
    the cell resumes: its state holds the weights), freeze it when `frozen`. Returns (the
    parameters to optimise, the body's parameters that get `body_lr`, or None)."""
    body = train_cfg.get("body", "scratch")
    if body == "scratch":
        return list(model.parameters()), None
    if not resumed:
        if weights is None:
            raise GridError(
                f"train.body: {body} needs its parent's weights; launch it with "
                "`grid launch` (the spec's stage: section names the parent)"
            )
        load_body(model, weights)
    params = body_parameters(model)
    if body == "frozen":
        for p in params:
            p.requires_grad_(False)
        return [p for p in model.parameters() if p.requires_grad], None
    scaled = params if train_cfg.get("body_lr", 1.0) != 1.0 else None
    return list(model.parameters()), scaled
