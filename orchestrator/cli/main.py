"""The `grid` command. Each subcommand is a few lines: parse, load, call the part that works.

Bad input (a GridError) is printed as one line per problem on stderr with exit status 2,
never as a traceback; a store that could not be reached (results/store/base.py,
`StoreUnreachable`) as one line with exit status 3 (EXIT_STATUSES).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable

from rich.console import Console
from rich.table import Table

from trainers.errors import GridError

COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {}

EXIT_STATUSES = """exit statuses:
  0  done: every cell finished (launch), the command did what it was asked
  1  not done: cells did not finish, another launch holds the grid, or a hole (--strict)
  2  bad input: a spec, a flag, a data root or a store's address (fix it, then rerun)
  3  the store could not be reached (no answer, a timeout, a 5xx): rerun once it answers
  130  interrupted (Ctrl-C); a launch whose trials had started exits 1, saying how far
       each cell got (the next launch resumes them from their checkpoints)"""


def command(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    COMMANDS[fn.__name__.removeprefix("cmd_")] = fn
    return fn


def _load(args: argparse.Namespace):
    from orchestrator.spec.load import load_spec, smoke

    path = args.spec
    if getattr(args, "from_submit", False):  # the driver of a --submit job: from its env
        from orchestrator.execution.submit import spec_from_env

        path = spec_from_env(path)
    spec = load_spec(path, getattr(args, "set", None) or ())
    return smoke(spec) if getattr(args, "smoke", False) else spec


def expected_cells(spec) -> list[dict] | None:
    """The flat configs (with `key`) of every cell `spec` defines, as the results layer's
    tables and plots take them; None when `spec` cannot be expanded (a stand-in without
    the base config)."""
    from orchestrator.spec.expand import expand
    from results.store.schema import flat_config

    try:
        cells = expand(spec)
    except (AttributeError, TypeError, KeyError):
        return None
    return [{"key": c.key, **flat_config(c.config)} for c in cells]


@command
def cmd_plan(args: argparse.Namespace) -> int:
    from orchestrator.cli.plan import plan_command

    at_least_one("--slots", args.slots)
    return plan_command(
        _load(args), as_json=args.json, estimate=args.estimate, device=args.device, slots=args.slots
    )


@command
def cmd_launch(args: argparse.Namespace) -> int:
    at_least_one("--max-concurrent", args.max_concurrent)
    spec = _load(args)
    from orchestrator.stages.launch import launcher  # a stage (stage: in the spec): parents first

    launch = launcher(spec, args)
    share = launch_share(args)
    if args.submit or args.follow:  # a Ray Job on a running cluster
        from orchestrator.execution.submit import submit_command

        return submit_command(spec, args, share)
    return launch(
        spec,
        store_uri=args.store,
        address=args.address,
        max_concurrent=args.max_concurrent,
        force=args.force,
        dry_run=args.dry_run,
        wait=args.wait,
        dashboard_host=args.dashboard_host,
        yes=args.yes,
        share=share,
    )


def at_least_one(flag: str, value: int | None) -> None:
    """A count of trials that is given must be one or more (0 would run nothing, or, passed
    on as Tune's "no limit", everything at once)."""
    if value is not None and value < 1:
        raise GridError(f"{flag} {value}: at least 1 (leave it out for the default)")


def launch_share(args: argparse.Namespace) -> dict:
    """The launch's part in a shared cluster: owner, weight, priority (checked)."""
    import getpass
    import math

    if not (math.isfinite(args.weight) and args.weight > 0):
        raise GridError(f"--weight {args.weight:g}: a weight is a number above 0 (default 1)")
    return {
        "owner": args.owner or getpass.getuser(),
        "weight": args.weight,
        "priority": args.priority,
    }


@command
def cmd_status(args: argparse.Namespace) -> int:
    from orchestrator.cli.status import status_command
    from results.store import open_store

    if args.cluster:
        if args.spec is not None:
            raise GridError("status --cluster lists every grid on the cluster: give no spec")
        from orchestrator.cli.cluster import cluster_command
        from orchestrator.execution.arbiter import cluster_launches

        return cluster_command(cluster_launches(args.address), as_json=args.json)
    if args.spec is None:
        raise GridError("status: give a spec (grids/NAME.yaml), or --cluster")
    return status_command(
        _load(args), open_store(args.store), as_json=args.json, all_cells=args.all
    )


@command
def cmd_train(args: argparse.Namespace) -> int:
    from orchestrator.execution.progress import epoch_line
    from orchestrator.spec.expand import expand
    from trainers import runtime
    from trainers.loop import train

    spec = _load(args)
    cells = expand(spec)
    if args.cell:
        cells = [t for t in cells if t.key.startswith(args.cell)]
        if len(cells) != 1:
            raise GridError(
                f"--cell {args.cell}: matches {len(cells)} cells of {spec.name} "
                f"(see `grid plan {args.spec}` for the keys)"
            )
    cell = cells[0]
    try:  # a device this machine lacks: said with the spec's file, before any work
        runtime.resolve_device(cell.config["train"]["device"])
    except GridError as e:
        raise GridError(f"{spec.path}: {e}") from None
    console = Console()
    console.print(f"cell {cell.key}: {cell.params}")

    def report(m: dict, _state: dict) -> None:
        console.print(epoch_line(m, cell.config["train"]["epochs"]), highlight=False)

    summary = train(cell.config, report)
    console.print(
        f"{summary['status']} after {summary['epochs']} epochs, "
        f"{summary['wall_s']:.1f}s on {summary['device']}"
    )
    return 0


@command
def cmd_models(args: argparse.Namespace) -> int:
    from trainers.models import (
        PAPER_PARAMS,
        PAPER_PARAMS_BN,
        count_params,
        create_model,
        list_models,
    )

    rows = [
        {
            "name": n,
            "params": count_params(create_model(n, num_classes=10)),
            "paper_params": PAPER_PARAMS.get(n),
            "params_bn": count_params(create_model(n, num_classes=10, batch_norm=True)),
            "paper_params_bn": PAPER_PARAMS_BN.get(n),
        }
        for n in list_models()
    ]
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    table = Table(title="models (10 classes, width 1)", title_justify="left")
    for col in ("name", "params", "paper says", "with batch norm", "paper says (BN)"):
        table.add_column(col, justify="left" if col == "name" else "right")
    for r in rows:
        paper = f"~{r['paper_params']:,}" if r["paper_params"] else ""
        paper_bn = f"{r['paper_params_bn']:,}" if r["paper_params_bn"] else ""
        table.add_row(r["name"], f"{r['params']:,}", paper, f"{r['params_bn']:,}", paper_bn)
    console = Console()
    console.print(table)
    console.print(
        "Counts follow the papers' layer tables; for model_b and model_c the papers' "
        "own approximate counts disagree with those tables. Seed 003's counts are with "
        "batch norm: resnet12 and densenet59 differ (docs/grids.md says why)."
    )
    return 0


@command
def cmd_table(args: argparse.Namespace) -> int:
    from results.store import open_store
    from results.tables.build import table_command

    spec = _load(args)
    return table_command(
        spec,
        open_store(args.store),
        fmt=args.format,
        out=args.out,
        expected=expected_cells(spec),
        strict=args.strict,
        full=args.full,
    )


@command
def cmd_plot(args: argparse.Namespace) -> int:
    from results.figures.plots import plot_command
    from results.store import open_store

    spec = _load(args)
    return plot_command(
        spec,
        open_store(args.store),
        args.out,
        fmt=args.format,
        size=args.size,
        expected=expected_cells(spec),
    )


@command
def cmd_report(args: argparse.Namespace) -> int:
    from results.report.page import report_command
    from results.store import open_store

    if args.watch is not None and args.watch <= 0:
        raise GridError(f"--watch {args.watch:g}: the seconds between rewrites must be > 0")
    if args.watch_count is not None and (args.watch is None or args.watch_count < 1):
        raise GridError("--watch-count: needs --watch, and a count of at least 1")
    spec = _load(args)
    try:
        return report_command(
            spec,
            open_store(args.store),
            args.out,
            expected_cells(spec),
            every=args.watch,
            rounds=args.watch_count,
        )
    except OSError as e:
        raise GridError(f"--out {args.out}: cannot write the report: {e.strerror or e}") from None


@command
def cmd_bench(args: argparse.Namespace) -> int:
    from trainers.bench import main as bench_main

    rest = args.bench_args
    return bench_main(rest[1:] if rest[:1] == ["--"] else rest)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="grid",
        description="Deep-learning benchmark grids as "
        "Ray Tune trials, with Parquet results and the papers' tables.",
        epilog=EXIT_STATUSES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def spec_cmd(name: str, help: str, optional: bool = False) -> argparse.ArgumentParser:
        s = sub.add_parser(name, help=help, description=help)
        s.add_argument(
            "spec",
            nargs="?" if optional else None,
            help="grid spec YAML, e.g. grids/quickstart.yaml",
        )
        s.add_argument(
            "--set",
            action="append",
            metavar="KEY=VALUE",
            default=[],
            help="override a config value or axis (repeatable), e.g. lr=[0.1,0.05]",
        )
        return s

    s = spec_cmd("plan", "validate a spec and list its cells with their keys")
    s.add_argument("--json", action="store_true", help="machine-readable output")
    s.add_argument("--smoke", action="store_true", help="plan the --smoke variant")
    s.add_argument(
        "--estimate",
        action="store_true",
        help="time a few real steps of each "
        "kind of unit here and estimate the grid's device-hours and wall time",
    )
    s.add_argument("--device", default="auto", help="with --estimate: auto, cpu, cuda[:N]")
    s.add_argument(
        "--slots",
        type=int,
        help="with --estimate: trials at once (default: "
        "this machine's GPUs, or CPUs / resources.cpu)",
    )
    s = spec_cmd("launch", "run the grid's missing cells as Ray Tune trials")
    s.add_argument("--store", help="result store: a folder (default ./runs) or s3://bucket/prefix")
    s.add_argument(
        "--address",
        help="join an existing Ray cluster (auto, ray://host:10001, "
        "host:port); default: RAY_ADDRESS, else start a local Ray",
    )
    s.add_argument(
        "--smoke",
        action="store_true",
        help="the grid shrunk to seconds per cell, under the name <grid>-smoke",
    )
    s.add_argument("--max-concurrent", type=int, help="at most N trials at once")
    s.add_argument(
        "--force",
        action="store_true",
        help="rerun finished cells too, from scratch (a result is only replaced "
        "once its rerun finished)",
    )
    s.add_argument(
        "--wait",
        action="store_true",
        help="when another launch holds the grid, wait for it instead of exiting 1",
    )
    s.add_argument("--dry-run", action="store_true", help="say what would run; start nothing")
    s.add_argument(
        "--with-parents",
        action="store_true",
        help="a stage (stage: in the spec): first train the parent cells it needs that "
        "have no finished result with kept weights",
    )
    s.add_argument(
        "--yes",
        action="store_true",
        help="start a launch of many CPU-hours on a machine without a GPU without asking",
    )
    s.add_argument(
        "--dashboard-host",
        default="127.0.0.1",
        help="interface the local Ray dashboard binds to (default: localhost only)",
    )
    s.add_argument(
        "--weight",
        type=float,
        default=1.0,
        help="this grid's share of a shared cluster against the other grids' weights "
        "(default 1; docs/cluster.md, Sharing a cluster)",
    )
    s.add_argument(
        "--priority",
        type=int,
        default=0,
        help="a grid of higher priority gets the slots it can use before any of lower "
        "priority (default 0)",
    )
    s.add_argument("--submit", action="store_true", help="as a Ray Job: --address http://HEAD:8265")
    s.add_argument("--follow", action="store_true", help="with --submit: stream its log")
    s.add_argument("--from-submit", action="store_true", help=argparse.SUPPRESS)
    s.add_argument("--owner", help=argparse.SUPPRESS)  # a --submit job's: who submitted it
    s = spec_cmd("status", "per-cell status from the result store (no Ray)", optional=True)
    s.add_argument(
        "--cluster",
        action="store_true",
        help="instead: every grid on the Ray cluster (--address, default RAY_ADDRESS or "
        "auto), its owner, weight, priority, slots held, cells done and left, its finish",
    )
    s.add_argument("--address", help="with --cluster: the Ray cluster (host:port)")
    s.add_argument("--store")
    s.add_argument("--smoke", action="store_true")
    s.add_argument("--json", action="store_true")
    s.add_argument(
        "--all", action="store_true", help="list every cell (default: at most 200, unfinished)"
    )
    s = spec_cmd("train", "train one cell in this process, without Ray: the way to debug a cell")
    s.add_argument("--cell", metavar="KEY", help="the cell's key (or a prefix); default: first")
    s.add_argument("--smoke", action="store_true")
    s = sub.add_parser("models", help="list the architectures with their parameter counts")
    s.add_argument("--json", action="store_true")
    s = spec_cmd("table", "the spec's comparison tables from the results, beside the papers'")
    s.add_argument("--store")
    s.add_argument("--smoke", action="store_true")
    s.add_argument("--format", default="rich", choices=["rich", "markdown", "latex", "csv", "html"])
    s.add_argument("--out", help="write to this file instead of the terminal")
    s.add_argument(
        "--strict",
        action="store_true",
        help="exit 1 when a table has a hole (a failed, missing or unfinished cell)",
    )
    s.add_argument(
        "--full",
        action="store_true",
        help="every value of a table's `over` "
        "axis as a column (a number, div or stopped @rung) instead of the pick",
    )
    s = spec_cmd("plot", "the figures of the spec's tables: learning curves, metric vs lr")
    s.add_argument("--store")
    s.add_argument("--smoke", action="store_true")
    s.add_argument("--out", required=True, help="folder for the figure files")
    s.add_argument("--format", default="png", choices=["png", "svg", "pdf"])
    s.add_argument(
        "--size",
        default="two",
        choices=["one", "two"],
        help="a one-column (3.5 in) or two-column (7.2 in) paper figure",
    )
    s = spec_cmd("report", "one self-contained HTML page: tables, curves, status, provenance")
    s.add_argument("--store")
    s.add_argument("--smoke", action="store_true")
    s.add_argument("--out", default="reports", help="folder for <grid>.html (default ./reports)")
    s.add_argument(
        "--watch",
        type=float,
        metavar="N",
        help="rewrite the page every N seconds until every cell completed or diverged",
    )
    s.add_argument("--watch-count", type=int, metavar="K", help="with --watch: stop after K writes")
    s = sub.add_parser(
        "bench", help="images/s of our trainer vs a naive seed-style pipeline", add_help=False
    )
    s.add_argument("bench_args", nargs=argparse.REMAINDER)
    return p


READ_ONLY = ("status", "table", "plan")  # the `grid` program skips pandas for these


def main(argv: list[str] | None = None) -> int:
    program = argv is None  # the `grid` program itself, not a caller of main
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["bench"]:  # argparse's REMAINDER drops leading --flags: pass them on whole
        argv = ["bench", "--", *argv[1:]] if len(argv) > 1 else argv
    args = parser().parse_args(argv)
    if program and args.command in READ_ONLY:
        from orchestrator.cli import no_pandas  # pyarrow's pandas import: a fifth of the start-up

        no_pandas.skip()
    try:
        return COMMANDS[args.command](args)
    except GridError as e:  # bad input (2), a store that could not be reached (3)
        for line in str(e).splitlines():
            print(f"grid: error: {line}", file=sys.stderr)
        return e.exit_status
    except KeyboardInterrupt:
        print("grid: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
