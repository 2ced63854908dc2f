"""Bytes on disk to located raw rows, and rows back to disk atomically.

Readers here know containers (JSONL, JSON array, Parquet, column text; optionally gzipped), not
instruction formats. Every row carries its 1-based line number (or record index for Parquet) so a
format parser's error can name file, line and field. Damage is reported per row where the container
allows it (a bad JSONL line, an undecodable line, a truncated tail) so ``--on-error skip`` can keep
the rest; it is never repaired silently.
"""

from __future__ import annotations

import bisect
import gzip
import io
import json
import os
import tempfile
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
    if last in (".conll", ".iob", ".bio", ".tsv", ".txt"):
        return "text"
    text = data[len(BOM) :] if data.startswith(BOM) else data
    stripped = text.lstrip()
    if stripped[:1] == b"[":
        return "json"
    if stripped[:1] == b"{" or last == ".json":
        return "jsonl"
    return "text"


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
            )
            index += 1
            continue
        try:
            obj = json.loads(text)
        except RecursionError:
            yield RecordError("malformed_json", "invalid JSON: nested too deeply", line=n, index=index)
            index += 1
            continue
        except json.JSONDecodeError as e:
            is_tail = n - 1 == last or (n - 1 == last - 1 and not lines[last].strip())
            reason = (
                "truncated_record"
                if (is_tail and (truncated or not data.endswith(b"\n")))
                else "malformed_json"
            )
            yield RecordError(reason, f"invalid JSON: {e.msg} at column {e.colno}", line=n, index=index)
            index += 1
            continue
        if _has_lone_surrogate(text, obj):
            yield RecordError(
                "invalid_unicode",
                "a \\u escape encodes a lone surrogate, not a character",
                line=n,
                index=index,
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


def iter_json_array(data: bytes, truncated: bool) -> Iterator[Row | RecordError]:
    """Parse a JSON array element by element so one bad element names its own line."""
    if data.startswith(BOM):
        data = data[len(BOM) :]
    # surrogateescape keeps undecodable bytes visible as lone surrogates, so the element holding them
    # can be rejected while the others are read.
    text = data.decode("utf-8", errors="surrogateescape")
    starts = _line_starts(text)

    def line_of(pos: int) -> int:
        return bisect.bisect_right(starts, pos)

    decoder = json.JSONDecoder()
    n = len(text)

    def skip_ws(pos: int) -> int:
        while pos < n and text[pos] in " \t\r\n":
            pos += 1
        return pos

    pos = skip_ws(0)
    if pos >= n or text[pos] != "[":
        yield RecordError(
            "malformed_json", "a JSON file must hold an array of records", line=line_of(pos), index=0
        )
        return
    pos = skip_ws(pos + 1)
    index = 0
    if pos < n and text[pos] == "]":
        return
    while True:
        if pos >= n:
            yield RecordError(
                "truncated_file",
                "the JSON array is not closed; the file is cut short",
                line=line_of(n),
                index=index,
            )
            return
        try:
            obj, end = decoder.raw_decode(text, pos)
        except RecursionError:
            yield RecordError(
                "malformed_json", "invalid JSON: nested too deeply", line=line_of(pos), index=index
            )
            return
        except json.JSONDecodeError as e:
            reason = (
                "truncated_file" if truncated or _is_cut_short(e.msg, text[e.pos :]) else "malformed_json"
            )
            msg = f"invalid JSON: {e.msg}" + (
                "; the rest of the file cannot be read" if reason == "malformed_json" else ""
            )
            yield RecordError(reason, msg, line=e.lineno, index=index)
            return
        chunk = text[pos:end]
        if any("\udc80" <= c <= "\udcff" for c in chunk):
            bad = next(i for i, c in enumerate(chunk) if "\udc80" <= c <= "\udcff")
            yield RecordError(
                "undecodable_bytes", "bytes here are not valid UTF-8", line=line_of(pos + bad), index=index
            )
        else:
            yield Row(obj, line_of(pos), index, chunk)
        index += 1
        pos = skip_ws(end)
        if pos < n and text[pos] == ",":
            pos = skip_ws(pos + 1)
            continue
        if pos < n and text[pos] == "]":
            after = skip_ws(pos + 1)
            if after < n:
                yield RecordError(
                    "malformed_json",
                    "unexpected data after the array's closing ']' (is this JSONL whose first line is a list?)",
                    line=line_of(after),
                    index=index,
                )
            return
        if pos >= n:
            yield RecordError(
                "truncated_file",
                "the JSON array is not closed; the file is cut short",
                line=line_of(n),
                index=index,
            )
            return
        yield RecordError(
            "malformed_json", f"expected ',' or ']' but found {text[pos]!r}", line=line_of(pos), index=index
        )
        return


def iter_parquet(path: Path, data: bytes) -> Iterator[Row | RecordError]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(io.BytesIO(data))
    except Exception as e:  # pyarrow raises several types for a damaged file
        yield RecordError("unreadable_file", f"not a readable Parquet file: {e}", index=0)
        return
    for i, row in enumerate(table.to_pylist()):
        row = {k: v for k, v in row.items() if v is not None}
        if isinstance(row.get("meta"), str):
            try:
                row["meta"] = json.loads(row["meta"])
            except json.JSONDecodeError:
                yield RecordError("wrong_type", "'meta' must hold a JSON object", field="meta", index=i)
                continue
        yield Row(row, None, i)


def iter_text_blocks(data: bytes, truncated: bool) -> Iterator[Row | RecordError]:
    """Blocks of non-blank lines separated by blank lines (CoNLL); data is a list of (line_no, line)."""
    if data.startswith(BOM):
        data = data[len(BOM) :]
    block: list[tuple[int, str]] = []
    index = 0
    bad_line: RecordError | None = None
    for n, raw in enumerate(data.split(b"\n"), start=1):
        raw = raw.rstrip(b"\r")
        if not raw.strip():
            if bad_line is not None:
                yield bad_line
                index += 1
            elif block:
                yield Row(block, block[0][0], index)
                index += 1
            block, bad_line = [], None
            continue
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
            continue
        block.append((n, line))
    if bad_line is not None:
        yield bad_line
        index += 1
    elif block:
        yield Row(block, block[0][0], index)
        index += 1
    if truncated:
        yield RecordError(
            "truncated_file", "the gzip stream ends early; the rest of the file is lost", index=index
        )


# ---------------------------------------------------------------------------------------- writing
def atomic_write_bytes(path: Path, payload: bytes) -> None:
    """Write to a temp file in the same folder, fsync, then rename: a reader never sees half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def encode_rows(rows: Iterable[dict[str, Any]], path: Path) -> bytes:
    """Serialize rows for ``path``'s suffix: .jsonl, .json (array) or .parquet, each optionally .gz."""
    suffixes = [s.lower() for s in Path(path).suffixes]
    gz = bool(suffixes) and suffixes[-1] == ".gz"
    kind = suffixes[-2] if gz and len(suffixes) > 1 else (suffixes[-1] if suffixes else ".jsonl")
    rows = list(rows)
    if kind == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

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
    elif kind == ".json":
        payload = (json.dumps(rows, ensure_ascii=False, indent=2) + "\n").encode("utf-8")
    else:
        payload = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("utf-8")
    if gz:
        payload = gzip.compress(payload, mtime=0)
    return payload


def write_rows(rows: Iterable[dict[str, Any]], path: Path) -> None:
    atomic_write_bytes(Path(path), encode_rows(rows, path))


def write_text(text: str, path: Path) -> None:
    payload = text.encode("utf-8")
    if str(path).lower().endswith(".gz"):
        payload = gzip.compress(payload, mtime=0)
    atomic_write_bytes(Path(path), payload)
