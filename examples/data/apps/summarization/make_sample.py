"""Re-create train.jsonl / test.jsonl of the summarization app from SciTLDR-A (stdlib only).

    python make_sample.py UPSTREAM_DIR            # the folder holding SciTLDR-A's train.jsonl and test.jsonl
    python make_sample.py UPSTREAM_DIR OUT_DIR    # write somewhere else (default: beside this script)

1. Each upstream row's "source" sentences are joined with spaces and runs of whitespace collapsed to one
   space (" ".join(text.split())): that is the document. The summary is "target"[0] (the author TLDR per
   the upstream README), whitespace collapsed the same way.
2. Only rows whose document has <= 220 words (str.split()) are kept, in file order.
3. rng = random.Random(0); train = rng.sample(kept train rows, 1000), then test = rng.sample(kept test rows, 200)
   with the same rng. Upstream train and test share no paper_id.

Rows: {"document", "summary", "meta": {"id": paper_id}}.
"""

import hashlib
import json
import random
import sys
from pathlib import Path

SHA256 = {
    "train.jsonl": "b222771d387be585cfdf5ae957b36757138415a352e0a3e3b23f73f87c3b1119",
    "test.jsonl": "fb42dd6cd4f4a1928ae8a01a189456fbfe994a07e938bd49f68653933f6503c9",
}
MAX_WORDS = 220
N_TRAIN, N_TEST = 1000, 200


def norm(text):
    return " ".join(text.split())


def load(path):
    raw = path.read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    if digest != SHA256[path.name]:
        print(f"warning: {path} has sha256 {digest}, not the expected {SHA256[path.name]}", file=sys.stderr)
    rows = []
    for line in raw.decode("utf-8").splitlines():
        if not line.strip():
            continue
        r = json.loads(line)
        doc = norm(" ".join(r["source"]))
        if len(doc.split()) <= MAX_WORDS:
            rows.append({"document": doc, "summary": norm(r["target"][0]), "meta": {"id": r["paper_id"]}})
    return rows


def write(path, rows):
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def main(argv):
    if len(argv) not in (2, 3):
        sys.exit(__doc__)
    src = Path(argv[1])
    out = Path(argv[2]) if len(argv) == 3 else Path(__file__).resolve().parent
    train_pool, test_pool = load(src / "train.jsonl"), load(src / "test.jsonl")
    rng = random.Random(0)
    train = rng.sample(train_pool, N_TRAIN)
    test = rng.sample(test_pool, N_TEST)
    assert not {r["meta"]["id"] for r in train} & {r["meta"]["id"] for r in test}
    write(out / "train.jsonl", train)
    write(out / "test.jsonl", test)
    print(f"kept {len(train_pool)} train / {len(test_pool)} test rows of <= {MAX_WORDS} words; "
          f"wrote {len(train)} train and {len(test)} test rows to {out}", file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv)
