"""Re-create train.jsonl and test.jsonl of this folder from Multi30K (task 1, English -> German).

    python make_sample.py UPSTREAM_DIR [OUT_DIR]

UPSTREAM_DIR is the folder ``data/task1/raw`` of https://github.com/multi30k/dataset (it holds
``train.en.gz``, ``train.de.gz``, ``test_2016_flickr.en.gz``, ``test_2016_flickr.de.gz``); OUT_DIR defaults
to the folder of this script. Standard library only, deterministic.

The .en and .de files are line-aligned (line n of one translates line n of the other). Each line is
stripped of leading/trailing whitespace (40 German training lines end in a space), nothing else changes.
train: 2,000 of the 29,000 training pairs, drawn with random.Random(0).sample, written in upstream order.
test: 200 of the 1,000 pairs of the official 2016 Flickr test set, drawn with a fresh random.Random(0).sample,
written in upstream order. meta.id is ``multi30k-<split>-<1-based line number>``.
"""

import gzip
import json
import random
import sys
from pathlib import Path

N_TRAIN, N_TEST = 2000, 200


def read_lines(path):
    with gzip.open(path, "rb") as f:
        text = f.read().decode("utf-8")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line.strip() for line in lines]


def read_pairs(upstream, stem):
    en = read_lines(upstream / f"{stem}.en.gz")
    de = read_lines(upstream / f"{stem}.de.gz")
    if len(en) != len(de):
        raise ValueError(f"{stem}: {len(en)} English lines but {len(de)} German lines")
    return list(zip(en, de))


def draw(pairs, n, split):
    picked = sorted(random.Random(0).sample(range(len(pairs)), n))
    rows = []
    for k in picked:
        en, de = pairs[k]
        if not en or not de:
            raise ValueError(f"{split} line {k + 1} is empty")
        rows.append({
            "source": en,
            "target": de,
            "source_lang": "en",
            "target_lang": "de",
            "meta": {"id": f"multi30k-{split}-{k + 1}"},
        })
    return rows


def write(rows, path):
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def main(argv):
    if len(argv) not in (2, 3):
        sys.exit(__doc__)
    upstream = Path(argv[1])
    out_dir = Path(argv[2]) if len(argv) == 3 else Path(__file__).resolve().parent
    train = read_pairs(upstream, "train")
    test = read_pairs(upstream, "test_2016_flickr")
    assert len(train) == 29000 and len(test) == 1000, (len(train), len(test))
    write(draw(train, N_TRAIN, "train"), out_dir / "train.jsonl")
    write(draw(test, N_TEST, "test2016"), out_dir / "test.jsonl")


if __name__ == "__main__":
    main(sys.argv)
