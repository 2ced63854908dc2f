"""masked-lm: continued pre-training of an encoder on raw text, 15% of tokens masked (BERT recipe)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from instructkit.records import Record
from instructkit.train.tasks.base import LabelInfo, Task, register


@register
class MaskedLM(Task):
    name = "masked-lm"
    auto_model = "AutoModelForMaskedLM"
    evaluation = "masked-token-loss"
    default_metrics = ("perplexity",)

    def features(self, records: list[Record], tokenizer: Any, labels: LabelInfo, max_length: int, **kw: Any):
        out = []
        for rec in records:
            enc = tokenizer(
                rec.all_text(), truncation=True, max_length=max_length, return_special_tokens_mask=True
            )
            out.append(dict(enc))
        return out, Counter()

    def collator(self, tokenizer: Any) -> Any:
        from transformers import DataCollatorForLanguageModeling

        return DataCollatorForLanguageModeling(tokenizer, mlm=True, mlm_probability=0.15)
