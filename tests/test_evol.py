"""Evol-Instruct: the prompts against the WizardLM release's text on fixed inputs, each elimination rule on
crafted replies, lineage across rounds, accounting, resume from the cache and the token budget, with the
scripted backend; one slow run with the bundled model."""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from pathlib import Path

import pytest

from instructkit.formats import read_records
from instructkit.generate import evol
from instructkit.generate.backends.base import Reply, Request
from instructkit.generate.runner import GenerateConfigError, generate, load_generate_config
from tests.scripted_backend import ScriptedBackend, last_user

T5 = "\t" * 5
# depth.py's base_instruction as the string its line continuations make (written out here on its own,
# not imported from the module, so the test checks the module against the release)
RELEASE_DEPTH = (
    "I want you act as a Prompt Rewriter.\r\n "
    + T5
    + "Your objective is to rewrite a given prompt into a more "
    "complex version to make those famous AI systems (e.g., chatgpt and GPT4) a bit harder to handle.\r\n "
    + T5
    + "But the rewritten prompt must be reasonable and must be understood and responded by humans.\r\n "
    + T5
    + "Your rewriting cannot omit the non-text parts such as the table and code in #The Given Prompt#:. Also, "
    "please do not omit the input in #The Given Prompt#. \r\n "
    + T5
    + "You SHOULD complicate the given prompt "
    "using the following method: \r\n" + T5 + "{} \r\n" + T5 + "You should try your best not to make the "
    "#Rewritten Prompt# become verbose, #Rewritten Prompt# can only add 10 to 20 words into #The Given Prompt#. "
    "\r\n" + T5 + "'#The Given Prompt#', '#Rewritten Prompt#', 'given prompt' and 'rewritten prompt' are not "
    "allowed to appear in #Rewritten Prompt#\r\n"
)
RELEASE_METHODS = {
    "add_constraints": "Please add one more constraints/requirements into #The Given Prompt#'",
    "deepen": "If #The Given Prompt# contains inquiries about certain issues, the depth and breadth of the inquiry "
    "can be increased.",
    "concretize": "Please replace general concepts with more specific concepts.",
    "increase_reasoning": "If #The Given Prompt# can be solved with just a few simple thinking processes, you can "
    "rewrite it to explicitly request multiple-step reasoning.",
}
RELEASE_BREADTH = (
    "I want you act as a Prompt Creator.\r\nYour goal is to draw inspiration from the #Given Prompt# to create a "
    "brand new prompt.\r\nThis new prompt should belong to the same domain as the #Given Prompt# but be even more "
    "rare.\r\nThe LENGTH and complexity of the #Created Prompt# should be similar to that of the #Given Prompt#."
    "\r\nThe #Created Prompt# must be reasonable and must be understood and responded by humans.\r\n'#Given "
    "Prompt#', '#Created Prompt#', 'given prompt' and 'created prompt' are not allowed to appear in #Created "
    "Prompt#\r\n"
)
PROMPT = "Name three primary colors."


# -- prompt assembly ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("op", sorted(RELEASE_METHODS))
def test_in_depth_prompts_are_the_releases_character_for_character(op: str) -> None:
    # createXPrompt(instruction): base.format(method) + "#The Given Prompt#: \r\n {} \r\n" + "#Rewritten Prompt#:\r\n"
    expected = (
        RELEASE_DEPTH.format(RELEASE_METHODS[op])
        + f"#The Given Prompt#: \r\n {PROMPT} \r\n#Rewritten Prompt#:\r\n"
    )
    assert evol.evolve_prompt(op, PROMPT) == expected
    clean = evol.evolve_prompt(op, PROMPT, original_whitespace=False)
    assert "\r" not in clean and "\t" not in clean
    assert clean.split() == expected.split()  # the same words


def test_breadth_prompt_is_the_releases() -> None:
    expected = RELEASE_BREADTH + f"#Given Prompt#: \r\n {PROMPT} \r\n#Created Prompt#:\r\n"
    assert evol.evolve_prompt("breadth", PROMPT) == expected


