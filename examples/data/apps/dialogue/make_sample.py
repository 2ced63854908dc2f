"""Re-create train.jsonl / test.jsonl of the dialogue app from the Schema-Guided Dialogue (SGD) dataset.

    python make_sample.py UPSTREAM_DIR [OUT_DIR]

UPSTREAM_DIR is a checkout of https://github.com/google-research-datasets/dstc8-schema-guided-dialogue
(it holds train/dialogues_NNN.json and test/dialogues_NNN.json); OUT_DIR defaults to this script's folder.
Standard library only; deterministic (random.Random(0)). See SOURCE.md for the files, their sha256 and
the rules below in words.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

# The upstream files read, by number (dialogues_NNN.json). Every train/test file of the commit named in
# SOURCE.md except the ones the snapshot used to build the sample lacked (listed there).
TRAIN_MISSING = {37, 52, 53, 54, 55, 56, 58, 60, 66, 68, 70, 71, 72, 73, 74, 75, 76, 77, 78, 79, 80, 81, 82,
                 83, 84, 85, 93, 94, 104, 117, 118}  # fmt: skip
TEST_MISSING = {12, 16, 19, 22, 23, 26, 27, 28, 29, 31}
TRAIN_FILES = [f"train/dialogues_{n:03d}.json" for n in range(1, 128) if n not in TRAIN_MISSING]
TEST_FILES = [f"test/dialogues_{n:03d}.json" for n in range(1, 35) if n not in TEST_MISSING]

N_TRAIN, N_TEST = 2000, 200
MAX_WORDS = 150  # all turns of a row together, whitespace-separated words
PAIRS = (2, 3)  # user/assistant pairs in a window: 4 or 6 messages (2 when the window starts the dialogue)
ROLES = {"USER": "user", "SYSTEM": "assistant"}


def load(upstream: Path, files: list[str]) -> list[dict]:
    dialogues = []
    for name in files:
        with open(upstream / name, encoding="utf-8") as f:
            dialogues.extend(json.load(f))
    return dialogues


def words(messages: list[dict]) -> int:
    return sum(len(m["content"].split()) for m in messages)


def sample(dialogues: list[dict], n: int, split: str, rng: random.Random, seen: set) -> list[dict]:
    """One window per dialogue, dialogues in a shuffled order, until ``n`` rows.

    A window ends at a SYSTEM turn that is not the dialogue's last turn (the last is almost always a
    goodbye) and starts at a USER turn: 2 or 3 user/system pairs, chosen at random (1 when the end is
    the dialogue's first SYSTEM turn), dropping the earliest pair while the window has more than
    MAX_WORDS words. A window whose texts repeat one already taken
    (in this split or, for test, in train) is skipped.
    """
    order = list(range(len(dialogues)))
    rng.shuffle(order)
    rows = []
    for i in order:
        d = dialogues[i]
        turns = d["turns"]
        assert all(t["speaker"] == ("USER" if k % 2 == 0 else "SYSTEM") for k, t in enumerate(turns)), d[
            "dialogue_id"
        ]
        ends = [k for k in range(1, len(turns) - 1, 2)]  # SYSTEM turns, the last turn excluded
        if not ends:
            continue
        end = rng.choice(ends)
        pairs = min(rng.choice(PAIRS), (end + 1) // 2)
        while True:
            start = end + 1 - 2 * pairs
            messages = [
                {"role": ROLES[t["speaker"]], "content": t["utterance"].strip()}
                for t in turns[start : end + 1]
            ]
            if words(messages) <= MAX_WORDS or pairs == 1:
                break
            pairs -= 1
        if words(messages) > MAX_WORDS or any(not m["content"] for m in messages):
            continue
        key = tuple(m["content"] for m in messages)
        if key in seen:
            continue
        seen.add(key)
        rows.append(
            {"messages": messages, "meta": {"id": f"sgd-{split}-{d['dialogue_id']}-turns{start}-{end}"}}
        )
        if len(rows) == n:
            break
    return rows


def write(path: Path, rows: list[dict]) -> None:
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def main(argv: list[str]) -> None:
    if not 1 <= len(argv) <= 2:
        sys.exit(__doc__)
    upstream = Path(argv[0])
    out = Path(argv[1]) if len(argv) > 1 else Path(__file__).resolve().parent
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(0)
    seen: set = set()
    train = sample(load(upstream, TRAIN_FILES), N_TRAIN, "train", rng, seen)
    test = sample(load(upstream, TEST_FILES), N_TEST, "test", rng, seen)
    write(out / "train.jsonl", train)
    write(out / "test.jsonl", test)
    print(f"train {len(train)} rows, test {len(test)} rows -> {out}")


if __name__ == "__main__":
    main(sys.argv[1:])
