"""``instructkit eval``: score a model on a split with the task's metrics (templated data: each record's
task, read with its parser; ``evaluate/templated.py``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from instructkit.cli.common import console, user_errors


def eval_(
    model: str = typer.Option(
        ...,
        "--model",
        "-m",
        help="Alias, local folder, hub id, a trained run folder, or the folder `instructkit run` prints.",
    ),
    data: Path | None = typer.Option(
        None, "--data", "-d", help="Split to score (any format instructkit reads)."
    ),
    benchmark: str | None = typer.Option(
        None, "--benchmark", help="A built-in benchmark instead of --data: humaneval."
    ),
    metrics: str | None = typer.Option(
        None,
        "--metrics",
        help="Comma-separated metric names (default: the task's: rouge+perplexity, accuracy, entity-f1; "
        "templated data: each record's task's).",
    ),
    task: str | None = typer.Option(None, "--task", help="Task of a pretrained model (default causal-lm)."),
    output_dir: Path = typer.Option(
        Path("runs/eval"), "--output-dir", "-o", help="Writes OUT/eval/NAME.json + predictions."
    ),
    name: str = typer.Option("results", "--name", help="Result name (eval/NAME.json)."),
    batch_size: int = typer.Option(
        16, "--batch-size", min=1, help="Prompts per generate call / samples per forward."
    ),
    max_new_tokens: int = typer.Option(128, "--max-new-tokens", min=1, help="Longest generated reply."),
    task_max_new_tokens: list[str] = typer.Option(
        [],
        "--task-max-new-tokens",
        help="Templated data: TASK=N, the longest reply for that task's records in place of "
        "--max-new-tokens (repeatable: --task-max-new-tokens code=160).",
    ),
    max_length: int = typer.Option(512, "--max-length", min=8, help="Longest input in tokens."),
    labels: str | None = typer.Option(
        None, "--labels", help="Generative classification: comma-separated label set."
    ),
    n_samples: int = typer.Option(
        1, "--n-samples", min=1, help="humaneval: replies per problem (sampled when > 1)."
    ),
    k: str = typer.Option("1", "--k", help="humaneval: comma-separated k of pass@k."),
    temperature: float = typer.Option(
        0.8, "--temperature", help="humaneval sampling temperature (when --n-samples > 1)."
    ),
    limit: int | None = typer.Option(None, "--limit", min=1, help="Score only the first N records/problems."),
) -> None:
    """Score a model on a split (or HumanEval) and keep every prediction (eval/NAME.predictions.jsonl)."""
    from instructkit.decoding import Decoding
    from instructkit.evaluate.scoring import evaluate, load_for_eval
    from instructkit.formats import read_records
    from instructkit.models import ModelNotFoundError
    from instructkit.records import RecordError
    from instructkit.train.rundir import run_name_problem

    if (data is None) == (benchmark is None):
        raise typer.BadParameter("give either --data or --benchmark", param_hint="--data/--benchmark")
    if problem := run_name_problem(name):  # eval/NAME.json must stay inside --output-dir
        raise typer.BadParameter(problem, param_hint="--name")
    budgets = _task_budgets(task_max_new_tokens)
    with user_errors(ModelNotFoundError, RecordError, FileNotFoundError, ValueError, KeyError):
        if benchmark:
            if benchmark != "humaneval":
                raise ValueError(f"unknown benchmark {benchmark!r} (known: humaneval)")
            from instructkit.evaluate.humaneval import evaluate_humaneval

            ks = [int(x) for x in k.split(",")]
            decoding = Decoding(
                max_new_tokens=max(max_new_tokens, 384) if max_new_tokens == 128 else max_new_tokens,
                do_sample=n_samples > 1,
                temperature=temperature,
                top_p=0.95,
                num_return_sequences=n_samples,
            )
            result = evaluate_humaneval(model, decoding, ks=ks, batch_size=batch_size, limit=limit)
        else:
            records = read_records(data)[:limit] if limit else read_records(data)
            lm = load_for_eval(model, task=task)
            result = evaluate(
                lm,
                records,
                metrics.split(",") if metrics else None,
                decoding=Decoding(max_new_tokens=max_new_tokens),
                batch_size=batch_size,
                max_length=max_length,
                class_labels=labels.split(",") if labels else None,
                data_path=data,
                task_max_new_tokens=budgets,
            )
        path = result.write(output_dir, name)
    _print_result(result, f"{model} on {data or benchmark}", path)


def _print_result(result: Any, title: str, path: Path) -> None:
    """The headline table, per task counts of templated data, and where the files are."""
    table = Table(title=escape(title))
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in result.headline().items():
        table.add_row(key, f"{value:.4f}")
    console.print(table)
    for task, scores in result.metrics.get("tasks", {}).items():  # templated data: counts per task
        line = f"{task}: {scores['records']} records, {scores['unparsed']} unparsed replies"
        if scores.get("bad_references"):
            line += f", {scores['bad_references']} references the parser cannot read"
        if "not_scored" in scores:
            line += f"; not scored: {scores['not_scored']}"
        console.print(escape(line))
    console.print(
        f"results: {escape(str(path))}\npredictions: {escape(str(path.with_suffix('.predictions.jsonl')))}"
    )


def _task_budgets(items: list[str]) -> dict[str, int]:
    """``--task-max-new-tokens TASK=N`` values as {task: n}; a bad one is a usage error naming it."""
    from instructkit.evaluate.templated import TASK_METRICS

    out: dict[str, int] = {}
    for item in items:
        task, _, n = item.partition("=")
        if task not in TASK_METRICS or not n.isdigit() or int(n) < 1:
            raise typer.BadParameter(
                f"{item!r} is not TASK=N with N >= 1 and TASK one of {', '.join(TASK_METRICS)}",
                param_hint="--task-max-new-tokens",
            )
        out[task] = int(n)
    return out
