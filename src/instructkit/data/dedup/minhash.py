"""The first half of near-duplicate detection (``near_dup.py`` has the design and the measurements):
normalising a text, its shingles hashed to 64 bits with a stable hash, and MinHash signatures over all
documents at once (numpy, a few threads: numpy releases the GIL). ``near_dup.py`` bands the signatures,
finds candidate pairs and checks them."""

from __future__ import annotations

import functools
import os
import sys
import threading
import unicodedata
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from hashlib import blake2b

import numpy as np

_U64 = np.uint64
_MUL = _U64(0x9E3779B97F4A7C15)  # odd 64-bit multiplier of the shingle and band-key folds
_FMIX1 = _U64(0xFF51AFD7ED558CCD)
_FMIX2 = _U64(0xC4CEB9FE1A85EC53)
_EMPTY = np.uint32(0xFFFFFFFF)  # signature value of a document without shingles

_DOC_CHUNK = 2048  # documents hashed together (~100 shingles each: temporaries stay in cache)
_BLOCK = 8192  # shingles per permutation block: the (num_perm, _BLOCK) uint64 array stays in cache


def check_params(ngram: int, unit: str, num_perm: int = 1, threshold: float = 0.5) -> None:
    if unit not in ("char", "word"):
        raise ValueError(f"unit must be 'char' or 'word', not {unit!r}")
    if ngram < 1:
        raise ValueError(f"ngram must be >= 1, not {ngram}")
    if num_perm < 1:
        raise ValueError(f"num_perm must be >= 1, not {num_perm}")
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must be in (0, 1], not {threshold}")


# ---------------------------------------------------------------------------------------------------------
# normalization and shingles


@functools.cache
def _space_table() -> dict[int, int]:
    """Unicode punctuation (general category P*) and control characters (Cc) -> space."""
    table = {}
    for cp in range(sys.maxunicode + 1):
        cat = unicodedata.category(chr(cp))
        if cat[0] == "P" or cat == "Cc":
            table[cp] = 32
    return table


@functools.cache
def _ascii_table() -> bytes:
    """The same mapping for ASCII bytes, with A-Z lowered (casefold and NFKC of ASCII)."""
    table = bytearray(range(256))
    for cp in range(128):
        if cp in _space_table():
            table[cp] = 32
        elif 65 <= cp <= 90:
            table[cp] = cp + 32
    return bytes(table)


def normalize_for_dedup(text: str) -> str:
    """The text near-duplicates are judged on.

    NFKC (full-width and compatibility forms fold to plain ones), ``casefold`` (stronger lowercasing),
    every Unicode punctuation character (general category ``P*``: ``.,;:!?'"()[]{}-_/`` and their
    Unicode kin) and control character becomes a space, then runs of whitespace collapse to one space
    and the ends are stripped. Symbols (``+ = $ %``, emoji) and digits are kept. So ``"Hello, World!"``
    and ``"hello world"`` are the same text, and a text of only punctuation is empty.
    """
    if text.isascii():  # fast path, same result: ASCII is NFKC-stable and casefolds to lowercase
        return b" ".join(text.encode("ascii").translate(_ascii_table()).split()).decode("ascii")
    text = unicodedata.normalize("NFKC", text).casefold().translate(_space_table())
    return " ".join(text.split())


def shingles(text: str, ngram: int = 5, unit: str = "char") -> set[str]:
    """The shingle set of ``normalize_for_dedup(text)``: its character (``unit="char"``) or
    space-joined word (``unit="word"``) n-grams. A non-empty text shorter than ``ngram`` units is one
    shingle (the whole text); an empty one has none."""
    check_params(ngram, unit)
    norm = normalize_for_dedup(text)
    if not norm:
        return set()
    if unit == "char":
        if len(norm) <= ngram:
            return {norm}
        return {norm[i : i + ngram] for i in range(len(norm) - ngram + 1)}
    words = norm.split(" ")
    if len(words) <= ngram:
        return {norm}
    return {" ".join(words[i : i + ngram]) for i in range(len(words) - ngram + 1)}


