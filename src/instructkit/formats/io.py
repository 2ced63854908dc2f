"""Bytes on disk to located raw rows, and rows back to disk atomically.

Readers here know containers (JSONL, JSON array, Parquet, column text; optionally gzipped), not
instruction formats. Every row carries its 1-based line number (or record index for Parquet) so a
format parser's error can name file, line and field. Damage is reported per row where the container
allows it (a bad JSONL line, an undecodable line, a truncated tail) so ``--on-error skip`` can keep
the rest; it is never repaired silently. The JSON parser also refuses what the stdlib accepts but
cannot round-trip (NaN, integers over Python's digit limit, a key given twice), and a reject keeps
the record's source text.

Writing: rows and text to bytes for a file's suffix (NaN refused), put on disk by
``instructkit.files`` (temp then rename; several files or a folder as one unit).
"""

from __future__ import annotations

import bisect
import gzip
import io
import json
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from instructkit.files import TEXT_SUFFIXES, atomic_write_bytes
from instructkit.formats.checked_json import CheckedJSON, first_non_finite
from instructkit.records import RecordError

GZIP_MAGIC = b"\x1f\x8b"
PARQUET_MAGIC = b"PAR1"
BOM = b"\xef\xbb\xbf"


@dataclass
class Row:
    """One raw unit read from a file: a JSON value, a Parquet row, or a block of text lines."""

    data: Any
    line: int | None
    index: int
    raw: str | None = None


def read_bytes(path: Path) -> tuple[bytes, bool]:
    """Return the file's bytes (gunzipped when needed) and whether a gzip stream was cut short."""
    with open(path, "rb") as f:
        head = f.read(2)
        f.seek(0)
        if head != GZIP_MAGIC:
            return f.read(), False
        out = io.BytesIO()
        gz = gzip.GzipFile(fileobj=f)
        try:
            # read1 hands over what it has decompressed so far; read() would drop the partial chunk
            # at a truncation, losing every complete record before the cut.
            while chunk := gz.read1(1 << 20):
                out.write(chunk)
        except (EOFError, zlib.error, gzip.BadGzipFile):
            return out.getvalue(), True
        return out.getvalue(), False


def container_of(path: Path, data: bytes) -> str:
    """Guess the container from the content (suffix only breaks ties): parquet, json, jsonl or text."""
    if data[:4] == PARQUET_MAGIC:
        return "parquet"
    suffixes = [s.lower() for s in path.suffixes if s.lower() != ".gz"]
    last = suffixes[-1] if suffixes else ""
    if last == ".jsonl":
        return "jsonl"
    if last in TEXT_SUFFIXES:
        return "text"
    text = data[len(BOM) :] if data.startswith(BOM) else data
    stripped = text.lstrip()
    if stripped[:1] == b"[":
        return "json"
    if stripped[:1] == b"{" or last == ".json":
        return "jsonl"
    return "text"


def _shown(raw: bytes) -> str:
    """Bytes that are not valid UTF-8, as text a rejects file can hold: bad bytes become \\xNN."""
    return raw.decode("utf-8", errors="backslashreplace")


def _has_lone_surrogate(text: str, obj: Any) -> bool:
    """True when a JSON \\uD800-style escape decoded to half a surrogate pair (unwritable as UTF-8)."""
    if "\\ud" not in text.lower():
        return False

    def walk(x: Any) -> bool:
        if isinstance(x, str):
            return any("\ud800" <= c <= "\udfff" for c in x)
        if isinstance(x, dict):
            return any(walk(k) or walk(v) for k, v in x.items())
        if isinstance(x, list):
            return any(walk(v) for v in x)
        return False

    return walk(obj)


def _is_cut_short(msg: str, rest: str) -> bool:
    """Does a JSON error at the end of the text mean the file was cut, rather than malformed?"""
    rest = rest.strip()
    if msg.startswith("Unterminated string") or not rest:
        return True
    return any(word.startswith(rest) for word in ("true", "false", "null"))


