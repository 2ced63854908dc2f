"""The applications against a plain baseline at equal budget: HF ``Trainer`` for the encoder heads, TRL's
``SFTTrainer`` for generation, in one run.

    python benchmarks/app_baselines.py [--apps classification ner summarization] [--reuse-runs runs]

For each application, instructkit runs its recipe (``recipes/apps/<app>-minilm.yaml`` for the heads,
``recipes/apps/<app>.yaml`` for generation) into a temporary folder, and the baseline trains the same
model on the same rows with the same hyperparameters (learning rate, batch, epochs, max_length, seed,
schedule, warmup; LoRA's rank, alpha, dropout and target modules) written as a plain script of that
library would be: no curation, no early stopping, no packing. Both are scored on the same held-out test
rows with the same metric:

* ``classification``: MiniLM sequence classification on the Poem Sentiment sample; accuracy (sklearn).
* ``ner``: MiniLM token classification on the Universal NER sample; seqeval entity F1 (seqeval).
* ``summarization``: LoRA SFT of SmolLM2-135M-Instruct on the SciTLDR sample's templated records
  (the recipe's template stage output, so the prompts are identical), TRL given them as conversational
  prompt/completion pairs (loss on the completion only, as instructkit's is on the assistant turn);
  the baseline's adapter is merged and scored by ``instructkit eval`` on the recipe's held-out file, the
  same greedy decoding and ROUGE as the recipe's "after".

What differs is what instructkit adds by default: the curated validation split (5% of the training rows,
held out of training) and, for the heads, early stopping on it with the best epoch kept; for generation,
packing and bf16 autocast where the CPU has it. The last line is instructkit's score over the baseline's
on the last application run (higher is better for instructkit); every application prints its own line.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).parent.parent
APPS = ("classification", "ner", "summarization")
INSTRUCTKIT = str(Path(sys.executable).parent / "instructkit")


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def run_instructkit(recipe: Path, out: Path) -> tuple[dict, float, Path]:
    """Run the recipe into ``out``; return its after-metrics, the seconds it took and its run folder."""
    t0 = time.perf_counter()
    cmd = [INSTRUCTKIT, "run", str(recipe), "--output-dir", str(out)]
    subprocess.run(cmd, check=True, cwd=ROOT)
    name = yaml.safe_load(recipe.read_text())["name"]
    run = out / name
    return json.loads((run / "eval" / "after.json").read_text())["metrics"], time.perf_counter() - t0, run


def train_args(out: Path, train_cfg: dict):
    from transformers import TrainingArguments

    o = train_cfg["optim"]
    return TrainingArguments(
        output_dir=str(out),
        learning_rate=float(o["lr"]),
        per_device_train_batch_size=int(o["batch_size"]),
        num_train_epochs=float(o["epochs"]),
        weight_decay=float(o.get("weight_decay", 0.0)),
        warmup_steps=float(o.get("warmup_ratio", 0.0)),  # a float below 1 is a ratio of the steps
        lr_scheduler_type=o.get("schedule", "linear"),
        seed=int(train_cfg.get("seed", 0)),
        save_strategy="no",
        eval_strategy="no",
        report_to=[],
        use_cpu=True,
        disable_tqdm=True,
    )


def resolved_train_config(recipe: Path) -> dict:
    """The training config the recipe runs (its train file with ``train_overrides`` applied)."""
    from instructkit.config import set_dotted

    r = yaml.safe_load(recipe.read_text())
    cfg = yaml.safe_load((ROOT / r["train"]).read_text()) if isinstance(r["train"], str) else dict(r["train"])
    for k, v in (r.get("train_overrides") or {}).items():
        set_dotted(cfg, k, v)
    return cfg


def fit(auto_class: str, names: list[str], cfg: dict, train_ds, collator_class: str, out: Path):
    """A plain HF Trainer run of the MiniLM head: the model with a new head sized to ``names``; returns
    (trainer, tokenizer path)."""
    import transformers

    from instructkit.models import resolve

    path = resolve(cfg["model"]).path
    model = getattr(transformers, auto_class).from_pretrained(
        path,
        num_labels=len(names),
        id2label=dict(enumerate(names)),
        label2id={n: i for i, n in enumerate(names)},
    )
    tok = transformers.AutoTokenizer.from_pretrained(path)
    collator = getattr(transformers, collator_class)(tok)
    trainer = transformers.Trainer(
        model=model, args=train_args(out, cfg), train_dataset=train_ds, data_collator=collator
    )
    trainer.train()
    return trainer


def tokenizer_of(cfg: dict):
    from transformers import AutoTokenizer

    from instructkit.models import resolve

    return AutoTokenizer.from_pretrained(resolve(cfg["model"]).path)


def baseline_classification(app_dir: Path, cfg: dict, out: Path) -> dict:
    import numpy as np
    from datasets import Dataset
    from sklearn.metrics import accuracy_score, f1_score

    train, test = read_jsonl(app_dir / "train.jsonl"), read_jsonl(app_dir / "test.jsonl")
    names = sorted({r["label"] for r in train})
    tok, ml = tokenizer_of(cfg), int(cfg["data"]["max_length"])

    def encode(rows):
        enc = tok([r["text"] for r in rows], truncation=True, max_length=ml)
        return Dataset.from_dict({**enc, "labels": [names.index(r["label"]) for r in rows]})

    trainer = fit(
        "AutoModelForSequenceClassification", names, cfg, encode(train), "DataCollatorWithPadding", out
    )
    logits = trainer.predict(encode(test)).predictions
    guess = np.argmax(logits, axis=-1)
    gold = [names.index(r["label"]) for r in test]
    return {
        "accuracy": float(accuracy_score(gold, guess)),
        "macro_f1": float(f1_score(gold, guess, average="macro")),
    }


def baseline_ner(app_dir: Path, cfg: dict, out: Path) -> dict:
    import numpy as np
    from datasets import Dataset
    from seqeval.metrics import f1_score

    train, test = read_jsonl(app_dir / "train.jsonl"), read_jsonl(app_dir / "test.jsonl")
    types = sorted({t[2:] for r in train for t in r["tags"] if t != "O"})
    names = ["O"] + [f"{p}-{t}" for t in types for p in ("B", "I")]
    tok, ml = tokenizer_of(cfg), int(cfg["data"]["max_length"])

    def encode(rows):
        enc = tok([r["tokens"] for r in rows], is_split_into_words=True, truncation=True, max_length=ml)
        labels = []
        for i, r in enumerate(rows):  # the first sub-token of each word carries its tag, the rest -100
            prev, row = None, []
            for w in enc.word_ids(i):
                row.append(-100 if w is None or w == prev else names.index(r["tags"][w]))
                prev = w
            labels.append(row)
        return Dataset.from_dict({**enc, "labels": labels}), enc

    ds, _ = encode(train)
    trainer = fit(
        "AutoModelForTokenClassification", names, cfg, ds, "DataCollatorForTokenClassification", out
    )
    test_ds, enc = encode(test)
    logits = trainer.predict(test_ds).predictions
    y_true, y_pred = [], []
    for i, r in enumerate(test):
        tags, seen = ["O"] * len(r["tokens"]), set()
        for pos, w in enumerate(enc.word_ids(i)):
            if w is not None and w not in seen:
                seen.add(w)
                tags[w] = names[int(np.argmax(logits[i][pos]))]
        y_true.append(r["tags"])
        y_pred.append(tags)
    return {"f1": float(f1_score(y_true, y_pred))}


def baseline_summarization(run: Path, cfg: dict, out: Path) -> dict:
    """TRL SFTTrainer + PEFT LoRA on the recipe's templated training records; merged, then scored by
    ``instructkit eval`` on the recipe's held-out file with the recipe's decoding."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from instructkit.models import prepare

    path = prepare(cfg["model"])
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    rows = read_jsonl(run / "template" / "train.jsonl")
    pairs = [{"prompt": r["messages"][:-1], "completion": r["messages"][-1:]} for r in rows]
    o, m = cfg["optim"], cfg["method"]
    args = SFTConfig(
        output_dir=str(out / "trl"),
        per_device_train_batch_size=int(o["batch_size"]),
        num_train_epochs=float(o["epochs"]),
        learning_rate=float(o["lr"]),
        lr_scheduler_type=o.get("schedule", "linear"),
        warmup_steps=float(o.get("warmup_ratio", 0.0)),  # a float below 1 is a ratio of the steps
        max_length=int(cfg["data"]["max_length"]),
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        seed=int(cfg.get("seed", 0)),
        disable_tqdm=True,
    )
    lora = LoraConfig(
        r=m["r"],
        lora_alpha=m["alpha"],
        lora_dropout=m["dropout"],
        target_modules=m["target_modules"],
        task_type="CAUSAL_LM",
    )
    trainer = SFTTrainer(
        model=model, args=args, train_dataset=Dataset.from_list(pairs), processing_class=tok, peft_config=lora
    )
    trainer.train()
    merged = trainer.model.merge_and_unload()
    folder = out / "trl-merged"
    merged.save_pretrained(folder)
    tok.save_pretrained(folder)
    recipe = yaml.safe_load((run / "recipe.yaml").read_text())
    ev = recipe["eval"]
    cmd = [
        INSTRUCTKIT, "eval", "-m", str(folder), "-d", str(run / "template" / "test.jsonl"),
        "-o", str(out / "trl-eval"), "--max-new-tokens", str(ev["max_new_tokens"]), "--batch-size", str(ev["batch_size"]),
    ]  # fmt: skip
    subprocess.run(cmd, check=True, cwd=ROOT)
    return json.loads((out / "trl-eval" / "eval" / "results.json").read_text())["metrics"]