def test_complicate_input_prompt_is_the_papers_with_its_demo_for_python_only() -> None:
    head = (
        "I want you act as a Prompt Rewriter. Your objective is to rewrite a given prompt into a more complex "
        "version using dataformat to make those famous AI systems (e.g., chatgpt and GPT4) more difficult to handle. "
        "But the rewritten prompt must be reasonable and must be understood and responded by humans.\n"
    )
    py = evol.evolve_prompt("complicate_input", PROMPT, "python code")
    assert py.startswith(
        head + "You must add [python code] format text as input data in [Rewritten Prompt]\n"
    )
    assert "Transformat python code\n" in py and py.count("####") == 1
    assert py.endswith(
        f"The Given Prompt:\n{PROMPT}\nRewritten Prompt(MUST contain a specific python code as input):\n"
    )
    xml = evol.evolve_prompt("complicate_input", PROMPT, "XML data")
    assert xml == (
        head + "You must add [XML data] format text as input data in [Rewritten Prompt]\n"
        f"The Given Prompt:\n{PROMPT}\nRewritten Prompt(MUST contain a specific XML data as input):\n"
    )
    # the model continuing the demo's pattern writes the separator after its prompt: cut there
    assert evol.clean_evolved("complicate_input", " Given this XML <a/>, sort it.\n####\nThe Given") == (
        "Given this XML <a/>, sort it."
    )
    with pytest.raises(ValueError, match="unknown operation"):
        evol.evolve_prompt("shorten", PROMPT)


def test_equality_prompt_and_its_parser() -> None:
    assert evol.equality_prompt("A", "B") == (
        "Here are two Instructions to ChatGPT AI, do you think they are equal to each other, which meet the "
        "following requirements:\n1. They have same constraints and requirments.\n2. They have same depth and "
        "breadth of the inquiry.\nThe First Prompt: A\nThe Second Prompt: B\nYour Judgement (Just answer: Equal or "
        "Not Equal. No need to explain the reason.):"
    )
    assert evol.parse_equality("Equal") is True
    assert evol.parse_equality(" equal.") is True
    assert evol.parse_equality("Not Equal") is False
    assert evol.parse_equality("They are not equal.") is False
    assert evol.parse_equality("Unequal") is False
    assert evol.parse_equality("Maybe, hard to say") is None
    assert evol.parse_equality("") is None


def test_elimination_rule_functions_on_fixed_inputs() -> None:
    words = evol.DEFAULT_TEMPLATE_WORDS
    assert evol.copied_template_words("#Rewritten Prompt#: list the colors", words) == "#Rewritten Prompt#"
    assert evol.copied_template_words("Rewrite the GIVEN PROMPT in French", words) == "given prompt"
    assert evol.copied_template_words("Name the primary colors of light", words) is None
    # rule 2: "sorry" and fewer than 80 words
    assert evol.is_short_refusal("I'm sorry, but I can't help with that.")
    assert not evol.is_short_refusal("I cannot help with that.")
    assert evol.is_short_refusal("Sorry " + "word " * 78)  # 79 words
    assert not evol.is_short_refusal("Sorry " + "word " * 79)  # 80 words
    # rule 3: nothing but punctuation and stop words
    assert evol.only_stop_words("... the, of and to!")
    assert evol.only_stop_words("")
    assert evol.only_stop_words("?!")
    assert not evol.only_stop_words("The primary colors are red, yellow and blue.")


# -- the generator with a scripted model --------------------------------------------------------------------


def given(prompt: str) -> str:
    """The prompt a rewrite request asks to evolve."""
    for pattern in (r"#The Given Prompt#: \r?\n ?(.*?) \r?\n#Rewritten", r"#Given Prompt#: \r?\n ?(.*?) \r?\n#Created",
                    r".*The Given Prompt:\n(.*?)\nRewritten Prompt\(MUST"):  # fmt: skip
        m = re.search(pattern, prompt, re.S)
        if m:
            return m.group(1)
    raise AssertionError(f"not a rewrite prompt: {prompt[:80]!r}")


def kind(request: Request) -> str:
    text = last_user(request)
    if text.startswith("I want you act as a Prompt"):
        return "rewrite"
    if text.startswith("Here are two Instructions"):
        return "judge"
    return "answer"


