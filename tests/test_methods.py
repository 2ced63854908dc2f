"""Every fine-tuning method on every task it supports, on tiny random Llama and BERT models: exactly the
intended parameters train, the loss falls, and the saved part reloads onto a fresh base model with equal
logits. Pairs a method refuses by design are asserted to raise."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import (
    BertConfig,
    BertForMaskedLM,
    BertForSequenceClassification,
    BertForTokenClassification,
    LlamaConfig,
    LlamaForCausalLM,
    LlamaForSequenceClassification,
)

from instructkit.train.methods import METHODS, MethodError, build_method

from .conftest import tiny_bert_config, tiny_llama_config

VOCAB, BATCH, LENGTH, PAD, MASK = 64, 4, 8, 0, 3


def _llama(**kw: Any) -> LlamaConfig:
    return tiny_llama_config(vocab_size=VOCAB, pad_token_id=PAD, **kw)


def _bert(**kw: Any) -> BertConfig:
    return tiny_bert_config(vocab_size=VOCAB, pad_token_id=PAD, **kw)


# key -> (task, builder); tied embeddings on the Llama LM, as in SmolLM2
MODELS: dict[str, tuple[str, Callable[[], Any]]] = {
    "llama-clm": ("causal-lm", lambda: LlamaForCausalLM(_llama(tie_word_embeddings=True))),
    "llama-cls": ("sequence-classification", lambda: LlamaForSequenceClassification(_llama(num_labels=3))),
    "bert-cls": ("sequence-classification", lambda: BertForSequenceClassification(_bert(num_labels=3))),
    "bert-ner": ("token-classification", lambda: BertForTokenClassification(_bert(num_labels=5))),
    "bert-mlm": ("masked-lm", lambda: BertForMaskedLM(_bert())),
}
PARAMS: dict[str, dict[str, Any]] = {"freeze": {"layers": 1}, "prompt-tuning": {"num_virtual_tokens": 4}}
REFUSED = {
    ("bitfit", "llama-clm"),
    ("bitfit", "llama-cls"),
    ("prompt-tuning", "bert-ner"),
    ("prompt-tuning", "bert-mlm"),
}


def method_pairs() -> list[tuple[str, str]]:
    """Every registered method on every tiny model of a task it applies to: read from the registry, so a
    new method module is in the matrix without an edit here (tests/test_extension.py checks that)."""
    return [
        (m, k)
        for m in sorted(METHODS)
        for k, (task, _) in MODELS.items()
        if (m, k) not in REFUSED and task in METHODS[m].task_names()
    ]


PAIRS = method_pairs()


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models run fastest on one thread; two threads spin against any other busy process."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def build(key: str) -> Any:
    torch.manual_seed(0)  # a fresh copy of "the same pretrained model" for load_trained
    return MODELS[key][1]()


def batch(task: str) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(4, VOCAB, (BATCH, LENGTH), generator=g)
    mask = torch.ones_like(ids)
    ids[-1, -2:], mask[-1, -2:] = PAD, 0  # one right-padded row
    if task == "causal-lm":
        labels = ids.masked_fill(mask == 0, -100)
    elif task == "sequence-classification":
        labels = torch.randint(0, 3, (BATCH,), generator=g)
    elif task == "token-classification":
        labels = torch.randint(0, 5, (BATCH, LENGTH), generator=g).masked_fill(mask == 0, -100)
        labels[:, 0] = -100  # e.g. [CLS] / continuation sub-words
    else:
        chosen = (torch.rand(BATCH, LENGTH, generator=g) < 0.3) & (mask == 1)
        chosen[:, 1] = True
        labels = ids.masked_fill(~chosen, -100)
        ids = ids.masked_fill(chosen, MASK)
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def is_head(name: str) -> bool:
    return name.startswith(("score.", "classifier.")) or "modules_to_save" in name


def expected_trainable(method: str, key: str, name: str) -> bool | None:
    """The parameters each method means to train, by name after apply(); None for a method this table
    does not know (a new one), which is held to the rest of the matrix test."""
    if method == "full":
        return True
    if method == "freeze":  # layers=1: the top layer and what sits above it; embeddings never
        above = (
            "model.layers.1.",
            "model.norm.",
            "bert.encoder.layer.1.",
            "bert.pooler.",
            "cls.predictions.",
        )
        return name.startswith(above) or is_head(name)
    marker = {
        "lora": "lora_",
        "adapter": ".adapter.",
        "prompt-tuning": "prompt_encoder",
        "ln-tuning": "ln_tuning_layers",
    }
    if method == "bitfit":
        return name.endswith(".bias") or is_head(name)
    if method not in marker:
        return None
    return marker[method] in name or is_head(name)


def logits(model: Any, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).logits


def loss(model: Any, inputs: dict[str, torch.Tensor]) -> float:
    model.eval()
    with torch.no_grad():
        return model(**inputs).loss.item()


@pytest.mark.parametrize(("method", "key"), PAIRS, ids=[f"{m}-{k}" for m, k in PAIRS])
def test_method_trains_only_what_it_means_to_and_reloads(method: str, key: str, tmp_path: Path) -> None:
    task = MODELS[key][0]
    m = build_method(method, PARAMS.get(method))
    model = m.apply(build(key), task)
    inputs = batch(task)

    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    known = [(n, expected_trainable(method, key, n)) for n, _ in model.named_parameters()]
    if all(e is not None for _, e in known):
        assert trainable == {n for n, e in known if e}
    summary = m.trainable_summary(model)
    assert 0 < summary["trainable"] <= summary["total"]
    assert summary["share"] == pytest.approx(summary["trainable"] / summary["total"])

    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    loss_before = loss(model, inputs)
    torch.manual_seed(2)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    for _ in range(8):
        opt.zero_grad()
        model(**inputs).loss.backward()
        opt.step()
    assert loss(model, inputs) < loss_before

    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed <= trainable, f"frozen parameters changed: {sorted(changed - trainable)[:5]}"
    still = trainable - changed
    assert not still, f"trainable parameters that did not change: {sorted(still)[:5]}"
    if task in ("sequence-classification", "token-classification"):
        assert any(is_head(n) for n in changed)

    out = logits(model, inputs)
    m.save_trained(model, tmp_path)
    assert json.loads((tmp_path / "method.json").read_text()) == {"method": method, "params": m.params()}
    reloaded = METHODS[method].load_trained(build(key), tmp_path, task)
    assert torch.allclose(logits(reloaded, inputs), out, atol=1e-6)
    untrained = m.for_loading().apply(build(key), task)
    assert not torch.allclose(logits(untrained, inputs), out, atol=1e-6)  # so the reload did load something


@pytest.mark.parametrize(("method", "key"), sorted(REFUSED))
def test_refused_pairs_raise(method: str, key: str) -> None:
    with pytest.raises(MethodError):
        build_method(method).apply(build(key), MODELS[key][0])


def test_bitfit_on_a_model_without_biases_suggests_alternatives() -> None:
    with pytest.raises(MethodError, match="ln-tuning"):
        build_method("bitfit").apply(build("llama-clm"), "causal-lm")


def test_unknown_method_or_parameter_is_named() -> None:
    with pytest.raises(MethodError, match="'rank'"):
        build_method("lora", {"rank": 4})
    with pytest.raises(MethodError, match="'qlora'"):
        build_method("qlora")
    with pytest.raises(MethodError, match="layers"):
        build_method("freeze", {"layers": 0})
    assert build_method("ln_tuning").name == "ln-tuning"


def test_freeze_more_layers_than_the_model_has_is_an_error() -> None:
    with pytest.raises(MethodError, match="full"):
        build_method("freeze", {"layers": 3}).apply(build("llama-clm"), "causal-lm")


@pytest.mark.parametrize("key", ["llama-clm", "bert-cls"])
def test_adapter_starts_as_the_identity(key: str) -> None:
    task = MODELS[key][0]
    inputs = batch(task)
    reference = logits(build(key), inputs)
    model = build_method("adapter").apply(build(key), task)
    assert sum(".adapter." in n for n, _ in model.named_parameters()) == 2 * 2 * 4  # 2 layers x 2 places x 4
    assert torch.equal(logits(model, inputs), reference)


def test_prompt_tuning_decoder_classifier_pools_the_last_real_token() -> None:
    """PEFT feeds a decoder classifier inputs_embeds only, so it would pool the last position (a pad
    under right padding); the method left-aligns rows, making right- and left-padded batches agree."""
    model = build_method("prompt-tuning", {"num_virtual_tokens": 4}).apply(
        build("llama-cls"), "sequence-classification"
    )
    right = batch("sequence-classification")
    order = torch.argsort(right["attention_mask"], dim=1, stable=True)
    left = {k: torch.gather(right[k], 1, order) for k in ("input_ids", "attention_mask")}
    assert not torch.equal(left["input_ids"], right["input_ids"])
    assert torch.allclose(logits(model, right), logits(model, left), atol=1e-6)
