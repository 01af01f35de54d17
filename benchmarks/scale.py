"""The store at scale: fill a store with N finished cells through `Store.write_trial` (every
column, 350 epochs each), on a folder and on a moto S3 server on loopback, then time the
commands a lab runs on it, each in a fresh process as a user would: `grid status`,
`grid table`, `grid plan`, `grid launch` with nothing to run (it must not start Ray), and
the memory a halving relaunch's driver spends reading the rung rows, against a plain
launch's. On S3 it counts the requests of each command (moto's request log).

    python -m benchmarks.scale --n 1000 10000 --backend local moto --json out.json

It uses only the interfaces every release has (open_store, write_trial, trial_row,
epoch_rows, load_spec, expand, launch._rungs), so the same file measures an older checkout:
copy it there and run it with that checkout on PYTHONPATH. BENCHMARKS.md has the figures.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import subprocess
import sys
import tempfile
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

EPOCHS = 350
LRS = 100  # the grid: LRS lrs x N/LRS weight decays (a table row each, halved over the lrs)


def spec_text(name: str, n: int) -> str:
    lrs = [round(0.001 * (i + 1), 6) for i in range(LRS)]
    # Not N/LRS seeds: a halving over the lr alone is refused with several seeds (a row
    # could end with no lr that ran every seed; docs/spec.md#halving).
    decays = [round(1e-5 * (i + 1), 8) for i in range(max(1, n // LRS))]
    return textwrap.dedent(
        f"""\
        name: {name}
        dataset: {{name: synthetic, subset: 1500, val_size: 200}}
        model: {{arch: allcnn_c, width: 0.25}}
        train: {{epochs: {EPOCHS}, batch_size: 64}}
        grid:
          lr: {lrs}
          train.optimizer.weight_decay: {decays}
        halving: {{over: lr, metric: val_acc, rungs: [50, 150], keep: 0.5}}
        resources: {{gpu: 0, cpu: 1, pack: 1}}
        tables:
          - name: scale
            title: "scale: final test accuracy, best lr per weight decay by validation accuracy"
            rows: [train.optimizer.weight_decay]
            metric: test_acc
            at: final
            best_by: val_acc
            over: lr
        """
    )


def history(seed: int) -> list[dict]:
    out = []
    for e in range(1, EPOCHS + 1):
        acc = 0.1 + 0.8 * e / EPOCHS - 0.001 * (seed % 7)
        out.append(
            {
                "epoch": e,
                "lr": 0.1,
                "train_loss": 2.0 / e,
                "train_acc": acc,
                "val_loss": 2.0 / e,
                "val_acc": acc,
                "test_loss": 2.0 / e,
                "test_acc": acc,
                "epoch_s": 1.0,
                "images_per_s": 500.0,
                "epoch_wall_s": 1.1,
            }
        )
    return out


def fill(spec_path: Path, uri: str, threads: int) -> tuple[float, float | None]:
    """Write every cell of the spec as a finished result, then prune and compact as a
    launch does at its end (where the release has it); the seconds of each."""
    from orchestrator.spec.expand import expand
    from orchestrator.spec.load import load_spec
    from results.store import open_store
    from results.store.schema import epoch_rows, provenance, trial_row

    spec = load_spec(str(spec_path))
    store = open_store(uri)
    now = datetime.now(timezone.utc)
    prov = provenance(spec.sha256, now, now, "cpu")
    hist = {s: history(s) for s in range(7)}
    t0 = time.perf_counter()

    def one(cell) -> None:
        row = round(cell.config["train"]["optimizer"]["weight_decay"] / 1e-5)  # its table row
        h = hist[row % 7]
        summary = {
            "status": "completed",
            "epochs": EPOCHS,
            "params": 1000,
            "wall_s": 350.0,
            "images_per_s": 500.0,
            "final": h[-1],
            "best": h[-1],
            "device": "cpu",
        }
        row = trial_row(cell, summary, prov)
        store.write_trial(cell.grid, cell.key, row, epoch_rows(cell, h))

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(one, expand(spec)))
    filled = time.perf_counter() - t0
    try:
        from results.store.prune import prune
    except ImportError:  # a release before the index
        return filled, None
    t0 = time.perf_counter()
    try:  # with the halving's rung rows, as a halving launch ends
        prune(open_store(uri), spec.name, rungs=list(spec.halving["rungs"]))
    except TypeError:  # a release without the rung rows' index
        prune(open_store(uri), spec.name)
    return filled, time.perf_counter() - t0


RUNNER = """
import inspect, os, sys, time
t0 = time.perf_counter()
what, spec, store = sys.argv[1], sys.argv[2], sys.argv[3]
if what == "rungs":  # a halving relaunch's driver: the plain launch's reads + the rung rows
    from rich.console import Console
    from orchestrator.execution import launch
    from orchestrator.spec.load import load_spec
    from results.store import open_store
    s, st = load_spec(spec), open_store(store)
    st.statuses(s.name)
    quiet = Console(file=open(os.devnull, "w"))
    if "fresh" in inspect.signature(launch._rungs).parameters:  # since ff6d5cc
        launch._rungs(s, st, [], quiet, frozenset())  # no cell trains from scratch
    else:
        launch._rungs(s, st, [], quiet)
    rc = 0
