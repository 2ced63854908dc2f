"""Greedy replies from a chat model, rendered with the model's own chat template.

The model is a bundled alias, a local folder or hub id, or a trained run (a run folder, or its
``model/`` folder holding ``instructkit.json``), rebuilt exactly as it was trained.
"""

from __future__ import annotations

from typing import Any


def load_chat_model(name: str) -> tuple[Any, Any]:
    from instructkit.train.saved_model import is_trained_run, load_trained

    if is_trained_run(name):
        from instructkit.train.tasks import TASKS

        model, tok, info = load_trained(name)
        if not TASKS[info["task"]].generative:
            chat = ", ".join(n for n, t in TASKS.items() if t.generative)
            raise ValueError(f"{name} was trained for {info['task']}, not {chat}; it cannot chat")
        return model, tok
    from instructkit.models import load_model, load_tokenizer

    return load_model(name), load_tokenizer(name)


def reply(model_name: str, prompt: str, *, system: str | None = None, max_new_tokens: int = 128) -> str:
    import torch

    from instructkit.models import pad_id

    model, tok = load_chat_model(model_name)
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
            pad_token_id=pad_id(tok),
        )
    return tok.decode(out[0, enc["input_ids"].shape[1] :], skip_special_tokens=True).strip()
