"""Bytes on disk to located raw rows, and rows back to disk atomically.

Readers here know containers (JSONL, JSON array, Parquet, column text; optionally gzipped), not
instruction formats. Every row carries its 1-based line number (or record index for Parquet) so a
format parser's error can name file, line and field. Damage is reported per row where the container
allows it (a bad JSONL line, an undecodable line, a truncated tail) so ``--on-error skip`` can keep
the rest; it is never repaired silently. The JSON parser also refuses what the stdlib accepts but
cannot round-trip (NaN, integers over Python's digit limit, a key given twice), and a reject keeps
the record's source text.

Writing: every file goes to a synced temp beside it and is renamed into place, with the mode the
umask gives. ``commit_files`` writes several files as one unit and ``replaced_folder`` swaps in a
whole folder, so an interrupt leaves the old set or the new set; ``check_outputs`` refuses an output
that is an input or another output before anything is written.
"""

from __future__ import annotations

import bisect
import gzip
import io
import json
import math
import os
import shutil
import signal
import sys
import tempfile
import threading
import zlib
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from glob import escape as glob_escape
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


def _first_non_finite(obj: Any, path: str = "") -> str | None:
    """The field of the first NaN/Infinity float in a decoded row (Parquet holds them natively)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return path or "(row)"
    if isinstance(obj, dict):
        for k, v in obj.items():
            found = _first_non_finite(v, f"{path}.{k}" if path else str(k))
            if found:
                return found
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            found = _first_non_finite(v, f"{path}[{i}]")
            if found:
                return found
    return None


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

    def source(start: int, end: int | None = None) -> str:
        """The file's text from start to end as a reject keeps it (bad bytes as \\xNN)."""
        return _shown(text[start:end].encode("utf-8", errors="surrogateescape"))

    parser = CheckedJSON()
    n = len(text)

    def skip_ws(pos: int) -> int:
        while pos < n and text[pos] in " \t\r\n":
            pos += 1
        return pos

    pos = skip_ws(0)
    if pos >= n or text[pos] != "[":
        yield RecordError(
            "malformed_json",
            "a JSON file must hold an array of records",
            line=line_of(pos),
            index=0,
            raw=source(pos) or None,
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
            obj, end, problem = parser.raw_decode(text, pos)
        except RecursionError:
            yield RecordError(
                "malformed_json",
                "invalid JSON: nested too deeply; the rest of the file cannot be read",
                line=line_of(pos),
                index=index,
                raw=source(pos),
            )
            return
        except json.JSONDecodeError as e:
            reason = (
                "truncated_file" if truncated or _is_cut_short(e.msg, text[e.pos :]) else "malformed_json"
            )
            msg = f"invalid JSON: {e.msg}" + (
                "; the rest of the file cannot be read" if reason == "malformed_json" else ""
            )
            # raw: everything from this element on, which is what the file loses here
            yield RecordError(reason, msg, line=e.lineno, index=index, raw=source(pos))
            return
        chunk = text[pos:end]
        if any("\udc80" <= c <= "\udcff" for c in chunk):
            bad = next(i for i, c in enumerate(chunk) if "\udc80" <= c <= "\udcff")
            yield RecordError(
                "undecodable_bytes",
                "bytes here are not valid UTF-8",
                line=line_of(pos + bad),
                index=index,
                raw=source(pos, end),
            )
        elif problem is not None:
            yield problem.located(line=line_of(pos), index=index).with_raw(chunk)
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
                    raw=source(after),
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
            "malformed_json",
            f"expected ',' or ']' but found {text[pos]!r}; the rest of the file cannot be read",
            line=line_of(pos),
            index=index,
            raw=source(pos),
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
        bad = _first_non_finite(row)
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
ROW_SUFFIXES = (".jsonl", ".json", ".parquet")
TEXT_SUFFIXES = (".conll", ".iob", ".bio", ".tsv", ".txt")


class OutputError(ValueError):
    """An output the command refuses before it reads or writes anything: it is one of the inputs or
    another output, it is a folder, it lies under a file, its suffix is not the format's container,
    or writing it would replace a file the command does not own."""


class WriteError(OSError):
    """The operating system refused a write (no permission, no space, a read-only file system): names
    the path and the reason instead of ending in a traceback."""

    def __init__(self, path: str | Path, err: OSError):
        super().__init__(err.errno, err.strerror)
        self.path = Path(path)
        self.message = f"cannot write {path}: {err.strerror or err}"

    def __str__(self) -> str:
        return self.message


def _umask() -> int:
    # Reading the umask with os.umask means setting it for a moment (racy with threads that create
    # files); Linux shows it in /proc/self/status, so use that where it is.
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (best effort: not every file system lets a folder be synced)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _stage(path: Path, payload: bytes) -> Path:
    """Write ``payload`` to a synced temp file beside ``path`` and return the temp's path.

    The temp gets the mode a plain ``open(path, "w")`` would give (0666 minus the umask): mkstemp
    makes 0600 files, meant for private scratch files, and this one becomes the user's output.
    """
    if path.is_dir():
        raise WriteError(path, IsADirectoryError(21, "it is a folder, not a file"))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise WriteError(path, e) from None
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o666 & ~_umask())
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise WriteError(path, e) from None
        raise
    return Path(tmp)


