"""The reference every serve test compares a greedy reply with: one-request ``generate`` of the same model.

One helper, so every test asks the same question (greedy, no sampling knobs the model's generation config
might carry, an all-ones attention mask, EOS as padding) and a reply that differs is the engine's doing.
"""

from __future__ import annotations

from typing import Any

import torch


def greedy_ids(model: Any, tokenizer: Any, ids: list[int], max_tokens: int) -> list[int]:
    """The token ids greedy ``generate`` adds to prompt ``ids`` (at most ``max_tokens``; it stops at EOS)."""
    with torch.inference_mode():
        t = torch.tensor([ids])
        out = model.generate(
            input_ids=t, attention_mask=torch.ones_like(t), max_new_tokens=max_tokens, do_sample=False,
            temperature=None, top_p=None, top_k=None, pad_token_id=tokenizer.eos_token_id,
        )  # fmt: skip
    return out[0, len(ids) :].tolist()


def greedy_text(model: Any, tokenizer: Any, ids: list[int], max_tokens: int) -> str:
    """:func:`greedy_ids` as text, special tokens left out (what the server's reply holds)."""
    return tokenizer.decode(greedy_ids(model, tokenizer, ids, max_tokens), skip_special_tokens=True)