def _fmix64(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 64-bit finalizer, in place."""
    h ^= h >> _U64(33)
    h *= _FMIX1
    h ^= h >> _U64(33)
    h *= _FMIX2
    h ^= h >> _U64(33)
    return h


def _word_hash(word: str) -> int:
    """Stable 64-bit hash of a word, never 0 (0 pads the token stream)."""
    digest = blake2b(word.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "little") | 1


def shingle_hashes(norm: Sequence[str], ngram: int, unit: str) -> tuple[np.ndarray, np.ndarray]:
    """64-bit hashes of every shingle (with repeats) of each normalized text, concatenated in document
    order, and the number per text.

    The texts become one token stream (code points, or 64-bit word hashes) with ``ngram - 1`` zero
    tokens after each text, so an n-gram window never crosses into the next text and a text shorter
    than ``ngram`` tokens gives one window (its tokens plus zeros). A window's hash folds its tokens
    with ``h = (h ^ token) * MUL`` and ends with ``fmix64``; it is computed at every position of the
    stream with shifted slices (no gathers) and the valid windows are picked at the end.
    """
    pad = ngram - 1
    if unit == "char":
        lens = np.fromiter(map(len, norm), dtype=np.int64, count=len(norm))
        sep = "\x00" * pad  # normalized text has no control characters, so 0 is free for padding
        joined = sep.join(norm) + sep
        tokens = np.frombuffer(joined.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    else:
        cache: dict[str, int] = {}
        stream: list[int] = []
        lens = np.zeros(len(norm), dtype=np.int64)
        zeros = [0] * pad
        for i, text in enumerate(norm):
            if text:
                words = text.split(" ")
                lens[i] = len(words)
                for w in words:
                    h = cache.get(w)
                    if h is None:
                        h = cache[w] = _word_hash(w)
                    stream.append(h)
            stream.extend(zeros)
        tokens = np.array(stream, dtype=np.uint64)
    counts = np.where(lens >= ngram, lens - pad, (lens > 0).astype(np.int64))
    total = int(counts.sum())
    stream_start = np.zeros(len(norm), dtype=np.int64)
    np.cumsum(lens[:-1] + pad, out=stream_start[1:])
    shingle_start = np.zeros(len(norm), dtype=np.int64)
    np.cumsum(counts[:-1], out=shingle_start[1:])
    starts = np.arange(total, dtype=np.int64) + np.repeat(stream_start - shingle_start, counts)
    width = len(tokens) - pad  # window positions of the stream
    h = np.full(width, 0x6A09E667F3BCC909, dtype=np.uint64)
    for k in range(ngram):
        h ^= tokens[k : k + width]
        h *= _MUL
    return _fmix64(h[starts]), counts


# ---------------------------------------------------------------------------------------------------------
# MinHash


def _splitmix64(seed: int, n: int) -> np.ndarray:
    x = (np.arange(1, n + 1, dtype=np.uint64) + _U64(seed & 0xFFFFFFFFFFFFFFFF)) * _MUL
    x ^= x >> _U64(30)
    x *= _U64(0xBF58476D1CE4E5B9)
    x ^= x >> _U64(27)
    x *= _U64(0x94D049BB133111EB)
    x ^= x >> _U64(31)
    return x


def _permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Random 64-bit ``(a, b)`` columns of the ``num_perm`` multiply-add-shift hash functions."""
    ab = _splitmix64(seed * 2 * num_perm + 0x5EED, 2 * num_perm)
    return ab[:num_perm, None].copy(), ab[num_perm:, None].copy()


def _threads() -> int:
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        n = os.cpu_count() or 1
    return max(1, min(n, 8))


_LOCAL = threading.local()


def _block_minima(
    keys: np.ndarray, doc_start: np.ndarray, lo: int, hi: int, a: np.ndarray, b: np.ndarray
) -> tuple[int, np.ndarray]:
    """Minima over shingles ``[lo, hi)`` of the documents starting in it (and the one it starts inside):
    ``(first document, uint32 array (documents, num_perm))``."""
    d0 = int(np.searchsorted(doc_start, lo, side="right")) - 1
    d1 = int(np.searchsorted(doc_start, hi, side="left"))
    seg = doc_start[d0:d1] - lo
    seg[0] = 0
    buf = getattr(_LOCAL, "buf", None)
    if buf is None or buf.shape[0] != len(a) or buf.shape[1] < hi - lo:
        buf = _LOCAL.buf = np.empty((len(a), max(hi - lo, _BLOCK)), dtype=np.uint64)
    out = np.multiply(a, keys[lo:hi], out=buf[:, : hi - lo])  # (num_perm, block), wraps mod 2**64
    out += b
    mins = np.minimum.reduceat(out, seg, axis=1)  # the high 32 bits order like the whole value
    mins >>= _U64(32)
    return d0, mins.astype(np.uint32).T


def _minhash_rows(hashes: np.ndarray, counts: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """MinHash signatures ``(documents with counts > 0, num_perm)`` of one chunk's shingle hashes.

    datasketch applies the permutations one document at a time from Python; here all shingles of the
    chunk go through them in ``(num_perm, _BLOCK)`` blocks (fast: a block stays in cache), blocks cut
    at any shingle, and a document cut by a block edge takes the minimum of its pieces.
    """
    keys = hashes >> _U64(32)  # 32-bit keys (as uint64) of the multiply-add-shift functions
    counts = counts[counts > 0]
    doc_start = np.zeros(len(counts), dtype=np.int64)
    np.cumsum(counts[:-1], out=doc_start[1:])
    sig = np.full((len(counts), len(a)), _EMPTY, dtype=np.uint32)
    for lo in range(0, len(keys), _BLOCK):
        d0, mins = _block_minima(keys, doc_start, lo, min(lo + _BLOCK, len(keys)), a, b)
        rows = sig[d0 : d0 + len(mins)]
        np.minimum(rows, mins, out=rows)
    return sig


def signatures(
    norm: Sequence[str], num_perm: int, ngram: int, unit: str, seed: int, progress=None
) -> np.ndarray:
    """``(len(norm), num_perm)`` uint32 MinHash signatures of normalized texts (empty: all 0xFFFFFFFF).

    Chunks of ``_DOC_CHUNK`` texts are hashed and min-hashed on a few threads (numpy releases the GIL);
    each chunk's temporaries stay small, so memory is bounded by the signatures themselves.
    """
    a, b = _permutations(num_perm, seed)
    sig = np.full((len(norm), num_perm), _EMPTY, dtype=np.uint32)

    def chunk(s: int) -> tuple[np.ndarray, np.ndarray]:
        hashes, counts = shingle_hashes(norm[s : s + _DOC_CHUNK], ngram, unit)
        return np.flatnonzero(counts) + s, _minhash_rows(hashes, counts, a, b)

    starts = range(0, len(norm), _DOC_CHUNK)
    threads = min(_threads(), len(starts))
    with ThreadPoolExecutor(threads) if threads > 1 else _NoPool() as pool:
        for s, (rows, part) in zip(
            starts, pool.map(chunk, starts) if pool else map(chunk, starts), strict=True
        ):
            sig[rows] = part
            if progress is not None:
                progress(min(_DOC_CHUNK, len(norm) - s))
    return sig


class _NoPool:
    def __enter__(self):
        return None

    def __exit__(self, *exc) -> None:
        return None


def minhash_signatures(
    texts: Sequence[str], num_perm: int = 128, ngram: int = 5, unit: str = "char", seed: int = 1
) -> np.ndarray:
    """``(len(texts), num_perm)`` uint32 MinHash signatures of the shingle sets of ``texts``.

    The fraction of positions where two rows are equal estimates the Jaccard similarity of the two
    shingle sets (:func:`shingles`). Deterministic: depends only on the text and the parameters, not
    on the process, the other texts or the machine. A text with no shingles gets all ``0xFFFFFFFF``.
    """
    check_params(ngram, unit, num_perm)
    return signatures([normalize_for_dedup(t) for t in texts], num_perm, ngram, unit, seed)
