"""Benchmark decontamination: find training records that share an n-gram with an evaluation set.

    items = load_humaneval() + load_benchmark_file("my_eval.jsonl")
    index = ContaminationIndex(items, n=13)
    index.match_record(record)        # Match(benchmark, item_id, ngram, turn) or None

**Tokens** (:func:`overlap_tokens`). Matching runs on code-aware tokens, not on characters or
whitespace-split words: every run of word characters (an identifier, a word, a number's digits) is one
token, every other non-space character is a token of its own, whitespace only separates, and all is
lowercased. A Han or kana character, written without spaces, is a token of its own. The quote
characters ``'``, ``"`` and the backtick are one token, ``"``, so a formatter that swaps quote styles
changes nothing. Re-indented code (4 spaces, 2 spaces, tabs), re-wrapped prose and ``a+b`` versus
``a + b`` therefore give the same tokens.

**Grams.** A benchmark text of ``n`` tokens or more is indexed as its ``n``-grams (default 13, the
GPT-3 convention; 8 suits short prompts). A text shorter than ``n`` is indexed as one gram, the whole
token sequence, so short prompts still match when they appear whole; a text shorter than
``min_tokens`` (default ``min(n, 8)``) is not indexed at all: ``return x + y`` or ``Paris`` in a
training record is no evidence that a benchmark was seen. Grams are hashed (Python's ``hash`` of the
token tuple, stable within one process) into a dict, so a lookup costs O(tokens) per text.

**Boilerplate.** Three rules keep common idioms from counting as evidence that one item leaked:

* ``max_item_frequency`` (default 5): a gram found in more benchmark items than this is dropped
  (shared headers, doc-test scaffolding).
* Common tokens: a token is *common* when it is generic (:data:`GENERIC_TOKENS`: Python keywords,
  built-in names, methods of the built-in types, ``typing`` names, ``key``/``reverse``-style argument
  names, number words; any number; any single ASCII character, so all punctuation and one-letter names) or
  when it is found in more than ``max(max_item_frequency, common_token_fraction * len(items))``
  benchmark items (default fraction 0.05: for HumanEval ``the``, ``given``, ``string``, ``numbers``).
  A gram made of common tokens only is dropped; a gram needs one item-specific token (a function
  name, a docstring word). Such grams are idioms, not items: ``[[1, 2, 3], [4, 5``, ``(x: str) ->
  list[str]:``, ``key=lambda x: x[1], reverse=True``, ``for i in range(n): for j in range(``.
  Measured on 185,354 blank-line-separated blocks of installed library source (a 4,000-file sample
  of site-packages and the standard library), HumanEval at n=13 matched 637 blocks without this
  rule and 2 with it, while still matching every prompt.
* An item whose grams are *all* made of common tokens keeps them all, or nothing could catch it
  (HumanEval/53 and /85, both ``def add(...)``: "Add two numbers x and y").

``common_token_fraction=None`` turns the common-token rule off. With 5 items or fewer only the
generic tokens are common. :attr:`ContaminationIndex.unmatchable` names items left with no gram.

**HumanEval texts.** Each problem contributes ``prompt`` and ``prompt + canonical_solution`` (the
complete program). The solution alone is not a text: 16 of the 164 solutions are under 13 tokens
(``return x + y``, ``return len(string)``, ``return ''.join(strings)``) and would flag ordinary code.
A longer solution is still matched on its own through the full program's grams that lie inside it,
unless it is made of common tokens only, as textbook code is (Euclid's ``while b: a, b = b, a % b``,
trial-division primality, the median of a sorted list): 114 of the 148 longer solutions match alone.
Every prompt and every complete program matches, re-indented or wrapped in other text.
"""

from __future__ import annotations

import builtins
import keyword
import re
import typing
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from instructkit.benchmark_sets import humaneval_problems
from instructkit.records import Record

