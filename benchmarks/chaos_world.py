"""The fault campaign's world (benchmarks/chaos.py): a real Ray of three nodes on loopback
(`ray start --head` and two `ray start --address`, each with its own ports and temp dir, each
a `ray start --block` process that this module started and stops by its pid), a real moto S3
server on loopback that can be stopped and restarted on the same port, and the grid: its
data in the CIFAR-10 on-disk layout and its spec.
"""

from __future__ import annotations

import os
import pickle
import signal
import socket
import subprocess
import textwrap
from pathlib import Path

import numpy as np

MARK = "GRID_CHAOS_NODE"  # in every process of a node: what `stop` may kill, and only that
PORTS = (
    "node-manager-port",
    "object-manager-port",
    "dashboard-agent-listen-port",
    "dashboard-agent-grpc-port",
    "runtime-env-agent-port",
    "metrics-export-port",
)
NODE_ENV = {  # each node's own (fake) credentials; only the driver knows the endpoint
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    "RAY_AUTH_MODE": "token",
    "NO_PROXY": "127.0.0.1,localhost",
}


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def children(pid: int) -> list[int]:
    """The processes whose parent is `pid` (one scan of /proc)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry))
    return found


def parent(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except OSError:
        return None


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def marked(value: str) -> list[int]:
    """The pids whose environment carries MARK=value: one node's processes."""
    out = []
    needle = f"{MARK}={value}".encode()
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            try:
                if needle in Path(f"/proc/{entry}/environ").read_bytes().split(b"\0"):
                    out.append(int(entry))
            except OSError:
                continue
    return out


