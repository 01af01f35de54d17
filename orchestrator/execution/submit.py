"""`grid launch SPEC --submit`: the launch as a Ray Job on a running cluster.

The job's driver is `grid launch` itself, run on the head by Ray's job manager: it survives
the user's disconnect, and its log stays in the dashboard (`ray job logs -f ID`). The job
carries this checkout's code (its `working_dir`, without runs/, .git and the like) so the
head runs the same code, and the spec's text in the environment (the spec file may live
anywhere on the user's machine), which the driver writes back to a file of the same name.

One grid per store at a time: the submission id is derived from the grid and the store
(`grid-<grid>-<store digest>-<n>`), so two submits that race compute the same next id and
Ray itself refuses the second; a submit while a job of the grid runs, or while another
launch holds the store's lease (`results/store/lease.py`), is refused before anything is sent.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import shlex
import tempfile
import time
from pathlib import Path

from rich.console import Console

from orchestrator.execution import hooks
from orchestrator.execution.monitor import job_metadata, public_uri
from trainers.errors import GridError

SPEC_ENV = "GRID_SUBMITTED_SPEC"  # the spec's YAML text, for the job's driver
EXCLUDES = [
    ".git",
    "/runs/",
    "/reports/",
    "**/__pycache__",
    "*.pyc",
    ".pytest_cache",
    "*.egg-info",
    "docs/*.png",
]
ACTIVE = ("PENDING", "RUNNING")
# Ray logs each file it leaves out of the upload, and each websocket it closes: `--submit`
# says what it sends itself.
QUIET_LOGGERS = (
    "ray._private.runtime_env.packaging",
    "ray._private.runtime_env.working_dir",
    "ray.dashboard.modules.dashboard_sdk",
    "ray.dashboard.modules.job.sdk",
)
PACKAGES = ("orchestrator", "results", "trainers")


def submission_prefix(grid: str, store_uri: str) -> str:
    """'grid-<grid>-<8 hex of the store URI>': the ids of every job of a grid and store."""
    return f"grid-{grid}-{hashlib.sha256(public_uri(store_uri).encode()).hexdigest()[:8]}"


def store_for_job(store_uri: str | None) -> str:
    """The store as the job's driver must see it: a folder as an absolute path (the job
    runs in a copy of the checkout), s3:// as it is."""
    uri = store_uri or "runs"
    return uri if "://" in uri else str(Path(uri).expanduser().resolve())


def dashboard_address(address: str | None) -> str:
    """The Jobs API's address: the cluster's dashboard, http://HEAD:8265."""
    address = address or os.environ.get("RAY_ADDRESS")
    if not address or address in ("auto", "local") or address.startswith("ray://"):
        raise GridError(
            f"--address {address or '(none)'}: --submit needs the cluster's "
            f"dashboard address, e.g. --address http://HEAD:8265 (or RAY_ADDRESS)"
        )
    return address if "://" in address else f"http://{address}"


def auth_headers() -> dict[str, str]:
    """The Ray token as the dashboard wants it ($RAY_AUTH_TOKEN, else the token file)."""
    from orchestrator.execution.session import token_path

    token = os.environ.get("RAY_AUTH_TOKEN")
    if not token and token_path().is_file():
        token = token_path().read_text().strip()
    return {"Authorization": f"Bearer {token}"} if token else {}


def _client(address: str):
    from ray.job_submission import JobSubmissionClient

    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    from ray.exceptions import AuthenticationError

    try:
        return JobSubmissionClient(address, headers=auth_headers())
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise _unreachable(address, e) from None
    except AuthenticationError as e:
        # Ray looks for its token before it connects: say first whether anything answers
        if not _answers(address):
            raise _unreachable(address, e) from None
        from orchestrator.execution.session import token_path

        raise GridError(
            f"--address {address}: the cluster asks for a Ray token and none is here "
            f"($RAY_AUTH_TOKEN or {token_path()}): copy the head node's ~/.ray/auth_token"
        ) from None


def _unreachable(address: str, e: Exception) -> GridError:
    return GridError(
        f"--address {address}: no Ray dashboard answers there "
        f"({' '.join(str(e).split())[:200]}); give the dashboard's address "
        f"(http://HEAD:8265), not the GCS port"
    )


