"""Chat-template rendering and assistant-only loss masks, for any template.

The model's own Jinja chat template renders a record; which tokens are trained is found from the
rendered *text*, never from markers planted in a template, so any template works:

1. Render the whole conversation once: ``full``.
2. For each assistant turn ``i``, render ``messages[:i]`` with ``add_generation_prompt=True`` — exactly
   what the model sees when asked to reply at serve time — and ``messages[:i+1]`` without it. The first
   must be a prefix of the second (train/serve parity) and the second a prefix of ``full``
   (incremental rendering). The text between them is the assistant's reply plus whatever closes the
   turn (``<|im_end|>``, ``</s>``): the model must learn to stop. Trailing whitespace after the close is
   layout the model never generates, so it is not trained.
3. Tokenize ``full`` once with offsets; a token is trained when its characters overlap a trained span.
   The prompt's own tokenization must equal the first tokens of ``full`` (token-level parity).

Truncation to ``max_length`` keeps whole user/assistant exchanges from the start; only when the first
exchange alone is too long is its reply cut. A sample left with no trained token is dropped with a
reason, never passed on silently.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from instructkit.records import Message, Record

IGNORE_INDEX = -100


class TemplateError(ValueError):
    """The chat template cannot be used to train this model safely (missing, or breaks parity)."""


@dataclass
class LabelledSample:
    input_ids: list[int]
    labels: list[int]
    text: str
    offsets: list[tuple[int, int]]
    spans: list[tuple[int, int]]
    truncated: bool = False

    @property
    def n_trained(self) -> int:
        return sum(1 for x in self.labels if x != IGNORE_INDEX)


@dataclass
class MaskStats:
    """What :meth:`ChatTemplate.encode_all` did: samples kept and dropped (by reason), token counts."""

    samples: int = 0
    kept: int = 0
    truncated: int = 0
    tokens: int = 0
    trained_tokens: int = 0
    dropped: Counter = field(default_factory=Counter)

    @property
    def trained_share(self) -> float:
        return self.trained_tokens / self.tokens if self.tokens else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "samples": self.samples,
            "kept": self.kept,
            "dropped": dict(self.dropped),
            "truncated": self.truncated,
            "tokens": self.tokens,
            "trained_tokens": self.trained_tokens,
            "trained_share": round(self.trained_share, 4),
        }


@dataclass
class Dropped:
    reason: str
    detail: str


def _as_dicts(messages: list[Message] | list[dict[str, str]]) -> list[dict[str, str]]:
    return [m.to_dict() if isinstance(m, Message) else dict(m) for m in messages]


class ChatTemplate:
    """A tokenizer plus the chat template it renders with (its own, or one passed in)."""

    def __init__(self, tokenizer: Any, chat_template: str | None = None, name: str | None = None):
        self.tokenizer = tokenizer
        self.name = name or getattr(tokenizer, "name_or_path", "") or "this tokenizer"
        template = chat_template or getattr(tokenizer, "chat_template", None)
        if not template:
            raise TemplateError(
                f"{self.name} has no chat template, and none was given. Pass one with "
                "--chat-template FILE (a Jinja template), or use a chat model such as smollm2-135m-instruct."
            )
        if isinstance(template, dict):  # tokenizers may hold several named templates
            template = template.get("default") or next(iter(template.values()))
        self.template: str = template
        if not getattr(tokenizer, "is_fast", False):
            raise TemplateError(f"{self.name}: loss masks need a fast tokenizer (character offsets)")

    # ------------------------------------------------------------------ rendering
    def render(
        self, messages: list[Message] | list[dict[str, str]], add_generation_prompt: bool = False
    ) -> str:
        return self.tokenizer.apply_chat_template(
            _as_dicts(messages),
            chat_template=self.template,
            tokenize=False,
            add_generation_prompt=add_generation_prompt,
        )

    def trained_spans(
        self, messages: list[Message] | list[dict[str, str]]
    ) -> tuple[str, list[tuple[int, int]]]:
        """Render ``messages`` and return the text and the character spans to train."""
        msgs = _as_dicts(messages)
        full = self.render(msgs)
        spans = []
        for i, m in enumerate(msgs):
            if m["role"] != "assistant":
                continue
            prompt = self.render(msgs[:i], add_generation_prompt=True)
            upto = self.render(msgs[: i + 1])
            if not upto.startswith(prompt):
                at = _first_difference(prompt, upto)
                raise TemplateError(
                    f"train/serve template mismatch at message {i}: the prompt rendered with "
                    f"add_generation_prompt=True differs from the training text from character {at}:\n"
                    f"  serve: {prompt[at : at + 60]!r}\n  train: {upto[at : at + 60]!r}\n"
                    "A model trained on this would see a different prompt when it is asked to reply."
                )
            if not full.startswith(upto):
                at = _first_difference(upto, full)
                raise TemplateError(
                    f"the template renders message {i} differently once later turns follow (from character "
                    f"{at}: {upto[at : at + 40]!r} vs {full[at : at + 40]!r}); incremental masks are impossible"
                )
            reply = upto[len(prompt) :]
            if m["content"].strip() and m["content"].strip() not in reply:
                raise TemplateError(
                    f"the template changes the text of assistant message {i}; cannot locate it"
                )
            end = len(prompt) + len(reply.rstrip())
            spans.append((len(prompt), end))
        return full, spans

    # ------------------------------------------------------------------ encoding
    def _tokenize(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        enc = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        return list(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]]

    def _encode_messages(self, messages: list[dict[str, str]]) -> LabelledSample:
        text, spans = self.trained_spans(messages)
        ids, offsets = self._tokenize(text)
        labels = [IGNORE_INDEX] * len(ids)
        for j, (a, b) in enumerate(offsets):
            if b > a and any(b > s and a < e for s, e in spans):
                labels[j] = ids[j]
        self._check_token_parity(messages, ids, offsets)
        return LabelledSample(ids, labels, text, offsets, spans)

    def _check_token_parity(
        self, messages: list[dict[str, str]], ids: list[int], offsets: list[tuple[int, int]]
    ) -> None:
        for i, m in enumerate(messages):
            if m["role"] != "assistant":
                continue
            prompt = self.render(messages[:i], add_generation_prompt=True)
            prompt_ids, _ = self._tokenize(prompt)
            k = sum(1 for a, b in offsets if b <= len(prompt))
            if ids[:k] != prompt_ids:
                raise TemplateError(
                    f"train/serve token mismatch at message {i}: the prompt alone tokenizes differently from "
                    "the same text inside the full conversation (a token merges across the reply boundary)"
                )

    def encode(
        self, record: Record | list[Message], max_length: int | None = None
    ) -> LabelledSample | Dropped:
        """Render one conversation into ``input_ids`` + ``labels``; ``Dropped`` when nothing is left to train."""
        messages = _as_dicts(record.messages if isinstance(record, Record) else record)
        sample = self._encode_messages(messages)
        if max_length is None or len(sample.input_ids) <= max_length:
            if sample.n_trained == 0:
                return Dropped("no_trained_tokens", "the rendered conversation has no assistant tokens")
            return sample
        # Keep the longest prefix of whole exchanges (system + user/assistant pairs) that fits.
        start = 1 if messages[0]["role"] == "system" else 0
        ends = [j + 1 for j in range(start, len(messages)) if messages[j]["role"] == "assistant"]
        for end in reversed(ends[:-1]):
            shorter = self._encode_messages(messages[:end])
            if len(shorter.input_ids) <= max_length:
                shorter.truncated = True
                return shorter
        # The first exchange alone is too long: cut its reply, if any of it still fits.
        first = self._encode_messages(messages[: ends[0]])
        cut = LabelledSample(
            first.input_ids[:max_length],
            first.labels[:max_length],
            first.text,
            first.offsets[:max_length],
            first.spans,
            True,
        )
        if cut.n_trained == 0:
            return Dropped(
                "prompt_exceeds_max_length",
                f"the prompt alone is {sum(1 for x in first.labels if x == IGNORE_INDEX)} tokens; max_length is {max_length}",
            )
        return cut

    def encode_all(
        self, records: list[Record], max_length: int | None = None
    ) -> tuple[list[LabelledSample], MaskStats, list[tuple[Record, Dropped]]]:
        stats = MaskStats()
        kept: list[LabelledSample] = []
        dropped: list[tuple[Record, Dropped]] = []
        for rec in records:
            stats.samples += 1
            if rec.messages is None:
                out: LabelledSample | Dropped = Dropped(
                    "not_a_conversation", f"a {rec.kind} record has no chat turns"
                )
            else:
                out = self.encode(rec, max_length)
            if isinstance(out, Dropped):
                stats.dropped[out.reason] += 1
                dropped.append((rec, out))
                continue
            stats.kept += 1
            stats.truncated += int(out.truncated)
            stats.tokens += len(out.input_ids)
            stats.trained_tokens += out.n_trained
            kept.append(out)
        return kept, stats, dropped


def _first_difference(a: str, b: str) -> int:
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return i
    return min(len(a), len(b))


def render_with_labels(
    tokenizer: Any, record: Record, max_length: int | None = None, chat_template: str | None = None
) -> LabelledSample | Dropped:
    """One-call form of :meth:`ChatTemplate.encode`."""
    return ChatTemplate(tokenizer, chat_template).encode(record, max_length)