class Node:
    """One Ray node: a `ray start --block` process and what it started."""

    def __init__(self, name: str, root: Path, args: list[str], log: Path):
        self.name, self.temp, self.args, self.log = name, root / name, args, log
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    def start(self) -> None:
        ports = dict(zip(PORTS, free_ports(len(PORTS)), strict=True))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "RAY_ADDRESS"))}
        env.update({**NODE_ENV, MARK: str(self.temp)})
        cmd = [
            "ray",
            "start",
            "--block",
            "--node-ip-address=127.0.0.1",
            f"--temp-dir={self.temp}",
            "--disable-usage-stats",
            *self.args,
            *[f"--{n}={p}" for n, p in ports.items()],
        ]
        self.starts += 1
        self.proc = subprocess.Popen(
            cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        with open(self.log, "a") as log:
            for line in self.proc.stdout:  # its own words: up once it says it blocks
                log.write(line)
                if "block forever" in line:
                    break
            else:
                raise RuntimeError(f"ray node {self.name} did not start: see {self.log}")
        # the rest of its output is drained by a thread, so the node never blocks on it
        import threading

        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        proc = self.proc
        with open(self.log, "a") as log:
            for line in proc.stdout:
                log.write(line)

    def raylet(self) -> int | None:
        for pid in marked(str(self.temp)):
            if "/raylet" in cmdline(pid).split(" ", 1)[0]:
                return pid
        return None

    def owns(self, pid: int) -> bool:
        """Whether process `pid` (a trial's worker) runs on this node."""
        raylet = self.raylet()
        while pid and pid > 1:
            if pid == raylet:
                return True
            pid = parent(pid)
        return False

    def kill_raylet(self) -> None:
        """The node dies: SIGKILL its raylet, then the rest of it (by pid), as a machine
        that loses power takes every process with it."""
        raylet = self.raylet()
        if raylet:
            os.kill(raylet, signal.SIGKILL)
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.stop()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for pid in marked(str(self.temp)):  # workers the raylet left behind
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def start_cluster(root: Path, logs: Path) -> tuple[str, list[Node]]:
    """A head with no CPUs (the driver's node) and two 1-CPU worker nodes; (address, nodes)."""
    ensure_token()
    (port,) = free_ports(1)
    head = Node(
        "head",
        root,
        ["--head", f"--port={port}", "--num-cpus=0", "--num-gpus=0", "--include-dashboard=false"],
        logs / "ray-head.log",
    )
    head.start()
    address = f"127.0.0.1:{port}"
    workers = [
        Node(
            f"w{i}",
            root,
            [f"--address={address}", "--num-cpus=1", "--num-gpus=0"],
            logs / f"ray-w{i}.log",
        )
        for i in (1, 2)
    ]
    for w in workers:
        w.start()
    return address, [head, *workers]


def ensure_token() -> None:
    """Ray 2.60's token auth: the token in ~/.ray/auth_token, generated on first use."""
    path = Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token")
    if not path.exists():
        subprocess.run(["ray", "get-auth-token", "--generate"], check=True, capture_output=True)


class S3:
    """moto's S3 server in this process (its buckets live in this process's memory, so a
    restart on the same port serves what it held): `stop()` refuses every connection until
    `start()`."""

    def __init__(self):
        (self.port,) = free_ports(1)
        self.server = None
        self.endpoint = f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        import logging

        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request

        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self.server.start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None

    @property
    def up(self) -> bool:
        return self.server is not None


def write_cifar(root: Path, n_train: int = 200, n_test: int = 100) -> None:
    """Synthetic images in CIFAR-10's on-disk layout (`cifar-10-batches-py`, pickled
    batches): each class a colour plus noise, so the tiny model learns something."""
    rng = np.random.default_rng(0)
    palette = rng.integers(30, 226, size=(10, 3))
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)

    def dump(path: Path, n: int, label: str) -> None:
        y = np.arange(n) % 10
        rng.shuffle(y)
        x = palette[y][:, :, None, None] + rng.normal(0, 25, size=(n, 3, 32, 32))
        x = np.clip(x, 0, 255).astype(np.uint8).reshape(n, 3072)
        batch = {b"batch_label": label.encode(), b"labels": [int(v) for v in y], b"data": x}
        batch[b"filenames"] = [f"img_{i:04d}.png".encode() for i in range(n)]
        with open(path, "wb") as f:
            pickle.dump(batch, f)

    for i in range(1, 6):
        dump(folder / f"data_batch_{i}", n_train // 5, f"training batch {i} of 5")
    dump(folder / "test_batch", n_test, "testing batch 1 of 1")
    names = ["airplane", "automobile", "bird", "cat", "deer"]
    names += ["dog", "frog", "horse", "ship", "truck"]
    meta = {b"label_names": names, b"num_cases_per_batch": n_train // 5, b"num_vis": 3072}
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump(meta, f)


def write_spec(
    folder: Path, name: str, data: Path, epochs: int, halving: str | None = None
) -> Path:
    """12 cells, `epochs` each, a checkpoint every epoch, a table that picks the lr of each
    row by val_acc: 2 widths x 3 lrs x 2 seeds; with `halving`, its lrs halved at a rung
    after the first epoch by val_loss (val_acc on 40 images ties often, and ties all go on).
    Sync: each width's lrs ranked by their mean over the seeds (`over: [lr, seed]`). Async
    judges each seed alone (the spec refuses it with several seeds), so its grid is 4 widths
    x 3 lrs, one seed."""
    widths, seeds, over = ("[0.125, 0.25]", "[0, 1]", "[lr, seed]")
    if halving == "async":
        widths, seeds, over = ("[0.125, 0.1875, 0.25, 0.3125]", "[0]", "lr")
    text = f"""\
    name: {name}
    dataset: {{name: cifar10, root: "{data}", download: false, augment: [], val_size: 40}}
    model: {{arch: strided_a, dropout: 0.0, input_dropout: 0.0}}
    train:
      epochs: {epochs}
      batch_size: 64
      schedule: {{name: constant}}
      checkpoint_s: 0
    grid:
      model.width: {widths}
      lr: [0.02, 0.05, 0.1]
      seed: {seeds}
    resources: {{cpu: 1, gpu: 0}}
    max_failures: 3
    tables:
      - name: chaos
        rows: [model.width]
        metric: test_error
        best_by: val_acc
        over: train.lr
    """
    text = textwrap.dedent(text)
    if halving:  # top level, after the dedented body
        text += (
            f"halving: {{over: {over}, metric: val_loss, rungs: [1], keep: 0.5, rule: {halving}}}\n"
        )
    path = folder / f"{name}.yaml"
    path.write_text(text)
    return path
