"""Instruction templates: a task record (a labeled NLP example) rendered as an instruction record.

As T0's and FLAN's, each task has several templates that differ in wording and in where the instruction
and the options go (before or after the input, listed or not), so a model tuned on them follows the task
rather than one phrasing. A template is data, not code: a name (``relation/marked-question``), the task it
serves, a Jinja prompt, a Jinja reference answer, the name of the answer parser that reads a model's reply
to this prompt back into the task's value (``tasks/parsers.py``; scoring uses the same one) and, optionally,
a fixed option set. The built-in ones are in ``builtin_templates.py``; users add their own from YAML
(:func:`load_templates`), validated with the config loader so an error names the key by dotted path.

Templates run in Jinja's immutable sandbox with ``StrictUndefined``: no attribute starting with ``_``
(``''.__class__``), no loader (so no ``include``/``import`` of files), no globals but the few listed in
:data:`CONTEXT_DOC`, no list/dict mutation, bounded ``range`` and repetition. A user's YAML is therefore as
safe to render as a data file; whatever the sandbox refuses is a :class:`TemplateError` naming the
template. (The sandbox keeps a template from Python's internals and the file system; it is no limit on
time or memory beyond those bounds.) ``trim_blocks`` and ``lstrip_blocks`` are on, as in most Jinja
prompt templates: a line holding only a ``{% ... %}`` tag leaves no blank line behind; the rendered
prompt and answer are stripped of surrounding white space.

Each render sees the record's fields (absent optional ones as ``none``), ``options`` (the option set:
the template's own, else the one given at render time, which the CLI takes from the data: the sorted
labels, relations or entity types), and per task a few derived values (``entities`` and ``entity_answer``
for NER, ``marked_text`` for relations, ``answer`` for QA, ``transcript`` and ``reply`` for dialogue).
The result is a chat record (user = prompt, assistant = answer) whose ``meta`` keeps the task, the
template, its parser and options, and where the row came from.
"""

from __future__ import annotations

import dataclasses
import operator
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

from instructkit.config import ConfigError, load, read_yaml_value
from instructkit.records import Record, RecordError
from instructkit.tasks.parsers import PARSERS, parse_reply, parser_names
from instructkit.tasks.records import TASK_SCHEMAS, task_names


class TemplateError(ValueError):
    """A template cannot be used: unknown name or task, a syntax error, or a render the sandbox refused or
    that met an undefined value. The message is one line naming the template."""


DEFAULT_PARSER: dict[str, str] = {
    "classification": "label",
    "ner": "entities",
    "relation": "relation",
    "qa": "span",
    "translation": "text",
    "summarization": "text",
    "dialogue": "reply",
    "code": "code",
}
"""The parser a template of each task uses when it names none."""

OPTION_TASKS = ("classification", "ner", "relation")
"""Tasks whose prompts may offer options (labels, entity types, relations) taken from the data."""

NO_ANSWER = "unanswerable"
"""The reference answer of a QA record with no answer (the ``span`` parser reads it back as ``""``)."""

CONTEXT_DOC: dict[str, str] = {
    "options": "the option set (template's own, else from the data), a list; empty when the task has none",
    "entities": "ner: the entities as a list of {type, text} in sentence order",
    "entity_answer": "ner: the entities as 'TYPE: text; TYPE: text', or 'none'",
    "sentence": "ner: the tokens joined by spaces",
    "entity_types": "ner: the option set again (entity types), for readability",
    "marked_text": "relation: the text with <e1>head</e1> and <e2>tail</e2> marked at their offsets",
    "relation_name": "relation: the relation without its direction ('Component-Whole')",
    "answer": "qa: the first answer, or 'unanswerable' when there is none",
    "transcript": "dialogue: the turns before the last reply, one 'User: ...'/'Assistant: ...' line each",
    "reply": "dialogue: the last assistant turn (the reference answer)",
    "last_user": "dialogue: the last user turn before the reply",
    "source_language": "translation: source_lang as a language name ('de' -> 'German'; other values as they are)",
    "target_language": "translation: target_lang as a language name",
    "solution": "code: the record's solution when it has one, else none (no instruction record then)",
}
"""The derived values a template sees besides the record's own fields (``instructkit templates show``)."""