def reused_run(recipe: Path, runs: Path) -> tuple[dict, float, Path] | None:
    """instructkit's side from a finished run of the same recipe under ``runs`` (``benchmarks/apps.py``'s
    staleness check: its recipe.yaml must equal the recipe file): (after-metrics, seconds, run folder)."""
    sys.path.insert(0, str(Path(__file__).parent))
    from apps import finished

    folder = runs / yaml.safe_load(recipe.read_text())["name"]
    got = finished(recipe, folder)
    return (got["after"], got["minutes"] * 60, folder) if got else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--apps", nargs="+", choices=APPS, default=list(APPS))
    ap.add_argument(
        "--reuse-runs",
        type=Path,
        default=None,
        help="Take instructkit's side from finished runs of the same recipes in this folder (e.g. runs/, "
        "as `instructkit run` or benchmarks/apps.py left them) instead of running them again; a run whose "
        "recipe changed since is run again.",
    )
    args = ap.parse_args()
    line = ""
    with tempfile.TemporaryDirectory(prefix="ik-apps-") as tmp:
        for app in args.apps:
            out = Path(tmp) / app
            recipe = (
                ROOT
                / "recipes"
                / "apps"
                / (f"{app}-minilm.yaml" if app != "summarization" else f"{app}.yaml")
            )
            cfg = resolved_train_config(recipe)
            got = reused_run(recipe, args.reuse_runs) if args.reuse_runs else None
            if got:
                print(f"{app}: instructkit's side from {got[2]} (finished, same recipe)", flush=True)
            ours, ours_s, run = got or run_instructkit(recipe, out)
            t0 = time.perf_counter()
            if app == "classification":
                peer, key, peer_key = (
                    baseline_classification(ROOT / "examples/data/apps/classification", cfg, out / "hf"),
                    "accuracy",
                    "accuracy",
                )
                name = "HF Trainer"
            elif app == "ner":
                peer, key, peer_key = (
                    baseline_ner(ROOT / "examples/data/apps/ner", cfg, out / "hf"),
                    "f1",
                    "f1",
                )
                name = "HF Trainer"
            else:
                peer, key, peer_key = (
                    baseline_summarization(run, cfg, out),
                    "summarization.rougeL",
                    "summarization.rougeL",
                )
                name = "TRL SFTTrainer"
            peer_s = time.perf_counter() - t0
            a, b = float(ours[key]), float(peer[peer_key])
            print(f"{app}: instructkit {key} {a:.4f} in {ours_s / 60:.1f} min (whole recipe, both evals); "
                  f"{name} {b:.4f} in {peer_s / 60:.1f} min (training + test)", flush=True)  # fmt: skip
            line = f"ratio: {a / b if b else float('inf'):.2f}x {app} held-out {key} vs {name}"
            print(line, flush=True)


if __name__ == "__main__":
    main()
