"""What the studio's Data pages show of a curated folder or a generated set: the card's accounting, the
rejects by step and reason (each beside the kept record it duplicated or the benchmark item it leaked
from), and the duplicate clusters (the kept records' histograms and a record's loss mask for a model are
:mod:`instructkit.studio.kept`).

A data folder is any folder under ``--runs`` holding a ``card.json`` with ``accounting`` (``instructkit data
curate``, ``instructkit generate``, the ``data/`` and ``generate/`` of a recipe run). Everything here only
reads; files are parsed once per version (path, size, mtime) and kept in a small cache.

What a reject says about its match is the ``detail`` its step wrote (the steps' own formats):

======================= ======================================= =========================================
reason                   detail                                  written by
======================= ======================================= =========================================
``exact_duplicate``      ``duplicate of <kept id>``              ``data/dedup/steps.py``, ``ray_exact.py``
``near_duplicate``       ``cluster of <kept id>``                ``data/dedup/steps.py``, ``ray_near.py``
``contaminated``         ``<benchmark> <item>: shares '<ngram>'`` ``data/decontam/step.py``
``too_similar``          ``<rouge-l> <most similar instruction>`` ``data/instruction_filters.py``
======================= ======================================= =========================================
"""

from __future__ import annotations

import json
import re
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from instructkit.records import Record
from instructkit.studio.errors import StudioError
from instructkit.studio.paths import RunsRoot
from instructkit.studio.runs import read_json, read_jsonl, real_file, walk

MAX_DEPTH = 6
"""How deep under ``--runs`` the data listing looks (a recipe run's ``data/`` sits below its run)."""
MAX_LIMIT = 200
"""The most rejects or clusters one request returns."""
MAX_MEMBERS = 24
"""The most duplicates shown of one cluster (its ``size`` counts them all)."""

DUPLICATE = re.compile(r"^(?:duplicate|cluster) of (?P<id>\S+)$")
BENCHMARK = re.compile(r"^(?P<benchmark>\S+) (?P<item>.+?): shares '(?P<ngram>.*)'$", re.S)
SIMILAR = re.compile(r"^(?P<score>[01]\.\d+) (?P<text>.*)$", re.S)
DEDUP_REASONS = ("exact_duplicate", "near_duplicate")


# ------------------------------------------------------------------------------------------- caching
class _Cache:
    """Parsed files by (path, size, mtime): a file rewritten by a later run is read again."""

    def __init__(self, size: int = 16):
        self.size = size
        self.items: OrderedDict[tuple[Any, ...], Any] = OrderedDict()
        self.lock = threading.Lock()

    def get(self, key: tuple[Any, ...], path: Path, make: Callable[[], Any]) -> Any:
        try:
            st = path.stat()
            stamp: tuple[Any, ...] = (*key, st.st_size, st.st_mtime_ns)
        except OSError:
            stamp = (*key, None, None)
        with self.lock:
            if stamp in self.items:
                self.items.move_to_end(stamp)
                return self.items[stamp]
        value = make()
        with self.lock:
            self.items[stamp] = value
            while len(self.items) > self.size:
                self.items.popitem(last=False)
        return value


_files = _Cache(32)


# ------------------------------------------------------------------------------------------- folders
def is_data_card(card: Any) -> bool:
    return (
        isinstance(card, dict)
        and isinstance(card.get("accounting"), dict)
        and isinstance(card.get("steps"), list)
    )


def card_kind(card: dict[str, Any]) -> str:
    return "generate" if "generator" in card else "curate"


def list_data_folders(root: RunsRoot) -> list[dict[str, Any]]:
    """Every data folder under the root (depth :data:`MAX_DEPTH`), sorted by path."""
    out: list[dict[str, Any]] = []

    def visit(folder: Path) -> bool:
        card_path = folder / "card.json"
        card = read_json(card_path)
        if is_data_card(card):
            try:
                out.append(_folder_row(root, folder, card))
            except Exception as e:  # a damaged card: listed, with why it cannot be shown
                out.append({"path": root.rel(folder), "kind": card_kind(card), "run": None, "in": None,
                            "kept": None, "rejected": None, "balanced": False, "splits": {},
                            "written": None, "note": f"card.json is damaged ({type(e).__name__}: {e})"[:300]})  # fmt: skip
        return False  # a recipe run holds its data/ and generate/ below it

    walk(root.root, visit, MAX_DEPTH)
    return out


