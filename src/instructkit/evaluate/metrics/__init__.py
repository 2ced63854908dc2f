"""Eval metrics, registered by name; each one matches its reference implementation (``tests/test_metrics.py``).

``get_metric("rouge").compute(predictions, references, **options)`` returns a dict read by one rule:
a ``float`` is a headline score, an ``int`` a count (``n``, ``unparsed``, ``tokens``), a ``dict`` a
breakdown (per class, per entity type), a ``str`` provenance (the tokenizer used, sacrebleu's signature).
Each score keeps its reference's scale, so numbers compare with published ones: classification, entity F1
and ROUGE are 0-1 (scikit-learn, seqeval, rouge_score); SQuAD EM/F1, BLEU and chrF are 0-100 (the official
SQuAD script, sacrebleu).

Metric modules are imported on first ``compute``, not here: listing the metrics must not pull in torch,
scikit-learn or a module another part of the package may not ship yet (``pass@k``).
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

KINDS = ("classification", "generation", "token-classification", "code", "loss")


@dataclass(frozen=True)
class Metric:
    """A named metric: where its function lives and the options fixed by the name."""

    name: str
    kind: str
    """One of ``KINDS``: what predictions/references hold (labels, texts, tag sequences, programs, samples)."""
    higher_is_better: bool
    module: str
    """Import path of the module; imported on the first call."""
    function: str = "compute"
    options: dict[str, Any] = field(default_factory=dict)
    """Options the name fixes (``entity-f1-strict`` is ``entity-f1`` with ``strict=True``)."""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"metric {self.name!r}: kind {self.kind!r} is not one of {', '.join(KINDS)}")

    def compute(self, predictions: Sequence[Any], references: Sequence[Any] | None, **options: Any) -> dict:
        clash = sorted(k for k in options if k in self.options and options[k] != self.options[k])
        if clash:
            raise ValueError(
                f"metric {self.name!r} fixes {', '.join(clash)}; use another metric name instead"
            )
        return self.function_object()(predictions, references, **{**self.options, **options})

    def function_object(self) -> Callable[..., dict]:
        try:
            module = importlib.import_module(self.module)
        except ModuleNotFoundError as e:
            if e.name != self.module:
                raise  # a dependency of the module is missing: let that name show
            raise ImportError(f"metric {self.name!r} needs module {self.module}, which is not there") from e
        return getattr(module, self.function)


_PKG = "instructkit.evaluate.metrics"
METRICS: dict[str, Metric] = {
    m.name: m
    for m in [
        Metric("accuracy", "classification", True, f"{_PKG}.classification"),
        Metric("entity-f1", "token-classification", True, f"{_PKG}.ner"),
        Metric("entity-f1-strict", "token-classification", True, f"{_PKG}.ner", options={"strict": True}),
        Metric("exact-match", "generation", True, f"{_PKG}.squad"),
        Metric("squad", "generation", True, f"{_PKG}.squad"),
        Metric("rouge", "generation", True, f"{_PKG}.rouge"),
        Metric("bleu", "generation", True, f"{_PKG}.bleu", function="compute_bleu"),
        Metric("chrf", "generation", True, f"{_PKG}.bleu", function="compute_chrf"),
        Metric("perplexity", "loss", False, f"{_PKG}.perplexity"),
        Metric("pass@k", "code", True, f"{_PKG}.pass_at_k"),
    ]
}


def get_metric(name: str) -> Metric:
    if name not in METRICS:
        raise ValueError(f"unknown metric {name!r}; known metrics: {', '.join(METRICS)}")
    return METRICS[name]


def check_pairs(predictions: Sequence[Any], references: Sequence[Any], metric: str) -> None:
    """One prediction per reference, and at least one: a silent zip would score a truncated set."""
    if len(predictions) != len(references):
        raise ValueError(
            f"{metric}: {len(predictions)} predictions but {len(references)} references; they must pair up"
        )
    if not predictions:
        raise ValueError(f"{metric}: nothing to score (no predictions)")


CJK_CLASS = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\U00020000-\U0002ebef"
"""Scripts written without spaces between words: kana, Han (with extensions), Hangul syllables."""
_CJK_RE = re.compile(f"[{CJK_CLASS}]")


def is_cjk(text: str) -> bool:
    """Whether ``text`` holds any CJK character (word-splitting on spaces does not work for it)."""
    return _CJK_RE.search(text) is not None


__all__ = ["CJK_CLASS", "is_cjk", "KINDS", "METRICS", "Metric", "check_pairs", "get_metric"]
