from __future__ import annotations

from pathlib import Path

import pytest
import torch

from instructkit.records import Record

FIXTURES = Path(__file__).parent / "fixtures"


def without_source(rec: Record) -> Record:
    """A record minus meta.source (the file it was read from, which a round trip changes)."""
    meta = {k: v for k, v in rec.meta.items() if k != "source"}
    return Record(rec.messages, rec.tokens, rec.tags, rec.text, rec.label, meta)


@pytest.fixture
def fixtures() -> Path:
    return FIXTURES


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A 2-layer Llama with SmolLM2's tokenizer and chat template, saved as a local model folder."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from instructkit.models import load_tokenizer

    tok = load_tokenizer("smollm2-135m-instruct")
    folder = tmp_path_factory.mktemp("tiny-llama")
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, max_position_embeddings=512, tie_word_embeddings=True,
                      pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)  # fmt: skip
    LlamaForCausalLM(cfg).save_pretrained(folder)
    tok.save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> str:
    from transformers import AutoTokenizer, BertConfig, BertModel

    from instructkit.models import resolve

    tok = AutoTokenizer.from_pretrained(resolve("minilm-l6").path)
    folder = tmp_path_factory.mktemp("tiny-bert")
    torch.manual_seed(0)
    cfg = BertConfig(
        vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64
    )
    BertModel(cfg).save_pretrained(folder)
    tok.save_pretrained(folder)
    return str(folder)
