"""The text views of a record that data steps look at, defined once."""

from __future__ import annotations

from instructkit.records import Record


def prompt_text(rec: Record) -> str:
    """What the model is asked: user turns of a chat, the text of a classification record, the sentence."""
    if rec.messages is not None:
        return "\n".join(m.content for m in rec.messages if m.role == "user")
    if rec.tokens is not None:
        return " ".join(rec.tokens)
    return rec.text or ""


def reply_text(rec: Record) -> str:
    """What the model is taught to say: assistant turns (empty for records without replies)."""
    if rec.messages is not None:
        return "\n".join(m.content for m in rec.messages if m.role == "assistant")
    return ""


def all_text(rec: Record) -> str:
    if rec.messages is not None:
        return "\n".join(m.content for m in rec.messages)
    return prompt_text(rec)


def first_instruction(rec: Record) -> str:
    if rec.messages is not None:
        return next((m.content for m in rec.messages if m.role == "user"), "")
    return prompt_text(rec)
