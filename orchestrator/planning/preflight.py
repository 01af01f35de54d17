"""Checks of the cells against the devices they will train on, before any trial starts.

Each check reads the resolved configs, the GPUs per trial (`resources.decide_gpu`) and the
plain cluster description of `orchestrator/planning/resources.py` (no Ray here): a mistake that
would crash or silently waste every trial on the cluster is one `GridError` line that names the
keys, and `grid launch` exits 2 with nothing started.

- `train.device` against `resources.gpu`: `cuda` with no GPU per trial (Ray hides every GPU
  from such a trial: each would crash, and be retried); `cpu` with GPUs per trial (reserved,
  and left idle). `auto` is always allowed: a trial uses the GPU it is given, else the CPU.
- `train.precision: bf16` on GPUs without native bf16 (compute capability < 8.0, before
  Ampere: V100, T4, P100, ...), where autocast emulates it, slower than fp32. `auto` picks
  fp32 there (`trainers.runtime.autocast_for`), so only an explicit bf16 is refused.
- packs the device cannot run: a pack is never compiled (`trainers.pack`), so
  `train.compile: true` with `resources.pack` > 1 would silently train each cell alone.
"""

from __future__ import annotations

from trainers.errors import GridError

# Ray's `accelerator_type:<name>` node resources of GPUs older than Ampere (compute
# capability < 8.0: no native bf16); the names are Ray's (ray.util.accelerators).
PRE_AMPERE = ("V100", "P100", "T4", "P4", "K80", "M60", "P40", "TITAN", "Quadro", "RTX")
AMPERE = ("A100", "A10", "A30", "A40", "L4", "L40", "H100", "H200", "B200", "A6000", "RTX_A")


def check_devices(spec, cells: list, gpu: float) -> None:
    """`train.device` against the GPUs per trial (`gpu`, after `resources.gpu: auto` was
    decided); GridError naming the keys."""
    devices = {c.config["train"]["device"] for c in cells}
    where = f"resources.gpu: {spec.resources['gpu']}" + (
        f" (-> {gpu:g})" if spec.resources["gpu"] == "auto" else ""
    )
    cuda = sorted(d for d in devices if str(d).startswith("cuda"))
    if cuda and gpu == 0:
        raise GridError(
            f"{spec.path}: train.device: {cuda[0]} with {where}: a trial with no GPU sees no "
            "GPU and every one would fail; set resources.gpu (1, 0.5, auto) or train.device: auto"
        )
    if "cpu" in devices and gpu > 0:
        raise GridError(
            f"{spec.path}: train.device: cpu with {where}: each trial would hold {gpu:g} GPU "
            "and leave it idle; set resources.gpu: 0, or train.device: auto to use it"
        )


def gpu_kinds(cluster: dict, local_capability: tuple[int, int] | None = None) -> dict[str, bool]:
    """{GPU name: supports bf16 natively} of the cluster's GPUs: from Ray's accelerator_type
    resources, and on a local Ray from this machine's CUDA device (`local_capability`)."""
    kinds: dict[str, bool] = {}
    types = [n.get("resources", n) for n in cluster.get("node_types") or []]
    for resources in list(cluster.get("nodes", [])) + types:
        for name in resources:
            if name.startswith("accelerator_type:"):
                kind = name.split(":", 1)[1]
                kinds[kind] = native_bf16(kind)
    if local_capability is not None:
        kinds[f"sm_{local_capability[0]}{local_capability[1]}"] = local_capability[0] >= 8
    return kinds


def native_bf16(kind: str) -> bool:
    """Whether a Ray accelerator type (V100, A100, ...) has bf16 tensor cores; unknown
    names count as modern (a check must not refuse a GPU it does not know)."""
    if any(kind.startswith(a) for a in AMPERE):
        return True
    return not any(kind.startswith(p) for p in PRE_AMPERE)


def check_precision(spec, cells: list, gpu: float, kinds: dict[str, bool]) -> None:
    """An explicit `train.precision: bf16` on GPUs without native bf16: GridError."""
    if gpu == 0 or not kinds or all(kinds.values()):
        return
    if any(c.config["train"]["precision"] == "bf16" for c in cells):
        old = ", ".join(sorted(k for k, ok in kinds.items() if not ok))
        raise GridError(
            f"{spec.path}: train.precision: bf16 on GPUs without native bf16 ({old}: compute "
            "capability < 8.0), where it is emulated and slower than fp32; use "
            "train.precision: auto (fp32 there) or fp32"
        )


def check_packs(spec, cells: list) -> None:
    """`resources.pack` > 1 with `train.compile: true`: a pack is not compiled."""
    if spec.resources["pack"] > 1 and any(c.config["train"]["compile"] for c in cells):
        raise GridError(
            f"{spec.path}: resources.pack: {spec.resources['pack']} with train.compile: true: "
            "a pack is never compiled, so each cell would train alone; set resources.pack: 1 "
            "or train.compile: false"
        )


def check(spec, cells: list, gpu: float, cluster: dict) -> None:
    """Every check of this module, before any trial starts (`grid launch`)."""
    check_devices(spec, cells, gpu)
    check_packs(spec, cells)
    check_precision(spec, cells, gpu, gpu_kinds(cluster, _local_capability(cluster)))


def _local_capability(cluster: dict) -> tuple[int, int] | None:
    """This machine's GPU's compute capability when the trials run here (a local Ray)."""
    if not cluster.get("local"):
        return None
    import torch

    if not torch.cuda.is_available():
        return None
    return torch.cuda.get_device_capability(0)
