"""The report's figures, one small function each, returning PNG bytes (or None when the report
lacks the data). matplotlib is imported inside the functions, drawn with the Agg canvas straight on a
Figure (no pyplot, so a user's interactive backend is never touched).

One style for all: white background, 10 pt text at 110 dpi (readable at 100 % zoom), the same colour
for the same artefact in every figure, filled circles for measured latencies and open squares for
estimated ones.
"""
from __future__ import annotations

import io

import numpy as np

from edgecv.errors import MissingExtraError
from edgecv.fileio import human_size
from edgecv.report import summary as S

DPI = 110
WIDTH = 8.6  # inches: ~950 px
PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#17becf", "#e377c2", "#bcbd22", "#7f7f7f",
           "#393b79", "#637939", "#843c39"]  # no red: red is the Pareto front
FRONT = "#d62728"
TEACHER = "#555555"
INSTALL = 'pip install "edgecv[report]"'


def _mpl():
    try:
        import matplotlib
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as e:
        raise MissingExtraError(f"the report's plots need matplotlib, which is not installed: {INSTALL}") from e
    return matplotlib, Figure, FigureCanvasAgg


def available() -> bool:
    try:
        _mpl()
        return True
    except MissingExtraError:
        return False


RC = {"font.size": 10, "axes.titlesize": 11, "axes.titleweight": "bold", "axes.labelsize": 10, "legend.fontsize": 9,
      "xtick.labelsize": 9, "ytick.labelsize": 9, "axes.spines.top": False, "axes.spines.right": False,
      "axes.grid": True, "grid.color": "#e3e3e3", "grid.linewidth": 0.8, "axes.axisbelow": True,
      "figure.facecolor": "white", "axes.facecolor": "white", "savefig.facecolor": "white",
      "font.family": "DejaVu Sans"}


def _figure(width: float, height: float, **subplots):
    matplotlib, Figure, FigureCanvasAgg = _mpl()
    with matplotlib.rc_context(RC):
        fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
        FigureCanvasAgg(fig)
        axes = fig.subplots(**subplots) if subplots else fig.subplots()
    return fig, axes


def _png(fig) -> bytes:
    matplotlib, _, _ = _mpl()
    buf = io.BytesIO()
    with matplotlib.rc_context(RC):
        fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return buf.getvalue()


def _styled(fn):
    """Run a plot function inside the shared rc style (ticks, fonts, grid are read when artists are made)."""
    def wrapper(*args, **kwargs):
        matplotlib, _, _ = _mpl()
        with matplotlib.rc_context(RC):
            return fn(*args, **kwargs)
    wrapper.__name__, wrapper.__doc__ = fn.__name__, fn.__doc__
    return wrapper


def artefact_colours(report: dict) -> dict[str, str]:
    names = ["teacher"] + [a["name"] for a in report.get("artefacts", [])]
    return {n: PALETTE[i % len(PALETTE)] for i, n in enumerate(names)}


def _short(name: str) -> str:
    return name.removeprefix("student-")


def _percent_axis(ax, axis="y"):
    from matplotlib.ticker import PercentFormatter

    (ax.yaxis if axis == "y" else ax.xaxis).set_major_formatter(PercentFormatter(xmax=1, decimals=None))


def _no_data(ax, text):
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="#777777", wrap=True)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)


# ---------------------------------------------------------------------------------------------- per run

@_styled
def accuracy_vs_latency(report: dict) -> bytes | None:
    """One panel per device: artefacts at (latency, top-1), measured filled, estimated open, the
    Pareto front (nothing else is both faster and more accurate) drawn and its points ringed."""
    points = S.latency_points(report)
    if not any(points.values()):
        return None
    colours = artefact_colours(report)
    teacher = ((report.get("teacher") or {}).get("metrics") or {}).get("top1")
    series = {dev: [(p, colours.get(p["name"], PALETTE[0]), _short(p["name"])) for p in pts] for dev, pts in points.items()}
    return _latency_panels(series, teacher, "Accuracy vs latency per device (up and left is better)")


