"""The stages of a recipe run, in order: generate, template, data (with the split checks), before, train,
after, report. Each returns the digest of its inputs, which the stages after it hash into theirs."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from instructkit.ledger import digest, file_digest, tree_digest
from instructkit.recipe.plan import RecipeRun, generate_config, template_config
from instructkit.recipe.schema import STAGES, RecipeError


def generate_stage(run: RecipeRun, recipe_path: str | Path | None) -> str | None:
    """Generate records into ``generate/`` (they join the data stage's inputs); its digest: the generator,
    its resolved config and the bytes of the files it reads. None when the recipe has no generate stage."""
    from instructkit.generate.runner import RECORDS_FILE, generate, generator_class

    base = Path(recipe_path).parent if recipe_path else Path.cwd()
    got = generate_config(run.recipe, base)
    if got is None:
        return None
    name, gcfg = got
    files = [getattr(gcfg, f) for f in generator_class(name).files if getattr(gcfg, f, None)]
    d_gen = digest("generate", name, dataclasses.asdict(gcfg), [file_digest(Path(f)) for f in files])
    out = run.run_dir / "generate"
    run.inputs = [*run.inputs, out / RECORDS_FILE]

    def work() -> None:
        result = generate(name, gcfg, out, show_progress=run.progress)
        s = result.summary
        run.log(
            f"[generate] {s['kept']} {s['unit']}s kept, {s['rejected']} rejected, {s['records']} records; "
            f"{s['sent']} requests sent, {s['cache_hits']} from the cache; {result.card['stopped']}"
        )

    run.stage("generate", d_gen, [out / RECORDS_FILE, out / "card.json"], work)
    return d_gen


def template_stage(run: RecipeRun, recipe_path: str | Path | None) -> str | None:
    """Render the template stage's mixture into ``template/train.jsonl`` (joins the data stage's inputs)
    and its held-out sources into ``template/test.jsonl``, with the card and the rejects; its digest: the
    mixture config and the bytes of every file it reads. None when the recipe has no template stage."""
    from instructkit.files import commit_files, encode_text
    from instructkit.formats import dump_records
    from instructkit.formats.io import encode_rows
    from instructkit.tasks.mixture import build_held_out, build_mixture, mixture_inputs

    base = Path(recipe_path).parent if recipe_path else Path.cwd()
    got = template_config(run.recipe, base)
    if got is None:
        return None
    cfg, folder = got
    files = [p for p in mixture_inputs(cfg, folder) if not p.startswith("pkg:")]
    d_tpl = digest("template", dataclasses.asdict(cfg), [file_digest(Path(f)) for f in files])
    out = run.run_dir / "template"
    run.inputs = [*run.inputs, out / "train.jsonl"]
    has_test = any(src.test is not None for src in cfg.sources)

    def work() -> None:
        mixed = build_mixture(cfg, base=folder)
        card = mixed.card()
        rejects = list(mixed.rejects)
        outputs = [(out / "train.jsonl", mixed.records)]
        if has_test:
            held = build_held_out(cfg, base=folder)
            card["held_out"] = {"records": len(held.records), "sources": held.counts}
            rejects += [{**r, "split": "test"} for r in held.rejects]
            outputs.append((out / "test.jsonl", held.records))
        files = [
            (path, encode_rows(dump_records(recs, "instructkit", "raise")[0], path)) for path, recs in outputs
        ]
        files += [
            (
                out / "card.json",
                encode_text(json.dumps(card, indent=2, ensure_ascii=False) + "\n", out / "card.json"),
            ),
            (out / "rejects.jsonl", encode_rows(rejects, out / "rejects.jsonl")),
        ]
        out.mkdir(parents=True, exist_ok=True)
        commit_files(files)  # the four files as one unit: a killed stage leaves none of them half-written
        test_note = f", {card['held_out']['records']} held-out" if has_test else ""
        run.log(f"[template] {card['records']} training records{test_note}, {len(rejects)} rejected rows")

    outputs = [out / "train.jsonl", out / "card.json", *([out / "test.jsonl"] if has_test else [])]
    run.stage("template", d_tpl, outputs, work)
    return d_tpl


def data_stage(run: RecipeRun, *upstream: str) -> str:
    """Curate the inputs into train/val/test; its digest: the curate config, the inputs' paths and bytes
    (and the digests of the generate and template stages when there are any)."""
    from instructkit.data.pipeline import curate

    curate_cfg = run.curate_cfg.to_dict()
    # where the steps run does not change what they write (the engines' output is byte-identical), so
    # switching engine or cluster reruns nothing
    for key in ("engine", "address"):
        curate_cfg.pop(key, None)
    parts: list[Any] = [curate_cfg, [(str(p), file_digest(p)) for p in run.inputs]]
    d_data = digest("data", *parts, *upstream)
    data_dir, suffix = run.data_dir, run.suffix
    run.stage(
        "data",
        d_data,
        [data_dir / "card.json", *(data_dir / f"{s}{suffix}" for s in ("train", "val", "test"))],
        lambda: curate(run.inputs, data_dir, run.curate_cfg),
    )
    return d_data


def check_splits(run: RecipeRun) -> None:
    """Stop with one line, before any model is loaded, when a curated split a later stage needs is empty:
    the eval split (stages before and after score it) or train. The line names the split, its count out
    of the kept records and the curate config's shares (or why no record was kept at all)."""
    from instructkit.data.pipeline import nothing_kept

    card = json.loads((run.data_dir / "card.json").read_text())
    counts, kept, shares = card["splits"], card["accounting"]["kept"], card["config"]["split"]
    ev = run.recipe.eval.split
    if ev == "held-out" and run.recipe.held_out is not None:
        from instructkit.formats import read_records

        if not read_records(run.split_file):
            raise RecipeError(
                f"the held-out file {run.split_file} holds no records and stage before needs it"
            )
    elif ev == "held-out":
        held = json.loads((run.run_dir / "template" / "card.json").read_text()).get("held_out", {})
        if not held.get("records"):
            raise RecipeError(
                f"the held-out split is empty (0 of the template sources' test rows rendered; see "
                f"{run.run_dir / 'template' / 'rejects.jsonl'}) and stage before needs it"
            )
    checks = (
        [("train", "train")]
        if ev == "held-out"
        else [(ev, "before (the evaluation before training)"), ("train", "train")]
    )
    for name, stage in checks:
        if counts.get(name):
            continue
        shares_text = f"curate split: val {shares['val']}, test {shares['test']}, train the rest"
        if not kept:
            why, hint = nothing_kept(card, run.data_dir), ""
        elif name == "train":
            why, hint = f"0 of {kept} kept records; {shares_text}", "; lower split.val or split.test"
        else:
            why, hint = f"0 of {kept} kept records; {shares_text}", f"; raise curate's split.{name}"
        raise RecipeError(f"the curated {name} split is empty ({why}) and stage {stage} needs it{hint}")