DEFAULT_N = 13
DEFAULT_MAX_ITEM_FREQUENCY = 5
DEFAULT_COMMON_TOKEN_FRACTION = 0.05
SHORT_FLOOR = 8

# Han, kana: scripts written without spaces, one token per character (a word run would be a sentence).
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_TOKEN = re.compile(rf"[{_CJK}]|[^\W{_CJK}]+|[^\w\s]")
_QUOTES = str.maketrans({"'": '"', "`": '"'})


def _generic_tokens() -> frozenset[str]:
    """Tokens common in any Python program or English text, whatever a benchmark holds: keywords,
    built-in names, methods of the built-in types, ``typing`` names, frequent keyword-argument names
    and number words (numbers themselves are always generic, see :func:`_is_generic`)."""
    names = set(keyword.kwlist) | set(keyword.softkwlist) | set(dir(builtins)) | set(typing.__all__)
    for cls in (str, bytes, list, tuple, dict, set, frozenset, int, float, complex, range, slice):
        names.update(dir(cls))
    names.update(
        "key reverse default sep end start stop step encoding errors maxsplit base self cls args kwargs "
        "zero one two three four five six seven eight nine ten eleven twelve hundred thousand million".split()
    )
    return frozenset(n.lower() for n in names if not n.startswith("_"))


GENERIC_TOKENS = _generic_tokens()


