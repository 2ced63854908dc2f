"""The before/after report of a run folder: ``report.md`` and a self-contained ``report.html``.

``instructkit report RUN_DIR`` rebuilds both from what the run folder holds (recipe, data card, eval
results and predictions, training metrics and plots), so a report never disagrees with its run. The page
is one list of blocks (headings, paragraphs, tables, images, preformatted text) rendered twice: Markdown
with images linked by relative path, and HTML with every image inlined as a data URI and the style
inline, so the file opens anywhere with no network and no neighbouring files.
"""

from __future__ import annotations

import base64
import html
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from instructkit import __version__
from instructkit.files import write_text


@dataclass
class Block:
    kind: str  # h1 h2 p table img pre
    text: str = ""
    headers: list[str] | None = None
    rows: list[list[Any]] | None = None
    path: Path | None = None


def _load(path: Path) -> Any:
    return json.loads(path.read_text()) if path.exists() else None


def _rows(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4f}"
    return str(v)


def metric_table(before: dict[str, Any], after: dict[str, Any]) -> list[list[str]]:
    """Rows of (metric, before, after, difference) over the flat numeric metrics of either result."""
    names = [k for k, v in {**before, **after}.items() if isinstance(v, float)]  # ints are counts
    rows = []
    for k in names:
        b, a = before.get(k), after.get(k)
        diff = f"{a - b:+.4f}" if isinstance(a, int | float) and isinstance(b, int | float) else ""
        rows.append([k, _fmt(b) if b is not None else "", _fmt(a) if a is not None else "", diff])
    return rows


def _breakdowns(before: dict[str, Any], after: dict[str, Any]) -> list[Block]:
    """Per-class / per-entity-type tables: any nested mapping of mappings with an f1 in both results."""
    out = []
    for key, val in after.items():
        if not isinstance(val, dict) or not val or not all(isinstance(x, dict) for x in val.values()):
            continue
        b = before.get(key) or {}
        rows = []
        for name, scores in val.items():
            f1_a = scores.get("f1", scores.get("f1-score"))
            f1_b = (b.get(name) or {}).get("f1", (b.get(name) or {}).get("f1-score"))
            support = scores.get("support", scores.get("number", ""))
            rows.append(
                [
                    name,
                    _fmt(f1_b) if f1_b is not None else "",
                    _fmt(f1_a) if f1_a is not None else "",
                    support,
                ]
            )
        out += [
            Block("h2", f"Breakdown: {key}"),
            Block("table", headers=["", "F1 before", "F1 after", "support"], rows=rows),
        ]
    return out


def _metric_plot(rows: list[list[str]], out: Path) -> Path | None:
    pairs = [(r[0], float(r[1]), float(r[2])) for r in rows if r[1] and r[2] and r[0] not in ("perplexity",)]
    if not pairs:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    names, b, a = zip(*pairs, strict=True)
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(max(5, 1.2 * len(names)), 3.6))
    ax.bar(x - 0.2, b, 0.4, label="before")
    ax.bar(x + 0.2, a, 0.4, label="after")
    ax.set_xticks(x, names, rotation=20, ha="right")
    ax.set_title("Before / after")
    ax.legend()
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def changed_examples(run_dir: Path, n: int) -> list[dict[str, Any]]:
    """Samples whose prediction changed, largest per-sample score change first (ROUGE-L where known)."""
    before = {p["id"]: p for p in _rows(run_dir / "eval" / "before.predictions.jsonl")}
    out = []
    for p in _rows(run_dir / "eval" / "after.predictions.jsonl"):
        q = before.get(p["id"])
        if q is None or q.get("prediction") == p.get("prediction"):
            continue
        gain = (p.get("rougeL") or 0) - (q.get("rougeL") or 0) if "rougeL" in p else 0.0
        out.append({"id": p["id"], "input": p.get("prompt") or p.get("text") or " ".join(p.get("tokens", [])),
                    "reference": p.get("reference"), "before": q.get("prediction"), "after": p.get("prediction"),
                    "gain": gain})  # fmt: skip
    out.sort(key=lambda e: -abs(e["gain"]))
    return out[:n]


