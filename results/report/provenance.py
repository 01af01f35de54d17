"""Where a grid's results came from, summed up for the report: the spec and its hash, the
code versions, the devices and hosts, the device time, and the dates.

Every value is read from the trial rows (`results.store.schema.PROVENANCE`), so a grid whose cells
ran on several machines, commits or spec versions says so instead of showing one of them.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Any

from results.report.html import esc
from results.tables.build import fmt_duration


def counted(values: list[Any], unknown: str = "unknown") -> str:
    """`cpu (6), NVIDIA H100 (2)`: the distinct values, most frequent first, with counts
    when there is more than one; HTML-escaped."""
    counts = Counter(unknown if v is None else str(v) for v in values)
    if len(counts) == 1:
        return esc(next(iter(counts)))
    return ", ".join(f"{esc(v)} ({n})" for v, n in counts.most_common())


def _code(trials: list[dict]) -> str:
    return counted(
        [
            f"grid {t.get('grid_version') or '?'}"
            + (f" @ {t['git_commit'][:10]}" if t.get("git_commit") else "")
            for t in trials
        ]
    )


def _spec(spec: Any, trials: list[dict]) -> str:
    sha = getattr(spec, "sha256", None) or ""
    text = (
        f"<code>{esc(str(getattr(spec, 'path', '') or spec.name))}</code>, "
        f'sha256 <code title="{esc(sha)}">{esc(sha[:12])}</code>'
    )
    older = [t["spec_sha256"][:12] for t in trials if t.get("spec_sha256") not in (None, sha)]
    other = len(older)
    if other:  # an edited spec keeps the keys of unchanged cells: say which results predate it
        text += (
            f"; {other} of {len(trials)} results were written under another version "
            f"of the spec ({counted(older)})"
        )
    return text


def _time(trials: list[dict]) -> str:
    # Per cell: the cells of a pack (resources.pack > 1) each report the pack's wall time,
    # and rows carry no pack id, so a packed grid's sum counts a pack once per cell.
    seconds = sum(t.get("wall_s") or 0.0 for t in trials)
    return (
        f"{seconds / 3600:.2f} device-hours ({fmt_duration(seconds)} of training, summed "
        f"over {sum(t.get('wall_s') is not None for t in trials)} cells)"
    )


def _dates(trials: list[dict]) -> str:
    started = [t["started"] for t in trials if t.get("started")]
    ended = [t["ended"] for t in trials if t.get("ended")]
    if not started and not ended:
        return "unknown"
    # ISO 8601 in UTC with a fixed offset: text order is time order.
    first, last = min(started or ended), max(ended or started)
    return f"{esc(first.replace('T', ' ')[:16])} to {esc(last.replace('T', ' ')[:16])} UTC"


def provenance_items(spec: Any, trials: list[dict], now: datetime) -> list[tuple[str, str]]:
    """(label, HTML value) pairs for the report's provenance list."""
    if not trials:
        return [
            ("spec", _spec(spec, trials)),
            ("results", "none yet"),
            ("report written", esc(now.strftime("%Y-%m-%d %H:%M UTC"))),
        ]
    libs = ", ".join(
        f"{name} {counted([t.get(col) for t in trials], 'none')}"
        for name, col in (
            ("Python", "python_version"),
            ("torch", "torch_version"),
            ("Ray", "ray_version"),
            ("CUDA build", "cuda_version"),
        )
    )
    return [
        ("spec", _spec(spec, trials)),
        ("code", _code(trials)),
        ("libraries", libs),
        ("devices", counted([t.get("device") for t in trials])),
        ("hosts", counted([t.get("hostname") for t in trials])),
        ("device time", _time(trials)),
        ("trained", _dates(trials)),
        ("report written", esc(now.strftime("%Y-%m-%d %H:%M UTC"))),
    ]
