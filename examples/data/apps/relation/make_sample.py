"""Re-create train.jsonl and test.jsonl of this folder from the SemEval-2010 Task 8 release.

    python make_sample.py UPSTREAM_DIR [OUT_DIR]

UPSTREAM_DIR is the release folder ``SemEval2010_task8_all_data`` (it holds
``SemEval2010_task8_training/TRAIN_FILE.TXT`` and ``SemEval2010_task8_testing_keys/TEST_FILE_FULL.TXT``);
OUT_DIR defaults to the folder of this script. Standard library only, deterministic.

Each upstream example is four CRLF lines: ``<id>\\t"<sentence with <e1>..</e1> <e2>..</e2>>"``, the
relation label, ``Comment: ...``, and a blank line. A row keeps the sentence as written (only the
surrounding double quotes are removed) with its markers, and the label exactly as upstream.
train: 2,000 of the 8,000 training sentences, drawn with random.Random(0).sample, written in upstream order.
test: 200 of the 2,717 test sentences, drawn with a fresh random.Random(0).sample, written in upstream order.
"""

import json
import random
import sys
from pathlib import Path

TRAIN_PATH = "SemEval2010_task8_training/TRAIN_FILE.TXT"
TEST_PATH = "SemEval2010_task8_testing_keys/TEST_FILE_FULL.TXT"
N_TRAIN, N_TEST = 2000, 200


def read_examples(path):
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    out = []
    i = 0
    while i < len(lines):
        if not lines[i].strip():
            i += 1
            continue
        num, quoted = lines[i].split("\t", 1)
        if not (quoted.startswith('"') and quoted.endswith('"')):
            raise ValueError(f"{path}:{i + 1}: sentence is not in double quotes")
        label = lines[i + 1].strip()
        if not lines[i + 2].startswith("Comment"):
            raise ValueError(f"{path}:{i + 3}: expected a Comment line")
        out.append((int(num), quoted[1:-1], label))
        i += 3
    return out


def draw(examples, n, split):
    picked = sorted(random.Random(0).sample(range(len(examples)), n))
    return [
        {"text": text, "relation": label, "meta": {"id": f"semeval8-{split}-{num}"}}
        for num, text, label in (examples[k] for k in picked)
    ]


def write(rows, path):
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def main(argv):
    if len(argv) not in (2, 3):
        sys.exit(__doc__)
    upstream = Path(argv[1])
    out_dir = Path(argv[2]) if len(argv) == 3 else Path(__file__).resolve().parent
    train = read_examples(upstream / TRAIN_PATH)
    test = read_examples(upstream / TEST_PATH)
    assert len(train) == 8000 and len(test) == 2717, (len(train), len(test))
    write(draw(train, N_TRAIN, "train"), out_dir / "train.jsonl")
    write(draw(test, N_TEST, "test"), out_dir / "test.jsonl")


if __name__ == "__main__":
    main(sys.argv)