LANGUAGES: dict[str, str] = {
    "ar": "Arabic", "cs": "Czech", "de": "German", "en": "English", "es": "Spanish", "et": "Estonian",
    "fi": "Finnish", "fr": "French", "gu": "Gujarati", "hi": "Hindi", "it": "Italian", "ja": "Japanese",
    "kk": "Kazakh", "ko": "Korean", "lt": "Lithuanian", "lv": "Latvian", "nl": "Dutch", "pl": "Polish",
    "pt": "Portuguese", "ro": "Romanian", "ru": "Russian", "tr": "Turkish", "uk": "Ukrainian", "zh": "Chinese",
}  # fmt: skip
"""Language codes (WMT's) a translation template can show as names."""


@dataclasses.dataclass
class TemplateSpec:
    """One template as a user writes it in YAML."""

    name: str
    """Unique name, by convention ``TASK/what-it-does`` (``relation/marked-question``)."""
    task: str
    """The task it renders (``instructkit templates list`` shows them)."""
    prompt: str
    """Jinja template of the user turn."""
    answer: str
    """Jinja template of the reference answer (the assistant turn); the parser must read it back."""
    parser: str | None = None
    """Answer parser that reads a reply to this prompt; the task's default when not given."""
    options: list[str] | None = None
    """A fixed option set; when not given, the options come from the data at render time."""
    description: str = ""
    """One line on what sets this template apart."""


_REQUIRED = tuple(
    f.name for f in dataclasses.fields(TemplateSpec) if f.default is dataclasses.MISSING
)  # name, task, prompt, answer


@dataclasses.dataclass(frozen=True)
class Template:
    """A validated, compiled template (built with :func:`make_template`)."""

    name: str
    task: str
    prompt: str
    answer: str
    parser: str
    options: tuple[str, ...] | None = None
    description: str = ""
    builtin: bool = False

    def render(
        self, row: dict[str, Any], options: Sequence[str] | None = None, meta: dict[str, Any] | None = None
    ) -> Record:
        """``row`` (a task record) as a chat record; see :func:`render`."""
        return render(self, row, options, meta)

    def render_text(self, row: dict[str, Any], options: Sequence[str] | None = None) -> tuple[str, str]:
        """The rendered ``(prompt, answer)``, both stripped."""
        ctx = task_context(self.task, row, self.options if self.options is not None else options)
        return _run(self, "prompt", ctx), _run(self, "answer", ctx)

    def parse(self, reply: str, options: Sequence[str] | None = None, record: dict | None = None) -> Any:
        """Read a model's reply to this template's prompt with its parser."""
        opts = list(self.options) if self.options is not None else options
        return parse_reply(self.parser, reply, opts, record)


# ------------------------------------------------------------------------------------------------ sandbox
_MAX_REPEAT = 1_000_000


class _Sandbox(ImmutableSandboxedEnvironment):
    """The immutable sandbox, with ``*`` and ``**`` bounded (``'x' * 10**9`` would fill memory)."""

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Any, operator_name: str, left: Any, right: Any) -> Any:
        if operator_name == "**":
            if isinstance(right, int | float) and abs(right) > 64:
                raise jinja2.exceptions.SecurityError("an exponent above 64 is refused")
            return operator.pow(left, right)
        for seq, n in ((left, right), (right, left)):
            if isinstance(seq, str | list | tuple) and isinstance(n, int) and len(seq) * n > _MAX_REPEAT:
                raise jinja2.exceptions.SecurityError(f"a repetition longer than {_MAX_REPEAT} is refused")
        return operator.mul(left, right)


_ENV = _Sandbox(
    undefined=jinja2.StrictUndefined,
    autoescape=False,
    keep_trailing_newline=False,
    trim_blocks=True,
    lstrip_blocks=True,
    loader=None,
)
_ENV.globals.clear()  # no range/dict/lipsum/cycler/joiner/namespace: a template needs only its data
_COMPILED: dict[str, jinja2.Template] = {}


def _compiled(source: str) -> jinja2.Template:
    if source not in _COMPILED:
        _COMPILED[source] = _ENV.from_string(source)
    return _COMPILED[source]