def _latency_panels(series: dict[str, list[tuple[dict, str, str]]], teacher: float | None, title: str,
                    legend_labels: dict[str, str] | None = None) -> bytes:
    from matplotlib.lines import Line2D

    devices = list(series)
    cols = min(len(devices), 3)
    rows = -(-len(devices) // cols)
    fig_width = max(WIDTH * 0.7, 3.8 * cols)
    fig, axes = _figure(fig_width, 3.7 * rows + 0.6, nrows=rows, ncols=cols, squeeze=False)
    fig.suptitle(title, fontweight="bold")
    flat = list(axes.flat)
    # one accuracy range for every panel, so the devices compare at a glance
    ys = [p["top1"] for pts in series.values() for p, _, _ in pts] + ([teacher] if teacher is not None else [])
    ylo, yhi = min(ys), max(ys)
    ypad = max((yhi - ylo) * 0.2, 0.005)
    for ax, dev in zip(flat, devices):
        pts = series[dev]
        ax.set_title(dev)
        if not pts:
            _no_data(ax, f"no latency for any artefact on {dev}")
            continue
        xy = [(p["ms"], p["top1"]) for p, _, _ in pts]
        front = S.pareto_front(xy)
        fx, fy = [xy[i][0] for i in front], [xy[i][1] for i in front]
        ax.step(fx, fy, where="post", color=FRONT, lw=1.6, alpha=0.8, zorder=2)
        ax.scatter(fx, fy, s=260, facecolors="none", edgecolors=FRONT, linewidths=1.6, zorder=3)
        for p, colour, _ in pts:
            measured = p["source"] == S.MEASURED
            ax.scatter([p["ms"]], [p["top1"]], s=70, marker="o" if measured else "s", zorder=4,
                       facecolors=colour if measured else "white", edgecolors=colour, linewidths=2)
        if teacher is not None:
            ax.axhline(teacher, color=TEACHER, ls="--", lw=1, zorder=1)
            ax.annotate(f"teacher {teacher:.2%}", (0.01, teacher), xycoords=("axes fraction", "data"),
                        xytext=(0, 3), textcoords="offset points", fontsize=8, color=TEACHER)
        xs = [x for x, _ in xy]
        lo, hi = min(xs), max(xs)
        if hi / max(lo, 1e-9) > 8:
            ax.set_xscale("log")
        else:
            pad = max((hi - lo) * 0.25, hi * 0.15)
            ax.set_xlim(max(0, lo - pad), hi + pad * 1.6)
        ax.set_ylim(ylo - ypad, yhi + ypad * 1.5)
        panel = (fig_width / cols * 72 * 0.78, 3.7 * 72 * 0.7)  # axes size, points
        for i, offset in _label_offsets(ax, xy, [label for _, _, label in pts], front, panel).items():
            ax.annotate(pts[i][2], xy[i], xytext=offset, textcoords="offset points", fontsize=8.5, color="#222222",
                        fontweight="bold" if i in front else "normal", zorder=5)
        _percent_axis(ax)
        ax.set_xlabel("latency, batch 1 (ms)")
        ax.set_ylabel("top-1 (held-out)")
    for ax in flat[len(devices):]:
        ax.set_visible(False)
    handles = [Line2D([], [], marker="o", ls="", color="#444444", markerfacecolor="#444444", label="measured"),
               Line2D([], [], marker="s", ls="", color="#444444", markerfacecolor="white", markeredgewidth=2,
                      label="estimated"),
               Line2D([], [], color=FRONT, marker="o", markerfacecolor="none", markersize=13, label="Pareto front")]
    for label, colour in (legend_labels or {}).items():
        handles.append(Line2D([], [], marker="o", ls="", color=colour, label=label))
    fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 6), frameon=False)
    return _png(fig)


def _label_offsets(ax, xy, labels, first, panel) -> dict[int, tuple[float, float]]:
    """Offsets (points) for the point labels so they overlap neither each other nor the markers
    (greedy: Pareto points first, each label at the first free place right of its point)."""
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    log = ax.get_xscale() == "log"

    def to_points(x, y):
        fx = (np.log(x / x0) / np.log(x1 / x0)) if log else (x - x0) / (x1 - x0)
        return fx * panel[0], (y - y0) / (y1 - y0) * panel[1]

    anchors = [to_points(x, y) for x, y in xy]
    taken = [(px - 6, py - 6, px + 6, py + 6) for px, py in anchors]  # the markers
    out = {}
    for i in list(first) + [i for i in range(len(xy)) if i not in first]:
        px, py = anchors[i]
        w, h = 8.5 * 0.62 * len(labels[i]), 10
        best, best_hits = None, None
        for dx, dy in ((7, 6), (7, -15), (7, 18), (7, -27), (-7 - w, 6), (-7 - w, -15), (7, 30), (7, -39)):
            box = (px + dx, py + dy, px + dx + w, py + dy + h)
            hits = sum(box[0] < t[2] and t[0] < box[2] and box[1] < t[3] and t[1] < box[3] for t in taken)
            if best_hits is None or hits < best_hits:
                best, best_hits = (dx, dy, box), hits
            if hits == 0:
                break
        out[i] = (best[0], best[1])
        taken.append(best[2])
    return out


