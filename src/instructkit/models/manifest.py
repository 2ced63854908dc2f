"""Checksum manifests for model folders: what was written is what gets loaded.

Every folder instructkit finishes writing for a model to be used from — a trained run's ``model/``, an
export, a resumable checkpoint — gets ``instructkit-manifest.json`` with the size and sha256 of each of its
files, written last and atomically. Loading a folder that has one (:func:`verify_folder`, called from
:func:`instructkit.models.resolve` for any local folder, from ``train.saved_model.load_trained``, and from
the server's ``--adapter`` loading) first checks every file against it, so a flipped byte, a truncated
or missing weights file, or an edited ``instructkit.json`` is one error naming the file, never a model that
silently computes something else. A GGUF export is one file: its manifest is the ``sha256sum``-style
sidecar ``NAME.gguf.sha256`` (``sha256sum -c`` checks it too).

Why not trust the loaders: safetensors checks its header, not its tensor bytes (bytes flipped near the end
of an adapter load fine and change the logits by orders of magnitude), and an export compared against the
same damaged folder verifies perfectly. Cost: one read of the folder, about 1 s per 500 MB here; a result is
kept per process for files whose size and modification time have not changed, so a folder resolved
several times in one load (model, tokenizer, config) is hashed once.

This module sits in ``models/`` (which imports only the bottom module ``files``) so that ``resolve`` can
use it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from instructkit.files import atomic_write_bytes, sha256_file
from instructkit.models.errors import ModelNotFoundError

MANIFEST = "instructkit-manifest.json"
GGUF_SIDECAR = ".sha256"
FORMAT = 1


class ModelFolderError(ModelNotFoundError):
    """A model folder (or GGUF file) whose files differ from its manifest: damaged, truncated, missing or
    changed after it was written. The message names the folder and the first file that differs."""


def _atomic_write(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def write_manifest(folder: str | Path, extra: dict[str, Any] | None = None) -> Path:
    """Checksum every file under ``folder`` (but the manifest) into ``MANIFEST``; call it once the folder is
    complete. ``extra`` keys are stored beside ``files`` (checkpoints keep their training inputs there)."""
    folder = Path(folder)
    files = {
        p.relative_to(folder).as_posix(): {"sha256": sha256_file(p), "bytes": p.stat().st_size}
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != MANIFEST and not _is_temp(p)
    }
    doc = {"format": FORMAT, "files": files, **(extra or {})}
    path = folder / MANIFEST
    _atomic_write(path, json.dumps(doc, indent=1, default=str) + "\n")
    _VERIFIED.pop(str(folder.resolve()), None)
    return path


def _is_temp(p: Path) -> bool:
    return p.name.startswith(".") and p.name.endswith(".tmp")


def read_manifest(folder: str | Path) -> dict[str, Any] | None:
    """The manifest of ``folder``, or None when it has none or it is unreadable."""
    try:
        doc = json.loads((Path(folder) / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) and isinstance(doc.get("files"), dict) else None


def has_manifest(folder: str | Path) -> bool:
    return (Path(folder) / MANIFEST).is_file()


def problem(folder: str | Path, skip: Callable[[str], bool] | None = None) -> str | None:
    """Why ``folder`` differs from its manifest (the first file that does, and how), or None when every
    listed file matches. Files that ``skip(name)`` accepts are not checked. A folder without a manifest is
    a problem here; :func:`verify_folder` decides what a missing manifest means for a model."""
    folder = Path(folder)
    if not (folder / MANIFEST).exists():
        return f"no {MANIFEST} (the save did not finish)"
    doc = read_manifest(folder)
    if doc is None:
        return f"{MANIFEST} is damaged"
    for name, want in doc["files"].items():
        if skip is not None and skip(name):
            continue
        if not isinstance(want, dict):
            return f"{MANIFEST} is damaged"
        path = folder / name
        if not path.is_file():
            return f"{name} is missing"
        try:
            size = path.stat().st_size
            if size != want.get("bytes"):
                return f"{name} has {size} bytes, the manifest says {want.get('bytes')}"
            if sha256_file(path) != want.get("sha256"):
                return f"{name} does not match its checksum"
        except OSError as e:
            return f"{name} cannot be read ({e.strerror})"
    return None


# folder -> the (name, size, mtime_ns) of every file when it last verified clean
_VERIFIED: dict[str, tuple[tuple[str, int, int], ...]] = {}


def _signature(folder: Path) -> tuple[tuple[str, int, int], ...]:
    out = []
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            st = p.stat()
            out.append((p.relative_to(folder).as_posix(), st.st_size, st.st_mtime_ns))
    return tuple(out)


def verify_folder(folder: str | Path, what: str = "model folder") -> bool:
    """Check ``folder`` against its manifest: True when it matches, False when it has none (a folder from
    elsewhere, or written before manifests existed: nothing to check against). Raises ModelFolderError,
    naming the folder and the file, when any listed file differs."""
    folder = Path(folder)
    if not has_manifest(folder):
        return False
    key = str(folder.resolve())
    try:
        sig = _signature(folder)
    except OSError:
        sig = None
    if sig is not None and _VERIFIED.get(key) == sig:
        return True
    why = problem(folder)
    if why is not None:
        raise ModelFolderError(
            f"{what} {folder}: {why}; it was changed or damaged after it was written — train or export it "
            "again, or restore the file"
        )
    if sig is not None:
        _VERIFIED[key] = sig
    return True


# ------------------------------------------------------------------------------------------ GGUF files
_SIDECAR_LINE = re.compile(r"^([0-9a-f]{64}) [ *](.+)$")


def gguf_sidecar(path: str | Path) -> Path:
    path = Path(path)
    return path.with_name(path.name + GGUF_SIDECAR)


def write_gguf_sidecar(path: str | Path, digest: str | None = None, name: str | None = None) -> Path:
    """``NAME.gguf.sha256`` beside the file, in ``sha256sum``'s format. ``name`` is the file name the line
    names (the final name when the file is still in a staging folder)."""
    path = Path(path)
    digest = digest or sha256_file(path)
    side = gguf_sidecar(path)
    _atomic_write(side, f"{digest}  {name or path.name}\n")
    return side


def verify_gguf(path: str | Path) -> bool:
    """Check a GGUF file against its sidecar: True when it matches, False when there is none; raises
    ModelFolderError when the file differs from it."""
    path = Path(path)
    side = gguf_sidecar(path)
    if not side.is_file():
        return False
    m = _SIDECAR_LINE.match(side.read_text(errors="replace").strip())
    if m is None:
        raise ModelFolderError(f"model file {path}: {side.name} is damaged (not a sha256sum line)")
    if sha256_file(path) != m.group(1):
        raise ModelFolderError(
            f"model file {path}: does not match the checksum in {side.name}; it was changed or damaged "
            "after it was written — export it again"
        )
    return True
