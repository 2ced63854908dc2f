"""Ship a trained run as a standalone model, verified before it is written:
``instructkit export RUN_DIR -o OUT [--merge] [--format hf|gguf] [--dtype float32|float16|bfloat16]``.

- ``hf`` (default): a Hugging Face model folder (safetensors, tokenizer with its chat template, generation
  config) plus ``instructkit.json`` with the provenance (base model, method, task, data card hash, eval
  results). ``--merge`` folds a LoRA / ln-tuning update into the base weights (PEFT ``merge_and_unload``);
  full, freeze and bitfit runs already are plain weights; adapter and prompt-tuning runs cannot be merged.
- ``gguf``: one GGUF file (causal Llama-architecture runs) for llama.cpp-family runtimes, written with the
  ``gguf`` package's writer and tensor name map, the tokenizer and chat template in its metadata.

Why verify: a merged model that behaves differently from base + adapter, or an export that loses the chat
template, is what users of other tools report. So the export is built in a staging folder beside OUT,
loaded back with plain transformers (``AutoModelForCausalLM.from_pretrained(OUT)``, or with ``gguf_file=``),
and compared with the trained model as instructkit rebuilds it (base + adapter, unmerged) on fixed prompts
rendered with the run's chat template: the largest absolute logit difference must stay within a tolerance
(printed), and the reloaded tokenizer must render and tokenize those prompts exactly as the source one.
Only then is the stage renamed to OUT; a failed check removes the stage, so no OUT appears.
Measured (float32 export, float64 check): SmolLM2-135M + LoRA r=8, 2.4e-5 to 3.1e-5, HF and GGUF alike.
The float64 check holds source and reload at once on the CPU: ~16 bytes per parameter.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from instructkit import __version__
from instructkit.files import plain_file_mode, recover_folder, replaced_folder, same_file
from instructkit.models.manifest import (
    MANIFEST,
    gguf_sidecar,
    verify_folder,
    write_gguf_sidecar,
    write_manifest,
)
from instructkit.serve.gguf import ExportError, write_gguf
from instructkit.train.saved_model import (
    INFO_FILE,
    is_trained_run,
    load_trained,
    model_folder,
    read_info,
    trained_method,
    verify_trained,
)
from instructkit.train.tasks import TASKS

FORMATS = ("hf", "gguf")
DTYPES = ("float32", "float16", "bfloat16")
TOLERANCE = {"float32": (1e-4, 0.0), "float16": (0.0, 5e-3), "bfloat16": (0.0, 4e-2)}
"""(absolute, relative) bound on |logit(export) - logit(base + adapter)|: absolute + relative x the largest
|logit| of the reference. float32: 1e-4 flat (measured: 5e-7 on the tiny test Llama, 2.4e-5 on SmolLM2-135M
with LoRA r=8; the merged weights are rounded to float32 once). Half precisions round every stored weight
(float16 to 2^-11 relative, bfloat16 to 2^-8), so the logits move in proportion to their size: the bound is
about 10 of those roundings relative to the largest logit. Measured on SmolLM2-135M + LoRA (largest logit
40.6): float16 0.072 (1.8e-3 relative, bound 0.20), bfloat16 0.51 (1.3e-2 relative, bound 1.6)."""


def tolerance(dtype: str, reference: list[Any]) -> tuple[float, str]:
    """The bound for ``dtype`` given the reference logits (see ``TOLERANCE``), and how it was reached."""
    absolute, relative = TOLERANCE[dtype]
    if not relative:
        return absolute, f"{absolute:g}"
    scale = max(float(r.abs().max()) for r in reference)
    bound = absolute + relative * scale
    return bound, f"{bound:.3g} = {relative:g} x max |logit| {scale:.3g}"


CHATS: tuple[tuple[dict[str, str], ...], ...] = (
    ({"role": "user", "content": "What is the capital of France?"},),
    (
        {"role": "system", "content": "You are a terse assistant. Answer in one sentence."},
        {"role": "user", "content": "Explain what a hash function does."},
    ),
    (
        {"role": "user", "content": "Give me three prime numbers."},
        {"role": "assistant", "content": "2, 3 and 5."},
        {"role": "user", "content": "And their sum? Café, naïve — ünïcode 123."},
    ),
)
"""Fixed conversations the export is checked on (multi-turn, a system turn, non-ASCII text)."""
TEXTS = (
    "What is the capital of France?",
    "Explain what a hash function does, in one sentence.",
    "Café, naïve — ünïcode 123 and @user #tag http://example.com",
)
"""Fixed plain texts for runs without a chat template (classifiers, models without one)."""


@dataclass
class ExportResult:
    path: Path
    format: str
    dtype: str
    method: str
    merged: bool
    max_abs_diff: float
    tolerance: float
    tolerance_rule: str
    prompts: int
    template: str
    """How the prompts were rendered: "chat template" (identical through the reload) or "plain text"."""
    source_verified: bool = False
    """The run's model folder matched its checksum manifest before it was loaded (False: it has none)."""
    manifest: Path | None = None
    """The export's own checksums: ``instructkit-manifest.json`` in the folder, or ``NAME.gguf.sha256``."""
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        what = "merged " if self.merged else ""
        lines = [
            f"exported {what}{self.method} run as {self.format} ({self.dtype}) to {self.path}",
            f"verified on {self.prompts} fixed prompts: max |logit diff| {self.max_abs_diff:.3g} "
            f"<= tolerance {self.tolerance_rule}; {self.template} renders and tokenizes identically",
        ]
        if self.source_verified:
            lines.append("the run's model folder matched its checksum manifest before it was loaded")
        else:
            lines.append(
                "warning: the run's model folder has no checksum manifest (saved by an older instructkit): "
                "its weights could not be checked against what training wrote"
            )
        if self.manifest is not None:
            lines.append(f"checksums of the export: {self.manifest}")
        return "\n".join(lines + self.notes)


