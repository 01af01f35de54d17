"""The value checkers of the config's leaves: each takes a value and returns (error or None,
the value in canonical form). `trainers/config.py` assigns one to every key."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from trainers.errors import did_you_mean


def _show(v: Any) -> str:
    return f"'{v}'" if isinstance(v, str) else repr(v)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def choice(options: Callable[[], list[str]] | tuple, what: str):
    def check(v):
        names = options() if callable(options) else options
        if v in names:
            return None, v
        if not isinstance(v, str):
            return f"expected a {what} name, got {_show(v)}", v
        return f"unknown {what} '{v}'{did_you_mean(v, names)}; choose from {', '.join(names)}", v

    return check


def number(
    lo: float | None = None,
    lo_open: bool = True,
    hi: float | None = None,
    hi_open: bool = False,
    integer: bool = False,
    optional: bool = False,
):
    def check(v):
        if v is None and optional:
            return None, v
        if integer and not (isinstance(v, int) and not isinstance(v, bool)):
            return f"expected an integer, got {_show(v)}", v
        if not _is_number(v):
            return f"expected a number, got {_show(v)}", v
        if lo is not None and (v <= lo if lo_open else v < lo):
            return f"must be {'>' if lo_open else '>='} {lo}, got {v}", v
        if hi is not None and (v >= hi if hi_open else v > hi):
            return f"must be {'<' if hi_open else '<='} {hi}, got {v}", v
        return None, (v if integer else float(v))

    return check


def boolean(v):
    return (None, v) if isinstance(v, bool) else (f"expected true or false, got {_show(v)}", v)


def tri_state(v):
    """'auto' or a bool."""
    if v == "auto" or isinstance(v, bool):
        return None, v
    return f"expected auto, true or false, got {_show(v)}", v


def optional_str(v):
    return (None, v) if v is None or isinstance(v, str) else (f"expected a path, got {_show(v)}", v)


def str_list(options: tuple, what: str):
    def check(v):
        if not isinstance(v, list):
            return f"expected a list of {what} names, got {_show(v)}", v
        for x in v:
            err, _ = choice(options, what)(x)
            if err:
                return err, v
        return None, sorted(set(v))  # order does not change training: one canonical form

    return check


def count_or_counts(v):
    """A positive integer, or a non-empty list of them (one per layer)."""
    ok = lambda x: isinstance(x, int) and not isinstance(x, bool) and x >= 1  # noqa: E731
    if ok(v) or (isinstance(v, list) and v and all(ok(x) for x in v)):
        return None, v
    return f"expected a positive integer or a list of them, got {_show(v)}", v


def milestones(v):
    if not isinstance(v, list) or not all(
        isinstance(x, int) and not isinstance(x, bool) and x > 0 for x in v
    ):
        return f"expected a list of positive epoch numbers, got {_show(v)}", v
    return None, sorted(v)


def auto_or_count(v):
    """'auto' or a positive integer."""
    if v == "auto":
        return None, v
    return number(0, integer=True)(v)


def same_or_pixels(v):
    """'same' or a whole number of pixels (>= 0)."""
    if v == "same" or number(0, lo_open=False, integer=True)(v)[0] is None:
        return None, v
    return f"must be same or a whole number >= 0, got {_show(v)}", v


def device(v):
    if isinstance(v, str) and (v in ("auto", "cpu", "cuda") or v.startswith("cuda:")):
        return None, v
    return f"expected auto, cpu, cuda or cuda:N, got {_show(v)}", v
