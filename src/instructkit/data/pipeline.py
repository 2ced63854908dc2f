"""``instructkit data curate``: read → steps → split → write, with a card that accounts for every record.

Records travel between steps as a Hugging Face ``datasets.Dataset`` (Arrow, memory-mapped) of
serialized records; per-record steps run through ``Dataset.map`` (batched, ``num_proc`` workers, a
progress bar each), whole-dataset steps (dedup) see all records at once. Every dropped record goes to
``rejects.jsonl`` with its step, reason and detail; records in = kept (all splits) + rejected, always.

The output folder is replaced as a unit: every file is written into a staging folder beside it, then
swapped in (see ``formats.atomic.replaced_folder``), so an interrupted curate leaves the old folder or the
new one, never new splits beside an old card. A folder that holds an input, or files curate did not
write, is refused before anything is read.
"""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from instructkit import __version__
from instructkit.config import ConfigError, checked, load, read_yaml
from instructkit.data.base import DatasetStep, Drop, Filter, Mapper, Step, StepConfigError, build_step
from instructkit.data.card import render_card_md
from instructkit.data.split import SPLITS, SplitConfig, split_records
from instructkit.data.stats import summarize
from instructkit.formats import RecordReader, format_names, get_format, write_records
from instructkit.formats.atomic import OutputError, check_suffix, recover_folder, replaced_folder
from instructkit.formats.io import sha256_file, write_rows, write_text
from instructkit.records import Record

DEFAULT_STEPS: list[Any] = [
    "normalize",
    "empty",
    "identical",
    {"step": "length", "min": 1, "max": 4096},
    "refusal",
    "repetition",
    {"step": "pii", "action": "mask"},
    {"step": "exact_dedup", "key": "prompt"},
    {"step": "near_dedup", "key": "prompt", "threshold": 0.7},
    {"step": "decontaminate", "benchmarks": ["humaneval"], "n": 13},
]


@dataclass
class CurateConfig:
    steps: list[Any] = field(default_factory=lambda: list(DEFAULT_STEPS))
    """Steps in order: a name, or a mapping ``{step: NAME, param: value, ...}`` (``instructkit config show
    step NAME`` lists a step's parameters)."""
    split: SplitConfig = field(default_factory=SplitConfig)
    """Train/val/test shares, seed, stratification, cluster-awareness."""
    output_format: str = "instructkit"
    """Format of train/val/test files (any writable format)."""
    output_suffix: str = ".jsonl"
    """Container of train/val/test files: .jsonl, .json, .parquet (optionally .gz)."""
    num_proc: int = checked(1, ge=1)
    """Worker processes for per-record steps."""
    on_error: str = checked("skip", choices=("skip", "raise"))
    """Bad input records: 'skip' rejects them (step 'read'), 'raise' stops at the first."""
    input_format: str | None = None
    """Input format; detected from the content when null."""
    engine: str = checked("local", choices=("local", "ray"))
    """local: this process (and ``num_proc`` workers); ray: a Ray cluster (``pip install
    'instructkit[ray]'``), with byte-identical output. Inputs may then be URLs (``s3://``, ``file://``)."""
    address: str | None = None
    """Ray cluster to join with engine ray: ``auto`` (the one ``ray start`` runs here), ``HOST:PORT`` or
    ``ray://HOST:PORT``; null starts a local cluster for the run and stops it after."""

    @classmethod
    def from_dict(cls, data: dict[str, Any], prefix: str = "") -> CurateConfig:
        """``prefix``: where the mapping sits (a recipe's ``curate``), for the dotted keys in errors."""
        try:
            return load(cls, data, prefix=prefix, error=StepConfigError)
        except ConfigError as e:
            raise StepConfigError(e.template, key=e.key, where=("curate config", *e.where)) from None

    @classmethod
    def from_yaml(cls, path: str | Path) -> CurateConfig:
        data = read_yaml(path, StepConfigError)
        try:
            return cls.from_dict(data)
        except StepConfigError as e:
            raise e.within(path) from None

    def validate(self) -> None:
        """Rules across fields, and every step built (so a bad step parameter fails here, at load)."""
        self.split.validate()
        if self.output_format not in format_names():
            raise StepConfigError(
                f"{{key}} must be one of {', '.join(format_names())}, not {self.output_format!r}",
                key="output_format",
            )
        if self.on_error not in ("skip", "raise"):
            raise StepConfigError("{key} must be skip or raise", key="on_error")
        if self.num_proc < 1:
            raise StepConfigError("{key} must be at least 1", key="num_proc")
        if self.engine not in ("local", "ray"):
            raise StepConfigError("{key} must be local or ray", key="engine")
        if self.address is not None and self.engine != "ray":
            raise StepConfigError("{key} is for engine ray; set engine: ray or drop it", key="address")
        try:
            check_suffix(
                f"train{self.output_suffix}", get_format(self.output_format).container, "output_suffix"
            )
        except OutputError as e:
            raise StepConfigError(str(e)) from None
        self.build_steps()

    def build_steps(self) -> list[Step]:
        return [build_step(s, f"steps[{i}]") for i, s in enumerate(self.steps)]

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
    splits: dict[str, list[Record]] | None
    rejects: list[dict[str, Any]] | None


def _dumps(rec: Record) -> str:
    return json.dumps(rec.to_dict(), ensure_ascii=False, sort_keys=True)


def _loads(s: str) -> Record:
    return Record.from_dict(json.loads(s), validate=False)