# ---------------------------------------------------------------------------------------- checks
def _run_folder(run_dir: Path) -> Path:
    """The folder holding the trained model's ``instructkit.json`` (the run folder, its ``model/``, or a
    run recipe's ``train/model/``)."""
    if not run_dir.exists():
        raise ExportError(f"{run_dir}: no such folder")
    if not is_trained_run(run_dir):
        raise ExportError(
            f"{run_dir} is not a trained run: it has no {INFO_FILE} (nor model/{INFO_FILE}, "
            f"train/model/{INFO_FILE}) written by `instructkit train`; export takes a training run folder, "
            "its model/ folder or the folder `instructkit run` prints"
        )
    return model_folder(run_dir)


def _check_output(run_dir: Path, model_dir: Path, out: Path, fmt: str) -> None:
    for inp in {run_dir, model_dir}:
        if same_file(out, inp) or _inside(out, inp) or _inside(inp, out):
            raise ExportError(f"-o {out} overlaps the run folder {inp}; choose a path outside it")
    for parent in out.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ExportError(f"-o {out}: {parent} is a file, not a folder")
            break
    if fmt == "gguf":
        if out.suffix.lower() != ".gguf":
            raise ExportError(f"-o {out}: --format gguf writes one file; name it *.gguf")
        if out.is_dir():
            raise ExportError(f"-o {out} is a folder; --format gguf writes a .gguf file")
        if out.exists() and not _is_gguf_export(out):
            raise ExportError(
                f"-o {out} exists and is not an earlier instructkit export; export replaces only its own "
                "files: choose a new name"
            )
        return
    if out.exists() and not out.is_dir():
        raise ExportError(f"-o {out} is a file; --format hf writes a model folder")
    if out.is_dir() and any(out.iterdir()) and not _is_export(out):
        raise ExportError(
            f"-o {out} is a folder with other files in it; export replaces only an earlier export "
            "(a folder with an instructkit.json marked as one): choose a new or empty folder"
        )


def _inside(a: Path, b: Path) -> bool:
    return a.resolve().is_relative_to(b.resolve())


def _is_export(folder: Path) -> bool:
    try:
        return "export" in json.loads((folder / INFO_FILE).read_text())
    except (OSError, ValueError):
        return False


