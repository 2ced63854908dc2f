"""Packing is exact: packed rows give the unpacked logits, per-sample losses and gradients (tiny random Llama)."""

from __future__ import annotations

import random

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import LlamaConfig, LlamaForCausalLM

from instructkit.token_loss import UnpackedCollator, per_sample_loss, span_token_losses
from instructkit.train.packing import PackedCollator, pack_samples

from .conftest import tiny_llama_config

IMPLS = ["sdpa", "eager"]
MAX_LEN = 32
PAD = 0


def _config() -> LlamaConfig:
    # a larger init than the default makes attention far from uniform, so a leak across samples shows clearly
    return tiny_llama_config(vocab_size=64, initializer_range=0.1)


@pytest.fixture(scope="module")
def weights() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return LlamaForCausalLM(_config()).state_dict()


def _model(
    weights: dict[str, torch.Tensor], impl: str, dtype: torch.dtype = torch.float32
) -> LlamaForCausalLM:
    model = LlamaForCausalLM._from_config(_config(), attn_implementation=impl)
    model.load_state_dict(weights)
    assert model.config._attn_implementation == impl
    return model.to(dtype)


def _samples() -> list[dict[str, list[int]]]:
    """Different lengths, prompt tokens masked (one sample fully trained, one with a single trained token)."""
    rng = random.Random(1)
    shapes = [(5, 9), (0, 7), (3, 2), (12, 14), (4, 1), (2, 11), (6, 6), (1, 3)]
    out = []
    for prompt, answer in shapes:
        ids = [rng.randrange(1, 64) for _ in range(prompt + answer)]
        out.append({"input_ids": ids, "labels": [-100] * prompt + ids[prompt:]})
    return out


def _batches(samples, dtype: torch.dtype = torch.float32):
    """(packed batch, its spans, unpacked batch, its spans, packed position -> sample index)."""
    bins = pack_samples(samples, MAX_LEN)
    assert any(len(b) >= 3 for b in bins) and len(bins) >= 2  # several samples per row, several rows
    packed = [[samples[i] for i in b] for b in bins]
    pc, uc = PackedCollator(PAD, MAX_LEN, dtype=dtype), UnpackedCollator(PAD)
    order = [i for b in bins for i in b]
    return pc(packed), pc.spans(packed), uc(samples), uc.spans(samples), order


def _forward(model, batch) -> torch.Tensor:
    return model(**{k: v for k, v in batch.items() if k != "labels"}).logits


@pytest.mark.parametrize("impl", IMPLS)
def test_packed_matches_unpacked_losses_and_logits(weights, impl: str) -> None:
    model = _model(weights, impl).eval()
    samples = _samples()
    pb, ps, ub, us, order = _batches(samples)
    assert pb["input_ids"].shape[0] < ub["input_ids"].shape[0]

    packed_loss, unpacked_loss = per_sample_loss(model, pb, ps), per_sample_loss(model, ub, us)
    for k, i in enumerate(order):
        assert packed_loss[k] == pytest.approx(unpacked_loss[i], abs=1e-5), (impl, i)

    with torch.no_grad():
        pl, ul = _forward(model, pb), _forward(model, ub)
    assert torch.isfinite(pl).all()  # padding rows attend to themselves: no NaN anywhere
    for k, i in enumerate(order):
        row, start, end = ps[k]
        urow, ustart, uend = us[i]
        assert end - start == uend - ustart == len(samples[i]["input_ids"])
        torch.testing.assert_close(pl[row, start:end], ul[urow, ustart:uend], atol=1e-5, rtol=0)


@pytest.mark.parametrize("impl", IMPLS)
def test_position_ids_alone_do_not_isolate(weights, impl: str) -> None:
    """Negative control: restarting position_ids with a plain 2D mask leak across samples, so the
    comparison above can fail."""
    model = _model(weights, impl).eval()
    pb, ps, ub, us, order = _batches(_samples())
    leaky = dict(pb, attention_mask=torch.ones_like(pb["input_ids"]))
    packed_loss, unpacked_loss = per_sample_loss(model, leaky, ps), per_sample_loss(model, ub, us)
    worst = max(abs(packed_loss[k] - unpacked_loss[i]) for k, i in enumerate(order))
    assert worst > 1e-3
    with torch.no_grad():
        pl, ul = _forward(model, leaky), _forward(model, ub)
    worst_logit = max(
        (pl[r, s:e] - ul[ur, us_:ue]).abs().max().item()
        for (r, s, e), (ur, us_, ue) in ((ps[k], us[i]) for k, i in enumerate(order))
    )
    assert worst_logit > 1e-3


