"""causal-lm: instruction SFT on chats (assistant tokens only, every turn, via the model's chat
template) and continued pre-training on plain ``text`` records (every token trained)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from instructkit.records import Record
from instructkit.templates import IGNORE_INDEX, ChatTemplate, Dropped
from instructkit.train.tasks.base import LabelInfo, Task, register, require_kind


class PadCollator:
    """Right-pad input_ids/labels; labels padded with -100 so padding is never trained."""

    def __init__(self, pad_token_id: int):
        self.pad = pad_token_id

    def __call__(self, batch: list[dict[str, Any]]) -> dict[str, Any]:
        import torch  # here, not at the top: the train config imports this registry and stays light

        n = max(len(b["input_ids"]) for b in batch)
        ids = torch.full((len(batch), n), self.pad, dtype=torch.long)
        labels = torch.full((len(batch), n), IGNORE_INDEX, dtype=torch.long)
        mask = torch.zeros((len(batch), n), dtype=torch.long)
        for i, b in enumerate(batch):
            k = len(b["input_ids"])
            ids[i, :k] = torch.tensor(b["input_ids"])
            labels[i, :k] = torch.tensor(b["labels"])
            mask[i, :k] = 1
        return {"input_ids": ids, "labels": labels, "attention_mask": mask}


@register
class CausalLM(Task):
    name = "causal-lm"
    auto_model = "AutoModelForCausalLM"
    peft_task_type = "CAUSAL_LM"
    generative = True
    packing = True
    trained_positions_head = True
    evaluation = "generation"
    default_metrics = ("rouge", "perplexity")

    def features(
        self,
        records: list[Record],
        tokenizer: Any,
        labels: LabelInfo,
        max_length: int,
        chat_template: str | None = None,
        **kw: Any,
    ):
        dropped: Counter = Counter()
        out = []
        template = None
        for i, rec in enumerate(records):
            require_kind(rec, i, ("chat", "text"), self.name)
            if rec.messages is not None:
                template = template or ChatTemplate(tokenizer, chat_template)
                s = template.encode(rec, max_length)
                if isinstance(s, Dropped):
                    dropped[s.reason] += 1
                    continue
                out.append({"input_ids": s.input_ids, "labels": s.labels})
            else:
                ids = tokenizer(rec.text, add_special_tokens=True, truncation=True, max_length=max_length)[
                    "input_ids"
                ]
                if tokenizer.eos_token_id is not None and len(ids) < max_length:
                    ids = [*ids, tokenizer.eos_token_id]
                out.append({"input_ids": ids, "labels": list(ids)})
        return out, dropped

    def collator(self, tokenizer: Any) -> Any:
        from instructkit.models import pad_id

        return PadCollator(pad_id(tokenizer))