def _run(template: Template, part: str, ctx: dict[str, Any]) -> str:
    source = getattr(template, part)
    try:
        return _compiled(source).render(ctx).strip()
    except jinja2.exceptions.SecurityError as e:
        raise TemplateError(f"template {template.name!r} ({part}): refused by the sandbox: {e}") from None
    except jinja2.exceptions.UndefinedError as e:
        raise TemplateError(
            f"template {template.name!r} ({part}): {e} (a template sees the record's fields, the options and "
            "the task's derived values; `instructkit templates show NAME` lists them)"
        ) from None
    except jinja2.exceptions.TemplateError as e:
        raise TemplateError(f"template {template.name!r} ({part}): {type(e).__name__}: {e}") from None
    except (TypeError, ValueError, AttributeError, LookupError, ArithmeticError) as e:
        if isinstance(e, TypeError) and "no loader" in str(
            e
        ):  # `{% include %}`, `{% import %}`, `{% extends %}`
            raise TemplateError(
                f"template {template.name!r} ({part}): refused by the sandbox: a template cannot include, "
                "import or extend files"
            ) from None
        # a bad filter argument, an index out of range, a division by zero
        raise TemplateError(f"template {template.name!r} ({part}): {type(e).__name__}: {e}") from None


# ------------------------------------------------------------------------------------------ task context
def spans(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """``(type, start, end)`` token spans of BIO/IOBES tags (an ``I-`` that does not continue its type
    starts an entity)."""
    out: list[tuple[str, int, int]] = []
    kind: str | None = None
    start = 0
    for i, tag in enumerate([*tags, "O"]):
        prefix, _, t = tag.partition("-")
        continues = kind is not None and t == kind and prefix in ("I", "E")
        if kind is not None and not continues:
            out.append((kind, start, i))
            kind = None
        if prefix in ("B", "S") or (prefix in ("I", "E") and kind is None):
            kind, start = t, i
        if prefix in ("E", "S") and kind is not None:
            out.append((kind, start, i + 1))
            kind = None
    return out


def entities_of(tokens: Sequence[str], tags: Sequence[str]) -> list[tuple[str, str]]:
    """``[(type, text)]`` of a tagged sentence, in order (the ``entities`` parser's value)."""
    return [(k, " ".join(tokens[s:e])) for k, s, e in spans(tags)]


def entity_answer(entities: Sequence[tuple[str, str]]) -> str:
    """The NER answer format the ``entities`` parser reads: ``PER: Maria Lopez; ORG: Nordwind`` or ``none``."""
    return "; ".join(f"{k}: {t}" for k, t in entities) or "none"


def mark_entities(text: str, hs: int, he: int, ts: int, te: int) -> str:
    """``text`` with ``<e1>``…``</e1>`` around the head span and ``<e2>``…``</e2>`` around the tail span."""
    marks = sorted(
        [(hs, "<e1>"), (he, "</e1>"), (ts, "<e2>"), (te, "</e2>")], key=lambda m: (m[0], m[1][1] != "/")
    )
    out, at = [], 0
    for pos, mark in marks:
        out.append(text[at:pos])
        out.append(mark)
        at = pos
    out.append(text[at:])
    return "".join(out)


def _turns(messages: Any) -> list[dict[str, str]]:
    out = []
    for m in messages or []:
        if isinstance(m, dict):
            out.append({"role": str(m.get("role")), "content": str(m.get("content"))})
        else:
            out.append({"role": str(m.role), "content": str(m.content)})
    return out


def task_options(task: str, rows: Iterable[dict[str, Any]]) -> list[str]:
    """The option set of ``task`` in ``rows``: sorted labels (classification), relations (relation) or
    entity types (NER); empty for the other tasks."""
    found: set[str] = set()
    for row in rows:
        if task == "classification" and row.get("label") is not None:
            found.add(str(row["label"]))
        elif task == "relation" and row.get("relation") is not None:
            found.add(str(row["relation"]))
        elif task == "ner":
            found.update(k for k, _, _ in spans(row.get("tags") or []))
    return sorted(found)


def task_value(task: str, row: dict[str, Any]) -> Any:
    """The value a parser should read back from the reference answer of ``row`` (for checks and
    scoring): the label, the entity list, the relation, the first answer (``""`` for none), the target,
    the summary, the last reply, the solution."""
    if task == "classification":
        return str(row["label"])
    if task == "ner":
        return entities_of(row["tokens"], row["tags"])
    if task == "relation":
        return str(row["relation"])
    if task == "qa":
        answers = row.get("answers") or []
        return str(answers[0]) if answers else ""
    if task == "translation":
        return str(row["target"])
    if task == "summarization":
        return str(row["summary"])
    if task == "dialogue":
        turns = _turns(row.get("messages"))
        return turns[-1]["content"] if turns else ""
    if task == "code":
        return str(row.get("solution") or row.get("canonical_solution") or "")
    raise TemplateError(unknown_task(task))


def context_names(task: str) -> list[str]:
    """The names a template of ``task`` can use: the record's fields, ``options`` and the task's derived
    values (:data:`CONTEXT_DOC`)."""
    derived = [k for k, doc in CONTEXT_DOC.items() if k == "options" or doc.startswith(f"{task}:")]
    return [*_schema_fields(task), *derived]


def task_context(task: str, row: dict[str, Any], options: Sequence[str] | None = None) -> dict[str, Any]:
    """What a template of ``task`` sees for ``row``: its fields, ``options`` and the derived values."""
    schema = TASK_SCHEMAS.get(task)
    if schema is None:
        raise TemplateError(unknown_task(task))
    ctx: dict[str, Any] = {k: None for k in _schema_fields(task)}
    ctx.update({k: v for k, v in row.items() if k != "meta"})
    ctx["options"] = [str(o) for o in options] if options else []
    if task == "ner":
        ents = entities_of(row["tokens"], row["tags"])
        ctx["entities"] = [{"type": k, "text": t} for k, t in ents]
        ctx["entity_answer"] = entity_answer(ents)
        ctx["sentence"] = " ".join(row["tokens"])
        ctx["entity_types"] = ctx["options"]
    elif task == "relation":
        from instructkit.tasks.parsers import split_direction

        text = str(row["text"])
        offsets = [row.get(k) for k in ("head_start", "head_end", "tail_start", "tail_end")]
        if all(isinstance(o, int) for o in offsets):
            ctx["marked_text"] = mark_entities(text, *offsets)  # type: ignore[arg-type]
        else:
            ctx["marked_text"] = text
        ctx["relation_name"] = split_direction(str(row["relation"]))[0]
    elif task == "qa":
        answers = row.get("answers") or []
        ctx["answer"] = str(answers[0]) if answers else NO_ANSWER
    elif task == "dialogue":
        turns = _turns(row.get("messages"))
        last = max((i for i, t in enumerate(turns) if t["role"] == "assistant"), default=len(turns))
        history = turns[:last]
        ctx["messages"] = turns
        ctx["history"] = history
        ctx["reply"] = turns[last]["content"] if last < len(turns) else ""
        ctx["last_user"] = next((t["content"] for t in reversed(history) if t["role"] == "user"), "")
        ctx["transcript"] = "\n".join(
            f"{t['role'].capitalize()}: {t['content']}" for t in history if t["role"] != "system"
        )
    elif task == "translation":
        for side in ("source", "target"):
            code = str(row[f"{side}_lang"])
            ctx[f"{side}_language"] = LANGUAGES.get(code.casefold(), code)
    elif task == "code":
        ctx["solution"] = row.get("solution") or row.get("canonical_solution") or None
    return ctx


_OPTIONAL_FIELDS: dict[str, tuple[str, ...]] = {"code": ("solution",)}
"""Fields a template may name beyond the schema's: a code record's reference solution, when it has one."""


def _schema_fields(task: str) -> list[str]:
    """The fields a template of ``task`` may name: the schema example's and the optional ones (absent
    ones render as ``none``, so ``{% if text_pair %}`` works under StrictUndefined)."""
    schema = TASK_SCHEMAS[task]
    return [*dict.fromkeys([*schema.all_fields, *_OPTIONAL_FIELDS.get(task, ())])]


# ------------------------------------------------------------------------------------------------ render
def render(
    template: Template,
    row: dict[str, Any],
    options: Sequence[str] | None = None,
    meta: dict[str, Any] | None = None,
) -> Record:
    """``row`` rendered with ``template`` as a chat record: user = prompt, assistant = answer.

    ``meta`` (the row's source, line, id) is kept, with ``task``, ``template``, ``parser``, the
    ``options`` the prompt offered and what scoring needs (:func:`scoring_meta`) added. A row the template renders to an empty prompt or answer (a code
    record without a solution) is a :class:`RecordError` (``empty_prompt``/``empty_answer``), a reject of
    that row; a template the sandbox refuses is a :class:`TemplateError`.
    """
    opts = list(template.options) if template.options is not None else list(options or [])
    prompt, answer = template.render_text(row, opts)
    if not prompt:
        raise RecordError("empty_prompt", f"template {template.name!r} renders an empty prompt")
    if not answer:
        raise RecordError(
            "empty_answer",
            f"template {template.name!r} renders an empty answer (the record has no reference answer)",
        )
    info = dict(meta or {})
    info.update({"task": template.task, "template": template.name, "parser": template.parser})
    if opts:
        info["options"] = opts
    info.update(scoring_meta(template.task, row))
    return Record.chat(
        [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}], **info
    )


