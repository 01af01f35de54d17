"""The architecture holds: layers import one way (import-linter's contract in
pyproject.toml), no import circle between files."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("trainers", "results", "orchestrator")  # bottom to top


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def source_files() -> dict[str, Path]:
    """Every module of the three packages: dotted name -> file."""
    return {module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def imported(module: str, path: Path, known: set[str]) -> set[str]:
    """The project modules `module` imports anywhere in its file (in functions too): the
    most specific module each import statement names."""
    out = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name in known}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package, up level - 1
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:  # `from pkg import module` names the module
                target = f"{base}.{alias.name}"
                out.add(target if target in known else base)
    return {m for m in out if m in known and m != module}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_layers_import_one_way():
    pytest.importorskip("importlinter")
    # A subprocess in the repository root: import-linter imports the packages from there.
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from importlinter.cli import lint_imports; "
            "sys.exit(lint_imports(config_filename='pyproject.toml'))",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_no_module_below_imports_one_above():
    # The same rule without import-linter: trainers imports neither; results not orchestrator.
    files = source_files()
    for module, path in files.items():
        layer = PACKAGES.index(module.split(".")[0])
        above = {
            m for m in imported(module, path, set(files)) if PACKAGES.index(m.split(".")[0]) > layer
        }
        assert not above, f"{module} imports upward: {sorted(above)}"


def test_no_import_circle_between_files():
    files = source_files()
    graph = {m: imported(m, p, set(files)) for m, p in files.items()}
    assert cycles(graph) == []


def test_the_cycle_finder_finds_one():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


# Ray stays behind the orchestrator: the code that runs on Ray (orchestrator/execution) and
# the halving's Tune scheduler, which is Tune's interface by definition.
RAY_ALLOWED = ("orchestrator.execution", "orchestrator.halving.scheduler")


def _imports_of(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and not node.level:
            out.add(node.module or "")
    return out


def test_only_the_code_that_runs_on_ray_imports_ray():
    importers = sorted(
        module
        for module, path in source_files().items()
        if any(m == "ray" or m.startswith("ray.") for m in _imports_of(path))
    )
    assert importers  # the scan sees the executor's imports
    outside = [m for m in importers if not m.startswith(RAY_ALLOWED)]
    assert outside == [], f"import ray outside {RAY_ALLOWED}: {outside}"


def _store_private_methods() -> set[str]:
    from results.store.base import Store
    from results.store.local import LocalStore
    from results.store.s3 import S3Store

    return {
        name
        for cls in (Store, LocalStore, S3Store)
        for name in vars(cls)
        if name.startswith("_") and not name.startswith("__")
    }


def test_no_code_outside_the_store_calls_its_private_methods():
    """The store is one interface: its callers (the product, benchmarks and tests) use its
    public methods; only results/store/ itself reaches inside."""
    private = _store_private_methods()
    assert {"_fence", "_listing"} <= private  # the scan sees the store's private names
    files = [
        p
        for folder in (*PACKAGES, "benchmarks", "tests")
        for p in sorted((ROOT / folder).rglob("*.py"))
        if not p.is_relative_to(ROOT / "results" / "store") and p != Path(__file__).resolve()
    ]
    found = []
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            reached = (
                isinstance(node, ast.Attribute)
                and node.attr in private
                and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))
            )
            if reached:
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} .{node.attr}")
            if isinstance(node, ast.Constant) and node.value == "_memo":
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} '_memo'")
    assert found == []
