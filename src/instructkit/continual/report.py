"""The continual run's report (``report.md`` + ``report.html`` in the run folder) and the side-by-side
comparison of several runs (``instructkit continual compare RUN...``).

The score matrix R is drawn as an inline SVG heatmap and the per-round curves as an inline SVG line chart,
written by hand (about 60 lines) rather than as matplotlib PNGs: the HTML stays one self-contained file
that a comparison page can place several of side by side, and the cells carry their numbers as text.
Every metric is printed with its definition beside it, since papers define BWT, FWT and forgetting
differently (the definitions are those of ``continual/metrics.py``).
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from instructkit.files import write_text

DEFINITIONS = {
    "ACC": "mean over tasks j of R[T-1][j] after the last round (Lopez-Paz & Ranzato 2017, eq. 2)",
    "BWT": "mean over earlier tasks j<T-1 of R[T-1][j] - R[j][j]; negative = forgetting (ibid., eq. 3)",
    "FWT": "mean over j>0 of R[j-1][j] - R[-1][j]: score on task j before training it vs the untouched "
    "model (ibid., eq. 4, untouched model as baseline)",
    "forgetting": "mean over earlier tasks of max_{j<=i<T-1} R[i][j] - R[T-1][j] (Chaudhry et al. 2018, eq. 5-6)",
    "general delta": "general-set ROUGE-L after the last round minus the untouched model's",
}
COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"]


def summarize(matrix: Any) -> dict[str, Any]:
    """ACC, BWT, FWT, average forgetting (and per task), general delta, over the rounds finished."""
    from instructkit.continual.metrics import (
        average_accuracy,
        average_forgetting,
        backward_transfer,
        forgetting,
        forward_transfer,
        general_delta,
        not_learned,
    )

    out: dict[str, Any] = {
        "ACC": average_accuracy(matrix),
        "BWT": backward_transfer(matrix),
        "FWT": forward_transfer(matrix),
        "forgetting": average_forgetting(matrix),
        "forgetting_per_task": forgetting(matrix),
        "not_learned": not_learned(matrix),
    }
    has_general = matrix.general_untouched is not None and matrix.general and matrix.general[-1] is not None
    out["general delta"] = general_delta(matrix) if has_general else None
    return out


def _fmt(v: Any) -> str:
    return "—" if v is None else f"{v:.1f}"


def _load(run_dir: Path) -> dict[str, Any]:
    path = Path(run_dir) / "matrix.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not a finished continual run (no matrix.json)")
    doc = json.loads(path.read_text())
    doc["name"] = Path(run_dir).name
    scores = json.loads((Path(run_dir) / "round-base" / "scores.json").read_text())["scores"]
    doc["metrics"] = {t: s["metric"] for t, s in scores.items()}
    return doc


def _rows(doc: dict[str, Any]) -> list[tuple[str, list[Any]]]:
    m = doc["matrix"]
    rows = [("untouched", m["untouched"])]
    rows += [(f"after {m['tasks'][i]} (round {i})", r) for i, r in enumerate(m["rounds"])]
    return rows


def _cell_color(v: float | None) -> str:
    if v is None:
        return "#eeeeee"
    x = max(0.0, min(1.0, v / 100))
    # white (0) -> blue (100)
    r, g, b = int(255 - 200 * x), int(255 - 120 * x), 255
    return f"#{r:02x}{g:02x}{b:02x}"


def heatmap_svg(doc: dict[str, Any]) -> str:
    tasks = doc["matrix"]["tasks"]
    rows = _rows(doc)
    cw, ch, left, top = 90, 28, 190, 40
    w, h = left + cw * len(tasks) + 10, top + ch * len(rows) + 10
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">'
    ]
    for j, t in enumerate(tasks):
        parts.append(
            f'<text x="{left + cw * j + cw / 2}" y="{top - 10}" text-anchor="middle">{html.escape(t)}</text>'
        )
    for i, (label, row) in enumerate(rows):
        y = top + ch * i
        parts.append(
            f'<text x="{left - 6}" y="{y + ch / 2 + 4}" text-anchor="end">{html.escape(label)}</text>'
        )
        for j, v in enumerate(row):
            x = left + cw * j
            parts.append(
                f'<rect x="{x}" y="{y}" width="{cw - 2}" height="{ch - 2}" fill="{_cell_color(v)}"/>'
            )
            parts.append(f'<text x="{x + cw / 2}" y="{y + ch / 2 + 4}" text-anchor="middle">{_fmt(v)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def curves_svg(doc: dict[str, Any]) -> str:
    """Score of each task (y, 0-100) across the rounds (x: untouched, round 0, ...); unscored points left out."""
    tasks = doc["matrix"]["tasks"]
    rows = _rows(doc)
    w, h, left, top, bottom = 520, 260, 40, 20, 40
    pw, ph = w - left - 150, h - top - bottom
    step = pw / max(1, len(rows) - 1)

    def xy(i: int, v: float) -> tuple[float, float]:
        return left + step * i, top + ph * (1 - max(0.0, min(100.0, v)) / 100)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="11">'
    ]
    parts.append(f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#999"/>')
    for v in (0, 50, 100):
        _, y = xy(0, v)
        parts.append(f'<text x="{left - 4}" y="{y + 4}" text-anchor="end">{v}</text>')
    for i in range(len(rows)):
        x, _ = xy(i, 0)
        short = "base" if i == 0 else f"r{i - 1}"
        parts.append(f'<text x="{x}" y="{top + ph + 16}" text-anchor="middle">{short}</text>')
    for j, t in enumerate(tasks):
        color = COLORS[j % len(COLORS)]
        pts = [xy(i, row[j]) for i, (_, row) in enumerate(rows) if row[j] is not None]
        if pts:
            parts.append(
                f'<polyline fill="none" stroke="{color}" stroke-width="2" points="'
                + " ".join(f"{x:.1f},{y:.1f}" for x, y in pts)
                + '"/>'
            )
            parts += [f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{color}"/>' for x, y in pts]
        parts.append(
            f'<text x="{left + pw + 10}" y="{top + 14 * (j + 1)}" fill="{color}">{html.escape(t)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _metric_rows(doc: dict[str, Any]) -> list[tuple[str, str, str]]:
    s = doc["summary"]
    return [(k, _fmt(s.get(k)), DEFINITIONS[k]) for k in DEFINITIONS]


def _warnings(doc: dict[str, Any]) -> list[str]:
    """One line per task its own round did not improve (``metrics.not_learned``): the run's other numbers
    read as success when nothing was learned, so this comes first."""
    bad = doc["summary"].get("not_learned") or {}
    return [
        f"Warning: {task} did not improve in its own round ({_fmt(s['before'])} before, {_fmt(s['after'])} "
        "after): the round learned nothing measurable, so BWT and forgetting say nothing about it; check "
        "the train settings (steps, learning rate) and the metric"
        for task, s in bad.items()
    ]


def _md(doc: dict[str, Any]) -> str:
    tasks = doc["matrix"]["tasks"]
    strat = doc["strategy"]
    lines = [
        f"## {doc['name']}: strategy {strat['name']} {json.dumps(strat['params'])}",
        "",
        *[f"> **{w}**\n" for w in _warnings(doc)],
        "Score matrix R (rows: after each round; columns: tasks; 0-100; — not scored):",
        "",
        "| | " + " | ".join(f"{t} ({doc['metrics'].get(t, '')})" for t in tasks) + " |",
        "|---" * (len(tasks) + 1) + "|",
    ]
    for label, row in _rows(doc):
        lines.append(f"| {label} | " + " | ".join(_fmt(v) for v in row) + " |")
    general = doc["matrix"].get("general") or []
    if doc["matrix"].get("general_untouched") is not None:
        lines += ["", "General set (ROUGE-L): untouched " + _fmt(doc["matrix"]["general_untouched"]) + "; after rounds "
                  + ", ".join(_fmt(v) for v in general)]  # fmt: skip
    lines += ["", "| metric | value | definition |", "|---|---|---|"]
    lines += [f"| {k} | {v} | {d} |" for k, v, d in _metric_rows(doc)]
    per = doc["summary"].get("forgetting_per_task") or {}
    if per:
        lines += ["", "Forgetting per task: " + ", ".join(f"{t} {_fmt(v)}" for t, v in per.items())]
    return "\n".join(lines) + "\n"


def _html_section(doc: dict[str, Any]) -> str:
    strat = doc["strategy"]
    rows = "".join(
        f"<tr><td>{html.escape(k)}</td><td>{v}</td><td>{html.escape(d)}</td></tr>"
        for k, v, d in _metric_rows(doc)
    )
    return (
        f"<section><h2>{html.escape(doc['name'])}: {html.escape(strat['name'])}</h2>"
        f"<p><code>{html.escape(json.dumps(strat['params']))}</code></p>"
        + "".join(f"<p class='warn'><b>{html.escape(w)}</b></p>" for w in _warnings(doc))
        + f"<h3>R (0-100)</h3>{heatmap_svg(doc)}<h3>Per-round scores</h3>{curves_svg(doc)}"
        f"<h3>Metrics</h3><table><tr><th>metric</th><th>value</th><th>definition</th></tr>{rows}</table></section>"
    )


_STYLE = (
    "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;"
    "padding:4px 8px;text-align:left}.warn{background:#fff3cd;padding:6px}.side{display:flex;gap:2em;flex-wrap:wrap}section{max-width:640px}"
)


def _page(title: str, body: str) -> str:
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>{body}</body></html>\n"
    )


def write_report(run_dir: str | Path) -> tuple[Path, Path]:
    run_dir = Path(run_dir)
    doc = _load(run_dir)
    md = f"# Continual run {doc['name']}\n\n" + _md(doc)
    write_text(md, run_dir / "report.md")
    write_text(_page(f"Continual run {doc['name']}", _html_section(doc)), run_dir / "report.html")
    return run_dir / "report.html", run_dir / "report.md"


def compare_runs(run_dirs: list[str | Path], out: str | Path) -> tuple[Path, Path]:
    """``out``.html and ``out``.md: a summary table of every run (one row each) and each run's R and curves
    side by side. Runs must share their task list (else the columns would not compare)."""
    if not run_dirs:
        raise ValueError("compare: give at least one run folder")
    docs = [_load(Path(d)) for d in run_dirs]
    tasks = docs[0]["matrix"]["tasks"]
    for d in docs[1:]:
        if d["matrix"]["tasks"] != tasks:
            raise ValueError(
                f"compare: {d['name']} has tasks {d['matrix']['tasks']}, {docs[0]['name']} has {tasks}; "
                "only runs of the same task sequence compare"
            )
    keys = list(DEFINITIONS)
    head = "| run | strategy | " + " | ".join(keys) + " |\n" + "|---" * (len(keys) + 2) + "|\n"
    body = "".join(
        f"| {d['name']} | {d['strategy']['name']} | "
        + " | ".join(_fmt(d["summary"].get(k)) for k in keys)
        + " |\n"
        for d in docs
    )
    defs = "".join(f"- **{k}**: {v}\n" for k, v in DEFINITIONS.items())
    md = "# Continual runs compared\n\n" + head + body + "\n" + defs + "\n" + "\n".join(_md(d) for d in docs)
    table = (
        "<table><tr><th>run</th><th>strategy</th>"
        + "".join(f"<th title='{html.escape(DEFINITIONS[k])}'>{k}</th>" for k in keys)
        + "</tr>"
        + "".join(
            f"<tr><td>{html.escape(d['name'])}</td><td>{html.escape(d['strategy']['name'])}</td>"
            + "".join(f"<td>{_fmt(d['summary'].get(k))}</td>" for k in keys)
            + "</tr>"
            for d in docs
        )
        + "</table><ul>"
        + "".join(f"<li><b>{k}</b>: {html.escape(v)}</li>" for k, v in DEFINITIONS.items())
        + "</ul>"
    )
    page = _page(
        "Continual runs compared",
        table + "<div class='side'>" + "".join(_html_section(d) for d in docs) + "</div>",
    )
    out = Path(out)
    md_path, html_path = out.with_name(out.name + ".md"), out.with_name(out.name + ".html")
    write_text(md, md_path)
    write_text(page, html_path)
    return html_path, md_path
