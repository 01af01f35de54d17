"""The HTML of `grid report`: the page shell with its inline CSS, and small element builders.

The page must open from disk with no network and no script: CSS is inline, figures are PNG
data URIs, and a live page (`--watch`) reloads itself with a meta refresh. The CSS has a
print section so that the page also reads on paper (no cut figures, no cut table rows).
"""

from __future__ import annotations

import base64
import html
from collections.abc import Iterable

CSS = """
:root { --ink: #1f2328; --muted: #59636e; --rule: #d0d7de; --band: #f6f8fa;
        --done: #009E73; --div: #E69F00; --failed: #D55E00; --missing: #8c959f;
        --stopped: #0072B2; }
* { box-sizing: border-box; }
body { margin: 0; color: var(--ink); background: #fff; line-height: 1.45;
       font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", sans-serif; }
main { max-width: 1080px; margin: 0 auto; padding: 28px 32px 48px; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 20px; margin: 36px 0 10px; padding-top: 8px; border-top: 1px solid var(--rule); }
h3 { font-size: 16px; margin: 22px 0 8px; }
p { margin: 6px 0; }
code, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 13px; }
.muted { color: var(--muted); }
.live { display: inline-block; padding: 2px 10px; border-radius: 10px; background: #fff8c5;
        border: 1px solid #d4a72c; font-size: 13px; }
nav { margin: 14px 0 0; font-size: 14px; }
nav a { margin-right: 14px; color: #0969da; text-decoration: none; }
.chips { display: flex; flex-wrap: wrap; gap: 8px; margin: 8px 0 10px; }
.chip { padding: 3px 12px; border-radius: 14px; border: 2px solid; font-weight: 600; font-size: 14px; }
.chip.done { border-color: var(--done); } .chip.diverged { border-color: var(--div); }
.chip.failed { border-color: var(--failed); } .chip.missing { border-color: var(--missing); }
.chip.stopped { border-color: var(--stopped); }
.bar { display: flex; height: 10px; border-radius: 5px; overflow: hidden; background: var(--band); }
.bar span { display: block; height: 100%; }
.bar .done { background: var(--done); } .bar .diverged { background: var(--div); }
.bar .failed { background: var(--failed); } .bar .missing { background: var(--band); }
.bar .stopped { background: var(--stopped); }
table { border-collapse: collapse; margin: 8px 0; font-size: 14px; font-variant-numeric: tabular-nums; }
caption { caption-side: top; text-align: left; font-weight: 600; padding: 0 0 6px; }
th, td { padding: 4px 10px; border-bottom: 1px solid var(--rule); vertical-align: top; }
thead th { border-bottom: 2px solid var(--ink); text-align: left; white-space: nowrap; }
th.num, td.num { text-align: right; }
td.num { white-space: nowrap; }
tbody tr:nth-child(even) { background: var(--band); }
td.missing { color: var(--missing); font-style: italic; }
td.diverged { color: #8a5a00; font-weight: 600; }
td.failed { color: #a33a00; font-weight: 600; }
td.stopped { color: var(--stopped); }
h3.outside { color: #a33a00; }
.grid-note { font-size: 13px; color: var(--muted); margin: 2px 0; }
.scroll { overflow-x: auto; }
figure { margin: 16px 0 8px; }
figure img { display: block; width: 100%; max-width: 900px; height: auto; }
figcaption { font-size: 13px; color: var(--muted); margin-top: 4px; max-width: 900px; }
pre.error { margin: 0; white-space: pre-wrap; word-break: break-word; font-size: 12px;
            max-height: 9em; overflow: auto; }
details summary { cursor: pointer; color: #0969da; }
dl.prov { display: grid; grid-template-columns: max-content 1fr; gap: 4px 18px; margin: 8px 0; }
dl.prov dt { color: var(--muted); } dl.prov dd { margin: 0; }
footer { margin-top: 40px; font-size: 13px; color: var(--muted); }
@media print {
  body { font-size: 11pt; } main { max-width: none; padding: 0; }
  nav, .live { display: none; }
  h2 { break-after: avoid; } figure, table, tr, dl.prov { break-inside: avoid; }
  pre.error { max-height: none; } .scroll { overflow: visible; }
  a { color: inherit; text-decoration: none; }
}
"""

esc = html.escape


def page(title: str, body: str, refresh: float | None = None) -> str:
    """The whole document; with `refresh` the browser reloads it every `refresh` seconds."""
    meta = f'<meta http-equiv="refresh" content="{max(1, round(refresh))}">' if refresh else ""
    return (
        '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"{meta}<title>{esc(title)}</title>\n<style>{CSS}</style>\n</head>\n"
        f"<body>\n<main>\n{body}\n</main>\n</body>\n</html>\n"
    )


def figure(png: bytes, alt: str, caption: str, kind: str) -> str:
    """A `<figure>` with the PNG embedded as a data URI (the page stays one file)."""
    data = base64.b64encode(png).decode("ascii")
    return (
        f'<figure class="fig-{esc(kind)}"><img alt="{esc(alt)}" '
        f'src="data:image/png;base64,{data}">'
        f"<figcaption>{esc(caption)}</figcaption></figure>"
    )


def simple_table(
    header: list[str], rows: Iterable[list[str]], cls: str = "", raw_last: bool = False
) -> str:
    """A plain `<table>`; `raw_last`: the last cell of each row is HTML already."""
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = []
    for r in rows:
        cells = [f"<td>{esc(c)}</td>" for c in (r[:-1] if raw_last else r)]
        if raw_last:
            cells.append(f"<td>{r[-1]}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (
        f'<div class="scroll"><table class="{esc(cls)}"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )


def chips(counts: dict[str, int]) -> str:
    """The status counts as labelled chips and a stacked bar (colour is never the only cue:
    each chip says its name)."""
    total = sum(counts.values()) or 1
    chip = "".join(f'<span class="chip {s}">{n} {s}</span>' for s, n in counts.items())
    bar = "".join(
        f'<span class="{s}" style="width:{100 * n / total:.2f}%"></span>'
        for s, n in counts.items()
        if n
    )
    return f'<div class="chips">{chip}</div><div class="bar" aria-hidden="true">{bar}</div>'


def definitions(items: list[tuple[str, str]]) -> str:
    """A `<dl>` of label / HTML value pairs."""
    return (
        '<dl class="prov">' + "".join(f"<dt>{esc(k)}</dt><dd>{v}</dd>" for k, v in items) + "</dl>"
    )
