"""Many prompts decoded together, same replies as one by one: eval, the ``local`` generation backend,
continual scoring and HumanEval sampling call :func:`generate` (or :func:`generate_tokens`), which submits
every prompt to the decoding engine (``decoding/engine``) as concurrent requests, as the server does.

Prompts are rendered with the model's own chat template (``add_generation_prompt=True``: exactly what the
model saw after the prompt in training); replies come back in the input order. Decoding is greedy unless
asked otherwise, and the settings used are returned with the replies so a report can say how the answers
were produced. ``generate_tokens`` returns token ids (and takes stop strings), for the ``local`` generation
backend's token counts. ``generate_one_by_one`` is the plain loop a user writes, kept as the benchmarks'
baseline.

Why the engine rather than static batches through ``generate`` (what this module did before): a static
batch waits for its longest reply and prefills each batch's padding, and nothing shared the long few-shot
prefix of Self-Instruct's prompts. Measured on 48 demo and HumanEval prompts (SmolLM2-135M, fp32, 2 cores,
``python benchmarks/generate.py``): the README has the numbers.
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


def generate_tokens(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[Sequence[int]],
    decoding: Decoding | None = None,
    batch_size: int = 16,
    on_batch: Callable[[int], None] | None = None,
    stop_strings: Sequence[str] = (),
    engine: Any = None,
) -> list[list[list[int]]]:
    """The new token ids of each reply (``num_return_sequences`` per prompt, in input order), up to and with
    the token that ended it (end of sequence, or the one that completed a stop string); a reply cut by
    ``max_new_tokens`` has exactly that many. ``on_batch(n)`` is called as prompts finish, with how many.

    Every prompt is submitted at once to the serving engine (:class:`~instructkit.decoding.engine.scheduler.
    Engine`) with ``batch_size`` rows decoded together, so a finished reply makes room for the next prompt at
    once, prompts that start alike (few-shot examples, a system turn) are prefilled once, and greedy rows
    take drafts. Sampled reply ``j`` of prompt ``i`` draws from a generator seeded with ``seed + i * n + j``
    (``n``: ``num_return_sequences``), so it does not depend on the other prompts of the call.

    ``engine``: a started engine of ``model`` to submit to (its prefix cache then carries over from one call
    to the next, as the ``local`` generation backend's rounds want); by default one is made for the call and
    stopped after it, so the model comes back as it was."""
    from instructkit.decoding.engine.scheduler import Engine

    decoding = decoding or Decoding()
    n = decoding.num_return_sequences
    if not prompts:
        return []
    own = engine is None
    if own:
        engine = Engine(model, tokenizer, max_batch=batch_size, max_queue=len(prompts) * n).start()
    try:
        requests = submit_tokens(engine, prompts, decoding, stop_strings)
        replies: list[list[list[int]]] = []
        for reqs in requests:
            replies.append(results(reqs))
            if on_batch:
                on_batch(1)
        return replies
    finally:
        if own:
            engine.stop()


def submit_tokens(
    engine: Any, prompts: Sequence[Sequence[int]], decoding: Decoding, stop_strings: Sequence[str] = ()
) -> list[list[Any]]:
    """Submit every prompt to a started engine and return at once: ``num_return_sequences`` engine requests
    per prompt, in input order (:func:`results` waits for one prompt's). Sampled reply ``j`` of prompt ``i``
    draws from a generator seeded with ``seed + i * n + j``. A caller with several kinds of requests (the
    ``local`` backend's sampling settings) submits them all before waiting on any, so they share steps."""
    from instructkit.decoding.engine.sampling import Sampling

    n = decoding.num_return_sequences
    out = []
    for i, prompt in enumerate(prompts):
        reqs = []
        for j in range(n):
            sampling = Sampling(
                max_tokens=decoding.max_new_tokens,
                temperature=decoding.temperature if decoding.do_sample else 0.0,
                top_p=decoding.top_p,
                seed=decoding.seed + i * n + j,
                stop=tuple(stop_strings),
            )
            reqs.append(engine.submit(list(prompt), sampling, deltas=False))
        out.append(reqs)
    return out


def results(requests: Sequence[Any]) -> list[list[int]]:
    """The new token ids of submitted engine requests, waiting for each (:func:`submit_tokens`)."""
    return [_result(req) for req in requests]


def _result(req: Any) -> list[int]:
    for kind, value in req.events():
        if kind == "done":
            if value.finish_reason in ("error", "cancelled"):
                raise RuntimeError(f"generation {value.finish_reason}: {value.error or 'stopped'}")
            return value.token_ids
    raise AssertionError("unreachable")


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