def _line_starts(text: str) -> list[int]:
    starts = [0]
    pos = text.find("\n")
    while pos != -1:
        starts.append(pos + 1)
        pos = text.find("\n", pos + 1)
    return starts


def iter_jsonl(data: bytes, truncated: bool) -> Iterator[Row | RecordError]:
    if data.startswith(BOM):
        data = data[len(BOM) :]
    lines = data.split(b"\n")
    last = len(lines) - 1
    index = 0
    parser = CheckedJSON()
    for n, raw in enumerate(lines, start=1):
        raw = raw.rstrip(b"\r")
        if not raw.strip():
            continue
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            yield RecordError(
                "undecodable_bytes",
                f"bytes at column {e.start + 1} are not valid UTF-8 ({raw[e.start : e.end]!r})",
                line=n,
                index=index,
                raw=_shown(raw),
            )
            index += 1
            continue
        try:
            obj, problem = parser.loads(text)
        except RecursionError:
            yield RecordError(
                "malformed_json", "invalid JSON: nested too deeply", line=n, index=index, raw=text
            )
            index += 1
            continue
        except json.JSONDecodeError as e:
            is_tail = n - 1 == last or (n - 1 == last - 1 and not lines[last].strip())
            reason = (
                "truncated_record"
                if (is_tail and (truncated or not data.endswith(b"\n")))
                else "malformed_json"
            )
            yield RecordError(
                reason, f"invalid JSON: {e.msg} at column {e.colno}", line=n, index=index, raw=text
            )
            index += 1
            continue
        if problem is not None:
            yield problem.located(line=n, index=index).with_raw(text)
        elif _has_lone_surrogate(text, obj):
            yield RecordError(
                "invalid_unicode",
                "a \\u escape encodes a lone surrogate, not a character",
                line=n,
                index=index,
                raw=text,
            )
        else:
            yield Row(obj, n, index, text)
        index += 1
    if truncated:
        yield RecordError(
            "truncated_file",
            "the gzip stream ends early; the rest of the file is lost",
            line=len(lines),
            index=index,
        )


class _ArrayText:
    """A JSON array file's text with the positions → line numbers and reject text its errors need."""

    def __init__(self, data: bytes):
        if data.startswith(BOM):
            data = data[len(BOM) :]
        # surrogateescape keeps undecodable bytes visible as lone surrogates, so the element holding them
        # can be rejected while the others are read.
        self.text = data.decode("utf-8", errors="surrogateescape")
        self.starts = _line_starts(self.text)
        self.n = len(self.text)

    def line_of(self, pos: int) -> int:
        return bisect.bisect_right(self.starts, pos)

    def source(self, start: int, end: int | None = None) -> str:
        """The file's text from start to end as a reject keeps it (bad bytes as \\xNN)."""
        return _shown(self.text[start:end].encode("utf-8", errors="surrogateescape"))

    def skip_ws(self, pos: int) -> int:
        while pos < self.n and self.text[pos] in " \t\r\n":
            pos += 1
        return pos

    def not_closed(self, index: int) -> RecordError:
        return RecordError(
            "truncated_file",
            "the JSON array is not closed; the file is cut short",
            line=self.line_of(self.n),
            index=index,
        )

    def element(
        self, parser: CheckedJSON, pos: int, index: int, truncated: bool
    ) -> tuple[Row | RecordError, int | None]:
        """The element at ``pos`` (a row, or the error that replaces it) and where it ends; None: the rest
        of the file cannot be read."""
        text = self.text
        try:
            obj, end, problem = parser.raw_decode(text, pos)
        except RecursionError:
            msg = "invalid JSON: nested too deeply; the rest of the file cannot be read"
            return RecordError(
                "malformed_json", msg, line=self.line_of(pos), index=index, raw=self.source(pos)
            ), None
        except json.JSONDecodeError as e:
            reason = (
                "truncated_file" if truncated or _is_cut_short(e.msg, text[e.pos :]) else "malformed_json"
            )
            msg = f"invalid JSON: {e.msg}" + (
                "; the rest of the file cannot be read" if reason == "malformed_json" else ""
            )
            # raw: everything from this element on, which is what the file loses here
            return RecordError(reason, msg, line=e.lineno, index=index, raw=self.source(pos)), None
        chunk = text[pos:end]
        if any("\udc80" <= c <= "\udcff" for c in chunk):
            bad = next(i for i, c in enumerate(chunk) if "\udc80" <= c <= "\udcff")
            error = RecordError(
                "undecodable_bytes",
                "bytes here are not valid UTF-8",
                line=self.line_of(pos + bad),
                index=index,
                raw=self.source(pos, end),
            )
            return error, end
        if problem is not None:
            return problem.located(line=self.line_of(pos), index=index).with_raw(chunk), end
        return Row(obj, self.line_of(pos), index, chunk), end