def _answers(address: str) -> bool:
    """Whether anything accepts a connection at the dashboard address (1 s)."""
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(address)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname, port), timeout=1):
            return True
    except OSError:
        return False


def runtime_env(spec_text: str) -> dict:
    """This checkout's code, the S3 settings, the test hooks, and the spec."""
    from orchestrator.execution.session import forwarded_env

    env = {
        **forwarded_env(),
        **{k: os.environ[k] for k in hooks.ENV if k in os.environ},
        SPEC_ENV: spec_text,
    }
    root = Path(__file__).resolve().parents[2]
    if (root / "pyproject.toml").is_file():  # a checkout: ship it whole, as the user has it
        return {"working_dir": str(root), "excludes": EXCLUDES, "env_vars": env}
    # an installed package: ship the three packages alone, never all of site-packages
    return {"py_modules": [str(root / p) for p in PACKAGES], "env_vars": env}


def entrypoint(
    spec,
    store: str,
    *,
    sets: list[str],
    smoke: bool,
    force: bool,
    wait: bool,
    max_concurrent: int | None,
    share: dict | None = None,
) -> str:
    """The job's command: `grid launch` on the head, reading the spec from SPEC_ENV; its
    `share` (owner, weight, priority: `main.launch_share`) goes with it."""
    parts = [
        "python",
        "-m",
        "orchestrator.cli",
        "launch",
        Path(spec.path).name,
        "--store",
        store,
        "--from-submit",
    ]
    for s in sets:
        parts += ["--set", s]
    parts += [flag for flag, on in (("--smoke", smoke), ("--force", force), ("--wait", wait)) if on]
    if max_concurrent:
        parts += ["--max-concurrent", str(max_concurrent)]
    if share:
        parts += ["--owner", share["owner"], "--weight", f"{share['weight']:g}"]
        parts += ["--priority", str(share["priority"])]
    return shlex.join(parts)


def submit_command(spec, args, share: dict | None = None) -> int:
    """`grid launch --submit [--follow] [--dry-run]` from its parsed arguments."""
    if not args.submit:
        raise GridError("--follow: only with --submit (a launch here follows itself)")
    flags = dict(
        sets=args.set,
        smoke=args.smoke,
        force=args.force,
        wait=args.wait,
        max_concurrent=args.max_concurrent,
        share=share,
    )
    if args.dry_run:
        store = store_for_job(args.store)
        print(
            f"would submit {spec.name} as Ray job {submission_prefix(spec.name, store)}-<n>: "
            f"{entrypoint(spec, store, **flags)} (dry run: nothing submitted)"
        )
        return 0
    return submit(spec, store_uri=args.store, address=args.address, follow=args.follow, **flags)


def spec_from_env(name: str) -> str:
    """On the job's driver: the submitted spec written back to a file named `name`."""
    text = os.environ.get(SPEC_ENV)
    if text is None:
        raise GridError(
            f"--from-submit: no spec in ${SPEC_ENV} (only `grid launch --submit` "
            f"starts a launch this way)"
        )
    path = Path(tempfile.mkdtemp(prefix="grid-spec-")) / Path(name).name
    path.write_text(text)
    return str(path)


def _status(status) -> str:
    return str(getattr(status, "value", status))  # JobStatus is a str enum


def _refusal(client, prefix: str, spec, store: str) -> str | None:
    """Why this grid cannot be submitted now (a job of it runs, or a launch holds the
    store's lease), or None."""
    jobs = [j for j in client.list_jobs() if (j.submission_id or "").startswith(prefix + "-")]
    for job in jobs:
        if _status(job.status) in ACTIVE:
            return (
                f"grid {spec.name} in store {public_uri(store)} is already running as Ray "
                f"job {job.submission_id} ({_status(job.status)}); follow it with "
                f"`ray job logs -f {job.submission_id}`; nothing submitted"
            )
    from results.store import open_store
    from results.store.lease import LEASE, describe, read_holder, why_stale

    try:
        holder = read_holder(open_store(store), spec.name)
    except GridError:  # a store only the cluster reaches: its driver checks the lease
        return None
    if holder and why_stale(holder, time.time()) is None:
        return (
            f"grid {spec.name} in store {public_uri(store)} is being launched by "
            f"{describe(holder, time.time())} ({LEASE}); nothing submitted"
        )
    return None


