"""instructkit's near-duplicate step versus datasketch MinHash + MinHashLSH on planted near-duplicates.

    python benchmarks/near_dup.py [--n 200000] [--threshold 0.8] [--num-perm 128] [--seed 0]

Generates ``--n`` short synthetic instructions (10 to ~40 words, median 21: 32 templates filled from word
lists, plus 0 to 2 extra constraint sentences, with a seeded RNG; two unrelated ones are almost never
above Jaccard 0.5, which the run prints). A quarter of the documents are planted variants of a base instruction: casing changes,
punctuation changes, character edits (typos), swapped or moved words and clauses, an inserted or
deleted word, or a changed slot value (a near miss, usually below the threshold); the true Jaccard of
every planted (base, variant) pair is computed on the same shingles both sides use
(``instructkit.data.dedup.near_dup.shingles``: character 5-grams of the normalized text).

Both sides run on the same documents, in this process, from the raw texts to cluster ids (so both
timings include normalizing and shingling):

* instructkit: ``near_duplicate_clusters(texts, threshold, num_perm, ngram=5, unit="char")`` (exact
  Jaccard check of candidate pairs on, the default);
* datasketch: per text ``shingles()`` -> ``MinHash(num_perm, seed).update_batch(utf-8 shingles)``, all
  inserted into one ``MinHashLSH(threshold, num_perm)`` (insertion session), every text queried, the
  query results merged with union-find. No exact check: this is the plain MinHash + LSH recipe;
* instructkit* (for reference, not in the ratio): instructkit forced to datasketch's LSH bands, to show
  what the recall-leaning bands of the verified mode buy.

Timings are taken in this process, one contender after the other on the same list of texts. Peak memory
is the growth of the peak resident set size (``VmHWM`` in /proc/self/status, reset through
/proc/self/clear_refs) over the resident size at the start of the run, numpy buffers and Python objects
alike, the input texts excluded; each contender is measured in a fresh process that regenerates the same
documents (within one process, memory freed by an earlier run is reused and would hide the growth).
"""

from __future__ import annotations

import argparse
import gc
import random
import subprocess
import sys
import time
from functools import lru_cache

import numpy as np

from instructkit.data.dedup import near_dup as nd
from instructkit.data.dedup.near_dup import near_duplicate_clusters, optimal_bands, shingles

NGRAM, UNIT = 5, "char"

# ---------------------------------------------------------------------------------------------------------
# word lists

