"""What one trial asks Ray for, decided from a plain description of the cluster (no Ray here,
so the decision is testable with a fake cluster).

A cluster description is `{"nodes": [resources of each alive node], "node_types": [...] or
None, "local": bool}`: `node_types` lists what an autoscaler can add (`{"name", "resources",
"max_count"}`, max_count -1 for no limit), None when there is no autoscaler; `local` is a Ray
that `grid launch` started on this machine, which no node will ever join.
"""

from __future__ import annotations

import math

from trainers.errors import GridError

# Trials per GPU that `gpu: auto` gives, by the GPU kind Ray names (a node's
# `accelerator_type:<kind>` resource: "H100", "H200", "A100"...), each the fastest of 1, 2, 4
# and 8 trials per GPU that benchmarks/gpu_table.py measured on allcnn_table's models, with
# its date (BENCHMARKS.md). A kind not listed gets 1, the safe choice until measured: a
# launch-bound step favours several trials per GPU, but by how much is the GPU's to say.
# Empty: no GPU session has run gpu_table.py yet; it prints the entry to add.
TRIALS_PER_GPU: dict[str, tuple[int, str]] = {}
KIND = "accelerator_type:"


def _gpus(resources: dict) -> float:
    return float(resources.get("GPU", 0) or 0)


def _measured(nodes: list[dict]) -> tuple[int, str] | None:
    """(trials per GPU, why) where every GPU node is of a kind TRIALS_PER_GPU lists with
    more than one; the fewest over the kinds (a trial may land on any of them)."""
    gpu_nodes = [n for n in nodes if _gpus(n) > 0]
    kinds = [{k[len(KIND) :] for k in n if k.startswith(KIND)} for n in gpu_nodes]
    if not gpu_nodes or not all(len(k) == 1 and min(k) in TRIALS_PER_GPU for k in kinds):
        return None
    kind = min((min(k) for k in kinds), key=lambda k: TRIALS_PER_GPU[k][0])
    per, measured = TRIALS_PER_GPU[kind]
    if per <= 1:
        return None
    return per, f"{per} trials per {kind} GPU, as benchmarks/gpu_table.py measured on {measured}"


def gpu_share(per_gpu: int) -> float:
    """The GPUs of one of `per_gpu` trials a GPU. Ray counts resources in units of 1e-4: the
    share rounded down, so that `per_gpu` of them fit one GPU."""
    return math.floor(1e4 / per_gpu) / 1e4


def decide_gpu(setting, cluster: dict) -> tuple[float, str]:
    """(GPUs per trial, why). `auto` is 1 when the cluster has a GPU now or its autoscaler can
    add a GPU node (its GPU workers are not up yet at launch), else 0: deciding it from the
    GPUs up at this moment would start a whole grid on CPUs. On GPUs of a kind that
    TRIALS_PER_GPU lists, it is that many trials' share of a GPU instead of 1."""
    if setting != "auto":
        return float(setting), f"resources.gpu: {float(setting):g} (from the spec)"
    now = sum(_gpus(n) for n in cluster["nodes"])
    if now > 0:
        measured = _measured(cluster["nodes"])
        if measured is not None:
            per, why = measured
            return gpu_share(per), f"gpu auto -> {gpu_share(per):g} per trial: {why}"
        return 1.0, f"gpu auto -> 1 per trial: the cluster has {now:g} GPUs"
    addable = [
        t
        for t in cluster.get("node_types") or []
        if _gpus(t["resources"]) > 0 and t.get("max_count", 0) != 0
    ]
    if addable:
        measured = _measured([t["resources"] for t in addable])
        names = ", ".join(t["name"] for t in addable)
        if measured is not None:
            per, why = measured
            return gpu_share(per), (
                f"gpu auto -> {gpu_share(per):g} per trial: no GPU is up yet, but the "
                f"autoscaler can add GPU nodes ({names}); {why}"
            )
        return 1.0, (
            f"gpu auto -> 1 per trial: no GPU is up yet, but the autoscaler can add "
            f"GPU nodes ({names})"
        )
    where = "this machine" if cluster.get("local") else "the cluster"
    extra = "" if cluster.get("node_types") is None else ", nor can its autoscaler add one"
    return 0.0, f"gpu auto -> 0: {where} has no GPU{extra}; trials train on CPUs"


