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
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

from instructkit.config import ConfigError, load, read_yaml_value
from instructkit.records import Record, RecordError
from instructkit.tasks.context import (
    CONTEXT_DOC,
    NO_ANSWER,
    OPTION_TASKS,
    TemplateError,
    context_names,
    entities_of,
    entity_answer,
    mark_entities,
    scoring_meta,
    task_context,
    task_options,
    task_value,
    unknown_task,
)
from instructkit.tasks.parsers import PARSERS, parse_reply, parser_names
from instructkit.tasks.records import TASK_SCHEMAS, task_names

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


# ---------------------------------------------------------------------------------------------- registry
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
