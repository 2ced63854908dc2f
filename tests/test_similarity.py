"""The fast ROUGE-L filter gives rouge-score's scores and decisions (Self-Instruct's scorer settings)."""

from __future__ import annotations

import random

import pytest
from rouge_score import rouge_scorer

from instructkit.data.similarity import SimilarityIndex, rouge_l_f, rouge_tokens

WORDS = (
    "write explain the a of summary story poem list give classify sentence review email translate "
    "French code python function sort numbers describe three reasons why what is how to make best"
).split()


def _edit(rng: random.Random, text: str) -> str:
    """A near-duplicate: a few words swapped, dropped, inserted, recased or re-punctuated."""
    words = text.split()
    for _ in range(rng.randint(0, 3)):
        op = rng.randrange(5)
        i = rng.randrange(len(words)) if words else 0
        if op == 0 and words:
            words[i] = rng.choice(WORDS)
        elif op == 1 and len(words) > 1:
            del words[i]
        elif op == 2:
            words.insert(i, rng.choice(WORDS))
        elif op == 3 and words:
            words[i] = words[i].upper()
        elif words:
            words[i] += rng.choice([",", ".", "!", "'s", "-x"])
    return " ".join(words)


def _pairs(n: int, seed: int = 0) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    pairs = []
    for _ in range(n):
        a = " ".join(rng.choice(WORDS) for _ in range(rng.randint(0, 14)))
        b = (
            _edit(rng, a)
            if rng.random() < 0.7
            else " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 14)))
        )
        pairs.append((a, b))
    return pairs


def test_scores_and_decisions_equal_rouge_score_on_10000_pairs() -> None:
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    pairs = _pairs(10_000)
    near = 0
    for a, b in pairs:
        ref = scorer.score(b, a)["rougeL"].fmeasure  # Self-Instruct: scorer.score(new, existing)
        index = SimilarityIndex([a])
        top = index.most_similar(b, k=1)
        ours = top[0][1] if top else 0.0
        assert ours == ref, (a, b)  # bit-identical, not approximately
        hit = index.too_similar(b, 0.7)
        assert (hit is not None) == (ref >= 0.7), (a, b)
        assert hit is None or hit == ref
        near += 0.5 <= ref <= 0.9
    assert near > 2000  # the set straddles the threshold, not only far-apart pairs


def test_pool_queries_match_exhaustive_rouge_score() -> None:
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    rng = random.Random(1)
    pool = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 12))) for _ in range(300)]
    index = SimilarityIndex(pool)
    for _ in range(60):
        q = _edit(rng, rng.choice(pool)) if rng.random() < 0.5 else " ".join(rng.sample(WORDS, 6))
        ref = [scorer.score(q, p)["rougeL"].fmeasure for p in pool]
        best = max(ref)
        hit = index.too_similar(q, 0.7)
        assert (hit is not None) == (best >= 0.7) and (hit is None or hit == best)
        top = index.most_similar(q, k=5)
        assert [s for _, s in top] == sorted((s for s in ref if s > 0), reverse=True)[:5]
        assert all(ref[pool.index(t)] == s for t, s in top)


def test_tokenization_is_rouge_scores() -> None:
    assert rouge_tokens("Write a POEM, about cats' toys!") == ["write", "a", "poem", "about", "cats", "toys"]
    assert rouge_l_f(0, 3, 4) == 0.0 and rouge_l_f(2, 0, 3) == 0.0
    index = SimilarityIndex(["Write a poem about cats."])
    assert index.too_similar("¿¡ !!") is None and index.most_similar("") == []
    assert index.most_similar("write a poem about cats", k=3) == [("Write a poem about cats.", 1.0)]
    # 4 of 5 tokens in order: F = 0.8 (rouge-score's float), over 0.7, under 0.9.
    ref = rouge_scorer.RougeScorer(["rougeL"]).score("Write a poem about dogs.", "Write a poem about cats.")
    assert index.too_similar("Write a poem about dogs.") == ref["rougeL"].fmeasure
    assert index.too_similar("Write a poem about dogs.", threshold=0.9) is None


@pytest.mark.parametrize("threshold", [0.5, 0.7, 0.9])
def test_threshold_is_inclusive(threshold: float) -> None:
    # 7 of 10 shared tokens in order: F = 0.7 exactly in rouge-score's arithmetic.
    a = "a b c d e f g h i j"
    b = "a b c d e f g x y z"
    ref = rouge_scorer.RougeScorer(["rougeL"]).score(b, a)["rougeL"].fmeasure
    hit = SimilarityIndex([a]).too_similar(b, threshold)
    assert (hit is not None) == (ref >= threshold)
