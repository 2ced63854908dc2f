"""The GGUF writer of ``instructkit export --format gguf``: one file for llama.cpp-family runtimes (causal
Llama-architecture runs), written with the ``gguf`` package's writer and tensor name map, the tokenizer and
chat template in its metadata. ``export.py`` builds, reloads through transformers' GGUF loader and verifies
it; this module only writes it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from instructkit.train.saved_model import INFO_FILE


class ExportError(ValueError):
    """An export refused (bad input, a method that cannot be merged, a wrong format) or one that failed its
    verification; nothing was written. Defined here, beside the writer that raises it too, so that
    ``export.py`` imports this module and not the other way round."""


GGUF_FILE_TYPES = {"float32": "ALL_F32", "float16": "MOSTLY_F16", "bfloat16": "MOSTLY_BF16"}


def permute_qk(w: Any, n_head: int) -> Any:
    """llama.cpp's rotary layout for Q and K rows (its converter's ``LlamaModel.permute``): HF Llama
    rotates the two halves of each head, llama.cpp rotates adjacent pairs, so each head's rows are
    interleaved. transformers' GGUF loader undoes exactly this (``LlamaTensorProcessor``)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _pre_tokenizer(tok: Any, model_dir: Path) -> str:
    """``tokenizer.ggml.pre``: how llama.cpp splits text before BPE. Taken from the base model's own GGUF
    where it came from one (the bundled SmolLM2: ``smollm``), else ``gpt2`` for a GPT-2 style byte-level
    split; either way the reload check below compares token ids on the fixed prompts."""
    base = json.loads((model_dir / INFO_FILE).read_text())["base_model"]
    try:
        from instructkit.models import resolve

        ref = resolve(base, use_cache=False)
        if ref.gguf_file:
            import gguf

            field_ = gguf.GGUFReader(Path(ref.path) / ref.gguf_file).fields.get("tokenizer.ggml.pre")
            if field_ is not None:
                return str(field_.contents())
    except Exception:  # a hub id or a folder without a GGUF: nothing to copy
        pass
    return "gpt2"


def _vocab(tok: Any, n_vocab: int) -> tuple[list[str], list[int]]:
    """Tokens by id and their GGUF token types; the model's vocabulary may be padded past the tokenizer's
    (llama.cpp's converter fills those ids with ``[PADn]``, UNUSED, as here)."""
    import gguf

    by_id = {i: t for t, i in tok.get_vocab().items()}
    added = {t.content: t for t in tok.added_tokens_decoder.values()}
    tokens, types = [], []
    for i in range(n_vocab):
        t = by_id.get(i)
        if t is None:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
        elif t in added:
            tokens.append(t)
            types.append(gguf.TokenType.CONTROL if added[t].special else gguf.TokenType.USER_DEFINED)
        else:
            tokens.append(t)
            types.append(gguf.TokenType.NORMAL)
    return tokens, [int(x) for x in types]


def write_gguf(
    model: Any,
    tok: Any,
    model_dir: Path,
    template: str | None,
    path: Path,
    dtype: str,
    provenance: dict[str, Any],
) -> None:
    """Write a plain (merged) Llama model as a GGUF file: llama.* hyperparameters, the tokenizer (tokens,
    types, merges, special ids, the chat template) and every tensor under the ``gguf`` package's name map.
    Hand-written around GGUFWriter because llama.cpp's converter (``convert_hf_to_gguf.py``) is not part of
    the ``gguf`` package and needs a checkout of llama.cpp."""
    import gguf
    import numpy as np
    import torch

    cfg = model.config
    if cfg.vocab_size < len(tok):
        raise ExportError(
            f"the tokenizer has {len(tok)} tokens, more than the model's vocab_size {cfg.vocab_size}"
        )
    arch = gguf.MODEL_ARCH.LLAMA
    w = gguf.GGUFWriter(str(path), gguf.MODEL_ARCH_NAMES[arch])
    w.add_name(f"{Path(provenance['export']['from']).parent.name} (instructkit export)")
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_block_count(cfg.num_hidden_layers)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    rope = getattr(cfg, "rope_parameters", None) or {}
    w.add_rope_freq_base(float(rope.get("rope_theta", getattr(cfg, "rope_theta", 10000.0))))
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    w.add_rope_dimension_count(head_dim)
    w.add_vocab_size(cfg.vocab_size)
    w.add_file_type(getattr(gguf.LlamaFileType, GGUF_FILE_TYPES[dtype]))
    # llama.cpp keeps unknown keys; provenance travels with the file as one JSON string
    w.add_string("instructkit.provenance", json.dumps(provenance))

    tokens, types = _vocab(tok, cfg.vocab_size)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre(_pre_tokenizer(tok, model_dir))
    w.add_token_list(tokens)
    w.add_token_types(types)
    special = gguf.SpecialVocab(model_dir, load_merges=True, n_vocab=cfg.vocab_size)
    if not special.merges:
        raise ExportError(
            f"{model_dir}: no BPE merges in its tokenizer; --format gguf writes BPE tokenizers only"
        )
    special.chat_template = template
    special.add_to_gguf(w, quiet=True)

    name_map = gguf.get_tensor_name_map(arch, cfg.num_hidden_layers)
    np_dtype = {"float32": np.float32, "float16": np.float16}.get(dtype)
    for name, tensor in model.state_dict().items():
        if name == "lm_head.weight" and cfg.tie_word_embeddings:
            continue  # tied: llama.cpp (and the loader) reuse token_embd when output.weight is absent
        gguf_name = name_map.get_name(name, try_suffixes=(".weight", ".bias"))
        if gguf_name is None:
            raise ExportError(f"--format gguf: no GGUF name for tensor {name}")
        t = tensor.detach().cpu()
        if name.endswith("q_proj.weight"):
            t = permute_qk(t, cfg.num_attention_heads)
        elif name.endswith("k_proj.weight"):
            t = permute_qk(t, cfg.num_key_value_heads)
        if t.ndim == 1:
            # llama.cpp keeps 1-D tensors (the norms) in float32 whatever the file type
            w.add_tensor(gguf_name, t.float().numpy())
        elif np_dtype is not None:
            w.add_tensor(gguf_name, t.to(getattr(torch, dtype)).numpy().astype(np_dtype, copy=False))
        else:  # bfloat16: numpy has no such type; the raw 16-bit words, tagged BF16
            raw = t.to(torch.bfloat16).view(torch.int16).numpy()
            w.add_tensor(gguf_name, raw, raw_shape=raw.shape, raw_dtype=gguf.GGMLQuantizationType.BF16)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