def iter_json_array(data: bytes, truncated: bool) -> Iterator[Row | RecordError]:
    """Parse a JSON array element by element so one bad element names its own line."""
    doc = _ArrayText(data)
    text, n = doc.text, doc.n
    parser = CheckedJSON()
    pos = doc.skip_ws(0)
    if pos >= n or text[pos] != "[":
        msg = "a JSON file must hold an array of records"
        yield RecordError("malformed_json", msg, line=doc.line_of(pos), index=0, raw=doc.source(pos) or None)
        return
    pos = doc.skip_ws(pos + 1)
    index = 0
    if pos < n and text[pos] == "]":
        return
    while True:
        if pos >= n:
            yield doc.not_closed(index)
            return
        item, end = doc.element(parser, pos, index, truncated)
        yield item
        if end is None:
            return
        index += 1
        pos = doc.skip_ws(end)
        if pos < n and text[pos] == ",":
            pos = doc.skip_ws(pos + 1)
            continue
        if pos < n and text[pos] == "]":
            after = doc.skip_ws(pos + 1)
            if after < n:
                yield RecordError(
                    "malformed_json",
                    "unexpected data after the array's closing ']' (is this JSONL whose first line is a list?)",
                    line=doc.line_of(after),
                    index=index,
                    raw=doc.source(after),
                )
            return
        if pos >= n:
            yield doc.not_closed(index)
            return
        yield RecordError(
            "malformed_json",
            f"expected ',' or ']' but found {text[pos]!r}; the rest of the file cannot be read",
            line=doc.line_of(pos),
            index=index,
            raw=doc.source(pos),
        )
        return


def iter_parquet(path: Path, data: bytes) -> Iterator[Row | RecordError]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(io.BytesIO(data))
    except Exception as e:  # pyarrow raises several types for a damaged file
        yield RecordError("unreadable_file", f"not a readable Parquet file: {e}", index=0)
        return
    parser = CheckedJSON()
    for i, row in enumerate(table.to_pylist()):
        row = {k: v for k, v in row.items() if v is not None}
        if isinstance(row.get("meta"), str):
            try:
                row["meta"], problem = parser.loads(row["meta"])
            except (json.JSONDecodeError, RecursionError):
                yield RecordError("wrong_type", "'meta' must hold a JSON object", field="meta", index=i)
                continue
            if problem is not None:
                yield RecordError(problem.reason, problem.message, field=f"meta.{problem.field}", index=i)
                continue
        bad = first_non_finite(row)
        if bad is not None:  # Parquet holds NaN natively; JSON cannot, so no writer could take it
            yield RecordError("non_finite_number", "NaN or Infinity is not a JSON number", field=bad, index=i)
            continue
        yield Row(row, None, i)


