"""Near-duplicate engine: signatures estimate Jaccard, datasketch's LSH parameters, clusters against
brute-force exact Jaccard."""

from __future__ import annotations

import random
import unicodedata

import numpy as np
import pytest
from datasketch.lsh import _optimal_param

from instructkit.data.dedup import minhash, near_dup
from instructkit.data.dedup.near_dup import (
    minhash_signatures,
    near_duplicate_clusters,
    normalize_for_dedup,
    optimal_bands,
    shingles,
)

BASE = "Write a short poem about the frozen lighthouse in the style of Emily Dickinson using vivid imagery."


def jaccard(a: str, b: str, ngram: int = 5, unit: str = "char") -> float:
    sa, sb = shingles(a, ngram, unit), shingles(b, ngram, unit)
    return len(sa & sb) / len(sa | sb)


def estimate(sig: np.ndarray, i: int, j: int) -> float:
    return float((sig[i] == sig[j]).mean())


# ---------------------------------------------------------------------------------------------------------
# normalization and shingles


def test_normalize_for_dedup() -> None:
    assert normalize_for_dedup("  Hello,   World!! ") == "hello world"
    assert normalize_for_dedup("don't\tstop—now…") == "don t stop now"
    assert normalize_for_dedup("ＦＵＬＬ width Straße") == "full width strasse"  # NFKC, casefold
    assert normalize_for_dedup("2 + 2 = 4 $") == "2 + 2 = 4 $"  # symbols stay
    assert normalize_for_dedup("?!... ---") == ""
    # the ASCII fast path agrees with the general definition on every ASCII character
    for cp in range(128):
        text = f" Ab{chr(cp)}cD e{chr(cp)}"
        general = unicodedata.normalize("NFKC", text).casefold().translate(minhash._space_table())
        assert normalize_for_dedup(text) == " ".join(general.split()), repr(text)


def test_shingles() -> None:
    assert shingles("Hello, World") == {"hello", "ello ", "llo w", "lo wo", "o wor", " worl", "world"}
    assert shingles("Hi!") == {"hi"}  # shorter than the n-gram: the whole text
    assert shingles("...") == set()
    assert shingles("the cat sat on the mat", 2, "word") == {
        "the cat",
        "cat sat",
        "sat on",
        "on the",
        "the mat",
    }
    with pytest.raises(ValueError):
        shingles("x", unit="byte")


@pytest.mark.parametrize("unit,ngram", [("char", 5), ("char", 3), ("word", 2), ("word", 1)])
def test_shingle_hashes_match_shingle_sets(unit: str, ngram: int) -> None:
    """The engine's 64-bit shingle hashes are the shingle sets, one distinct hash per distinct shingle."""
    texts = [BASE, "Hi", "", "ab ab ab ab ab ab", "Ünïcödé ＦＵＬＬ text, 💡 ideas", "a b", "x" * 40]
    norm = [normalize_for_dedup(t) for t in texts]
    hashes, counts = minhash.shingle_hashes(norm, ngram, unit)
    start = 0
    for text, k in zip(texts, counts.tolist(), strict=True):
        assert len(set(hashes[start : start + k].tolist())) == len(shingles(text, ngram, unit)), text
        start += k


# ---------------------------------------------------------------------------------------------------------
# signatures


def test_signature_estimates_jaccard() -> None:
    texts = [
        BASE,
        BASE.replace("frozen", "frozn"),  # one typo
        BASE.replace("vivid imagery", "bright images"),
        "Write a short poem about the frozen lighthouse.",
        "Explain how photosynthesis works to a ten year old in three sentences.",
    ]
    sig = minhash_signatures(texts, num_perm=128)
    assert sig.shape == (5, 128) and sig.dtype == np.uint32
    for i, j in [(0, 1), (0, 2), (0, 3), (0, 4), (2, 3)]:
        assert abs(estimate(sig, i, j) - jaccard(texts[i], texts[j])) <= 0.1, (i, j)


def test_signature_error_is_binomial() -> None:
    """Over many pairs the estimate is unbiased with the standard error of 128 independent draws."""
    rng = random.Random(3)
    pairs = []
    for _ in range(400):
        base = base_text(rng)
        pairs.append((base, mutate(base, rng, rng.randint(1, 10))))
    texts = [t for p in pairs for t in p]
    sig = minhash_signatures(texts)
    true = np.array([jaccard(a, b) for a, b in pairs])
    est = np.array([estimate(sig, 2 * k, 2 * k + 1) for k in range(len(pairs))])
    mid = (true > 0.05) & (true < 0.95)
    assert mid.sum() > 300
    z = (est - true)[mid] / np.sqrt(true * (1 - true) / 128)[mid]
    assert abs((est - true).mean()) < 0.01
    assert 0.8 < z.std() < 1.2