def _folder_row(root: RunsRoot, folder: Path, card: dict[str, Any]) -> dict[str, Any]:
    acc = card["accounting"]
    run = folder.parent if folder != root.root and (folder.parent / "recipe.yaml").is_file() else None
    return {
        "path": root.rel(folder),
        "kind": card_kind(card),
        "run": root.rel(run) if run is not None else None,
        "in": acc.get("in"),
        "kept": acc.get("kept"),
        "rejected": acc.get("rejected"),
        "balanced": _balanced(acc),
        "splits": split_counts(card),
        "written": (folder / "card.json").stat().st_mtime,
    }


def data_folder(root: RunsRoot, rel: str | None) -> tuple[Path, dict[str, Any]]:
    """The folder ``rel`` under the root and its card; 404 naming ``path`` when it holds no data card."""
    folder = root.resolve(rel, field="path")
    card = read_json(folder / "card.json") if folder.is_dir() else None
    if not is_data_card(card):
        raise StudioError(
            404,
            f"path: {rel!r} holds no card.json of a curate or generate run",
            field="path",
            code="not_found",
        )
    return folder, card


def _balanced(acc: dict[str, Any]) -> bool:
    try:
        return int(acc["in"]) == int(acc["kept"]) + int(acc["rejected"])
    except (KeyError, TypeError, ValueError):
        return False


def split_files(card: dict[str, Any]) -> dict[str, str]:
    """Split name → file name in the folder: train/val/test of a curate card, ``records`` of a generated set."""
    files = card.get("files") or {}
    if card_kind(card) == "generate":
        return {"records": files.get("records", "records.jsonl")}
    return {name: files[name] for name in (card.get("splits") or {}) if name in files}


def split_counts(card: dict[str, Any]) -> dict[str, int]:
    if card_kind(card) == "generate":
        return {"records": (card.get("summary") or {}).get("records", card["accounting"].get("kept", 0))}
    return dict(card.get("splits") or {})


def accounting(card: dict[str, Any]) -> dict[str, Any]:
    """The card's accounting as the page charts it: in = kept + rejected (``balanced`` recomputed here, not
    taken from the card), per step and per reason."""
    acc = card["accounting"]
    return {
        "kind": card_kind(card),
        "in": acc.get("in"),
        "kept": acc.get("kept"),
        "rejected": acc.get("rejected"),
        "balanced": _balanced(acc),
        "card_says_balanced": acc.get("balanced"),
        "unit": (card.get("summary") or {}).get("unit", "record"),
        "steps": [
            {
                "step": st.get("step"),
                "in": st.get("in"),
                "kept": st.get("kept"),
                "dropped": st.get("dropped") or {},
            }
            for st in card.get("steps") or []
        ],
        "rejected_by_reason": card.get("rejected_by_reason") or {},
        "splits": split_counts(card),
        "generator": card.get("generator"),
        "stopped": card.get("stopped"),
        "sources": [
            {"path": s.get("path"), "read": s.get("read"), "rejected": s.get("rejected")}
            for s in card.get("sources") or []
        ],  # fmt: skip
    }


# ------------------------------------------------------------------------------------------- records
def split_records(folder: Path, card: dict[str, Any], split: str) -> list[Record]:
    """The records of one split file (cached); 400 naming ``split`` for a split the card does not have."""
    files = split_files(card)
    if split not in files:
        raise StudioError(
            400, f"split: {split!r} is not one of {', '.join(files) or 'no splits'}", field="split"
        )
    path = folder / files[split]
    if not (path.is_relative_to(folder) and real_file(path)):  # a name the card gives: in its folder only
        return []
    fmt = (card.get("config") or {}).get("output_format") if card_kind(card) == "curate" else None

    def read() -> list[Record]:
        from instructkit.formats import RecordReader

        return list(RecordReader(path, fmt=fmt, on_error="skip"))

    return _files.get(("records", str(path), fmt), path, read)


def reject_rows(folder: Path) -> list[dict[str, Any]]:
    path = folder / "rejects.jsonl"

    return _files.get(("rejects", str(path)), path, lambda: read_jsonl(path))


def _detail(row: dict[str, Any]) -> str:
    """A reject's ``detail`` (``""`` when a damaged line has none, or not a string)."""
    detail = row.get("detail")
    return detail if isinstance(detail, str) else ""


def record_view(record: Any) -> dict[str, Any]:
    """A record (a dict of the native layout, or the raw text a reader refused) as the page shows it."""
    if isinstance(record, str):
        return {"raw": record}
    if isinstance(record, Record):
        record = record.to_dict()
    if not isinstance(record, dict):
        return {"raw": json.dumps(record, ensure_ascii=False)} if record is not None else {}
    out: dict[str, Any] = {}
    if isinstance(record.get("messages"), list):
        out["messages"] = [
            {"role": str(m.get("role", "")), "content": str(m.get("content", ""))}
            for m in record["messages"]
            if isinstance(m, dict)
        ]
    elif record.get("tokens") is not None:
        out["text"] = " ".join(map(str, record["tokens"]))
    elif record.get("text") is not None:
        out["text"] = str(record["text"])
        if record.get("label") is not None:
            out["label"] = record["label"]
    else:
        out["raw"] = json.dumps(record, ensure_ascii=False)
    return out


