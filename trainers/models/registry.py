"""The model registry: names -> factories, their aliases, and the decorators that fill it.

Its own module (not the package's `__init__`) so that the family files import it without
importing the package that imports them: no import circle.
"""

from __future__ import annotations

import fnmatch
import functools
from collections.abc import Callable
from typing import Any

from torch import nn

from trainers import names
from trainers.errors import GridError, did_you_mean

MODELS: dict[str, Callable[..., nn.Module]] = {}
ALIASES = names.ALIASES  # the one alias table (trainers/names.py, torch-free)


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Register a model factory under its function name (the decorator of this registry)."""
    MODELS[fn.__name__] = fn
    return fn


def list_models(pattern: str = "*") -> list[str]:
    """Sorted canonical model names matching the fnmatch `pattern`, e.g. "allcnn*"."""
    return sorted(n for n in MODELS if fnmatch.fnmatchcase(n, pattern))


def preset(
    name: str, cls: Callable[..., nn.Module], *args: Any, doc: str | None = None
) -> Callable[..., nn.Module]:
    """Register `cls(*args, **options)` as the model `name`: a named preset that holds only
    numbers (a layer table, block counts). Its signature is `cls`'s, less `args`."""
    factory = functools.partial(cls, *args)
    factory.__name__, factory.__doc__ = name, doc or cls.__doc__
    return register_model(factory)


def canonical_name(name: Any) -> str | None:
    """The registered name of `name` or of its alias (any case); None when unknown."""
    if not isinstance(name, str):
        return None
    return name if name in MODELS else ALIASES.get(name.lower())


def resolve_name(name: str) -> str:
    """The canonical name of `name` (an alias resolves); GridError naming `model.arch`."""
    if canonical_name(name) is not None:
        return canonical_name(name)
    names = list_models()
    raise GridError(
        f"model.arch: unknown model {name!r}"
        f"{did_you_mean(name, names + sorted(ALIASES))}; "
        f"choose from {', '.join(names)}"
    )