def scoring_meta(task: str, row: dict[str, Any]) -> dict[str, Any]:
    """What scoring needs beyond the reference answer, kept in the rendered record's ``meta``: every
    answer of a QA record with more than one (``answers``; a reply matching any is right), and a code
    record's ``problem`` (its ``prompt``, ``tests`` and ``entry_point``: what pass@1 runs a reply with)."""
    if task == "qa":
        answers = [str(a) for a in row.get("answers") or []]
        return {"answers": answers} if len(answers) > 1 else {}
    if task == "code" and row.get("tests") and row.get("entry_point"):
        keys = ("prompt", "tests", "entry_point")
        return {"problem": {k: str(row.get(k) or "") for k in keys}}
    return {}


# ---------------------------------------------------------------------------------------------- registry
def unknown_task(task: str) -> str:
    return f"unknown task {task!r} (known: {', '.join(task_names())})"


def make_template(spec: TemplateSpec, *, key: str = "", builtin: bool = False) -> Template:
    """Validate ``spec`` and compile its Jinja; a problem is a ConfigError naming ``key``'s field."""

    def at(field: str) -> str:
        return f"{key}.{field}" if key else field

    if not spec.name.strip():
        raise ConfigError("{key} must not be empty", key=at("name"))
    if spec.task not in TASK_SCHEMAS:
        raise ConfigError(
            f"{{key}}: unknown task {spec.task!r} (known: {', '.join(task_names())})", key=at("task")
        )
    parser = spec.parser or DEFAULT_PARSER[spec.task]
    if parser not in PARSERS:
        raise ConfigError(
            f"{{key}}: unknown parser {parser!r} (known: {', '.join(parser_names())})", key=at("parser")
        )
    for part in ("prompt", "answer"):
        source = getattr(spec, part)
        if not source.strip():
            raise ConfigError("{key} must not be empty", key=at(part))
        try:
            _compiled(source)
        except jinja2.exceptions.TemplateSyntaxError as e:
            raise ConfigError(
                f"{{key}}: Jinja syntax error on its line {e.lineno}: {e.message}", key=at(part)
            ) from None
    if spec.options is not None and not spec.options:
        raise ConfigError("{key} must list at least one option (or be left out)", key=at("options"))
    return Template(
        name=spec.name.strip(),
        task=spec.task,
        prompt=spec.prompt,
        answer=spec.answer,
        parser=parser,
        options=tuple(str(o) for o in spec.options) if spec.options is not None else None,
        description=spec.description,
        builtin=builtin,
    )