def _is_gguf_export(path: Path) -> bool:
    try:
        import gguf

        return "instructkit.provenance" in gguf.GGUFReader(path).fields
    except Exception:  # not a GGUF at all
        return False


def _check_method(info: dict[str, Any], model_dir: Path, merge: bool) -> Any:
    method = trained_method(info)
    if method.merge_refusal:
        raise ExportError(
            f"{model_dir} was trained with {method.name}, which cannot become a standalone model: "
            f"{method.merge_refusal}"
        )
    if not method.plain_weights and not merge:
        raise ExportError(
            f"{model_dir} holds a {method.name} update on top of {info['base_model']}, not standalone "
            "weights; pass --merge to fold it into the base weights (verified against base + update)"
        )
    return method


# ---------------------------------------------------------------------------------------- inputs
def _template(tok: Any, info: dict[str, Any]) -> str | None:
    return info.get("chat_template") or getattr(tok, "chat_template", None)


def _prompt_ids(tok: Any, template: str | None, generative: bool) -> tuple[list[str], list[list[int]]]:
    """The fixed prompts as text and token ids: chats through the chat template for a generative run with
    one, else the plain texts."""
    if generative and template:
        texts = [tok.apply_chat_template(list(c), chat_template=template, add_generation_prompt=True, tokenize=False)
                 for c in CHATS]  # fmt: skip
        # the rendered text already holds the template's special tokens; adding more would change the ids
        return texts, [tok(t, add_special_tokens=False)["input_ids"] for t in texts]
    return list(TEXTS), [tok(t)["input_ids"] for t in TEXTS]


def _logits(model: Any, ids: list[list[int]]) -> list[Any]:
    """One forward per prompt (no padding, so no pad handling can differ); the model is in float64."""
    import torch

    with torch.inference_mode():
        return [model(input_ids=torch.tensor([row])).logits[0].double() for row in ids]


def _max_diff(a: list[Any], b: list[Any]) -> float:
    """Largest |a - b| over every prompt; a shape mismatch or a NaN counts as infinitely far."""
    worst = 0.0
    for x, y in zip(a, b, strict=True):
        if x.shape != y.shape:
            return math.inf
        d = (x - y).abs().max().item()
        worst = max(worst, d if math.isfinite(d) else math.inf)
    return worst