def verdict_of(step: Step, rec: Record) -> tuple[str, str, Record]:
    """What a per-record step says of one record: (reason, detail, record) — reason "" when kept; a Mapper
    returns the record it made."""
    if isinstance(step, Mapper):
        try:
            return "", "", step.apply(rec)
        except Drop as d:
            return d.reason, d.detail or "", rec
    verdict = step.keep(rec)
    if verdict is True:
        return "", "", rec
    if verdict is False:
        return step.reason, "", rec
    ok, reason, *rest = verdict
    return ("", "", rec) if ok else (reason, rest[0] if rest else "", rec)


class StepFailed(RuntimeError):
    """A step raised on a record (a bug in the step, or input it cannot take): names the step and record."""


def checked_verdict(step: Step, rec: Record) -> tuple[str, str, Record]:
    """:func:`verdict_of`, with an exception from the step turned into :class:`StepFailed` naming the
    step, the record's id and its source file (both engines raise the same message)."""
    try:
        return verdict_of(step, rec)
    except Exception as e:
        raise StepFailed(
            f"step '{step.name}' failed on record {rec.id} (from {rec.meta.get('source') or '?'}): "
            f"{type(e).__name__}: {e}"
        ) from e


def _apply_batch(batch: dict[str, list[str]], step: Step) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {"rec": [], "_reason": [], "_detail": []}
    for s in batch["rec"]:
        reason, detail, rec = checked_verdict(step, _loads(s))
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
        if not len(ds):
            # nothing left (an empty input, one whose every record was rejected): the step sees nothing and
            # drops nothing (``Dataset.map`` over no rows would not even add the verdict columns)
            reports.append(report)
            continue
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


# What a curate folder may hold besides the split files (train.*, val.*, test.*): curate's own files,
# and the plots `instructkit data stats` draws from the splits (stale once the splits are replaced).
OWN_FILES = ("rejects.jsonl", "card.json", "card.md", "plots")


def check_output_folder(inputs: list[str | Path], out_dir: str | Path) -> None:
    """Refuse an output folder that is a file, that holds one of the inputs, or that holds files curate
    did not write (they would go with the old folder when the new one is swapped in)."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputError(f"the output {out_dir} is a file; curate writes a folder (train/val/test, card)")
    for parent in out_dir.parents:
        if parent.exists():
            if not parent.is_dir():
                raise OutputError(f"the output {out_dir}: {parent} is a file, not a folder")
            break
    where = out_dir.resolve()
    if Path.cwd().resolve().is_relative_to(where):
        raise OutputError(
            f"the output folder {out_dir} is (or holds) the current folder; curate replaces that folder, "
            "so name a folder inside it instead"
        )
    for p in map(Path, inputs):
        if p.resolve().is_relative_to(where):
            raise OutputError(
                f"the output folder {out_dir} holds the input {p}; curate replaces that folder, so "
                "choose another output folder"
            )
    if out_dir.is_dir():
        foreign = sorted(
            e.name
            for e in out_dir.iterdir()
            if e.name not in OWN_FILES and e.name.split(".", 1)[0] not in SPLITS
        )
        if foreign:
            shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
            raise OutputError(
                f"the output folder {out_dir} holds files curate did not write ({shown}); curate "
                "replaces the whole folder, so choose an empty or new folder"
            )


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


def nothing_kept(card: dict[str, Any], out_dir: str | Path) -> str | None:
    """One line saying why a curate run kept no record (None when it kept some): how many records came in,
    the main reasons they were rejected, and where the card and the rejects are."""
    acc = card["accounting"]
    if acc["kept"]:
        return None
    where = f"the card, the rejects and the empty splits are in {out_dir}"
    if not acc["in"]:
        return f"no record was kept: the inputs hold no records (0 read); {where}"
    top = sorted(card["rejected_by_reason"].items(), key=lambda kv: (-kv[1], kv[0]))
    reasons = ", ".join(f"{k} {v}" for k, v in top[:3]) + (
        f" and {len(top) - 3} more" if len(top) > 3 else ""
    )
    read = card["steps"][0]
    if read["step"] == "read" and not read["kept"]:
        return (
            f"no record was kept: none of the {acc['in']} records could be read ({reasons}); is the input "
            f"UTF-8 text in a format instructkit reads? {where}"
        )
    return f"no record was kept: {acc['in']} records in, all rejected ({reasons}); {where}"


def curate(inputs: list[str | Path], out_dir: str | Path, cfg: CurateConfig | None = None) -> CurateResult:
    """Curate ``inputs`` into ``out_dir`` (see the module docstring); ``cfg.engine`` picks where the steps
    run. The Ray engine's result holds the card only (``splits`` and ``rejects`` are None: its records
    stay on the cluster and in the written files)."""
    cfg = cfg or CurateConfig()
    cfg.validate()
    if cfg.engine == "ray":
        from instructkit.data.ray_engine import curate_ray

        return curate_ray(inputs, out_dir, cfg)
    out_dir = Path(out_dir)
    recover_folder(out_dir)  # an earlier curate stopped mid-swap: put the old folder back first
    check_output_folder(inputs, out_dir)
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
                "sha256": sha256_file(p),
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
    card = build_card(
        cfg,
        sources,
        read_kept=len(records),
        read_dropped=Counter(r["reason"] for r in rejects if r["step"] == "read"),
        reports=reports,
        stats={name: summarize(recs) for name, recs in splits.items()},
        rejected_by_reason=Counter(r["reason"] for r in rejects),
    )
    with replaced_folder(out_dir) as stage:
        for name in SPLITS:
            write_records(splits[name], stage / f"{name}{cfg.output_suffix}", cfg.output_format)
        write_rows(rejects, stage / "rejects.jsonl")
        write_text(json.dumps(card, indent=2, ensure_ascii=False, sort_keys=True) + "\n", stage / "card.json")
        write_text(render_card_md(card), stage / "card.md")
    return CurateResult(out_dir, card, splits, rejects)
