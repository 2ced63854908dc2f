"""The text a duplicate is judged on, and its normalized hash: the same in the local steps and their Ray
forms."""

from __future__ import annotations

import hashlib
import unicodedata

from instructkit.records import Record

KEYS = ("instruction", "prompt", "conversation")


def dedup_key(record: Record, key: str) -> str:
    """The text a duplicate is judged on.

    ``instruction``: the first user turn up to its first blank line (the Alpaca/Dolly readers join
    instruction and input with a blank line); ``prompt``: all user turns (instruction + input);
    ``conversation``: every turn.
    """
    if key == "instruction":
        return record.first_instruction().split("\n\n", 1)[0]
    if key == "prompt":
        return record.prompt_text()
    return record.all_text()


def normalized_hash(text: str) -> str:
    text = " ".join(unicodedata.normalize("NFKC", text).casefold().split())
    return hashlib.sha1(text.encode("utf-8")).hexdigest()
