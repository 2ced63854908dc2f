"""The engine's oneDNN-packed linear layers (decoding/engine/packed.py): the same numbers as plain ``linear``,
never stale after the weight changes, never used for training, and given back as they came."""

from __future__ import annotations

import pytest
import torch

from instructkit.decoding.engine import packed

pytestmark = pytest.mark.skipif(packed.usable(torch.nn.Linear(4, 4)) is not None, reason="no oneDNN here")


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(40, 64), torch.nn.GELU(), torch.nn.Linear(64, 8, bias=False))


def test_packed_layers_give_plain_linear_numbers_and_are_given_back() -> None:
    model = _model()
    x = torch.randn(5, 3, 40)
    with torch.inference_mode():
        want = model(x)
    layers = packed.install(model)
    assert len(layers) == 2 and all("forward" in vars(m) for m in layers)
    with torch.inference_mode():
        got = model(x)
    assert torch.allclose(got, want, atol=1e-5) and got.shape == want.shape
    packed.restore(layers)
    assert not any("forward" in vars(m) or "_instructkit_packed" in vars(m) for m in model.modules())


def test_a_changed_weight_is_packed_again_and_training_never_sees_the_copy() -> None:
    model = _model()
    layers = packed.install(model)
    x = torch.randn(4, 40)
    with torch.no_grad():
        model[0].weight.mul_(2.0)  # in place (a merged adapter): the version counter moves
        model[2].weight = torch.nn.Parameter(torch.randn(8, 64))  # replaced (a reloaded weight)
    with torch.inference_mode():
        got = model(x)
    plain = model[2](torch.nn.functional.gelu(torch.nn.functional.linear(x, model[0].weight, model[0].bias)))
    assert torch.allclose(got, plain.detach(), atol=1e-5)
    out = model(x).sum()  # gradients enabled: the plain path, so the weights get gradients
    out.backward()
    assert model[0].weight.grad is not None and model[2].weight.grad is not None
    packed.restore(layers)


def test_a_model_that_is_not_fp32_on_cpu_or_has_no_room_is_left_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    model = _model().to(torch.bfloat16)
    assert packed.install(model) == []
    assert packed.usable(model) == "the model is not fp32 on a CPU"
    model = _model()  # 40*64 + 64*8 fp32 weights: 12,288 bytes
    monkeypatch.setattr(packed, "_free_memory", lambda: 20_000)
    assert "over half the free memory" in (packed.usable(model) or "")
    assert packed.install(model) == []
    monkeypatch.setattr(packed, "_free_memory", lambda: 30_000)
    assert packed.usable(model) is None


@pytest.mark.parametrize("packed_weights", [True, False])
def test_the_engine_decodes_on_packed_weights_with_one_request_generate_replies(
    make_tiny_llama, packed_weights: bool
) -> None:
    """Six prompts, three rows at a time: each greedy reply equals a plain ``generate`` of the untouched
    model, and the model comes back with its own linear layers."""
    from instructkit.decoding.engine.sampling import Sampling
    from instructkit.decoding.engine.scheduler import Engine
    from instructkit.models import load_model, load_tokenizer
    from tests.serve_reference import greedy_ids

    folder = make_tiny_llama("varied-llama-packed", initializer_range=0.3)
    model, tok = load_model(folder), load_tokenizer(folder)
    prompts = [tok(f"question {i}: " + "word " * i)["input_ids"] for i in range(6)]
    want = [greedy_ids(model, tok, p, 10) for p in prompts]
    engine = Engine(model, tok, max_batch=3, packed_weights=packed_weights).start()
    try:
        assert engine.stats["packed_weights"] is packed_weights
        assert engine.stats["lean_forward"]  # packed groups or not: projections not grouped run as modules
        requests = [engine.submit(p, Sampling(max_tokens=10), deltas=False) for p in prompts]
        got = [next(v for k, v in r.events() if k == "done").token_ids for r in requests]
    finally:
        engine.stop()
    assert got == want and len({tuple(g) for g in got}) > 3
    assert not any("forward" in vars(m) for m in model.modules())


class _Attention(torch.nn.Module):
    def __init__(self, bias: bool = False) -> None:
        super().__init__()
        self.q_proj = torch.nn.Linear(40, 32, bias=bias)
        self.k_proj = torch.nn.Linear(40, 8, bias=bias)
        self.v_proj = torch.nn.Linear(40, 8, bias=bias)
        self.o_proj = torch.nn.Linear(32, 40, bias=False)


