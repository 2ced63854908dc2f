"""Re-create train.jsonl and test.jsonl of the classification app from Poem Sentiment.

Upstream: https://github.com/google-research-datasets/poem-sentiment (commit
612e9a1f86799126c68f0c5d9c3f1fc28f88068f), files data/train.tsv and data/test.tsv (tab-separated,
no header: id, verse_text, label). Standard library only.

    python make_sample.py UPSTREAM_DIR [OUT_DIR]

UPSTREAM_DIR is a checkout of that repository (it holds data/train.tsv and data/test.tsv); OUT_DIR
defaults to this script's folder. The output is deterministic (random.Random(0)).

Rules:
* label ids are mapped to names: -1 negative, 0 no_impact, 1 positive, 2 mixed (the paper's four classes;
  the names are those of the Hugging Face ``poem_sentiment`` loader);
* train: every row of data/train.tsv except the 49 "mixed" rows (the official test split has no
  "mixed" verse, so train and test offer the same three labels), shuffled with random.Random(0);
  natural (unbalanced) label distribution;
* test: every row of data/test.tsv (104 verses), in upstream order;
* the verse text is kept exactly as upstream (no trimming, no case change).
"""

import json
import random
import sys
from pathlib import Path

LABELS = {"-1": "negative", "0": "no_impact", "1": "positive", "2": "mixed"}


def read_tsv(path):
    rows = []
    with open(path, encoding="utf-8", newline="") as fh:
        for line in fh.read().split("\n"):
            if not line:
                continue
            uid, text, label = line.split("\t")
            rows.append({"text": text, "label": LABELS[label], "meta": {"id": f"{path.name}:{uid}"}})
    return rows


def write_jsonl(path, rows):
    with open(path, "w", encoding="utf-8", newline="\n") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")


def main(argv):
    if len(argv) not in (2, 3):
        sys.exit(__doc__)
    up = Path(argv[1])
    out = Path(argv[2]) if len(argv) == 3 else Path(__file__).resolve().parent
    train = [r for r in read_tsv(up / "data" / "train.tsv") if r["label"] != "mixed"]
    random.Random(0).shuffle(train)
    test = read_tsv(up / "data" / "test.tsv")
    assert not {r["text"] for r in train} & {r["text"] for r in test}
    write_jsonl(out / "train.jsonl", train)
    write_jsonl(out / "test.jsonl", test)
    print(f"train {len(train)}  test {len(test)}")


if __name__ == "__main__":
    main(sys.argv)
