"""Super-NaturalInstructions task files rendered as instruction records, with the paper's encodings.

A Super-NaturalInstructions task (``tasks/taskNNN_name.json`` in allenai/natural-instructions) is one
JSON object: a ``Definition`` (a list holding the instruction; older files hold a plain string), a few
``Positive Examples`` and ``Negative Examples`` (``{input, output, explanation}``), the ``Instances``
(``{id, input, output: [str, ...]}``) and descriptive keys (``Categories``, ``Input_language``, ...).
Unlike a labeled dataset, the task carries its own instruction, so no template is needed: each instance
becomes a chat record whose user turn is the encoding the paper trained Tk-Instruct on, and whose
assistant turn is the instance's first output. All outputs stay in ``meta.references``: the paper scores
ROUGE-L against the best of them, and a later scorer needs them.

The encodings follow the Tk-Instruct collator (``src/ni_collator.py`` of yizhongw/Tk-Instruct) character
for character, since a model tuned on one wording and scored on another measures the wording:

* ``definition``: ``"Definition: " + Definition[0].strip()``, a ``.`` added when it does not end in
  punctuation, then ``"\\n\\n"``; then ``"Now complete the following example -\\nInput: " + input.strip()``
  (``.`` added likewise) ``+ "\\nOutput: "``.
* ``definition+2pos``: the same, with the first two positive examples between the definition and the
  instance, each ``" Positive Example {i} -\\nInput: {input}.\\n Output: {output}.\\n\\n"`` (the leading
  spaces are the collator's; a ``.`` only where the text lacks end punctuation; no explanation, as in
  the paper's "pos + def" encoding). A task with fewer than two positive examples shows those it has.

What differs from the collator, on purpose: the answer is the first output, not a random one (a data
file should not depend on a seed the user never gave), and the prompt is not cut at a token budget
(there is no tokenizer here; the training config's ``max_length`` truncates later).

A malformed task file (not JSON, a missing or mistyped top-level key, a bad positive example) is one
:class:`TaskFileError` naming the file and the key; a malformed instance is a reject naming the instance
index and field, so ``n_in == len(records) + len(rejects)``.
"""

from __future__ import annotations

import json
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from instructkit.formats import resolve_path
from instructkit.records import Record, RecordError

ENCODINGS: dict[str, int] = {"definition": 0, "definition+2pos": 2}
"""The encodings and how many positive examples each shows."""

DATASET = "super-natural-instructions"
"""``meta.dataset`` of a record rendered from a task file."""


class TaskFileError(ValueError):
    """A Super-NaturalInstructions task file cannot be used; the message is one line naming the file
    and the key (``Positive Examples[1].output``)."""


@dataclass
class SniTask:
    """A task file read and checked: its ``name`` (the file's stem), the ``definition`` (the first of
    the list), the ``positive`` and ``negative`` examples, the raw ``instances`` (checked one by one
    when rendered) and the descriptive keys (``categories``, languages) kept for the records' meta."""

    name: str
    path: str
    definition: str
    positive: list[dict[str, str]]
    negative: list[dict[str, str]]
    instances: list[Any]
    categories: list[str] = field(default_factory=list)
    input_language: list[str] = field(default_factory=list)
    output_language: list[str] = field(default_factory=list)


@dataclass
class SniRead:
    """What :func:`read_sni_records` made: chat ``records``, ``rejects`` (``reason``, ``message``,
    ``field``, ``file``, ``index``, ``raw``), ``n_in`` (instances read; ``n_in == len(records) +
    len(rejects)``), the ``task`` and ``positive_used``, the positive examples each prompt shows."""

    task: SniTask
    encoding: str
    records: list[Record] = field(default_factory=list)
    rejects: list[dict[str, Any]] = field(default_factory=list)
    n_in: int = 0
    positive_used: int = 0


def _punct(text: str) -> str:
    """``text`` with a ``.`` appended unless it ends in punctuation (the collator's rule)."""
    return text if text and text[-1] in string.punctuation else text + "."


