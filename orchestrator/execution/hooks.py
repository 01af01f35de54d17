"""Test support: hooks that tests arm through the environment, so a test drives a real trial
(inside a Ray worker process) by events instead of by the clock. Production code calls them
through three seams: `at_epoch`, after each epoch's report (with its checkpoint, on the epochs
the cadence picks; the test specs set `train.checkpoint_s: 0`, a checkpoint every epoch) and
at the start of a resumed attempt; `in_step`, as a step starts an epoch; and `committed`,
after a cell's row is written. Unarmed, they do nothing. `grid launch` forwards these
variables to the trials.

GRID_FAIL_INJECT="<key prefix or *>:<epoch>:<times>[,...]"
    a matching cell's trial raises `InjectedFailure` right after epoch <epoch> is checkpointed
    (or at the start of an attempt that resumes at or past it), the first <times> attempts.
    Attempts are counted with marker files in GRID_FAIL_INJECT_DIR (default:
    <tmp>/grid-fail-inject), so the count survives the process; delete it to re-arm.

GRID_HOLD="<key prefix>:<epoch>:<folder>"
    a barrier: the first attempt of a matching cell, right after epoch <epoch> is
    checkpointed, opens the named pipe <folder>/held for writing (which blocks until the test
    opens it for reading: the test now knows the trial is there) and then <folder>/release
    for reading (which blocks until the test opens it for writing). The test makes both with
    os.mkfifo. It holds once per cell (a marker in <folder>), so a retry trains on.

GRID_RENDEZVOUS="<folder>"
    what a trial sees, and a gate that holds trials together: after epoch 1 each cell writes
    <folder>/seen-<key>.json (its process id, CUDA_VISIBLE_DEVICES and OMP_NUM_THREADS, as
    Ray set them for the trial); the first cell to get there in each process then writes its
    key to the named pipe <folder>/arrived and takes a shared flock on <folder>/gate, which
    blocks while the test holds it exclusively. The test knows every trial runs at once
    (what it reads from `arrived`) before it opens the gate.
GRID_KILL="<key prefix>:<epoch>:<folder>"
    the trial process of a matching cell SIGKILLs itself inside the step that trains epoch
    <epoch>, before that epoch ends (`in_step`): a worker killed mid-epoch, with no chance to
    write anything. Once per cell (a marker in <folder>), so the retry trains on.
GRID_CHAOS="<socket>"
    the fault campaign's barrier (benchmarks/chaos.py): at each of a trial's events (an
    attempt that resumes, an epoch checkpointed, a cell's row committed) the trial sends
    "<event> <key> <epoch> <pid>" to the Unix socket and blocks until the campaign answers
    (or closes: it may have killed this process meanwhile). Nobody listening: train on.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import socket
import tempfile
from pathlib import Path

FAIL_INJECT_ENV = "GRID_FAIL_INJECT"
FAIL_INJECT_DIR_ENV = "GRID_FAIL_INJECT_DIR"
HOLD_ENV = "GRID_HOLD"
RENDEZVOUS_ENV = "GRID_RENDEZVOUS"
KILL_ENV = "GRID_KILL"
CHAOS_ENV = "GRID_CHAOS"
ENV = (FAIL_INJECT_ENV, FAIL_INJECT_DIR_ENV, HOLD_ENV, RENDEZVOUS_ENV, KILL_ENV, CHAOS_ENV)
_arrived: set[int] = set()  # processes whose trial has passed the rendezvous gate


class InjectedFailure(RuntimeError):
    """Raised by the GRID_FAIL_INJECT hook."""


def at_epoch(key: str, epoch: int, *, resumed: bool = False) -> None:
    """The seam: after epoch `epoch` of cell `key` is checkpointed, or (`resumed`) when an
    attempt starts from a checkpoint at `epoch`."""
    if os.environ.get(FAIL_INJECT_ENV):
        maybe_inject_failure(key, epoch, resumed=resumed)
    if os.environ.get(HOLD_ENV) and not resumed:
        maybe_hold(key, epoch)
    if os.environ.get(RENDEZVOUS_ENV) and epoch == 1 and not resumed:
        rendezvous(key, Path(os.environ[RENDEZVOUS_ENV]))
    if os.environ.get(CHAOS_ENV):
        chaos("resume" if resumed else "epoch", key, epoch)


def committed(key: str, epoch: int) -> None:
    """The seam after cell `key`'s row (of `epoch` epochs) is committed to the store."""
    if os.environ.get(CHAOS_ENV):
        chaos("commit", key, epoch)


