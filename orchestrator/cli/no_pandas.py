"""Start-up of the commands that only read results: pyarrow imports pandas (0.2-0.4 s and
60 MB on a loaded 2-core machine, a fifth of `grid status` on the quickstart) the first
time it converts Python values, only to ask whether they are pandas objects. Ours never are:
nothing in `results/` or `orchestrator/` uses pandas.

pyarrow asks once and remembers the answer. `skip()` has it ask now, while a finder on
`sys.meta_path` makes `import pandas` fail, and takes the finder away again at once: pyarrow
goes on without pandas, and every other library imports or looks up pandas as usual. A
finder left in place broke them: torch._dynamo asks `importlib.util.find_spec("pandas")`
when `grid plan --estimate` trains a few steps, and got the finder's exception (issue 33).

Only the `grid` program's own read-only commands call it (orchestrator/cli/main.py), as the
whole process: a program that imported `main` and calls it keeps pandas, and so does any
process that imported pandas already.
"""

from __future__ import annotations

import importlib.abc
import sys


class _Blocked(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "pandas" or name.startswith("pandas."):
            raise ModuleNotFoundError(f"{name}: not imported by this grid command", name=name)
        return None


def skip() -> None:
    """Have pyarrow decide, once for this process, that there is no pandas (unless pandas
    is imported already); pandas itself stays importable."""
    if "pandas" in sys.modules:
        return
    blocked = _Blocked()
    sys.meta_path.insert(0, blocked)
    try:
        import pyarrow

        pyarrow.array([])  # its first conversion asks for pandas (pyarrow/pandas-shim.pxi)
    finally:
        sys.meta_path.remove(blocked)