def test_signatures_deterministic_and_batch_independent() -> None:
    texts = [f"{BASE} Variant number {k}." for k in range(5000)] + ["", "ok"]
    a = minhash_signatures(texts)
    b = minhash_signatures(texts)
    assert np.array_equal(a, b)
    alone = minhash_signatures([texts[4321]])
    assert np.array_equal(alone[0], a[4321])  # a text's signature does not depend on its batch
    assert (a[-2] == 0xFFFFFFFF).all() and not (a[-1] == 0xFFFFFFFF).all()
    assert not np.array_equal(a, minhash_signatures(texts, seed=2))
    # pinned: no salted hash() or platform dependence, so these are the same in every process
    assert minhash_signatures(["hello world"])[0, :4].tolist() == PINNED


PINNED = [213557852, 129936711, 381317998, 522711406]  # "hello world", num_perm 128, seed 1


# ---------------------------------------------------------------------------------------------------------
# LSH parameters


@pytest.mark.parametrize("threshold,num_perm", [(0.5, 128), (0.7, 128), (0.8, 128), (0.9, 64), (0.8, 256)])
def test_optimal_bands_match_datasketch(threshold: float, num_perm: int) -> None:
    assert optimal_bands(threshold, num_perm) == _optimal_param(threshold, num_perm, 0.5, 0.5)


def test_candidate_bands_lean_to_recall() -> None:
    b, r = near_dup._candidate_bands(0.8, 128)
    assert b * r <= 128 and 1 - (1 - 0.8**r) ** b >= 0.95
    b0, r0 = optimal_bands(0.8, 128)
    assert 1 - (1 - 0.8**r0) ** b0 < 0.5  # datasketch's balanced choice misses most pairs at the threshold


# ---------------------------------------------------------------------------------------------------------
# clusters


def test_planted_duplicates_cluster() -> None:
    fifteen = "Please write a friendly email to my landlord asking him to fix the broken sink."
    assert len(fifteen.split()) == 15
    texts = [
        "Explain quantum entanglement to a curious teenager using a simple analogy about dice.",  # 0
        fifteen,  # 1
        "",  # 2
        fifteen.upper(),  # 3: casing
        fifteen.replace(",", "").replace(".", "!!").replace("email", "email,"),  # 4: punctuation
        fifteen.replace("broken", "leaking"),  # 5: one word edited
        "List five healthy breakfast ideas for a busy student who has no time to cook.",  # 6
        "   !!!   ",  # 7: empty after normalization
        fifteen.lower().replace("landlord", "landlrod"),  # 8: casing + typo
        "Explain quantum entanglement to a curious teenager using a simple analogy about coins.",  # 9
    ]
    assert jaccard(fifteen, texts[5]) >= 0.7 and jaccard(texts[0], texts[9]) >= 0.7
    clusters = near_duplicate_clusters(texts)
    assert clusters.dtype == np.int64
    assert clusters.tolist() == [0, 1, 2, 1, 1, 1, 6, 7, 1, 0]
    # without the exact check the same obvious duplicates are found
    assert near_duplicate_clusters(texts, verify=False)[[3, 4, 5, 8]].tolist() == [1, 1, 1, 1]
    # a strict threshold splits the edited pair off but keeps exact-after-normalization copies
    strict = near_duplicate_clusters(texts, threshold=0.95)
    assert strict[[3, 4]].tolist() == [1, 1] and strict[5] == 5 and strict[9] == 9


def test_empty_inputs_and_progress() -> None:
    assert near_duplicate_clusters([]).tolist() == []
    assert near_duplicate_clusters(["", "", "..."]).tolist() == [0, 1, 2]  # empties are never merged
    seen: list[int] = []
    texts = [f"{BASE} {k}" for k in range(5000)] + [BASE, "", BASE.upper()]
    near_duplicate_clusters(texts, progress=seen.append)
    assert sum(seen) == len(texts)


def test_word_unit_and_arguments() -> None:
    texts = [BASE, BASE.replace("vivid", "vivid and"), "Completely unrelated sentence about tax law here."]
    assert near_duplicate_clusters(texts, unit="word", ngram=2).tolist() == [0, 0, 2]
    with pytest.raises(ValueError):
        near_duplicate_clusters(texts, threshold=0)
    with pytest.raises(ValueError):
        near_duplicate_clusters(texts, unit="token")


def test_big_bucket_of_near_copies_is_one_cluster() -> None:
    """Hundreds of near-identical texts share LSH buckets far larger than the pairing window."""
    texts = [f"{BASE} Reference code {k:03d} applies." for k in range(400)] + [
        "Something else entirely, friend."
    ]
    clusters = near_duplicate_clusters(texts, threshold=0.8)
    assert set(clusters[:400].tolist()) == {0} and clusters[400] == 400