ADJ = (
    "ancient modern tiny enormous quiet noisy frozen tropical urban rural digital analog forgotten famous "
    "secret public private hidden broken golden silver wooden electric magnetic solar lunar coastal alpine "
    "desert misty rainy sunny stormy peaceful chaotic abandoned crowded empty floating sunken ruined sacred "
    "haunted enchanted mechanical organic synthetic colorful monochrome vintage futuristic medieval "
    "victorian prehistoric arctic volcanic underground orbital microscopic gigantic fragile sturdy"
).split()
NOUN = (
    "ocean forest castle library robot garden river mountain city village bridge lighthouse train "
    "spaceship volcano desert island museum market bakery factory laboratory hospital school theater "
    "stadium airport harbor cathedral temple tower cave glacier canyon meadow swamp jungle reef satellite "
    "telescope microscope engine compass map clock mirror violin piano guitar drum lantern kite balloon "
    "submarine airship bicycle tractor dragon unicorn phoenix wizard knight pirate detective astronaut "
    "chef farmer painter sculptor poet inventor merchant sailor soldier monk nurse teacher student "
    "grandmother orchard vineyard beehive anthill waterfall geyser comet nebula galaxy asteroid planet "
    "moon eclipse rainbow blizzard hurricane tornado earthquake tsunami avalanche wildfire drought harvest "
    "festival wedding funeral parade election revolution treaty empire kingdom republic colony frontier"
).split()
AUTHOR = (
    "Emily Dickinson|William Shakespeare|Edgar Allan Poe|Walt Whitman|Maya Angelou|Robert Frost|"
    "Sylvia Plath|Pablo Neruda|Langston Hughes|Dr. Seuss|Jane Austen|Ernest Hemingway|Mark Twain|"
    "Virginia Woolf|Franz Kafka|Leo Tolstoy|Oscar Wilde|Charles Dickens|Toni Morrison|Haruki Murakami|"
    "Gabriel Garcia Marquez|J.R.R. Tolkien|Agatha Christie|Arthur Conan Doyle|H.P. Lovecraft|Rumi|"
    "Basho|Homer|Dante|Lewis Carroll|Roald Dahl|Kurt Vonnegut|Ursula K. Le Guin|Isaac Asimov|"
    "Terry Pratchett|Neil Gaiman|Margaret Atwood|Jorge Luis Borges|Italo Calvino|Mary Oliver"
).split("|")
AUDIENCE = (
    "a five year old|a high school student|a busy executive|a retired engineer|a first year medical student|"
    "a software developer|a curious teenager|a non native speaker|a history professor|a small business owner|"
    "a new parent|a professional chef|a marathon runner|a museum visitor|a job interviewer|a skeptical investor|"
    "a group of tourists|a kindergarten class|a city council|a university admissions officer|a farmer|"
    "a journalist|a nurse on night shift|a beginner programmer|a data scientist|an art collector"
).split("|")
LANG = (
    "Python|JavaScript|TypeScript|Rust|Go|Java|C|C++|C#|Ruby|PHP|Kotlin|Swift|Haskell|Scala|Julia|R|"
    "Lua|Perl|Elixir|OCaml|Bash|SQL|Zig|Dart"
).split("|")
CODE_TASK = (
    "reverses a linked list of {noun} records|checks whether a {noun} name is a palindrome|"
    "merges two sorted arrays of {noun} prices|finds the longest common prefix of {noun} labels|"
    "parses a CSV file of {adj} {noun} sightings|computes the nth Fibonacci number for {noun} counts|"
    "validates the email address of a {noun} owner|counts word frequencies in a {adj} {noun} diary|"
    "runs binary search over sorted {noun} ids|removes duplicate {noun} entries while keeping order|"
    "converts Roman numerals on a {noun} plaque to integers|flattens a nested list of {noun} parts|"
    "detects a cycle in a graph of {noun} routes|rotates a {adj} {noun} image by ninety degrees|"
    "implements a least recently used cache for {noun} lookups|serializes a tree of {noun} nodes|"
    "finds the shortest path between two {noun} stations|checks if two {noun} names are anagrams|"
    "generates all orderings of {num} {noun} cards|computes the greatest common divisor of {noun} sizes|"
    "sorts {noun} dictionaries by their {adj} score|retries a failing {noun} request with backoff|"
    "tokenizes a {noun} expression|evaluates a postfix formula about {noun} weights|"
    "batches {noun} items into chunks of {num}|computes a moving average of {noun} temperatures|"
    "finds the median {noun} height in two sorted lists|run length encodes a {adj} {noun} pattern|"
    "splits a {noun} description into words|schedules {noun} meetings without overlaps"
).split("|")
TONE = (
    "formal casual humorous sarcastic optimistic melancholic enthusiastic neutral dramatic poetic "
    "persuasive academic friendly stern whimsical nostalgic urgent calm mysterious playful"
).split()
FORM = (
    "haiku|limerick|sonnet|short story|blog post|news article|tweet|product description|cover letter|"
    "speech|dialogue|riddle|fable|diary entry|recipe|travel guide|job advertisement|movie review|"
    "press release|lullaby|rap verse|letter to the editor|museum placard|podcast intro"
).split("|")
PLACE = (
    "Lisbon|Kyoto|Nairobi|Reykjavik|Buenos Aires|Marrakech|Vancouver|Hanoi|Istanbul|Oslo|Lima|Cairo|"
    "Prague|Seoul|Havana|Auckland|Zanzibar|Tbilisi|Montreal|Edinburgh|Jaipur|Valparaiso|Krakow|Bergen|"
    "Cusco|Salzburg|Hobart|Ushuaia|Tallinn|Luang Prabang"
).split("|")
SUBJECT = (
    "photosynthesis|inflation|compound interest|the water cycle|plate tectonics|natural selection|"
    "quantum entanglement|supply and demand|the immune system|machine learning|climate change|"
    "the French Revolution|blockchain|black holes|vaccines|the stock market|recursion|public key cryptography|"
    "the theory of relativity|ocean tides|the electoral college|neural networks|the placebo effect|"
    "carbon dating|the greenhouse effect|game theory|the Roman Empire|DNA replication|the internet|"
    "opportunity cost|the Doppler effect|antibiotic resistance|the Renaissance|nuclear fusion"
).split("|")
ROLE = (
    "a lighthouse keeper|a time traveler|a retired spy|a street musician|an alien anthropologist|"
    "a medieval blacksmith|a deep sea diver|a cat who can talk|a ghost who loves gardening|"
    "a nervous dragon|a robot learning to cook|a detective in Victorian London|a barista on Mars|"
    "a librarian with a secret|a penguin explorer|a chess grandmaster|a stage magician|a tired superhero"
).split("|")

