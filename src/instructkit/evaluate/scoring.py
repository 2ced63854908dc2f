"""``instructkit eval``: score a model on a split with the metric that fits its task, keep what it said.

The model is a bundled alias, a local folder or hub id (scored as it is), or a trained run folder (rebuilt
as it was trained: base + method + trained weights, with its task and labels). What is scored per task:

* ``causal-lm`` on chat records: the conversation up to its last user turn is the prompt, the last
  assistant turn the reference; the replies come from the decoding engine, every prompt submitted at
  once (greedy by default, see
  :class:`~instructkit.decoding.Decoding`) and scored with generation metrics (ROUGE by default;
  BLEU, chrF, exact match/token F1, or accuracy of a label parsed from the reply), plus perplexity over
  the reference's tokens (the same assistant-only mask training uses);
* ``sequence-classification``: the predicted label, scored with accuracy and macro/micro F1;
* ``token-classification``: word-level tags (first sub-token's prediction), scored with seqeval entity F1
  in the default and the strict IOB2 mode;
* ``masked-lm``: loss and perplexity over the tokens masked by the training collator (15%, seeded, so two
  evals of one model on one file mask the same tokens).

Templated chat records (``instructkit data template``: ``meta`` names the task and the answer parser) are
scored by a causal LM per task instead, each reply read with its record's parser
(``evaluate/templated.py``); a file without them, or any file with metrics named by the caller, is
scored as above.

Which of these a model gets is the task class's choice (``Task.evaluation``, ``Task.default_metrics``,
``Task.generative`` in ``train/tasks/``); this module holds the routines, registered in ``EVALUATIONS``.

Every result carries the decoding settings, the data file's content hash and the sample count, so two
results can be compared only when they were produced the same way.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from instructkit import __version__
from instructkit.decoding import Decoding, generate, render_prompts
from instructkit.evaluate.replies import split_chat
from instructkit.files import sha256_file, write_text
from instructkit.records import Record

MASKED_LM_SEED = 0
"""Seed of the masking in masked-lm eval: the same tokens are masked every time."""

EVALUATIONS: dict[str, Callable[..., tuple[dict[str, Any], list[dict[str, Any]]]]] = {}
"""Eval routines by the name a task class gives as ``Task.evaluation``."""


def evaluation(name: str) -> Callable[[Callable], Callable]:
    def register(fn: Callable) -> Callable:
        EVALUATIONS[name] = fn
        return fn

    return register


def task_spec(task: str) -> Any:
    """The registered task class of ``task``: its capabilities decide how a model is scored.

    Evaluate asks the task registry in ``train/tasks`` instead of keeping its own table of task names:
    a task head is then one module, and ``load_for_eval`` already needs that registry to rebuild a run.
    """
    from instructkit.train.tasks import TASKS

    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; one of {', '.join(TASKS)}")
    return TASKS[task]


@dataclass
class LoadedModel:
    model: Any
    tokenizer: Any
    task: str
    labels: Any  # LabelInfo
    name: str
    trained: bool
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class EvalResult:
    metrics: dict[str, Any]
    predictions: list[dict[str, Any]]
    info: dict[str, Any]

    def headline(self) -> dict[str, float]:
        """The flat numeric metrics (what a before/after table shows)."""
        return {k: v for k, v in self.metrics.items() if isinstance(v, float)}  # ints are counts

    def write(self, out_dir: str | Path, name: str) -> Path:
        """``out_dir/eval/<name>.json`` and ``out_dir/eval/<name>.predictions.jsonl`` (atomic writes)."""
        folder = Path(out_dir) / "eval"
        body = {"name": name, **self.info, "metrics": self.metrics}
        write_text(json.dumps(body, indent=2, default=_jsonable) + "\n", folder / f"{name}.json")
        lines = "".join(json.dumps(p, ensure_ascii=False, default=_jsonable) + "\n" for p in self.predictions)
        write_text(lines, folder / f"{name}.predictions.jsonl")
        return folder / f"{name}.json"


def _jsonable(x: Any) -> Any:
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    return str(x)


def load_for_eval(name: str, task: str | None = None, labels: Any = None) -> LoadedModel:
    """A trained run (its own task and labels), or a pretrained model for ``task`` (default causal-lm;
    a classification head on an untrained model is newly initialised, seeded: the chance-level baseline)."""
    from instructkit.train.saved_model import is_trained_run, load_base, load_trained
    from instructkit.train.tasks import DEFAULT_TASK, LabelInfo

    if is_trained_run(name):
        model, tok, info = load_trained(name)
        if task and task != info["task"]:
            raise ValueError(f"{name} was trained for {info['task']}, not {task}")
        return LoadedModel(model, tok, info["task"], LabelInfo.from_dict(info["labels"]), name, True, info)
    from instructkit.models import load_tokenizer

    task = task or DEFAULT_TASK
    labels = labels or LabelInfo()
    tok = load_tokenizer(name)
    if tok.pad_token_id is None and tok.eos_token is not None:
        tok.pad_token = tok.eos_token
    model = load_base(name, task_spec(task)(), labels, seed=0)
    model.eval()
    return LoadedModel(model, tok, task, labels, name, False)


def _progress(total: int, label: str, enabled: bool) -> tuple[Callable[[int], None], Callable[[], None]]:
    if not enabled:
        return (lambda n: None), (lambda: None)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    bar.start()
    task = bar.add_task(label, total=total)
    return (lambda n: bar.advance(task, n)), bar.stop


def evaluate(
    lm: LoadedModel,
    records: list[Record],
    metrics: list[str] | None = None,
    *,
    decoding: Decoding | None = None,
    batch_size: int = 16,
    max_length: int = 512,
    class_labels: list[str] | None = None,
    progress: bool = True,
    data_path: str | Path | None = None,
    task_max_new_tokens: dict[str, int] | None = None,
) -> EvalResult:
    """Score ``lm`` on ``records`` with ``metrics`` (default: the task's ``Task.default_metrics``).

    ``task_max_new_tokens`` ({task: n}) gives templated records of a task their own reply budget in place
    of ``decoding.max_new_tokens``: a mixture's classification replies need 8 tokens and its code replies
    160, and one budget for both either cuts the code or lets an untuned model ramble 160 tokens on every
    classification prompt (each budget is its own engine call)."""
    spec = task_spec(lm.task)
    explicit_metrics = bool(metrics)
    metrics = list(metrics or spec.default_metrics)
    if not records:
        raise ValueError("no records to evaluate")
    if spec.evaluation not in EVALUATIONS:
        from instructkit.train.tasks import TASKS

        built = ", ".join(n for n, t in TASKS.items() if t.evaluation in EVALUATIONS)
        raise ValueError(f"eval for {lm.task} models is not built yet ({built} are)")
    decoding = decoding or Decoding()
    t0 = time.perf_counter()
    routine = EVALUATIONS[spec.evaluation]
    # Templated data: each record names its parser, each task has its metrics. Metrics or labels given
    # by name (--metrics, a recipe's eval.metrics) score the file as plain chat records instead.
    if spec.generative and not explicit_metrics and not class_labels and _templated(records):
        from instructkit.evaluate.templated import TASK_METRICS

        routine = EVALUATIONS["templated"]
        metrics = sorted({m for r in records for m in TASK_METRICS.get(r.meta.get("task"), [])})
    scores, preds = routine(
        lm,
        records,
        metrics,
        decoding=decoding,
        batch_size=batch_size,
        max_length=max_length,
        class_labels=class_labels,
        progress=progress,
        task_max_new_tokens=task_max_new_tokens or {},
    )
    info = {
        "model": lm.name,
        "trained": lm.trained,
        "task": lm.task,
        "data": str(data_path) if data_path else None,
        "data_sha256": sha256_file(data_path) if data_path and Path(data_path).is_file() else None,
        "samples": len(records),
        "metric_names": metrics,
        "decoding": decoding.to_dict() if spec.generative else None,
        **({"task_max_new_tokens": dict(task_max_new_tokens)} if task_max_new_tokens else {}),
        "seconds": round(time.perf_counter() - t0, 2),
        "instructkit_version": __version__,
    }
    return EvalResult(scores, preds, info)


# ------------------------------------------------------------------------------------------- causal-lm
def generate_replies(
    lm: LoadedModel, convs: Any, decoding: Decoding, batch_size: int, progress: bool
) -> list[list[str]]:
    """Batched replies to conversations, with a progress bar."""
    prompts = render_prompts(lm.tokenizer, convs)
    advance, stop = _progress(len(prompts), "generating", progress)
    try:
        return generate(lm.model, lm.tokenizer, prompts, decoding, batch_size=batch_size, on_batch=advance)
    finally:
        stop()


def _templated(records: list[Record]) -> bool:
    from instructkit.evaluate.templated import is_templated

    return is_templated(records)


@evaluation("templated")
def _eval_templated(lm, records, metrics, *, decoding, batch_size, progress, task_max_new_tokens, **_):
    """Templated chat records (``instructkit data template``): replies read with each record's parser,
    scored per task (``evaluate/templated.py``). Records whose task has its own budget in
    ``task_max_new_tokens`` are generated in their own batches with it."""
    from instructkit.evaluate.templated import check_templated, score_templated

    check_templated(records)  # before any generation: a bad file fails in a second, not after the model ran
    convs = [split_chat(r, i)[0] for i, r in enumerate(records)]
    groups: dict[int, list[int]] = {}
    for i, r in enumerate(records):
        groups.setdefault(task_max_new_tokens.get(r.meta.get("task"), decoding.max_new_tokens), []).append(i)
    replies: list[str] = [""] * len(records)
    for budget, idx in groups.items():
        dec = dataclasses.replace(decoding, max_new_tokens=budget)
        out = generate_replies(lm, [convs[i] for i in idx], dec, batch_size, progress)
        for i, reps in zip(idx, out, strict=True):
            replies[i] = reps[0]
    return score_templated(records, replies)


@evaluation("generation")
def _eval_generation(lm, records, metrics, *, decoding, batch_size, max_length, class_labels, progress, **_):
    from instructkit.evaluate.metrics import get_metric

    convs, refs = zip(*(split_chat(r, i) for i, r in enumerate(records)), strict=True)
    replies = generate_replies(lm, convs, decoding, batch_size, progress)
    first = [r[0] for r in replies]
    scored = [i for i, ref in enumerate(refs) if ref is not None]
    preds_s, refs_s = [first[i] for i in scored], [refs[i] for i in scored]
    scores: dict[str, Any] = {}
    per_sample: dict[int, dict[str, Any]] = {i: {} for i in range(len(records))}
    for name in metrics:
        if name == "perplexity":
            scores.update(_perplexity(lm, [records[i] for i in scored], batch_size, max_length))
            continue
        metric = get_metric(name)
        kw: dict[str, Any] = {}
        if metric.kind == "classification":  # a label parsed from the reply, by the documented rule
            kw.update(labels=class_labels or sorted(set(refs_s)), parse=True)
        result = metric.compute(preds_s, refs_s, **kw)
        scores.update(result)
        if name == "rouge":  # per-sample ROUGE-L, so a report can show where answers changed most
            for i, p, r in zip(scored, preds_s, refs_s, strict=True):
                one = metric.compute([p], [r], tokenizer=result["tokenizer"])
                per_sample[i]["rougeL"] = one["rougeL"]
    preds = []
    for i, rec in enumerate(records):
        entry = {
            "id": rec.id,
            "prompt": convs[i][-1]["content"],
            "reference": refs[i],
            "prediction": first[i],
            **per_sample[i],
        }
        if decoding.num_return_sequences > 1:
            entry["samples"] = replies[i]
        preds.append(entry)
    return scores, preds


def _perplexity(lm, records, batch_size, max_length) -> dict[str, Any]:
    from instructkit.evaluate.metrics.perplexity import perplexity
    from instructkit.templates import ChatTemplate, Dropped

    template = ChatTemplate(lm.tokenizer)
    samples = [s for s in (template.encode(r, max_length) for r in records) if not isinstance(s, Dropped)]
    samples = [{"input_ids": s.input_ids, "labels": s.labels} for s in samples]
    if not samples:
        return {}
    out = perplexity(lm.model, samples, batch_size=batch_size)
    return {"loss": out["loss"], "perplexity": out["perplexity"]}


# ------------------------------------------------------------------------------------------- encoders
@torch.inference_mode()
def _forward_batches(lm: LoadedModel, feats: list[dict[str, Any]], batch_size: int) -> list[np.ndarray]:
    collate = _collator(lm)
    out = []
    lm.model.eval()
    for start in range(0, len(feats), batch_size):
        chunk = feats[start : start + batch_size]
        batch = collate([{k: v for k, v in f.items() if k != "labels"} for f in chunk])
        logits = lm.model(**{k: v for k, v in batch.items() if k != "labels"}).logits.float().numpy()
        out.extend(
            logits[j, : len(chunk[j]["input_ids"])] if logits.ndim == 3 else logits[j]
            for j in range(len(chunk))
        )
    return out


def _collator(lm: LoadedModel) -> Any:
    from transformers import DataCollatorWithPadding

    return DataCollatorWithPadding(lm.tokenizer)


@evaluation("classification")
def _eval_classification(lm, records, metrics, *, batch_size, max_length, **_):
    from instructkit.evaluate.metrics import get_metric
    from instructkit.train.tasks.seq_cls import record_label

    if lm.labels.problem_type != "single_label_classification":
        raise ValueError(
            f"eval of {lm.labels.problem_type} classification is not built yet (single-label is)"
        )
    task = task_spec(lm.task)()
    feats, _ = task.features(records, lm.tokenizer, lm.labels, max_length)
    logits = _forward_batches(lm, feats, batch_size)
    names = lm.labels.names
    guess = [names[int(np.argmax(x))] for x in logits]
    gold = [str(record_label(r, i)) for i, r in enumerate(records)]
    scores: dict[str, Any] = {}
    for name in metrics:
        scores.update(get_metric(name).compute(guess, gold, labels=names))
    preds = [
        {"id": r.id, "text": r.prompt_text(), "reference": g, "prediction": p}
        for r, g, p in zip(records, gold, guess, strict=True)
    ]
    return scores, preds


@evaluation("relation")
def _eval_relation(lm, records, metrics, *, batch_size, max_length, **_):
    """Relation classification from the two start markers' summed logits (``train/tasks/relation_cls.py``);
    a record whose markers were cut off by ``max_length`` is predicted as no label (a miss)."""
    from instructkit.evaluate.metrics import get_metric
    from instructkit.train.tasks.relation_cls import encode, marked_text_and_label, predict

    names = lm.labels.names
    feats, positions, gold, texts = [], [], [], []
    for i, rec in enumerate(records):
        text, label = marked_text_and_label(rec, i)
        if label is None:
            raise ValueError(f"record {i} ({rec.id}) has no relation label to score against")
        f, pos = encode(text, lm.tokenizer, max_length)
        feats.append(f)
        positions.append(pos)
        gold.append(label)
        texts.append(text)
    logits = _forward_batches(lm, feats, batch_size)
    guess = [predict(lg, pos, names) for lg, pos in zip(logits, positions, strict=True)]
    scores: dict[str, Any] = {"marker_truncated": sum(p is None for p in positions)}
    for name in metrics:
        scores.update(get_metric(name).compute(guess, gold, labels=names))
    preds = [
        {"id": r.id, "text": t, "reference": g, "prediction": p}
        for r, t, g, p in zip(records, texts, gold, guess, strict=True)
    ]
    return scores, preds


@evaluation("tagging")
def _eval_ner(lm, records, metrics, *, batch_size, max_length, **_):
    from instructkit.evaluate.metrics import get_metric

    names = lm.labels.names
    feats, word_ids = [], []
    for i, rec in enumerate(records):
        if rec.tokens is None:
            raise ValueError(f"record {i} ({rec.id}) is a {rec.kind} record; NER eval needs tokens + tags")
        enc = lm.tokenizer(rec.tokens, is_split_into_words=True, truncation=True, max_length=max_length)
        feats.append({"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]})
        word_ids.append(enc.word_ids())
    logits = _forward_batches(lm, feats, batch_size)
    y_true, y_pred, preds = [], [], []
    for rec, wids, lg in zip(records, word_ids, logits, strict=True):
        tags = ["O"] * len(rec.tokens)
        seen = set()
        for pos, w in enumerate(wids):
            if w is not None and w not in seen:
                seen.add(w)
                tags[w] = names[int(np.argmax(lg[pos]))]
        gold = [t if t in names else "O" for t in rec.tags]  # a type unseen in training scores as O
        y_true.append(list(rec.tags))
        y_pred.append(tags)
        preds.append({"id": rec.id, "tokens": rec.tokens, "reference": gold, "prediction": tags})
    scores: dict[str, Any] = {}
    for name in metrics:
        res = get_metric(name).compute(y_pred, y_true)
        if name.endswith("-strict"):
            res = {f"strict_{k}": v for k, v in res.items()}
        scores.update(res)
    return scores, preds


# ------------------------------------------------------------------------------------------- masked-lm
@evaluation("masked-token-loss")
def _eval_masked_lm(lm, records, metrics, *, batch_size, max_length, **_):
    """Token-weighted loss over the masked positions, and its exp. The task's own collator masks (15%, as
    in training) under a fixed seed in a forked RNG, so the score is reproducible and the caller's random
    state is left as it was."""
    unknown = [m for m in metrics if m not in ("perplexity", "loss")]
    if unknown:
        raise ValueError(f"masked-lm eval reports loss and perplexity; not {', '.join(unknown)}")
    task = task_spec(lm.task)()
    feats, _ = task.features(records, lm.tokenizer, lm.labels, max_length)
    collate = task.collator(lm.tokenizer)
    device = next(lm.model.parameters()).device
    per_sample: list[tuple[float, int]] = []
    lm.model.eval()
    with torch.random.fork_rng(devices=[]), torch.inference_mode():
        torch.manual_seed(MASKED_LM_SEED)
        for start in range(0, len(feats), batch_size):
            batch = collate(feats[start : start + batch_size])
            labels = batch.pop("labels").to(device)
            logits = lm.model(**{k: v.to(device) for k, v in batch.items()}).logits.float()
            nll = torch.nn.functional.cross_entropy(
                logits.transpose(1, 2), labels, ignore_index=-100, reduction="none"
            )  # [batch, seq]; 0 where not masked
            scored = labels != -100
            per_sample += [
                (float(nll[j].double().sum()), int(scored[j].sum())) for j in range(labels.shape[0])
            ]
    total, tokens = sum(x for x, _ in per_sample), sum(n for _, n in per_sample)
    if tokens == 0:
        raise ValueError("masked-lm eval: no token was masked (texts too short?)")
    loss = total / tokens
    scores: dict[str, Any] = {"loss": loss, "perplexity": math.exp(loss) if loss < 700 else math.inf}
    scores["tokens"] = tokens
    preds = [
        {"id": r.id, "loss": (x / n if n else None), "masked_tokens": n}
        for r, (x, n) in zip(records, per_sample, strict=True)
    ]
    return scores, preds
