"""The eight applications tuned and measured: each ``recipes/apps/<app>.yaml`` run by ``instructkit run``,
and the README's Applications table printed from the run folders.

    python benchmarks/apps.py [--apps relation qa ...] [--output-dir runs] [--no-run] [--mixture]

Each recipe renders its real dataset sample into instruction records (``examples/data/apps/<app>/``),
scores SmolLM2-135M-Instruct on the dataset's own test rows, tunes it with LoRA and scores it again with
the same prompts, parser and metric. A finished run is not redone: ``instructkit run`` skips every stage
whose inputs are unchanged, so a second call only prints the table (``--no-run`` never starts one).
With ``--mixture`` it also runs ``recipes/apps/mixture.yaml`` (one model tuned on all eight) and prints
its table: per application, before, single-task after and mixture after. Steps are each run's optimizer
steps. Minutes are the stages' own seconds from ``stages.json`` (template, data, before, train, after, report),
measured on whatever machine ran them; the README says which. This script makes no speed claim against
a peer (``benchmarks/app_baselines.py`` compares with plain HF Trainer / TRL); its last line counts the
applications whose after score beats their before score.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).parent.parent
INSTRUCTKIT = str(Path(sys.executable).parent / "instructkit")

# application -> (dataset, headline metric key in eval/*.json, how it is shown)
APPS: dict[str, tuple[str, str, str]] = {
    "classification": ("Poem Sentiment", "classification.accuracy", "accuracy"),
    "ner": ("Universal NER (EWT)", "ner.f1", "entity F1 (type, text)"),
    "relation": ("SemEval-2010 Task 8", "relation.semeval_macro_f1", "macro-F1 (official, 0-100)"),
    "qa": ("SQuAD v1.1", "qa.f1", "SQuAD F1 (0-100)"),
    "translation": ("Multi30K en→de", "translation.bleu", "sacreBLEU"),
    "summarization": ("SciTLDR", "summarization.rougeL", "ROUGE-L"),
    "dialogue": ("Schema-Guided Dialogue", "dialogue.rougeL", "ROUGE-L"),
    "code": ("MBPP", "code.pass@1", "pass@1"),
}
SECOND = {  # a second metric shown beside the headline one
    "classification": "classification.macro_f1",
    "qa": "qa.exact_match",
    "translation": "translation.chrf",
    "summarization": "summarization.rouge2",
}


def run_folder(app: str, output_dir: str) -> Path:
    name = yaml.safe_load((ROOT / "recipes" / "apps" / f"{app}.yaml").read_text())["name"]
    return ROOT / output_dir / name


def finished(recipe: Path, folder: Path) -> dict | None:
    """A finished run of ``recipe`` in ``folder``: {before, after, minutes, steps}; None when the run has
    not finished or the recipe changed since it ran (its ``recipe.yaml`` differs from the file's)."""
    if not (folder / "eval" / "after.json").is_file() or not (folder / "report.md").is_file():
        return None
    from instructkit.recipe import Recipe

    ran = Recipe.from_yaml(folder / "recipe.yaml").to_dict()  # with today's defaults for keys added since
    now = Recipe.from_yaml(recipe).to_dict()
    ran["output_dir"] = now["output_dir"]  # where it ran does not change what it measured
    if ran != now:  # the recipe changed since: this run folder does not measure it
        return None
    if (folder / "report.md").stat().st_mtime < (folder / "recipe.yaml").stat().st_mtime:
        return None  # the recipe changed and its run has not finished: the evals are the old recipe's
    stages = json.loads((folder / "stages.json").read_text())
    train = folder / "train" / "train_metrics.json"
    return {
        "before": json.loads((folder / "eval" / "before.json").read_text())["metrics"],
        "after": json.loads((folder / "eval" / "after.json").read_text())["metrics"],
        "minutes": sum(float(s.get("seconds") or 0) for s in stages.values()) / 60,
        "steps": json.loads(train.read_text()).get("steps") if train.is_file() else None,
    }


def row(app: str, folder: Path) -> tuple[str, bool] | None:
    """One markdown row of the table and whether after beats before, or None (see :func:`finished`)."""
    run = finished(ROOT / "recipes" / "apps" / f"{app}.yaml", folder)
    if run is None:
        return None
    before, after = run["before"], run["after"]
    dataset, key, shown = APPS[app]
    b, a = float(before[key]), float(after[key])
    cells = [app, dataset, shown, f"{b:.4g}", f"{a:.4g}", f"{a - b:+.4g}"]
    extra = SECOND.get(app)
    if extra and extra in after:
        cells.append(f"{extra.split('.')[-1]} {float(before[extra]):.4g} → {float(after[extra]):.4g}")
    else:
        cells.append("")
    cells.append(str(run["steps"]))
    cells.append(f"{run['minutes']:.1f}")
    return "| " + " | ".join(cells) + " |", a > b


def mixture_table(output_dir: str) -> None:
    """The mixture recipe beside the eight single-task ones: per application, the untuned model, the
    single-task model and the one mixture model, each on the application's held-out test rows."""
    mix = finished(ROOT / "recipes" / "apps" / "mixture.yaml", run_folder("mixture", output_dir))
    if mix is None:
        print("mixture: not run (or its recipe changed since)")
        return
    print(f"mixture: {mix['steps']} optimizer steps, {mix['minutes']:.1f} minutes (all stages)")
    print("| app | metric | before | single-task after | mixture after | single-task steps |")
    print("| --- | --- | --- | --- | --- | --- |")
    for app, (_, key, shown) in APPS.items():
        single = finished(ROOT / "recipes" / "apps" / f"{app}.yaml", run_folder(app, output_dir))
        cells = [app, shown, f"{float(mix['before'][key]):.4g}"]
        cells += [f"{float(single['after'][key]):.4g}", f"{float(mix['after'][key]):.4g}", str(single["steps"])] if single else ["not run", f"{float(mix['after'][key]):.4g}", ""]  # fmt: skip
        print("| " + " | ".join(cells) + " |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--apps", nargs="+", choices=list(APPS), default=list(APPS))
    ap.add_argument(
        "--output-dir", default="runs", help="Where the run folders go (the recipes' output_dir)."
    )
    ap.add_argument("--no-run", action="store_true", help="Only print the table from finished runs.")
    ap.add_argument(
        "--mixture",
        action="store_true",
        help="Also run recipes/apps/mixture.yaml and print it beside the single-task runs.",
    )
    args = ap.parse_args()
    for app in args.apps:
        if not args.no_run:
            recipe = ROOT / "recipes" / "apps" / f"{app}.yaml"
            subprocess.run(
                [INSTRUCTKIT, "run", str(recipe), "--output-dir", args.output_dir], check=True, cwd=ROOT
            )
    print("| app | dataset | metric (held-out test) | before | after | difference | also | steps | minutes |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    better = []
    for app in args.apps:
        got = row(app, run_folder(app, args.output_dir))
        if got is None:
            print(f"| {app} | {APPS[app][0]} | not run (or the recipe changed since) | | | | | | |")
            continue
        print(got[0])
        better.append(got[1])
    if args.mixture:
        if not args.no_run:
            recipe = ROOT / "recipes" / "apps" / "mixture.yaml"
            subprocess.run(
                [INSTRUCTKIT, "run", str(recipe), "--output-dir", args.output_dir], check=True, cwd=ROOT
            )
        mixture_table(args.output_dir)
    print(
        f"improved: {sum(better)} of {len(better)} finished apps (after > before on the held-out test split)"
    )


if __name__ == "__main__":
    main()
