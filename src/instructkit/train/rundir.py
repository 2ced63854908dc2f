"""Where a run may write: a run folder is ``output_dir/name`` with ``name`` one path component, and the
folder is new, empty, or already a run folder of the same kind.

Without these checks ``--name ../../x`` wrote outside ``output_dir``, and ``output_dir: /`` with
``name: .`` wrote into ``/``; and a rerun would happily drop ``config.yaml`` and ``checkpoints/`` into a
folder of someone's own files. The functions return the problem as text (or None) so the training
config and the recipe can each raise their own error naming their own keys.
"""

from __future__ import annotations

from pathlib import Path

# What a run folder holds from its first moment on (each is written before anything else).
TRAIN_MARKERS = ("config.yaml",)
RECIPE_MARKERS = ("recipe.yaml", "stages.json")


def run_name_problem(name: object) -> str | None:
    """Why ``name`` cannot be a run name (one folder name under output_dir), or None."""
    if not isinstance(name, str) or not name.strip():
        return "is empty"
    if "\0" in name:
        return "contains a NUL byte"
    if "/" in name or "\\" in name:
        return f"{name!r} is a path; a run name is one folder name (no '/' or '\\')"
    if name in (".", ".."):
        return f"{name!r} is not a folder name"
    return None


def check_run_folder(folder: Path, markers: tuple[str, ...]) -> str | None:
    """Why ``folder`` cannot be used as a run folder, or None. Refused: the file system root, the home
    folder, and a folder with files in it that holds none of ``markers`` (not a run of this kind). A
    folder that does hold them is a rerun of an existing run and is accepted."""
    resolved = Path(folder).expanduser().resolve()
    if resolved == Path(resolved.anchor):
        return f"{folder} is the file system root"
    if resolved == Path.home().resolve():
        return f"{folder} is the home folder"
    if resolved.exists() and not resolved.is_dir():
        return f"{folder} is a file"
    if resolved.is_dir() and any(resolved.iterdir()) and not any((resolved / m).exists() for m in markers):
        return (
            f"{folder} already holds files and is not a run folder (it has no {' or '.join(markers)}); "
            "choose another name or output_dir"
        )
    return None