@pytest.mark.parametrize("impl", IMPLS)
def test_gradients_match(weights, impl: str) -> None:
    """Loss = sum of token losses / total trained tokens (HF's own mean over labels != -100)."""
    pb, ps, ub, us, _ = _batches(_samples())
    grads, losses = [], []
    for batch, spans in ((pb, ps), (ub, us)):
        model = _model(weights, impl).train()
        out = model(**batch)
        tokens = span_token_losses(out.logits, batch["labels"], spans)
        manual = torch.cat(tokens).sum() / sum(t.numel() for t in tokens)
        torch.testing.assert_close(out.loss, manual, atol=1e-6, rtol=0)
        out.loss.backward()
        losses.append(out.loss.item())
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
    assert losses[0] == pytest.approx(losses[1], abs=1e-6)
    for name, g in grads[0].items():
        assert g.abs().sum() > 0, name
        torch.testing.assert_close(g, grads[1][name], atol=1e-5, rtol=0, msg=name)


def test_collator_layout() -> None:
    a = {"input_ids": [11, 12, 13], "labels": [-100, 12, 13]}
    b = {"input_ids": [21, 22], "labels": [21, 22]}
    c = {"input_ids": [31, 32, 33, 34], "labels": [31, 32, 33, 34]}
    batch = PackedCollator(PAD, 8)([[a, b], [c]])
    assert batch["input_ids"].tolist() == [[11, 12, 13, 21, 22], [31, 32, 33, 34, PAD]]
    # every sample's first label is -100; padding is -100
    assert batch["labels"].tolist() == [[-100, 12, 13, -100, 22], [-100, 32, 33, 34, -100]]
    assert batch["position_ids"].tolist() == [[0, 1, 2, 0, 1], [0, 1, 2, 3, 0]]
    mask = batch["attention_mask"]
    assert mask.shape == (2, 1, 5, 5) and mask.dtype == torch.float32
    allowed = (mask == 0).int()[:, 0].tolist()
    assert set(mask.unique().tolist()) == {0.0, torch.finfo(torch.float32).min}
    assert allowed[0] == [
        [1, 0, 0, 0, 0],
        [1, 1, 0, 0, 0],
        [1, 1, 1, 0, 0],
        [0, 0, 0, 1, 0],
        [0, 0, 0, 1, 1],
    ]
    assert allowed[1] == [  # the padding position attends only to itself
        [1, 0, 0, 0, 0],
        [1, 1, 0, 0, 0],
        [1, 1, 1, 0, 0],
        [1, 1, 1, 1, 0],
        [0, 0, 0, 0, 1],
    ]


def test_oversize_sample_is_truncated() -> None:
    long = {"input_ids": list(range(1, 13)), "labels": list(range(1, 13))}
    short = {"input_ids": [5, 6], "labels": [5, 6]}
    samples = [short, long]
    bins = pack_samples(samples, 8)
    assert bins == [[1], [0]]
    pc = PackedCollator(PAD, 8)
    packed = [[samples[i] for i in b] for b in bins]
    batch = pc(packed)
    assert batch["input_ids"].shape == (2, 8)
    assert batch["input_ids"][0].tolist() == list(range(1, 9))
    assert pc.spans(packed) == [(0, 0, 8), (1, 0, 2)]


def test_bf16_mask_runs_under_both_attentions(weights) -> None:
    """SDPA needs a float mask in the query's dtype: the collator's dtype argument provides it."""
    pb, ps, ub, us, order = _batches(_samples(), dtype=torch.bfloat16)
    assert pb["attention_mask"].dtype == torch.bfloat16
    for impl in IMPLS:
        model = _model(weights, impl, torch.bfloat16).eval()
        packed_loss, unpacked_loss = per_sample_loss(model, pb, ps), per_sample_loss(model, ub, us)
        for k, i in enumerate(order):
            assert packed_loss[k] == pytest.approx(unpacked_loss[i], abs=0.1)


def _check_bins(lengths: list[int], max_length: int, bins: list[list[int]]) -> None:
    flat = sorted(i for b in bins for i in b)
    assert flat == list(range(len(lengths)))  # every sample exactly once
    for b in bins:
        total = sum(lengths[i] for i in b)
        assert total <= max_length or (len(b) == 1 and lengths[b[0]] > max_length)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 60), max_size=80), st.integers(1, 50))
def test_pack_samples_properties(lengths: list[int], max_length: int) -> None:
    samples = [{"input_ids": [1] * n, "labels": [1] * n} for n in lengths]
    bins = pack_samples(samples, max_length)
    _check_bins(lengths, max_length, bins)
    assert pack_samples(samples, max_length) == bins  # deterministic
    assert pack_samples([dict(s) for s in samples], max_length) == bins


def test_pack_samples_first_fit_decreasing() -> None:
    lengths = [3, 7, 5, 5, 2, 9, 4]
    samples = [{"input_ids": [1] * n, "labels": [1] * n} for n in lengths]
    # longest first: 9, 7, 5 open bins; the second 5 fills the third; 4 opens a fourth; 3 fills the 7's bin;
    # 2 fits nowhere before the fourth bin
    assert pack_samples(samples, 10) == [[5], [1, 0], [2, 3], [6, 4]]
    _check_bins(lengths, 10, pack_samples(samples, 10))
    assert pack_samples([], 10) == []
    with pytest.raises(ValueError):
        pack_samples(samples, 0)
