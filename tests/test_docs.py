"""The docs cannot go stale silently: every repository path they name exists, every link
lands on a file and a heading that exist, every `grid` command they show is a real
sub-command whose flags its parser accepts, and the README's quickstart output sits between
the markers that benchmarks/readme_quickstart.py rewrites. All in-process and cheap: the
parsers are built, never run."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from benchmarks import readme_quickstart as quickstart
from orchestrator.cli.main import parser as grid_parser

ROOT = Path(__file__).resolve().parents[1]
TOP_DOCS = ("README.md", "BENCHMARKS.md", "CHANGELOG.md")
DOCS = sorted([*(ROOT / name for name in TOP_DOCS), *(ROOT / "docs").glob("*.md")])

# A path under one of these folders, or one of these files, names a file of the repository.
REPO_PATH = re.compile(
    r"(?<![\w/.~-])((?:orchestrator|results|trainers|benchmarks|tests|grids|docs|\.ci)/[\w/.-]*\w"
    r"|(?:README|CHANGELOG|BENCHMARKS)\.md|pyproject\.toml)"
)
# Names that stand for a user's file in an example, not for one of ours.
EXAMPLES = {"grids/x.yaml", "grids/example.yaml", "grids/my_grid.yaml"}


def text(doc: Path) -> str:
    return doc.read_text(encoding="utf-8")


def exists(path: str) -> bool:
    """A file or folder; a module named with what follows it (`slot.GridSlot`,
    `test_x.py::test_y`); or the stem of files (`--out docs/share_sim` writes .png and .svg)."""
    if (ROOT / path).exists():
        return True
    stem = path.split("::")[0].split(".")[0]
    found = (ROOT / stem).exists() or (ROOT / f"{stem}.py").exists()
    return found or any((ROOT / path).parent.glob(f"{Path(path).name}.*"))  # `--out docs/x`


def test_every_repository_path_the_docs_name_exists():
    missing = []
    for doc in DOCS:
        for m in REPO_PATH.finditer(text(doc)):
            path = m.group(1)
            if "*" in path or "<" in path or path in EXAMPLES:
                continue
            if not exists(path):
                missing.append(f"{doc.relative_to(ROOT)}: {path}")
    assert missing == []


LINK = re.compile(r"\]\(([^)\s]+)\)")


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(doc: Path) -> set[str]:
    body = re.sub(r"```.*?```", "", text(doc), flags=re.S)  # a `# comment` is no heading
    return {slug(m.group(1)) for m in re.finditer(r"^#+ (.+)$", body, flags=re.M)}


def test_every_link_lands_on_a_file_and_a_heading():
    broken = []
    for doc in DOCS:
        for target in LINK.findall(text(doc)):
            if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
                continue
            path, _, anchor = target.partition("#")
            linked = (doc.parent / path).resolve() if path else doc
            if not linked.exists():
                broken.append(f"{doc.relative_to(ROOT)}: {target}")
            elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
                broken.append(f"{doc.relative_to(ROOT)}: {target} (no such heading)")
    assert broken == []


def sub_parsers() -> dict[str, argparse.ArgumentParser]:
    """`grid`'s sub-commands and their parsers; `bench` passes its flags on to its own."""
    from trainers import bench

    main = grid_parser()
    (action,) = [a for a in main._actions if isinstance(a, argparse._SubParsersAction)]
    commands = dict(action.choices)
    commands["bench"] = bench.parser()
    commands["--help"] = main
    return commands


# `grid COMMAND ...` in a code span, or at the start of a line of a code block; it ends at a
# comment, a pipe to another program, `&&` or `;`.
COMMAND_SPAN = re.compile(r"`(grid [^`]+)`")
COMMAND_LINE = re.compile(r"^(?:\$ )?(grid [^\n#]+)", flags=re.M)  # indented: output


def commands_in(doc: Path) -> list[str]:
    body = text(doc)
    blocks = "\n".join(re.findall(r"```[^\n]*\n(.*?)```", body, flags=re.S))
    return [*COMMAND_SPAN.findall(body), *COMMAND_LINE.findall(blocks)]


def flags_of(command: str) -> tuple[str, list[str]]:
    """('launch', ['--smoke', '--set']) for `grid launch SPEC [--smoke] [--set K=V]`."""
    words = re.split(r"[\s\[\]|]+", re.split(r" (?:&&|;|\|) | #", command)[0])
    flags = [w.split("=")[0] for w in words[2:] if w.startswith("--") and len(w) > 2]
    return words[1], flags