def _is_generic(token: str) -> bool:
    return (len(token) == 1 and token.isascii()) or token in GENERIC_TOKENS or token.isdigit()


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
@lru_cache(maxsize=1)
def _humaneval_items() -> tuple[BenchmarkItem, ...]:
    return tuple(
        BenchmarkItem("humaneval", p["task_id"], (p["prompt"], p["prompt"] + p["canonical_solution"]))
        for p in humaneval_problems()
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

    ``n``: gram length. ``max_item_frequency``: a gram in more benchmark items than this is dropped as
    boilerplate (``None`` keeps all). ``common_token_fraction``: a token in more than
    ``max(max_item_frequency, common_token_fraction * len(items))`` items is common, and a gram made of
    common tokens only is dropped (``None`` keeps them). ``min_tokens``: texts shorter than this are not
    indexed (default ``min(n, 8)``); texts from ``min_tokens`` to ``n - 1`` tokens are indexed whole.

    ``dropped`` counts the grams dropped by either rule; ``unmatchable`` lists ``(benchmark, item_id)``
    of items left with no gram.
    """

    def __init__(
        self,
        items: Iterable[BenchmarkItem],
        n: int = DEFAULT_N,
        max_item_frequency: int | None = DEFAULT_MAX_ITEM_FREQUENCY,
        common_token_fraction: float | None = DEFAULT_COMMON_TOKEN_FRACTION,
        min_tokens: int | None = None,
    ):
        if n < 1:
            raise ValueError(f"n must be at least 1, got {n}")
        if max_item_frequency is not None and max_item_frequency < 1:
            raise ValueError(f"max_item_frequency must be at least 1 (or None), got {max_item_frequency}")
        if common_token_fraction is not None and not 0 < common_token_fraction <= 1:
            raise ValueError(
                f"common_token_fraction must be in (0, 1] (or None), got {common_token_fraction}"
            )
        self.items = list(items)
        self.n = n
        self.max_item_frequency = max_item_frequency
        self.common_token_fraction = common_token_fraction
        self.min_tokens = min(n, SHORT_FLOOR) if min_tokens is None else max(1, min(min_tokens, n))

        tokenized = [[overlap_tokens(t) for t in item.texts] for item in self.items]
        common: set[str] = set()
        if common_token_fraction is not None:
            limit = max(max_item_frequency or 0, common_token_fraction * len(self.items))
            token_items: dict[str, int] = {}
            for texts in tokenized:
                for tok in {t for toks in texts for t in toks}:
                    token_items[tok] = token_items.get(tok, 0) + 1
            common = {tok for tok, count in token_items.items() if count > limit or _is_generic(tok)}

        holders: dict[int, list[int]] = {}  # gram hash -> indices of the items holding it
        short: dict[int, int] = {}  # hash of a whole short text -> its length
        per_item: list[set[int]] = []
        seen: set[int] = set()  # every gram, kept or not
        for idx, texts in enumerate(tokenized):
            grams: set[int] = set()  # grams with an uncommon token
            plain: set[int] = set()  # grams of common tokens only
            for toks in texts:
                for start, length in self._windows(toks):
                    window = tuple(toks[start : start + length])
                    g = hash(window)
                    seen.add(g)
                    if length < n:
                        short[g] = length
                    (plain if common and all(t in common for t in window) else grams).add(g)
            # An item made of common tokens only (HumanEval/53: "def add(x: int, y: int): Add two
            # numbers x and y") keeps all its grams, or nothing could ever catch it.
            grams = grams or plain
            per_item.append(grams)
            for g in grams:
                holders.setdefault(g, []).append(idx)

        cap = max_item_frequency
        self._grams = {g: tuple(ids) for g, ids in holders.items() if cap is None or len(ids) <= cap}
        self.dropped = len(seen) - len(self._grams)
        self.unmatchable = [
            (item.benchmark, item.item_id)
            for item, grams in zip(self.items, per_item, strict=True)
            if not any(g in self._grams for g in grams)
        ]
        # Gram lengths to try at each position: n, then the lengths of short texts still indexed.
        kept = {n} | {length for g, length in short.items() if g in self._grams}
        self._lengths = sorted(kept, reverse=True)

    # Grams are keys of Python's ``hash``, which is salted per process: an index unpickled in another
    # process (a Ray worker, which does not fork from the driver) would match nothing. The pickle carries
    # the hash of a probe; a process whose hash differs rebuilds the table from the items (once per
    # process: the engines cache the index).
    _PROBE = ("instructkit", "decontam", "probe")

    def __getstate__(self) -> dict[str, typing.Any]:
        return {**self.__dict__, "_probe_hash": hash(self._PROBE)}

    def __setstate__(self, state: dict[str, typing.Any]) -> None:
        probe = state.pop("_probe_hash", None)
        if probe == hash(self._PROBE):
            self.__dict__.update(state)
            return
        self.__init__(
            state["items"],
            n=state["n"],
            max_item_frequency=state["max_item_frequency"],
            common_token_fraction=state["common_token_fraction"],
            min_tokens=state["min_tokens"],
        )

    def _windows(self, toks: list[str]) -> list[tuple[int, int]]:
        """(start, length) of the grams a benchmark text is indexed as."""
        if len(toks) >= self.n:
            return [(i, self.n) for i in range(len(toks) - self.n + 1)]
        return [(0, len(toks))] if len(toks) >= self.min_tokens else []

    def __len__(self) -> int:
        return len(self._grams)

    def match(self, text: str) -> Match | None:
        """The benchmark item sharing the most grams with ``text`` (ties: the earlier item), with the
        leftmost of those grams; None when no gram is shared. Voting attributes a text to the right
        item when near-twin items (HumanEval/56 and /61) share some grams."""
        toks = overlap_tokens(text)
        grams = self._grams
        total = len(toks)
        votes: dict[int, int] = {}
        leftmost: dict[int, tuple[str, ...]] = {}
        for i in range(total - self._lengths[-1] + 1):
            for length in self._lengths:
                if i + length > total:
                    continue
                window = tuple(toks[i : i + length])
                ids = grams.get(hash(window))
                if ids is None:
                    continue
                for idx in ids:
                    votes[idx] = votes.get(idx, 0) + 1
                    leftmost.setdefault(idx, window)
        if not votes:
            return None
        best = min(votes, key=lambda idx: (-votes[idx], idx))
        item = self.items[best]
        return Match(item.benchmark, item.item_id, " ".join(leftmost[best]))

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