def _load_specs(items: Any, *, source: str, builtin: bool, prefix: str) -> list[Template]:
    if not isinstance(items, list):
        raise ConfigError(
            f"{{key}} must be a list of templates (name, task, prompt, answer, parser, options), "
            f"got {type(items).__name__}",
            key=prefix or "templates",
        ).within(source)
    out: list[Template] = []
    seen: dict[str, str] = {}
    for i, item in enumerate(items):
        key = f"{prefix}[{i}]"
        try:
            if isinstance(item, dict):
                missing = [n for n in _REQUIRED if n not in item]
                if missing:
                    raise ConfigError(
                        f"{{key}} is missing (a template needs {', '.join(_REQUIRED)})",
                        key=f"{key}.{missing[0]}",
                    )
            spec = load(TemplateSpec, item, prefix=key, noun="template key")
            tpl = make_template(spec, key=key, builtin=builtin)
        except ConfigError as e:
            raise e.within(source) from None
        if tpl.name in seen:
            raise ConfigError(
                f"{{key}}: template {tpl.name!r} is defined twice (first at {seen[tpl.name]})",
                key=f"{key}.name",
            ).within(source)
        seen[tpl.name] = key
        out.append(tpl)
    return out


def load_templates(path: str | Path) -> list[Template]:
    """Templates from a YAML file: a list of ``{name, task, prompt, answer, parser?, options?,
    description?}``, or a mapping whose ``templates`` key holds that list. Errors are one-line
    :class:`ConfigError` naming the file and the key (``[2].parser``, ``templates[0].task``)."""
    path = Path(path)
    data = read_yaml_value(path)
    if isinstance(data, dict):
        unknown = [k for k in data if k != "templates"]
        if unknown:
            raise ConfigError("unknown key {key} (known: templates)", key=str(unknown[0])).within(path)
        return _load_specs(data.get("templates"), source=str(path), builtin=False, prefix="templates")
    return _load_specs(data, source=str(path), builtin=False, prefix="")