TEMPLATES = (
    "Write a {form} about {topic} in the style of {author}.",
    "Write a {tone} {form} about {topic} for {audience}.",
    "Compose a {form} from the point of view of {role} who discovers {topic}.",
    "Explain {subject} to {audience} using an analogy involving {topic}.",
    "Explain {subject} in simple terms, with an example about {topic}.",
    "Summarize what {subject} has to do with {topic} in {num} bullet points.",
    "Write a {lang} function that {code}, for a game about {topic}.",
    "Implement a function in {lang} that {code}, and test it on {topic}.",
    "How would you write a {lang} program that {code}? Think about {topic2}.",
    "Give me {num} creative names for a cafe in {place} themed around {topic}.",
    "Plan a {num} day trip to {place} for {audience} who loves {topic}.",
    "What are {num} fun facts about {topic} that would surprise {audience}?",
    "Describe {topic} as if you were {role}.",
    "Draft a {tone} email to {audience} announcing an exhibit on {topic}.",
    "Create a short quiz with {num} questions about {subject} and {topic}.",
    "Translate 'I saw {topic} near {topic2}' into {language} and explain the word order.",
    "List {num} pros and cons of living near {topic} in {place}.",
    "Write a dialogue between {role} and {role2} about {topic}.",
    "Invent a board game set in {place} involving {topic}.",
    "Suggest {num} names for a {tone} podcast about {subject} and {topic}.",
    "Rewrite this sentence in a {tone} tone: {topic} stood next to {topic2}.",
    "Why do people find {topic} so fascinating? Answer for {audience}.",
    "Create a recipe inspired by {place} and {topic} that uses {num} ingredients.",
    "Tell a bedtime story about {role} and {topic}.",
    "Compare {subject} and {subject2} using {topic} as an example.",
    "Outline a lesson plan on {subject} for {audience}, starting from {topic}.",
    "Write a product description for {topic} aimed at {audience}.",
    "Debug this {lang} code that {code} but fails on {topic}.",
    "Write unit tests in {lang} for a function that {code}, using {topic} as data.",
    "Generate a {tone} slogan for a campaign about {topic} in {place}.",
    "Describe a day in the life of {role} living in {place} with {topic}.",
    "Argue for and against banning {topic} in {num} sentences.",
)
EXTRA = (
    "Keep it under {num0} words.",
    "Use a {tone} tone.",
    "Mention {topic2} at least once.",
    "Make it suitable for {audience2}.",
    "End with a question about {noun2}.",
    "Include {num} examples.",
    "Avoid technical jargon.",
    "Add a title.",
    "Format the answer as a numbered list.",
    "Do not use the letter e.",
    "Write it in the second person.",
    "Include a surprising twist about {noun2}.",
    "Cite {num} sources if possible.",
    "Respond in exactly {num} sentences.",
    "Use at least one metaphor about {topic2}.",
)
LANGUAGE = "French German Spanish Italian Portuguese Dutch Swedish Polish Turkish Japanese Korean Hindi Swahili".split()
FILLER = "please briefly also carefully really very quickly clearly now kindly".split()