def test_exact_check_matches_python_sets() -> None:
    rng = random.Random(1)
    texts = [BASE] + [mutate(BASE, rng, rng.randint(1, 12)) for _ in range(300)]
    norm = [normalize_for_dedup(t) for t in texts]
    i = np.zeros(300, dtype=np.int64)
    j = np.arange(1, 301, dtype=np.int64)
    for threshold in (0.6, 0.75, 0.8, 0.9):
        ok = near_dup._exact_jaccard_ok(norm, i, j, threshold, 5, "char")
        assert ok.tolist() == [jaccard(BASE, texts[k]) >= threshold for k in range(1, 301)]


# ---------------------------------------------------------------------------------------------------------
# recall and precision against brute force

SUBJECTS = "cats, tides, volcanoes, jazz, bees, glaciers, chess, rust, bread, comets, owls, tea, kites".split(
    ", "
)
TASKS = [
    "Write a {adj} poem about {s} for {who}.",
    "Explain how {s} work to {who} in {n} sentences.",
    "List {n} surprising facts about {s} and {t}.",
    "Draft a {adj} email inviting {who} to a talk on {s}.",
    "Compare {s} with {t} in a {adj} paragraph.",
    "Give {n} tips for photographing {s} at night, aimed at {who}.",
]
ADJS = "short funny formal gloomy cheerful strange tender bold quiet wild".split()
WHO = "a child|my boss|a nurse|new students|retired sailors|a chef|city planners|my neighbours".split("|")
EXTRA = ["", " Keep it brief.", " Use simple words.", " Add a title.", " End with a question."]


def base_text(rng: random.Random) -> str:
    s, t = rng.sample(SUBJECTS, 2)
    text = rng.choice(TASKS).format(s=s, t=t, adj=rng.choice(ADJS), who=rng.choice(WHO), n=rng.randint(2, 9))
    return text + rng.choice(EXTRA)


def mutate(text: str, rng: random.Random, edits: int) -> str:
    chars = list(text)
    for _ in range(edits):
        k = rng.randrange(len(chars))
        op = rng.randrange(3)
        if op == 0:
            chars[k] = rng.choice("abcdefghijklmnopqrstuvwxyz")
        elif op == 1 and len(chars) > 20:
            del chars[k]
        else:
            chars.insert(k, rng.choice("abcdefghijklmnopqrstuvwxyz "))
    return "".join(chars)


def variant(text: str, rng: random.Random) -> str:
    kind = rng.randrange(4)
    if kind == 0:
        return text.upper() if rng.random() < 0.5 else text.lower()
    if kind == 1:
        return text.replace(".", "!").replace(",", "") + rng.choice(["", " :)", "?"])
    if kind == 2:
        words = text.split()
        k = rng.randrange(len(words) - 1)
        words[k], words[k + 1] = words[k + 1], words[k]
        return " ".join(words)
    return mutate(text, rng, rng.randint(1, 6))


def generated(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    texts: list[str] = []
    while len(texts) < n:
        base = base_text(rng)
        texts.append(base)
        if rng.random() < 0.4:
            for _ in range(rng.choice([1, 1, 2])):
                texts.append(variant(base if rng.random() < 0.7 else texts[-1], rng))
    rng.shuffle(texts)
    return texts[:n]


def all_pairs_jaccard(texts: list[str]) -> np.ndarray:
    """Exact Jaccard of every pair: intersection counts as a product of 0/1 document-shingle matrices."""
    sets = [shingles(t) for t in texts]
    vocab: dict[str, int] = {}
    for s in sets:
        for g in s:
            vocab.setdefault(g, len(vocab))
    m = np.zeros((len(texts), len(vocab)), dtype=np.float32)
    for d, s in enumerate(sets):
        m[d, [vocab[g] for g in s]] = 1.0
    inter = m @ m.T
    size = m.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return inter / (size[:, None] + size[None, :] - inter)


def components(n: int, edges: np.ndarray) -> np.ndarray:
    parent = list(range(n))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in edges.tolist():
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return np.array([find(x) for x in range(n)])


def test_recall_and_precision_against_brute_force() -> None:
    texts = generated(2000, seed=7)
    threshold = 0.8
    jac = all_pairs_jaccard(texts)
    iu = np.triu_indices(len(texts), 1)
    true_pairs = np.stack(iu, axis=1)[jac[iu] >= threshold]
    assert len(true_pairs) > 300  # the generator planted plenty

    clusters = near_duplicate_clusters(texts, threshold=threshold, verify=True)
    recall = (clusters[true_pairs[:, 0]] == clusters[true_pairs[:, 1]]).mean()
    assert recall >= 0.95

    # no merge without exact evidence: every cluster lies inside one connected component of the
    # brute-force graph of pairs with Jaccard >= threshold, and every two-member cluster is such a pair
    truth = components(len(texts), true_pairs)
    for c in np.unique(clusters):
        members = np.flatnonzero(clusters == c)
        assert len(set(truth[members].tolist())) == 1
        if len(members) == 2:
            assert jac[members[0], members[1]] >= threshold
    # cluster ids are the smallest member
    assert all(clusters[c] == c and np.flatnonzero(clusters == c)[0] == c for c in np.unique(clusters))
