"""Start-up of the commands that only read results: pyarrow imports pandas (0.2-0.4 s and
60 MB on a loaded 2-core machine, a fifth of `grid status` on the quickstart) the first
time it converts Python values, only to ask whether they are pandas objects. Ours never are:
nothing in `results/` or `orchestrator/` uses pandas.

`block()` makes `import pandas` fail for the rest of the process, so pyarrow records that
it has no pandas (and its C++ side skips pandas' null types) without importing it. Only the
`grid` program's own read-only commands call it (orchestrator/cli/main.py), as the whole process:
a program that imported `main` and calls it keeps pandas, and so does any process that
imported pandas already.
"""

from __future__ import annotations

import importlib.abc
import sys


class _Blocked(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "pandas" or name.startswith("pandas."):
            raise ModuleNotFoundError(f"{name}: not imported by this grid command", name=name)
        return None


def block() -> None:
    """Make `import pandas` fail in this process, unless pandas is imported already."""
    if "pandas" in sys.modules or any(isinstance(f, _Blocked) for f in sys.meta_path):
        return
    sys.meta_path.insert(0, _Blocked())