def _evaluate(run: RecipeRun, model_name: str, out_name: str, labels: Any = None) -> None:
    """Score ``model_name`` on the eval split as the recipe says; write ``eval/<out_name>.*``."""
    from instructkit.decoding import Decoding
    from instructkit.evaluate.scoring import evaluate, load_for_eval
    from instructkit.formats import read_records

    ev = run.recipe.eval
    records = read_records(run.split_file)
    lm = load_for_eval(model_name, task=run.cfg.task, labels=labels)
    result = evaluate(
        lm,
        records,
        ev.metrics,
        decoding=Decoding(max_new_tokens=ev.max_new_tokens),
        task_max_new_tokens=ev.task_max_new_tokens or None,
        batch_size=ev.batch_size,
        max_length=ev.max_length,
        class_labels=ev.labels,
        progress=run.progress,
        data_path=run.split_file,
    )
    result.write(run.run_dir, out_name)
    run.log(f"[{out_name}] {json.dumps({k: round(v, 4) for k, v in result.headline().items()})}")


def before_stage(run: RecipeRun, d_data: str) -> str:
    """The untouched model on the eval split; its digest adds the model name, the task, the eval settings
    and the split's bytes."""
    from instructkit.formats import read_records
    from instructkit.train.tasks import TASKS

    cfg = run.cfg

    def labels_from_train() -> Any:
        task = TASKS[cfg.task]()
        return task.labels(read_records(run.data_dir / f"train{run.suffix}")) if task.has_labels else None

    eval_settings = run.recipe.eval.digest_view()
    d_before = digest("before", d_data, cfg.model, cfg.task, eval_settings, file_digest(run.split_file))
    run.stage(
        "before",
        d_before,
        [run.run_dir / "eval" / "before.json"],
        lambda: _evaluate(run, cfg.model, "before", labels_from_train()),
    )
    return d_before


def train_stage(run: RecipeRun, d_data: str) -> str:
    """Train on the curated splits; its digest adds the training config. Resumes a crashed run unless a
    stage up to train was forced."""
    from instructkit.train.checkpoints import move_aside
    from instructkit.train.training import train

    cfg, log = run.cfg, run.log
    d_train = digest("train", d_data, cfg.to_dict())
    forced = [s for s in run.force if STAGES.index(s) <= STAGES.index("train")]

    def run_train() -> None:
        if forced:
            move_aside(cfg.run_dir / "checkpoints", log, f"--force {forced[0]}")
            train(cfg, progress=run.progress, log=log)
        else:  # resume a crashed run, unless its checkpoints were made with other inputs
            train(cfg, resume=True, restart_if_changed=True, progress=run.progress, log=log)

    run.stage("train", d_train, [cfg.run_dir / "model" / "instructkit.json"], run_train)
    return d_train


def after_stage(run: RecipeRun, d_train: str) -> str:
    """The tuned model on the same split; its digest adds the trained weights' bytes."""
    train_dir = run.cfg.run_dir
    eval_settings = run.recipe.eval.digest_view()
    d_after = digest(
        "after", d_train, tree_digest(train_dir / "model"), eval_settings, file_digest(run.split_file)
    )
    run.stage(
        "after",
        d_after,
        [run.run_dir / "eval" / "after.json"],
        lambda: _evaluate(run, str(train_dir), "after"),
    )
    return d_after


def report_stage(run: RecipeRun, d_before: str, d_after: str) -> tuple[Path, Path]:
    """The before/after report; its digest adds the after-eval's bytes. Returns (html, md)."""
    from instructkit.evaluate.report import build_report

    run_dir = run.run_dir
    d_report = digest("report", d_before, d_after, file_digest(run_dir / "eval" / "after.json"))
    html, md = run_dir / "report.html", run_dir / "report.md"
    run.stage(
        "report", d_report, [html, md], lambda: build_report(run_dir, examples=run.recipe.eval.examples)
    )
    return html, md
