"""prompt-tuning: learn ``num_virtual_tokens`` input embeddings prepended to every sequence (Lester et al.,
2021; PEFT PromptTuningConfig). The model stays frozen; a classification head trains in full. Only for
causal-lm and sequence-classification: prepended tokens would shift per-token outputs of the others."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from instructkit.config import checked
from instructkit.train.methods.base import Method, MethodError, peft_task_kwargs, register, require_peft
from instructkit.train.tasks import TASKS


def _left_align(module: nn.Module, args: tuple, kwargs: dict[str, Any]) -> tuple[tuple, dict[str, Any]]:
    """Move right padding to the left. A decoder classifier (``score`` head) pools the last non-pad
    token, found from ``input_ids``; with prompt tuning PEFT calls it with ``inputs_embeds`` only, so it
    pools the last position, a pad token under right padding. Left-aligned rows end on a real token."""
    mask = kwargs.get("attention_mask")
    if mask is None or bool(mask[:, -1].all()):
        return args, kwargs
    order = torch.argsort(mask, dim=1, stable=True)  # pads (0) first, tokens (1) in their order after
    for key in ("input_ids", "attention_mask", "token_type_ids"):
        if kwargs.get(key) is not None:
            kwargs[key] = torch.gather(kwargs[key], 1, order)
    return args, kwargs


@register
@dataclass
class PromptTuning(Method):
    name = "prompt-tuning"
    plain_weights = False
    merge_refusal = (
        "its learned virtual tokens are extra inputs prepended to every sequence, not weights of the base "
        "model, so there is nothing to fold them into; train with lora to get a mergeable model"
    )
    task_types = ("CAUSAL_LM", "SEQ_CLS")
    packing = False
    """PEFT drops the per-sample position ids that packed rows need."""
    trained_positions_head = False
    """PEFT prepends the virtual tokens inside forward, so labels and logits no longer line up by position."""
    num_virtual_tokens: int = checked(20, ge=1)
    """Learned embeddings prepended to every input."""
    init: str = checked("random", choices=("random", "text"))
    """How the virtual tokens start: random, or text (the embeddings of init_text, repeated to length)."""
    init_text: str | None = None
    """init: text — the text whose token embeddings start the prompt, e.g. "Classify the sentiment:"."""
    tokenizer_path: str | None = None
    """init: text — tokenizer (local folder or hub id) that turns init_text into token ids."""

    def validate(self) -> None:
        if self.init == "text" and not (self.init_text and self.tokenizer_path):
            raise MethodError("{key}: text needs init_text and tokenizer_path", key="init")

    def check_task(self, task: str) -> None:
        if task in TASKS and task not in self.task_names():
            raise MethodError(
                f"prompt-tuning prepends virtual tokens, which shifts per-token outputs; it applies to "
                f"{' and '.join(self.task_names())} only, not {task}; use lora or ln-tuning"
            )
        super().check_task(task)

    def for_loading(self) -> PromptTuning:
        return dataclasses.replace(self, init="random")  # the saved prompt replaces it: no tokenizer needed

    def apply(self, model: Any, task: str) -> nn.Module:
        self.check_task(task)
        peft = require_peft(self.name)
        text = {}
        if self.init == "text":
            text = {"prompt_tuning_init_text": self.init_text, "tokenizer_name_or_path": self.tokenizer_path}
        config = peft.PromptTuningConfig(
            num_virtual_tokens=self.num_virtual_tokens,
            prompt_tuning_init=peft.PromptTuningInit.TEXT
            if self.init == "text"
            else peft.PromptTuningInit.RANDOM,
            **text,
            **peft_task_kwargs(model, task),
        )
        pools_last_token = TASKS[task].pools_last_token and hasattr(model, "score")
        model = peft.get_peft_model(model, config)
        if pools_last_token:
            model.register_forward_pre_hook(_left_align, with_kwargs=True)
        return model
