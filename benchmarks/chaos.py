"""A fault campaign: `grid launch` on a real three-node Ray and a real S3 server on loopback,
with faults drawn from a seed and timed from the grid's own events, and the store's
invariants checked after every round (docs/reliability.md).

    python benchmarks/chaos.py [--seed N|random ...] [--faults F] [--gap K] [--epochs E]
                               [--grids G] [--budget-s S] [--halving none,sync,async]

The world (benchmarks/chaos_world.py): `ray start --head` (no CPUs) and two 1-CPU worker
nodes, a moto S3 server in this process, a 12-cell grid on synthetic CIFAR-10 files with a
checkpoint every epoch. Each trial event (an epoch checkpointed, an attempt resumed, a row
committed) reaches this process through the GRID_CHAOS socket (orchestrator/execution/hooks.py) and
waits there; every K-th event or so (drawn from the seed) the campaign injects the next
fault of its schedule while that trial waits:

    driver       SIGKILL of `grid launch`; the campaign relaunches it
    trial        SIGKILL of the trial's worker process (Tune retries it)
    node         SIGKILL of the raylet of the trial's node; the node is then restarted
    s3           the S3 server stopped for 2-5 s, then restarted on the same port
    second       a second `grid launch` of the same grid, started and awaited mid-run
    checkpoint   the cell's checkpoint (just written) truncated, then its trial killed

A round is one `grid launch`; the campaign relaunches until one exits 0, then starts the next
grid. After every round it checks the invariants (benchmarks/chaos_checks.py); a broken one
prints the seeds and the schedule (the printed command replays it) and exits 1, keeping every
log. A campaign that passes deletes its folder, except the logs of any launch that ended
neither finished nor by a `driver` fault (exit 1: a relaunch a researcher would have had to
make), whose folder it prints. With `--chain`, the seeds' schedules run one after another
in the same grids (the CI campaign).
"""

from __future__ import annotations

import argparse
import collections
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

import chaos_checks as checks  # noqa: E402
import chaos_world as world  # noqa: E402

KINDS = ("driver", "trial", "node", "s3", "second", "checkpoint")
ON_EPOCH_ONLY = {"second", "checkpoint"}  # need a cell mid-training with a fresh checkpoint
BUCKET, PREFIX = "chaos", "results"


def schedule(seed: int, faults: int, gap: int, kinds=KINDS) -> list[tuple[int, str]]:
    """`faults` faults, each kind in turn in a seeded order, each after 1..gap events."""
    rng = random.Random(seed)
    order: list[str] = []
    while len(order) < faults:
        batch = list(kinds)
        rng.shuffle(batch)
        order += batch
    return [(rng.randint(1, gap), k) for k in order[:faults]]