def _slots(rng: random.Random) -> dict[str, str]:
    return {
        "adj": rng.choice(ADJ),
        "noun": rng.choice(NOUN),
        "noun2": rng.choice(NOUN),
        "topic": f"{rng.choice(('the', 'a', 'an old', 'the last', 'every'))} {rng.choice(ADJ)} {rng.choice(NOUN)}",
        "topic2": f"the {rng.choice(ADJ)} {rng.choice(NOUN)}",
        "author": rng.choice(AUTHOR),
        "audience": rng.choice(AUDIENCE),
        "audience2": rng.choice(AUDIENCE),
        "lang": rng.choice(LANG),
        "language": rng.choice(LANGUAGE),
        "code": rng.choice(CODE_TASK).format(
            noun=rng.choice(NOUN), adj=rng.choice(ADJ), num=rng.randint(2, 12)
        ),
        "tone": rng.choice(TONE),
        "form": rng.choice(FORM),
        "place": rng.choice(PLACE),
        "subject": rng.choice(SUBJECT),
        "subject2": rng.choice(SUBJECT),
        "role": rng.choice(ROLE),
        "role2": rng.choice(ROLE),
        "num": str(rng.randint(2, 12)),
        "num0": str(rng.choice((50, 80, 100, 120, 150, 200, 250, 300))),
    }


def _render(template: int, extras: tuple[int, ...], slots: dict[str, str]) -> str:
    parts = [TEMPLATES[template]] + [EXTRA[e] for e in extras]
    return " ".join(parts).format(**slots)


def _base(rng: random.Random) -> tuple[int, tuple[int, ...], dict[str, str]]:
    extras = tuple(rng.sample(range(len(EXTRA)), rng.choice((0, 1, 1, 2))))
    return rng.randrange(len(TEMPLATES)), extras, _slots(rng)


# ---------------------------------------------------------------------------------------------------------
# variants


