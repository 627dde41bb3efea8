"""report.md: the same tables and figures as report.html, the figures as PNG files beside it
(`report_files/`, linked relatively, so the Markdown renders on GitHub and in editors)."""
from __future__ import annotations

import yaml

from edgecv.report import summary as S
from edgecv.report.plots import MISSING, PLOTS


def table(t: S.Table) -> list[str]:
    def esc(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    def cell(c: S.Cell) -> str:
        return f"**{esc(c.text)}**" if c.tone == "ship" else esc(c.text)

    sep = ["---:" if a == "right" else "---" for a in t.align]
    lines = ["| " + " | ".join(esc(h) for h in t.header) + " |", "|" + "|".join(sep) + "|"]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in t.rows]
    return lines + [""] + [f"_{esc(n)}_  " for n in t.notes] + ([""] if t.notes else [])


def _figure(name: str, images: dict[str, str] | None) -> list[str]:
    caption = PLOTS[name][0]
    if images and images.get(name):
        return [f"![{caption}]({images[name]})", ""]
    return [f"_{caption}: {MISSING[name]}._", ""]


def _count(n) -> str:
    return f"{n:,}" if isinstance(n, int) else "?"


def intro(report: dict) -> list[str]:
    r, d, t = report.get("recipe", {}), report.get("data", {}), report.get("teacher", {})
    st = r.get("student", {})
    lines = [f"Recipe {r.get('name', '?')}" + (f" — {r['description']}" if r.get("description") else "") + ".  ",
             f"Data: {d.get('source', '?')} — {_count(d.get('train_samples'))} training / {_count(d.get('test_samples'))} "
             f"held-out images, {d.get('num_classes', '?')} classes (test set {d.get('test_set_hash', '?')}).  ",
             *(f"Data warning: {w}.  " for w in d.get("warnings", [])),
             f"Student: {st.get('arch', '?')} (alpha {st.get('alpha')}, {st.get('input_size')} px). "
             f"Teacher: {t.get('path', '?')} ({t.get('outputs', '?')}).  ",
             f"Written {report.get('created_at', '?')}."]
    return lines


def render_markdown(report: dict, images: dict[str, str] | None = None, plots_missing: str | None = None) -> str:
    """`images`: plot name → relative path of its PNG; `plots_missing` says why there are none."""
    lines = [f"# edgecv report: {report.get('recipe', {}).get('name', '?')}", ""] + intro(report) + [""]
    facts = S.headline(report)
    if facts:
        lines += ["**Shipped artefact:** " + " · ".join(facts), ""]
    ship = S.ship_table(report)
    if ship:
        lines += ["## What to ship, per device", ""] + table(ship)
    lines += ["## Artefacts", ""] + table(S.summary_table(report))
    lines += ["## Figures", ""]
    if plots_missing:
        lines += [f"_No figures: {plots_missing}._", ""]
    else:
        for name in PLOTS:
            lines += _figure(name, images)
    lines += ["## Stage wall times", ""] + table(S.stage_table(report))
    for dev, t in S.top_ops_tables(report).items():
        lines += [f"## Where the time goes on {dev} (estimated, top 5 ops)", ""] + table(t)
    sparsity = S.sparsity_table(report)
    if sparsity:
        lines += ["## Per-layer sparsity", "", "<details><summary>every layer</summary>", ""] + table(sparsity) \
            + ["</details>", ""]
    lines += ["## Recipe", "", "<details><summary>the resolved recipe</summary>", "", "```yaml",
              yaml.safe_dump(report.get("recipe", {}), sort_keys=False, allow_unicode=True).rstrip(), "```", "",
              "</details>", "", "## Environment", ""] + table(S.environment_table(report))
    return "\n".join(lines).rstrip() + "\n"


def render_comparison_markdown(runs: list[tuple[str, dict]], sources: list[str], image: str | None,
                               plots_missing: str | None = None) -> str:
    lines = ["# edgecv: comparison of runs", "", "Runs: " + ", ".join(f"`{s}`" for s in sources), "",
             "## Shipped artefact per run", ""] + table(S.comparison_table(runs))
    lines += ["## Accuracy vs latency across runs", ""]
    if image:
        lines += [f"![Accuracy vs latency across runs]({image})", ""]
    else:
        lines += [f"_{plots_missing or 'no run has latencies'}._", ""]
    for label, report in runs:
        lines += [f"## {label}", ""] + table(S.summary_table(report))
    return "\n".join(lines).rstrip() + "\n"
