"""Near-duplicate clusters of short texts: MinHash signatures, banded LSH, exact Jaccard check.

Every step runs over all documents at once with numpy; the only per-document Python is normalization:

1. :func:`normalize_for_dedup` each text; texts equal after normalization are merged right away (one
   dict) and only the first of them is hashed. A text empty after normalization stays alone.
2. Shingles (:func:`shingles`) are character n-grams (``unit="char"``) or word n-grams (``unit="word"``)
   of the normalized text. Each is hashed once to 64 bits with a stable hash computed for all shingles
   of a chunk of texts together (a multiply/xor fold of its code points or word hashes, then
   MurmurHash3's ``fmix64``): the same in every process, unlike Python's salted ``hash()``.
3. MinHash: hash function ``k`` maps a shingle's 32-bit key ``x`` (the top half of its hash) to the high
   32 bits of ``(a_k * x + b_k) mod 2**64`` with random 64-bit ``a_k, b_k`` (Dietzfelbinger's
   multiply-add-shift, strongly universal for 32-bit keys; unlike ``mod 2**32`` affine maps its
   estimates of low similarities are unbiased). They are applied to ``(num_perm, 8192)`` blocks of
   shingles and ``np.minimum.reduceat`` takes the per-document minima; chunks of texts run on a few
   threads (numpy releases the GIL). Signatures are ``(n, num_perm)`` uint32.
4. LSH: each band of ``r`` signature values is folded to one 64-bit key per document; keys are sorted
   and equal neighbours are candidate pairs (a document is paired with up to the next
   ``_BUCKET_WINDOW`` members of its bucket: every pair of a bucket up to that size, a connected band
   of pairs beyond it, so thousands of near-copies stay linear). With ``verify=False`` the bands are
   :func:`optimal_bands`, datasketch's choice, and every candidate pair is merged, like ``MinHashLSH``.
5. With ``verify=True`` (the default) the exact check provides the precision, so the bands lean to
   recall (:func:`_candidate_bands`: at threshold 0.8 and 128 permutations, 18 bands of 7 rows find a
   pair of Jaccard 0.8 with probability 0.986, where datasketch's 9 x 13 find it with 0.40); candidates
   whose signature agreement is more than 4 standard errors below the threshold are dropped, and the
   rest are merged only if the exact Jaccard of their shingle sets (64-bit shingle hashes: exact up to
   a 2**-64 collision) is ``>= threshold``.
6. Clusters are the connected components of the merged pairs (vectorized union-find: min-label
   propagation with pointer jumping); a cluster's id is its smallest index.

Hand-written instead of datasketch because datasketch hashes each shingle with SHA-1 in a Python loop,
applies the permutations one document at a time, and inserts and queries ``MinHashLSH`` one document at
a time through dicts; ``benchmarks/near_dup.py`` measures ~20x more documents per second here at 200,000
short instructions (and recall 0.9995 / precision 0.97 against datasketch's 0.91 / 0.64 at 0.8).

Defaults, for short instructions (5 to 30 words): character 5-grams of the normalized text, 128
permutations. Measured with the benchmark's generator (50,000 documents), share of planted
near-duplicates (casing, punctuation, typos, swapped/moved/inserted/deleted words) merged vs share of
near misses (one slot of the template changed, e.g. another topic) merged, at threshold 0.7 / 0.8:

=============  ===============  ===============
shingles       duplicates       near misses
=============  ===============  ===============
char 3-grams   0.99 / 0.96      0.75 / 0.43
char 4-grams   0.98 / 0.93      0.68 / 0.37
char 5-grams   0.95 / 0.87      0.63 / 0.34
char 6-grams   0.92 / 0.82      0.57 / 0.30
word 1-grams   0.94 / 0.88      0.86 / 0.61
word 2-grams   0.80 / 0.68      0.63 / 0.29
word 3-grams   0.69 / 0.55      0.38 / 0.12
=============  ===============  ===============

Word n-grams do badly on short texts: a 15-word instruction has only 13 word 3-grams and one typo
replaces 3 of them (Jaccard 10/16 = 0.63; typo variants merged at 0.7: 0.32 with word 3-grams, 0.86
with char 5-grams), and single words (a bag of words) cannot tell a new topic from a reworded one.
Character 4- and 5-grams separate the two groups best; 5 merges fewer near misses, makes fewer
candidates (shorter n-grams are shared by unrelated texts) and is the usual choice. With 128
permutations a signature estimates a Jaccard with standard error <= 0.045; the exact check removes
the estimate's errors from the result, so more permutations would only cost time.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import numpy as np

from instructkit.data.dedup.minhash import (
    _DOC_CHUNK,
    _MUL,
    _U64,
    check_params,
    minhash_signatures,
    normalize_for_dedup,
    shingle_hashes,
    shingles,
    signatures,
)

__all__ = [
    "band_key",
    "bucket_pairs",
    "components",
    "lsh_bands",
    "minhash_signatures",
    "near_duplicate_clusters",
    "normalize_for_dedup",
    "optimal_bands",
    "shingles",
    "signatures",
    "verify_pairs",
]


_BUCKET_WINDOW = 32  # a document is paired with up to this many following members of its LSH bucket
_CANDIDATE_RECALL = 0.95  # with verify: P(a pair at exactly the threshold becomes a candidate) at least this
_PREFILTER_Z = 4.0  # with verify: drop candidates whose signature estimate is this many sd under threshold


# ---------------------------------------------------------------------------------------------------------
# parameters


@functools.lru_cache(maxsize=256)
def optimal_bands(threshold: float, num_perm: int) -> tuple[int, int]:
    """``(b, r)``, ``b * r <= num_perm``, minimizing ``0.5 * P(false positive) + 0.5 * P(false negative)``.

    Same definition and same search order as ``datasketch.lsh._optimal_param(threshold, num_perm, 0.5,
    0.5)``: the false-positive probability is the integral over ``s`` in ``[0, threshold]`` of
    ``1 - (1 - s**r)**b`` and the false-negative one the integral of ``(1 - s**r)**b`` over
    ``[threshold, 1]``; the first ``(b, r)`` in ``b``-then-``r`` order with the smallest error wins. The
    integrands are polynomials of degree ``b * r <= num_perm``, so Gauss-Legendre quadrature with
    ``num_perm // 2 + 1`` nodes integrates them exactly (no scipy needed).
    """
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must be in (0, 1], not {threshold}")
    if num_perm < 1:
        raise ValueError(f"num_perm must be positive, not {num_perm}")
    nodes, weights = np.polynomial.legendre.leggauss(num_perm // 2 + 1)
    # map [-1, 1] onto [0, t] (false positives) and [t, 1] (false negatives)
    s_fp = (nodes + 1.0) * (threshold / 2.0)
    s_fn = threshold + (nodes + 1.0) * ((1.0 - threshold) / 2.0)
    w_fp = weights * (threshold / 2.0)
    w_fn = weights * ((1.0 - threshold) / 2.0)
    best, opt = np.inf, (0, 0)
    for b in range(1, num_perm + 1):
        r = np.arange(1, num_perm // b + 1, dtype=np.float64)[:, None]
        fp = (1.0 - (1.0 - s_fp**r) ** b) @ w_fp
        fn = ((1.0 - s_fn**r) ** b) @ w_fn
        err = fp * 0.5 + fn * 0.5
        k = int(np.argmin(err))  # first minimum, like datasketch's strict "<" scan
        if err[k] < best:
            best, opt = float(err[k]), (b, k + 1)
    return opt


def _candidate_bands(threshold: float, num_perm: int) -> tuple[int, int]:
    """LSH bands when candidates are verified: the most selective ``(num_perm // r, r)`` that still makes a
    pair of Jaccard exactly ``threshold`` a candidate with probability >= ``_CANDIDATE_RECALL``.

    :func:`optimal_bands` balances false positives against false negatives because plain LSH merges
    every candidate; at threshold 0.8 with 128 permutations its (9, 13) finds a pair of Jaccard 0.8
    with probability 0.40 and one of 0.85 with 0.69. With the exact check false positives only cost
    verification time, so the bands lean to recall: (18, 7) finds 0.8 with probability 0.986.
    """
    _, r_opt = optimal_bands(threshold, num_perm)
    for r in range(r_opt, 0, -1):
        b = num_perm // r
        if 1.0 - (1.0 - threshold**r) ** b >= _CANDIDATE_RECALL:
            return b, r
    return num_perm, 1


def lsh_bands(threshold: float, num_perm: int, verify: bool = True) -> tuple[int, int]:
    """The LSH ``(bands, rows)``: :func:`_candidate_bands` when candidates are verified, else
    :func:`optimal_bands` (every candidate merged, as datasketch's ``MinHashLSH``)."""
    return _candidate_bands(threshold, num_perm) if verify else optimal_bands(threshold, num_perm)


# ---------------------------------------------------------------------------------------------------------
# LSH and clusters


def band_key(sig: np.ndarray, band: int, rows: int) -> np.ndarray:
    """One 64-bit LSH key per row of ``sig`` for ``band`` (signature columns ``band*rows`` up to the next
    band): rows with equal keys share the band's bucket."""
    key = np.full(
        len(sig), (band * 0x2545F4914F6CDD1D + 0x243F6A8885A308D3) & 0xFFFFFFFFFFFFFFFF, dtype=np.uint64
    )
    for c in range(band * rows, (band + 1) * rows):
        key ^= sig[:, c]
        key *= _MUL
        key ^= key >> _U64(29)
    return key


def bucket_pairs(key: np.ndarray, ids: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Candidate ``(ids[a], ids[b])`` pairs of one band: members of a bucket (equal ``key``) in increasing
    ``ids`` order, each paired with up to the next ``_BUCKET_WINDOW`` members. ``ids`` must be increasing
    (the Ray engine passes global record numbers of a hash partition, which holds whole buckets)."""
    order = np.argsort(key, kind="stable")  # stable: members of a bucket in increasing id order
    sk = key[order]
    out = []
    for d in range(1, _BUCKET_WINDOW + 1):
        same = sk[d:] == sk[:-d]
        if not same.any():
            break
        out.append((ids[order[:-d][same]], ids[order[d:][same]]))
    return out


def _candidate_pairs(sig: np.ndarray, bands: int, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Unique ``(i, j)``, ``i < j``, row pairs of ``sig`` sharing the key of at least one band."""
    n = len(sig)
    ids = np.arange(n, dtype=np.int64)
    codes = []
    for band in range(bands):
        codes += [i * n + j for i, j in bucket_pairs(band_key(sig, band, rows), ids)]
    if not codes:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty
    pair = np.sort(np.concatenate(codes))
    pair = pair[np.r_[True, pair[1:] != pair[:-1]]]  # unique (np.unique is slower on large int arrays)
    return pair // n, pair % n


def _agreement_ok(sig: np.ndarray, i: np.ndarray, j: np.ndarray, threshold: float) -> np.ndarray:
    """Boolean mask: the signature estimate of the Jaccard of rows ``i`` and ``j`` is not far below
    ``threshold`` (``_PREFILTER_Z`` standard errors of the estimate at the threshold; a pair at the
    threshold is dropped with probability ~3e-5). A cheap vectorized filter before the exact check."""
    num_perm = sig.shape[1]
    floor = threshold - _PREFILTER_Z * np.sqrt(threshold * (1.0 - threshold) / num_perm)
    need = int(np.ceil(max(floor, 0.0) * num_perm - 1e-9))
    ok = np.empty(len(i), dtype=bool)
    step = max(1, (1 << 22) // num_perm)
    for s in range(0, len(i), step):
        agree = np.count_nonzero(sig[i[s : s + step]] == sig[j[s : s + step]], axis=1)
        ok[s : s + step] = agree >= need
    return ok


def verify_pairs(
    sig: np.ndarray,
    norm: Sequence[str],
    i: np.ndarray,
    j: np.ndarray,
    threshold: float,
    ngram: int,
    unit: str,
) -> np.ndarray:
    """Boolean mask of the candidate pairs ``(i, j)`` (rows of ``sig`` and ``norm``, the normalized texts)
    that merge: the signature prefilter (:func:`_agreement_ok`), then the exact Jaccard of the survivors
    (:func:`_exact_jaccard_ok`). :func:`near_duplicate_clusters` runs the two itself, freeing the
    signatures in between; the Ray engine's verify tasks call this."""
    ok = _agreement_ok(sig, i, j, threshold)
    sel = np.flatnonzero(ok)
    if len(sel):
        ok[sel] = _exact_jaccard_ok(norm, i[sel], j[sel], threshold, ngram, unit)
    return ok


def components(n: int, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Label of each of ``n`` nodes = the smallest node of its connected component (edges ``i - j``)."""
    labels = np.arange(n, dtype=np.int64)
    while len(i):
        li, lj = labels[i], labels[j]
        differ = li != lj
        if not differ.any():
            break
        i, j, li, lj = i[differ], j[differ], li[differ], lj[differ]
        low = np.minimum(li, lj)
        np.minimum.at(labels, li, low)  # hook each root to the smallest root it touches
        np.minimum.at(labels, lj, low)
        while True:  # pointer jumping until every label is a root
            nxt = labels[labels]
            if np.array_equal(nxt, labels):
                break
            labels = nxt
    return labels


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenated ``arange(s, s + k)`` for each ``(s, k)``."""
    offsets = np.zeros(len(lengths), dtype=np.int64)
    np.cumsum(lengths[:-1], out=offsets[1:])
    return np.arange(int(lengths.sum()), dtype=np.int64) + np.repeat(starts - offsets, lengths)


def _sort_segments(values: np.ndarray, lengths: np.ndarray) -> None:
    """Sort ``values`` in place within each consecutive segment of the given lengths."""
    start = 0
    for k in lengths.tolist():
        values[start : start + k].sort()
        start += k


def _exact_jaccard_ok(
    norm: Sequence[str], i: np.ndarray, j: np.ndarray, threshold: float, ngram: int, unit: str
) -> np.ndarray:
    """Boolean mask: exact Jaccard of the shingle sets of ``norm[i]`` and ``norm[j]`` >= threshold.

    Sets are the 64-bit shingle hashes of each text, deduplicated (sort each text's hashes, drop
    repeats). For a pair, its two sets are concatenated and sorted; a value present in both is the
    only way two neighbours are equal, so ``|A & B|`` is the count of equal neighbours and
    ``|A | B| = |A| + |B| - |A & B|``. Pairs go in slices of ~1M values to bound memory.
    """
    both = np.concatenate([i, j])
    order = np.argsort(both, kind="stable")
    sb = both[order]
    first = np.r_[True, sb[1:] != sb[:-1]]
    docs = sb[first]
    inv = np.empty(len(both), dtype=np.int64)
    inv[order] = np.cumsum(first) - 1
    a, b = inv[: len(i)], inv[len(i) :]

    docs = docs.tolist()
    set_parts, size_parts = [], []
    for s in range(0, len(docs), _DOC_CHUNK):  # in chunks: hashing temporaries stay small
        hashes, counts = shingle_hashes([norm[d] for d in docs[s : s + _DOC_CHUNK]], ngram, unit)
        _sort_segments(hashes, counts)
        starts = np.zeros(len(counts), dtype=np.int64)
        np.cumsum(counts[:-1], out=starts[1:])
        keep = np.ones(len(hashes), dtype=bool)
        keep[1:] = hashes[1:] != hashes[:-1]
        keep[starts] = True  # every involved text has >= 1 shingle
        set_parts.append(hashes[keep])
        size_parts.append(np.add.reduceat(keep, starts, dtype=np.int64))
    sets, size = np.concatenate(set_parts), np.concatenate(size_parts)
    del set_parts
    set_start = np.zeros(len(size), dtype=np.int64)
    np.cumsum(size[:-1], out=set_start[1:])

    ok = np.empty(len(i), dtype=bool)
    per_pair = size[a] + size[b]
    bounds = np.searchsorted(np.cumsum(per_pair), np.arange(1 << 20, int(per_pair.sum()), 1 << 20))
    for lo, hi in zip(np.r_[0, bounds].tolist(), np.r_[bounds, len(i)].tolist(), strict=True):
        if lo == hi:
            continue
        pa, pb = a[lo:hi], b[lo:hi]
        lengths = np.stack([size[pa], size[pb]], axis=1).ravel()  # A then B, pair by pair
        both_sets = sets[_ranges(np.stack([set_start[pa], set_start[pb]], axis=1).ravel(), lengths)]
        seg = lengths[0::2] + lengths[1::2]
        _sort_segments(both_sets, seg)
        seg_start = np.zeros(len(seg), dtype=np.int64)
        np.cumsum(seg[:-1], out=seg_start[1:])
        equal = np.zeros(len(both_sets), dtype=bool)
        equal[1:] = both_sets[1:] == both_sets[:-1]
        equal[seg_start] = False
        inter = np.add.reduceat(equal, seg_start, dtype=np.int64)
        ok[lo:hi] = inter / (seg - inter) >= threshold
    return ok


def near_duplicate_clusters(
    texts: Sequence[str],
    threshold: float = 0.7,
    num_perm: int = 128,
    ngram: int = 5,
    unit: str = "char",
    seed: int = 1,
    verify: bool = True,
    progress: Callable[[int], object] | None = None,
) -> np.ndarray:
    """Cluster id of each text: the smallest index of its near-duplicate cluster (int64).

    A text that duplicates nothing has its own index. Texts equal after :func:`normalize_for_dedup`
    are always one cluster. Other pairs become candidates when their MinHash signatures share an LSH
    band. With ``verify`` (default) a candidate pair is merged only if the exact Jaccard of its shingle
    sets (:func:`shingles`) is ``>= threshold``, and since that check gives the precision, the bands are
    chosen for recall (a pair exactly at the threshold is a candidate with probability >= 0.95). Without
    it the bands are ``optimal_bands(threshold, num_perm)`` and every candidate pair is merged, like
    datasketch's ``MinHashLSH``. Clusters are the connected components of the merged pairs, so two
    members of one cluster can be less similar than ``threshold`` through a chain. A text that is empty
    after normalization is never merged. ``progress``, if given, is called with a number of texts done
    (the calls sum to ``len(texts)``).
    """
    check_params(ngram, unit, num_perm, threshold)
    n = len(texts)
    norm = [normalize_for_dedup(t) for t in texts]
    first: dict[str, int] = {}
    uniq: list[int] = []
    dup_i: list[int] = []
    dup_j: list[int] = []
    for idx, t in enumerate(norm):
        if not t:
            continue
        f = first.setdefault(t, idx)
        if f == idx:
            uniq.append(idx)
        else:
            dup_i.append(f)
            dup_j.append(idx)
    if progress is not None and len(uniq) < n:
        progress(n - len(uniq))  # empty and exact duplicates need no signature
    uniq_norm = [norm[k] for k in uniq]
    sig = signatures(uniq_norm, num_perm, ngram, unit, seed, progress)
    bands, rows = lsh_bands(threshold, num_perm, verify)
    ci, cj = _candidate_pairs(sig, bands, rows)
    if verify and len(ci):
        ok = _agreement_ok(sig, ci, cj, threshold)
        ci, cj = ci[ok], cj[ok]
    del sig
    if verify and len(ci):
        ok = _exact_jaccard_ok(uniq_norm, ci, cj, threshold, ngram, unit)
        ci, cj = ci[ok], cj[ok]
    uniq_arr = np.asarray(uniq, dtype=np.int64)
    i = np.concatenate([np.asarray(dup_i, dtype=np.int64), uniq_arr[ci]])
    j = np.concatenate([np.asarray(dup_j, dtype=np.int64), uniq_arr[cj]])
    return components(n, i, j)
