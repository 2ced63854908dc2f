"""instructkit's ROUGE-L novelty filter versus exhaustive rouge-score, as Self-Instruct runs it.

    python benchmarks/similarity_filter.py [--pool 50000] [--candidates 2000] [--peer-candidates 20] [--seed 0]

Makes a pool of ``--pool`` instructions in this script (24 templates filled with words drawn from a
seeded list of 3,000 made-up words, one to three per slot, plus 1 or 2 extra clauses: about 10 to 40
tokens), and ``--candidates``
new instructions: a third are planted near-duplicates of pool items (a few words swapped, dropped,
inserted, recased or re-punctuated; many land around the 0.7 threshold), the rest fresh ones from the
same templates (so they share the templates' words with thousands of pool items).

The question for each candidate is Self-Instruct's: is its ROUGE-L F against any pool instruction
≥ 0.7? Both sides answer it from the raw texts:

* instructkit: ``SimilarityIndex`` built from the pool (timed: tokenizing and indexing 50,000 texts),
  then ``too_similar(candidate, 0.7)`` for every candidate;
* rouge-score: ``RougeScorer(["rougeL"], use_stemmer=False).score(candidate, p)`` for every pool item
  ``p`` (Self-Instruct's ``bootstrap_instructions.py`` loop, without its process pool).

Exhaustive rouge-score over 50,000 × 2,000 = 10^8 pairs would take hours, so it runs on a random
subsample of ``--peer-candidates`` candidates (half planted, half fresh) against the full pool; its time
per candidate is extrapolated to all candidates. Decisions and the max scores above the threshold are
checked identical on that subsample (tests/test_similarity.py checks scores on 10,000 pairs and whole
pool queries). Both run in this process, one after the other.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from rouge_score import rouge_scorer  # noqa: E402

from instructkit.data.similarity import SimilarityIndex  # noqa: E402

TEMPLATES = [
    "Write a {a} {n} about the {n2} of {n3}.",
    "Explain how a {n} can {v} the {n2}.",
    "Give three reasons why {n} should {v} {n2}.",
    "Summarize the {a} article about {n} and {n2}.",
    "Classify the {n} as {a} or {a2}.",
    "List five {a} ways to {v} a {n}.",
    "Translate the sentence about the {n} into {n2}.",
    "Describe the {a} {n} that lives near the {n2}.",
    "Compare the {n} and the {n2} in terms of {n3}.",
    "Suggest a name for a {a} {n} that can {v}.",
    "What is the best way to {v} a {a} {n}?",
    "Create a short story in which a {n} learns to {v}.",
    "Rewrite the {n} so that it sounds more {a}.",
    "Generate a list of questions about {n} for a {n2}.",
    "How would you {v} the {n} without a {n2}?",
    "Identify the {a} words in the {n} about {n2}.",
    "Propose a plan to {v} the {n} before the {n2}.",
    "Find the {n} in the text and {v} it.",
    "Tell me whether the {n} is {a} or not.",
    "Make a {a} recipe with {n}, {n2} and {n3}.",
    "Answer the question about {n} using the {n2}.",
    "Give an example of a {a} {n} and explain it.",
    "Argue for or against the {a} {n} in one paragraph.",
    "Design a {a} game where players {v} the {n}.",
]
CLAUSES = [
    "Use at most {k} words.",
    "Keep it {a} and simple.",
    "Include the word {n}.",
    "Answer in {n2} style.",
    "Do not mention the {n}.",
]


def _vocab(rng: random.Random, n: int) -> list[str]:
    syll = [
        "ka",
        "lo",
        "mi",
        "tur",
        "sen",
        "pa",
        "dor",
        "vi",
        "qua",
        "nel",
        "ro",
        "bi",
        "ste",
        "fu",
        "gan",
        "el",
    ]
    words: set[str] = set()
    while len(words) < n:
        words.add("".join(rng.choice(syll) for _ in range(rng.randint(2, 3))))
    return sorted(words)


def _fill(rng: random.Random, words: list[str], template: str) -> str:
    # Each slot takes one to three words, so two fillings of one template rarely reach 0.7.
    pick = {k: " ".join(rng.sample(words, rng.randint(1, 3))) for k in ("a", "a2", "n", "n2", "n3", "v")}
    return template.format(k=rng.randint(5, 90), **pick)


def _instruction(rng: random.Random, words: list[str]) -> str:
    parts = [_fill(rng, words, rng.choice(TEMPLATES))]
    parts += [_fill(rng, words, rng.choice(CLAUSES)) for _ in range(rng.randint(1, 2))]
    return " ".join(parts)


def _near_dup(rng: random.Random, words: list[str], text: str) -> str:
    toks = text.split()
    for _ in range(rng.randint(1, 4)):
        i = rng.randrange(len(toks))
        op = rng.randrange(5)
        if op == 0:
            toks[i] = rng.choice(words)
        elif op == 1 and len(toks) > 3:
            del toks[i]
        elif op == 2:
            toks.insert(i, rng.choice(words))
        elif op == 3:
            toks[i] = toks[i].upper()
        else:
            toks[i] = toks[i] + rng.choice([",", ";", "!"])
    return " ".join(toks)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pool", type=int, default=50_000)
    ap.add_argument("--candidates", type=int, default=2_000)
    ap.add_argument("--peer-candidates", type=int, default=20)
    ap.add_argument("--threshold", type=float, default=0.7)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    rng = random.Random(args.seed)
    words = _vocab(rng, 3000)
    pool = [_instruction(rng, words) for _ in range(args.pool)]
    planted = set(rng.sample(range(args.candidates), args.candidates // 3))
    cands = [
        _near_dup(rng, words, rng.choice(pool)) if i in planted else _instruction(rng, words)
        for i in range(args.candidates)
    ]
    print(
        f"pool: {len(pool):,} instructions; candidates: {len(cands):,} ({len(planted):,} planted near-duplicates)"
    )

    t0 = time.perf_counter()
    index = SimilarityIndex(pool)
    t_build = time.perf_counter() - t0
    ours = [index.too_similar(c, args.threshold) for c in cands]
    ik_seconds = time.perf_counter() - t0
    n_rejected = sum(h is not None for h in ours)
    print(
        f"instructkit: {ik_seconds:.2f} s for all {len(cands):,} candidates ({t_build:.2f} s building the index); "
        f"{n_rejected:,} too similar (≥ {args.threshold})"
    )

    half = args.peer_candidates // 2
    sample = rng.sample(sorted(planted), half) + rng.sample(
        [i for i in range(args.candidates) if i not in planted], args.peer_candidates - half
    )
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    mismatches = 0
    t0 = time.perf_counter()
    peer_max = []
    for i in sample:
        best = max(scorer.score(cands[i], p)["rougeL"].fmeasure for p in pool)
        peer_max.append(best)
    peer_seconds = time.perf_counter() - t0
    for i, best in zip(sample, peer_max, strict=True):
        ref = best if best >= args.threshold else None
        mismatches += ours[i] != ref
    per_cand = peer_seconds / len(sample)
    peer_total = per_cand * len(cands)
    print(
        f"rouge-score (exhaustive): {peer_seconds:.1f} s for {len(sample)} sampled candidates × {len(pool):,} "
        f"= {per_cand:.2f} s per candidate -> {peer_total:,.0f} s extrapolated to {len(cands):,} candidates"
    )
    print(
        f"decisions on the sampled candidates: {len(sample) - mismatches}/{len(sample)} identical "
        f"({sum(b >= args.threshold for b in peer_max)} too similar by rouge-score; max scores equal where ≥ threshold)"
    )
    if mismatches:
        raise SystemExit(f"{mismatches} decisions differ from rouge-score")
    print(
        f"ratio: {peer_total / ik_seconds:.2f}x candidates/s of instructkit's ROUGE-L filter vs rouge-score"
    )


if __name__ == "__main__":
    main()
