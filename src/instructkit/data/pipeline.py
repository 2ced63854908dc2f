"""``instructkit data curate``: read → steps → split → write, with a card that accounts for every record.

Records travel between steps as a Hugging Face ``datasets.Dataset`` (Arrow, memory-mapped) of
serialized records; per-record steps run through ``Dataset.map`` (batched, ``num_proc`` workers, a
progress bar each), whole-dataset steps (dedup) see all records at once. Every dropped record goes to
``rejects.jsonl`` with its step, reason and detail; records in = kept (all splits) + rejected, always.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from instructkit import __version__
from instructkit.data import decontaminate, dedup, filters, normalize, pii  # noqa: F401  (register steps)
from instructkit.data.base import DatasetStep, Drop, Filter, Mapper, Step, StepConfigError, build_step
from instructkit.data.card import render_card_md
from instructkit.data.split import SPLITS, SplitConfig, split_records
from instructkit.data.summary import summarize
from instructkit.formats import RecordReader, format_names, write_records
from instructkit.formats.io import write_rows, write_text
from instructkit.records import Record

DEFAULT_STEPS: list[Any] = [
    "normalize",
    "empty",
    "identical",
    {"step": "length", "min": 1, "max": 4096},
    "refusal",
    "modality",
    "repetition",
    {"step": "pii", "action": "mask"},
    {"step": "exact_dedup", "key": "prompt"},
    {"step": "near_dedup", "key": "prompt", "threshold": 0.7},
    {"step": "decontaminate", "benchmarks": ["humaneval"], "n": 13},
]


@dataclass
class CurateConfig:
    steps: list[Any] = field(default_factory=lambda: list(DEFAULT_STEPS))
    """Steps in order: a name, or a mapping ``{step: NAME, param: value, ...}``."""
    split: SplitConfig = field(default_factory=SplitConfig)
    """Train/val/test shares, seed, stratification, cluster-awareness."""
    output_format: str = "instructkit"
    """Format of train/val/test files (any writable format)."""
    output_suffix: str = ".jsonl"
    """Container of train/val/test files: .jsonl, .json, .parquet (optionally .gz)."""
    num_proc: int = 1
    """Worker processes for per-record steps."""
    on_error: str = "skip"
    """Bad input records: 'skip' rejects them (step 'read'), 'raise' stops at the first."""
    input_format: str | None = None
    """Input format; detected from the content when null."""

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CurateConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise StepConfigError(
                f"curate config: unknown key '{unknown[0]}' (known: {', '.join(sorted(known))})"
            )
        data = dict(data)
        if "split" in data:
            split = data["split"] or {}
            split_known = {f.name for f in dataclasses.fields(SplitConfig)}
            bad = sorted(set(split) - split_known)
            if bad:
                raise StepConfigError(
                    f"curate config: unknown key 'split.{bad[0]}' (known: {', '.join(sorted(split_known))})"
                )
            data["split"] = SplitConfig(**split)
        cfg = cls(**data)
        cfg.validate()
        return cfg

    @classmethod
    def from_yaml(cls, path: str | Path) -> CurateConfig:
        data = yaml.safe_load(Path(path).read_text()) or {}
        if not isinstance(data, dict):
            raise StepConfigError(f"{path}: a curate config is a mapping")
        try:
            return cls.from_dict(data)
        except StepConfigError as e:
            raise StepConfigError(f"{path}: {e}") from None

    def validate(self) -> None:
        try:
            self.split.validate()
        except ValueError as e:
            raise StepConfigError(str(e)) from None
        if self.output_format not in format_names():
            raise StepConfigError(f"curate config: output_format must be one of {', '.join(format_names())}")
        if self.on_error not in ("skip", "raise"):
            raise StepConfigError("curate config: on_error must be skip or raise")
        if self.num_proc < 1:
            raise StepConfigError("curate config: num_proc must be at least 1")
        self.build_steps()

    def build_steps(self) -> list[Step]:
        return [build_step(s) for s in self.steps]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


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
    splits: dict[str, list[Record]]
    rejects: list[dict[str, Any]]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _dumps(rec: Record) -> str:
    return json.dumps(rec.to_dict(), ensure_ascii=False, sort_keys=True)


def _loads(s: str) -> Record:
    return Record.from_dict(json.loads(s), validate=False)


def _apply_batch(batch: dict[str, list[str]], step: Step) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {"rec": [], "_reason": [], "_detail": []}
    for s in batch["rec"]:
        rec = _loads(s)
        reason, detail = "", ""
        if isinstance(step, Mapper):
            try:
                rec = step.apply(rec)
            except Drop as d:
                reason, detail = d.reason, d.detail or ""
        else:
            verdict = step.keep(rec)
            if verdict is not True and verdict is not False:
                ok, reason, *rest = verdict
                detail = rest[0] if rest else ""
                reason = "" if ok else reason
            elif verdict is False:
                reason = step.reason
        out["rec"].append(_dumps(rec))
        out["_reason"].append(reason)
        out["_detail"].append(detail)
    return out


def _reject(step: str, reason: str, detail: str, rec: Record) -> dict[str, Any]:
    return {
        "step": step,
        "reason": reason,
        "detail": detail or None,
        "id": rec.id,
        "source": rec.meta.get("source"),
        "record": rec.to_dict(),
    }


def run_steps(
    records: list[Record], steps: list[Step], num_proc: int = 1
) -> tuple[list[Record], list[StepReport], list[dict[str, Any]]]:
    """Run steps over records; return the kept records, a report per step, and the rejects."""
    from datasets import Dataset

    ds = Dataset.from_dict({"rec": [_dumps(r) for r in records]})
    reports: list[StepReport] = []
    rejects: list[dict[str, Any]] = []
    for step in steps:
        report = StepReport(step.name, step.params(), n_in=len(ds))
        if isinstance(step, Filter | Mapper):
            procs = num_proc if num_proc > 1 and len(ds) >= 2000 else None
            ds = ds.map(
                _apply_batch,
                batched=True,
                batch_size=500,
                fn_kwargs={"step": step},
                num_proc=procs,
                desc=step.name,
            )
            reasons, details, rows = ds["_reason"], ds["_detail"], ds["rec"]
            keep_idx = [i for i, r in enumerate(reasons) if not r]
            for i, r in enumerate(reasons):
                if r:
                    report.dropped[r] += 1
                    rejects.append(_reject(step.name, r, details[i], _loads(rows[i])))
            ds = ds.select(keep_idx).remove_columns(["_reason", "_detail"])
        elif isinstance(step, DatasetStep):
            recs = [_loads(s) for s in ds["rec"]]
            verdicts = step.run(recs)
            kept = []
            for rec, v in zip(recs, verdicts, strict=True):
                if v.meta:
                    rec.meta.update(v.meta)
                if v.reason:
                    report.dropped[v.reason] += 1
                    rejects.append(_reject(step.name, v.reason, v.detail or "", rec))
                else:
                    kept.append(_dumps(rec))
            ds = Dataset.from_dict({"rec": kept})
        else:  # pragma: no cover - every registered step is one of the three shapes
            raise TypeError(f"step {step.name} is neither a Filter, a Mapper nor a DatasetStep")
        report.kept = len(ds)
        reports.append(report)
    return [_loads(s) for s in ds["rec"]], reports, rejects


def curate(inputs: list[str | Path], out_dir: str | Path, cfg: CurateConfig | None = None) -> CurateResult:
    cfg = cfg or CurateConfig()
    cfg.validate()
    out_dir = Path(out_dir)
    steps = cfg.build_steps()
    records: list[Record] = []
    rejects: list[dict[str, Any]] = []
    sources = []
    for p in map(Path, inputs):
        reader = RecordReader(p, fmt=cfg.input_format, on_error=cfg.on_error)
        got = list(reader)
        records.extend(got)
        for r in reader.rejects:
            rejects.append(
                {
                    "step": "read",
                    "reason": r["reason"],
                    "detail": r["message"],
                    "id": None,
                    "source": str(p),
                    "line": r["line"],
                    "index": r["index"],
                    "field": r["field"],
                    "record": r.get("raw"),
                }
            )
        sources.append(
            {
                "path": str(p),
                "sha256": _sha256(p),
                "format": reader.fmt,
                "read": reader.n_read,
                "rejected": len(reader.rejects),
            }
        )
    n_in = sum(s["read"] for s in sources)
    kept, reports, step_rejects = run_steps(records, steps, cfg.num_proc)
    rejects.extend(step_rejects)
    splits = split_records(kept, cfg.split)
    assert n_in == sum(len(v) for v in splits.values()) + len(rejects), "record accounting broke"
    card = {
        "instructkit_version": __version__,
        "sources": sources,
        "config": cfg.to_dict(),
        "steps": [
            {
                "step": "read",
                "params": {"on_error": cfg.on_error},
                "in": n_in,
                "kept": len(records),
                "dropped": dict(Counter(r["reason"] for r in rejects if r["step"] == "read")),
            }
        ]
        + [r.to_dict() for r in reports],
        "splits": {name: len(recs) for name, recs in splits.items()},
        "accounting": {
            "in": n_in,
            "kept": len(kept),
            "rejected": len(rejects),
            "balanced": n_in == len(kept) + len(rejects),
        },
        "rejected_by_reason": dict(sorted(Counter(r["reason"] for r in rejects).items())),
        "stats": {name: summarize(recs) for name, recs in splits.items()},
        "files": {name: f"{name}{cfg.output_suffix}" for name in SPLITS},
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in SPLITS:
        write_records(splits[name], out_dir / f"{name}{cfg.output_suffix}", cfg.output_format)
    write_rows(rejects, out_dir / "rejects.jsonl")
    write_text(json.dumps(card, indent=2, ensure_ascii=False, sort_keys=True) + "\n", out_dir / "card.json")
    write_text(render_card_md(card), out_dir / "card.md")
    return CurateResult(out_dir, card, splits, rejects)
