"""The canonical record every instructkit stage reads and writes.

One record is exactly one of three kinds:

* ``chat``: ``messages``, a list of system/user/assistant turns (instruction tuning, multi-turn);
* ``tokens``: ``tokens`` + ``tags``, one tag per word (token classification, e.g. NER);
* ``text``: ``text`` + ``label`` (sequence classification; label may be a string, a number, or a list),
  or ``text`` alone (raw text for continued pre-training).

``meta`` carries ``id``, ``source`` (where it was read from), ``task`` and ``lineage`` (what made or
changed it), plus any extra keys a format preserved. Validation lives here, in one place, and raises
:class:`RecordError` naming the field, so readers can add the file and line.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

ROLES = ("system", "user", "assistant")


class RecordError(ValueError):
    """A record (or the raw data it came from) is invalid.

    ``reason`` is a short machine-readable code (``unknown_role``, ``missing_field``, ...); ``field`` is
    the path of the offending field (``messages[2].role``); ``file`` and ``line`` are filled in by the
    reader that met it. ``line`` is a 1-based line number, or ``None`` when only ``index`` is known.
    ``raw`` is the source text of the bad record where the reader has it (a JSONL line, a JSON array
    element, a CoNLL block), so a reject keeps what could not be parsed.
    """

    def __init__(
        self,
        reason: str,
        message: str,
        *,
        field: str | None = None,
        file: str | None = None,
        line: int | None = None,
        index: int | None = None,
        raw: str | None = None,
    ):
        self.reason = reason
        self.message = message
        self.field = field
        self.file = file
        self.line = line
        self.index = index
        self.raw = raw
        super().__init__(str(self))

    def located(self, *, file: str | None = None, line: int | None = None, index: int | None = None):
        """Return a copy of this error with its location filled in (existing values win)."""
        return RecordError(
            self.reason,
            self.message,
            field=self.field,
            file=self.file or file,
            line=self.line if self.line is not None else line,
            index=self.index if self.index is not None else index,
            raw=self.raw,
        )

    def __reduce__(self):
        # Exception pickling calls the class with ``args`` (here the one formatted string), which this
        # __init__ cannot take; an error raised in a worker process (Ray, datasets' num_proc) must cross
        # back whole.
        return (
            _record_error,
            (self.reason, self.message, self.field, self.file, self.line, self.index, self.raw),
        )

    def with_raw(self, raw: str | None) -> RecordError:
        """Return a copy holding ``raw`` as the source text (an existing one wins)."""
        err = self.located()
        err.raw = self.raw if self.raw is not None else raw
        return err

    def where(self) -> str:
        parts = []
        if self.file:
            parts.append(self.file)
        if self.line is not None:
            parts.append(f"line {self.line}")
        elif self.index is not None:
            parts.append(f"record {self.index}")
        if self.field:
            parts.append(f"field '{self.field}'")
        return ", ".join(parts)

    def __str__(self) -> str:
        where = self.where()
        return f"{where}: {self.message} [{self.reason}]" if where else f"{self.message} [{self.reason}]"

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "line": self.line,
            "index": self.index,
            "field": self.field,
            "reason": self.reason,
            "message": self.message,
        }


def _record_error(reason, message, field, file, line, index, raw) -> RecordError:
    return RecordError(reason, message, field=field, file=file, line=line, index=index, raw=raw)


@dataclass
class Message:
    role: str
    content: str

    def to_dict(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content}


@dataclass
class Record:
    messages: list[Message] | None = None
    tokens: list[str] | None = None
    tags: list[str] | None = None
    text: str | None = None
    label: Any = None
    meta: dict[str, Any] = field(default_factory=dict)

    # ------------------------------------------------------------------ construction
    @classmethod
    def chat(cls, messages: list[dict[str, str]] | list[Message], **meta: Any) -> Record:
        msgs = [m if isinstance(m, Message) else Message(m["role"], m["content"]) for m in messages]
        return cls(messages=msgs, meta=dict(meta)).validated()

    @classmethod
    def from_dict(cls, data: dict[str, Any], validate: bool = True) -> Record:
        """Build from the native dict layout (what :meth:`to_dict` writes), validating every field
        (``validate=False`` only for records already validated once, between pipeline steps)."""
        if not validate:
            msgs = data.get("messages")
            return cls(
                messages=[Message(m["role"], m["content"]) for m in msgs] if msgs is not None else None,
                tokens=data.get("tokens"),
                tags=data.get("tags"),
                text=data.get("text"),
                label=data.get("label"),
                meta=dict(data.get("meta") or {}),
            )
        if not isinstance(data, dict):
            raise RecordError("wrong_type", f"a record must be an object, got {type(data).__name__}")
        known = {"messages", "tokens", "tags", "text", "label", "meta"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise RecordError("unknown_field", f"unknown field(s) {unknown}", field=unknown[0])
        meta = data.get("meta", {})
        if meta is None:
            meta = {}
        if not isinstance(meta, dict):
            raise RecordError("wrong_type", "'meta' must be an object", field="meta")
        messages = None
        if "messages" in data:
            messages = parse_messages(data["messages"], "messages", ("role", "content"))
        return cls(
            messages=messages,
            tokens=data.get("tokens"),
            tags=data.get("tags"),
            text=data.get("text"),
            label=data.get("label"),
            meta=dict(meta),
        ).validated()

    # ------------------------------------------------------------------ views
    @property
    def kind(self) -> str:
        if self.messages is not None:
            return "chat"
        if self.tokens is not None:
            return "tokens"
        return "text"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.messages is not None:
            out["messages"] = [m.to_dict() for m in self.messages]
        if self.tokens is not None:
            out["tokens"] = list(self.tokens)
            out["tags"] = list(self.tags or [])
        if self.text is not None:
            out["text"] = self.text
            if self.label is not None:
                out["label"] = self.label
        out["meta"] = dict(self.meta)
        return out

    def content(self) -> dict[str, Any]:
        """The record without ``meta``: what a model sees."""
        out = self.to_dict()
        out.pop("meta")
        return out

    def content_hash(self) -> str:
        blob = json.dumps(self.content(), sort_keys=True, ensure_ascii=False).encode("utf-8")
        return hashlib.sha1(blob).hexdigest()

    @property
    def id(self) -> str:
        return str(self.meta.get("id") or self.content_hash()[:16])

    def turns(self) -> int:
        return len(self.messages or [])

    # ------------------------------------------------------------------ text views
    # Defined here, once: curation steps, stats, the task heads and eval all read a record through these.
    def prompt_text(self) -> str:
        """What the model is asked: user turns of a chat, the text of a classification record, the
        sentence (tokens joined by spaces) of a tagged one."""
        if self.messages is not None:
            return "\n".join(m.content for m in self.messages if m.role == "user")
        if self.tokens is not None:
            return " ".join(self.tokens)
        return self.text or ""

    def reply_text(self) -> str:
        """What the model is taught to say: assistant turns (empty for records without replies)."""
        if self.messages is not None:
            return "\n".join(m.content for m in self.messages if m.role == "assistant")
        return ""

    def all_text(self) -> str:
        """Every turn of a chat (system included), else :meth:`prompt_text`."""
        if self.messages is not None:
            return "\n".join(m.content for m in self.messages)
        return self.prompt_text()

    def first_instruction(self) -> str:
        """The first user turn of a chat (the task, without follow-ups), else :meth:`prompt_text`."""
        if self.messages is not None:
            return next((m.content for m in self.messages if m.role == "user"), "")
        return self.prompt_text()

    # ------------------------------------------------------------------ validation
    def validated(self) -> Record:
        kinds = [self.messages is not None, self.tokens is not None, self.text is not None]
        if sum(kinds) != 1:
            raise RecordError(
                "wrong_kind",
                "a record holds exactly one of: messages, tokens+tags, text+label",
            )
        if self.messages is not None:
            validate_conversation(self.messages, "messages")
        elif self.tokens is not None:
            _validate_tokens(self.tokens, self.tags)
        else:
            if not isinstance(self.text, str):
                raise RecordError("wrong_type", "'text' must be a string", field="text")
            if not self.text.strip():
                raise RecordError("empty_content", "'text' is empty", field="text")
            if self.label is not None and not isinstance(self.label, str | int | float | list):
                raise RecordError(
                    "wrong_type", "'label' must be a string, number, boolean or list", field="label"
                )
        for key in ("id", "task"):
            if key in self.meta and self.meta[key] is not None and not isinstance(self.meta[key], str):
                self.meta[key] = str(self.meta[key])
        return self


def parse_messages(
    raw: Any,
    field_name: str,
    keys: tuple[str, str],
    role_map: dict[str, str] | None = None,
) -> list[Message]:
    """Parse a list of ``{role_key: ..., content_key: ...}`` objects into messages.

    ``role_map`` maps a format's role names onto ours (ShareGPT's ``human``/``gpt``); unknown roles raise.
    """
    role_key, content_key = keys
    if not isinstance(raw, list):
        raise RecordError("wrong_type", f"'{field_name}' must be a list", field=field_name)
    if not raw:
        raise RecordError("empty_conversation", "the conversation has no turns", field=field_name)
    out = []
    for i, turn in enumerate(raw):
        where = f"{field_name}[{i}]"
        if not isinstance(turn, dict):
            raise RecordError("wrong_type", "each turn must be an object", field=where)
        if role_key not in turn:
            raise RecordError("missing_role", f"turn has no '{role_key}'", field=f"{where}.{role_key}")
        if content_key not in turn:
            raise RecordError("missing_field", f"turn has no '{content_key}'", field=f"{where}.{content_key}")
        role, content = turn[role_key], turn[content_key]
        if not isinstance(role, str):
            raise RecordError("wrong_type", f"'{role_key}' must be a string", field=f"{where}.{role_key}")
        mapped = (role_map or {r: r for r in ROLES}).get(role)
        if mapped is None:
            raise RecordError("unknown_role", f"unknown role '{role}'", field=f"{where}.{role_key}")
        if not isinstance(content, str):
            raise RecordError(
                "wrong_type",
                f"'{content_key}' must be a string, got {type(content).__name__}",
                field=f"{where}.{content_key}",
            )
        out.append(Message(mapped, content))
    return out


def validate_conversation(messages: list[Message], field_name: str = "messages") -> None:
    """A conversation: optional leading system turn, then user/assistant strictly alternating,
    starting with user and ending with assistant, no empty turns."""
    if not messages:
        raise RecordError("empty_conversation", "the conversation has no turns", field=field_name)
    for i, m in enumerate(messages):
        where = f"{field_name}[{i}]"
        if m.role not in ROLES:
            raise RecordError("unknown_role", f"unknown role '{m.role}'", field=f"{where}.role")
        if not isinstance(m.content, str):
            raise RecordError("wrong_type", "content must be a string", field=f"{where}.content")
        if not m.content.strip():
            raise RecordError("empty_content", f"the {m.role} turn is empty", field=f"{where}.content")
        if m.role == "system" and i != 0:
            raise RecordError("misplaced_system", "a system turn may only come first", field=f"{where}.role")
    body = messages[1:] if messages[0].role == "system" else messages
    if not body:
        raise RecordError("empty_conversation", "the conversation has only a system turn", field=field_name)
    offset = len(messages) - len(body)
    for j, m in enumerate(body):
        expected = "user" if j % 2 == 0 else "assistant"
        if m.role != expected:
            reason = f"consecutive_{m.role}_turns" if j > 0 and body[j - 1].role == m.role else "role_order"
            raise RecordError(
                reason,
                f"expected a {expected} turn, got {m.role} (turns must alternate user/assistant)",
                field=f"{field_name}[{j + offset}].role",
            )
    if body[-1].role != "assistant":
        raise RecordError(
            "no_assistant_reply",
            "the conversation must end with an assistant turn",
            field=f"{field_name}[{len(messages) - 1}].role",
        )


def _validate_tokens(tokens: Any, tags: Any) -> None:
    if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
        raise RecordError("wrong_type", "'tokens' must be a list of strings", field="tokens")
    if tags is None:
        raise RecordError("missing_field", "'tags' is required with 'tokens'", field="tags")
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise RecordError("wrong_type", "'tags' must be a list of strings", field="tags")
    if not tokens:
        raise RecordError("empty_content", "the sentence has no tokens", field="tokens")
    if len(tokens) != len(tags):
        raise RecordError("length_mismatch", f"{len(tokens)} tokens but {len(tags)} tags", field="tags")
    for i, t in enumerate(tokens):
        if not t or any(c.isspace() for c in t):
            raise RecordError("bad_token", f"token {t!r} is empty or holds whitespace", field=f"tokens[{i}]")
    for i, tag in enumerate(tags):
        if tag != "O" and not (len(tag) > 2 and tag[:2] in ("B-", "I-", "E-", "S-")):
            raise RecordError("bad_tag", f"tag {tag!r} is not O or B-/I-/E-/S-TYPE", field=f"tags[{i}]")
