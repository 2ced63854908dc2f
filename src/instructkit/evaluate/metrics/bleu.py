"""Corpus BLEU and chrF with sacrebleu (0-100), each with its signature string.

The signature (``nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0``) records every setting that
changes the number -- tokenizer, casing, smoothing, version -- so it is reported with the score: BLEU
without it is not comparable across papers or runs. Options go straight to ``sacrebleu.BLEU``/``CHRF``
(``tokenize="zh"`` or ``trg_lang="zh"`` for Chinese, whose default 13a tokenization has no word breaks;
``word_order=2`` for chrF++).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from instructkit.evaluate.metrics import check_pairs, register


def reference_streams(references: Sequence[str | Sequence[str]]) -> list[list[str | None]]:
    """Per-sample references -> sacrebleu's streams (stream j holds every sample's j-th reference).

    A sample with fewer references than the most has ``None`` in the missing streams, which sacrebleu
    skips (a variable number of references per sample).
    """
    refs = [[r] if isinstance(r, str) else list(r) for r in references]
    for i, r in enumerate(refs):
        if not r:
            raise ValueError(f"reference {i} is an empty list")
    width = max(len(r) for r in refs)
    return [[r[j] if j < len(r) else None for r in refs] for j in range(width)]


def _corpus_score(metric: Any, key: str, predictions: Sequence[str], references: Sequence[Any]) -> dict:
    check_pairs(predictions, references, key)
    score = metric.corpus_score(list(predictions), reference_streams(references))
    return {key: float(score.score), "signature": str(metric.get_signature())}


@register(
    "bleu",
    "generation",
    headline="bleu",
    percent=True,
    reply_tokens=128,
    definition="corpus BLEU (sacrebleu, its default 13a tokenizer)",
)
def compute_bleu(predictions: Sequence[str], references: Sequence[Any], **options: Any) -> dict[str, Any]:
    """Corpus BLEU (not a mean of sentence BLEUs); ``options`` are ``sacrebleu.BLEU`` arguments."""
    from sacrebleu.metrics import BLEU

    return _corpus_score(BLEU(**options), "bleu", predictions, references)


@register(
    "chrf",
    "generation",
    headline="chrf",
    percent=True,
    reply_tokens=128,
    definition="corpus chrF (sacrebleu)",
)
def compute_chrf(predictions: Sequence[str], references: Sequence[Any], **options: Any) -> dict[str, Any]:
    """Corpus chrF; ``options`` are ``sacrebleu.CHRF`` arguments."""
    from sacrebleu.metrics import CHRF

    return _corpus_score(CHRF(**options), "chrf", predictions, references)
