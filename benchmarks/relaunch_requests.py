"""What a relaunch of a halved grid asks of an S3 store before its trials start, before and
after one listing per folder (2026-12-07): the stop decisions of the cells about to run
(a DELETE per cell of the launch, then `Store.clear_stops`: one listing and a DELETE per
decision found) and the async rule's rung records (a GET each in turn, then
`Store.read_rungs`: `read_threads` at a time); and what one judgement's record costs the
launch's Tune loop, which writes it (a PUT). On moto's standalone server on loopback, in a
process of its own (in this one, its threads would contend with the store's for the GIL):

    PYTHONPATH=. python benchmarks/relaunch_requests.py [--cells 2000] [--found 200]
"""

from __future__ import annotations

import argparse
import json
import os
import time


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cells", type=int, default=2000, help="cells the relaunch runs")
    p.add_argument("--found", type=int, default=200, help="of them, with a stop and a record")
    args = p.parse_args()
    if not 0 < args.found <= args.cells:
        p.error("--found: from 1 to --cells")
    import socket
    import subprocess
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        _wait_for(endpoint)
        os.environ.update(AWS_ENDPOINT_URL=endpoint, AWS_ACCESS_KEY_ID="bench")
        os.environ.update(AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1")
        import boto3

        from results.store import open_store

        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="relaunch-bench")
        store = open_store("s3://relaunch-bench/runs")
        keys = [f"{i:012x}" for i in range(args.cells)]
        found = keys[: args.found]
        t = time.perf_counter()
        for k in found:  # what the async rule's judgements cost Tune's loop: a PUT each
            store.write_rungs("g", k, {"metric": "val_acc", "scores": {"4": 0.5}, "passed": []})
        put_ms = (time.perf_counter() - t) / len(found) * 1000
        for k in found:
            store.write_stop("g", k, {"rung": 4})
        t = time.perf_counter()
        for k in keys:  # before
            store.delete_object(f"g/stops/{k}.json")
        before = time.perf_counter() - t
        for k in found:
            store.write_stop("g", k, {"rung": 4})
        t = time.perf_counter()
        cleared = store.clear_stops("g", set(keys))
        after = time.perf_counter() - t
        t = time.perf_counter()
        each = {k: json.loads(store.get_object(f"g/rungs/{k}.json")) for k in found}  # before
        one_by_one = time.perf_counter() - t
        t = time.perf_counter()
        records = store.read_rungs("g", set(keys), set())
        threads = time.perf_counter() - t
        assert cleared == len(found) and records == each
        print(f"{args.cells} cells relaunched, {args.found} with a stop and a rung record:")
        print(f"  stops: a DELETE per cell {before:.2f} s; clear_stops {after:.2f} s")
        print(f"  rung records: a GET each in turn {one_by_one:.2f} s; read_rungs {threads:.2f} s")
        print(f"  a rung record's write (a judgement, in Tune's loop): {put_ms:.1f} ms")
    finally:
        server.terminate()
        server.wait()


def _wait_for(endpoint: str) -> None:
    """Until the server answers (it takes ~2 s to import)."""
    import urllib.request

    for _ in range(300):
        try:
            urllib.request.urlopen(endpoint, timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"moto's server did not answer at {endpoint}")


if __name__ == "__main__":
    main()