def test_every_grid_command_the_docs_show_is_real_and_takes_its_flags():
    commands = sub_parsers()
    wrong = []
    for doc in DOCS:
        for command in commands_in(doc):
            name, flags = flags_of(command)
            if not re.fullmatch(r"[a-z-]+", name):  # `grid <word>` in prose: not a command
                continue
            if name not in commands:
                wrong.append(f"{doc.relative_to(ROOT)}: `{command}`: no sub-command {name!r}")
                continue
            accepted = commands[name]._option_string_actions
            for flag in flags:
                if flag not in accepted:
                    wrong.append(f"{doc.relative_to(ROOT)}: `{command}`: {name} has no {flag}")
    assert wrong == []


@pytest.mark.parametrize("marker", [quickstart.START, quickstart.END])
def test_the_readme_marks_the_quickstart_output_for_its_script(marker):
    readme = text(ROOT / "README.md")
    assert readme.count(marker) == 1
    start, end = readme.index(quickstart.START), readme.index(quickstart.END)
    assert start < end and "```" in readme[start:end]


def test_the_quickstart_script_runs_the_readmes_commands_and_keeps_the_rest():
    readme = text(ROOT / "README.md")
    commands = quickstart.quickstart_commands(readme)
    assert [c.split()[1] for c in commands] == ["launch", "table", "report"]
    inside = readme[
        readme.index(quickstart.START) + len(quickstart.START) : readme.index(quickstart.END)
    ]
    assert quickstart.replace_block(readme, inside.strip("\n")) == readme
    new = quickstart.replace_block(readme, "new output")
    assert new.replace("new output", inside.strip("\n")) == readme


def test_the_quickstart_output_is_condensed_without_machine_paths():
    lines = quickstart.condense(
        "q: 1/8 cells done | 7 running\nq: 8/8 cells done | 0 running\nwrote /scratch/q1/r.html\n"
        + "x" * 120,
        "/scratch/q1",
    )
    assert lines[:2] == ["q: 8/8 cells done | 0 running", "wrote ./r.html"]
    assert len(lines[2]) == quickstart.WIDTH and lines[2].endswith(" ...")
    lines = quickstart.condense(
        "Metrics: http://10.1.2.3:35641/metrics\nGrafana: /var/t/ray/session_2026-12-06_04-51/m/\n"
        + "Ray dashboard: http://127.0.0.1:8265",
        "/scratch/q1",
    )
    assert lines == [
        "Metrics: http://<node>:35641/metrics",
        "Grafana: <Ray's session folder>/m/",
        "Ray dashboard: http://127.0.0.1:8265",
    ]
    # a line per cell done: the first kept, the others counted on it
    lines = quickstart.condense(
        "done    67428cfb676c\ndone    db067efd97a7\nq: all 2 cells finished", "/x"
    )
    assert lines == ["done    67428cfb676c   (and 1 more cells done)", "q: all 2 cells finished"]


# A dotted name in backticks that starts with one of our packages: `results.store.base.Fenced`.
DOTTED = re.compile(r"`((?:orchestrator|results|trainers)(?:\.\w+)+)")


def resolves(dotted: str) -> bool:
    """The longest importable module prefix of `dotted`, then the rest as attributes."""
    import importlib

    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attr in parts[cut:]:
            if not hasattr(obj, attr):
                return False
            obj = getattr(obj, attr)
        return True
    return False


def test_every_dotted_name_of_ours_the_docs_give_can_be_imported():
    missing = sorted(
        {
            f"{doc.relative_to(ROOT)}: {m.group(1)}"
            for doc in DOCS
            for m in DOTTED.finditer(text(doc))
            if not resolves(m.group(1))
        }
    )
    assert missing == []


def test_the_readmes_spec_is_the_grid_it_names_abridged():
    """Every value the README's example spec states is the one in the grid file it names."""
    import yaml

    from orchestrator.spec.keys import leaves

    block = re.search(r"## A spec\n\n```yaml\n(.*?)```", text(ROOT / "README.md"), re.S)
    shown = yaml.safe_load(block.group(1).replace(", ...]", "]"))
    named = re.search(r"Launch: grid launch (\S+)", block.group(1)).group(1)
    full = yaml.safe_load((ROOT / named).read_text())
    assert shown["name"] == full["name"]

    stated = leaves({s: shown[s] for s in ("dataset", "model", "train")})
    actual = leaves({s: full[s] for s in ("dataset", "model", "train")})
    assert {k: actual.get(k) for k in stated} == stated
    assert shown["grid"]["lr"] == full["grid"]["lr"]
    assert full["grid"]["arch"][: len(shown["grid"]["arch"])] == shown["grid"]["arch"]
    (table,) = [t for t in full["tables"] if t["over"] == shown["tables"][0]["over"]]
    refs = {r["where"]["arch"]: r["value"] for r in table["reference"]}
    assert {a: refs.get(a) for a in shown["tables"][0]["reference"]} == shown["tables"][0][
        "reference"
    ]
