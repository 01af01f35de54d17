"""What a running grid shows in Ray's own tools (docs/monitoring.md):

- the dashboard's Actors page: each actor is a reusable slot of the grid, `GridSlot(<grid>)`
  (`orchestrator/execution/slot.py`), that trains trial after trial;
- each actor's own log (its Logs pane): a line as it starts a unit, naming the grid, the cell
  keys and their axis values (`unit_title`), then one line per cell and epoch (`CellMetrics`);
- the driver's job: metadata naming the grid, its spec, cell counts and store
  (`job_metadata`);
- Prometheus, through the metrics endpoint Ray runs on every node: `grid_*` gauges and a
  counter (Ray exports them as `ray_grid_*`), and a Grafana dashboard for them
  (`dashboards/grid_grafana.json`), installed beside Ray's own (`install_grafana_dashboard`).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from orchestrator.spec.expand import Cell
from trainers.config import axis_label

# What the trials and the driver record (ray.util.metrics names; exported as ray_<name>).
CELL_GAUGES = {
    "grid_cell_epoch": ("epoch", "the last epoch a cell finished"),
    "grid_cell_train_loss": ("train_loss", "a cell's training loss in its last epoch"),
    "grid_cell_val_acc": ("val_acc", "a cell's validation accuracy (fraction), last epoch"),
    "grid_cell_test_acc": ("test_acc", "a cell's test accuracy (fraction) after its last epoch"),
    "grid_cell_images_per_s": ("images_per_s", "training images per second of a cell"),
}
CELL_TAGS = ("grid", "cell", "node", "gpu")
EPOCHS_COUNTER = "grid_epochs"  # exported as ray_grid_epochs_total
STATUS_GAUGE = "grid_cells"
STATUSES = ("done", "running", "pending", "failed")
DASHBOARD_JSON = Path(__file__).parent / "dashboards" / "grid_grafana.json"


def exported_names() -> set[str]:
    """The metric names as Prometheus sees them (Ray adds `ray_`, counters `_total`)."""
    return (
        {f"ray_{n}" for n in CELL_GAUGES}
        | {f"ray_{STATUS_GAUGE}"}
        | {f"ray_{EPOCHS_COUNTER}_total"}
    )


def public_uri(uri: str) -> str:
    """A store URI safe to show: any user:password@ part dropped."""
    parts = urlsplit(uri)
    if parts.username is None and parts.password is None:
        return uri
    return urlunsplit(parts._replace(netloc=parts.hostname or ""))


def job_metadata(
    spec, store_uri: str, *, total: int, to_run: int | None, skipped: int | None
) -> dict[str, str]:
    """The Ray job's metadata for a launch of `spec` (strings only, as Ray wants them);
    counts not known yet (None) are left out."""
    from results.store.schema import grid_version

    meta = {
        "grid": spec.name,
        "grid_spec": str(spec.path),
        "grid_spec_sha256": spec.sha256,
        "grid_cells_total": str(total),
        "grid_store": public_uri(store_uri),
        "grid_version": grid_version() or "unknown",
    }
    if to_run is not None:
        meta["grid_cells_to_run"] = str(to_run)
    if skipped is not None:
        meta["grid_cells_skipped"] = str(skipped)
    return meta


def unit_title(grid: str, cells: list[Cell]) -> str:
    """'quickstart 1a2b3c4d5e6f arch=resnet9 lr=0.1' (a pack: its cells, '; '-separated)."""

    def one(t: Cell) -> str:
        params = " ".join(f"{axis_label(a)}={v}" for a, v in t.params.items())
        return f"{t.key} {params}".strip()

    return f"{grid} " + "; ".join(one(t) for t in cells)


class CellMetrics:
    """Inside a trial: after each cell's epoch, its line on the trial's stdout (the actor's
    log) and its gauges, tagged with the cell's key. One per actor, which trains cell after
    cell; `epochs`: the current unit's (for the line)."""

    def __init__(self, grid: str, epochs: int = 0):
        import ray
        from ray.util.metrics import Counter, Gauge

        self.grid, self.epochs = grid, epochs
        gpus = ray.get_gpu_ids()
        self.where = {
            "node": ray.util.get_node_ip_address(),
            "gpu": ",".join(str(g) for g in gpus) if gpus else "none",
        }
        self.gauges = {
            name: Gauge(name, description=desc, tag_keys=CELL_TAGS)
            for name, (_, desc) in CELL_GAUGES.items()
        }
        self.counter = Counter(
            EPOCHS_COUNTER,
            description="epochs trained, all cells",
            tag_keys=("grid", "node", "gpu"),
        )

    def observe(self, key: str, metrics: dict) -> None:
        """`trial.UnitRun`'s per-cell epoch callback."""
        from orchestrator.execution.progress import epoch_line

        print(f"{key} {epoch_line(metrics, self.epochs)}", flush=True)
        tags = {"grid": self.grid, "cell": key, **self.where}
        for name, (field, _) in CELL_GAUGES.items():
            value = metrics.get(field)
            if isinstance(value, (int, float)) and value == value:  # not None, not NaN
                self.gauges[name].set(float(value), tags=tags)
        self.counter.inc(1.0, tags={"grid": self.grid, **self.where})


