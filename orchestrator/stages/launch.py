"""`grid launch child.yaml` for a stage (a spec with `stage:`): its parents first.

Before any trial starts, every child cell's parent cell must have a finished result with
kept weights (`orchestrator/stages/parents.py` resolves them from the parent's rows). When one has
not, the launch exits 2 naming the parent cells and the command that makes them; with
`--with-parents` it launches them first (the parent grid with `train.keep_weights` on,
those cells only: missing ones, and finished ones without kept weights, which train again),
then the children, in one command. The children run under both grids' leases: the parent's
is held while they train, so no parent launch (a `--force` rerun) replaces a parent's
weights under them. Stale children (their row names another parent run than the one
resolved now) train again.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from rich.console import Console
from rich.text import Text

from orchestrator.spec.expand import expand
from orchestrator.stages import parents as stages
from results.store import open_store
from results.store.lease import Lease, LeaseHeld, held
from trainers.errors import GridError


def launcher(spec, args) -> Callable[..., int]:
    """What `grid launch` calls for `spec`: `launch.launch` (Ray is only imported by what
    it calls), or for a stage `launch_stage` with `--with-parents` as given."""
    from orchestrator.execution.launch import launch

    if spec.stage is None:
        if args.with_parents:
            raise GridError(f"{spec.path}: --with-parents: this spec has no stage: section")
        return launch
    if args.submit:  # the job would carry this spec file alone, not its parent's
        raise GridError(
            f"{spec.path}: --submit: a stage's launch (stage: in the spec) runs from here; "
            "use --address to run it on the cluster"
        )
    return functools.partial(launch_stage, with_parents=args.with_parents)


def launch_stage(spec, *, with_parents: bool = False, console: Console | None = None, **kw) -> int:
    """Launch the stage `spec` (`launch.launch`'s keyword arguments in `kw`): parents
    checked (or, `with_parents`, launched), then the children under both leases."""
    from orchestrator.execution.launch import launch

    console = console or Console()
    store = open_store(kw.get("store_uri"))
    cells = expand(spec)
    parent = stages.parent_spec(spec, keep_weights=with_parents)
    # Twice at most: a pick needs every candidate finished before it can say which parent
    # must keep its weights (one finished earlier without them trains again).
    for _ in range(2):
        res = stages.resolve(spec, cells, store, parent)
        if not res.needed:
            break
        if not with_parents and kw.get("dry_run"):  # say so, and show what would run
            console.print(Text(stages.missing_message(spec, res, kw.get("store_uri"))))
            return launch(spec, console=console, cells=cells, **kw)
        if not with_parents:
            raise GridError(stages.missing_message(spec, res, kw.get("store_uri")))
        if parent.stage is not None:  # a chain: its own parents come first, by its launch
            raise GridError(
                f"{spec.path}: --with-parents: the parent {parent.path} is a stage itself; "
                f"launch it first: grid launch {parent.path} --with-parents"
            )
        console.print(
            f"{spec.name}: first {len(res.needed)} parent cells of {parent.name} "
            f"(--with-parents, keeping their weights)"
        )
        keys = frozenset(p.key for p in res.needed)
        status = launch(
            parent,
            console=console,
            cells=res.needed,
            rerun=keys,
            **{**kw, "force": False},
        )
        if status != 0 or kw.get("dry_run"):
            return status
        store.forget()
    if kw.get("dry_run"):  # writes nothing, so takes no lease
        stale = frozenset(stages.stale_keys(spec, res.refs, store))
        return launch(
            spec, console=console, cells=stages.attach(cells, res.refs), rerun=stale, **kw
        )
    try:
        with held(
            Lease(store, parent.name),
            wait=kw.get("wait", False),
            say=lambda s: console.print(Text(s)),
        ):
            store.forget()  # read again under the parent's lease: its rows are fixed now
            res = stages.resolve(spec, cells, store, parent)
            if res.needed:
                raise GridError(stages.missing_message(spec, res, kw.get("store_uri")))
            stale = stages.stale_keys(spec, res.refs, store)
            if stale:
                console.print(
                    f"{spec.name}: {len(stale)} cells are stale (their parent was retrained "
                    "or the pick moved): training them again"
                )
            return launch(
                spec,
                console=console,
                cells=stages.attach(cells, res.refs),
                rerun=frozenset(stale),
                **kw,
            )
    except LeaseHeld as e:
        console.print(Text(f"{e} (the parent grid of {spec.name})", style="red"))
        return 1