def _strings(path: str, key: str, value: Any, *, required: bool = True) -> list[str]:
    if value is None and not required:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise TaskFileError(f"{path}: '{key}' must be a list of strings, got {_kind(value)}")
    return list(value)


def _kind(value: Any) -> str:
    if isinstance(value, list):
        bad = next((v for v in value if not isinstance(v, str)), None)
        return f"a list holding a {type(bad).__name__}" if bad is not None or not value else "a list"
    return "null" if value is None else f"a {type(value).__name__}"


def _examples(path: str, key: str, value: Any, required: bool) -> list[dict[str, str]]:
    if value is None:
        if required:
            raise TaskFileError(f"{path}: '{key}' is missing (a list of {{input, output, explanation}})")
        return []
    if not isinstance(value, list):
        raise TaskFileError(f"{path}: '{key}' must be a list of examples, got {_kind(value)}")
    out = []
    for i, ex in enumerate(value):
        if not isinstance(ex, dict):
            raise TaskFileError(f"{path}: '{key}[{i}]' must be an object, got {_kind(ex)}")
        for name in ("input", "output"):
            if not isinstance(ex.get(name), str):
                got = "missing" if name not in ex else f"{_kind(ex[name])}, not a string"
                raise TaskFileError(f"{path}: '{key}[{i}].{name}' is {got}")
        out.append({k: v for k, v in ex.items() if isinstance(v, str)})
    return out