_BUILTIN: list[Template] = []


def builtin_templates() -> list[Template]:
    """The built-in templates (``builtin_templates.py``), validated once."""
    if not _BUILTIN:
        from instructkit.tasks.builtin_templates import TEMPLATES

        _BUILTIN.extend(_load_specs(TEMPLATES, source="built-in templates", builtin=True, prefix=""))
    return list(_BUILTIN)


class TemplateSet:
    """The templates in use: the built-in ones plus those of user YAML files (a user template may not
    take a built-in name)."""

    def __init__(self, extra: Sequence[str | Path] = ()) -> None:
        self.templates: dict[str, Template] = {t.name: t for t in builtin_templates()}
        for path in extra:
            for i, tpl in enumerate(load_templates(path)):
                if tpl.name in self.templates:
                    raise ConfigError(
                        f"{{key}}: template name {tpl.name!r} is already taken (a built-in or an earlier file)",
                        key=f"[{i}].name",
                    ).within(path)
                self.templates[tpl.name] = tpl

    def names(self, task: str | None = None) -> list[str]:
        return sorted(n for n, t in self.templates.items() if task is None or t.task == task)

    def for_task(self, task: str) -> list[Template]:
        """The templates of ``task``, by name; an unknown task is a :class:`TemplateError`."""
        if task not in TASK_SCHEMAS:
            raise TemplateError(unknown_task(task))
        return [self.templates[n] for n in self.names(task)]

    def get(self, name: str, task: str | None = None) -> Template:
        """The template called ``name`` (of ``task`` when given); unknown -> one line naming the known."""
        tpl = self.templates.get(name)
        if tpl is None or (task is not None and tpl.task != task):
            known = self.names(task)
            scope = f" for task {task!r}" if task is not None else ""
            raise TemplateError(f"unknown template {name!r}{scope} (known: {', '.join(known) or 'none'})")
        return tpl


def get_template(name: str) -> Template:
    """A built-in template by name."""
    return TemplateSet().get(name)


__all__ = [
    "CONTEXT_DOC",
    "DEFAULT_PARSER",
    "NO_ANSWER",
    "OPTION_TASKS",
    "Rendered",
    "Template",
    "TemplateError",
    "TemplateSet",
    "TemplateSpec",
    "builtin_templates",
    "context_names",
    "entities_of",
    "entity_answer",
    "get_template",
    "load_templates",
    "make_template",
    "mark_entities",
    "render",
    "render_records",
    "task_context",
    "task_options",
    "task_value",
]


# ------------------------------------------------------------------------------------------------- batch
@dataclasses.dataclass
class Rendered:
    """What :func:`render_records` made: the instruction ``records``, the ``rejects`` (rows a template
    rendered empty, each with ``reason``, ``message``, ``file``, ``index``, ``raw``) and how often each
    template was ``used``."""

    records: list[Record]
    rejects: list[dict[str, Any]]
    used: dict[str, int]


def render_records(
    rows: Sequence[dict[str, Any]],
    templates: Sequence[Template],
    *,
    seed: int = 0,
    options: Sequence[str] | None = None,
) -> Rendered:
    """Render each task record with one of ``templates``: the only one, or, with several, one picked per
    record by ``random.Random(seed)`` in input order (the same seed and input give the same picks; a
    record's pick does not depend on what it holds). ``options`` defaults to :func:`task_options` of
    ``rows``; a template with its own options uses those. The row's ``meta`` (``source``, ``row``) is
    kept in each record's. A template error stops the whole run; a row rendered empty is a reject."""
    import random

    if not templates:
        raise TemplateError("no template to render with")
    task = templates[0].task
    opts = list(options) if options is not None else task_options(task, rows)
    rng = random.Random(seed)
    out = Rendered([], [], {t.name: 0 for t in templates})
    for i, row in enumerate(rows):
        tpl = templates[0] if len(templates) == 1 else rng.choice(templates)
        meta = dict(row.get("meta") or {})
        body = {k: v for k, v in row.items() if k != "meta"}
        try:
            rec = render(tpl, body, opts, meta)
        except RecordError as e:
            entry = e.located(file=meta.get("source"), index=meta.get("row", i)).to_dict()
            entry["raw"] = row
            out.rejects.append(entry)
            continue
        out.records.append(rec)
        out.used[tpl.name] += 1
    return out
