"""Re-create ``user-instructions.jsonl`` from Self-Instruct's ``human_eval/user_oriented_instructions.jsonl``.

    git clone https://github.com/yizhongw/self-instruct && git -C self-instruct checkout 0b26ccaa415992100fa32df62d41b994cf928e23
    python benchmarks/data/make_user_instructions.py self-instruct/human_eval/user_oriented_instructions.jsonl

Each upstream task has one instance; its prompt is the instruction, then a blank line and the instance
input when that input is not empty (both stripped of surrounding whitespace). Exact repeats of a prompt
are kept once (the first), in upstream order; ``id`` counts from 0, ``source_id`` is the upstream id.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

OUT = Path(__file__).parent / "user-instructions.jsonl"


def build(lines: list[str]) -> list[dict]:
    out: list[dict] = []
    seen: set[str] = set()
    for line in lines:
        if not line.strip():
            continue
        task = json.loads(line)
        for inst in task["instances"]:
            text = inst.get("input", "").strip()
            prompt = task["instruction"].strip() + (f"\n\n{text}" if text else "")
            if prompt not in seen:
                seen.add(prompt)
                out.append({"id": len(out), "prompt": prompt, "source_id": task["id"]})
    return out


def main() -> None:
    rows = build(Path(sys.argv[1]).read_text(encoding="utf-8").splitlines())
    with open(OUT, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    print(f"{len(rows)} prompts -> {OUT}")


if __name__ == "__main__":
    main()