def plain(answer_of=None, rewrite_of=None, judge_of=None):
    """A script: rewrites append " Explain why." (or rewrite_of(parent, request)), answers say "Answer to: P"
    (or answer_of(prompt)), the judge says Not Equal (or judge_of(first, second))."""

    def answer(request: Request) -> str | Reply:
        text = last_user(request)
        k = kind(request)
        if k == "rewrite":
            parent = given(text)
            got = rewrite_of(parent, request) if rewrite_of else None
            return got if got is not None else f"{parent} Explain why."
        if k == "judge":
            first, second = re.search(
                r"The First Prompt: (.*)\nThe Second Prompt: (.*)\nYour Judgement", text, re.S
            ).groups()
            got = judge_of(first, second) if judge_of else None
            return got if got is not None else "Not Equal"
        got = answer_of(text) if answer_of else None
        return got if got is not None else f"Answer to: {text}"

    return answer


def write_prompts(path: Path, prompts: list[str]) -> Path:
    path.write_text(
        "".join(json.dumps({"instruction": p, "input": "", "output": "x"}) + "\n" for p in prompts)
    )
    return path


def config(tmp_path: Path, prompts: list[str], **kw):
    data = {"input": str(write_prompts(tmp_path / "in.jsonl", prompts)), "rounds": 1, **kw}
    return load_generate_config("evol", data)


def run_evol(tmp_path: Path, cfg, script, out: str = "out"):
    backend = ScriptedBackend(answer=script)
    return generate("evol", cfg, tmp_path / out, show_progress=False, backend=backend), backend


def test_each_elimination_rule_fires_with_its_reason(tmp_path: Path) -> None:
    prompts = {
        "copy": "List the planets.",
        "identical": "Name a prime number.",
        "equal": "Describe a cat.",
        "refusal": "Explain taxes.",
        "stopwords": "Define gravity.",
        "unclear": "Summarize a poem.",
        "truncated": "Translate hello.",
        "empty": "Spell banana.",
        "long_sorry": "Write an apology letter.",
        "good": "Name three primary colors.",
    }
    rev = {v: k for k, v in prompts.items()}

    def rewrite_of(parent: str, request: Request):
        case = rev[parent]
        if case == "copy":
            return f"#Rewritten Prompt#: {parent} In detail."
        if case == "identical":
            return f"  {parent} "
        if case == "truncated":
            return Reply(f"{parent} and then", "length", 10, 512)
        if case == "empty":
            return "   "
        return None

    def answer_of(prompt: str):
        case = rev.get(prompt.removesuffix(" Explain why."))
        return {
            "refusal": "I'm sorry, I cannot answer that.",
            "stopwords": "The... and, of it!",
            "long_sorry": "Sorry for the delay. " + "Here is the letter in full. " * 20,
        }.get(case)

    def judge_of(first: str, second: str):
        return {"equal": "Equal", "unclear": "Perhaps."}.get(rev[first])

    cfg = config(tmp_path, list(prompts.values()), operations=["deepen"])
    result, backend = run_evol(tmp_path, cfg, plain(answer_of, rewrite_of, judge_of))
    reasons = {rev[r["parent"]]: (r["step"], r["reason"]) for r in result.rejects}
    assert reasons == {
        "copy": ("evolve", "copies_template_words"),
        "identical": ("evolve", "no_information_gain"),
        "truncated": ("evolve", "prompt_truncated"),
        "empty": ("evolve", "empty_prompt"),
        "refusal": ("answer", "short_refusal"),
        "stopwords": ("answer", "only_punctuation_and_stop_words"),
        "equal": ("equality", "no_information_gain"),
        "unclear": ("equality", "unclear_judgment"),
    }
    copy = next(r for r in result.rejects if r["reason"] == "copies_template_words")
    assert copy["detail"] == "#Rewritten Prompt#" and copy["round"] == 1 and copy["operation"] == "deepen"
    assert [r.messages[0].content for r in result.records] == [
        "Write an apology letter. Explain why.",  # "sorry" but 80+ words: not a refusal
        "Name three primary colors. Explain why.",
    ]
    assert result.records[1].messages[1].content == "Answer to: Name three primary colors. Explain why."
    card = result.card
    assert card["accounting"] == {"in": 10, "kept": 2, "rejected": 8, "balanced": True}
    assert card["rejected_by_reason"]["no_information_gain"] == 2
    # requests: 10 rewrites; answers for the 6 that passed the prompt checks; judgments for the 4 answered well
    assert Counter(kind_of for kind_of in map(_kind_of_prompt, backend.prompts)) == {
        "rewrite": 10,
        "answer": 6,
        "judge": 4,
    }
    # the files say the same
    lines = (result.out_dir / "rejects.jsonl").read_text().splitlines()
    assert (
        len(lines) == 8 and json.loads((result.out_dir / "card.json").read_text())["accounting"]["balanced"]
    )

    # unclear judgments can be kept instead
    cfg = config(tmp_path, list(prompts.values()), operations=["deepen"], unclear_judgment="keep")
    kept, _ = run_evol(tmp_path, cfg, plain(answer_of, rewrite_of, judge_of), out="keep")
    unclear = [r for r in kept.records if r.meta["equality_judgment"] == "unclear"]
    assert [r.messages[0].content for r in unclear] == ["Summarize a poem. Explain why."]


