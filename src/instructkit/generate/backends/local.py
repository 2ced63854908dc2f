"""``local``: any model instructkit loads by name — a bundled alias (default ``smollm2-135m-instruct``), a
local model folder, a hub id — run in this process through eval's batched generation engine
(``decoding.py``: chat template, left padding, one forward per step for the whole batch).

Requests are grouped by their ``Sampling`` (one engine call per distinct setting) and batched
``batch_size`` at a time. Temperature 0 is greedy and gives exactly eval's greedy replies; above 0 samples
with ``top_p``, the torch seed set to ``Sampling.seed`` (0 when None) once per group, so the same requests
with the same seed give the same replies — but a sampled reply depends on the other requests of its group.
Stop strings end a row during generation (transformers' StopStringCriteria) and the reply is cut before
the first of them. Token counts come from the tokenizer: the rendered prompt, and the new tokens up to the
end-of-sequence token or the stop string.

Measured (bundled SmolLM2-135M, CPU, 2 shared cores): 16 requests of up to 32 new tokens took 34 s in one
batch of 16 and 112 s one by one (``batch_size=1``), with identical greedy replies; loading the cached
float weights took 7 s.

A trained run folder (``runs/<name>/model``) is not loaded here: its loader (``train.saved_model``) is
outside what ``generate/`` may import (tests/test_layers.py); a full fine-tune's ``model/`` folder that holds
plain weights and a tokenizer loads as any local folder.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from instructkit.config import checked
from instructkit.generate.backends.base import Backend, OnReply, Reply, Request, Sampling, register


@register
@dataclass
class LocalBackend(Backend):
    name = "local"
    model: str = "smollm2-135m-instruct"
    """A model name instructkit resolves: bundled alias, local folder or hub id."""
    batch_size: int = checked(16, ge=1)
    """Prompts generated together in one batch."""
    device: str | None = None
    """torch device; None: cuda when available, else cpu."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self._lm: tuple[Any, Any] | None = None

    def key(self) -> dict[str, Any]:
        return {"backend": self.name, "model": self.model, "weights": _fingerprint(self.model)}

    def loaded(self) -> tuple[Any, Any]:
        """(model, tokenizer), loaded on first use."""
        if self._lm is None:
            import torch

            from instructkit.models import load_model, load_tokenizer

            device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
            self._lm = (load_model(self.model).to(device), load_tokenizer(self.model))
        return self._lm

    def close(self) -> None:
        self._lm = None

    def complete(self, requests: Sequence[Request], on_reply: OnReply | None = None) -> list[Reply]:
        from instructkit.decoding import Decoding, generate_tokens, render_prompts

        model, tok = self.loaded()
        prompts = render_prompts(tok, [r.messages for r in requests])
        groups: dict[Sampling, list[int]] = {}
        for i, r in enumerate(requests):
            groups.setdefault(r.sampling, []).append(i)
        replies: list[Reply | None] = [None] * len(requests)
        for s, idx in groups.items():
            decoding = Decoding(max_new_tokens=s.max_tokens, do_sample=not s.greedy, temperature=s.temperature or 1.0,
                                top_p=s.top_p, seed=s.seed or 0)  # fmt: skip
            rows = generate_tokens(model, tok, [prompts[i] for i in idx], decoding, self.batch_size,
                                   stop_strings=s.stop)  # fmt: skip
            for i, reps in zip(idx, rows, strict=True):
                reply = self.to_reply(tok, reps[0], s, len(prompts[i]))
                replies[i] = reply
                self.usage.add(reply)
                if on_reply:
                    on_reply(i, reply)
        return [r for r in replies if r is not None]

    @staticmethod
    def to_reply(tok: Any, ids: list[int], s: Sampling, prompt_tokens: int) -> Reply:
        eos = _eos_ids(tok)
        end = next((n for n, t in enumerate(ids) if t in eos), None)
        finish = "stop" if end is not None else None
        ids = ids[:end] if end is not None else ids
        text = tok.decode(ids, skip_special_tokens=True)
        cuts = [text.find(x) for x in s.stop if x in text]
        if cuts:
            text, finish = text[: min(cuts)], "stop"
        if finish is None:
            finish = "length" if len(ids) >= s.max_tokens else "stop"
        return Reply(text.strip(), finish, prompt_tokens, len(ids))


def _eos_ids(tok: Any) -> set[int]:
    """Where a reply ends: its end-of-sequence token, or the padding the engine adds after a row that ended
    (by a stop string or another end id of the model's generation config)."""
    ids = {tok.eos_token_id, tok.pad_token_id}
    return {i for i in ids if i is not None}


def _fingerprint(name: str) -> str | None:
    """For a local folder: a hash of its weight files' names, sizes and mtimes, so a folder retrained in place
    does not answer from the old model's cache entries. None for an alias or hub id (their weights are fixed by
    the name and version)."""
    folder = Path(name)
    if not folder.is_dir():
        return None
    h = hashlib.sha256()
    for f in sorted(folder.glob("*")):
        if f.suffix in (".safetensors", ".bin", ".gguf", ".pt") or f.name == "config.json":
            st = f.stat()
            h.update(f"{f.name}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]