# ---------------------------------------------------------------------------------------- export
def export_run(
    run_dir: str | Path,
    out: str | Path,
    *,
    merge: bool = False,
    fmt: str = "hf",
    dtype: str = "float32",
    log: Callable[[str], None] | None = None,
) -> ExportResult:
    """Export the trained run at ``run_dir`` to ``out`` (a folder for hf, a .gguf file for gguf), verified
    as the module docstring says; raises ExportError, leaving ``out`` as it was, when anything fails."""
    import torch

    log = log or (lambda _msg: None)
    if fmt not in FORMATS:
        raise ExportError(f"--format {fmt!r}: choose one of {', '.join(FORMATS)}")
    if dtype not in DTYPES:
        raise ExportError(f"--dtype {dtype!r}: choose one of {', '.join(DTYPES)}")
    run_dir, out = Path(run_dir), Path(out)
    model_dir = _run_folder(run_dir)
    _check_output(run_dir, model_dir, out, fmt)
    # Before anything is read: an export compared against damaged weights would "verify" perfectly.
    source_verified = verify_trained(model_dir)
    info = read_info(model_dir)
    task = TASKS[info["task"]]
    if fmt == "gguf" and not task.generative:
        raise ExportError(
            f"{model_dir} was trained for {info['task']}; --format gguf writes causal language models only "
            "(llama.cpp runs text generation): export it with --format hf"
        )
    method = _check_method(info, model_dir, merge)

    log(f"loading {model_dir} (base {info['base_model']}, method {method.name}, task {info['task']})")
    model, tok, _ = load_trained(model_dir)
    if fmt == "gguf":
        _check_llama(model)
    template = _template(tok, info)
    texts, ids = _prompt_ids(tok, template, task.generative)
    # Both sides run in float64: the difference is then what the export changed (the merge, the stored
    # precision), not float32 arithmetic noise, which alone reaches ~1e-4 on SmolLM2-135M's logits
    # (merged W·x and W·x + B·A·x sum in different orders over 30 layers).
    reference = _logits(model.double(), ids)

    notes = []
    if method.plain_weights:
        plain = model
        if merge:
            notes.append(f"note: {method.name} trains the model's own weights; there was nothing to merge")
    else:
        log(f"merging the {method.name} update into the base weights")
        plain = _merge(method, model)
    plain = plain.to(getattr(torch, dtype))  # merged in float64, so each stored weight is rounded once
    plain.eval()

    bound, rule = tolerance(dtype, reference)
    provenance = _provenance(run_dir, model_dir, info, fmt, dtype, merge and not method.plain_weights)
    check = dict(
        reference=reference,
        texts=texts,
        ids=ids,
        template=template,
        tolerance=bound,
        generative=task.generative,
    )
    if fmt == "hf":
        diff = _export_hf(plain, tok, template, task, out, provenance, check, log)
    else:
        diff = _export_gguf(plain, tok, model_dir, template, out, dtype, provenance, check, log)
    return ExportResult(
        path=out,
        format=fmt,
        dtype=dtype,
        method=method.name,
        merged=merge and not method.plain_weights,
        max_abs_diff=diff,
        tolerance=bound,
        tolerance_rule=rule,
        prompts=len(ids),
        template="the chat template" if task.generative and template else "the tokenizer (plain text)",
        source_verified=source_verified,
        manifest=out / MANIFEST if fmt == "hf" else gguf_sidecar(out),
        notes=notes,
    )


def _merge(method: Any, model: Any) -> Any:
    """The method's merge (PEFT ``merge_and_unload``); one seam, so a test can corrupt it."""
    return method.merged(model)


def _check_llama(model: Any) -> None:
    cfg = model.config
    if getattr(model, "peft_config", None):
        cfg = model.get_base_model().config
    if cfg.model_type != "llama":
        raise ExportError(
            f"--format gguf writes Llama-architecture models; this run's base is {cfg.model_type!r}: "
            "export it with --format hf"
        )
    rope = getattr(cfg, "rope_parameters", None) or getattr(cfg, "rope_scaling", None) or {}
    if rope.get("rope_type", "default") != "default":
        raise ExportError(
            f"--format gguf: the base model's rope scaling ({rope.get('rope_type')}) is not written by this "
            "exporter (only plain RoPE): export it with --format hf"
        )
    for flag in ("attention_bias", "mlp_bias"):
        if getattr(cfg, flag, False):
            raise ExportError(f"--format gguf: {flag}=true Llama models are not written by this exporter")


def _provenance(
    run_dir: Path, model_dir: Path, info: dict[str, Any], fmt: str, dtype: str, merged: bool
) -> dict[str, Any]:
    """What the export came from, for whoever loads it later: base model, method, task, labels, the data
    card's hash and the run's held-out results when the run folder has them."""
    root = model_dir.parent if model_dir.name == "model" else model_dir  # the run folder
    card = root / "data" / "card.json"
    after = root / "eval" / "after.json"
    return {
        "instructkit_version": __version__,
        "export": {"format": fmt, "dtype": dtype, "merged": merged, "from": str(model_dir.resolve())},
        "base_model": info["base_model"],
        "method": info["method"],
        "task": info["task"],
        "labels": info.get("labels"),
        "chat_template": info.get("chat_template"),
        "data_card_sha256": hashlib.sha256(card.read_bytes()).hexdigest() if card.is_file() else None,
        "eval": json.loads(after.read_text()) if after.is_file() else None,
    }


