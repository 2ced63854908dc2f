"""Curate's accounting, the same in both engines: every record read ends in one split or in the rejects.

Records in = kept (all splits) + rejected, always; :func:`build_card` asserts it. Every dropped record goes
to ``rejects.jsonl`` as a row of :func:`reject_row` (its step, reason, detail, id, source and the record
itself); a record the reader could not take as a row of :func:`read_reject_row` (step ``read``, with its
line, index and field, and the raw text). Each input file is described by a :func:`source_row` (path,
SHA-256, format, records read and rejected). The card (``card.json``, ``card.md``) is built here from the
counts, so the two engines' cards compare key for key.

Records travel between steps as JSON text (:func:`dump_record`, :func:`load_record`): the local engine in a
Hugging Face ``Dataset`` column, the Ray engine in Arrow blocks. A record is round-tripped through JSON
between steps in both, so a step sees the same record whichever engine runs it.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from instructkit import __version__
from instructkit.data.card import render_card_md
from instructkit.data.curate_config import CurateConfig
from instructkit.data.split import SPLITS
from instructkit.files import write_text
from instructkit.records import Record


@dataclass
class StepReport:
    name: str
    params: dict[str, Any]
    n_in: int = 0
    kept: int = 0
    dropped: Counter = field(default_factory=Counter)

    def to_dict(self) -> dict[str, Any]:
        return {
            "step": self.name,
            "params": self.params,
            "in": self.n_in,
            "kept": self.kept,
            "dropped": dict(sorted(self.dropped.items())),
        }


@dataclass
class CurateResult:
    out_dir: Path
    card: dict[str, Any]
    splits: dict[str, list[Record]] | None
    rejects: list[dict[str, Any]] | None


def dump_record(rec: Record) -> str:
    return json.dumps(rec.to_dict(), ensure_ascii=False, sort_keys=True)


def load_record(s: str) -> Record:
    return Record.from_dict(json.loads(s), validate=False)


def reject_row(step: str, reason: str, detail: str, rec: Record) -> dict[str, Any]:
    """The rejects.jsonl row of a record a step dropped."""
    return {
        "step": step,
        "reason": reason,
        "detail": detail or None,
        "id": rec.id,
        "source": rec.meta.get("source"),
        "record": rec.to_dict(),
    }


def read_reject_row(r: dict[str, Any], source: str) -> dict[str, Any]:
    """The rejects.jsonl row of an input record the reader rejected (``r``: a ``RecordReader`` reject)."""
    return {
        "step": "read",
        "reason": r["reason"],
        "detail": r["message"],
        "id": None,
        "source": source,
        "line": r["line"],
        "index": r["index"],
        "field": r["field"],
        "record": r.get("raw"),
    }


def source_row(path: str, sha256: str, reader: Any) -> dict[str, Any]:
    """The card's entry of one input file, once its ``RecordReader`` has read it all."""
    return {
        "path": path,
        "sha256": sha256,
        "format": reader.fmt,
        "read": reader.n_read,
        "rejected": len(reader.rejects),
    }


def build_card(
    cfg: CurateConfig,
    sources: list[dict[str, Any]],
    read_kept: int,
    read_dropped: Counter,
    reports: list[StepReport],
    stats: dict[str, dict[str, Any]],
    rejected_by_reason: Counter,
) -> dict[str, Any]:
    """The card of a curate run from its counts (both engines build it here, so the cards compare)."""
    n_in = sum(s["read"] for s in sources)
    n_kept = sum(st["records"] for st in stats.values())
    n_rejected = sum(rejected_by_reason.values())
    assert n_in == n_kept + n_rejected, "record accounting broke"
    return {
        "instructkit_version": __version__,
        "sources": sources,
        "config": cfg.to_dict(),
        "steps": [
            {
                "step": "read",
                "params": {"on_error": cfg.on_error},
                "in": n_in,
                "kept": read_kept,
                "dropped": dict(read_dropped),
            }
        ]
        + [r.to_dict() for r in reports],
        "splits": {name: st["records"] for name, st in stats.items()},
        "accounting": {
            "in": n_in,
            "kept": n_kept,
            "rejected": n_rejected,
            "balanced": n_in == n_kept + n_rejected,
        },
        "rejected_by_reason": dict(sorted(rejected_by_reason.items())),
        "stats": stats,
        "files": {name: f"{name}{cfg.output_suffix}" for name in SPLITS},
    }


def write_card(card: dict[str, Any], folder: Path) -> None:
    """``card.json`` and ``card.md`` into ``folder``."""
    write_text(json.dumps(card, indent=2, ensure_ascii=False, sort_keys=True) + "\n", folder / "card.json")
    write_text(render_card_md(card), folder / "card.md")
