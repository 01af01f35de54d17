"""The docs' pictures of the tree match the tree: README's Layout block names every
sub-package (and nothing that is gone), and docs/design.md's tree names every module. That
every path and command the docs name exists: tests/test_docs.py."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def fenced_block_after(path: Path, heading: str) -> str:
    text = path.read_text(encoding="utf-8")
    after = text[text.index(heading) :]
    return after.split("```", 2)[1]


def sub_packages(top: str) -> set[str]:
    return {
        f"{p.parent.relative_to(ROOT)}/"
        for p in (ROOT / top).rglob("__init__.py")
        if p.parent != ROOT / top and "models" not in p.parent.parts
    }


def test_readme_layout_names_every_sub_package_and_only_what_exists():
    block = fenced_block_after(ROOT / "README.md", "## Layout")
    named = {line.split()[0] for line in block.splitlines() if line.strip() and line[0] != " "}
    assert all((ROOT / n).exists() for n in named), sorted(
        n for n in named if not (ROOT / n).exists()
    )
    for top in ("orchestrator", "results"):
        assert sub_packages(top) <= named, sorted(sub_packages(top) - named)
    assert {"trainers/", "grids/", "tests/", "benchmarks/"} <= named


def design_tree_modules() -> set[str]:
    """The modules docs/design.md's tree names, as paths: a line that starts with a package
    (`orchestrator/`) or a sub-package (`spec/`) opens it, and every `x.py` is in the last
    one opened."""
    block = fenced_block_after(ROOT / "docs/design.md", "names (tests/test_docs_layout.py")
    top = sub = ""
    named = set()
    for line in block.splitlines():
        first = line.split()[0] if line.split() else ""
        if first in ("orchestrator/", "results/", "trainers/"):
            top, sub = first, ""
        elif first.endswith("/") and line.startswith("   ") and not line.startswith("    " * 4):
            sub = first
        named |= {f"{top}{sub}{m}" for m in re.findall(r"\b\w+\.py\b", line)}
    return named


def test_design_tree_names_every_module_and_only_modules_that_exist():
    modules = {
        str(p.relative_to(ROOT))
        for top in ("orchestrator", "results")
        for p in (ROOT / top).rglob("*.py")
        if p.parent != ROOT / top and p.stem not in ("__init__", "__main__")
    }
    modules |= {
        str(p.relative_to(ROOT)) for p in (ROOT / "trainers").glob("*.py") if p.stem != "__init__"
    }
    listed = design_tree_modules()
    assert sorted(modules - listed) == []
    assert sorted(listed - modules) == []