def _verify(
    model: Any, tok: Any, template: str | None, check: dict[str, Any], where: str
) -> tuple[float, str | None]:
    """(max |logit diff|, the first problem or None) of a reloaded export against the reference."""
    if check["template"] and getattr(tok, "chat_template", None) != check["template"]:
        return float("nan"), f"{where}: the reloaded tokenizer's chat template differs from the run's"
    # rendered with the reloaded tokenizer's own template, as a user of the export would
    own = getattr(tok, "chat_template", None) if check["template"] else None
    texts, ids = _prompt_ids(tok, own, check["generative"])
    for i, (a, b, x, y) in enumerate(zip(texts, check["texts"], ids, check["ids"], strict=True)):
        if a != b:
            return float("nan"), f"{where}: prompt {i} renders differently after the reload"
        if x != y:
            return float("nan"), f"{where}: prompt {i} tokenizes differently after the reload"
    diff = _max_diff(_logits(model, check["ids"]), check["reference"])
    if not diff <= check["tolerance"]:
        return diff, (
            f"{where}: logits differ from the trained model (base + update) by up to {diff:.3g}, more than "
            f"the tolerance {check['tolerance']:g}"
        )
    return diff, None


def _export_hf(
    plain: Any,
    tok: Any,
    template: str | None,
    task: Any,
    out: Path,
    provenance: dict[str, Any],
    check: dict[str, Any],
    log: Callable[[str], None],
) -> float:
    import torch
    import transformers

    with replaced_folder(out) as stage:
        log(f"writing {stage}")
        if template:
            tok.chat_template = template
        plain.config.use_cache = True
        if task.generative and plain.generation_config is not None:
            gen = plain.generation_config
            for key in ("bos_token_id", "eos_token_id", "pad_token_id"):
                if getattr(gen, key, None) is None:
                    setattr(gen, key, getattr(tok, key, None))
        plain.save_pretrained(stage)
        tok.save_pretrained(stage)
        (stage / INFO_FILE).write_text(json.dumps(provenance, indent=2) + "\n")
        for f in stage.iterdir():  # safetensors writes private (0600) files; an export is for sharing
            os.chmod(f, plain_file_mode())
        write_manifest(stage)
        log("verifying: reloading with plain transformers")
        auto = getattr(transformers, task.auto_model)
        # float64 compute: the saved weights are cast up exactly (see export_run)
        reloaded = auto.from_pretrained(stage, dtype=torch.float64)
        retok = transformers.AutoTokenizer.from_pretrained(stage)
        diff, problem = _verify(reloaded, retok, template, check, "the exported folder")
        if problem:
            raise ExportError(f"export verification failed, nothing written: {problem}")
        verify_folder(stage, what="exported folder")  # the files that were checked are the ones listed
    return diff


# ------------------------------------------------------------------------------------------ GGUF
def _export_gguf(
    plain: Any,
    tok: Any,
    model_dir: Path,
    template: str | None,
    out: Path,
    dtype: str,
    provenance: dict[str, Any],
    check: dict[str, Any],
    log: Callable[[str], None],
) -> float:
    import torch
    import transformers

    out = out.resolve()
    recover_folder(out)  # removes staging folders a killed export left beside it
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.new-", dir=out.parent))
    try:
        path = stage / out.name
        log(f"writing {path}")
        write_gguf(plain, tok, model_dir, template, path, dtype, provenance)
        log("verifying: reloading through transformers' GGUF loader")
        with _quiet_transformers():  # its float32 advice is for packed quantized weights; these load dense
            reloaded = transformers.AutoModelForCausalLM.from_pretrained(
                stage, gguf_file=out.name, dtype=torch.float64
            )
        retok = transformers.AutoTokenizer.from_pretrained(stage, gguf_file=out.name)
        diff, problem = _verify(reloaded, retok, template, check, "the exported GGUF")
        if problem:
            raise ExportError(f"export verification failed, nothing written: {problem}")
        os.chmod(path, plain_file_mode())
        side = write_gguf_sidecar(path)
        # the file first: a kill between the two renames leaves a sidecar that no longer matches (a clear
        # error when the file is loaded), never a damaged file with a matching checksum
        os.replace(path, out)
        os.replace(side, gguf_sidecar(out))
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return diff


@contextmanager
def _quiet_transformers() -> Iterator[None]:
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
