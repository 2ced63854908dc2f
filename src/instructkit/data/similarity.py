"""Self-Instruct's ROUGE-L novelty filter, exact but fast enough for pools of 10^5 instructions.

Self-Instruct (``bootstrap_instructions.py``) scores every new instruction against every seed and accepted
instruction with ``rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)`` — quadratic in the pool.
:class:`SimilarityIndex` gives the same scores and the same decisions while scoring only the pairs that
could matter:

* ROUGE-L F = 2·LCS/(|a|+|b|) and LCS ≤ |multiset intersection of the tokens|, so
  ``2·overlap/(|a|+|b|)`` is an upper bound of the score. An inverted index (token → the pool entries
  holding it, with counts) gives every entry's overlap with the candidate in a few vectorised adds;
  entries whose bound is under the threshold cannot pass it and are never scored. The bound also
  contains the length bound 2·min(|a|,|b|)/(|a|+|b|).
* The survivors are scored exactly: the LCS by ``rapidfuzz.distance.LCSseq`` (a maintained bit-parallel
  implementation) on token-id strings, the F measure computed with rouge-score's own arithmetic
  (precision, recall, 2PR/(P+R)), so the floats are identical, not merely close.

Tokens come from rouge-score's own tokenizer (lowercase, non-alphanumerics to spaces, no stemmer), so
the token sequences are the ones rouge-score scores.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

# Bounds are compared with this slack so a float rounding in the bound never prunes a pair that passes.
_EPS = 1e-9


def rouge_tokens(text: str) -> list[str]:
    """rouge-score's default tokenization without stemming (what Self-Instruct's scorer uses)."""
    from rouge_score import tokenize

    return tokenize.tokenize(text, None)


def rouge_l_f(lcs: int, target_len: int, prediction_len: int) -> float:
    """ROUGE-L F exactly as rouge-score computes it (``_score_lcs`` then ``scoring.fmeasure``), so
    scores are bit-identical to the reference."""
    if not target_len or not prediction_len:
        return 0.0
    precision = lcs / prediction_len
    recall = lcs / target_len
    return 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0


def _lcs(a: str, b: str) -> int:
    from rapidfuzz.distance import LCSseq

    return int(LCSseq.similarity(a, b))


@dataclass
class _Postings:
    """The pool entries holding one token and how often, in arrays that grow by doubling (adds are
    amortised O(1) and a query reads a ready numpy view)."""

    entries: np.ndarray
    counts: np.ndarray
    n: int = 0

    @classmethod
    def empty(cls) -> _Postings:
        return cls(np.empty(4, dtype=np.int64), np.empty(4, dtype=np.int32))

    def append(self, entry: int, count: int) -> None:
        if self.n == len(self.entries):
            self.entries = np.resize(self.entries, 2 * self.n)
            self.counts = np.resize(self.counts, 2 * self.n)
        self.entries[self.n] = entry
        self.counts[self.n] = count
        self.n += 1


class SimilarityIndex:
    """Instructions added so far, queried for the most similar ones by ROUGE-L F (rouge-score's values).

    ``add`` the seeds and each accepted instruction; ask ``too_similar(text)`` before accepting and
    ``most_similar(text, k)`` for what a record keeps about its neighbours.
    """

    def __init__(self, texts: list[str] | None = None):
        self.texts: list[str] = []
        self._seqs: list[str] = []  # token ids as code points: rapidfuzz compares them as strings
        self._vocab: dict[str, int] = {}
        self._postings: dict[int, _Postings] = {}
        self._lens = np.empty(16, dtype=np.int64)
        for text in texts or []:
            self.add(text)

    def __len__(self) -> int:
        return len(self.texts)

    def _encode(self, text: str, grow: bool) -> tuple[str, Counter[int]]:
        ids = []
        for tok in rouge_tokens(text):
            i = self._vocab.get(tok)
            if i is None:
                if not grow:
                    i = -1  # a token no pool entry holds: it matches nothing
                else:
                    i = self._vocab[tok] = len(self._vocab)
            ids.append(i)
        # Unknown tokens get distinct code points that no entry uses, so they never count in an LCS.
        seq = "".join(_char(i) if i >= 0 else _char(len(self._vocab) + k) for k, i in enumerate(ids))
        return seq, Counter(i for i in ids if i >= 0)

    def add(self, text: str) -> int:
        """Add an instruction; returns its position."""
        seq, counts = self._encode(text, grow=True)
        idx = len(self.texts)
        self.texts.append(text)
        self._seqs.append(seq)
        if idx == len(self._lens):
            self._lens = np.resize(self._lens, 2 * idx)
        self._lens[idx] = len(seq)
        for tok, c in counts.items():
            self._postings.setdefault(tok, _Postings.empty()).append(idx, c)
        return idx

    def _bounds(self, seq: str, counts: Counter[int]) -> np.ndarray:
        """Upper bound of the ROUGE-L F of ``seq`` against every entry (2·overlap/(|a|+|b|))."""
        n = len(self.texts)
        overlap = np.zeros(n, dtype=np.int64)
        for tok, k in counts.items():
            p = self._postings.get(tok)
            if p is not None:
                # Each entry appears once per token's postings, so fancy-index += is exact here.
                overlap[p.entries[: p.n]] += np.minimum(p.counts[: p.n], k)
        return 2 * overlap / np.maximum(len(seq) + self._lens[:n], 1)

    def _score(self, seq: str, idx: int) -> float:
        other = self._seqs[idx]
        # target = the new instruction, prediction = the pool entry, as Self-Instruct calls
        # scorer.score(new, existing); the F measure is symmetric anyway.
        return rouge_l_f(_lcs(seq, other), len(seq), len(other))

    def too_similar(self, text: str, threshold: float = 0.7) -> float | None:
        """The highest ROUGE-L F of ``text`` against the pool if it is ≥ ``threshold``, else None.

        Only entries whose bound reaches the threshold are scored (best bound first, stopping once the
        best score found beats every remaining bound)."""
        seq, counts = self._encode(text, grow=False)
        if not seq or not self.texts:
            return None
        bounds = self._bounds(seq, counts)
        cand = np.flatnonzero(bounds >= threshold - _EPS)
        if not len(cand):
            return None
        best = -1.0
        for idx in cand[np.argsort(-bounds[cand], kind="stable")]:
            if bounds[idx] < best - _EPS:
                break
            best = max(best, self._score(seq, int(idx)))
        return best if best >= threshold else None

    def most_similar(self, text: str, k: int = 10) -> list[tuple[str, float]]:
        """The ``k`` pool instructions most similar to ``text`` with their ROUGE-L F, best first (only
        positive scores; ties keep the order of adding). Exact: entries are scored best bound first
        until the k-th best score found is at least every remaining bound."""
        seq, counts = self._encode(text, grow=False)
        if not seq or not self.texts or k <= 0:
            return []
        bounds = self._bounds(seq, counts)
        cand = np.flatnonzero(bounds > 0)
        found: list[tuple[float, int]] = []
        for idx in cand[np.argsort(-bounds[cand], kind="stable")]:
            if len(found) >= k and bounds[idx] < found[k - 1][0] - _EPS:
                break
            score = self._score(seq, int(idx))
            if score > 0:
                found.append((score, int(idx)))
                found.sort(key=lambda t: (-t[0], t[1]))
        return [(self.texts[i], s) for s, i in found[:k]]


def _char(i: int) -> str:
    # Skip the surrogate block so every id is a valid code point.
    return chr(i if i < 0xD800 else i + 0x800)
