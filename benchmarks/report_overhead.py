"""Per-epoch reporting overhead of a trial, before (a checkpoint every epoch) and after (the
default cadence), to a local store and to S3 (moto on loopback), measured side by side.

What one epoch's report cost (issue 11, before the trial became `orchestrator/execution/slot.py`'s
GridSlot) is the cadence of `orchestrator.execution.trial.UnitRun` plus what the function trainable
then handed Tune: the cells' states serialised (`torch.save`), written to a temporary
folder, then copied to `<store>/<grid>/_tune/...` on the store's filesystem with pyarrow,
which is what Ray Tune 2.60's `tune.report` does with a checkpoint
(`StorageContext.persist_current_checkpoint`: `_pyarrow_fs_copy_files`). Today a trial puts
each cell's state in the store by key instead (`results/store/checkpoints.py`), one object per
cell. Ray itself is not started: its per-report bookkeeping is the same in both columns.

The cadence reads a fake clock that advances by `--epoch-s` per epoch, the training time an
epoch would take (a CPU epoch of All-CNN-C at width 0.25 is ~75 s; an H100's ~1 s).

    python benchmarks/report_overhead.py --width 0.25 --epochs 20 --epoch-s 75 1
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import torch
from pyarrow import fs as pafs

from orchestrator.execution import trial
from orchestrator.spec.expand import Cell
from trainers.checkpoint import capture_state
from trainers.config import DEFAULTS
from trainers.setup import setup


def a_state(width: float) -> tuple[dict, dict]:
    """An All-CNN-C cell after one SGD-with-momentum step: (config, state)."""
    cfg = copy.deepcopy(DEFAULTS)
    cfg["dataset"].update(name="synthetic", val_size=0, subset=256)
    cfg["model"].update(width=width)
    cfg["train"].update(device="cpu", epochs=1000)
    run = setup(cfg)
    x, y = run.data.preprocess(run.data.train_x[:32]), run.data.train_y[:32]
    torch.nn.functional.cross_entropy(run.model(x), y).backward()
    run.optimizer.step()
    run.history.append({"epoch": 1})
    return cfg, capture_state(run, 1.0)


def persist(fs: pafs.FileSystem, root: str):
    """The Tune side of a report: files to a temporary folder, then to the storage."""
    count = [0]

    def checkpoint(metrics: dict, files: dict[str, bytes]) -> None:
        json.dumps(metrics)  # Tune serialises the metrics of every report
        if not files:
            return
        with tempfile.TemporaryDirectory() as d:
            for name, data in files.items():
                Path(d, name).write_bytes(data)
            dest = f"{root}/checkpoint_{count[0]:06d}"
            fs.create_dir(dest)
            pafs.copy_files(
                d, dest, source_filesystem=pafs.LocalFileSystem(), destination_filesystem=fs
            )
            count[0] += 1

    return checkpoint


def overhead(
    cfg: dict,
    state: dict,
    policy: dict,
    epochs: int,
    epoch_s: float,
    fs: pafs.FileSystem,
    root: str,
) -> float:
    """Mean seconds of reporting per epoch over `epochs` epochs of one cell."""
    cfg = copy.deepcopy(cfg)
    cfg["train"].update(policy, epochs=epochs)
    cell = Cell(key="bench", grid="bench", params={}, config=cfg)
    clock = [0.0]
    unit = trial.UnitRun([cell], store=None, spec_sha256="bench", checkpoint=persist(fs, root))
    unit.start({})
    unit.cadence.clock = lambda: clock[0]
    unit.cadence.last_time = 0.0
    spent = 0.0
    for epoch in range(1, epochs + 1):
        clock[0] += epoch_s  # the epoch's training
        state = {**state, "epoch": epoch}
        t0 = time.perf_counter()
        unit.live["bench"], unit.epoch["bench"] = state, epoch  # what a step takes in
        unit.checkpoint({"epoch": epoch, "train_loss": 1.0}, unit._due(epoch))
        spent += time.perf_counter() - t0
    return spent / epochs


def stores(tmp: str):
    """(name, filesystem, root) of a local folder and of an S3 bucket on moto."""
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    bucket = f"bench-{uuid.uuid4().hex[:8]}"
    boto3.client(
        "s3",
        endpoint_url=f"http://{host}:{port}",
        aws_access_key_id="x",
        aws_secret_access_key="x",
        region_name="us-east-1",
    ).create_bucket(Bucket=bucket)
    s3 = pafs.S3FileSystem(
        endpoint_override=f"{host}:{port}",
        scheme="http",
        access_key="x",
        secret_key="x",
        region="us-east-1",
    )
    return server, [
        ("local", pafs.LocalFileSystem(), f"{tmp}/_tune"),
        ("s3 (moto)", s3, f"{bucket}/_tune"),
    ]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--width", type=float, default=0.25)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--epoch-s", type=float, nargs="+", default=[75.0, 1.0])
    args = p.parse_args()
    torch.set_num_threads(1)
    cfg, state = a_state(args.width)
    policies = {"before": {"checkpoint_s": 0}, "after": {}}  # after: the defaults
    with tempfile.TemporaryDirectory() as tmp:
        server, targets = stores(tmp)
        try:
            for name, fs, root in targets:
                for epoch_s in args.epoch_s:
                    times = {k: [] for k in policies}
                    for r in range(args.rounds):  # alternate, the order flipped each round
                        for k in list(policies) if r % 2 == 0 else list(policies)[::-1]:
                            times[k].append(
                                overhead(
                                    cfg,
                                    state,
                                    policies[k],
                                    args.epochs,
                                    epoch_s,
                                    fs,
                                    f"{root}/{k}{r}{epoch_s}",
                                )
                            )
                    med = {k: statistics.median(v) for k, v in times.items()}
                    print(
                        json.dumps(
                            {
                                "store": name,
                                "width": args.width,
                                "epoch_s": epoch_s,
                                **{f"{k}_ms": round(v * 1e3, 2) for k, v in med.items()},
                                **{f"{k}_pct": round(100 * v / epoch_s, 3) for k, v in med.items()},
                            }
                        )
                    )
        finally:
            server.stop()


if __name__ == "__main__":
    main()