def _casing(text: str, rng: random.Random) -> str:
    kind = rng.randrange(4)
    if kind == 0:
        return text.upper()
    if kind == 1:
        return text.lower()
    if kind == 2:
        return text.title()
    words = text.split(" ")
    for k in rng.sample(range(len(words)), max(1, len(words) // 4)):
        words[k] = words[k].swapcase()
    return " ".join(words)


def _punctuation(text: str, rng: random.Random) -> str:
    kind = rng.randrange(4)
    if kind == 0:  # strip it all
        return "".join(ch for ch in text if ch.isalnum() or ch.isspace())
    if kind == 1:  # shout or ask
        return text.rstrip(".?!") + rng.choice(("!", "!!", "?", "...", " :)"))
    words = text.split(" ")
    if kind == 2:  # commas, dashes, quotes after some words
        for k in rng.sample(range(len(words) - 1), max(1, len(words) // 5)):
            words[k] += rng.choice((",", " -", ";", ":"))
        return " ".join(words)
    return f'"{text}"' if rng.random() < 0.5 else f"({text})"


def _typos(text: str, rng: random.Random) -> str:
    chars = list(text)
    letters = "abcdefghijklmnopqrstuvwxyz"
    for _ in range(rng.choice((1, 1, 1, 2, 2, 3, 4, 6))):
        pos = [k for k, ch in enumerate(chars) if ch.isalpha()]
        k = rng.choice(pos)
        op = rng.randrange(4)
        if op == 0:
            chars[k] = rng.choice(letters)
        elif op == 1 and len(chars) > 10:
            del chars[k]
        elif op == 2:
            chars.insert(k, rng.choice(letters))
        elif k + 1 < len(chars):
            chars[k], chars[k + 1] = chars[k + 1], chars[k]
    return "".join(chars)


def _swap(text: str, rng: random.Random) -> str:
    words = text.split(" ")
    for _ in range(rng.choice((1, 1, 2))):
        k = rng.randrange(len(words) - 1)
        words[k], words[k + 1] = words[k + 1], words[k]
    return " ".join(words)


def _reorder(text: str, rng: random.Random) -> str:
    sentences = [s for s in text.replace("? ", "?|").replace(". ", ".|").split("|") if s]
    if len(sentences) > 1:  # move a sentence
        first = sentences.pop(rng.randrange(len(sentences)))
        return " ".join([*sentences, first] if rng.random() < 0.5 else [first, *sentences])
    words = text.split(" ")  # move one word elsewhere
    w = words.pop(rng.randrange(len(words)))
    words.insert(rng.randrange(len(words) + 1), w)
    return " ".join(words)


def _insert_delete(text: str, rng: random.Random) -> str:
    words = text.split(" ")
    if rng.random() < 0.5 and len(words) > 6:
        del words[rng.randrange(1, len(words))]
    else:
        words.insert(rng.randrange(len(words) + 1), rng.choice(FILLER))
    return " ".join(words)


OPS = {
    "casing": _casing,
    "punctuation": _punctuation,
    "typos": _typos,
    "word swap": _swap,
    "reorder": _reorder,
    "insert/delete word": _insert_delete,
}
OP_WEIGHTS = {
    "casing": 0.18,
    "punctuation": 0.18,
    "typos": 0.24,
    "word swap": 0.1,
    "reorder": 0.08,
    "insert/delete word": 0.1,
    "near miss": 0.12,
}


def _variant(base: tuple[int, tuple[int, ...], dict[str, str]], rng: random.Random) -> tuple[str, str]:
    template, extras, slots = base
    text = _render(template, extras, slots)
    op = rng.choices(list(OP_WEIGHTS), weights=list(OP_WEIGHTS.values()))[0]
    if op == "near miss":  # same template and extras, one slot value used by the text redrawn
        used = [k for k in slots if "{" + k + "}" in TEMPLATES[template] + "".join(EXTRA[e] for e in extras)]
        changed = dict(slots)
        key = rng.choice(used)
        while changed[key] == slots[key]:
            changed[key] = _slots(rng)[key]
        return op, _render(template, extras, changed)
    text = OPS[op](text, rng)
    if rng.random() < 0.3:  # a second, cosmetic change on top
        second = rng.choice(("casing", "punctuation"))
        text = OPS[second](text, rng)
        op = f"{op} + {second}"
    return op, text


def generate(n: int, seed: int) -> tuple[list[str], np.ndarray, list[str]]:
    """``n`` instructions in random order, the planted ``(base, variant)`` index pairs ``(m, 2)`` and
    each pair's edit kind."""
    rng = random.Random(seed)
    n_variants = n // 4
    texts: list[str] = []
    pairs: list[tuple[int, int]] = []
    kinds: list[str] = []
    seen: set[str] = set()
    while len(texts) < n:
        base = _base(rng)
        text = _render(*base)
        if text in seen:
            continue
        seen.add(text)
        b = len(texts)
        texts.append(text)
        if len(pairs) < n_variants:
            for _ in range(rng.choices((1, 2, 3), weights=(0.75, 0.2, 0.05))[0]):
                if len(texts) == n:
                    break
                kind, variant = _variant(base, rng)
                pairs.append((b, len(texts)))
                kinds.append(kind)
                texts.append(variant)
    perm = list(range(n))
    rng.shuffle(perm)
    where = np.empty(n, dtype=np.int64)
    where[perm] = np.arange(n)
    shuffled = [texts[p] for p in perm]
    return shuffled, where[np.asarray(pairs, dtype=np.int64)], kinds


# ---------------------------------------------------------------------------------------------------------
# evaluation


@lru_cache(maxsize=200_000)
def _shingle_set(text: str) -> frozenset[str]:
    return frozenset(shingles(text, NGRAM, UNIT))


def true_jaccard(a: str, b: str) -> float:
    sa, sb = _shingle_set(a), _shingle_set(b)
    if not sa and not sb:
        return 1.0
    inter = len(sa & sb)
    return inter / (len(sa) + len(sb) - inter)


def predicted_pairs(clusters: np.ndarray, cap: int, rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """Index pairs of documents in the same cluster (all of them, or ``cap`` drawn uniformly)."""
    order = np.argsort(clusters, kind="stable")
    labels, starts, sizes = np.unique(clusters[order], return_index=True, return_counts=True)
    multi = sizes > 1
    starts, sizes = starts[multi], sizes[multi]
    n_pairs = int((sizes * (sizes - 1) // 2).sum())
    out = []
    if n_pairs <= cap:
        for s, k in zip(starts.tolist(), sizes.tolist(), strict=True):
            members = order[s : s + k]
            a, b = np.triu_indices(k, 1)
            out.append(np.stack([members[a], members[b]], axis=1))
        return (np.concatenate(out) if out else np.zeros((0, 2), dtype=np.int64)), n_pairs
    # sample: a cluster with probability proportional to its pair count, then a pair inside it
    weights = sizes * (sizes - 1) / 2
    pick = rng.choice(len(sizes), size=cap, p=weights / weights.sum())
    first = rng.integers(0, sizes[pick])
    second = (first + rng.integers(1, sizes[pick])) % sizes[pick]
    return np.stack([order[starts[pick] + first], order[starts[pick] + second]], axis=1), n_pairs


def evaluate(name, clusters, texts, pairs, planted_j, threshold, cap=1_000_000) -> dict:
    same = clusters[pairs[:, 0]] == clusters[pairs[:, 1]]
    pos = planted_j >= threshold
    recall = float(same[pos].mean()) if pos.any() else float("nan")
    pred, n_pred = predicted_pairs(clusters, cap, np.random.default_rng(0))
    pred_j = np.array([true_jaccard(texts[i], texts[j]) for i, j in pred.tolist()])
    precision = float((pred_j >= threshold).mean()) if len(pred_j) else float("nan")
    return {
        "name": name,
        "recall": recall,
        "precision": precision,
        "n_pred": n_pred,
        "sampled": n_pred > cap,
        "same": same,
        "n_clusters": len(np.unique(clusters)),
    }


# ---------------------------------------------------------------------------------------------------------
# the two contenders


def run_instructkit(texts: list[str], threshold: float, num_perm: int, seed: int) -> np.ndarray:
    return near_duplicate_clusters(
        texts, threshold=threshold, num_perm=num_perm, ngram=NGRAM, unit=UNIT, seed=seed
    )


def run_instructkit_datasketch_bands(
    texts: list[str], threshold: float, num_perm: int, seed: int
) -> np.ndarray:
    """instructkit with the exact check but datasketch's LSH bands (for comparison only)."""
    saved = nd._candidate_bands
    nd._candidate_bands = nd.optimal_bands
    try:
        return run_instructkit(texts, threshold, num_perm, seed)
    finally:
        nd._candidate_bands = saved


def run_datasketch(texts: list[str], threshold: float, num_perm: int, seed: int) -> np.ndarray:
    from datasketch import MinHash, MinHashLSH

    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    sketches: list = []
    with lsh.insertion_session() as session:
        for i, text in enumerate(texts):
            grams = shingles(text, NGRAM, UNIT)
            if not grams:  # empty after normalization: never merged (as instructkit)
                sketches.append(None)
                continue
            m = MinHash(num_perm=num_perm, seed=seed)
            m.update_batch([g.encode("utf-8") for g in grams])
            session.insert(i, m)
            sketches.append(m)
    parent = list(range(len(texts)))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for i, m in enumerate(sketches):
        if m is None:
            continue
        for j in lsh.query(m):
            ri, rj = find(i), find(j)
            if ri != rj:  # the smaller index becomes the root: cluster id = smallest member
                parent[max(ri, rj)] = min(ri, rj)
    return np.array([find(i) for i in range(len(texts))], dtype=np.int64)


# ---------------------------------------------------------------------------------------------------------
# measuring


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def timed(fn, *args) -> tuple[np.ndarray, float]:
    gc.collect()
    t0 = time.perf_counter()
    result = fn(*args)
    return result, time.perf_counter() - t0


CONTENDERS = {"instructkit": run_instructkit, "datasketch": run_datasketch}


def peak_memory_child(args: argparse.Namespace) -> None:
    """In a fresh interpreter: regenerate the documents, run one contender, print its peak RSS growth."""
    texts, _, _ = generate(args.n, args.seed)
    fn = CONTENDERS[args.memory_of]
    fn(texts[:200], args.threshold, args.num_perm, 1)  # imports and one-time tables outside the measure
    gc.collect()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM (the peak RSS) to the current RSS
    start = _status_kb("VmRSS")
    fn(texts, args.threshold, args.num_perm, 1)
    print((_status_kb("VmHWM") - start) / 1024)


def peak_memory(name: str, args: argparse.Namespace) -> float:
    """Peak RSS growth (MiB) of one contender's run, measured in a fresh process on the same documents
    (in this process, memory freed by an earlier run would be reused and hide the growth)."""
    cmd = [sys.executable, __file__, "--memory-of", name, "--n", str(args.n), "--seed", str(args.seed)]
    cmd += ["--threshold", str(args.threshold), "--num-perm", str(args.num_perm)]
    out = subprocess.run(cmd, capture_output=True, text=True)
    try:
        return float(out.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        print(f"(peak memory of {name} not measured: {out.stderr.strip().splitlines()[-1:]})")
        return float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=200_000, help="documents (default 200000)")
    ap.add_argument("--threshold", type=float, default=0.8, help="Jaccard threshold (default 0.8)")
    ap.add_argument("--num-perm", type=int, default=128, help="MinHash permutations (default 128)")
    ap.add_argument(
        "--seed", type=int, default=0, help="data generator seed (MinHash seed is 1 on both sides)"
    )
    ap.add_argument(
        "--baseline-n",
        type=int,
        default=0,
        help="time datasketch on a random subset of this many documents and extrapolate its docs/s "
        "(default 0: the full set)",
    )
    ap.add_argument("--memory-of", choices=sorted(CONTENDERS), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.memory_of:
        peak_memory_child(args)
        return
    t, num_perm, mh_seed = args.threshold, args.num_perm, 1

    t0 = time.perf_counter()
    texts, pairs, kinds = generate(args.n, args.seed)
    planted_j = np.array([true_jaccard(texts[i], texts[j]) for i, j in pairs.tolist()])
    gen_s = time.perf_counter() - t0
    words = np.array([len(x.split()) for x in texts])
    print(
        f"documents: {len(texts):,} ({len(pairs):,} planted variants of {len(set(pairs[:, 0].tolist())):,} bases), "
        f"generated in {gen_s:.1f} s"
    )
    print(f"words per document: min {words.min()}, median {int(np.median(words))}, max {words.max()}")
    rng = random.Random(args.seed + 1)
    sample = [rng.sample(range(len(texts)), 2) for _ in range(20_000)]
    rand_j = np.array([true_jaccard(texts[i], texts[j]) for i, j in sample])
    print(
        f"random pairs (20,000): Jaccard mean {rand_j.mean():.3f}, 99.9th percentile "
        f"{np.quantile(rand_j, 0.999):.3f}, share > 0.5 {(rand_j > 0.5).mean():.5f}"
    )
    _shingle_set.cache_clear()
    b, r = optimal_bands(t, num_perm)
    cb, cr = nd._candidate_bands(t, num_perm)
    print(f"shingles: character {NGRAM}-grams of the normalized text; num_perm {num_perm}; threshold {t}")
    print(f"datasketch: MinHashLSH bands x rows {b} x {r} (its optimum), every query hit merged")
    print(
        f"instructkit: LSH bands x rows {cb} x {cr} (recall-leaning; the exact check gives the precision), "
        f"candidates merged only if exact Jaccard >= {t}"
    )

    for fn in (run_instructkit, run_datasketch):  # warm up imports and caches for both sides alike
        fn(texts[:2000], t, num_perm, mh_seed)

    ik, ik_s = timed(run_instructkit, texts, t, num_perm, mh_seed)
    ikb, ikb_s = timed(run_instructkit_datasketch_bands, texts, t, num_perm, mh_seed)
    if args.baseline_n and args.baseline_n < len(texts):
        subset = sorted(random.Random(args.seed + 2).sample(range(len(texts)), args.baseline_n))
        _, ds_s = timed(run_datasketch, [texts[k] for k in subset], t, num_perm, mh_seed)
        ds_rate = len(subset) / ds_s
        ds_note = f"  <- docs/s EXTRAPOLATED from a timed random subset of {len(subset):,} documents"
        ds = run_datasketch(texts, t, num_perm, mh_seed)  # untimed, for recall and precision
    else:
        ds, ds_s = timed(run_datasketch, texts, t, num_perm, mh_seed)
        ds_rate, ds_note = len(texts) / ds_s, ""
    ik_rate = len(texts) / ik_s
    ik_mem, ds_mem, ikb_mem = peak_memory("instructkit", args), peak_memory("datasketch", args), float("nan")

    rows = [
        ("instructkit", ik, ik_s, ik_rate, ik_mem, ""),
        ("datasketch", ds, ds_s, ds_rate, ds_mem, ds_note),
        ("instructkit*", ikb, ikb_s, len(texts) / ikb_s, ikb_mem, f"  * with datasketch's {b} x {r} bands"),
    ]
    res = [evaluate(name, cl, texts, pairs, planted_j, t) for name, cl, *_ in rows]

    print()
    print(f"planted pairs by true Jaccard: share merged into one cluster at threshold {t}")
    edges = [0.0, 0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 1.0, 1.0001]
    print(f"  {'Jaccard':<13}{'pairs':>8}{'instructkit':>13}{'datasketch':>12}{'instructkit*':>14}")
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        sel = (planted_j >= lo) & (planted_j < hi)
        if sel.any():
            label = "1.0" if lo == 1.0 else f"[{lo:.2f}, {hi:.2f})"
            merged = "".join(
                f"{x['same'][sel].mean():>{w}.3f}" for x, w in zip(res, (13, 12, 14), strict=True)
            )
            print(f"  {label:<13}{int(sel.sum()):>8}{merged}")
    print("planted pairs by edit: count, mean true Jaccard")
    kinds_arr = np.array(kinds)
    for kind in sorted(set(kinds)):
        sel = kinds_arr == kind
        print(f"  {kind:<36}{int(sel.sum()):>7}  {planted_j[sel].mean():.3f}")

    print()
    print(
        f"recall    = share of the {int((planted_j >= t).sum()):,} planted (base, variant) pairs with true "
        f"Jaccard >= {t} that end in one cluster"
    )
    print(
        f"precision = share of predicted pairs (any two documents in one cluster) whose own true Jaccard "
        f">= {t}"
    )
    print("peak MiB  = growth of the peak RSS (VmHWM, reset through /proc/self/clear_refs) over the RSS at")
    print("            the start of the run, each contender in a fresh process on the same documents")
    print()
    print(
        f"{'':<14}{'seconds':>9}{'docs/s':>11}{'recall':>9}{'precision':>11}{'pred pairs':>12}{'peak MiB':>10}"
    )
    for (name, _, secs, rate, mem, note), x in zip(rows, res, strict=True):
        pp = f"{x['n_pred']:,}" + ("+" if x["sampled"] else "")
        mem = f"{mem:.0f}" if mem == mem else "-"
        print(
            f"{name:<14}{secs:>9.2f}{rate:>11,.0f}{x['recall']:>9.4f}{x['precision']:>11.4f}{pp:>12}{mem:>10}{note}"
        )
    if any(x["sampled"] for x in res):
        print("+ precision from 1,000,000 pairs drawn uniformly from all predicted pairs")
    ratio = ik_rate / ds_rate
    ok = ratio >= 5 and res[0]["recall"] >= 0.95 and res[0]["precision"] >= 0.95
    print(
        f"acceptance (instructkit: ratio >= 5x, recall >= 0.95, precision >= 0.95 at {t}): "
        f"{'PASS' if ok else 'FAIL'}"
    )
    print(f"ratio: {ratio:.2f}x near-dup docs/s vs datasketch MinHashLSH")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
