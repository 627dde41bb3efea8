"""report.html: one self-contained file (inline CSS, figures as data: URIs, no JavaScript, no
external URL) that opens anywhere, offline, and can be attached to a ticket or a CI artefact."""
from __future__ import annotations

import base64
import struct
from html import escape

import yaml

from edgecv.report import summary as S
from edgecv.report.markdown import intro
from edgecv.report.plots import MISSING, PLOTS

CSS = """
:root { --ink:#1d232a; --muted:#6a737d; --line:#e1e4e8; --zebra:#f6f8fa; --accent:#1f6feb;
        --measured:#1a7f37; --estimated:#9a6700; --fail:#cf222e; }
* { box-sizing: border-box; }
body { margin: 0; background: #fff; color: var(--ink);
       font: 15px/1.5 -apple-system, "Segoe UI", "DejaVu Sans", Helvetica, Arial, sans-serif; }
main { max-width: 1320px; margin: 0 auto; padding: 24px 32px 64px; }
h1 { font-size: 26px; margin: 0 0 6px; }
h2 { font-size: 19px; margin: 34px 0 10px; padding-bottom: 4px; border-bottom: 1px solid var(--line); }
.intro { color: var(--muted); margin: 0 0 14px; }
.intro code, td code { font-size: 13px; }
.headline { display: flex; flex-wrap: wrap; gap: 8px; margin: 14px 0 4px; }
.headline span { background: var(--zebra); border: 1px solid var(--line); border-radius: 6px; padding: 4px 10px; }
.headline span:first-child { background: #ddf4ff; border-color: #54aeff; font-weight: 600; }
table { border-collapse: collapse; margin: 6px 0 6px; font-size: 14px; }
th, td { border: 1px solid var(--line); padding: 5px 9px; vertical-align: top; white-space: nowrap; }
td.text { white-space: normal; min-width: 16em; }
th { background: var(--zebra); text-align: left; white-space: nowrap; }
tbody tr:nth-child(even) { background: #fbfbfc; }
td.right, th.right { text-align: right; white-space: nowrap; }
td.measured { color: var(--measured); font-weight: 600; }
td.estimated { color: var(--estimated); }
td.pass { color: var(--measured); }
td.fail, td.worse { color: var(--fail); }
td.ship { font-weight: 700; white-space: nowrap; }
td.muted { color: var(--muted); }
.notes { color: var(--muted); font-size: 13px; margin: 2px 0 8px; }
.notes p { margin: 0; }
.scroll { overflow-x: auto; }
figure { margin: 18px 0 26px; }
figure img { display: block; max-width: 100%; height: auto; border: 1px solid var(--line); border-radius: 4px; }
figcaption { color: var(--muted); font-size: 13px; margin-top: 4px; }
.missing { color: var(--muted); font-style: italic; border: 1px dashed var(--line); padding: 10px 14px; }
details { margin: 8px 0; }
summary { cursor: pointer; color: var(--accent); }
pre { background: var(--zebra); border: 1px solid var(--line); border-radius: 6px; padding: 12px; font-size: 13px;
      overflow-x: auto; }
footer { margin-top: 40px; color: var(--muted); font-size: 12px; }
"""


def png_size(png: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk."""
    return struct.unpack(">II", png[16:24])


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def table(t: S.Table, cls: str = "") -> str:
    head = "".join(f'<th class="{a}">{escape(h)}</th>' for h, a in zip(t.header, t.align)) if any(t.header) else ""
    body = []
    for row in t.rows:
        cells = []
        for c, a in zip(row, t.align):
            classes = " ".join(x for x in (a, c.tone) if x)
            cells.append(f'<td class="{classes}">{escape(c.text)}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    notes = "".join(f"<p>{escape(n)}</p>" for n in t.notes)
    return (f'<div class="scroll"><table class="{cls}">' + (f"<thead><tr>{head}</tr></thead>" if head else "")
            + "<tbody>" + "".join(body) + "</tbody></table></div>" + (f'<div class="notes">{notes}</div>' if notes else ""))


def figure(name: str, caption: str, png: bytes | None, missing: str) -> str:
    if not png:
        return f'<p class="missing" data-plot="{name}">{escape(caption)}: {escape(missing)}.</p>'
    w, h = png_size(png)
    return (f'<figure><img class="plot" data-plot="{name}" alt="{escape(caption)}" width="{w}" height="{h}" '
            f'src="{data_uri(png)}"><figcaption>{escape(caption)}</figcaption></figure>')


def _page(title: str, body: str) -> str:
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{escape(title)}</title><style>{CSS}</style></head>\n<body><main>\n{body}\n"
            "<footer>Written by edgecv from report.json (fields: docs/report-schema.md); "
            "re-render with <code>edgecv report RUN_DIR</code>.</footer>\n</main></body></html>\n")


def render_html(report: dict, images: dict[str, bytes | None] | None, plots_missing: str | None = None) -> str:
    """`images`: plot name → PNG bytes (None: no data); `plots_missing` says why there are none at all."""
    name = report.get("recipe", {}).get("name", "?")
    parts = [f"<h1>edgecv report: {escape(name)}</h1>",
             '<p class="intro">' + "<br>".join(escape(line.rstrip()) for line in intro(report)) + "</p>"]
    facts = S.headline(report)
    if facts:
        parts.append('<div class="headline">' + "".join(f"<span>{escape(f)}</span>" for f in facts) + "</div>")
    ship = S.ship_table(report)
    if ship:
        parts += ["<h2>What to ship, per device</h2>", table(ship)]
    parts += ["<h2>Artefacts</h2>", table(S.summary_table(report), "summary")]
    parts.append("<h2>Figures</h2>")
    if plots_missing:
        parts.append(f'<p class="missing">No figures: {escape(plots_missing)}.</p>')
    else:
        for key, (caption, _) in PLOTS.items():
            parts.append(figure(key, caption, (images or {}).get(key), MISSING[key]))
    parts += ["<h2>Stage wall times</h2>", table(S.stage_table(report))]
    for dev, t in S.top_ops_tables(report).items():
        parts += [f"<h2>Where the time goes on {escape(dev)} (estimated, top 5 ops)</h2>", table(t)]
    sparsity = S.sparsity_table(report)
    if sparsity:
        parts += ["<h2>Per-layer sparsity</h2>", "<details><summary>every layer</summary>", table(sparsity), "</details>"]
    recipe = yaml.safe_dump(report.get("recipe", {}), sort_keys=False, allow_unicode=True)
    parts += ["<h2>Recipe and environment</h2>",
              "<details><summary>the resolved recipe (YAML)</summary><pre>" + escape(recipe) + "</pre></details>",
              "<details open><summary>environment</summary>" + table(S.environment_table(report)) + "</details>"]
    return _page(f"edgecv report: {name}", "\n".join(parts))


def render_comparison_html(runs: list[tuple[str, dict]], sources: list[str], png: bytes | None,
                           plots_missing: str | None = None) -> str:
    parts = ["<h1>edgecv: comparison of runs</h1>",
             '<p class="intro">' + "<br>".join(escape(s) for s in sources) + "</p>",
             "<h2>Shipped artefact per run</h2>", table(S.comparison_table(runs), "summary"),
             "<h2>Accuracy vs latency across runs</h2>",
             figure("comparison_accuracy_vs_latency", "Accuracy vs latency across runs", png,
                    plots_missing or "no run has latencies")]
    for label, report in runs:
        parts += [f"<h2>{escape(label)}: every artefact</h2>", table(S.summary_table(report))]
    return _page("edgecv: comparison of runs", "\n".join(parts))
