"""Files onto disk so that neither an interrupt nor a bad path can destroy anything — the one module every
layer writes and hashes files through (data cards, checkpoints, run ledgers, model manifests, exports).
It sits at the bottom: it imports nothing of instructkit, so models/ and formats/ alike can use it.

One file: a synced temp beside it, renamed into place (:func:`atomic_write_bytes`), with the mode the
umask gives. Several files as one unit: :func:`commit_files` (journal, renames with Ctrl-C held back,
rolled forward after a crash). A whole folder: :func:`replaced_folder` (built beside it, swapped in;
:func:`recover_folder` undoes an interrupted swap). And the checks a command runs before it reads
anything: an output that is an input or another output, a folder, under a file, or in the wrong
container is refused (:class:`OutputError`); the operating system's refusals become :class:`WriteError`.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from glob import escape as glob_escape
from pathlib import Path

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


def plain_file_mode() -> int:
    """The mode a plain ``open(path, "w")`` gives a new file (0666 minus the umask): for files that a
    library writes private (safetensors: 0600) but that are the user's output."""
    return 0o666 & ~_umask()


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


def encode_text(text: str, path: str | Path) -> bytes:
    """UTF-8 bytes of ``text``, gzipped (with a fixed mtime, so equal text gives equal bytes) when ``path``
    ends in ``.gz``."""
    payload = text.encode("utf-8")
    return gzip.compress(payload, mtime=0) if str(path).lower().endswith(".gz") else payload


def write_text(text: str, path: str | Path) -> None:
    """``text`` written atomically (:func:`atomic_write_bytes`), gzipped for a ``.gz`` path."""
    atomic_write_bytes(Path(path), encode_text(text, path))


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB blocks (data cards, checkpoint manifests, model
    manifests, eval results and the run ledgers' stage hashes all use this one, so their hashes compare)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
