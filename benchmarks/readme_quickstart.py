"""The README's quickstart, run as a new user runs it, and its output written back into the
README between `<!-- quickstart-output -->` and `<!-- /quickstart-output -->`.

The commands are read from the README's quickstart block itself (its lines that start with
`grid `), so the README cannot show one command and this script run another. They run in a
fresh folder (so `./runs` starts empty and the launch trains every cell) as the `grid`
program, `python -m orchestrator.cli`, from this checkout. The launch starts a local Ray and
trains the 8 quickstart cells: about 2 minutes on 2 CPU cores.

    PYTHONPATH=. python benchmarks/readme_quickstart.py           # run, rewrite README.md
    PYTHONPATH=. python benchmarks/readme_quickstart.py --print   # run, print the block only

Then read the diff: the numbers change from run to run (wall times, and the accuracies where
the code changed), the shape should not.
"""

from __future__ import annotations

import argparse
import datetime
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
START, END = "<!-- quickstart-output -->", "<!-- /quickstart-output -->"
WIDTH = 100  # longer lines end in " ..." (the dashboard's login hint, the progress line)
RAY_SESSION = re.compile(r"\S*/session_[\w.-]+")
NODE_URL = re.compile(r"http://(?!127\.0\.0\.1)[\d.]+:(\d+)")
DONE = re.compile(r"^done\s+[0-9a-f]{12}$")
PROGRESS = re.compile(r"^\S+: \d+/\d+ cells done \|")  # a launch's progress, printed repeatedly


def quickstart_commands(readme: str) -> list[str]:
    """The `grid ...` lines of the first code block after the Quickstart heading."""
    after = readme[readme.index("## Quickstart") :]
    block = after.split("```", 2)[1]
    lines = [line.split("#")[0].strip() for line in block.splitlines()]
    return [line for line in lines if line.startswith("grid ")]


def condense(output: str, folder: str) -> list[str]:
    """The lines a reader needs: the last progress line only, no machine paths, no long lines."""
    lines = [line.rstrip() for line in output.replace(folder, ".").splitlines() if line.strip()]
    home = str(Path.home())
    lines = [line.replace(home, "~") if len(home) > 1 else line for line in lines]
    # Ray's session folder and this node's address are this machine's, not the reader's
    lines = [RAY_SESSION.sub("<Ray's session folder>", line) for line in lines]
    lines = [NODE_URL.sub(r"http://<node>:\1", line) for line in lines]
    progress = [i for i, line in enumerate(lines) if PROGRESS.match(line)]
    drop = set(progress[:-1])
    done = [i for i, line in enumerate(lines) if DONE.match(line)]  # a line per cell: keep one
    if len(done) > 1:
        lines[done[0]] += f"   (and {len(done) - 1} more cells done)"
        drop |= set(done[1:])
    kept = [line for i, line in enumerate(lines) if i not in drop]
    return [line if len(line) <= WIDTH else line[: WIDTH - 4] + " ..." for line in kept]


def run(command: str, folder: str) -> tuple[list[str], float]:
    """`grid ARGS` as the program, in `folder`; its output, condensed, and its wall time."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": str(WIDTH)}
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", *shlex.split(command)[1:]],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
    )
    wall = time.monotonic() - started
    if done.returncode != 0:
        sys.exit(f"{command}: exit {done.returncode}\n{done.stdout}{done.stderr}")
    return condense(done.stdout + done.stderr, folder), wall


def git_commit() -> str:
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True)
    return out.stdout.decode().strip() or "unknown"


def block(commands: list[str]) -> str:
    """Run the commands in a fresh folder; the text that goes between the markers."""
    with tempfile.TemporaryDirectory(prefix="quickstart-") as folder:
        (Path(folder) / "grids").symlink_to(ROOT / "grids")  # `grids/quickstart.yaml` as typed
        lines, walls = [], []
        for command in commands:
            out, wall = run(command, folder)
            lines += out
            walls.append(wall)
    minutes, seconds = divmod(round(walls[0]), 60)
    today = datetime.date.today().isoformat()
    head = (
        f"Its output on {os.cpu_count()} CPU cores ({today}, commit {git_commit()}, launch "
        f"{minutes} min {seconds:02d} s; `benchmarks/readme_quickstart.py` reruns it):"
    )
    return "\n".join([head, "", "```", *lines, "```"])


def replace_block(readme: str, text: str) -> str:
    """The README with `text` between the markers (the markers stay)."""
    start, end = readme.index(START) + len(START), readme.index(END)
    return readme[:start] + "\n" + text + "\n" + readme[end:]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--print", action="store_true", help="print the block; leave README.md")
    args = p.parse_args(argv)
    readme = README.read_text(encoding="utf-8")
    text = block(quickstart_commands(readme))
    if args.print:
        print(text)
    else:
        README.write_text(replace_block(readme, text), encoding="utf-8")
        print(f"README.md: the quickstart output rewritten ({text.count(chr(10)) + 1} lines)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
