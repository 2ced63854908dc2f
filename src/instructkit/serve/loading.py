"""What the server and the terminal chat load: one causal LM (any name instructkit resolves, or a trained
run rebuilt as trained), its tokenizer and chat template, and any LoRA adapters on top of the same base.

Adapters are PEFT adapter folders (``adapter_config.json``), a trained LoRA run among them (its folder or
``model/``). They are loaded into one ``PeftModel`` over the shared base weights, so each adds only its
own low-rank matrices; :meth:`Served.activate` switches the model to one of them (or to the base) for a
forward pass.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from instructkit.models import verify_folder
from instructkit.templates import ChatTemplate, TemplateError

# A conversation the parity check renders at start-up: a template that breaks train/serve parity on it
# would show the served model a prompt it was never trained on.
PROBE = [
    {"role": "system", "content": "You are helpful."},
    {"role": "user", "content": "Say hi."},
    {"role": "assistant", "content": "Hi!"},
    {"role": "user", "content": "Again, in French."},
    {"role": "assistant", "content": "Salut !"},
]


class AdapterError(ValueError):
    """An ``--adapter`` that cannot be loaded (bad NAME=PATH, not an adapter folder, wrong base)."""


@dataclass
class Served:
    """The loaded model; ``names[0]`` is the base, the others the adapters (each a ``model`` id)."""

    model: Any
    tokenizer: Any
    names: list[str]
    adapters: dict[str, str] = field(default_factory=dict)  # served name -> PEFT adapter name
    base_adapter: str | None = None  # a trained LoRA run as MODEL: its own adapter is the "base"
    template: ChatTemplate | None = None
    _current: object = field(default=0, repr=False)

    def lane_of(self, name: str) -> str | None:
        """The engine lane of a served model name (None: the base). KeyError when unknown."""
        if name == self.names[0]:
            return None
        return self.adapters[name]

    @contextlib.contextmanager
    def activate(self, lane: str | None) -> Iterator[None]:
        """Run the next forward with ``lane``'s adapter (the engine calls this around each step)."""
        if not self.adapters:
            yield
            return
        if lane is None and self.base_adapter is None:
            with self.model.disable_adapter():
                yield
            return
        target = lane or self.base_adapter
        if self._current != target:  # set_adapter walks every module: only when it changes
            self.model.set_adapter(target)
            self._current = target
        yield

    def prompt_ids(self, messages: list[dict[str, str]]) -> list[int]:
        """Token ids of ``messages`` followed by the generation prompt, rendered by the model's own
        template and tokenized exactly as training tokenizes (no special tokens added)."""
        if self.template is None:
            raise TemplateError(
                f"{self.names[0]} has no chat template; use /v1/completions with a plain prompt"
            )
        text = self.template.render(messages, add_generation_prompt=True)
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def text_ids(self, prompt: str) -> list[int]:
        return list(self.tokenizer(prompt)["input_ids"])


def parse_adapters(specs: list[str]) -> dict[str, str]:
    """``NAME=PATH`` strings to a dict; a bare PATH is named after its folder."""
    out: dict[str, str] = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep:
            path = spec
            name = Path(spec.rstrip("/")).name
            if name in ("model", "train"):  # a run's model/ folder: name it after the run
                name = Path(spec.rstrip("/")).parent.name
        name, path = name.strip(), path.strip()
        if not name or not path:
            raise AdapterError(f"--adapter {spec!r}: expected NAME=PATH (a LoRA adapter folder)")
        if name in out:
            raise AdapterError(f"--adapter {spec!r}: the name {name!r} is given twice")
        out[name] = path
    return out


def adapter_folder(path: str) -> Path:
    """The folder holding ``adapter_config.json``: the path itself, or a run's ``model/`` inside it."""
    p = Path(path).expanduser()
    for cand in (p, p / "model", p / "train" / "model", p / "train"):
        if (cand / "adapter_config.json").is_file():
            return cand
    if not p.exists():
        raise AdapterError(f"adapter {path}: no such folder")
    raise AdapterError(
        f"adapter {path}: not a PEFT adapter folder (no adapter_config.json); a trained LoRA run or the "
        "folder PEFT's save_pretrained wrote is expected"
    )


def load_served(name: str, adapters: dict[str, str] | None = None, served_name: str | None = None) -> Served:
    """Load ``name`` (alias, folder, hub id or trained run) and each adapter; run the template parity check."""
    from instructkit.serve.chat import load_chat_model

    adapters = adapters or {}
    model, tok = load_chat_model(name)
    base_name = served_name or name
    if base_name in adapters:
        raise AdapterError(f"--adapter {base_name}: the name is the base model's; choose another")
    served = Served(model, tok, [base_name, *adapters])
    if adapters:
        served.base_adapter = _attach(served, adapters)
    try:
        template = ChatTemplate(tok, name=base_name)
    except TemplateError:
        template = None  # completions only; chat requests say why they cannot be served
    if template is not None:
        try:
            template.encode(PROBE)  # text and token parity between the prompt and the training text
        except TemplateError:
            raise
        except Exception:  # some templates refuse a system turn (Gemma's raises): probe without one
            template.encode(PROBE[1:])
    served.template = template
    model.eval()
    return served


def _attach(served: Served, adapters: dict[str, str]) -> str | None:
    """Load every adapter into one PeftModel; returns the adapter that stands for the base (a LoRA run)."""
    from peft import PeftModel

    model = served.model
    base_adapter = None
    if isinstance(model, PeftModel):
        if (
            not getattr(model.peft_config.get(model.active_adapter), "peft_type", None)
            or str(model.peft_config[model.active_adapter].peft_type).split(".")[-1] != "LORA"
        ):
            raise AdapterError(
                f"{served.names[0]} was trained with a non-LoRA PEFT method; adapters can only be added to a "
                "base model or a LoRA run"
            )
        base_adapter = model.active_adapter
    for i, (name, path) in enumerate(adapters.items()):
        folder = adapter_folder(path)
        verify_folder(folder, what="adapter")  # a trained run's adapter loads only as it was saved
        cfg = json.loads((folder / "adapter_config.json").read_text())
        if cfg.get("peft_type") != "LORA":
            raise AdapterError(
                f"adapter {path}: a {cfg.get('peft_type')} adapter; only LoRA adapters are served"
            )
        try:
            if i == 0 and not isinstance(model, PeftModel):
                model = PeftModel.from_pretrained(model, str(folder), adapter_name=name)
            else:
                model.load_adapter(str(folder), adapter_name=name)
        except (RuntimeError, ValueError, KeyError) as e:
            raise AdapterError(
                f"adapter {path}: does not fit {served.names[0]} ({str(e).splitlines()[0]})"
            ) from e
        served.adapters[name] = name
    served.model = model
    return base_adapter
