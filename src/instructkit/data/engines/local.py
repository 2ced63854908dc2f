"""The local engine of ``instructkit data curate``: read → steps → split → write, in this process.

Records travel between steps as a Hugging Face ``datasets.Dataset`` (Arrow, memory-mapped) of
serialized records; per-record steps run through ``Dataset.map`` (batched, ``num_proc`` workers from
2,000 records on, a progress bar each), whole-dataset steps (dedup) see all records at once. The split is
:func:`~instructkit.data.split.split_records`; the rejects, sources and card are the accounting's
(``engines/accounting.py``), the folder is replaced as a unit (``engines/folder.py``).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from instructkit.data.base import DatasetStep, Filter, Mapper, Step, checked_verdict
from instructkit.data.curate_config import CurateConfig
from instructkit.data.engines.accounting import (
    CurateResult,
    StepReport,
    build_card,
    dump_record,
    load_record,
    read_reject_row,
    reject_row,
    source_row,
    write_card,
)
from instructkit.data.engines.folder import check_output_folder
from instructkit.data.split import SPLITS, split_records
from instructkit.data.stats import summarize
from instructkit.files import recover_folder, replaced_folder, sha256_file
from instructkit.formats import RecordReader, write_records
from instructkit.formats.io import write_rows
from instructkit.records import Record


def _apply_batch(batch: dict[str, list[str]], step: Step) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {"rec": [], "_reason": [], "_detail": []}
    for s in batch["rec"]:
        reason, detail, rec = checked_verdict(step, load_record(s))
        out["rec"].append(dump_record(rec))
        out["_reason"].append(reason)
        out["_detail"].append(detail)
    return out


def _per_record(ds: Any, step: Step, num_proc: int, report: StepReport, rejects: list[dict[str, Any]]) -> Any:
    procs = num_proc if num_proc > 1 and len(ds) >= 2000 else None
    ds = ds.map(
        _apply_batch, batched=True, batch_size=500, fn_kwargs={"step": step}, num_proc=procs, desc=step.name
    )
    reasons, details, rows = ds["_reason"], ds["_detail"], ds["rec"]
    keep_idx = [i for i, r in enumerate(reasons) if not r]
    for i, r in enumerate(reasons):
        if r:
            report.dropped[r] += 1
            rejects.append(reject_row(step.name, r, details[i], load_record(rows[i])))
    return ds.select(keep_idx).remove_columns(["_reason", "_detail"])


def _whole(ds: Any, step: DatasetStep, report: StepReport, rejects: list[dict[str, Any]]) -> Any:
    from datasets import Dataset

    recs = [load_record(s) for s in ds["rec"]]
    verdicts = step.run(recs)
    kept = []
    for rec, v in zip(recs, verdicts, strict=True):
        if v.meta:
            rec.meta.update(v.meta)
        if v.reason:
            report.dropped[v.reason] += 1
            rejects.append(reject_row(step.name, v.reason, v.detail or "", rec))
        else:
            kept.append(dump_record(rec))
    return Dataset.from_dict({"rec": kept})


def run_steps(
    records: list[Record], steps: list[Step], num_proc: int = 1
) -> tuple[list[Record], list[StepReport], list[dict[str, Any]]]:
    """Run steps over records; return the kept records, a report per step, and the rejects."""
    from datasets import Dataset

    ds = Dataset.from_dict({"rec": [dump_record(r) for r in records]})
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
            ds = _per_record(ds, step, num_proc, report, rejects)
        elif isinstance(step, DatasetStep):
            ds = _whole(ds, step, report, rejects)
        else:  # pragma: no cover - every registered step is one of the three shapes
            raise TypeError(f"step {step.name} is neither a Filter, a Mapper nor a DatasetStep")
        report.kept = len(ds)
        reports.append(report)
    return [load_record(s) for s in ds["rec"]], reports, rejects


def _read(inputs: list[str | Path], cfg: CurateConfig) -> tuple[list[Record], list[dict], list[dict]]:
    """The records of every input in order, the read rejects, and a source row per input."""
    records: list[Record] = []
    rejects: list[dict[str, Any]] = []
    sources = []
    for p in map(Path, inputs):
        reader = RecordReader(p, fmt=cfg.input_format, on_error=cfg.on_error)
        records.extend(reader)
        rejects.extend(read_reject_row(r, str(p)) for r in reader.rejects)
        sources.append(source_row(str(p), sha256_file(p), reader))
    return records, rejects, sources


def curate_local(inputs: list[str | Path], out_dir: str | Path, cfg: CurateConfig) -> CurateResult:
    """Curate ``inputs`` into ``out_dir`` in this process (``cfg`` validated by the caller)."""
    out_dir = Path(out_dir)
    recover_folder(out_dir)  # an earlier curate stopped mid-swap: put the old folder back first
    check_output_folder(inputs, out_dir)
    steps = cfg.build_steps()
    records, rejects, sources = _read(inputs, cfg)
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
        write_card(card, stage)
    return CurateResult(out_dir, card, splits, rejects)
