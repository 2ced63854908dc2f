"""The dataset card as Markdown: where the data came from and what happened to every record."""

from __future__ import annotations

from typing import Any


def _fmt_dropped(d: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in d.items()) or "-"


def render_card_md(card: dict[str, Any]) -> str:
    acc = card["accounting"]
    lines = [
        "# Dataset card",
        "",
        f"Made by instructkit {card['instructkit_version']}.",
        "",
        "## Accounting",
        "",
        f"**{acc['in']} records in = {acc['kept']} kept + {acc['rejected']} rejected** "
        f"({'balanced' if acc['balanced'] else 'NOT BALANCED'}). Every rejected record is in `rejects.jsonl` with its step and reason.",
        "",
        "## Sources",
        "",
        "| file | format | sha256 | read | rejected on read |",
        "| --- | --- | --- | --- | --- |",
    ]
    for s in card["sources"]:
        lines.append(
            f"| `{s['path']}` | {s['format'] or '-'} | `{s['sha256'][:16]}…` | {s['read']} | {s['rejected']} |"
        )
    lines += [
        "",
        "## Steps",
        "",
        "| step | parameters | in | kept | dropped (by reason) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for st in card["steps"]:
        params = ", ".join(
            f"{k}={v}" for k, v in st["params"].items() if not isinstance(v, list) or len(v) <= 4
        )
        lines.append(
            f"| {st['step']} | {params or '-'} | {st['in']} | {st['kept']} | {_fmt_dropped(st['dropped'])} |"
        )
    lines += [
        "",
        "## Splits",
        "",
        "| split | records | file | words p50 / p90 / max | multi-turn |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, n in card["splits"].items():
        stats = card["stats"][name]
        w = stats.get("words_per_record") or {}
        words = f"{w.get('p50', '-')} / {w.get('p90', '-')} / {w.get('max', '-')}" if w else "-"
        lines.append(f"| {name} | {n} | `{card['files'][name]}` | {words} | {stats.get('multi_turn', 0)} |")
    tasks: dict[str, int] = {}
    for name in card["splits"]:
        for t, c in card["stats"][name].get("tasks", {}).items():
            tasks[t] = tasks.get(t, 0) + c
    if tasks:
        lines += ["", "## Tasks", "", "| task | records |", "| --- | --- |"]
        lines += [f"| {t} | {c} |" for t, c in sorted(tasks.items(), key=lambda kv: -kv[1])]
    if card["rejected_by_reason"]:
        lines += ["", "## Rejected, by reason", "", "| reason | records |", "| --- | --- |"]
        lines += [f"| {k} | {v} |" for k, v in card["rejected_by_reason"].items()]
    return "\n".join(lines) + "\n"