def _index_by_id(folder: Path, card: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Record id → where the record is: ``{"split", "index", "record"}`` over the split files."""

    def build() -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for split in split_files(card):
            for i, rec in enumerate(split_records(folder, card, split)):
                out.setdefault(rec.id, {"split": split, "index": i, "record": rec})
        return out

    return _files.get(("ids", str(folder)), folder / "card.json", build)


def _rejected_by_id(folder: Path) -> dict[str, dict[str, Any]]:
    """Record id → its row in ``rejects.jsonl`` (cached with the file)."""
    path = folder / "rejects.jsonl"
    return _files.get(
        ("reject-ids", str(path)),
        path,
        lambda: {r["id"]: r for r in reject_rows(folder) if isinstance(r.get("id"), str)},
    )


def _kept_record(folder: Path, card: dict[str, Any], rid: str) -> dict[str, Any]:
    """Where the kept record ``rid`` ended: a split (with its index), or rejected by a later step."""
    found = _index_by_id(folder, card).get(rid)
    if found is not None:
        return {"id": rid, "where": "kept", "split": found["split"], "index": found["index"],
                "view": record_view(found["record"])}  # fmt: skip
    later = _rejected_by_id(folder).get(rid)
    if later is not None and DUPLICATE.match(_detail(later)) is None:
        return {"id": rid, "where": "rejected", "step": later.get("step"), "reason": later.get("reason"),
                "view": record_view(later.get("record"))}  # fmt: skip
    return {"id": rid, "where": "missing", "view": {}}


def _benchmark_item(
    folder: Path, card: dict[str, Any], root: RunsRoot | None, name: str, item: str
) -> str | None:
    """The text of benchmark ``name``'s item ``item``: a built-in (HumanEval) or a file the curate config
    named, read only when it lies under ``--runs``."""
    if name == "humaneval":
        from instructkit.data.decontam.index import load_humaneval

        for it in _files.get(("humaneval",), Path("/nonexistent"), load_humaneval):
            if it.item_id == item:
                return it.texts[0]
        return None
    if root is None:
        return None
    for step in (card.get("config") or {}).get("steps") or []:
        files = step.get("files") if isinstance(step, dict) else None
        for f in files or []:
            p = Path(f)
            if p.name.split(".", 1)[0] != name:
                continue
            target = p if p.is_absolute() else root.root / p
            try:
                target = target.resolve()
            except OSError:
                continue
            if not target.is_relative_to(root.root) or not target.is_file():
                continue
            from instructkit.data.decontam.index import load_benchmark_file

            try:
                items = _files.get(("bench", str(target)), target, lambda t=target: load_benchmark_file(t))
            except Exception:  # a file that cannot be read any more: the reject still names the item
                continue
            for it in items:
                if it.item_id == item:
                    return "\n\n".join(it.texts[:1])
    return None


def match_of(
    row: dict[str, Any], folder: Path, card: dict[str, Any], root: RunsRoot | None = None
) -> dict[str, Any] | None:
    """What a reject names beside itself: the kept record it duplicated, the benchmark item it leaked
    from, or the instruction it was too similar to (see the module's table); None for other reasons."""
    detail = _detail(row)
    reason = row.get("reason")
    if reason in DEDUP_REASONS and (m := DUPLICATE.match(detail)):
        return {"kind": "duplicate", **_kept_record(folder, card, m["id"])}
    if reason == "contaminated" and (m := BENCHMARK.match(detail)):
        return {"kind": "benchmark", "benchmark": m["benchmark"], "item": m["item"], "ngram": m["ngram"],
                "text": _benchmark_item(folder, card, root, m["benchmark"], m["item"])}  # fmt: skip
    if reason == "too_similar" and (m := SIMILAR.match(detail)):
        return {"kind": "similar", "score": float(m["score"]), "text": m["text"]}
    return None


# ------------------------------------------------------------------------------------------- rejects
def expected_count(card: dict[str, Any], step: str | None, reason: str | None) -> int | None:
    """What the card says the filter matches: a step's dropped (for a reason), or rejected by reason."""
    if step:
        for st in card.get("steps") or []:
            if st.get("step") == step:
                dropped = st.get("dropped") or {}
                return dropped.get(reason, 0) if reason else sum(dropped.values())
        return 0
    if reason:
        return (card.get("rejected_by_reason") or {}).get(reason, 0)
    return card["accounting"].get("rejected")


def filter_rejects(rows: list[dict[str, Any]], step: str | None, reason: str | None) -> list[int]:
    """Indices of the rows a (step, reason) filter matches. Without a step it matches the rejected records
    the accounting counts (a generator's finer rejects, ``counted: false``, show under their own step)."""
    out = []
    for i, r in enumerate(rows):
        if step and r.get("step") != step:
            continue
        if not step and r.get("counted", True) is False:
            continue
        if reason and r.get("reason") != reason:
            continue
        out.append(i)
    return out


def check_page(offset: int, limit: int) -> None:
    if limit < 1 or limit > MAX_LIMIT:
        raise StudioError(400, f"limit: {limit} is not between 1 and {MAX_LIMIT}", field="limit")
    if offset < 0:
        raise StudioError(400, f"offset: {offset} is negative", field="offset")


def rejects_page(
    root: RunsRoot, rel: str, step: str | None, reason: str | None, offset: int, limit: int
) -> dict[str, Any]:
    check_page(offset, limit)
    folder, card = data_folder(root, rel)
    steps = [st.get("step") for st in card.get("steps") or []]
    if step and step not in steps:
        raise StudioError(400, f"step: {step!r} is not a step of this card ({', '.join(map(str, steps))})",
                          field="step")  # fmt: skip
    rows = reject_rows(folder)
    hits = filter_rejects(rows, step, reason)
    items = []
    for i in hits[offset : offset + limit]:
        r = rows[i]
        view = record_view(r.get("record")) if r.get("record") is not None else {}
        if not view and r.get("text") is not None:
            view = {"text": str(r["text"])}
        items.append(
            {
                "line": i + 1,
                "step": r.get("step"),
                "reason": r.get("reason"),
                "detail": r.get("detail"),
                "id": r.get("id"),
                "source": r.get("source"),
                "counted": r.get("counted", True),
                "where": {k: r[k] for k in ("line", "index", "field") if r.get(k) is not None} or None,
                "instruction": r.get("instruction"),
                "view": view,
                "match": match_of(r, folder, card, root),
            }
        )
    return {"total": len(hits), "expected": expected_count(card, step, reason), "offset": offset,
            "limit": limit, "items": items}  # fmt: skip


# ------------------------------------------------------------------------------------------- clusters
def _cluster_members(folder: Path, card: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Kept id → where its duplicates are: reject lines (exact or near) and marked kept records."""

    def build() -> dict[str, list[dict[str, Any]]]:
        groups: dict[str, list[dict[str, Any]]] = {}
        for i, r in enumerate(reject_rows(folder)):
            m = DUPLICATE.match(_detail(r)) if r.get("reason") in DEDUP_REASONS else None
            if m:
                groups.setdefault(m["id"], []).append({"line": i + 1, "row": r})
        for split in split_files(card):
            for i, rec in enumerate(split_records(folder, card, split)):
                c = rec.meta.get("cluster")
                if isinstance(c, str) and c != rec.id:
                    groups.setdefault(c, []).append({"split": split, "index": i, "record": rec})
        return groups

    return _files.get(("clusters", str(folder)), folder / "rejects.jsonl", build)


def _member_view(m: dict[str, Any]) -> dict[str, Any]:
    if "row" in m:
        r = m["row"]
        return {"line": m["line"], "step": r.get("step"), "reason": r.get("reason"), "id": r.get("id"),
                "view": record_view(r.get("record"))}  # fmt: skip
    rec = m["record"]
    return {"split": m["split"], "index": m["index"], "id": rec.id, "reason": "near_duplicate (kept, marked)",
            "view": record_view(rec)}  # fmt: skip


def clusters(root: RunsRoot, rel: str, offset: int, limit: int) -> dict[str, Any]:
    """Duplicate clusters, largest first: each kept record with the records dropped as its exact or near
    duplicates (the first :data:`MAX_MEMBERS` of them); and, for ``near_dedup`` with ``action: mark``,
    kept records sharing a ``meta.cluster``."""
    check_page(offset, limit)
    folder, card = data_folder(root, rel)
    groups = _cluster_members(folder, card)
    order = sorted(groups, key=lambda k: (-len(groups[k]), k))
    items = [
        {
            "id": k,
            "size": 1 + len(groups[k]),
            "kept": _kept_record(folder, card, k),
            "members": [_member_view(m) for m in groups[k][:MAX_MEMBERS]],
        }
        for k in order[offset : offset + limit]
    ]
    return {"total": len(order), "offset": offset, "limit": limit, "items": items}