class StatusMetrics:
    """On the driver: the grid's cells by status (done counts the skipped ones)."""

    def __init__(self, grid: str):
        from ray.util.metrics import Gauge

        self.grid = grid
        self.gauge = Gauge(
            STATUS_GAUGE, description="cells of a grid by status", tag_keys=("grid", "status")
        )

    def update(self, counts: dict[str, int]) -> None:
        for status in STATUSES:
            self.gauge.set(float(counts.get(status, 0)), tags={"grid": self.grid, "status": status})


def scrape_urls() -> list[str]:
    """Each alive node's Prometheus endpoint (Ray's metrics agent)."""
    import ray

    return [
        f"http://{n['NodeManagerAddress']}:{n['MetricsExportPort']}/metrics"
        for n in ray.nodes()
        # A Ray without its dashboard packages runs no metrics agent: port -1.
        if n.get("Alive") and (n.get("MetricsExportPort") or 0) > 0
    ]


def grafana_folder() -> Path | None:
    """Where Ray's Grafana provisioning reads dashboards on this node, when this is the
    head with the dashboard (Ray's metrics module writes its own there at start:
    $RAY_METRICS_GRAFANA_DASHBOARD_OUTPUT_DIR, else <metrics root>/grafana/dashboards
    with the root $RAY_METRICS_OUTPUT_ROOT or <session dir>/metrics)."""
    if os.environ.get("RAY_METRICS_GRAFANA_DASHBOARD_OUTPUT_DIR"):
        folder = Path(os.environ["RAY_METRICS_GRAFANA_DASHBOARD_OUTPUT_DIR"])
    else:
        from orchestrator.execution.raycompat import session_dir

        session = session_dir()
        if session is None:  # a Ray Client connection: no node here
            return None
        root = os.environ.get("RAY_METRICS_OUTPUT_ROOT") or os.path.join(session, "metrics")
        folder = Path(root) / "grafana" / "dashboards"
    return folder if folder.parent.is_dir() else None


def install_grafana_dashboard() -> Path | None:
    """Copy the grid dashboard beside Ray's; its path, or None when not on the head."""
    folder = grafana_folder()
    if folder is None:
        return None
    folder.mkdir(exist_ok=True)
    target = folder / "grid_grafana_dashboard.json"
    shutil.copyfile(DASHBOARD_JSON, target)
    return target


def where_lines() -> list[str]:
    """What `grid launch` prints under the dashboard line: where to scrape, and Grafana."""
    urls = scrape_urls()
    shown = ", ".join(urls[:3]) + (f" and {len(urls) - 3} more nodes" if len(urls) > 3 else "")
    lines = [f"Prometheus metrics (ray_grid_*): {shown or 'no metrics endpoint reported'}"]
    installed = install_grafana_dashboard()
    if installed is not None:
        lines.append(f"Grafana dashboard: {installed} (provisioned with Ray's; docs/monitoring.md)")
    else:
        lines.append(f"Grafana dashboard: import {DASHBOARD_JSON} (docs/monitoring.md)")
    return lines