def atomic_write_bytes(path: Path, payload: bytes) -> None:
    """Write to a temp file in the same folder, fsync, then rename: a reader never sees half a file."""
    path = Path(path)
    tmp = _stage(path, payload)
    try:
        os.replace(tmp, path)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise WriteError(path, e) from None
        raise
    _fsync_dir(path.parent)


@contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Hold a Ctrl-C (SIGINT) back for the few renames that commit a set of files, then deliver it:
    the interrupt still stops the command, just not between two renames of one commit."""
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may set signal handlers
        return
    previous = signal.getsignal(signal.SIGINT)
    if previous is None:  # a handler installed outside Python: leave it alone
        yield
        return
    caught: list[int] = []
    signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if caught:
            signal.raise_signal(signal.SIGINT)


# A commit of several files: stage every temp, write a journal naming (destination, temp) pairs, rename
# each temp into place, remove the journal. Once the journal exists every temp is complete and synced,
# so finishing the renames is always right: an interrupted commit is finished (rolled forward) in the
# same process where it can be, else by the next commit to the same destination. A plain "write rejects
# first, then output" would leave new rejects beside the old output when stopped in between.
def commit_journal(path: Path) -> Path:
    """Where the journal of a commit whose first file is ``path`` lives (hidden, beside it)."""
    path = Path(path)
    return path.with_name(f".{path.name}.commit")


def _move_in(entries: Sequence[tuple[Path, Path]]) -> None:
    for path, tmp in entries:
        if tmp.exists():  # a temp already moved in (an earlier, interrupted attempt) is skipped
            os.replace(tmp, path)
    for folder in {path.parent for path, _ in entries}:
        _fsync_dir(folder)


def recover_commit(journal: Path) -> bool:
    """Finish a commit that a crash or kill stopped between its renames; True when there was one."""
    journal = Path(journal)
    if not journal.exists():
        return False
    try:
        entries = [(Path(e["path"]), Path(e["tmp"])) for e in json.loads(journal.read_text("utf-8"))]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise OutputError(
            f"{journal} is an unreadable commit journal ({e}); remove it to write here again"
        ) from None
    try:
        _move_in(entries)
        journal.unlink()
    except OSError as e:
        raise WriteError(e.filename2 or e.filename or journal, e) from None
    return True


def commit_files(files: Sequence[tuple[str | Path, bytes]], journal: Path | None = None) -> None:
    """Write several files as one unit: after an interrupt, a reader finds the old set or the new set.

    An interrupt while staging leaves the old files untouched (the temps are removed); a Ctrl-C during
    the renames is held back until they are done; an error or hard kill during them leaves the journal,
    and the next commit to the same first file finishes the renames before it starts.
    """
    pairs = [(Path(p), payload) for p, payload in files]
    journal = Path(journal) if journal else commit_journal(pairs[0][0])
    recover_commit(journal)
    staged: list[tuple[Path, Path]] = []
    try:
        for path, payload in pairs:
            staged.append((path, _stage(path, payload)))
        entries = [{"path": str(p.absolute()), "tmp": str(t.absolute())} for p, t in staged]
        atomic_write_bytes(journal, json.dumps(entries).encode("utf-8"))
    except BaseException:
        # Stopped before the commit was decided: drop the journal (if its rename went through) before
        # the temps it names, so a later recovery finds nothing to move.
        journal.unlink(missing_ok=True)
        for _, tmp in staged:
            tmp.unlink(missing_ok=True)
        raise
    with interrupts_deferred():
        try:
            _move_in(staged)
        except BaseException as e:
            try:  # every temp is whole: finish the renames so the new set is in place
                _move_in(staged)
                journal.unlink(missing_ok=True)
            except BaseException:
                pass  # the journal stays; the next commit here finishes it
            if isinstance(e, OSError):
                raise WriteError(e.filename2 or e.filename or pairs[0][0], e) from None
            raise
        journal.unlink(missing_ok=True)


@contextmanager
def replaced_folder(dest: str | Path) -> Iterator[Path]:
    """Yield an empty staging folder beside ``dest``; when the block ends cleanly, swap it in for
    ``dest`` (old folder renamed aside, new renamed in, old removed). An interrupt before the swap
    leaves the old folder as it was; one between the two renames puts the old folder back; a crash
    there is undone by :func:`recover_folder`, which runs first on every later swap to ``dest``."""
    dest = Path(dest).resolve()  # a symlink's target is replaced; '.' gets a real name and parent
    recover_folder(dest)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(prefix=f".{dest.name}.new-", dir=dest.parent))
        os.chmod(stage, 0o777 & ~_umask())  # mkdtemp makes 0700 folders
    except OSError as e:
        raise WriteError(dest, e) from None
    try:
        yield stage
        _fsync_dir(stage)
        with interrupts_deferred():
            try:
                _swap_in(stage, dest)
            except OSError as e:
                raise WriteError(dest, e) from None
    finally:
        if stage.exists():
            shutil.rmtree(stage, ignore_errors=True)


def _swap_in(stage: Path, dest: Path) -> None:
    if not dest.exists():
        os.rename(stage, dest)
        _fsync_dir(dest.parent)
        return
    old = dest.with_name(f".{dest.name}.old-{stage.name.rsplit('-', 1)[-1]}")
    os.rename(dest, old)
    try:
        os.rename(stage, dest)
    except BaseException:
        os.rename(old, dest)
        raise
    _fsync_dir(dest.parent)
    shutil.rmtree(old, ignore_errors=True)


def recover_folder(dest: str | Path) -> None:
    """Clean up after a folder swap that a crash stopped: if ``dest`` is missing while its old copy
    is aside, the swap stopped between its renames, so the old folder goes back; staging folders and
    old copies left over beside a present ``dest`` are removed (only names this module makes:
    ``.NAME.new-*`` and ``.NAME.old-*``)."""
    dest = Path(dest).resolve()
    parent = dest.parent
    if not parent.is_dir():
        return
    pattern = glob_escape(dest.name)
    olds = sorted(parent.glob(f".{pattern}.old-*"), key=lambda p: p.stat().st_mtime)
    news = list(parent.glob(f".{pattern}.new-*"))
    if not dest.exists() and olds:
        os.rename(olds.pop(), dest)
    for leftover in [*olds, *news]:
        shutil.rmtree(leftover, ignore_errors=True)


# ---------------------------------------------------------------------------------------- checks
def container_suffix(path: str | Path) -> str:
    """The suffix that names the container (``.jsonl`` for ``x.jsonl.gz``), lower case; '' if none."""
    suffixes = [s.lower() for s in Path(path).suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    return suffixes[-1] if suffixes else ""


def check_suffix(path: str | Path, container: str, what: str = "the output") -> None:
    """Refuse a file name whose suffix is not the format's container (CoNLL text in a .parquet)."""
    allowed = TEXT_SUFFIXES if container == "text" else ROW_SUFFIXES
    kind = container_suffix(path)
    if kind not in allowed:
        holds = "column text" if container == "text" else "JSON rows"
        raise OutputError(
            f"{what} {path}: this format writes {holds}, so the file must end in "
            f"{', '.join(allowed)} (optionally .gz), not {kind or 'no suffix'}"
        )