def report_blocks(run_dir: Path, examples: int = 5) -> list[Block]:
    """The report's sections in order: what was run, before/after metrics, data, training, changed answers,
    recipe. The run's JSON documents are read up front, so a missing ``eval/after.json`` or a damaged data
    card fails before the metrics plot is written."""
    run_dir = Path(run_dir)
    recipe = (run_dir / "recipe.yaml").read_text() if (run_dir / "recipe.yaml").exists() else ""
    before_doc, after_doc = _load(run_dir / "eval" / "before.json"), _load(run_dir / "eval" / "after.json")
    if not after_doc:
        raise FileNotFoundError(f"{run_dir}: no eval/after.json; run `instructkit run` first")
    before = (before_doc or {}).get("metrics", {})
    after = after_doc["metrics"]
    card = _load(run_dir / "data" / "card.json")
    train_dir = run_dir / "train"
    tm = _load(train_dir / "train_metrics.json") or {}
    info = _load(train_dir / "model" / "instructkit.json") or {}
    return [
        *_header_blocks(run_dir.name, after_doc, info),
        *_metric_blocks(before, after, run_dir / "plots" / "metrics.png"),
        *_data_blocks(card),
        *_training_blocks(tm, train_dir / "plots" / "loss.png"),
        *_changed_blocks(changed_examples(run_dir, examples)),
        *([Block("h2", "Recipe"), Block("pre", recipe)] if recipe else []),
    ]


def _header_blocks(name: str, after_doc: dict[str, Any], info: dict[str, Any]) -> list[Block]:
    """Title, what was evaluated on what, and the decoding both evaluations used."""
    blocks = [
        Block("h1", f"instructkit report: {name}"),
        Block(
            "p",
            f"Model {info.get('base_model', after_doc.get('model'))}, task {after_doc.get('task')}, "
            f"method {(info.get('method') or {}).get('name', '?')}; evaluated on {after_doc.get('samples')} samples "
            f"of {after_doc.get('data')} (sha256 {str(after_doc.get('data_sha256'))[:16]}). "
            f"instructkit {__version__}.",
        ),
    ]
    if after_doc.get("decoding"):
        d = after_doc["decoding"]
        mode = (
            "greedy"
            if not d.get("do_sample")
            else f"sampling (temperature {d['temperature']}, top-p {d['top_p']})"
        )
        per_task = after_doc.get("task_max_new_tokens") or {}
        budget = f"at most {d['max_new_tokens']} new tokens"
        if per_task:
            budget += " (" + ", ".join(f"{t}: {n}" for t, n in sorted(per_task.items())) + ")"
        blocks.append(Block("p", f"Decoding: {mode}, {budget}, the same before and after."))
    return blocks


def _metric_blocks(before: dict[str, Any], after: dict[str, Any], plot_path: Path) -> list[Block]:
    """The before/after table, its bar plot (written to ``plot_path``) and the per-class breakdowns."""
    rows = metric_table(before, after)
    blocks = [
        Block("h2", "Before / after"),
        Block("table", headers=["metric", "before", "after", "difference"], rows=rows),
    ]
    plot = _metric_plot(rows, plot_path)
    if plot:
        blocks.append(Block("img", "before/after metrics", path=plot))
    return blocks + _breakdowns(before, after)


def _data_blocks(card: dict[str, Any] | None) -> list[Block]:
    """The data card's accounting (records in = kept + rejected), splits and per-step drops."""
    if not card:
        return []
    acc = card["accounting"]
    return [
        Block("h2", "Data"),
        Block(
            "p",
            f"{acc['in']} records in = {acc['kept']} kept + {acc['rejected']} rejected "
            f"({'balanced' if acc['balanced'] else 'NOT BALANCED'}). Splits: "
            + ", ".join(f"{k} {v}" for k, v in card["splits"].items())
            + ".",
        ),  # fmt: skip
        Block(
            "table",
            headers=["step", "in", "kept", "dropped"],
            rows=[
                [
                    s["step"],
                    s["in"],
                    s["kept"],
                    ", ".join(f"{k} {v}" for k, v in s["dropped"].items()) or "-",
                ]
                for s in card["steps"]
            ],  # fmt: skip
        ),
    ]


