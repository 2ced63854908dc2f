"""Path safety: every path the studio reads or writes is a relative path under ``--runs``.

A path from a URL or a form field is joined to the root, resolved (symlinks followed) and refused unless
the result is the root or below it. So ``../``, an absolute path, a NUL byte, a backslash trick or a
symlink that points out of the root all end in the same 403, before anything is opened; a path no file can
have (a name too long, a loop of symlinks) is a 400.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from instructkit.studio.errors import StudioError


class RunsRoot:
    """The ``--runs`` folder and the one way to turn a user's path into a file under it."""

    def __init__(self, root: str | Path):
        self.root = Path(root).expanduser().resolve()

    def resolve(self, rel: str | None, *, field: str = "path", must_exist: bool = True) -> Path:
        """``rel`` (relative to the root, ``/``-separated) as an absolute path under the root; 403 for one
        that leaves it, 404 for one that is not there (when ``must_exist``)."""
        rel = (rel or "").strip()
        if "\0" in rel or "\\" in rel:
            raise StudioError(403, f"{field}: {rel!r} is not a path under the runs folder", field=field,
                              code="path_refused")  # fmt: skip
        pure = PurePosixPath(rel)
        if pure.is_absolute() or ".." in pure.parts:
            raise StudioError(
                403, f"{field}: {rel!r} leaves the runs folder", field=field, code="path_refused"
            )
        try:
            path = (self.root / pure).resolve()
            exists = path.exists()
        except (OSError, RuntimeError) as e:  # a name too long, a loop of symlinks: nothing to open
            why = e.strerror if isinstance(e, OSError) and e.strerror else "a loop of symlinks"
            raise StudioError(400, f"{field}: {rel[:200]!r} is not a usable path ({why})", field=field,
                              code="path_refused") from None  # fmt: skip
        if path != self.root and not path.is_relative_to(self.root):
            raise StudioError(
                403, f"{field}: {rel!r} leaves the runs folder", field=field, code="path_refused"
            )
        if must_exist and not exists:
            raise StudioError(404, f"{field}: {rel!r} is not under the runs folder", field=field,
                              code="not_found")  # fmt: skip
        return path

    def rel(self, path: Path) -> str:
        """``path`` relative to the root, ``/``-separated (``""`` for the root itself)."""
        out = Path(path).resolve().relative_to(self.root).as_posix()
        return "" if out == "." else out
