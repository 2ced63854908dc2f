"""Re-create train.jsonl / test.jsonl of the qa app from SQuAD v1.1's dev-v1.1.json (stdlib only).

    python make_sample.py UPSTREAM            # UPSTREAM: dev-v1.1.json, or a folder holding it
    python make_sample.py UPSTREAM OUT_DIR    # write the two files somewhere else (default: beside this script)

Only SQuAD v1.1's dev file is used (train-v1.1.json could not be had; see SOURCE.md). Both splits come
from it, split by *article* so that no train context or article shares a Wikipedia page with a test one:

1. rng = random.Random(0); the 48 articles are shuffled with it.
2. Only paragraphs whose context has <= 120 words (str.split()) are kept.
3. Articles are taken, in shuffled order, for test until they hold >= 150 such paragraphs; the rest are train.
4. test: the test articles' short paragraphs are shuffled (same rng); from each, up to 2 questions are drawn
   with rng.sample, until 200 questions. Every reference answer is kept (duplicates dropped, order kept).
5. train: the same for the train articles, until 1,500 questions; only the first reference answer is kept.

Rows: {"context", "question", "answers", "meta": {"id"}}; questions are stripped of surrounding whitespace,
contexts and answers are verbatim.
"""

import hashlib
import json
import random
import sys
from pathlib import Path

DEV_SHA256 = "95aa6a52d5d6a735563366753ca50492a658031da74f301ac5238b03966972c9"
MAX_WORDS = 120
PER_PARAGRAPH = 2
N_TEST, N_TRAIN = 200, 1500
TEST_MIN_PARAGRAPHS = 150


def short_paragraphs(article):
    return [p for p in article["paragraphs"] if len(p["context"].split()) <= MAX_WORDS]


def dedupe(xs):
    out = []
    for x in xs:
        if x not in out:
            out.append(x)
    return out


def draw(rng, paragraphs, n, first_only):
    paragraphs = list(paragraphs)
    rng.shuffle(paragraphs)
    rows = []
    for p in paragraphs:
        for qa in rng.sample(p["qas"], min(PER_PARAGRAPH, len(p["qas"]))):
            answers = dedupe([a["text"] for a in qa["answers"]])
            if first_only:
                answers = answers[:1]
            rows.append({"context": p["context"], "question": qa["question"].strip(), "answers": answers,
                         "meta": {"id": qa["id"]}})
            if len(rows) == n:
                return rows
    return rows


def write(path, rows):
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def main(argv):
    if len(argv) not in (2, 3):
        sys.exit(__doc__)
    src = Path(argv[1])
    if src.is_dir():
        src = src / "dev-v1.1.json"
    raw = src.read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    if digest != DEV_SHA256:
        print(f"warning: {src} has sha256 {digest}, not the expected {DEV_SHA256}", file=sys.stderr)
    articles = json.loads(raw.decode("utf-8"))["data"]
    out = Path(argv[2]) if len(argv) == 3 else Path(__file__).resolve().parent

    rng = random.Random(0)
    order = list(range(len(articles)))
    rng.shuffle(order)
    test_arts, n_par = [], 0
    for i in order:
        if n_par >= TEST_MIN_PARAGRAPHS:
            break
        test_arts.append(i)
        n_par += len(short_paragraphs(articles[i]))
    train_arts = [i for i in order if i not in test_arts]

    test = draw(rng, [p for i in test_arts for p in short_paragraphs(articles[i])], N_TEST, first_only=False)
    train = draw(rng, [p for i in train_arts for p in short_paragraphs(articles[i])], N_TRAIN, first_only=True)
    assert len(test) == N_TEST and len(train) == N_TRAIN, (len(test), len(train))
    write(out / "train.jsonl", train)
    write(out / "test.jsonl", test)
    print("test articles:", ", ".join(articles[i]["title"] for i in test_arts), file=sys.stderr)
    print(f"wrote {len(train)} train and {len(test)} test rows to {out}", file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv)
