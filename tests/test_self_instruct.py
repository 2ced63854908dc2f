"""Self-Instruct's prompts, reply parsers, instance cleaning and instruction filters on fixed inputs."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from rouge_score import rouge_scorer

from instructkit.data import instruction_filters as gen_filters
from instructkit.data.base import build_step
from instructkit.formats import read_records
from instructkit.generate import self_instruct as si
from instructkit.records import Record

EIGHT = [f"Task number {i} with  extra   spaces:" for i in range(1, 9)]


def _rec(instruction: str, extra: str = "") -> Record:
    return si.task_records(instruction, [si.Instance(extra, "out")], False)[0]


# ---------------------------------------------------------------------- seeds
def test_bundled_seeds_are_diverse_self_instruct_tasks() -> None:
    path = si.default_seeds_path()
    assert path.is_file()
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(rows) >= 40 and sum(r["is_classification"] for r in rows) >= 6
    assert all(1 <= len(r["instances"]) <= 2 for r in rows)
    tasks = si.load_seed_tasks()
    assert [t.instruction for t in tasks] == [r["instruction"] for r in rows]
    assert [len(t.instances) for t in tasks] == [len(r["instances"]) for r in rows]
    assert [t.is_classification for t in tasks] == [r["is_classification"] for r in rows]
    first_input = next(t for t in tasks if t.instances[0].input)
    assert first_input.instances[0].input not in first_input.instruction  # kept apart from the instruction
    assert "\n\n" not in first_input.instruction


def test_seeds_from_another_format_become_tasks(tmp_path: Path) -> None:
    path = tmp_path / "alpaca.json"
    rows = [
        {"instruction": "Translate to German.", "input": "Good morning", "output": "Guten Morgen"},
        {"instruction": "Translate to German.", "input": "Thank you", "output": "Danke"},
        {"instruction": "Name a prime number.", "input": "", "output": "7"},
    ]
    path.write_text(json.dumps(rows))
    tasks = si.load_seed_tasks(path)
    assert [(t.instruction, len(t.instances)) for t in tasks] == [
        ("Translate to German.", 2),
        ("Name a prime number.", 1),
    ]
    assert tasks[0].instances[1] == si.Instance("Thank you", "Danke") and not tasks[0].is_classification


# ---------------------------------------------------------------------- prompt assembly
def test_instruction_prompt_is_encode_prompt() -> None:
    prompt = si.instruction_prompt(EIGHT)
    lines = prompt.split("\n")
    assert lines[0] == "Come up with a series of tasks:"
    assert lines[1:9] == [
        f"{i}. Task number {i} with extra spaces" for i in range(1, 9)
    ]  # squashed, ':' stripped
    assert lines[9] == "9." and prompt.endswith("\n9.")
    assert si.instruction_prompt(EIGHT, classification=True).startswith(
        "Come up with a series of classification tasks."
    )


def test_sampling_is_six_seeds_and_two_generated_once_there_are_any() -> None:
    seeds = [f"seed {i}" for i in range(20)]
    first = si.sample_prompt_instructions(seeds, [], random.Random(3))
    assert len(first) == 8 and set(first) <= set(seeds) and len(set(first)) == 8
    generated = [f"gen {i}" for i in range(5)]
    later = si.sample_prompt_instructions(seeds, generated, random.Random(3))
    assert sum(x in generated for x in later) == 2 and sum(x in seeds for x in later) == 6
    one = si.sample_prompt_instructions(seeds, generated[:1], random.Random(3))
    assert sum(x in seeds for x in one) == 7
    assert later == si.sample_prompt_instructions(seeds, generated, random.Random(3))  # seeded
    with pytest.raises(ValueError, match="too few"):
        si.sample_prompt_instructions(seeds[:5], [], random.Random(0))


# ---------------------------------------------------------------------- reply parser
def test_reply_continuing_from_nine() -> None:
    reply = " Write a story about a brave mouse.\n10. Name three primary colors.\n11 . Explain how\nrainbows form.\n12. Give 3.14 as\n3.14 is pi, the ratio.\n"
    kept, rejected = si.parse_instructions(reply)
    assert kept == [
        "Write a story about a brave mouse.",
        "Name three primary colors.",
        "Explain how rainbows form.",
        "Give 3.14 as 3.14 is pi, the ratio.",
    ]
    assert rejected == []


def test_reply_with_task_lines_and_a_truncated_last_item() -> None:
    reply = "Task 9: Suggest a name for a cat.\nTask 10: List four fruits that are red.\nTask 11: Describe the city of"
    kept, rejected = si.parse_instructions(reply, finish_reason="length")
    assert kept == ["Suggest a name for a cat.", "List four fruits that are red."]
    assert [(r.text, r.reason) for r in rejected] == [("Describe the city of", "truncated")]
    kept, _ = si.parse_instructions(reply, finish_reason="stop")
    assert kept[-1] == "Describe the city of"


def test_reply_restating_nine_and_empty_items() -> None:
    kept, rejected = si.parse_instructions("9. Summarize the news.\n10.\n11) Translate it to Spanish.")
    assert kept == ["Summarize the news.", "Translate it to Spanish."]
    assert [r.reason for r in rejected] == ["empty_item"]
    kept, rejected = si.parse_instructions("   \n")
    assert kept == [] and [r.reason for r in rejected] == ["no_instructions"]


# ---------------------------------------------------------------------- classification
def test_classification_prompt_and_parser() -> None:
    tasks = si.load_seed_tasks()
    prompt = si.classification_prompt("Is the tweet sarcastic?", tasks)
    assert prompt.endswith("Task: Is the tweet sarcastic?\nIs it classification?")
    assert prompt.count("Is it classification? Yes") == 6 and prompt.count("Is it classification? No") == 6
    assert (
        si.parse_classification(" Yes.") is True and si.parse_classification("no, it is open-ended") is False
    )
    bad = si.parse_classification("Maybe")
    assert isinstance(bad, si.Rejected) and bad.reason == "unparseable_classification"


# ---------------------------------------------------------------------- instances
def test_instance_prompts_are_output_first_for_classification() -> None:
    tasks = si.load_seed_tasks()
    clf = si.instance_prompt("Label the tweet as happy or sad.", True, tasks)
    assert clf.startswith("Given the classification task definition and the class labels")
    assert "Class label: positive\nInput: The battery lasts" in clf and "Example 1" not in clf
    assert clf.endswith("Task: Label the tweet as happy or sad.\n")
    gen = si.instance_prompt("Write a tweet about rain.", False, tasks)
    assert gen.startswith("Come up with examples for the following tasks.")
    assert (
        "Example 1\nInput: The committee approved the new budget.\nOutput: The new budget was approved" in gen
    )
    assert "Class label:" not in gen and gen.endswith("Task: Write a tweet about rain.\n")


def test_parse_input_first_instances() -> None:
    reply = "Example 1\nInput: 2 + 2\nOutput: 4\nExample 2\nInput: 3 * 3\nOutput: 9\nExample 3\nInput: 10 / 2\nOutput: 5\nTask: another task\nExample 1"
    kept, rejected = si.parse_instances(reply, False)
    assert kept == [si.Instance("2 + 2", "4"), si.Instance("3 * 3", "9"), si.Instance("10 / 2", "5")]
    assert rejected == []
    kept, rejected = si.parse_instances(
        "Example 1\nOutput: Blue.\nExample 2\nInput: sky at night\nOutput: Bla", False, "length"
    )
    assert kept == [si.Instance("", "Blue.")] and [r.reason for r in rejected] == ["truncated"]
    kept, _ = si.parse_instances("The sky is blue because of Rayleigh scattering.", False)
    assert kept == [si.Instance("", "The sky is blue because of Rayleigh scattering.")]
    kept, rejected = si.parse_instances("Example 1\nInput: only an input\nExample 2\nOutput: x", False)
    assert kept == [si.Instance("", "x")] and [r.reason for r in rejected] == ["malformed_instance"]


def test_parse_output_first_instances() -> None:
    reply = (
        "Class label: happy\nInput: Sun all day!\nClass label: sad\nInput: My dog is sick.\nClass label: sa"
    )
    kept, rejected = si.parse_instances(reply, True, finish_reason="length")
    assert kept == [si.Instance("Sun all day!", "happy"), si.Instance("My dog is sick.", "sad")]
    assert [r.reason for r in rejected] == ["truncated"]


def test_clean_instances_each_reason() -> None:
    insts = [
        si.Instance("hello", "Hello"),  # input equals output
        si.Instance("q", ""),  # empty output
        si.Instance("2+2", "4"),
        si.Instance("2+2", "5"),  # conflicting outputs: both refused
        si.Instance("3+3", "6"),
        si.Instance("3+3", " 6 "),  # duplicate after whitespace
        si.Instance("", "A poem."),
    ]
    kept, rejected = si.clean_instances(insts)
    assert kept == [si.Instance("3+3", "6"), si.Instance("", "A poem.")]
    assert [r.reason for r in rejected] == [
        "input_equals_output",
        "empty_output",
        "conflicting_outputs",
        "conflicting_outputs",
        "duplicate_instance",
    ]


def test_an_output_that_echoes_the_instruction_is_refused() -> None:
    instruction = 'Using it in a sentence: "The cat and the dog are the only two legs of a cat."'
    insts = [
        si.Instance("a", "The cat and the dog are the only two legs of a cat."),  # a part of it, echoed
        si.Instance("b", "USING it in a sentence -- the cat and the dog are the only two legs of a cat"),
        si.Instance("c", "A cat."),  # short: a label may be named in the instruction
        si.Instance("d", "The cat sat next to the dog on the mat."),  # a real sentence
    ]
    kept, rejected = si.clean_instances(insts, instruction)
    assert kept == insts[2:]
    assert [r.reason for r in rejected] == ["output_copies_instruction"] * 2
    assert si.clean_instances(insts)[0] == insts  # without the instruction, nothing to compare


def test_task_records_round_trip_through_the_self_instruct_writer(tmp_path: Path) -> None:
    from instructkit.formats import write_records

    recs = si.task_records(
        "Add the numbers.",
        [si.Instance("1 2", "3"), si.Instance("4 5", "9")],
        False,
        [("Sum two numbers.", 0.4)],
    )
    assert recs[0].meta["most_similar"] == [{"instruction": "Sum two numbers.", "rouge_l": 0.4}]
    out = tmp_path / "tasks.jsonl"
    write_records(recs, out, fmt="self-instruct")
    row = json.loads(out.read_text().splitlines()[0])
    assert row["instruction"] == "Add the numbers." and len(row["instances"]) == 2
    assert [len(read_records(out))] == [2]


# ---------------------------------------------------------------------- instruction filters
@pytest.mark.parametrize(
    "step,text,verdict",
    [
        ("instruction_words", "Name colors.", (False, "too_few_words")),
        ("instruction_words", "Name three colors.", True),
        ("instruction_words", " ".join(["word"] * 150), True),
        ("instruction_words", " ".join(["word"] * 151), (False, "too_many_words")),
        ("blacklist", "Draw a map of your town.", (False, "blacklisted_word", "draw")),
        ("blacklist", "Describe the IMAGES in the article.", (False, "blacklisted_word", "images")),
        ("blacklist", "Explain how to go to the moon.", (False, "blacklisted_word", "go to")),
        ("blacklist", "Summarize the plot twist.", (False, "blacklisted_word", "plot")),
        ("blacklist", "Describe a mapping between sets and a graphic novel.", True),  # whole words only
        ("blacklist", "Paint a sunset in words.", True),
        ("write_a_program", "Write a program that prints primes.", False),
        ("write_a_program", "Write a poem about programs.", True),
        ("instruction_start", "- List fruits that are red.", (False, "starts_with_punctuation", "-")),
        ("instruction_start", "“Quote” a famous line.", (False, "starts_with_non_ascii", "“")),
        ("instruction_start", "Écris un poème sur la mer.", (False, "starts_with_non_ascii", "É")),
        ({"step": "instruction_start", "allow_non_ascii": True}, "Écris un poème sur la mer.", True),
        ("instruction_start", "List fruits that are red.", True),
    ],
)
def test_instruction_filters(step, text: str, verdict) -> None:
    assert build_step(step).keep(_rec(text)) == verdict


def test_filters_judge_the_instruction_not_its_input() -> None:
    rec = _rec(
        "Summarize the article in two sentences.", "The museum added new images, maps and a file archive."
    )
    for name in ("instruction_words", "blacklist", "write_a_program", "instruction_start"):
        assert build_step(name).keep(rec) is True, name
    assert gen_filters.INSTRUCTION_FILTERS[-1] == "rouge_novelty"


def test_rouge_novelty_against_seeds_and_kept() -> None:
    step = build_step(
        {
            "step": "rouge_novelty",
            "seeds": ["Write a poem about the sea.", "Give three tips for staying healthy."],
            "k": 2,
        }
    )
    texts = [
        "Write a poem about the sea!",  # 1.0 against a seed
        "Tell a joke about penguins.",
        "Tell a joke about penguins please.",  # ≥ 0.7 against the kept one before it
        "Give three tips for staying calm.",  # 5/6 against a seed
        "Explain why the sky is blue.",
    ]
    verdicts = step.run([_rec(t) for t in texts])
    assert [v.reason for v in verdicts] == ["too_similar", None, "too_similar", "too_similar", None]
    assert verdicts[0].detail.startswith("1.000 Write a poem about the sea.")
    ref = (
        rouge_scorer.RougeScorer(["rougeL"]).score(texts[4], "Write a poem about the sea.")["rougeL"].fmeasure
    )
    assert verdicts[4].meta["most_similar"] == [
        {"instruction": "Write a poem about the sea.", "rouge_l": ref}
    ]
    ref1 = (
        rouge_scorer.RougeScorer(["rougeL"]).score(texts[1], "Write a poem about the sea.")["rougeL"].fmeasure
    )
    assert verdicts[1].meta["most_similar"] == [
        {"instruction": "Write a poem about the sea.", "rouge_l": ref1}
    ]