def _training_blocks(tm: dict[str, Any], loss_plot: Path) -> list[Block]:
    """The training metrics (flat ones; the drop counts are nested) and the loss curve."""
    if not tm:
        return []
    blocks = [
        Block("h2", "Training"),
        Block(
            "table", headers=["", ""], rows=[[k, _fmt(v)] for k, v in tm.items() if not isinstance(v, dict)]
        ),
    ]
    if loss_plot.exists():
        blocks.append(Block("img", "loss curve", path=loss_plot))
    return blocks


def _changed_blocks(changed: list[dict[str, Any]]) -> list[Block]:
    """The answers that changed most, each as input, reference, before and after."""
    blocks = [Block("h2", "Answers that changed")]
    if not changed:
        blocks.append(Block("p", "No prediction changed between before and after."))
    for e in changed:
        blocks += [
            Block("p", f"**{e['id']}**" + (f" (ROUGE-L {e['gain']:+.3f})" if e["gain"] else "")),
            Block(
                "table",
                headers=["", ""],
                rows=[
                    ["input", e["input"]],
                    ["reference", e["reference"]],
                    ["before", e["before"]],
                    ["after", e["after"]],
                ],
            ),  # fmt: skip
        ]
    return blocks


# ----------------------------------------------------------------------------------------------- render
def _md_cell(v: Any) -> str:
    return str(v).replace("|", "\\|").replace("\n", "<br>")


def render_md(blocks: list[Block], base: Path) -> str:
    out = []
    for b in blocks:
        if b.kind == "h1":
            out.append(f"# {b.text}\n")
        elif b.kind == "h2":
            out.append(f"## {b.text}\n")
        elif b.kind == "p":
            out.append(b.text + "\n")
        elif b.kind == "table":
            out.append("| " + " | ".join(b.headers or []) + " |")
            out.append("| " + " | ".join("---" for _ in b.headers or []) + " |")
            out += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in b.rows or []]
            out.append("")
        elif b.kind == "img" and b.path:
            out.append(f"![{b.text}]({b.path.relative_to(base)})\n")
        elif b.kind == "pre":
            out.append("```yaml\n" + b.text.rstrip() + "\n```\n")
    return "\n".join(out)


STYLE = """body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}
table{border-collapse:collapse;margin:.5rem 0 1rem}td,th{border:1px solid #ccc;padding:.3rem .6rem;
text-align:left;vertical-align:top;white-space:pre-wrap}th{background:#f3f3f3}img{max-width:100%}
pre{background:#f6f6f6;padding:.8rem;overflow:auto}"""


def _html_text(s: str) -> str:
    t = html.escape(s)
    while "**" in t:  # the only inline markup the blocks use
        t = t.replace("**", "<b>", 1).replace("**", "</b>", 1)
    return t


def render_html(blocks: list[Block], title: str) -> str:
    out = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
           f"<style>{STYLE}</style></head><body>"]  # fmt: skip
    for b in blocks:
        if b.kind in ("h1", "h2"):
            out.append(f"<{b.kind}>{html.escape(b.text)}</{b.kind}>")
        elif b.kind == "p":
            out.append(f"<p>{_html_text(b.text)}</p>")
        elif b.kind == "table":
            head = "".join(f"<th>{html.escape(str(h))}</th>" for h in b.headers or [])
            head = f"<thead><tr>{head}</tr></thead>" if any(b.headers or []) else ""
            body = "".join(
                "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>"
                for row in b.rows or []
            )
            out.append(f"<table>{head}<tbody>{body}</tbody></table>")
        elif b.kind == "img" and b.path:
            data = base64.b64encode(b.path.read_bytes()).decode()
            out.append(f"<p><img alt='{html.escape(b.text)}' src='data:image/png;base64,{data}'></p>")
        elif b.kind == "pre":
            out.append(f"<pre>{html.escape(b.text)}</pre>")
    out.append("</body></html>")
    return "\n".join(out)


def build_report(run_dir: str | Path, examples: int = 5) -> tuple[Path, Path]:
    """Write ``report.md`` and ``report.html`` in ``run_dir``; returns their paths."""
    run_dir = Path(run_dir)
    blocks = report_blocks(run_dir, examples)
    md, page = run_dir / "report.md", run_dir / "report.html"
    write_text(render_md(blocks, run_dir), md)
    write_text(render_html(blocks, f"instructkit report: {run_dir.name}"), page)
    return md, page
