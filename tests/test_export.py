"""Export: merged Hugging Face folders and GGUF files, verified against base + adapter before they are
written. Runs are tiny Llamas (SmolLM2's tokenizer and chat template) with a random, non-zero update saved
the way ``instructkit train`` saves it, so a merge has something to fold in."""

from __future__ import annotations

import hashlib
import json
import types
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

from instructkit.serve import export as export_mod
from instructkit.serve import gguf as gguf_mod
from instructkit.serve.export import CHATS, TOLERANCE, ExportError, export_run
from instructkit.train.methods import build_method
from instructkit.train.saved_model import (
    is_trained_run,
    load_base,
    load_trained,
    save_trained,
    trained_method,
)
from instructkit.train.tasks import TASKS, LabelInfo


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models run fastest on one thread; two threads spin against any other busy process."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make_run(base: str, folder: Path, method: str, task: str = "causal-lm", labels: LabelInfo | None = None,
             **params: Any) -> Path:  # fmt: skip
    """A run folder as ``instructkit train`` leaves it (``model/`` + instructkit.json), with the method's
    trained parameters moved off their initial values (LoRA's B starts at zero: a merge of it is a no-op)."""
    from instructkit.models import load_tokenizer

    labels = labels or LabelInfo()
    tok = load_tokenizer(base)
    m = build_method(method, params)
    model = m.apply(load_base(base, TASKS[task](), labels, 0), task)
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=g) * 0.05)
    cfg = types.SimpleNamespace(
        task=task,
        model=base,
        method={"name": m.name, **m.params()},
        data=types.SimpleNamespace(max_length=64),
        seed=0,
    )
    save_trained(model, tok, m, cfg, labels, folder / "model", tok.chat_template)
    return folder