@_styled
def size_per_artefact(report: dict) -> bytes | None:
    """File size and gzip size per artefact (the teacher first), horizontal bars with the figures."""
    rows = []
    t = report.get("teacher") or {}
    if t.get("size_bytes"):
        rows.append(("teacher", "keras", t["size_bytes"], t.get("gzip_bytes")))
    rows += [(a["name"], a["format"], a["size_bytes"], a.get("gzip_bytes")) for a in report.get("artefacts", [])
             if a.get("size_bytes")]
    if not rows:
        return None
    colours = artefact_colours(report)
    fig, ax = _figure(WIDTH, 0.9 + 0.42 * len(rows))
    top = max(r[2] for r in rows)
    unit, factor = ("MB", 1024 ** 2) if top >= 1024 ** 2 else ("KB", 1024)
    y = np.arange(len(rows))[::-1]
    raw = [r[2] for r in rows]
    gz = [r[3] or 0 for r in rows]
    colour = [colours.get(r[0], PALETTE[0]) for r in rows]
    ax.barh(y + 0.19, [v / factor for v in raw], height=0.36, color=colour, label="file")
    ax.barh(y - 0.19, [v / factor for v in gz], height=0.36, color=colour, alpha=0.45, hatch="///", edgecolor="white",
            label="gzip -9")
    for yi, r, g in zip(y, raw, gz):
        ax.text((r + top * 0.01) / factor, yi + 0.19, human_size(r), va="center", fontsize=8.5)
        if g:
            ax.text((g + top * 0.01) / factor, yi - 0.19, f"{human_size(g)} gz", va="center", fontsize=8.5, color="#444444")
    ax.set_yticks(y, [f"{n}  ({f})" for n, f, _, _ in rows])
    ax.set_xlim(0, top * 1.18 / factor)
    ax.set_xlabel(f"size ({unit}, 1024-based)")
    ax.grid(axis="y", visible=False)
    ax.set_title("Size per artefact: file and after gzip -9 (download cost)")
    ax.legend(loc="lower right", frameon=False)
    return _png(fig)


@_styled
def accuracy_per_stage(report: dict) -> bytes | None:
    """top-1 along teacher → distilled → pruned → QAT → int8 (stages the run skipped are left out)."""
    steps = S.stage_accuracy(report)
    if len(steps) < 2:
        return None
    colours = artefact_colours(report)
    fig, ax = _figure(WIDTH * 0.8, 3.6)
    x = np.arange(len(steps))
    y = [s[2] for s in steps]
    ax.plot(x, y, color="#999999", lw=1.5, zorder=1)
    for xi, (label, name, top1) in zip(x, steps):
        ax.scatter([xi], [top1], s=90, color=colours.get(name, PALETTE[0]), zorder=2)
        ax.annotate(f"{top1:.2%}", (xi, top1), xytext=(0, 9), textcoords="offset points", ha="center", fontsize=9,
                    fontweight="bold")
    ax.set_xticks(x, [label if label == "teacher" else f"{label}\n{name}" for label, name, _ in steps])
    lo, hi = min(y), max(y)
    pad = max((hi - lo) * 0.25, 0.005)
    ax.set_ylim(lo - pad, hi + pad * 1.8)
    ax.set_xlim(-0.4, len(steps) - 0.6)
    _percent_axis(ax)
    ax.set_ylabel("top-1 (held-out)")
    ax.set_title("Accuracy per stage")
    return _png(fig)


@_styled
def confusion(report: dict) -> bytes | None:
    """Confusion matrix of the shipped artefact: row-normalised colour (recall), counts written in."""
    ship = S.shipped_artefact(report)
    cm = S.confusion_matrix(report, ship)
    if cm is None:
        return None
    n = cm.shape[0]
    names = list((report.get("data") or {}).get("class_names") or range(n))
    side = min(max(4.5, 0.55 * n + 2.4), 11)
    fig, ax = _figure(side + 1.2, side)
    rates = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    im = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    ax.grid(False)
    if n <= 30:
        for i in range(n):
            for j in range(n):
                if cm[i, j]:
                    ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=8 if n <= 12 else 6,
                            color="white" if rates[i, j] > 0.55 else "#222222")
    ax.set_xticks(range(n), [str(c) for c in names], rotation=40, ha="right")
    ax.set_yticks(range(n), [str(c) for c in names])
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    for s in ax.spines.values():
        s.set_visible(False)
    fig.colorbar(im, ax=ax, shrink=0.8, label="fraction of the true class", format="{x:.0%}")
    top1 = np.trace(cm) / max(cm.sum(), 1)
    ax.set_title(f"Confusion matrix: {ship['name']} ({cm.sum():,} images, {top1:.2%} on the diagonal)")
    return _png(fig)