elif what == "plainlaunch":  # the same, without the rung rows
    from orchestrator.spec.load import load_spec
    from results.store import open_store
    s, st = load_spec(spec), open_store(store)
    st.statuses(s.name)
    rc = 0
else:  # as the `grid` program runs it: main() reads sys.argv
    from orchestrator.cli.main import main
    sys.argv = ["grid", what, spec] + ([] if what == "plan" else ["--store", store])
    rc = main()
# VmHWM: the peak of this program (ru_maxrss would count the forking parent's pages)
hwm = [int(x.split()[1]) for x in open("/proc/self/status") if x.startswith("VmHWM")][0]
print("RESULT", rc, round(time.perf_counter() - t0, 2), hwm // 1024,
      "torch" in sys.modules, "ray" in sys.modules, file=sys.stderr)
"""


class Requests(logging.Handler):
    """Counts moto's requests by kind, from its werkzeug access log."""

    def __init__(self):
        super().__init__()
        self.counts: dict[str, int] = {}

    def emit(self, record):
        try:
            line = str(record.args[0]) if record.args else record.getMessage()
        except Exception:  # noqa: BLE001
            return
        method = re.sub(r"\x1b\[[0-9;]*m", "", line).split(" ", 1)[0].strip('"')
        kind = "LIST" if method == "GET" and "list-type" in line else method
        if kind in ("GET", "PUT", "DELETE", "HEAD", "LIST", "POST"):
            self.counts[kind] = self.counts.get(kind, 0) + 1


def run(
    what: str, spec: Path, uri: str, env: dict, counter: Requests | None, timeout: float
) -> dict:
    if counter is not None:
        counter.counts = {}
    t0 = time.perf_counter()
    try:
        p = subprocess.run(
            [sys.executable, "-c", RUNNER, what, str(spec), uri],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return {"what": what, "error": f"timed out after {timeout:g} s", "wall_s": timeout}
    wall = time.perf_counter() - t0
    line = [ln for ln in p.stderr.splitlines() if ln.startswith("RESULT")]
    if not line:
        return {"what": what, "error": p.stderr[-500:], "wall_s": round(wall, 2)}
    _, rc, inner, rss, torch, ray = line[-1].split()
    out = {
        "what": what,
        "rc": int(rc),
        "wall_s": round(wall, 2),
        "max_rss_mb": int(rss),
        "torch": torch == "True",
        "ray": ray == "True",
    }
    if counter is not None:
        out["requests"] = dict(counter.counts)
    return out


COMMANDS = ("status", "status", "table", "plan", "launch", "plainlaunch", "rungs")


def bench(
    backend: str, ns: list[int], work: Path, threads: int, timeout: float, commands=COMMANDS
) -> list[dict]:
    # the commands' row cache starts empty; the fill's (its prune and index) is its own
    os.environ["GRID_CACHE_DIR"] = str(work / "fill-cache")
    env = {**os.environ, "GRID_CACHE_DIR": str(work / "cache"), "RAY_ADDRESS": ""}
    counter = None
    server = None
    if backend == "moto":
        import boto3
        from moto.server import ThreadedMotoServer

        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        creds = {
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench-secret",
            "AWS_DEFAULT_REGION": "us-east-1",
            "NO_PROXY": "127.0.0.1,localhost",
        }
        os.environ.update(creds)
        env.update(creds)
        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="scale")
        counter = Requests()
        log = logging.getLogger("werkzeug")
        log.handlers = [counter]  # counted, not printed
        log.setLevel(logging.INFO)
        log.propagate = False
    out = []
    try:
        for n in ns:
            spec = work / f"scale-{backend}-{n}.yaml"
            spec.write_text(spec_text(f"scale{n}", n))
            uri = "s3://scale/results" if backend == "moto" else str(work / "store")
            filled, compacted = fill(spec, uri, threads)
            result = {
                "backend": backend,
                "n": n,
                "fill_s": round(filled, 1),
                "compact_s": compacted and round(compacted, 1),
                "runs": [],
            }
            print(f"{backend} N={n}: filled in {filled:.0f} s, compacted: {compacted}", flush=True)
            for what in commands:
                r = run(what, spec, uri, env, counter, timeout)
                result["runs"].append(r)
                print(f"  {json.dumps(r)}", flush=True)
            out.append(result)
    finally:
        if server is not None:
            server.stop()
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, nargs="+", default=[1000, 10000])
    p.add_argument("--backend", nargs="+", default=["local", "moto"], choices=["local", "moto"])
    p.add_argument("--threads", type=int, default=4, help="writers of the fill")
    p.add_argument("--timeout", type=float, default=300, help="seconds per command at most")
    p.add_argument(
        "--commands",
        default=",".join(COMMANDS),
        help="what to run after the fill (the first status reads cold, the second warm)",
    )
    p.add_argument("--json", help="write the figures to this file")
    args = p.parse_args(argv)
    print(f"load: {os.getloadavg()[0]:.2f} (1 min)", flush=True)
    results = []
    with tempfile.TemporaryDirectory(prefix="grid-scale-") as tmp:
        for backend in args.backend:
            work = Path(tmp) / backend
            work.mkdir()
            results += bench(
                backend, args.n, work, args.threads, args.timeout, args.commands.split(",")
            )
    print(f"load: {os.getloadavg()[0]:.2f} (1 min)", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
