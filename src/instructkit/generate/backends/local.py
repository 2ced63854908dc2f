"""``local``: any model instructkit loads by name — a bundled alias (default ``smollm2-135m-instruct``), a
local model folder, a hub id, or a trained run folder (``runs/<name>``, its ``model/``, or a run recipe's
folder: the model just tuned, adapters and all, as a teacher without exporting it first) — decoded in this
process by the one decoding engine (``decoding/``): every request of a call is submitted at once, so
``batch_size`` rows decode together, a finished reply makes room for the next request at once, and the long
few-shot prefix that Self-Instruct's prompts share is prefilled once (the prefix cache).

Requests are grouped by their ``Sampling`` (one engine call per distinct setting). Temperature 0 is greedy
and gives exactly eval's greedy replies; above 0 samples with ``top_p`` from a generator of each request's
own, seeded from ``Sampling.seed`` (0 when None) and the request's place in its group, so the same requests
with the same seed give the same replies. Stop strings end a reply during generation and the reply is cut
before the first of them. Token counts come from the tokenizer: the rendered prompt, and the new tokens up
to the end-of-sequence token or the stop string.

Measured: ``python benchmarks/generate.py --self-instruct`` (the README has the numbers).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from instructkit.config import checked
from instructkit.generate.backends.base import Backend, OnReply, Reply, Request, Sampling, register


@register
@dataclass
class LocalBackend(Backend):
    name = "local"
    model: str = "smollm2-135m-instruct"
    """A model name instructkit resolves: bundled alias, local folder, hub id, or a trained run folder."""
    batch_size: int = checked(16, ge=1)
    """Prompts generated together in one batch."""
    device: str | None = None
    """torch device; None: cuda when available, else cpu."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self._lm: tuple[Any, Any] | None = None
        self._engine: Any = None  # the decoding engine, kept from one call to the next (its prefix cache)

    def key(self) -> dict[str, Any]:
        return {"backend": self.name, "model": self.model, "weights": _fingerprint(self.model)}

    def loaded(self) -> tuple[Any, Any]:
        """(model, tokenizer), loaded on first use."""
        if self._lm is None:
            import torch

            from instructkit.models import load_model, load_tokenizer
            from instructkit.train.saved_model import is_trained_run, load_trained
            from instructkit.train.tasks import TASKS

            device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
            if is_trained_run(self.model):
                model, tok, info = load_trained(self.model)
                if not TASKS[info["task"]].generative:
                    chat = ", ".join(n for n, t in TASKS.items() if t.generative)
                    raise ValueError(
                        f"backend.model: {self.model} was trained for {info['task']}, which does not "
                        f"generate text; give a run trained for {chat}, or a model name"
                    )
                self._lm = (model.to(device), tok)
            else:
                self._lm = (load_model(self.model).to(device), load_tokenizer(self.model))
        return self._lm

    def close(self) -> None:
        if self._engine is not None:
            self._engine.stop()  # gives the model back as it came (attention, linear layers)
        self._engine = None
        self._lm = None

    def engine(self) -> Any:
        """The decoding engine over the loaded model, started on first use and kept until :meth:`close`, so
        what one round prefilled (the chat template's system turn, the header and the few-shot examples
        every classification prompt repeats) is reused by the next."""
        if self._engine is None:
            from instructkit.decoding.engine.scheduler import Engine

            model, tok = self.loaded()
            self._engine = Engine(model, tok, max_batch=self.batch_size, max_queue=1_000_000).start()
        return self._engine

    def complete(self, requests: Sequence[Request], on_reply: OnReply | None = None) -> list[Reply]:
        from instructkit.decoding import Decoding, render_prompts
        from instructkit.decoding.batch import results, submit_tokens

        model, tok = self.loaded()
        engine = self.engine()
        prompts = render_prompts(tok, [r.messages for r in requests])
        groups: dict[Sampling, list[int]] = {}
        for i, r in enumerate(requests):
            groups.setdefault(r.sampling, []).append(i)
        # Every group is submitted before any is waited on, so requests with different settings (a round's
        # instance requests and the next round's instruction requests) decode in the same steps.
        submitted = []
        for s, idx in groups.items():
            decoding = Decoding(max_new_tokens=s.max_tokens, do_sample=not s.greedy, temperature=s.temperature or 1.0,
                                top_p=s.top_p, seed=s.seed or 0)  # fmt: skip
            submitted.append((s, idx, submit_tokens(engine, [prompts[i] for i in idx], decoding, s.stop)))
        replies: list[Reply | None] = [None] * len(requests)
        for s, idx, handles in submitted:
            for i, reqs in zip(idx, handles, strict=True):
                reply = self.to_reply(tok, results(reqs)[0], s, len(prompts[i]))
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
    """For a local folder: a hash of its weight files' names, sizes and mtimes (a trained run: those of the
    folder holding its ``instructkit.json``, the adapter among them), so a folder retrained in place does not answer from the old
    model's cache entries. None for an alias or hub id (their weights are fixed by the name and version)."""
    from instructkit.train.saved_model import model_folder

    folder = model_folder(name)
    if not folder.is_dir():
        return None
    h = hashlib.sha256()
    for f in sorted(folder.glob("*")):
        if f.suffix in (".safetensors", ".bin", ".gguf", ".pt") or f.name == "config.json":
            st = f.stat()
            h.update(f"{f.name}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]
