"""Curate's output folder, replaced as a unit by both engines.

Every file is written into a staging folder beside it, then swapped in (see ``files.replaced_folder``), so
an interrupted curate leaves the old folder or the new one, never new splits beside an old card. A folder
that holds an input, or files curate did not write, is refused before anything is read
(:func:`check_output_folder`).
"""

from __future__ import annotations

from pathlib import Path

from instructkit.data.split import SPLITS
from instructkit.files import OutputError

# What a curate folder may hold besides the split files (train.*, val.*, test.*): curate's own files,
# and the plots `instructkit data stats` draws from the splits (stale once the splits are replaced).
OWN_FILES = ("rejects.jsonl", "card.json", "card.md", "plots")


def check_output_folder(inputs: list[str | Path], out_dir: str | Path) -> None:
    """Refuse an output folder that is a file, that holds one of the inputs, or that holds files curate
    did not write (they would go with the old folder when the new one is swapped in)."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputError(f"the output {out_dir} is a file; curate writes a folder (train/val/test, card)")
    for parent in out_dir.parents:
        if parent.exists():
            if not parent.is_dir():
                raise OutputError(f"the output {out_dir}: {parent} is a file, not a folder")
            break
    where = out_dir.resolve()
    if Path.cwd().resolve().is_relative_to(where):
        raise OutputError(
            f"the output folder {out_dir} is (or holds) the current folder; curate replaces that folder, "
            "so name a folder inside it instead"
        )
    for p in map(Path, inputs):
        if p.resolve().is_relative_to(where):
            raise OutputError(
                f"the output folder {out_dir} holds the input {p}; curate replaces that folder, so "
                "choose another output folder"
            )
    if out_dir.is_dir():
        foreign = sorted(
            e.name
            for e in out_dir.iterdir()
            if e.name not in OWN_FILES and e.name.split(".", 1)[0] not in SPLITS
        )
        if foreign:
            shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
            raise OutputError(
                f"the output folder {out_dir} holds files curate did not write ({shown}); curate "
                "replaces the whole folder, so choose an empty or new folder"
            )
