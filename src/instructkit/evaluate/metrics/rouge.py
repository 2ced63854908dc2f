"""ROUGE-1/2/L F-measure with Google's ``rouge_score``, averaged over samples (0-1, as rouge_score gives).

rouge_score's default tokenizer keeps only ``[a-z0-9]`` runs, so Chinese, Japanese or Korean text has no
tokens at all and scores 0 whatever the model wrote. ``tokenizer`` chooses:
* ``"default"``: rouge_score's own tokenizer (scores equal to rouge_score's defaults);
* ``"cjk-char"``: each CJK character (kana, Han, Hangul syllable) is one token, and everything else is
  tokenized exactly as the default does (lower-cased ``[a-z0-9]`` runs, Porter-stemmed when longer than
  3 characters if ``use_stemmer``) -- on text without CJK it gives the default's tokens;
* ``"auto"`` (default): ``"cjk-char"`` if any prediction or reference holds a CJK character, else
  ``"default"``. The choice is made once for the whole set, so all samples are scored alike, and the
  result reports it under ``"tokenizer"``.
Character-level ROUGE on CJK is the usual practice but is not comparable with word-level English numbers.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from instructkit.evaluate.metrics import CJK_CLASS, check_pairs, is_cjk, register

TOKENIZERS = ("auto", "default", "cjk-char")
_CJK_OR_WORD = re.compile(f"[{CJK_CLASS}]|[a-z0-9]+")


class CJKCharTokenizer:
    """rouge_score tokenizer: CJK characters one by one, other text as rouge_score's default tokenizer."""

    def __init__(self, use_stemmer: bool = False):
        from nltk.stem import porter

        self._stemmer = porter.PorterStemmer() if use_stemmer else None

    def tokenize(self, text: str) -> list[str]:
        tokens = _CJK_OR_WORD.findall(text.lower())
        if self._stemmer is None:
            return tokens
        # as rouge_score: stem only words longer than 3 characters (never a single CJK character)
        return [self._stemmer.stem(t) if len(t) > 3 else t for t in tokens]


def resolve_tokenizer(tokenizer: str, texts: Sequence[str]) -> str:
    if tokenizer not in TOKENIZERS:
        raise ValueError(f"unknown ROUGE tokenizer {tokenizer!r}; one of {', '.join(TOKENIZERS)}")
    if tokenizer == "auto":
        return "cjk-char" if any(is_cjk(t) for t in texts) else "default"
    return tokenizer


@register(
    "rouge",
    "generation",
    headline="rougeL",
    reply_tokens=128,
    definition="ROUGE-L F-measure (rouge_score, Porter-stemmed), mean over test samples, x100",
)
def compute(
    predictions: Sequence[str],
    references: Sequence[str | Sequence[str]],
    rouge_types: Sequence[str] = ("rouge1", "rouge2", "rougeL"),
    use_stemmer: bool = True,
    tokenizer: str = "auto",
) -> dict[str, Any]:
    """Mean F-measure per ROUGE type, plus the tokenizer used.

    Each reference is one text or a list of them; with several, a sample takes its best reference per
    type (rouge_score's ``score_multi``).
    """
    from rouge_score import rouge_scorer

    check_pairs(predictions, references, "rouge")
    refs = [[r] if isinstance(r, str) else list(r) for r in references]
    for i, r in enumerate(refs):
        if not r:
            raise ValueError(f"rouge: reference {i} is an empty list")
    used = resolve_tokenizer(tokenizer, [*predictions, *(t for r in refs for t in r)])
    custom = CJKCharTokenizer(use_stemmer) if used == "cjk-char" else None
    scorer = rouge_scorer.RougeScorer(list(rouge_types), use_stemmer=use_stemmer, tokenizer=custom)
    totals = dict.fromkeys(rouge_types, 0.0)
    for pred, r in zip(predictions, refs, strict=True):
        # rouge_score takes the target first
        scores = scorer.score(r[0], pred) if len(r) == 1 else scorer.score_multi(r, pred)
        for t in rouge_types:
            totals[t] += scores[t].fmeasure
    return {**{t: totals[t] / len(refs) for t in rouge_types}, "tokenizer": used}
