"""The JSON parser every reader of ours uses: the stdlib's, refusing what it accepts but cannot round-trip
(NaN and Infinity, integers over Python's digit limit, a key given twice), so a refusal names the
record's field instead of a value that silently changes on the way through. ``first_non_finite`` finds the
field a writer must refuse for the same reason."""

from __future__ import annotations

import json
import math
import sys
from typing import Any

from instructkit.records import RecordError


class _Refused:
    """Stands in for a value the reader refuses (NaN, Infinity, an integer Python will not read), so
    the parse runs on to the end of the record and the refusal can name its field."""

    def __init__(self, reason: str, message: str):
        self.reason = reason
        self.message = message


class _DupKeys(dict):
    """A JSON object that held a key twice (the second value won, as in ``json.loads``)."""

    duplicate: str = ""


class CheckedJSON:
    """``json.loads`` / ``raw_decode`` that also refuses what the stdlib accepts but cannot round-trip:
    ``NaN``/``Infinity`` (not JSON; written back they make an invalid file), numbers that overflow to
    infinity, integers over Python's digit limit (a ValueError from deep inside the parser), and an
    object with a key twice (silently the last value wins; other readers keep the first).

    The hooks never raise: they mark the value and the parse goes on, so a JSON array can still find
    the element's end and read the elements after it.
    """

    def __init__(self) -> None:
        self.flagged = False

        def refuse(reason: str, message: str) -> _Refused:
            self.flagged = True
            return _Refused(reason, message)

        def parse_int(s: str) -> Any:
            try:
                return int(s)
            except ValueError:  # more digits than sys.get_int_max_str_digits() allows
                return refuse(
                    "number_too_large",
                    f"an integer of {len(s.lstrip('-'))} digits (Python reads at most "
                    f"{sys.get_int_max_str_digits()})",
                )

        def parse_float(s: str) -> Any:
            value = float(s)
            if math.isfinite(value):
                return value
            return refuse("non_finite_number", f"the number {s[:30]} overflows to infinity")

        def parse_constant(name: str) -> Any:
            return refuse("non_finite_number", f"{name} is not a JSON number")

        def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
            obj = dict(items)
            if len(obj) == len(items):
                return obj
            seen: set[str] = set()
            marked = _DupKeys(obj)
            for key, _ in items:
                if key in seen:
                    marked.duplicate = key
                    break
                seen.add(key)
            self.flagged = True
            return marked

        self.decoder = json.JSONDecoder(
            object_pairs_hook=pairs,
            parse_int=parse_int,
            parse_float=parse_float,
            parse_constant=parse_constant,
        )

    def raw_decode(self, text: str, pos: int = 0) -> tuple[Any, int, RecordError | None]:
        """Decode one value at ``pos``: (value, end, the first refused value as an error or None)."""
        self.flagged = False
        obj, end = self.decoder.raw_decode(text, pos)
        return obj, end, (_first_refusal(obj) if self.flagged else None)

    def loads(self, text: str) -> tuple[Any, RecordError | None]:
        obj, end, problem = self.raw_decode(text, len(text) - len(text.lstrip(" \t\r\n")))
        if text[end:].strip(" \t\r\n"):
            raise json.JSONDecodeError("Extra data", text, end)
        return obj, problem


def _first_refusal(obj: Any, path: str = "") -> RecordError | None:
    """The first refused value in document order, as an error naming its field."""
    if isinstance(obj, _Refused):
        return RecordError(obj.reason, obj.message, field=path or None)
    if isinstance(obj, dict):
        if isinstance(obj, _DupKeys):
            key = obj.duplicate
            return RecordError(
                "duplicate_key",
                f"the key '{key}' appears twice in one object (readers disagree on which value wins)",
                field=f"{path}.{key}" if path else key,
            )
        for k, v in obj.items():
            found = _first_refusal(v, f"{path}.{k}" if path else str(k))
            if found:
                return found
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            found = _first_refusal(v, f"{path}[{i}]")
            if found:
                return found
    return None


def first_non_finite(obj: Any, path: str = "") -> str | None:
    """The field of the first NaN/Infinity float in a decoded row (Parquet holds them natively)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return path or "(row)"
    if isinstance(obj, dict):
        for k, v in obj.items():
            found = first_non_finite(v, f"{path}.{k}" if path else str(k))
            if found:
                return found
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            found = first_non_finite(v, f"{path}[{i}]")
            if found:
                return found
    return None
