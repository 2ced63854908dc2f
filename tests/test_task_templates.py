"""Instruction templates and answer parsers (tasks/templates.py, tasks/parsers.py) and the commands on them:
every built-in template renders every task's schema example into a chat record whose reference answer its
parser reads back; the sandbox refuses internals, imports and file reads; user YAML templates work through
`instructkit data template`; and hand-written tricky replies parse to the documented values."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from instructkit.cli import app
from instructkit.config import ConfigError
from instructkit.records import Record, RecordError
from instructkit.tasks.parsers import PARSERS, ParserError, get_parser, parse_reply
from instructkit.tasks.records import TASK_SCHEMAS
from instructkit.tasks.templates import (
    DEFAULT_PARSER,
    Template,
    TemplateError,
    TemplateSet,
    TemplateSpec,
    builtin_templates,
    load_templates,
    make_template,
    render,
    render_records,
    task_options,
    task_value,
)

runner = CliRunner()
ENV = {"COLUMNS": "200", "NO_COLOR": "1"}
SOLUTION = "def add(a: int, b: int) -> int:\n    return a + b"


def example(task: str) -> dict:
    row = dict(TASK_SCHEMAS[task].example)
    if task == "code":  # the schema has no reference solution; a code record with one renders an answer
        row["solution"] = SOLUTION
    return row


def invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args], env=ENV)


def user_template(**over) -> Template:
    spec = {"name": "t/user", "task": "classification", "prompt": "{{ text }}", "answer": "{{ label }}"}
    spec.update(over)
    return make_template(TemplateSpec(**spec))


# ---------------------------------------------------------------------------------------------- built-ins
def test_every_task_has_at_least_three_templates_with_distinct_prompts() -> None:
    found = TemplateSet()
    assert set(DEFAULT_PARSER) == set(TASK_SCHEMAS)
    for task in TASK_SCHEMAS:
        tpls = found.for_task(task)
        assert len(tpls) >= 3, task
        assert len({t.prompt for t in tpls}) == len(tpls), task
        assert all(t.name.startswith(f"{task}/") and t.parser in PARSERS for t in tpls)


@pytest.mark.parametrize("tpl", builtin_templates(), ids=lambda t: t.name)
def test_builtin_template_renders_the_schema_example_and_its_parser_reads_the_answer_back(tpl) -> None:
    row = example(tpl.task)
    options = task_options(tpl.task, [row])
    rec = render(tpl, row, options, meta={"source": "in.jsonl", "row": 4})
    assert isinstance(rec, Record) and rec.kind == "chat"
    assert [m.role for m in rec.messages] == ["user", "assistant"]
    prompt, answer = rec.messages[0].content, rec.messages[1].content
    assert prompt.strip() and answer.strip() and "{{" not in prompt
    assert rec.meta["task"] == tpl.task and rec.meta["template"] == tpl.name
    assert rec.meta["source"] == "in.jsonl" and rec.meta["row"] == 4
    assert rec.meta["parser"] == tpl.parser
    assert tpl.parse(answer, options, row) == task_value(tpl.task, row)
    Record.from_dict(rec.to_dict())  # the record written is a valid canonical record


def test_options_appear_before_or_after_the_input_or_not_at_all() -> None:
    row = example("classification")
    where = set()
    for tpl in TemplateSet().for_task("classification"):
        prompt = tpl.render(row, ["NUM", "LOC", "HUM"]).messages[0].content
        at_text, at_opt = prompt.find(row["text"]), prompt.find("LOC")
        where.add("none" if at_opt < 0 else ("before" if at_opt < at_text else "after"))
    assert where == {"before", "after", "none"}


def test_relation_template_marks_the_entities_at_their_offsets() -> None:
    prompt = TemplateSet().get("relation/marked-question").render(example("relation")).messages[0].content
    assert "arrayed <e1>configuration</e1> of antenna <e2>elements</e2>." in prompt


def test_qa_without_answers_renders_unanswerable_and_parses_to_empty() -> None:
    row = {**example("qa"), "answers": []}
    tpl = TemplateSet().get("qa/context-first")
    answer = tpl.render(row).messages[1].content
    assert answer == "unanswerable"
    assert tpl.parse(answer) == ""


def test_code_record_without_solution_is_a_reject_not_a_crash() -> None:
    tpl = TemplateSet().get("code/complete")
    unsolved = {k: v for k, v in TASK_SCHEMAS["code"].example.items() if k != "solution"}
    with pytest.raises(RecordError) as e:
        tpl.render(unsolved)
    assert e.value.reason == "empty_answer"
    assert "return a + b" in tpl.render(TASK_SCHEMAS["code"].example).messages[-1].content
    done = render_records([{**unsolved, "meta": {"source": "h.jsonl", "row": 7}}], [tpl])
    assert done.records == [] and done.rejects[0]["reason"] == "empty_answer"
    assert done.rejects[0]["file"] == "h.jsonl" and done.rejects[0]["index"] == 7


def test_all_picks_templates_by_seed() -> None:
    rows = [example("translation")] * 40
    tpls = TemplateSet().for_task("translation")
    a = [r.meta["template"] for r in render_records(rows, tpls, seed=1).records]
    b = [r.meta["template"] for r in render_records(rows, tpls, seed=1).records]
    c = [r.meta["template"] for r in render_records(rows, tpls, seed=2).records]
    assert a == b and a != c
    assert set(a) == {t.name for t in tpls}


# ----------------------------------------------------------------------------------------------- sandbox
@pytest.mark.parametrize(
    ("source", "why"),
    [
        ("{{ ''.__class__.__mro__ }}", "refused by the sandbox: access to attribute '__class__'"),
        ("{{ ''.__class__.__mro__[1].__subclasses__() }}", "refused by the sandbox"),
        ("{{ text.__class__ }}", "refused by the sandbox"),
        ("{{ options.__class__.__base__.__subclasses__() }}", "refused by the sandbox"),
        ("{% import 'os' as os %}{{ os }}", "cannot include, import or extend files"),
        ("{% include '/etc/passwd' %}", "cannot include, import or extend files"),
        ("{% extends '/etc/passwd' %}", "cannot include, import or extend files"),
        ("{{ open('/etc/passwd').read() }}", "'open' is undefined"),
        ("{{ cycler.__init__.__globals__ }}", "refused by the sandbox: access to attribute '__init__'"),
        ("{{ options.append('x') }}", "refused by the sandbox: access to attribute 'append'"),
        ("{{ 'x' * 100000000 }}", "refused by the sandbox: a repetition"),
    ],
)
def test_the_sandbox_refuses_internals_imports_and_files(source: str, why: str) -> None:
    tpl = user_template(name="bad/one", prompt=source)
    with pytest.raises(TemplateError) as e:
        tpl.render(example("classification"))
    assert str(e.value).startswith("template 'bad/one' (prompt): ") and why in str(e.value)
    assert "\n" not in str(e.value)


def test_an_undefined_variable_names_the_template_and_the_variable() -> None:
    tpl = user_template(name="t/typo", prompt="{{ txt }}")
    with pytest.raises(TemplateError, match=r"t/typo.*'txt' is undefined"):
        tpl.render(example("classification"))


# ----------------------------------------------------------------------------------- unknown names, YAML
def test_unknown_template_and_task_name_the_known_ones() -> None:
    found = TemplateSet()
    with pytest.raises(TemplateError) as e:
        found.get("relation/nope", "relation")
    assert "relation/marked-question" in str(e.value) and "relation/triple" in str(e.value)
    with pytest.raises(TemplateError) as e:
        found.for_task("relaton")
    assert "classification" in str(e.value) and "code" in str(e.value)
    with pytest.raises(ParserError, match="span"):
        get_parser("spam")


def _yaml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "my.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("- {name: a, task: qa, prompt: x, answer: y, parser: spam}", "'[0].parser'"),
        (
            "- {name: a, task: qa, prompt: x, answer: y}\n- {name: b, task: q, prompt: x, answer: y}",
            "'[1].task'",
        ),
        ("- {name: a, task: qa, prompt: x, answer: y, colour: red}", "'[0].colour'"),
        ("- {name: a, task: qa, prompt: '{{ x ', answer: y}", "'[0].prompt'"),
        ("templates:\n  - {name: a, task: qa, prompt: x}", "'templates[0].answer'"),
        (
            "- {name: a, task: qa, prompt: x, answer: y}\n- {name: a, task: qa, prompt: z, answer: y}",
            "'[1].name'",
        ),
        ("- {name: a, task: classification, prompt: x, answer: y, options: 3}", "'[0].options'"),
    ],
)
def test_yaml_errors_name_the_file_and_the_key(tmp_path: Path, text: str, key: str) -> None:
    path = _yaml(tmp_path, text)
    with pytest.raises(ConfigError) as e:
        load_templates(path)
    assert key in str(e.value) and str(path) in str(e.value)


def test_a_user_template_may_not_take_a_builtin_name(tmp_path: Path) -> None:
    path = _yaml(tmp_path, "- {name: qa/extract, task: qa, prompt: x, answer: y}")
    with pytest.raises(ConfigError, match=r"'\[0\].name'.*already taken"):
        TemplateSet([path])


def test_user_yaml_template_through_the_cli(tmp_path: Path) -> None:
    data = tmp_path / "trec.jsonl"
    rows = [
        {"question": "How far is it from Denver to Aspen ?", "coarse": "NUM"},
        {"question": "Who wrote Hamlet ?", "coarse": "HUM"},
        {"question": "", "coarse": "HUM"},
    ]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    yaml_path = _yaml(
        tmp_path,
        "- name: trec/ask\n  task: classification\n  prompt: |\n    Q: {{ text }}\n    Pick: {{ options | join('/') }}\n"
        "  answer: 'Type: {{ label | lower }}'\n",
    )
    out = tmp_path / "out.jsonl"
    result = invoke(
        "data", "template", data, "--task", "classification", "--template", "trec/ask",
        "--templates", yaml_path, "--field", "text=question", "--field", "label=coarse", "-o", out,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "read 3 = kept 2 + rejected 1" in result.output
    written = [json.loads(line) for line in out.read_text().splitlines()]
    assert written[0]["messages"] == [
        {"role": "user", "content": "Q: How far is it from Denver to Aspen ?\nPick: HUM/NUM"},
        {"role": "assistant", "content": "Type: num"},
    ]
    meta = written[1]["meta"]
    assert meta["task"] == "classification" and meta["template"] == "trec/ask" and meta["parser"] == "label"
    assert meta["source"].endswith("trec.jsonl") and meta["row"] == 1 and meta["options"] == ["HUM", "NUM"]
    tpl = TemplateSet([yaml_path]).get("trec/ask")
    assert tpl.parse("Type: num", meta["options"]) == "NUM"
    rejects = [json.loads(line) for line in (tmp_path / "out.rejects.jsonl").read_text().splitlines()]
    assert [(r["reason"], r["line"], r["field"]) for r in rejects] == [("empty_content", 3, "text")]
    listed = invoke("templates", "list", "--task", "classification", "--templates", yaml_path)
    assert listed.exit_code == 0 and "trec/ask" in listed.output and "qa/extract" not in listed.output
    shown = invoke("templates", "show", "trec/ask", "--templates", yaml_path)
    assert shown.exit_code == 0 and "Q: How far is it from Denver to Aspen ?" in shown.output
    assert "variables: text, label, text_pair, options" in shown.output


def test_cli_all_templates_and_unknown_names(tmp_path: Path) -> None:
    data = tmp_path / "rel.jsonl"
    data.write_text(
        json.dumps(
            {"text": "The <e1>engine</e1> of the <e2>car</e2> failed.", "relation": "Component-Whole(e1,e2)"}
        )
        + "\n"
    )
    out = tmp_path / "out.jsonl"
    ok = invoke("data", "template", data, "--task", "relation", "--seed", "5", "-o", out)
    assert ok.exit_code == 0 and "read 1 = kept 1 + rejected 0" in ok.output
    assert json.loads(out.read_text())["meta"]["template"].startswith("relation/")
    bad = invoke("data", "template", data, "--task", "relaton", "-o", out)
    assert bad.exit_code == 1 and "unknown task 'relaton'" in bad.output and "summarization" in bad.output
    bad = invoke("data", "template", data, "--task", "relation", "--template", "qa/extract", "-o", out)
    assert bad.exit_code == 1 and "relation/triple" in bad.output
    bad = invoke("templates", "show", "nope")
    assert bad.exit_code == 1 and "code/complete" in bad.output


# --------------------------------------------------------------------------------------------- parsers
LABELS = ["positive", "negative", "very positive", "not_entailment"]


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("POSITIVE", "positive"),
        ("Answer: Negative.", "negative"),
        ("I think the sentiment is very positive!", "very positive"),
        ("not entailment", "not_entailment"),
        ("  negative\n", "negative"),
        ("no idea", None),
        ("", None),
        ("positively", None),
    ],
)
def test_label_parser(reply: str, expected: str | None) -> None:
    assert parse_reply("label", reply, LABELS) == expected


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("PER: Maria Lopez; ORG: Nordwind Energy", [("PER", "Maria Lopez"), ("ORG", "Nordwind Energy")]),
        ("- per: Maria Lopez\n- LOC: Oslo.", [("PER", "Maria Lopez"), ("LOC", "Oslo")]),
        ("None.", []),
        ("", []),
        ("Maria Lopez; FOO: bar; ORG: X", [("ORG", "X")]),
    ],
)
def test_entities_parser(reply: str, expected: list) -> None:
    assert parse_reply("entities", reply, ["PER", "ORG", "LOC"]) == expected


REL = ["Component-Whole(e1,e2)", "Component-Whole(e2,e1)", "Cause-Effect(e1,e2)", "Other"]
HEAD_TAIL = {"head": "engine", "tail": "car"}


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("Component-Whole(e1,e2)", "Component-Whole(e1,e2)"),
        ("component whole (e2, e1).", "Component-Whole(e2,e1)"),
        ("Component-Whole", "Component-Whole(e1,e2)"),
        ("engine | Component-Whole(e1,e2) | car", "Component-Whole(e1,e2)"),
        # the entities named in swapped order: the stated direction flips
        ("car | Component-Whole(e1,e2) | engine", "Component-Whole(e2,e1)"),
        ("The car is the whole and the engine a component: Component-Whole", "Component-Whole(e2,e1)"),
        ("other", "Other"),
        ("Other(e2,e1)", "Other"),
        ("Cause-Effect(e2,e1)", "Cause-Effect(e2,e1)"),  # no such option: the name with its direction
        ("I cannot tell", None),
        ("", None),
    ],
)
def test_relation_parser(reply: str, expected: str | None) -> None:
    assert parse_reply("relation", reply, REL, HEAD_TAIL) == expected


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("  France \n", "France"),
        ('Answer: "the Normans"', "the Normans"),
        ("Unanswerable.", ""),
        ("There is no answer", ""),
        ("", ""),
        ("Paris", "Paris"),  # not in the context: returned as it is, scoring counts it wrong
    ],
)
def test_span_parser(reply: str, expected: str) -> None:
    row = example("qa")
    assert parse_reply("span", reply, None, row) == expected


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("Translation: The house is wonderful.", "The house is wonderful."),
        ("English translation:  The house is wonderful.", "The house is wonderful."),
        ("Summary: A tram line.", "A tram line."),
        ("TL;DR: A tram line.", "A tram line."),
        ("The summary is short.", "The summary is short."),
        ("", ""),
    ],
)
def test_text_parser(reply: str, expected: str) -> None:
    assert parse_reply("text", reply) == expected


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("Here you go:\n```python\ndef f():\n    return 1\n```\nDone.", "def f():\n    return 1"),
        ("```\nx = 1\n```", "x = 1"),
        ("```python\ndef f():\n    return 2", "def f():\n    return 2"),  # an unclosed fence runs to the end
        ("def f():\n    return 3\n", "def f():\n    return 3"),
        ("", ""),
    ],
)
def test_code_parser(reply: str, expected: str) -> None:
    assert parse_reply("code", reply) == expected


def test_dialogue_parser_strips_only() -> None:
    assert parse_reply("reply", "  Sure: 100 °C.\n") == "Sure: 100 °C."


def test_cli_reads_conll_for_ner_and_refuses_a_non_row_output(tmp_path: Path) -> None:
    data = tmp_path / "n.conll"
    data.write_text("Maria B-PER\nLopez I-PER\njoined O\nNordwind B-ORG\nEnergy I-ORG\n\nIt O\nrained O\n")
    out = tmp_path / "ner.jsonl"
    ok = invoke("data", "template", data, "--task", "ner", "--template", "ner/typed-list", "-o", out)
    assert ok.exit_code == 0 and "read 2 = kept 2 + rejected 0" in ok.output
    answers = [json.loads(line)["messages"][1]["content"] for line in out.read_text().splitlines()]
    assert answers == ["PER: Maria Lopez; ORG: Nordwind Energy", "none"]
    assert (tmp_path / "ner.rejects.jsonl").read_text() == ""
    bad = invoke("data", "template", data, "--task", "ner", "-o", tmp_path / "ner.conll")
    assert bad.exit_code == 1 and "--output" in bad.output and not (tmp_path / "ner.conll").exists()
    mine = tmp_path / "mine.jsonl"
    mine.write_text('{"keep": "me"}\n')
    bad = invoke("data", "template", data, "--task", "ner", "-o", out, "--rejects", mine)
    assert bad.exit_code == 1 and "not a rejects file" in bad.output
    assert mine.read_text() == '{"keep": "me"}\n'


def test_yaml_mapping_form_with_fixed_options(tmp_path: Path) -> None:
    path = _yaml(
        tmp_path,
        "templates:\n  - name: sst/yes-no\n    task: classification\n    options: ['yes', 'no']\n"
        "    prompt: 'Positive? {{ options | join(\" or \") }}: {{ text }}'\n"
        "    answer: \"{{ 'yes' if label == '1' else 'no' }}\"\n",
    )
    (tpl,) = load_templates(path)
    assert tpl.options == ("yes", "no") and tpl.parser == "label" and not tpl.builtin
    rec = tpl.render({"text": "Great film.", "label": "1"}, options=["0", "1"])
    assert rec.messages[0].content == "Positive? yes or no: Great film."
    assert rec.messages[1].content == "yes" and rec.meta["options"] == ["yes", "no"]
    assert tpl.parse("Yes, it is.", ["0", "1"]) == "yes"  # the template's own options win
