"""``instructkit data show`` counts and length percentiles (:func:`summarize`) and ``instructkit data
stats``: length histograms, turns, task/label balance and the Self-Instruct
diversity view (top verb–noun pairs of instructions), printed and plotted as PNGs.

Verb–noun pairs: Self-Instruct parsed instructions with a constituency parser and took the root verb
and its first direct noun object. No POS tagger that works offline ships on PyPI with its model, so
this uses a documented light substitute built on the fact that instructions are imperatives: the verb
is the first word after politeness fillers ("please", "can you"), and the noun is the first later word
that is not a function word or a common modifier. Questions and statements ("what ...", "a train
leaves ...") are counted apart, as not imperative.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from instructkit.records import Record


def _words(rec: Record) -> int:
    if rec.messages is not None:
        return sum(len(m.content.split()) for m in rec.messages)
    if rec.tokens is not None:
        return len(rec.tokens)
    return len((rec.text or "").split())


def percentiles(values: list[int], qs: tuple[int, ...] = (50, 90, 99)) -> dict[str, float]:
    if not values:
        return {}
    arr = np.asarray(values)
    out = {f"p{q}": round(float(np.percentile(arr, q)), 1) for q in qs}
    out["min"] = float(arr.min())
    out["max"] = float(arr.max())
    out["mean"] = round(float(arr.mean()), 2)
    return out


class Summary:
    """:func:`summarize` one record at a time, so an engine that streams a split (the Ray engine) gives the
    same summary without holding the split's records."""

    def __init__(self) -> None:
        self.n = 0
        self.kinds: Counter = Counter()
        self.tasks: Counter = Counter()
        self.roles: Counter = Counter()
        self.turns: list[int] = []
        self.words: list[int] = []
        self.tags: Counter = Counter()
        self.labels: Counter = Counter()

    def add(self, r: Record) -> None:
        self.n += 1
        self.kinds[r.kind] += 1
        self.tasks[r.meta.get("task") or "-"] += 1
        if r.messages is not None:
            self.roles.update(m.role for m in r.messages)
            self.turns.append(sum(1 for m in r.messages if m.role == "user"))
        if r.tags is not None:
            self.tags.update(t[2:] for t in r.tags if t != "O")
        if r.text is not None:
            self.labels.update([str(r.label)])
        self.words.append(_words(r))

    def to_dict(self) -> dict[str, Any]:
        return {
            "records": self.n,
            "kinds": dict(self.kinds),
            "tasks": dict(self.tasks.most_common()),
            "roles": dict(self.roles),
            "exchanges_per_conversation": percentiles(self.turns),
            "multi_turn": sum(1 for t in self.turns if t > 1),
            "words_per_record": percentiles(self.words),
            "entity_tokens": dict(self.tags.most_common()),
            "labels": dict(self.labels.most_common()),
        }


def summarize(records: list[Record]) -> dict[str, Any]:
    summary = Summary()
    for r in records:
        summary.add(r)
    return summary.to_dict()


FILLERS = {
    "please",
    "kindly",
    "can",
    "could",
    "would",
    "will",
    "you",
    "now",
    "also",
    "then",
    "just",
    "help",
    "me",
}
QUESTION = {"what", "how", "why", "who", "whom", "whose", "which", "when", "where", "is", "are", "was", "were", "do",
            "does", "did", "should", "shall", "may", "might", "has", "have", "had", "am",
            "a", "an", "the", "there", "i", "we", "my", "our", "it", "this", "if"}  # fmt: skip
SKIP_NOUN = {
    "a", "an", "the", "this", "that", "these", "those", "some", "any", "my", "your", "our", "their", "his", "her",
    "its", "me", "us", "them", "it", "him", "of", "to", "for", "in", "on", "at", "by", "with", "from", "into",
    "about", "and", "or", "following", "given", "short", "brief", "simple", "new", "good", "few", "several",
    "one", "two", "three", "four", "five", "each", "all", "more", "most", "very", "up", "down", "out", "how",
    "what", "why", "whether", "if", "between", "python", "english", "formal", "informal", "single", "clear",
}  # fmt: skip
WORD = re.compile(r"[A-Za-z][A-Za-z'-]*")


def verb_noun(instruction: str) -> tuple[str, str | None] | None:
    """``(verb, noun)`` of an imperative instruction, ``("?", None)`` for a question or statement, None if empty."""
    first_sentence = re.split(r"(?<=[.!?:])\s|\n", instruction.strip(), maxsplit=1)[0]
    words = [w.lower() for w in WORD.findall(first_sentence)]
    while words and words[0] in FILLERS:
        words.pop(0)
    if not words:
        return None
    if words[0] in QUESTION:
        return ("?", None)
    noun = next((w for w in words[1:] if w not in SKIP_NOUN and len(w) > 1), None)
    return (words[0], noun)


def collect(splits: dict[str, list[Record]]) -> dict[str, Any]:
    everything = [r for recs in splits.values() for r in recs]
    pairs: Counter = Counter()
    verbs: Counter = Counter()
    questions = 0
    for r in everything:
        if r.messages is None:
            continue
        vn = verb_noun(r.first_instruction())
        if vn is None:
            continue
        if vn[0] == "?":
            questions += 1
            continue
        verbs[vn[0]] += 1
        if vn[1]:
            pairs[f"{vn[0]} {vn[1]}"] += 1
    return {
        "splits": {name: summarize(recs) for name, recs in splits.items()},
        "prompt_words": [len(r.prompt_text().split()) for r in everything],
        "reply_words": [len(r.reply_text().split()) for r in everything if r.messages is not None],
        "turns": [
            sum(1 for m in r.messages if m.role == "user") for r in everything if r.messages is not None
        ],
        "balance": Counter(
            str(r.label) if r.text is not None else str(r.meta.get("task") or "-") for r in everything
        ).most_common(),
        "top_verbs": verbs.most_common(20),
        "top_verb_noun": pairs.most_common(20),
        "questions": questions,
    }


def plot(stats: dict[str, Any], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    written = []

    def save(fig, name: str) -> None:
        path = out / name
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)

    fig, ax = plt.subplots(figsize=(7, 4))
    ax.hist([stats["prompt_words"], stats["reply_words"] or [0]], bins=30, label=["prompt", "reply"])
    ax.set(xlabel="words", ylabel="records", title="Length")
    ax.legend()
    save(fig, "lengths.png")

    fig, ax = plt.subplots(figsize=(5, 3.5))
    turns = Counter(stats["turns"])
    ax.bar([str(k) for k in sorted(turns)], [turns[k] for k in sorted(turns)])
    ax.set(xlabel="user/assistant exchanges", ylabel="records", title="Turns per record")
    save(fig, "turns.png")

    fig, ax = plt.subplots(figsize=(7, 4))
    names, counts = zip(*stats["balance"][:25], strict=True) if stats["balance"] else ((), ())
    ax.barh(list(names)[::-1], list(counts)[::-1])
    ax.set(xlabel="records", title="Task / label balance")
    save(fig, "balance.png")

    fig, ax = plt.subplots(figsize=(7, 5))
    pairs = stats["top_verb_noun"]
    if pairs:
        labels, values = zip(*pairs, strict=True)
        ax.barh(list(labels)[::-1], list(values)[::-1], color="tab:green")
    ax.set(xlabel="instructions", title="Top verb–noun pairs of instructions")
    save(fig, "verb_noun.png")
    return written
