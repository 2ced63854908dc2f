"""Re-create train.jsonl and test.jsonl of the ner app from UNER English-EWT (Universal NER v1).

Upstream: https://github.com/UniversalNER/UNER_English-EWT (commit
8ed072de2fd24022cc62458997fe96a8fe191ea4), files en_ewt-ud-dev.iob2 and en_ewt-ud-test.iob2
(CoNLL-style: ``# sent_id = ...`` comments, then one token a line: index, token, IOB2 tag, ...).
Standard library only.

    python make_sample.py UPSTREAM_DIR [OUT_DIR]

UPSTREAM_DIR holds the two .iob2 files (a checkout of that repository); OUT_DIR defaults to this
script's folder. The output is deterministic (random.Random(0)).

Rules:
* tokens and tags are kept exactly as upstream (IOB2, types PER, ORG, LOC); meta.id is the sent_id;
* only sentences of 5 to 40 tokens are kept (no sentence is cut);
* train: the kept sentences of the official *dev* file (en_ewt-ud-dev.iob2; the train file of this
  repository is not used, see SOURCE.md), all of them (1,494; fewer than the 2,000 cap), shuffled
  with random.Random(0);
* test: 200 of the kept sentences of the official test file, drawn with random.Random(0).sample,
  written in upstream order; sentences without entities are kept in their natural share.
"""

import json
import random
import sys
from pathlib import Path

MIN_TOKENS, MAX_TOKENS = 5, 40
N_TRAIN, N_TEST = 2000, 200


def read_iob2(path):
    sents, cur = [], None
    with open(path, encoding="utf-8", newline="") as fh:
        for line in fh.read().split("\n"):
            line = line.rstrip("\r")
            if line.startswith("# sent_id = "):
                cur = {"id": line[len("# sent_id = ") :], "tokens": [], "tags": []}
            elif line.startswith("#"):
                continue
            elif not line.strip():
                if cur is not None and cur["tokens"]:
                    sents.append(cur)
                cur = None
            else:
                cols = line.split("\t")
                cur["tokens"].append(cols[1])
                cur["tags"].append(cols[2])
    if cur is not None and cur["tokens"]:
        sents.append(cur)
    return sents


def keep(sents):
    return [s for s in sents if MIN_TOKENS <= len(s["tokens"]) <= MAX_TOKENS]


def row(s):
    return {"tokens": s["tokens"], "tags": s["tags"], "meta": {"id": s["id"]}}


def write_jsonl(path, rows):
    with open(path, "w", encoding="utf-8", newline="\n") as fh:
        for r in rows:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")


def main(argv):
    if len(argv) not in (2, 3):
        sys.exit(__doc__)
    up = Path(argv[1])
    out = Path(argv[2]) if len(argv) == 3 else Path(__file__).resolve().parent
    train = keep(read_iob2(up / "en_ewt-ud-dev.iob2"))
    random.Random(0).shuffle(train)
    train = train[:N_TRAIN]
    test_pool = keep(read_iob2(up / "en_ewt-ud-test.iob2"))
    picked = sorted(random.Random(0).sample(range(len(test_pool)), N_TEST))
    test = [test_pool[i] for i in picked]
    assert not {s["id"] for s in train} & {s["id"] for s in test}
    write_jsonl(out / "train.jsonl", [row(s) for s in train])
    write_jsonl(out / "test.jsonl", [row(s) for s in test])
    with_ent = sum(1 for s in test if any(t != "O" for t in s["tags"]))
    print(f"train {len(train)}  test {len(test)} ({with_ent} with at least one entity)")


if __name__ == "__main__":
    main(sys.argv)