def read_sni_task(path: str | Path) -> SniTask:
    """Read and check one task file; any problem is a :class:`TaskFileError` naming the file and key.
    A missing file is a FileNotFoundError."""
    p = resolve_path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no such file" if not p.exists() else f"{p}: not a file")
    shown = str(path)
    try:
        data = json.loads(p.read_bytes().decode("utf-8"))  # NaN (some files' URL) is accepted
    except UnicodeDecodeError as e:
        raise TaskFileError(f"{shown}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except json.JSONDecodeError as e:
        raise TaskFileError(f"{shown}:{e.lineno}:{e.colno}: not valid JSON ({e.msg})") from None
    if not isinstance(data, dict):
        raise TaskFileError(f"{shown}: a task file holds one JSON object, got {_kind(data)}")
    if "Definition" not in data:
        raise TaskFileError(f"{shown}: 'Definition' is missing")
    definition = data["Definition"]
    if isinstance(definition, str):  # the older layout
        definition = [definition]
    defs = _strings(shown, "Definition", definition)
    if not defs or not defs[0].strip():
        raise TaskFileError(f"{shown}: 'Definition' is empty")
    positive = _examples(shown, "Positive Examples", data.get("Positive Examples"), required=True)
    negative = _examples(shown, "Negative Examples", data.get("Negative Examples"), required=False)
    if "Instances" not in data:
        raise TaskFileError(f"{shown}: 'Instances' is missing")
    if not isinstance(data["Instances"], list):
        raise TaskFileError(f"{shown}: 'Instances' must be a list, got {_kind(data['Instances'])}")
    return SniTask(
        name=p.name.removesuffix(".json"),
        path=shown,
        definition=defs[0],
        positive=positive,
        negative=negative,
        instances=data["Instances"],
        categories=_strings(shown, "Categories", data.get("Categories"), required=False),
        input_language=_strings(shown, "Input_language", data.get("Input_language"), required=False),
        output_language=_strings(shown, "Output_language", data.get("Output_language"), required=False),
    )


def check_encoding(encoding: str) -> str:
    """``encoding`` if it is one of :data:`ENCODINGS`; else a ValueError listing them."""
    if encoding not in ENCODINGS:
        raise ValueError(f"unknown encoding {encoding!r} (known: {', '.join(ENCODINGS)})")
    return encoding


def encode_prompt(task: SniTask, instance_input: str, encoding: str) -> str:
    """The prompt of one instance under ``encoding`` (see the module docstring for the exact text)."""
    n_pos = ENCODINGS[check_encoding(encoding)]
    definition = _punct("Definition: " + task.definition.strip()) + "\n\n"
    examples = []
    for i, ex in enumerate(task.positive[:n_pos], start=1):
        text = _punct(f" Positive Example {i} -\nInput: {ex['input'].strip()}") + "\n"
        text = _punct(text + f" Output: {ex['output'].strip()}") + "\n"
        examples.append(text + "\n")
    instance = _punct(f"Now complete the following example -\nInput: {instance_input.strip()}") + "\nOutput: "
    return definition + "".join(examples) + instance


def _instance(raw: Any) -> tuple[str | None, str, list[str]]:
    """``(id, input, outputs)`` of one instance, or a RecordError naming the field."""
    if not isinstance(raw, dict):
        raise RecordError("wrong_type", f"an instance must be an object, got {_kind(raw)}")
    iid = raw.get("id")
    if iid is not None and not isinstance(iid, str):
        raise RecordError("wrong_type", f"'id' must be a string, got {_kind(iid)}", field="id")
    text = raw.get("input")
    if text is None:
        raise RecordError("missing_field", "the instance has no 'input'", field="input")
    if not isinstance(text, str):
        raise RecordError("wrong_type", f"'input' must be a string, got {_kind(text)}", field="input")
    if not text.strip():
        raise RecordError("empty_content", "'input' is empty", field="input")
    outputs = raw.get("output")
    if outputs is None:
        raise RecordError("missing_field", "the instance has no 'output'", field="output")
    if isinstance(outputs, str):
        outputs = [outputs]
    if not isinstance(outputs, list) or not outputs:
        raise RecordError(
            "wrong_type",
            f"'output' must be a non-empty list of strings, got {_kind(outputs)}",
            field="output",
        )
    for i, o in enumerate(outputs):
        if not isinstance(o, str):
            raise RecordError(
                "wrong_type", f"'output[{i}]' must be a string, got {_kind(o)}", field=f"output[{i}]"
            )
    if not outputs[0].strip():
        raise RecordError("empty_content", "the first output is empty", field="output[0]")
    return iid, text, list(outputs)


def render_sni(task: SniTask, encoding: str, *, meta: dict[str, Any] | None = None) -> SniRead:
    """Every instance of ``task`` as a chat record under ``encoding``: user = :func:`encode_prompt`,
    assistant = the first output, stripped. ``meta`` holds ``task`` (the task name), ``instance_id``,
    ``references`` (all outputs), ``encoding``, ``positive_examples`` (how many the prompt shows),
    ``categories``, ``source`` (the file) and ``row`` (the instance's index), plus the given ``meta``."""
    check_encoding(encoding)
    out = SniRead(task=task, encoding=encoding, positive_used=min(ENCODINGS[encoding], len(task.positive)))
    for i, raw in enumerate(task.instances):
        try:
            iid, text, outputs = _instance(raw)
            rec = Record.chat(
                [
                    {"role": "user", "content": encode_prompt(task, text, encoding)},
                    {"role": "assistant", "content": outputs[0].strip()},
                ],
                **(meta or {}),
                dataset=DATASET,
                task=task.name,
                instance_id=iid,
                references=outputs,
                encoding=encoding,
                positive_examples=out.positive_used,
                categories=list(task.categories),
                source=task.path,
                row=i,
            )
        except RecordError as e:
            entry = e.located(file=task.path, index=i).to_dict()
            entry["raw"] = raw
            out.rejects.append(entry)
            out.n_in += 1
            continue
        out.records.append(rec)
        out.n_in += 1
    return out


def read_sni_records(path: str | Path, encoding: str = "definition") -> SniRead:
    """Read the task file at ``path`` and render every instance under ``encoding``
    (:func:`read_sni_task`, then :func:`render_sni`)."""
    check_encoding(encoding)
    return render_sni(read_sni_task(path), encoding)


__all__ = [
    "DATASET",
    "ENCODINGS",
    "SniRead",
    "SniTask",
    "TaskFileError",
    "check_encoding",
    "encode_prompt",
    "read_sni_records",
    "read_sni_task",
    "render_sni",
]