@_styled
def layer_sparsity(report: dict) -> bytes | None:
    """Zero fraction per layer kernel after pruning; layers left dense in grey, the target as a line."""
    prune = (report.get("stages", {}).get("prune") or {}).get("result")
    if not prune or not prune.get("layers"):
        return None
    layers = list(prune["layers"].items())
    n = len(layers)
    fig, ax = _figure(max(WIDTH, 0.17 * n + 1.6), 4.2)
    x = np.arange(n)
    for xi, (_, v) in zip(x, layers):
        if not v.get("pruned"):  # a dense layer's bar is at 0: shade its column so it is seen
            ax.axvspan(xi - 0.45, xi + 0.45, color="#ececec", zorder=0, lw=0)
    ax.bar(x, [v.get("sparsity", 0) for _, v in layers], color=["#2b7bba" if v.get("pruned") else "#999999" for _, v in layers],
           width=0.8, zorder=2)
    target = prune.get("target_sparsity")
    if target is not None:
        ax.axhline(target, color=FRONT, ls="--", lw=1.2)
        ax.annotate(f"target {target:.0%}", (1.0, target), xycoords=("axes fraction", "data"), xytext=(-4, 4),
                    textcoords="offset points", ha="right", fontsize=8.5, color=FRONT)
    ax.set_xticks(x, [name for name, _ in layers], rotation=90, fontsize=7 if n > 30 else 8.5)
    ax.set_xlim(-0.7, n - 0.3)
    ax.set_ylim(0, 1)
    _percent_axis(ax)
    ax.set_ylabel("kernel sparsity")
    ax.grid(axis="x", visible=False)
    from matplotlib.patches import Patch

    ax.legend(handles=[Patch(color="#2b7bba", label="pruned"), Patch(facecolor="#ececec", edgecolor="#999999", label="left dense (depthwise)")],
              loc="upper left", frameon=False, ncols=2)
    measured = prune.get("measured_sparsity")
    ax.set_title("Per-layer sparsity" + (f" (measured over all pruned kernels: {measured:.1%})" if measured is not None else ""))
    return _png(fig)


@_styled
def stage_times(report: dict) -> bytes | None:
    """Wall time per stage that ran."""
    done = [(name, s["wall_s"]) for name, s in report.get("stages", {}).items() if s.get("wall_s") is not None]
    if not done:
        return None
    fig, ax = _figure(WIDTH * 0.8, 0.8 + 0.36 * len(done))
    y = np.arange(len(done))[::-1]
    secs = [w for _, w in done]
    ax.barh(y, secs, color="#6b8fb3", height=0.6)
    top = max(secs)
    total = sum(secs)
    for yi, w in zip(y, secs):
        ax.text(w + top * 0.01, yi, f"{S.duration(w)}  ({w / total:.0%})", va="center", fontsize=8.5)
    ax.set_yticks(y, [n for n, _ in done])
    ax.set_xlim(0, top * 1.25)
    ax.set_xlabel("wall time (s)")
    ax.grid(axis="y", visible=False)
    ax.set_title(f"Stage wall times (total {S.duration(total)})")
    return _png(fig)


PLOTS = {  # name → (caption, function): the order the report shows them in
    "accuracy_vs_latency": ("Accuracy vs latency per device, with the Pareto front", accuracy_vs_latency),
    "size": ("Size per artefact", size_per_artefact),
    "accuracy_per_stage": ("Accuracy per stage", accuracy_per_stage),
    "confusion": ("Confusion matrix of the shipped artefact", confusion),
    "sparsity": ("Per-layer sparsity after pruning", layer_sparsity),
    "stage_times": ("Stage wall times", stage_times),
}
MISSING = {  # what to say when a plot has no data
    "accuracy_vs_latency": "no latencies in this report (the profile stage did not run, or priced nothing)",
    "size": "no artefact sizes in this report",
    "accuracy_per_stage": "fewer than two stages with an accuracy",
    "confusion": "no per-image predictions in this report (made before edgecv recorded them): rerun the evaluation",
    "sparsity": "the prune stage did not run",
    "stage_times": "no stage wall times",
}


def render_all(report: dict) -> dict[str, bytes | None]:
    """name → PNG bytes (None: no data for it), for every plot in PLOTS."""
    _mpl()
    return {name: fn(report) for name, (_, fn) in PLOTS.items()}


# ---------------------------------------------------------------------------------------------- comparison

@_styled
def comparison_accuracy_vs_latency(runs: list[tuple[str, dict]]) -> bytes | None:
    """One panel per device: every artefact of every run with a latency, coloured by run, and the
    Pareto front across all runs."""
    series: dict[str, list] = {}
    legend = {}
    for i, (label, report) in enumerate(runs):
        colour = PALETTE[i % len(PALETTE)]
        legend[label] = colour
        for dev, pts in S.latency_points(report).items():
            series.setdefault(dev, []).extend((p, colour, f"{label}: {_short(p['name'])}") for p in pts)
    if not any(series.values()):
        return None
    return _latency_panels(series, None, "Accuracy vs latency across runs (up and left is better)", legend)