def chaos(event: str, key: str, epoch: int) -> None:
    """GRID_CHAOS (module docstring)."""
    with socket.socket(socket.AF_UNIX) as s:
        try:
            s.connect(os.environ[CHAOS_ENV])
        except OSError:
            return
        s.sendall(f"{event} {key} {epoch} {os.getpid()}\n".encode())
        s.recv(16)  # the campaign's answer, once it has done what it does here


def in_step(keys: list[str], epoch: int) -> None:
    """The seam inside a trial's step, before epoch `epoch` of the cells `keys` trains."""
    if os.environ.get(KILL_ENV):
        for key in keys:
            maybe_kill(key, epoch)


def maybe_kill(key: str, epoch: int) -> None:
    """GRID_KILL (module docstring)."""
    prefix, at, folder = os.environ[KILL_ENV].split(":", 2)
    marker = Path(folder) / f"killed-{key}"
    if not _matches(prefix, key) or epoch != int(at) or marker.exists():
        return
    marker.touch()
    os.kill(os.getpid(), signal.SIGKILL)


def _matches(prefix: str, key: str) -> bool:
    return prefix.strip() == "*" or key.startswith(prefix.strip())


def maybe_inject_failure(key: str, epoch: int, *, resumed: bool = False) -> None:
    """GRID_FAIL_INJECT (module docstring)."""
    spec = os.environ.get(FAIL_INJECT_ENV, "")
    rules = [rule.rsplit(":", 2) for rule in spec.split(",") if rule.strip()]
    for prefix, at, times in rules:
        if _matches(prefix, key):
            if epoch >= int(at) if resumed else epoch == int(at):
                _fail_once_more(key, epoch, int(times), spec)
            return


def _fail_once_more(key: str, epoch: int, times: int, spec: str) -> None:
    folder = Path(
        os.environ.get(FAIL_INJECT_DIR_ENV) or Path(tempfile.gettempdir()) / "grid-fail-inject"
    )
    folder.mkdir(parents=True, exist_ok=True)
    done = len(list(folder.glob(f"{key}-*")))
    if done < times:
        (folder / f"{key}-{done + 1}").touch()
        raise InjectedFailure(
            f"injected failure {done + 1}/{times} of cell {key} "
            f"at epoch {epoch} ({FAIL_INJECT_ENV}={spec})"
        )


def maybe_hold(key: str, epoch: int) -> None:
    """GRID_HOLD (module docstring)."""
    prefix, at, folder = os.environ[HOLD_ENV].split(":", 2)
    if not _matches(prefix, key) or epoch != int(at):
        return
    marker = Path(folder) / f"held-{key}"
    if marker.exists():
        return
    marker.touch()
    with open(Path(folder) / "held", "w") as pipe:  # blocks until the test reads
        pipe.write(f"{key}:{epoch}\n")
    with open(Path(folder) / "release") as pipe:  # blocks until the test releases
        pipe.read()


def rendezvous(key: str, folder: Path) -> None:
    """GRID_RENDEZVOUS (module docstring)."""
    seen = {
        "key": key,
        "pid": os.getpid(),
        "cuda": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "threads": os.environ.get("OMP_NUM_THREADS"),
    }
    (folder / f"seen-{key}.json").write_text(json.dumps(seen))
    if os.getpid() in _arrived:
        return
    _arrived.add(os.getpid())
    with open(folder / "arrived", "w") as pipe:  # blocks until the test reads
        pipe.write(f"{key} {os.getpid()}\n")
    with open(folder / "gate") as gate:
        fcntl.flock(gate, fcntl.LOCK_SH)  # blocks while the test holds the gate
        fcntl.flock(gate, fcntl.LOCK_UN)