@pytest.mark.parametrize("bias", [False, True])
def test_siblings_reading_one_input_share_one_packed_product_with_the_same_numbers(bias: bool) -> None:
    """q/k/v (and gate/up) run as one packed product, each layer taking its columns: the numbers are those of
    each layer packed on its own, to the bit, in any call order, with inputs that differ, after a weight
    changes; restore gives the layers back."""
    torch.manual_seed(0)
    attn = _Attention(bias)
    names = ("q_proj", "k_proj", "v_proj")
    x, y = torch.randn(3, 5, 40), torch.randn(2, 40)
    alone = {n: packed._pack(getattr(attn, n).weight) for n in names}

    def own(n: str, t: torch.Tensor) -> torch.Tensor:  # each layer packed on its own (the unfused path)
        m = getattr(attn, n)
        return torch.ops.mkldnn._linear_pointwise(t, alone[n], m.bias, "none", [], "")

    layers = packed.install(attn)
    assert len(layers) == 4 and attn.q_proj._instructkit_group is attn.v_proj._instructkit_group
    assert not hasattr(attn.o_proj, "_instructkit_group")  # o_proj reads another input
    with torch.inference_mode():
        for order in (names, ("v_proj", "q_proj", "k_proj")):
            got = {n: getattr(attn, n)(x) for n in order}
            assert all(torch.equal(got[n], own(n, x)) for n in names)
        # another input between two members, and one member called twice with the same input
        q, k_other, k = attn.q_proj(x), attn.k_proj(y), attn.k_proj(x)
        assert torch.equal(q, own("q_proj", x)) and torch.equal(k_other, own("k_proj", y))
        assert torch.equal(k, own("k_proj", x)) and torch.equal(attn.k_proj(x), own("k_proj", x))
    with torch.no_grad():
        attn.k_proj.weight.mul_(2.0)  # a changed weight: the stacked copy is packed again
    alone["k_proj"] = packed._pack(attn.k_proj.weight)
    with torch.inference_mode():
        assert torch.equal(attn.q_proj(y), own("q_proj", y)) and torch.equal(attn.k_proj(y), own("k_proj", y))
        assert not torch.equal(own("k_proj", y), own("q_proj", y)[:, :8])
    packed.restore(layers)
    assert not any(
        k in vars(m) for m in attn.modules() for k in ("forward", "_instructkit_packed", "_instructkit_group")
    )


def test_the_written_out_llama_forward_is_used_only_where_it_gives_the_same_logits(
    make_tiny_llama, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Packed steps run ``lean.forward`` on a Llama whose probe logits it matches to the bit, with or without
    a LoRA adapter on some projections; a forward that differs in the last bits is not used, and replies
    equal one-request ``generate`` either way."""
    import peft

    from instructkit.decoding.engine import lean
    from instructkit.decoding.engine.sampling import Sampling
    from instructkit.decoding.engine.scheduler import Engine
    from instructkit.models import load_model, load_tokenizer
    from tests.serve_reference import greedy_ids

    folder = make_tiny_llama("varied-llama-lean", initializer_range=0.3)
    model, tok = load_model(folder), load_tokenizer(folder)
    assert lean.supported(model) is None
    assert "not 'llama'" in (lean.supported(torch.nn.Linear(2, 2)) or "")
    # a LoRA adapter on q_proj and down_proj (random, so it changes replies): k/v and gate/up stay packed
    # groups no more (q/k/v) and still (gate/up); the adapter's layers are called as modules
    config = peft.LoraConfig(r=2, target_modules=["q_proj", "down_proj"], init_lora_weights=False)
    torch.manual_seed(1)
    wrapped = peft.get_peft_model(load_model(folder), config).eval()

    prompts = [tok(f"question {i}: " + "word " * i)["input_ids"] for i in range(4)]
    real = lean.forward
    monkeypatch.setattr(lean, "forward", lambda *a: real(*a) * (1 + 1e-6))  # the same up to the last bits
    for subject in (model, wrapped, model):
        want = [greedy_ids(subject, tok, p, 8) for p in prompts]
        engine = Engine(subject, tok, max_batch=2).start()
        try:
            assert engine.stats["lean_forward"] is (lean.forward is real)
            requests = [engine.submit(p, Sampling(max_tokens=8), deltas=False) for p in prompts]
            got = [next(v for k, v in r.events() if k == "done").token_ids for r in requests]
        finally:
            engine.stop()
        assert got == want
        monkeypatch.setattr(lean, "forward", real)
    with torch.inference_mode():
        assert greedy_ids(wrapped, tok, prompts[3], 8) != greedy_ids(model, tok, prompts[3], 8)
