"""Weight-init registry: a name -> `fn(model, batch) -> None` that initialises in place.

Init is explicit (the loop calls `init_model` after `create_model`), not hidden in the model
constructors. Every init but `default` touches the conv and linear weights (Maxout's own 1x1
conv included), zeroes their biases and resets batch norm to weight 1, bias 0. Other
parameters (PReLU slopes) keep their constructor values.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from trainers.errors import GridError, did_you_mean

InitFn = Callable[[nn.Module, "torch.Tensor | None"], None]
INITS: dict[str, InitFn] = {}

WEIGHTED = (nn.Conv2d, nn.Linear)
NORMS = (nn.BatchNorm1d, nn.BatchNorm2d)
# LSUV (Mishkin & Matas, 2016, Algorithm 1): target output variance 1, Tol_var = 0.1,
# at most T_max = 10 rescaling passes per layer.
LSUV_TOL = 0.1
LSUV_MAX_ITERS = 10
LSUV_DEAD_VAR = 1e-8  # an output this flat (a dead layer) cannot be rescaled to variance 1


def register_init(fn: InitFn) -> InitFn:
    """Register `fn` under its own name (the decorator of this registry)."""
    INITS[fn.__name__] = fn
    return fn


def _apply(model: nn.Module, weight_init: Callable[[torch.Tensor], object]) -> None:
    """`weight_init` on every conv/linear weight; zero biases; batch norm to identity."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, WEIGHTED):
                weight_init(m.weight)
                if m.bias is not None:
                    m.bias.zero_()
            elif isinstance(m, NORMS) and m.affine:
                m.weight.fill_(1.0)
                m.bias.zero_()


def negative_slope(model: nn.Module) -> float:
    """The rectifier slope `a` in He's gain sqrt(2 / (1 + a^2)): a LeakyReLU's slope, a
    PReLU's mean slope (0.25 at creation, the case He et al. derive), else 0, the ReLU gain,
    which is also the usual choice for ELU, GELU, SiLU, Mish and maxout."""
    for m in model.modules():
        if isinstance(m, nn.LeakyReLU):
            return float(m.negative_slope)
        if isinstance(m, nn.PReLU):
            return float(m.weight.detach().mean())
    return 0.0


@register_init
def default(model: nn.Module, batch: torch.Tensor | None = None) -> None:
    """Leave PyTorch's own init (Kaiming-uniform with a=sqrt(5)) untouched."""


@register_init
def xavier_uniform(model: nn.Module, batch: torch.Tensor | None = None) -> None:
    """Glorot & Bengio (2010), uniform, gain 1 (Keras' glorot_uniform); seed 000's choice."""
    _apply(model, nn.init.xavier_uniform_)


@register_init
def xavier_normal(model: nn.Module, batch: torch.Tensor | None = None) -> None:
    """Glorot & Bengio (2010), normal, gain 1."""
    _apply(model, nn.init.xavier_normal_)


@register_init
def he_normal(model: nn.Module, batch: torch.Tensor | None = None) -> None:
    """He et al. (2015): N(0, 2 / ((1 + a^2) fan_in)), the NIN lab's "He's WI" (seed 004)."""
    a = negative_slope(model)
    _apply(
        model, lambda w: nn.init.kaiming_normal_(w, a=a, mode="fan_in", nonlinearity="leaky_relu")
    )


@register_init
def he_uniform(model: nn.Module, batch: torch.Tensor | None = None) -> None:
    """He et al. (2015), uniform with the same variance as he_normal."""
    a = negative_slope(model)
    _apply(
        model, lambda w: nn.init.kaiming_uniform_(w, a=a, mode="fan_in", nonlinearity="leaky_relu")
    )


@register_init
def orthogonal(model: nn.Module, batch: torch.Tensor | None = None) -> None:
    """Saxe et al. (2014) orthogonal weights, scaled by the rectifier gain (sqrt(2) for ReLU)
    so the signal does not halve at every ReLU (why He init doubles Xavier's variance)."""
    gain = math.sqrt(2.0 / (1.0 + negative_slope(model) ** 2))
    _apply(model, lambda w: nn.init.orthogonal_(w, gain=gain))


class _Stop(Exception):
    """Raised by the capture hook: the rest of the forward pass is not needed."""


def _forward_order(model: nn.Module, batch: torch.Tensor) -> list[nn.Module]:
    """The conv/linear layers in the order the forward pass first calls them."""
    order: list[nn.Module] = []
    handles = [
        m.register_forward_hook(lambda mod, i, o: order.append(mod))
        for m in model.modules()
        if isinstance(m, WEIGHTED)
    ]
    try:
        model(batch)
    finally:
        for h in handles:
            h.remove()
    return list(dict.fromkeys(order))  # a layer called twice counts once, at its first call


def _output_var(model: nn.Module, layer: nn.Module, batch: torch.Tensor) -> float:
    """The variance of `layer`'s output on `batch`, stopping the forward pass right there
    (and before an in-place activation overwrites the output)."""
    captured: list[float] = []

    def hook(module: nn.Module, inputs, output) -> None:
        captured.append(output.detach().float().var().item())
        raise _Stop

    handle = layer.register_forward_hook(hook)
    try:
        model(batch)
    except _Stop:
        pass
    finally:
        handle.remove()
    return captured[0]


@register_init
def lsuv(model: nn.Module, batch: torch.Tensor | None = None) -> None:
    """Layer-sequential unit-variance init (Mishkin & Matas, 2016): orthonormal weights, then
    layer by layer in forward order, divide each weight by the std of its output on `batch`
    until that variance is within LSUV_TOL of 1. Runs in eval mode (no dropout noise; batch
    norm uses its fresh running stats, an identity); every module's mode is restored."""
    if not isinstance(batch, torch.Tensor) or not batch.is_floating_point():
        # The loop passes the batch: a missing one is the caller's bug, not a user error.
        raise ValueError("lsuv init needs a data batch (float N x 3 x 32 x 32)")
    _apply(model, nn.init.orthogonal_)
    param = next(model.parameters())
    batch = batch.to(device=param.device, dtype=param.dtype)
    modes = {m: m.training for m in model.modules()}
    model.eval()
    try:
        with torch.no_grad():
            for layer in _forward_order(model, batch):
                for _ in range(LSUV_MAX_ITERS):
                    var = _output_var(model, layer, batch)
                    if not math.isfinite(var) or var < LSUV_DEAD_VAR or abs(var - 1.0) < LSUV_TOL:
                        break
                    layer.weight.div_(math.sqrt(var))
    finally:
        for m, training in modes.items():
            m.training = training


def init_model(model: nn.Module, name: str, batch: torch.Tensor | None = None) -> None:
    """Initialise `model` in place with the init registered as `name`; `batch` (float
    N x 3 x 32 x 32) is needed by data-dependent inits (lsuv). An unknown name raises
    GridError naming `model.init`."""
    if name not in INITS:
        names = sorted(INITS)
        raise GridError(
            f"model.init: unknown init {name!r}"
            f"{did_you_mean(name, names)}; choose from {', '.join(names)}"
        )
    INITS[name](model, batch)