def decide_cpu(setting, gpu: float, cluster: dict) -> tuple[float, str]:
    """(CPUs per trial, why). `auto` with a fraction of a GPU per trial gives each trial its
    share of a GPU node's CPUs, so that all the trials its GPUs hold fit at once and its
    CPUs are spread over them (16 CPUs, 8 GPUs, `gpu: 0.25`: 32 trials of 0.5 CPU; 1 GPU,
    `gpu: 0.25`: 4 trials of 4 CPUs). A fixed `cpu: 1` would leave 0.25-GPU trials waiting
    for CPUs on that 8-GPU node, its GPUs a quarter used. Whole trials per GPU node: the
    smallest share over the GPU nodes up (else those the autoscaler can add), whole CPUs
    from 1 up (Ray takes fractions only below 1). Without GPUs `auto` is 1 CPU per trial.
    A trial's threads follow its CPUs: Ray sets OMP_NUM_THREADS to them (at least 1)."""
    if setting != "auto":
        return float(setting), f"resources.cpu: {float(setting):g} (from the spec)"
    nodes = [n for n in cluster["nodes"] if _gpus(n) > 0 and float(n.get("CPU", 0) or 0) > 0]
    if not nodes:
        nodes = [
            t["resources"] for t in cluster.get("node_types") or [] if _gpus(t["resources"]) > 0
        ]
    if gpu <= 0 or not nodes:
        return 1.0, "cpu auto -> 1 per trial: trials on CPUs"
    shares = []
    for node in nodes:
        trials = int(_gpus(node) / gpu + 1e-9)
        shares.append((float(node.get("CPU", 0) or 0) / max(trials, 1), node, trials))
    share, node, trials = min(shares, key=lambda s: s[0])
    cpu = float(int(share)) if share >= 1 else max(int(share * 1e4) / 1e4, 1e-4)
    return cpu, (
        f"cpu auto -> {cpu:g} per trial: {float(node.get('CPU', 0)):g} CPUs over the "
        f"{trials} trials of {gpu:g} GPU that a node's {_gpus(node):g} GPUs hold"
    )


def _fits(want: dict[str, float], resources: dict) -> bool:
    return all(float(resources.get(name, 0) or 0) >= v for name, v in want.items() if v > 0)


def check_placement(want: dict[str, float], cluster: dict) -> str | None:
    """None when one trial fits a node that is up or that the autoscaler can add. On a local
    Ray, where no node will join, a GridError that says how to fix the spec; else a warning
    (nodes may still join by hand)."""
    if any(_fits(want, n) for n in cluster["nodes"]):
        return None
    if any(_fits(want, t["resources"]) for t in cluster.get("node_types") or []):
        return None
    ask = f"{want['CPU']:g} CPUs and {want['GPU']:g} GPUs"
    if cluster.get("local"):
        cpus = max((float(n.get("CPU", 0)) for n in cluster["nodes"]), default=0)
        gpus = max((_gpus(n) for n in cluster["nodes"]), default=0)
        fix = (
            f"--set resources.cpu={cpus:g}"
            if want["CPU"] > cpus
            else f"--set resources.gpu={'0' if gpus == 0 else '1'}"
        )
        raise GridError(
            f"resources: a trial asks for {ask}, but this machine has {cpus:g} "
            f"CPUs and {gpus:g} GPUs, so no trial could ever start; {fix}"
        )
    return (
        f"no node of the cluster has {ask} for one trial (resources: in the spec), and "
        f"no autoscaler node type does; the trials wait until such a node joins"
    )
