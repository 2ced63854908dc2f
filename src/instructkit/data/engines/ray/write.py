"""The Ray engine's write: rejects by ``(step, idx)``, records by ``idx``, streamed through the driver.

Both are a range partition on an int64 key (``Engine.in_order``: exact quantiles, each partition sorted
in a task) read one partition at a time, so the driver holds one partition; for outputs other than plain
.jsonl it also holds the split being written (``write_records`` writes those whole). The card's counts
come from the rows as they pass.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from instructkit.data.curate_config import CurateConfig
from instructkit.data.engines.accounting import StepReport, load_record
from instructkit.data.engines.ray.blocks import RETRIES, SOURCE, order_key, remote
from instructkit.data.engines.ray.split import add_split
from instructkit.data.split import SPLITS
from instructkit.data.stats import Summary
from instructkit.formats import get_format, write_records
from instructkit.records import Record, RecordError


def write_rejects(
    engine: Any, stage: Path, reports: list[StepReport]
) -> tuple[list[dict[str, Any]], Counter, Counter]:
    """rejects.jsonl in (step, input position) order, each reject counted in its step's report; returns
    the source rows (in input order: their rows sort by (SOURCE, file number)), the read rejects by reason
    and every reject by reason."""
    sources: list[dict[str, Any]] = []
    read_dropped: Counter = Counter()
    by_reason: Counter = Counter()
    with open(stage / "rejects.jsonl", "w", encoding="utf-8", newline="") as rej_file:
        if not engine.done:
            return sources, read_dropped, by_reason
        order = [remote(order_key).remote(d) for d in engine.done]
        for batch in engine.in_order(order, "order"):
            for stepno, reason, line in zip(
                *(batch[c].to_pylist() for c in ("stepno", "reason", "rej")), strict=True
            ):
                if stepno == SOURCE:
                    sources.append(json.loads(line))
                    continue
                rej_file.write(line + "\n")
                by_reason[reason] += 1
                if stepno == 0:
                    read_dropped[reason] += 1
                else:
                    reports[stepno - 1].dropped[reason] += 1
    return sources, read_dropped, by_reason


def _writers(stage: Path, cfg: CurateConfig) -> tuple[dict[str, Any], bool]:
    """Open split files for streaming when the container allows it byte for byte (.jsonl); else None
    (the split's records are gathered and written at the end by write_records: not streaming)."""
    streaming = cfg.output_suffix == ".jsonl" and get_format(cfg.output_format).container != "text"
    if not streaming:
        return {s: [] for s in SPLITS}, False
    return {
        s: open(stage / f"{s}{cfg.output_suffix}", "w", encoding="utf-8", newline="") for s in SPLITS
    }, True


def _write_one(f: Any, fmt: Any, rec: Record, index: int) -> None:
    """One record as ``write_records`` writes it in a .jsonl (the same row, the same error)."""
    try:
        rows = fmt.dump([rec])
    except RecordError as e:
        raise e.located(file=rec.meta.get("source"), index=index) from None
    for row in rows:
        f.write(json.dumps(row, ensure_ascii=False, allow_nan=False) + "\n")


def write_splits(
    engine: Any, alive: list[Any], assignment_ref: Any, stage: Path, cfg: CurateConfig
) -> dict[str, Summary]:
    """The split files, records in input order inside each; returns each split's summary."""
    summaries = {s: Summary() for s in SPLITS}
    writers, streaming = _writers(stage, cfg)
    fmt = get_format(cfg.output_format)
    counts = dict.fromkeys(SPLITS, 0)
    try:
        if alive:
            ds = engine.data(alive).map_batches(
                add_split,
                batch_format="pyarrow",
                batch_size=1000,
                fn_kwargs={
                    "by_cluster": cfg.split.by_cluster,
                    "stratify": cfg.split.stratify,
                    "seed": cfg.split.seed,
                    "assignment_ref": assignment_ref,
                },
                max_retries=RETRIES,
            )
            for batch in engine.in_order(engine.coalesce(ds.to_arrow_refs()), "idx"):
                for text, split in zip(batch["rec"].to_pylist(), batch["split"].to_pylist(), strict=True):
                    rec = load_record(text)
                    summaries[split].add(rec)
                    if streaming:
                        _write_one(writers[split], fmt, rec, counts[split])
                    else:
                        writers[split].append(rec)
                    counts[split] += 1
    finally:
        if streaming:
            for f in writers.values():
                f.close()
    if not streaming:
        for s in SPLITS:
            write_records(writers[s], stage / f"{s}{cfg.output_suffix}", cfg.output_format)
    return summaries
