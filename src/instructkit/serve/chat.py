"""Greedy replies from a chat model, rendered with the model's own chat template."""

from __future__ import annotations

from instructkit.models import load_model, load_tokenizer


def reply(model_name: str, prompt: str, *, system: str | None = None, max_new_tokens: int = 128) -> str:
    import torch

    tok = load_tokenizer(model_name)
    model = load_model(model_name)
    model.eval()
    messages = ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": prompt}
    ]
    enc = tok.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.inference_mode():
        out = model.generate(
            **enc,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=tok.pad_token_id or tok.eos_token_id,
        )
    return tok.decode(out[0, enc["input_ids"].shape[1] :], skip_special_tokens=True).strip()
