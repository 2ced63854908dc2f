"""The Data pages' views of a folder's kept records: length and turn histograms per split, and the loss-mask
view of one record, rendered with a model's chat template, each token marked trained (an assistant token the loss sees) or context, by the same ``ChatTemplate.encode``
that ``instructkit data inspect`` and training use. The model is a bundled alias, a model folder or a trained
run under ``--runs`` (a trained run brings its own tokenizer and its training max_length).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from instructkit.data.stats import Summary
from instructkit.studio.datasets import _Cache, data_folder, record_view, split_files, split_records
from instructkit.studio.errors import StudioError
from instructkit.studio.paths import RunsRoot

_tokenizers = _Cache(4)


def bin_edges(values: list[int], max_bins: int = 12) -> tuple[int, int, int]:
    """(start, width, count) of equal-width integer bins over ``values`` (width 1, 2, 5, 10, 20, 50, ...)."""
    if not values:
        return 0, 1, 0
    lo, hi = min(values), max(values)
    width, k = 1, 0
    while math.ceil((hi - (lo // width) * width + 1) / width) > max_bins:
        k += 1
        width = (1, 2, 5)[k % 3] * 10 ** (k // 3)
    start = (lo // width) * width
    return start, width, (hi - start) // width + 1


def binned(values: list[int], edges: tuple[int, int, int]) -> list[dict[str, Any]]:
    """Counts of ``values`` in the bins ``edges`` (:func:`bin_edges`) as ``[{lo, hi, count}]``."""
    start, width, n = edges
    counts = [0] * n
    for v in values:
        counts[(v - start) // width] += 1
    return [
        {"lo": start + j * width, "hi": start + (j + 1) * width - 1, "count": c} for j, c in enumerate(counts)
    ]


def histograms(root: RunsRoot, rel: str) -> dict[str, Any]:
    """Per split: words per record and user turns per record (as ``data.stats`` counts them for the card),
    in bins shared by all splits. Each histogram's counts sum to the records it counted (``turns``: the
    chat records)."""
    folder, card = data_folder(root, rel)
    summaries: dict[str, Summary] = {}
    for split in split_files(card):
        summaries[split] = summary = Summary()
        for rec in split_records(folder, card, split):
            summary.add(rec)
    words = bin_edges([w for s in summaries.values() for w in s.words])
    turns = bin_edges([t for s in summaries.values() for t in s.turns], max_bins=20)
    return {
        "splits": {
            split: {
                "records": s.n,
                "chats": len(s.turns),
                "words": binned(s.words, words),
                "turns": binned(s.turns, turns),
            }  # fmt: skip
            for split, s in summaries.items()
        }
    }


def _tokenizer_for(root: RunsRoot, model: str) -> tuple[Any, str, int | None]:
    """(tokenizer, what it is, the max_length it trained with) for a bundled alias, a model folder or a
    trained run under the root. A path goes through :meth:`RunsRoot.resolve`; anything else is refused."""
    from instructkit.models import BUNDLED

    model = (model or "").strip()
    if not model:
        raise StudioError(400, "model: give a bundled alias or a model / run folder under the runs folder",
                          field="model")  # fmt: skip
    if model in BUNDLED:
        from instructkit.models import load_tokenizer

        return (
            _tokenizers.get(("alias", model), Path("/nonexistent"), lambda: load_tokenizer(model)),
            model,
            None,
        )
    try:
        path = root.resolve(model, field="model")
    except StudioError as e:
        if e.code != "not_found":
            raise
        raise StudioError(
            400,
            f"model: {model!r} is neither a bundled alias ({', '.join(BUNDLED)}) nor a folder under the runs folder",
            field="model",
        ) from None
    from instructkit.train.saved_model import is_trained_run, model_folder, read_info

    if path.is_dir() and is_trained_run(path):
        folder = model_folder(path)
        if not folder.resolve().is_relative_to(root.root):  # a symlinked model/ leading out
            raise StudioError(403, f"model: {model!r} keeps its model outside the runs folder", field="model",
                              code="path_refused")  # fmt: skip
        info = read_info(folder)
        from transformers import AutoTokenizer

        tok = _tokenizers.get(("trained", str(folder)), folder / "tokenizer_config.json",
                              lambda: AutoTokenizer.from_pretrained(folder))  # fmt: skip
        max_length = info.get("max_length")
        return tok, f"trained run {root.rel(folder)}", max_length if isinstance(max_length, int) else None
    if path.is_dir() and (path / "config.json").is_file():
        from instructkit.models import load_tokenizer

        tok = _tokenizers.get(("folder", str(path)), path / "config.json", lambda: load_tokenizer(str(path)))
        return tok, f"model folder {root.rel(path)}", None
    raise StudioError(
        400,
        f"model: {model!r} is not a model folder (config.json) or a trained run (instructkit.json) under the "
        "runs folder",
        field="model",
    )


def mask_view(
    root: RunsRoot, rel: str, split: str, index: int, model: str, max_length: int | None = None
) -> dict[str, Any]:
    """Record ``index`` of ``split`` rendered with ``model``'s chat template: each token with whether
    training learns it (the same :class:`~instructkit.templates.ChatTemplate` masks training uses)."""
    from instructkit.models import ModelNotFoundError
    from instructkit.templates import IGNORE_INDEX, ChatTemplate, Dropped, TemplateError

    folder, card = data_folder(root, rel)
    records = split_records(folder, card, split)
    if not 0 <= index < len(records):
        raise StudioError(
            400, f"index: {index} is not a record of {split} (0–{len(records) - 1})", field="index"
        )
    if max_length is not None and max_length < 8:
        raise StudioError(400, f"max_length: {max_length} is below 8", field="max_length")
    rec = records[index]
    try:
        tok, what, trained_length = _tokenizer_for(root, model)
        template = ChatTemplate(tok, name=model)
    except (ModelNotFoundError, TemplateError, OSError, ValueError) as e:
        if isinstance(e, StudioError):
            raise
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise StudioError(400, f"model: {first}", field="model") from None
    length = max_length if max_length is not None else trained_length
    base = {"split": split, "index": index, "records": len(records), "model": model, "tokenizer": what,
            "max_length": length, "view": record_view(rec)}  # fmt: skip
    if rec.messages is None:
        return {
            **base,
            "dropped": {"reason": "not_a_conversation", "detail": f"a {rec.kind} record has no chat turns"},
        }
    try:
        out = template.encode(rec, length)
    except TemplateError as e:
        raise StudioError(400, f"model: {e}", field="model") from None
    if isinstance(out, Dropped):
        return {**base, "dropped": {"reason": out.reason, "detail": out.detail}}
    tokens = [{"text": tok.decode([tid]), "trained": label != IGNORE_INDEX}
              for tid, label in zip(out.input_ids, out.labels, strict=True)]  # fmt: skip
    return {**base, "tokens": tokens, "n_tokens": len(out.input_ids), "n_trained": out.n_trained,
            "truncated": out.truncated}  # fmt: skip


def model_choices(root: RunsRoot) -> list[dict[str, str]]:
    """What the mask view's model field suggests: the bundled decoder aliases, trained runs and model
    folders under the root (shallow)."""
    from instructkit.models import BUNDLED
    from instructkit.studio.runs import discover, kind_of
    from instructkit.train.saved_model import is_trained_run

    out = [{"value": a, "label": f"{a} (bundled)"} for a, b in BUNDLED.items() if b.kind == "decoder"]
    for folder in discover(root.root):
        if kind_of(folder) in ("run", "train") and is_trained_run(folder):
            out.append({"value": root.rel(folder), "label": f"{root.rel(folder)} (trained run)"})

    def walk(folder: Path, depth: int) -> None:
        try:
            children = sorted(p for p in folder.iterdir() if p.is_dir() and not p.is_symlink())
        except OSError:
            return
        for child in children:
            if child.name.startswith(".") or child.name in ("checkpoints", "logs", "__pycache__"):
                continue
            if (child / "config.json").is_file() and (child / "tokenizer_config.json").is_file():
                if not is_trained_run(child):
                    out.append({"value": root.rel(child), "label": f"{root.rel(child)} (model folder)"})
            elif depth < 3:
                walk(child, depth + 1)

    walk(root.root, 0)
    return out
