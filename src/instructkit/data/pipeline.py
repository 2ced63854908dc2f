"""``instructkit data curate``: read → steps → split → write, with a card that accounts for every record.

:func:`curate` checks the config and hands the run to an engine (``data/engines``): the local engine
(``engines/local.py``, this process and ``num_proc`` workers) or the Ray engine (``engines/ray``, a Ray
cluster, byte-identical output). Both run the same step objects (``data/base.py``), split with the same
assignment (``data/split.py``), account for every record the same way and write the same card
(``engines/accounting.py``), and replace the output folder as a unit (``engines/folder.py``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from instructkit.data.curate_config import CurateConfig
from instructkit.data.engines.accounting import CurateResult
from instructkit.data.engines.local import curate_local


def curate(inputs: list[str | Path], out_dir: str | Path, cfg: CurateConfig | None = None) -> CurateResult:
    """Curate ``inputs`` into ``out_dir``; ``cfg.engine`` picks where the steps run. The Ray engine's
    result holds the card only (``splits`` and ``rejects`` are None: its records stay on the cluster and
    in the written files)."""
    cfg = cfg or CurateConfig()
    cfg.validate()
    if cfg.engine == "ray":
        from instructkit.data.engines.ray.curate import curate_ray

        return curate_ray(inputs, out_dir, cfg)
    return curate_local(inputs, out_dir, cfg)


def nothing_kept(card: dict[str, Any], out_dir: str | Path) -> str | None:
    """One line saying why a curate run kept no record (None when it kept some): how many records came in,
    the main reasons they were rejected, and where the card and the rejects are."""
    acc = card["accounting"]
    if acc["kept"]:
        return None
    where = f"the card, the rejects and the empty splits are in {out_dir}"
    if not acc["in"]:
        return f"no record was kept: the inputs hold no records (0 read); {where}"
    top = sorted(card["rejected_by_reason"].items(), key=lambda kv: (-kv[1], kv[0]))
    reasons = ", ".join(f"{k} {v}" for k, v in top[:3]) + (
        f" and {len(top) - 3} more" if len(top) > 3 else ""
    )
    read = card["steps"][0]
    if read["step"] == "read" and not read["kept"]:
        return (
            f"no record was kept: none of the {acc['in']} records could be read ({reasons}); is the input "
            f"UTF-8 text in a format instructkit reads? {where}"
        )
    return f"no record was kept: {acc['in']} records in, all rejected ({reasons}); {where}"