def _kind_of_prompt(text: str) -> str:
    return kind(Request([{"role": "user", "content": text}]))


def test_history_lineage_across_rounds_and_failed_parents_stay(tmp_path: Path) -> None:
    a, b = "Name three primary colors.", "List the planets."

    def rewrite_of(parent: str, request: Request):
        if parent == b and request.sampling.seed == 0 + 1:  # round 1 fails for b
            return f"#Rewritten Prompt# {parent}"
        return f"{parent} +r{request.sampling.seed}"

    cfg = config(tmp_path, [a, b], rounds=3)
    result, _ = run_evol(tmp_path, cfg, plain(rewrite_of=rewrite_of))
    by_id = {r.id: r for r in result.records}
    src = {r.meta["source_id"] for r in result.records}
    assert len(src) == 2
    a_recs = [r for r in result.records if r.messages[0].content.startswith(a)]
    b_recs = [r for r in result.records if r.messages[0].content.startswith(b)]
    assert [r.messages[0].content for r in a_recs] == [f"{a} +r1", f"{a} +r1 +r2", f"{a} +r1 +r2 +r3"]
    assert [r.messages[0].content for r in b_recs] == [f"{b} +r2", f"{b} +r2 +r3"]
    # every step of a's last record: the round, its parent's text and id, the operation drawn that round
    hist = a_recs[-1].meta["evol_history"]
    assert [h["round"] for h in hist] == [1, 2, 3]
    assert [h["parent"] for h in hist] == [a, f"{a} +r1", f"{a} +r1 +r2"]
    assert hist[0]["parent_id"] == a_recs[0].meta["source_id"]
    assert hist[1]["parent_id"] == a_recs[0].id and hist[2]["parent_id"] == a_recs[1].id
    assert all(h["operation"] in evol.OPERATIONS for h in hist)
    assert [h["operation"] for h in hist] == [r.meta["evol_history"][-1]["operation"] for r in a_recs]
    # b failed in round 1: its parent stayed, so round 2 evolved the original again
    b_hist = b_recs[-1].meta["evol_history"]
    assert [(h["round"], h["parent"]) for h in b_hist] == [(2, b), (3, f"{b} +r2")]
    assert result.card["summary"]["per_round"] == [
        {"round": 1, "attempted": 2, "kept": 1},
        {"round": 2, "attempted": 2, "kept": 2},
        {"round": 3, "attempted": 2, "kept": 2},
    ]
    assert result.card["accounting"] == {"in": 6, "kept": 5, "rejected": 1, "balanced": True}
    assert set(by_id) == {r.id for r in result.records} and len(by_id) == 5


def test_rerun_is_all_cache_hits_with_the_same_records(tmp_path: Path) -> None:
    prompts = ["Name three primary colors.", "List the planets.", "Describe a cat.", "Explain taxes."]
    cfg = config(tmp_path, prompts, rounds=2)
    first, b1 = run_evol(tmp_path, cfg, plain())
    second, b2 = run_evol(tmp_path, cfg, plain())
    assert b1.calls == 4 * 3 * 2 and b2.calls == 0
    assert [r.to_dict() for r in second.records] == [r.to_dict() for r in first.records]
    s = second.card["summary"]
    assert s["sent"] == 0 and s["cache_hits"] == s["requests"] == 24 and second.card["accounting"]["balanced"]
    # another seed draws other operations, so other rewrite requests
    other, b3 = run_evol(tmp_path, config(tmp_path, prompts, rounds=2, seed=7), plain())
    assert b3.calls > 0