def iter_text_blocks(data: bytes, truncated: bool) -> Iterator[Row | RecordError]:
    """Blocks of non-blank lines separated by blank lines (CoNLL); data is a list of (line_no, line).
    Each row's ``raw`` is the block's text, so a rejected sentence keeps its lines."""
    if data.startswith(BOM):
        data = data[len(BOM) :]
    block: list[tuple[int, str]] = []
    shown: list[str] = []  # the block's lines as a reject keeps them, undecodable ones included
    index = 0
    bad_line: RecordError | None = None
    for n, raw in enumerate(data.split(b"\n"), start=1):
        raw = raw.rstrip(b"\r")
        if not raw.strip():
            if bad_line is not None:
                yield bad_line.with_raw("\n".join(shown))
                index += 1
            elif block:
                yield Row(block, block[0][0], index, "\n".join(shown))
                index += 1
            block, shown, bad_line = [], [], None
            continue
        shown.append(_shown(raw))
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            if bad_line is None:
                bad_line = RecordError(
                    "undecodable_bytes",
                    f"bytes at column {e.start + 1} are not valid UTF-8",
                    line=n,
                    index=index,
                )
            continue
        if line.startswith("-DOCSTART-"):  # CoNLL document separator: not a sentence
            shown.pop()
            continue
        block.append((n, line))
    if bad_line is not None:
        yield bad_line.with_raw("\n".join(shown))
        index += 1
    elif block:
        yield Row(block, block[0][0], index, "\n".join(shown))
        index += 1
    if truncated:
        yield RecordError(
            "truncated_file", "the gzip stream ends early; the rest of the file is lost", index=index
        )


# ---------------------------------------------------------------------------------------- writing
def is_rejects_file(path: str | Path) -> bool:
    """Whether ``path`` holds what a rejects file holds: nothing, or JSON lines each an object with a
    'reason' (what every reject this package writes has)."""
    try:
        data, _ = read_bytes(Path(path))
    except OSError:
        return False
    for raw in data.split(b"\n"):
        if not raw.strip():
            continue
        try:
            row = json.loads(raw)
        except (ValueError, RecursionError):
            return False
        if not isinstance(row, dict) or "reason" not in row:
            return False
    return True


def _refuse_non_finite(rows: list[Any]) -> None:
    for i, row in enumerate(rows):
        bad = first_non_finite(row)
        if bad is not None:
            raise RecordError(
                "non_finite_number", "NaN or Infinity is not a JSON number; refusing to write it",
                field=bad, index=i,
            )  # fmt: skip


def encode_rows(rows: Iterable[dict[str, Any]], path: Path) -> bytes:
    """Serialize rows for ``path``'s suffix: .jsonl, .json (array) or .parquet, each optionally .gz.

    NaN and Infinity are refused (a RecordError naming the row and field): JSON has no such numbers,
    and the ``NaN`` that ``json.dumps`` writes by default makes a file other readers reject.
    """
    suffixes = [s.lower() for s in Path(path).suffixes]
    gz = bool(suffixes) and suffixes[-1] == ".gz"
    kind = suffixes[-2] if gz and len(suffixes) > 1 else (suffixes[-1] if suffixes else ".jsonl")
    rows = list(rows)
    if kind == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        _refuse_non_finite(rows)
        # meta holds free-form keys; as a JSON string it round-trips exactly instead of becoming a
        # struct padded with nulls.
        # from_pylist takes its columns from the first row only; give every row every key (None where
        # absent, which the reader drops again).
        keys = list(dict.fromkeys(k for r in rows for k in r))
        table = pa.Table.from_pylist(
            [
                {
                    k: (json.dumps(r[k], ensure_ascii=False) if k == "meta" else r.get(k)) if k in r else None
                    for k in keys
                }
                for r in rows
            ]
        )
        buf = io.BytesIO()
        pq.write_table(table, buf)
        payload = buf.getvalue()
    else:
        try:
            if kind == ".json":
                text = json.dumps(rows, ensure_ascii=False, indent=2, allow_nan=False) + "\n"
            else:
                text = "".join(json.dumps(r, ensure_ascii=False, allow_nan=False) + "\n" for r in rows)
        except ValueError:  # allow_nan=False met a NaN or Infinity: name the row and field
            _refuse_non_finite(rows)
            raise
        payload = text.encode("utf-8")
    if gz:
        payload = gzip.compress(payload, mtime=0)
    return payload


def write_rows(rows: Iterable[dict[str, Any]], path: Path) -> None:
    atomic_write_bytes(Path(path), encode_rows(rows, path))
