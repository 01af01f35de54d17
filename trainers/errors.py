"""The one user-facing error type and its did-you-mean hint, at the bottom layer.

Trainers, results and the orchestrator all raise `GridError` for bad input; the CLI prints
it and exits with its `exit_status` (2; a store that could not be reached: 3), without a
traceback. It lives here, in the lowest layer, so that no layer
imports upward to raise it.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any


class GridError(Exception):
    """Bad input from the user: a spec, a flag, a data root or a store.

    The message names the file and the key, one problem per line.
    """

    exit_status = 2  # the `grid` program's status for it (docs/launching.md, "Exit statuses")


def did_you_mean(name: Any, choices: Iterable[Any]) -> str:
    """' (did you mean 'x'?)' when a choice is close to `name`, else ''."""
    close = difflib.get_close_matches(str(name), [str(c) for c in choices], n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


class CheckpointError(Exception):
    """A checkpoint that cannot be restored into this cell (another code version's layout,
    a torn state). Not the user's mistake and not worth a retry: the caller discards the
    checkpoint and trains the cell from its first epoch."""