def test_budget_stop_says_how_far_it_got_and_a_rerun_goes_on(tmp_path: Path) -> None:
    prompts = [f"Task number {i} about colors." for i in range(6)]
    full, fb = run_evol(tmp_path, config(tmp_path, prompts, rounds=2), plain(), out="full")
    cfg = config(tmp_path, prompts, rounds=2, budget_tokens=2600)  # round 1 takes about 2,200 tokens
    cut, cb = run_evol(tmp_path, cfg, plain(), out="cut")
    stopped = cut.card["stopped"]
    assert stopped.startswith("token budget spent"), stopped
    assert (
        "stopped in round 2 of 2 at the rewrite step (2 of 6 of its requests answered); 6 evolved prompts "
        "kept from 1 finished round(s)" in stopped
    ), stopped
    assert [r.to_dict() for r in cut.records] == [r.to_dict() for r in full.records[:6]]
    assert cut.card["accounting"] == {"in": 6, "kept": 6, "rejected": 0, "balanced": True}
    spent = cut.card["summary"]["prompt_tokens"] + cut.card["summary"]["completion_tokens"]
    assert 2600 <= spent < 2600 + 300  # within one request (a rewrite request is about 270 tokens here)
    # rerun without the budget: the answered requests come from the cache, the rest are sent once
    rest, rb = run_evol(tmp_path, config(tmp_path, prompts, rounds=2), plain(), out="cut")
    assert cb.calls + rb.calls == fb.calls
    assert [r.to_dict() for r in rest.records] == [r.to_dict() for r in full.records]


def test_operation_draws_follow_the_config() -> None:
    cfg = evol.EvolConfig(input="x")
    rng = random.Random(0)
    counts = Counter(cfg.draw(rng)[0] for _ in range(1200))
    assert set(counts) == set(evol.OPERATIONS) and min(counts.values()) > 150  # 1/6 each: about 200
    only = evol.EvolConfig(input="x", operations=["concretize", "breadth"], breadth_share=1.0)
    assert {only.draw(rng)[0] for _ in range(50)} == {"breadth"}
    none = evol.EvolConfig(input="x", operations=["concretize", "breadth"], breadth_share=0.0)
    assert {none.draw(rng)[0] for _ in range(50)} == {"concretize"}
    fmt = evol.EvolConfig(input="x", operations=["complicate_input"], input_formats=["JSON data"])
    assert fmt.draw(rng) == ("complicate_input", "JSON data")


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"operations": ["deepen", "shorten"]}, "'operations[1]'"),
        ({"operations": ["deepen"], "breadth_share": 0.5}, "'breadth_share'"),
        ({"operations": []}, "'operations'"),
        ({"evolve_sampling": {"temperature": -1}}, "'evolve_sampling.temperature'"),
        ({"answer_sampling": {"max_tokens": 10, "seed": 3}}, "'answer_sampling.seed'"),
        ({"judge_sampling": {"temprature": 0}}, "'judge_sampling.temprature'"),
        ({"unclear_judgment": "ignore"}, "'unclear_judgment'"),
        ({"rounds": 0}, "'rounds'"),
        ({"roundz": 2}, "'roundz'"),
    ],
)
def test_bad_config_names_the_key(data: dict, key: str) -> None:
    with pytest.raises(GenerateConfigError) as info:
        load_generate_config("evol", {"input": "in.jsonl", **data})
    assert key in str(info.value)