@pytest.fixture(scope="module")
def lora_run(tiny_llama: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = make_run(tiny_llama, tmp_path_factory.mktemp("lora-run"), "lora", r=4)
    (run / "data").mkdir()
    (run / "data" / "card.json").write_text(json.dumps({"sources": ["x.jsonl"], "kept": 10}) + "\n")
    (run / "eval").mkdir()
    (run / "eval" / "after.json").write_text(json.dumps({"metrics": {"loss": 1.25}}) + "\n")
    return run


def chat_ids(tok: Any) -> torch.Tensor:
    text = tok.apply_chat_template(list(CHATS[1]), add_generation_prompt=True, tokenize=False)
    return torch.tensor([tok(text, add_special_tokens=False)["input_ids"]])


def logits(model: Any, ids: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return model(input_ids=ids).logits.float()


def leftovers(out: Path) -> list[Path]:
    return sorted(out.parent.glob(f".{out.name}.*"))


def test_merged_export_reloads_with_plain_transformers(
    lora_run: Path, tiny_llama: str, tmp_path: Path
) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "merged"
    result = export_run(lora_run, out, merge=True)
    print(f"exporter's own check (float64): {result.summary()}")
    assert result.merged and result.method == "lora" and result.max_abs_diff <= TOLERANCE["float32"][0]

    # independently of the exporter's own check: plain transformers against instructkit's base + adapter
    source, src_tok, info = load_trained(lora_run)
    exported = AutoModelForCausalLM.from_pretrained(out)
    tok = AutoTokenizer.from_pretrained(out)
    assert type(exported).__name__ == "LlamaForCausalLM"
    assert not any("lora" in n for n, _ in exported.named_parameters())
    ids = chat_ids(src_tok)
    diff = (logits(exported, ids) - logits(source, ids)).abs().max().item()
    print(f"merged HF export vs base + LoRA: max |logit diff| {diff:.3g} (tolerance 1e-4)")
    assert diff <= 1e-4
    base_diff = (
        (logits(AutoModelForCausalLM.from_pretrained(tiny_llama), ids) - logits(source, ids)).abs().max()
    )
    assert base_diff > 1e-2  # the adapter changes the model, so the match above is the merge's doing

    for chat in CHATS:
        kwargs = dict(add_generation_prompt=True, tokenize=False)
        assert tok.apply_chat_template(list(chat), **kwargs) == src_tok.apply_chat_template(
            list(chat), **kwargs
        )
    assert tok.chat_template == info["chat_template"]
    assert (out / "model.safetensors").exists() and (out / "generation_config.json").exists()
    gen = json.loads((out / "generation_config.json").read_text())
    assert gen["eos_token_id"] == src_tok.eos_token_id

    prov = json.loads((out / "instructkit.json").read_text())
    assert (
        prov["base_model"] == tiny_llama and prov["method"]["name"] == "lora" and prov["task"] == "causal-lm"
    )
    card = (lora_run / "data" / "card.json").read_bytes()
    assert prov["data_card_sha256"] == hashlib.sha256(card).hexdigest()
    assert prov["eval"] == {"metrics": {"loss": 1.25}}
    assert prov["export"]["merged"] is True and prov["export"]["dtype"] == "float32"
    assert not is_trained_run(out)  # an export is a plain model folder, loaded like any other
    from instructkit.models import load_model

    assert torch.allclose(logits(load_model(str(out)), ids), logits(exported, ids))
    assert not leftovers(out)


def test_corrupted_merge_is_caught_and_leaves_nothing(
    lora_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = export_mod._merge

    def corrupted(method: Any, model: Any) -> Any:
        merged = real(method, model)
        with torch.no_grad():
            merged.model.layers[0].mlp.down_proj.weight[0, 0] += 0.5
        return merged

    monkeypatch.setattr(export_mod, "_merge", corrupted)
    out = tmp_path / "corrupt"
    with pytest.raises(
        ExportError, match=r"verification failed, nothing written: .*logits differ .* by up to"
    ):
        export_run(lora_run, out, merge=True)
    assert not out.exists() and not leftovers(out)


def test_failed_export_keeps_an_earlier_export(
    lora_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "again"
    export_run(lora_run, out, merge=True)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    real = export_mod._merge

    def corrupted(method: Any, model: Any) -> Any:
        merged = real(method, model)
        with torch.no_grad():
            merged.lm_head.weight.mul_(1.01)
        return merged

    monkeypatch.setattr(export_mod, "_merge", corrupted)
    with pytest.raises(ExportError, match="verification failed"):
        export_run(lora_run, out, merge=True)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before and not leftovers(out)


def test_a_changed_chat_template_is_caught(
    lora_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_save = export_mod._export_hf

    def drop_template(plain, tok, template, *args, **kwargs):  # the exporter writes a different template
        tok.chat_template = template.replace("<|im_start|>", "<|im_begin|>")
        return real_save(plain, tok, tok.chat_template, *args, **kwargs)

    monkeypatch.setattr(export_mod, "_export_hf", drop_template)
    out = tmp_path / "tpl"
    with pytest.raises(ExportError, match="chat template differs"):
        export_run(lora_run, out, merge=True)
    assert not out.exists()


@pytest.mark.parametrize(
    ("fmt", "dtype"), [("hf", "float16"), pytest.param("gguf", "bfloat16", marks=pytest.mark.slow)]
)
def test_half_precision_export_within_its_tolerance(
    lora_run: Path, tmp_path: Path, fmt: str, dtype: str
) -> None:
    out = tmp_path / ("half.gguf" if fmt == "gguf" else "half")
    result = export_run(lora_run, out, merge=True, fmt=fmt, dtype=dtype)
    print(f"{fmt} {dtype}: max |logit diff| {result.max_abs_diff:.3g} (tolerance {result.tolerance_rule})")
    assert 0 < result.max_abs_diff <= result.tolerance  # rounded weights: some difference, within bounds
    assert f"{TOLERANCE[dtype][1]:g} x max |logit|" in result.tolerance_rule
    if fmt == "hf":
        cfg = json.loads((out / "config.json").read_text())
        assert cfg.get("dtype", cfg.get("torch_dtype")) == dtype


@pytest.mark.slow  # transformers' GGUF loader parses the 49k-token vocabulary field by field: ~30 s a load
def test_gguf_export_reloads_through_transformers_gguf_loader(lora_run: Path, tmp_path: Path) -> None:
    import gguf
    from transformers import AutoModelForCausalLM

    out = tmp_path / "model.gguf"
    result = export_run(lora_run, out, merge=True, fmt="gguf")
    assert result.max_abs_diff <= TOLERANCE["float32"][0] and out.is_file() and not leftovers(out)

    source, src_tok, info = load_trained(lora_run)
    reloaded = AutoModelForCausalLM.from_pretrained(out.parent, gguf_file=out.name, dtype=torch.float32)
    ids = chat_ids(src_tok)  # the exporter compared the GGUF tokenizer's rendering and ids already
    diff = (logits(reloaded, ids) - logits(source, ids)).abs().max().item()
    print(f"GGUF (F32) export vs base + LoRA: max |logit diff| {diff:.3g} (tolerance 1e-4)")
    assert diff <= 1e-4

    reader = gguf.GGUFReader(out)
    assert reader.fields["general.architecture"].contents() == "llama"
    assert reader.fields["tokenizer.chat_template"].contents() == info["chat_template"]
    names = {t.name for t in reader.tensors}
    assert {
        "token_embd.weight",
        "blk.0.attn_q.weight",
        "blk.1.ffn_down.weight",
        "output_norm.weight",
    } <= names
    assert "output.weight" not in names  # tied embeddings: llama.cpp reuses token_embd
    prov = json.loads(reader.fields["instructkit.provenance"].contents())
    assert prov["method"]["name"] == "lora" and prov["export"]["format"] == "gguf"


def test_gguf_file_layout_matches_what_transformers_undoes(lora_run: Path, tmp_path: Path) -> None:
    """The writer alone, read back with the gguf package (fast; the full round trip is the slow test)."""
    import gguf
    import numpy as np
    from transformers.modeling_gguf_pytorch_utils import LlamaTensorProcessor

    model, tok, info = load_trained(lora_run)
    plain = trained_method(info).merged(model)
    path = tmp_path / "w.gguf"
    provenance = {"export": {"from": str(lora_run / "model")}}
    gguf_mod.write_gguf(plain, tok, lora_run / "model", info["chat_template"], path, "float32", provenance)

    reader = gguf.GGUFReader(path)
    tensors = {t.name: np.array(t.data) for t in reader.tensors}
    cfg = plain.config
    undo = LlamaTensorProcessor(config={"num_attention_heads": cfg.num_attention_heads,
                                        "num_key_value_heads": cfg.num_key_value_heads})  # fmt: skip
    for i, layer in enumerate(plain.model.layers):
        for short, proj in (("q", layer.self_attn.q_proj), ("k", layer.self_attn.k_proj)):
            name = f"blk.{i}.attn_{short}.weight"
            hf = proj.weight.detach().numpy()
            assert not np.array_equal(tensors[name], hf)  # stored in llama.cpp's rotary order...
            assert np.array_equal(undo.process(tensors[name], name).weights, hf)  # ...which the loader undoes
        assert np.array_equal(
            tensors[f"blk.{i}.ffn_down.weight"], layer.mlp.down_proj.weight.detach().numpy()
        )
    assert np.array_equal(tensors["token_embd.weight"], plain.model.embed_tokens.weight.detach().numpy())

    fields = reader.fields
    assert fields["tokenizer.chat_template"].contents() == info["chat_template"]
    assert fields["llama.attention.head_count_kv"].contents() == cfg.num_key_value_heads
    tokens = fields["tokenizer.ggml.tokens"].contents()
    types = fields["tokenizer.ggml.token_type"].contents()
    assert len(tokens) == cfg.vocab_size and tokens[tok.eos_token_id] == tok.eos_token
    assert types[tokens.index("<|im_start|>")] == gguf.TokenType.CONTROL
    assert fields["tokenizer.ggml.eos_token_id"].contents() == tok.eos_token_id


@pytest.mark.slow
def test_gguf_without_llama_cpp_qk_layout_is_caught(
    lora_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # transformers' loader undoes llama.cpp's rotary row order; skipping it must fail the check
    monkeypatch.setattr(gguf_mod, "permute_qk", lambda w, n_head: w)
    out = tmp_path / "model.gguf"
    with pytest.raises(ExportError, match="logits differ"):
        export_run(lora_run, out, merge=True, fmt="gguf")
    assert not out.exists() and not leftovers(out)


@pytest.mark.parametrize(("method", "params"), [("full", {}), ("freeze", {"layers": 1})])
def test_plain_weight_methods_export_without_merge(
    tiny_llama: str, tmp_path: Path, method: str, params: dict[str, Any]
) -> None:
    run = make_run(tiny_llama, tmp_path / "run", method, **params)
    result = export_run(run, tmp_path / "out")
    assert not result.merged and result.max_abs_diff <= TOLERANCE["float32"][0]
    again = export_run(run, tmp_path / "out", merge=True)  # replaces the earlier export
    assert "nothing to merge" in again.summary()


def test_ln_tuning_merges(tiny_llama: str, tmp_path: Path) -> None:
    run = make_run(tiny_llama, tmp_path / "ln-run", "ln-tuning")
    result = export_run(run, tmp_path / "out", merge=True)
    assert result.merged and result.max_abs_diff <= TOLERANCE["float32"][0]


def test_lora_needs_merge(lora_run: Path, tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="pass --merge"):
        export_run(lora_run, tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("method", "params", "why"),
    [
        ("prompt-tuning", {"num_virtual_tokens": 4}, "virtual tokens are extra inputs"),
        ("adapter", {"bottleneck": 4}, "nonlinearity"),
    ],
)
def test_unmergeable_methods_say_why(
    tiny_llama: str, tmp_path: Path, method: str, params: dict[str, Any], why: str
) -> None:
    run = make_run(tiny_llama, tmp_path / "run", method, **params)
    with pytest.raises(
        ExportError, match=f"trained with {method}, which cannot become a standalone model: .*{why}"
    ):
        export_run(run, tmp_path / "out", merge=True)
    assert not (tmp_path / "out").exists()


def test_sequence_classifier_exports_merged_as_hf_and_not_as_gguf(tiny_llama: str, tmp_path: Path) -> None:
    from transformers import AutoModelForSequenceClassification

    labels = LabelInfo(names=["neg", "neu", "pos"])
    run = make_run(tiny_llama, tmp_path / "cls", "lora", task="sequence-classification", labels=labels, r=4)
    with pytest.raises(ExportError, match="causal language models only"):
        export_run(run, tmp_path / "cls.gguf", merge=True, fmt="gguf")
    result = export_run(run, tmp_path / "cls-out", merge=True)
    assert result.max_abs_diff <= TOLERANCE["float32"][0]
    exported = AutoModelForSequenceClassification.from_pretrained(tmp_path / "cls-out")
    assert exported.config.num_labels == 3


def test_gguf_of_a_non_llama_model_errors(tmp_path: Path) -> None:
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from instructkit.models import load_tokenizer

    tok = load_tokenizer("smollm2-135m-instruct")
    base = tmp_path / "qwen"
    torch.manual_seed(0)
    cfg = Qwen2Config(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128)  # fmt: skip
    Qwen2ForCausalLM(cfg).save_pretrained(base)
    tok.save_pretrained(base)
    run = make_run(str(base), tmp_path / "run", "full")
    with pytest.raises(ExportError, match="writes Llama-architecture models; this run's base is 'qwen2'"):
        export_run(run, tmp_path / "q.gguf", fmt="gguf")
    assert not (tmp_path / "q.gguf").exists()


def test_bad_inputs_are_refused_before_loading(lora_run: Path, tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="is not a trained run"):
        export_run(tmp_path, tmp_path / "out")
    with pytest.raises(ExportError, match="name it \\*.gguf"):
        export_run(lora_run, tmp_path / "out", fmt="gguf", merge=True)
    with pytest.raises(ExportError, match="overlaps the run folder"):
        export_run(lora_run, lora_run / "export", merge=True)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(ExportError, match="other files in it"):
        export_run(lora_run, tmp_path / "busy", merge=True)
    (tmp_path / "other.gguf").write_bytes(b"not ours")
    with pytest.raises(ExportError, match="not an earlier instructkit export"):
        export_run(lora_run, tmp_path / "other.gguf", fmt="gguf", merge=True)
    with pytest.raises(ExportError, match="--dtype 'int8'"):
        export_run(lora_run, tmp_path / "out", dtype="int8")


def test_cli_export(lora_run: Path, tmp_path: Path) -> None:
    from instructkit.cli import app

    runner = CliRunner()
    res = runner.invoke(app, ["export", str(lora_run), "-o", str(tmp_path / "o"), "--merge"])
    assert res.exit_code == 0, res.output
    assert "max |logit diff|" in res.output and (tmp_path / "o" / "config.json").exists()
    res = runner.invoke(app, ["export", str(lora_run), "-o", str(tmp_path / "o2")])
    said = " ".join(res.output.split())
    assert res.exit_code == 1 and "pass --merge to fold it" in said and "Traceback" not in said


@pytest.mark.slow
@pytest.mark.requires_models
def test_gguf_export_of_lora_tuned_smollm2(tmp_path: Path) -> None:
    """The bundled SmolLM2-135M with a random LoRA update, exported to GGUF and read back by transformers."""
    run = make_run("smollm2-135m-instruct", tmp_path / "run", "lora", r=8)
    out = tmp_path / "smollm2-lora.gguf"
    result = export_run(run, out, merge=True, fmt="gguf")
    print(
        f"SmolLM2 + LoRA -> GGUF (F32): max |logit diff| {result.max_abs_diff:.3g} (tolerance {result.tolerance_rule})"
    )
    assert result.max_abs_diff <= TOLERANCE["float32"][0] and out.is_file()