class Campaign:
    def __init__(self, args, root: Path):
        self.args, self.root = args, root
        self.grids_run, self.checked, self.faults_done = 0, 0, 0
        self.restarts: dict[str, threading.Thread] = {}  # nodes coming back after a fault
        self.arm([0])
        self.counts = {k: 0 for k in KINDS}
        self.recovery: dict[str, list[float]] = {k: [] for k in KINDS}
        self.waiting: list[tuple[str, str | None, float]] = []  # (kind, key, t) to recover
        self.broken_events: list[str] = []
        self.driver: subprocess.Popen | None = None
        self.lock = threading.Lock()
        self.s3_up = threading.Event()
        self.grid = ""
        self.second_rcs: list[int] = []
        self.rounds: collections.Counter[str] = collections.Counter()  # how launches ended
        self.odd: list[Path] = []  # logs of launches that ended neither done nor killed by us

    def arm(self, seeds: list[int]) -> None:
        """The schedules of `seeds`, one after another: injected from the next event on."""
        self.seeds = seeds
        self.rng = random.Random(seeds[0] if len(seeds) == 1 else "+".join(map(str, seeds)))
        kinds = self.args.kinds.split(",")
        self.plan = [
            f for seed in seeds for f in schedule(seed, self.args.faults, self.args.gap, kinds)
        ]
        self.next = 0  # the plan's next fault
        self.countdown = self.plan[0][0] if self.plan else -1
        self.log: list[str] = []  # what was injected, when, where

    # -- the world --------------------------------------------------------------------------
    def start(self) -> None:
        logs = self.root / "logs"
        logs.mkdir()
        self.s3 = world.S3()
        self.s3.start()
        self.s3_up.set()
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "RAY_ADDRESS"))},
            **world.NODE_ENV,
            "AWS_ENDPOINT_URL": self.s3.endpoint,
            "PYTHONPATH": str(REPO),
            "GRID_CACHE_DIR": str(self.root / "cache"),
            "GRID_CHAOS": str(self.root / "events.sock"),
        }
        os.environ.update({k: self.env[k] for k in ("PYTHONPATH",)})
        import boto3

        self.client = boto3.client(
            "s3",
            endpoint_url=self.s3.endpoint,
            aws_access_key_id="testing",
            aws_secret_access_key="testing-secret",
            region_name="us-east-1",
        )
        self.client.create_bucket(Bucket=BUCKET)
        world.write_cifar(self.root / "data")
        self.address, self.nodes = world.start_cluster(self.root / "ray", logs)
        self.server = socket.socket(socket.AF_UNIX)
        self.server.bind(self.env["GRID_CHAOS"])
        self.server.listen(16)
        threading.Thread(target=self.serve, daemon=True).start()

    def stop(self) -> None:
        for thread in self.restarts.values():
            thread.join()
        for proc in [self.driver]:
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
        for node in reversed(getattr(self, "nodes", [])):
            node.stop()
        if getattr(self, "s3", None):
            self.s3.stop()

    # -- the events -------------------------------------------------------------------------
    def serve(self) -> None:
        while True:
            conn, _ = self.server.accept()
            with conn:
                line = conn.makefile().readline().split()
                if len(line) != 4:
                    continue
                event, key, epoch, pid = line[0], line[1], int(line[2]), int(line[3])
                if self.handle(event, key, epoch, pid):
                    try:
                        conn.sendall(b"go\n")
                    except OSError:
                        pass

    def handle(self, event: str, key: str, epoch: int, pid: int) -> bool:
        """One trial event; True: answer it (the trial trains on)."""
        now = time.monotonic()
        if event in ("epoch", "resume"):
            self.check_not_finished(event, key, epoch)
            for item in [w for w in self.waiting if w[1] in (None, key)]:
                self.recovery[item[0]].append(now - item[2])
                self.waiting.remove(item)
        if self.next >= len(self.plan):
            return True
        self.countdown -= 1
        kind = self.plan[self.next][1]
        if self.countdown > 0 or (kind in ON_EPOCH_ONLY and event != "epoch"):
            return True
        with self.lock:
            # a driver kill, or a second launch, is a fault only while the round's launch
            # runs: a trial of a launch just killed can still report for a moment, and a
            # second launch then would not be refused but take the grid over (legitimately)
            if kind in ("driver", "second") and (
                self.driver is None or self.driver.poll() is not None
            ):
                return True
            done = self.inject(kind, event, key, epoch, pid)
        if done is None:
            return True  # not here: the next event
        self.counts[kind] += 1
        self.faults_done += 1
        self.log.append(f"{kind}@{event}:{key}:{epoch}")
        print(f"  fault {len(self.log)}: {kind} at {event} {key} epoch {epoch}", flush=True)
        self.next += 1
        if self.next < len(self.plan):
            self.countdown = self.plan[self.next][0]
        return done

    def check_not_finished(self, event: str, key: str, epoch: int) -> None:
        if not self.s3_up.is_set():
            return
        name = f"{PREFIX}/{self.grid}/trials/{key}.parquet"
        try:
            self.client.head_object(Bucket=BUCKET, Key=name)
        except self.client.exceptions.ClientError:
            return
        self.broken_events.append(
            f"{key}: trained ({event} at epoch {epoch}) while its finished row was stored"
        )

    def inject(self, kind: str, event: str, key: str, epoch: int, pid: int) -> bool | None:
        """Do fault `kind` at this event; whether to answer the trial (None: not here)."""
        t0 = time.monotonic()
        cell = key if event != "commit" else None
        if kind == "driver":
            os.kill(self.driver.pid, signal.SIGKILL)
            self.waiting.append((kind, None, t0))
            return True
        if kind == "trial":
            os.kill(pid, signal.SIGKILL)
            self.waiting.append((kind, cell, t0))
            return False
        if kind == "node":
            back = [n for n in self.nodes[1:] if not self.restarting(n)]
            node = next((n for n in back if n.owns(pid)), None)
            if node is None:
                return None
            node.kill_raylet()
            self.waiting.append((kind, cell, t0))
            # The node comes back in the background (~10 s of `ray start`), as a replaced
            # machine would: the other node's trials and their events go on meanwhile.
            self.restarts[node.name] = threading.Thread(target=node.start, daemon=True)
            self.restarts[node.name].start()
            return False
        if kind == "s3":
            self.s3_up.clear()
            self.s3.stop()
            threading.Thread(
                target=self.outage, args=(self.rng.uniform(2, 5),), daemon=True
            ).start()
            self.waiting.append((kind, None, t0))
            return True
        if kind == "second":
            # Awaited here, in the thread that answers the trials' events: the second launch
            # gets no events socket, so that if it ever trains (the first launch died just
            # now and it took the grid over) its trials never wait on this thread.
            env = {k: v for k, v in self.env.items() if k != "GRID_CHAOS"}
            log = self.root / "logs" / f"second-{len(self.log)}.log"
            with open(log, "w") as out:
                proc = subprocess.Popen(self.launch_cmd(), env=env, stdout=out, stderr=out)
                try:
                    rc = proc.wait(timeout=300)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    rc = proc.wait()
            self.second_rcs.append(rc)
            took_over = "took over the lease" in log.read_text() and self.driver.poll() is not None
            if rc != 1 and not (rc == 0 and took_over):
                self.broken_events.append(f"a second launch mid-run exited {rc}, not 1 (refused)")
            self.waiting.append((kind, None, t0))
            return True
        if kind == "checkpoint":
            name = f"{PREFIX}/{self.grid}/checkpoints/{key}"
            try:
                data = self.client.get_object(Bucket=BUCKET, Key=name)["Body"].read()
            except self.client.exceptions.ClientError:
                return None
            self.client.put_object(Bucket=BUCKET, Key=name, Body=data[: len(data) // 2])
            os.kill(pid, signal.SIGKILL)
            self.waiting.append((kind, key, t0))
            return False
        raise ValueError(kind)

    def restarting(self, node) -> bool:
        thread = self.restarts.get(node.name)
        return thread is not None and thread.is_alive()

    def outage(self, seconds: float) -> None:
        time.sleep(seconds)  # the fault itself: the server is down this long
        self.s3.start()
        self.s3_up.set()

    # -- the rounds -------------------------------------------------------------------------
    def launch_cmd(self) -> list[str]:
        cmd = [sys.executable, "-m", "orchestrator.cli", "launch", str(self.spec)]
        return cmd + ["--store", self.store, "--address", self.address, "--yes"]

    def run_grid(self, g: int) -> None:
        self.grid = f"chaos{g}"
        rule = self.args.halving[g % len(self.args.halving)]
        halving = None if rule == "none" else rule
        self.spec = world.write_spec(
            self.root, self.grid, self.root / "data", self.args.epochs, halving
        )
        print(f"{self.grid}: halving {rule}", flush=True)
        self.store = f"s3://{BUCKET}/{PREFIX}"
        from orchestrator.spec.expand import expand
        from orchestrator.spec.load import load_spec

        cells = expand(load_spec(self.spec))
        expected = {c.key for c in cells}
        widths = len({c.params["model.width"] for c in cells})  # the table's rows
        seen: dict[str, tuple] = {}
        for r in range(1, self.args.max_rounds + 1):
            self.s3_up.wait()
            log = self.root / "logs" / f"{self.grid}-round{r}.log"
            with open(log, "w") as out, self.lock:
                self.driver = subprocess.Popen(
                    self.launch_cmd(), env=self.env, stdout=out, stderr=out
                )
            rc = self.driver.wait(timeout=self.args.round_s)
            self.s3_up.wait()
            print(f"{self.grid} round {r}: launch exited {rc}", flush=True)
            killed = rc == -signal.SIGKILL  # the campaign's own `driver` fault
            self.rounds["finished" if rc == 0 else "driver killed" if killed else f"exit {rc}"] += 1
            if rc != 0 and not killed:  # a relaunch a researcher would have had to make: keep why
                self.odd.append(log)
            snap = checks.snapshot(self.client, BUCKET, PREFIX, self.grid)
            final = rc == 0
            found = {
                "one_result_per_cell": checks.one_result_per_cell(snap, expected, final),
                "row_and_curves_from_one_run": checks.row_and_curves_from_one_run(snap),
                "no_finished_result_replaced": checks.no_finished_result_replaced(snap, seen),
                "each_epoch_once": checks.each_epoch_once(snap),
                "no_trial_trained_a_finished_cell": checks.no_trial_trained_a_finished_cell(
                    self.broken_events
                ),
                "lease_released": checks.lease_released(snap, rc >= 0),
            }
            if final:
                found["table_has_every_row_and_pick"] = checks.table_has_every_row_and_pick(
                    str(self.spec),
                    self.store,
                    self.env,
                    widths=widths,
                    halved=halving is not None,
                )
                if halving:
                    found["halving_held"] = checks.halving_held(snap, self.args.epochs, rung=1)
                    stopped = sum(r.get("status") == "stopped" for r in snap.rows.values())
                    print(f"{self.grid}: {stopped} of {len(expected)} cells stopped at the rung")
                found["no_orphans"] = checks.no_orphans(snap)
            self.checked += len(found)
            broken = {k: v for k, v in found.items() if v}
            if broken:
                self.fail(broken, log)
            if final:
                return
        self.fail({"finishes": [f"not finished after {self.args.max_rounds} rounds"]}, None)

    def fail(self, broken: dict[str, list[str]], log: Path | None) -> None:
        print("INVARIANT BROKEN", flush=True)
        for name, problems in broken.items():
            for p in problems:
                print(f"  {name}: {p}")
        print(f"seeds {self.seeds}; replay: {self.replay()}")
        print(f"schedule: {self.plan}")
        print(f"faults injected: {self.log}")
        print(f"logs: {self.root / 'logs'}" + (f" (last round: {log.name})" if log else ""))
        raise SystemExit(1)

    def replay(self) -> str:
        a = self.args
        seeds = " ".join(f"--seed {s}" for s in self.seeds)
        return (
            f"python benchmarks/chaos.py {seeds} --faults {a.faults} --kinds {a.kinds} "
            f"--gap {a.gap} --epochs {a.epochs}"
            + (f" --halving {','.join(a.halving)}" if a.halving != ["none"] else "")
            + (" --chain" if len(self.seeds) > 1 else "")
        )

    def report(self, started: float) -> None:
        print(
            f"chaos: {self.faults_done} faults in {self.grids_run} grids, {self.checked} "
            f"invariant checks, all held; {time.monotonic() - started:.0f} s"
        )
        for kind in KINDS:
            times = self.recovery[kind]
            rec = "-"
            if times:
                rec = f"median {statistics.median(times):.1f} s, max {max(times):.1f} s"
            print(f"  {kind:10s} {self.counts[kind]:4d} injected; recovery {rec} ({len(times)})")
        print("  rounds: " + ", ".join(f"{n} {k}" for k, n in sorted(self.rounds.items())))
        if self.second_rcs:
            print(
                f"  second launches refused (exit 1): "
                f"{self.second_rcs.count(1)}/{len(self.second_rcs)}"
            )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--seed", action="append", help="repeatable; 'random' (the default): one drawn, printed"
    )
    p.add_argument("--grids", type=int, default=1, help="grids per seed, at least")
    p.add_argument(
        "--chain",
        action="store_true",
        help="the seeds' schedules one after another in the same grids (one grid's start and "
        "relaunches for all: the CI campaign)",
    )
    p.add_argument("--budget-s", type=float, default=None, help="start no grid after this")
    p.add_argument("--faults", type=int, default=6, help="faults in all (kinds in turn)")
    p.add_argument("--kinds", default=",".join(KINDS), help="the faults to draw from")
    p.add_argument("--gap", type=int, default=4, help="at most this many events between faults")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument(
        "--halving",
        default="none",
        help="the grids' halving rules in turn, from none, sync, async (e.g. none,sync,async); "
        "a halved grid needs --epochs 2 or more (its rung is epoch 1)",
    )
    p.add_argument("--max-grids", type=int, default=1000)
    p.add_argument("--max-rounds", type=int, default=40)
    p.add_argument("--round-s", type=float, default=900, help="a launch's safety timeout")
    args = p.parse_args(argv)
    args.halving = args.halving.split(",")
    if not set(args.halving) <= {"none", "sync", "async"} or (
        args.epochs < 2 and set(args.halving) != {"none"}
    ):
        p.error(f"--halving {','.join(args.halving)}: from none, sync, async; with --epochs >= 2")
    seeds = [
        random.SystemRandom().randrange(10**6) if s == "random" else int(s)
        for s in args.seed or ["random"]
    ]
    print(f"chaos: seeds {seeds} (replay one: --seed N)", flush=True)
    root = Path(tempfile.mkdtemp(prefix="gch", dir="/tmp"))  # short: socket paths are bounded
    campaign = Campaign(args, root)
    started, passed = time.monotonic(), False
    # a campaign stopped with SIGTERM (kill, a CI timeout) stops its nodes and S3 server too
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        campaign.start()
        for group in [seeds] if args.chain else [[s] for s in seeds]:
            campaign.arm(group)
            print(f"seeds {group}: schedule {campaign.plan}", flush=True)
            g = 0
            while g < args.grids or (campaign.next < len(campaign.plan) and g < args.max_grids):
                if args.budget_s and time.monotonic() - started > args.budget_s:
                    print(f"chaos: budget of {args.budget_s:g} s spent; stopping", flush=True)
                    break
                campaign.run_grid(campaign.grids_run)  # until the schedule is injected
                campaign.grids_run += 1
                g += 1
        campaign.report(started)
        passed = True
    finally:
        campaign.stop()
    if passed and campaign.odd:  # keep the logs of the launches that ended otherwise
        for path in (root / "logs").iterdir():  # the nodes' `ray start` logs stay too
            if path.is_file() and path not in campaign.odd and not path.name.startswith("ray-"):
                path.unlink()
        for path in root.iterdir():
            if path.is_dir() and path.name != "logs":
                shutil.rmtree(path, ignore_errors=True)
        print(f"  logs of the launches that ended neither finished nor killed: {root / 'logs'}")
    elif passed:  # a broken run keeps all its logs (their folder is printed)
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