def test_input_is_required_and_records_without_a_prompt_are_rejected_outside_the_sum(tmp_path: Path) -> None:
    with pytest.raises(GenerateConfigError, match="'input' is required"):
        load_generate_config("evol", {})
    path = tmp_path / "mixed.jsonl"
    path.write_text(
        json.dumps({"text": "a sentence", "label": "pos"}) + "\n"
        + json.dumps({"messages": [{"role": "user", "content": "Name a color."}, {"role": "assistant", "content": "Red"}]})
        + "\n"
    )  # fmt: skip
    cfg = load_generate_config("evol", {"input": str(path), "rounds": 1})
    result, _ = run_evol(tmp_path, cfg, plain())
    assert [r["reason"] for r in result.rejects] == ["no_prompt"] and result.rejects[0]["counted"] is False
    assert len(result.records) == 1 and result.card["accounting"]["balanced"]


def test_max_prompts_takes_the_first_n(tmp_path: Path) -> None:
    cfg = config(tmp_path, ["A one.", "B two.", "C three."], max_prompts=2)
    result, _ = run_evol(tmp_path, cfg, plain())
    assert [r.meta["evol_history"][0]["parent"] for r in result.records] == ["A one.", "B two."]


def test_the_command_against_an_openai_compatible_server(tmp_path: Path) -> None:
    """`instructkit generate evol` end to end: its options as config keys, the shared backend flags, the
    summary table; a rerun is answered from the cache."""
    from typer.testing import CliRunner

    from instructkit.cli import app
    from tests.fake_openai_server import FakeServer

    script = plain()
    prompts = write_prompts(tmp_path / "in.jsonl", ["Name three primary colors.", "Give one tip for sleep."])
    out = tmp_path / "out"
    with FakeServer(answer=lambda text: script(Request([{"role": "user", "content": text}]))) as server:
        args = ["generate", "evol", "--in", str(prompts), "--rounds", "2", "--operations", "deepen, breadth",
                "--base-url", server.url, "--api-key", "k", "--model", "fake", "-o", str(out), "-q"]  # fmt: skip
        first = CliRunner().invoke(app, args)
        assert first.exit_code == 0, first.output
        sent = sum(server.counts.values())
        again = CliRunner().invoke(app, args)
        assert again.exit_code == 0, again.output
        assert sum(server.counts.values()) == sent  # all from the cache
    said, said_again = " ".join(first.output.split()), " ".join(again.output.split())  # rich wraps lines
    assert "4 kept" in said and f"{sent} from the cache" in said_again, said_again
    card = json.loads((out / "card.json").read_text())
    assert card["config"]["rounds"] == 2 and card["config"]["operations"] == ["deepen", "breadth"]
    assert card["backend"]["backend"] == "openai" and card["config"]["backend"]["api_key"] == "***"
    histories = sorted(len(r.meta["evol_history"]) for r in read_records(out / "records.jsonl"))
    assert histories == [1, 1, 2, 2]  # each round's evolution is a record, with its lineage


@pytest.mark.slow
@pytest.mark.requires_models
def test_bundled_model_evolves_a_few_prompts(tmp_path: Path) -> None:
    from instructkit.formats import read_records

    prompts = ["Name three primary colors.", "Give one tip for staying healthy."]
    cfg = config(
        tmp_path, prompts, rounds=1,
        evolve_sampling={"temperature": 0.0, "max_tokens": 48},
        answer_sampling={"temperature": 0.0, "max_tokens": 64},
        keep_truncated_answers=True,
    )  # fmt: skip
    result = generate("evol", cfg, tmp_path / "out", show_progress=False)
    card = json.loads((tmp_path / "out" / "card.json").read_text())
    assert card["accounting"]["balanced"] and card["accounting"]["in"] == 2
    assert card["summary"]["sent"] >= 2 and card["backend"]["model"] == "smollm2-135m-instruct"
    records = read_records(tmp_path / "out" / "records.jsonl")
    assert len(records) == len(result.records) == card["accounting"]["kept"]
    for rec in records:
        assert rec.messages[0].content.strip() and rec.messages[1].content.strip()
        assert rec.meta["evol_history"][0]["parent"] in prompts
    assert (tmp_path / "out" / "card.md").read_text().startswith("# Generated data card: evol")


def test_every_config_field_is_documented() -> None:
    import dataclasses

    from instructkit.config import field_docs

    docs = field_docs(evol.EvolConfig)
    assert [f.name for f in dataclasses.fields(evol.EvolConfig) if not docs.get(f.name, "").strip()] == []