def _next_id(client, prefix: str) -> str:
    numbers = [
        int(j.submission_id.rsplit("-", 1)[1])
        for j in client.list_jobs()
        if (j.submission_id or "").startswith(prefix + "-")
        and j.submission_id.rsplit("-", 1)[1].isdigit()
    ]
    return f"{prefix}-{max(numbers, default=0) + 1}"


def _counts(spec, store: str) -> tuple[int, int | None, int | None]:
    """(cells, to run, skipped) as far as this machine can read the store."""
    from orchestrator.execution.units import select_cells
    from orchestrator.spec.expand import expand
    from results.store import open_store

    cells = expand(spec)
    try:
        todo, skipped = select_cells(
            cells, open_store(store).statuses(spec.name), halving=bool(spec.halving)
        )
    except GridError:
        return len(cells), None, None
    return len(cells), len(todo), len(skipped)


def submit(
    spec,
    *,
    store_uri: str | None,
    address: str | None,
    sets: list[str],
    smoke: bool = False,
    force: bool = False,
    wait: bool = False,
    max_concurrent: int | None = None,
    share: dict | None = None,
    follow: bool = False,
    console: Console | None = None,
) -> int:
    """Submit the launch of `spec` as a Ray Job; print its id and how to follow it. 0 once
    submitted (with `follow`: the job's own exit status), 1 when refused."""
    console = console or Console(soft_wrap=True)  # commands to copy: never wrapped
    store = store_for_job(store_uri)
    url = dashboard_address(address)
    client = _client(url)
    prefix = submission_prefix(spec.name, store)
    why = _refusal(client, prefix, spec, store)
    if why:
        console.print(f"[red]{why}[/]", highlight=False)
        return 1
    total, to_run, skipped = _counts(spec, store)
    job_id = _next_id(client, prefix)
    env = runtime_env(Path(spec.path).read_text())
    console.print(
        f"uploading {env.get('working_dir') or 'the grid packages'} to the cluster at {url}",
        highlight=False,
    )
    try:
        client.submit_job(
            entrypoint=entrypoint(
                spec,
                store,
                sets=sets,
                smoke=smoke,
                force=force,
                wait=wait,
                max_concurrent=max_concurrent,
                share=share,
            ),
            submission_id=job_id,
            runtime_env=env,
            metadata=job_metadata(spec, store, total=total, to_run=to_run, skipped=skipped),
        )
    except RuntimeError as e:
        if "already exists" in str(e):  # another submit of this grid won the race
            console.print(
                f"[red]grid {spec.name} in store {public_uri(store)} was just "
                f"submitted as Ray job {job_id} by someone else[/]",
                highlight=False,
            )
            return 1
        raise GridError(f"--submit: Ray refused the job: {' '.join(str(e).split())}") from None
    counts = "" if to_run is None else f": {to_run} of {total} cells to run"
    console.print(f"submitted {spec.name} as Ray job {job_id}{counts}", highlight=False)
    console.print(f"  follow it:  ray job logs -f {job_id} --address {url}", highlight=False)
    console.print(f"  its cells:  grid status {spec.path} --store {store}", highlight=False)
    console.print(f"  dashboard:  {url}/#/jobs/{job_id}", highlight=False)
    return _follow(client, job_id, console) if follow else 0


def _follow(client, job_id: str, console: Console) -> int:
    """Stream the job's log until it ends; its exit status (0 succeeded, else the driver's
    own code when it has one, else 1)."""

    async def tail() -> None:
        async for chunk in client.tail_job_logs(job_id):
            console.file.write(chunk)
            console.file.flush()

    asyncio.run(tail())
    info = client.get_job_info(job_id)
    status = _status(info.status)
    console.print(f"Ray job {job_id}: {status}", highlight=False)
    if status == "SUCCEEDED":
        return 0
    code = getattr(info, "driver_exit_code", None)
    return code if isinstance(code, int) and code > 0 else 1
