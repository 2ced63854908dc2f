"""Batched generation: many prompts per ``generate`` call, same replies as one by one. A module of its own
beside ``models/`` because eval, the ``local`` generation backend, continual scoring and HumanEval
sampling all decode through it (the server has its own continuous-batching engine in ``serve/engine``).

Prompts are rendered with the model's own chat template (``add_generation_prompt=True``: exactly what the
model saw after the prompt in training), sorted by length so a batch holds prompts of similar length (less
padding), left-padded (a decoder continues from the last real token of every row), and generated together;
replies come back in the input order. Decoding is greedy unless asked otherwise, and the settings used are
returned with the replies so a report can say how the answers were produced. ``generate_tokens`` is the same
engine returning token ids (and taking stop strings), for the ``local`` generation backend's token counts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch

from instructkit.models import pad_id


@dataclass
class Decoding:
    """How replies are produced; recorded in every eval result."""

    max_new_tokens: int = 128
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    num_return_sequences: int = 1
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def generate_kwargs(self) -> dict[str, Any]:
        kw: dict[str, Any] = {"max_new_tokens": self.max_new_tokens, "do_sample": self.do_sample}
        if self.do_sample:
            kw.update(temperature=self.temperature, top_p=self.top_p)
        else:  # greedy: no sampling knobs, so generation_config defaults do not warn or interfere
            kw.update(temperature=None, top_p=None, top_k=None)
        kw["num_return_sequences"] = self.num_return_sequences
        return kw


def render_prompts(tokenizer: Any, conversations: Sequence[Sequence[dict[str, str]]]) -> list[list[int]]:
    """Token ids of each conversation followed by the generation prompt of the model's chat template."""
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(
            "the tokenizer has no chat template; pass one (data.chat_template) to evaluate chats"
        )
    out = []
    for conv in conversations:
        text = tokenizer.apply_chat_template(list(conv), add_generation_prompt=True, tokenize=False)
        out.append(tokenizer(text, add_special_tokens=False)["input_ids"])
    return out


def generate(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[Sequence[int]],
    decoding: Decoding | None = None,
    batch_size: int = 16,
    on_batch: Callable[[int], None] | None = None,
) -> list[list[str]]:
    """Replies to token-id prompts: ``num_return_sequences`` strings per prompt, in input order.

    ``on_batch(n)`` is called after each batch with the number of prompts done (for a progress bar).
    """
    rows = generate_tokens(model, tokenizer, prompts, decoding, batch_size, on_batch)
    return [[tokenizer.decode(r, skip_special_tokens=True).strip() for r in reps] for reps in rows]


@torch.inference_mode()
def generate_tokens(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[Sequence[int]],
    decoding: Decoding | None = None,
    batch_size: int = 16,
    on_batch: Callable[[int], None] | None = None,
    stop_strings: Sequence[str] = (),
) -> list[list[list[int]]]:
    """The new token ids of each reply (``num_return_sequences`` per prompt, in input order), as generated:
    a row that ended early is followed by pad ids up to the batch's longest. ``stop_strings`` end a row once
    its text ends with one of them (transformers' StopStringCriteria; the string stays in the ids)."""
    decoding = decoding or Decoding()
    model.eval()
    pad = pad_id(tokenizer)
    order = sorted(range(len(prompts)), key=lambda i: (-len(prompts[i]), i))
    replies: list[list[list[int]]] = [[] for _ in prompts]
    device = next(model.parameters()).device
    extra: dict[str, Any] = (
        {"stop_strings": list(stop_strings), "tokenizer": tokenizer} if stop_strings else {}
    )
    if decoding.do_sample:
        torch.manual_seed(decoding.seed)
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        width = max(len(prompts[i]) for i in chunk)
        ids = torch.full((len(chunk), width), pad, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for row, i in enumerate(chunk):
            n = len(prompts[i])
            ids[row, width - n :] = torch.as_tensor(prompts[i], dtype=torch.long)
            mask[row, width - n :] = 1
        out = model.generate(
            input_ids=ids.to(device),
            attention_mask=mask.to(device),
            pad_token_id=pad,
            **decoding.generate_kwargs(),
            **extra,
        )
        new = out[:, width:].cpu()
        k = decoding.num_return_sequences
        for row, i in enumerate(chunk):
            for j in range(k):
                replies[i].append(new[row * k + j].tolist())
        if on_batch:
            on_batch(len(chunk))
    return replies


@torch.inference_mode()
def generate_one_by_one(
    model: Any, tokenizer: Any, prompts: Sequence[Sequence[int]], decoding: Decoding | None = None
) -> list[str]:
    """The plain loop a user writes: one ``generate`` call per prompt (the baseline of the benchmark)."""
    decoding = decoding or Decoding()
    model.eval()
    out = []
    for p in prompts:
        ids = torch.as_tensor([list(p)], dtype=torch.long)
        gen = model.generate(
            input_ids=ids, attention_mask=torch.ones_like(ids), pad_token_id=pad_id(tokenizer),
            **decoding.generate_kwargs(),
        )  # fmt: skip
        out.append(tokenizer.decode(gen[0, ids.shape[1] :], skip_special_tokens=True).strip())
    return out