def same_file(a: str | Path, b: str | Path) -> bool:
    """Do two paths name one file (also through links, '..' or a different spelling)?"""
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet): compare where they would be
        return Path(a).resolve() == Path(b).resolve()


def check_outputs(inputs: Sequence[str | Path], outputs: Sequence[tuple[str, str | Path]]) -> None:
    """Refuse, before anything is read or written, an output that would replace an input or another
    output of the same command, that is a folder, or that lies under a file. ``outputs`` are
    (what, path) pairs, e.g. ``("--output", out)``, for the messages."""
    named = [(what, Path(p)) for what, p in outputs]
    for what, out in named:
        if out.is_dir():
            raise OutputError(f"{what} {out} is a folder; name a file")
        for parent in out.parents:
            if parent.exists():
                if not parent.is_dir():
                    raise OutputError(f"{what} {out}: {parent} is a file, not a folder")
                break
        for inp in inputs:
            if same_file(out, inp):
                raise OutputError(
                    f"{what} {out} is the input {inp}; writing it would replace the input (choose another path)"
                )
    for i, (what_a, a) in enumerate(named):
        for what_b, b in named[i + 1 :]:
            if same_file(a, b):
                raise OutputError(f"{what_a} {a} and {what_b} {b} are the same file; choose two paths")


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


def encode_text(text: str, path: str | Path) -> bytes:
    payload = text.encode("utf-8")
    return gzip.compress(payload, mtime=0) if str(path).lower().endswith(".gz") else payload


def _refuse_non_finite(rows: list[Any]) -> None:
    for i, row in enumerate(rows):
        bad = _first_non_finite(row)
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


def write_text(text: str, path: Path) -> None:
    atomic_write_bytes(Path(path), encode_text(text, path))
