"""Continual-learning pieces: forgetting metrics on hand-computed matrices, the replay buffer's reservoir
(uniform, balanced, seeded, saved and reloaded), EWC's Fisher and penalty on a hand-computed linear model
and a tiny Llama, the trainer's loss-penalty seam, and LwF's distillation loss against a hand computation."""

from __future__ import annotations

import math
import random
from pathlib import Path

import pytest
import torch
from torch import nn

from instructkit.continual import metrics as M
from instructkit.continual.strategies import STRATEGIES, ContinualError, build_strategy
from instructkit.continual.strategies.ewc import EwcPenalty, EwcState, consolidate, fisher_diagonal
from instructkit.continual.strategies.lwf import distillation_loss, frozen_teacher, lwf_loss, trained_mask
from instructkit.continual.strategies.replay import ReplayBuffer, reservoir_sample
from instructkit.records import Record
from tests.conftest import tiny_llama_config

ROOT = Path(__file__).parent.parent

# ------------------------------------------------------------------------------------------ registry


def test_strategies_register_and_load_like_configs():
    assert {"naive", "replay", "ewc", "lwf"} <= set(STRATEGIES)
    assert build_strategy("replay", {"ratio": 0.1}).replay_count(1001) == 101  # ratio rounds up
    assert build_strategy("replay", {"size": 7}).replay_count(1001) == 7
    assert build_strategy("EWC", {"estimator": "empirical"}).estimator == "empirical"
    with pytest.raises(ContinualError, match="'strategy.lamda'"):
        build_strategy("ewc", {"lamda": 1.0}, prefix="strategy")
    with pytest.raises(ContinualError, match="exactly one of ratio and size"):
        build_strategy("replay", {"ratio": 0.1, "size": 5})
    with pytest.raises(ContinualError, match="exactly one of ratio and size"):
        build_strategy("replay", {})
    with pytest.raises(ContinualError, match="'strategy.estimator'"):
        build_strategy("ewc", {"estimator": "fancy"}, prefix="strategy")
    with pytest.raises(ContinualError, match="unknown strategy 'ewk'"):
        build_strategy("ewk")


# ------------------------------------------------------------------------------------------ metrics


def three_tasks() -> M.ScoreMatrix:
    # rows: after round 0, 1, 2; columns: tasks a, b, c
    return M.ScoreMatrix(
        tasks=["a", "b", "c"],
        untouched=[10.0, 20.0, 30.0],
        rounds=[[80.0, 25.0, 31.0], [60.0, 90.0, 40.0], [50.0, 70.0, 85.0]],
        general_untouched=40.0,
        general=[39.0, 37.0, 33.5],
    )


def test_metrics_on_a_hand_computed_matrix():
    r = three_tasks()
    assert M.average_accuracy(r) == pytest.approx((50 + 70 + 85) / 3)
    # BWT: ((50 - 80) + (70 - 90)) / 2
    assert M.backward_transfer(r) == pytest.approx(-25.0)
    # FWT: ((R[0][b] - untouched[b]) + (R[1][c] - untouched[c])) / 2 = ((25 - 20) + (40 - 30)) / 2
    assert M.forward_transfer(r) == pytest.approx(7.5)
    # forgetting: a: max(80, 60) - 50 = 30; b: max(90) - 70 = 20
    assert M.forgetting(r) == {"a": pytest.approx(30.0), "b": pytest.approx(20.0)}
    assert M.average_forgetting(r) == pytest.approx(25.0)
    assert M.general_delta(r) == pytest.approx(-6.5)


def test_forgetting_takes_the_best_score_since_learned_not_the_last():
    r = M.ScoreMatrix(["a", "b", "c"], [0, 0, 0], [[50, 0, 0], [70, 60, 0], [40, 60, 90]])
    assert M.forgetting(r) == {"a": pytest.approx(30.0), "b": pytest.approx(0.0)}  # a peaked after round 1
    assert M.backward_transfer(r) == pytest.approx(((40 - 50) + (60 - 60)) / 2)


def test_partial_run_uses_the_tasks_trained_so_far():
    r = M.ScoreMatrix(["a", "b", "c"], [10, 20, 30], [[80, 25, None], [60, 90, 40]])
    assert M.average_accuracy(r) == pytest.approx(75.0)
    assert M.backward_transfer(r) == pytest.approx(-20.0)
    assert M.forward_transfer(r) == pytest.approx(5.0)


def test_one_round_gives_no_nan():
    r = M.ScoreMatrix(["a"], [12.0], [[70.0]], general_untouched=50.0, general=[48.0])
    assert M.average_accuracy(r) == 70.0
    assert M.backward_transfer(r) is None
    assert M.forward_transfer(r) is None
    assert M.forgetting(r) == {}
    assert M.average_forgetting(r) is None
    assert M.general_delta(r) == -2.0


def test_score_matrix_errors_name_the_problem():
    with pytest.raises(ContinualError, match="round 1 has 2 scores for 3 tasks"):
        M.ScoreMatrix(["a", "b", "c"], [0, 0, 0], [[1, 2, 3], [1, 2]])
    with pytest.raises(ContinualError, match="untouched row has 2 scores for 3 tasks"):
        M.ScoreMatrix(["a", "b", "c"], [0, 0], [])
    with pytest.raises(ContinualError, match=r"R\[0\]\[b\] is nan"):
        M.ScoreMatrix(["a", "b"], [0, 0], [[1.0, math.nan]])
    with pytest.raises(ContinualError, match="3 rounds for 2 tasks"):
        M.ScoreMatrix(["a", "b"], [0, 0], [[1, 1], [1, 1], [1, 1]])
    with pytest.raises(ContinualError, match="at least 1 finished round"):
        M.average_accuracy(M.ScoreMatrix(["a"], [0], []))
    # FWT needs each task's score before it was trained
    r = M.ScoreMatrix(["a", "b"], [0, 0], [[1, None], [1, 1]])
    with pytest.raises(ContinualError, match=r"R\[0\]\[b\] was not scored"):
        M.forward_transfer(r)
    with pytest.raises(ContinualError, match="no general-ability scores"):
        M.general_delta(r)
    with pytest.raises(ContinualError, match="unknown key 'round'"):
        M.ScoreMatrix.from_dict({"tasks": ["a"], "untouched": [0], "round": []})


def test_score_matrix_round_trips_through_a_dict():
    r = three_tasks()
    assert M.ScoreMatrix.from_dict(r.to_dict()) == r


# ------------------------------------------------------------------------------------------ replay


def recs(task: str, n: int) -> list[Record]:
    return [Record(text=f"{task}-{i}", meta={"i": i}) for i in range(n)]


def test_reservoir_is_uniform():
    """Each of 20 items lands in a 5-slot reservoir with probability 1/4. Over 4,000 seeded trials each
    frequency must sit within 4.5 standard errors of 1/4 (false alarm rate about 1e-4 for 20 items), and a
    chi-square statistic over the 20 counts must stay below the 0.999 quantile of chi²(19) (43.8)."""
    n, k, trials = 20, 5, 4000
    items = recs("t", n)
    counts = [0] * n
    for trial in range(trials):
        kept, seen = reservoir_sample(items, k, random.Random(trial))
        assert seen == n and len(kept) == k and len({r.text for r in kept}) == k
        for r in kept:
            counts[r.meta["i"]] += 1
    p = k / n
    se = math.sqrt(p * (1 - p) / trials)
    for i, c in enumerate(counts):
        assert abs(c / trials - p) < 4.5 * se, f"item {i} kept {c} times of {trials}"
    expected = trials * p
    chi2 = sum((c - expected) ** 2 / expected for c in counts)
    assert chi2 < 43.8


def test_the_uniformity_check_catches_a_biased_sampler():
    # "keep the first k" would pass a size check but not the frequency check above
    trials, n, k = 4000, 20, 5
    counts = [trials if i < k else 0 for i in range(n)]
    se = math.sqrt(0.25 * 0.75 / trials)
    assert any(abs(c / trials - 0.25) >= 4.5 * se for c in counts)


def test_buffer_is_balanced_across_tasks():
    buf = ReplayBuffer(per_task=50, seed=3)
    buf.add_task("big", recs("big", 1000))
    buf.add_task("small", recs("small", 10))
    buf.add_task("mid", recs("mid", 200))
    assert buf.seen == {"big": 1000, "small": 10, "mid": 200}
    assert {t: len(v) for t, v in buf.kept.items()} == {"big": 50, "small": 10, "mid": 50}
    assert buf.shares(30) == {"big": 10, "small": 10, "mid": 10}
    assert buf.shares(31) == {"big": 11, "small": 10, "mid": 10}  # remainder to the earliest task
    # small holds 10 < its share of 20: the other 10 go to the others evenly
    assert buf.shares(60) == {"big": 25, "small": 10, "mid": 25}
    drawn = buf.draw(60, round_index=3)
    by_task: dict[str, int] = {}
    for r in drawn:
        by_task[r.text.split("-")[0]] = by_task.get(r.text.split("-")[0], 0) + 1
    assert by_task == {"big": 25, "small": 10, "mid": 25}
    assert len({r.text for r in drawn}) == 60  # without replacement
    assert all("replay" not in r.meta for r in drawn)
    with pytest.raises(ContinualError, match="111 records asked for, 110 held"):
        buf.draw(111, round_index=3)
    with pytest.raises(ContinualError, match="already in the buffer"):
        buf.add_task("big", recs("big", 3))
    with pytest.raises(ContinualError, match="has no records"):
        buf.add_task("empty", [])


def test_buffer_is_deterministic_and_seeded():
    def build(seed: int) -> list[str]:
        buf = ReplayBuffer(per_task=20, seed=seed)
        buf.add_task("a", recs("a", 300))
        buf.add_task("b", recs("b", 300))
        return [r.text for r in buf.mix(recs("new", 50), 10, round_index=2)]

    assert build(0) == build(0)
    assert build(0) != build(1)
    mixed = build(0)
    assert len(mixed) == 60 and sum(t.startswith("new-") for t in mixed) == 50


def test_buffer_round_trips_through_jsonl(tmp_path):
    buf = ReplayBuffer(per_task=8, seed=1)
    buf.add_task("a", recs("a", 40))
    from_file = [
        Record.chat(
            [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}],
            source="b.jsonl",
            i=i,
        )
        for i in range(5)
    ]
    buf.add_task("b", from_file)
    path = tmp_path / "round-1" / "buffer.jsonl"
    path.parent.mkdir()
    buf.save(path)
    again = ReplayBuffer.load(path, per_task=8, seed=1)
    assert again.seen == buf.seen
    assert again.tasks == buf.tasks
    assert again.kept == buf.kept  # the same records, meta.source included (absent for "a", kept for "b")
    assert "source" not in again.kept["a"][0].meta and again.kept["b"][0].meta["source"] == "b.jsonl"
    assert again.draw(10, 4) == buf.draw(10, 4)
    with pytest.raises(ContinualError, match="more than per_task=4"):
        ReplayBuffer.load(path, per_task=4)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "x", "meta": {}}\n')
    with pytest.raises(ContinualError, match="record 1: meta.replay"):
        ReplayBuffer.load(bad)


# ------------------------------------------------------------------------------------------ EWC


class Out:
    def __init__(self, logits: torch.Tensor):
        self.logits = logits


class LinearLM(nn.Module):
    """logits = W · emb(token): a frozen embedding and a trainable linear head, small enough to write the
    Fisher of by hand."""

    def __init__(self, vocab: int = 4, dim: int = 3):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.emb = nn.Embedding(vocab, dim)
        self.emb.weight.data = torch.randn(vocab, dim, generator=g)
        self.emb.weight.requires_grad_(False)
        self.head = nn.Linear(dim, vocab, bias=False)
        self.head.weight.data = torch.randn(vocab, dim, generator=g)

    def forward(self, input_ids: torch.Tensor, **_: torch.Tensor) -> Out:
        return Out(self.head(self.emb(input_ids)))


def one_example(prompt: int, target: int) -> dict[str, torch.Tensor]:
    # position 0 (the prompt token) predicts the trained token at position 1
    return {"input_ids": torch.tensor([[prompt, target]]), "labels": torch.tensor([[-100, target]])}


def hand_grad_sq(model: LinearLM, prompt: int, y: int) -> torch.Tensor:
    """(∂ CE/∂W)² for one position: ∂ CE/∂W = (softmax(Wx) − e_y) xᵀ."""
    x = model.emb.weight[prompt]
    p = torch.softmax(model.head.weight @ x, dim=0)
    e = torch.zeros_like(p)
    e[y] = 1
    return (torch.outer(p - e, x)) ** 2


def test_empirical_fisher_matches_the_hand_computation():
    model = LinearLM()
    data = [one_example(0, 2), one_example(1, 3), one_example(3, 0)]
    fisher = fisher_diagonal(model, data, estimator="empirical", n_samples=10)
    assert set(fisher) == {"head.weight"}  # the frozen embedding gets none
    want = sum(hand_grad_sq(model, a, y) for a, y in [(0, 2), (1, 3), (3, 0)]) / 3
    torch.testing.assert_close(fisher["head.weight"], want.detach())
    # n_samples caps the examples used
    first_two = fisher_diagonal(model, data, estimator="empirical", n_samples=2)
    want2 = (hand_grad_sq(model, 0, 2) + hand_grad_sq(model, 1, 3)) / 2
    torch.testing.assert_close(first_two["head.weight"], want2.detach())


def test_sampled_fisher_converges_to_the_expectation_under_the_model():
    """The sampled estimator averages (∂ log p(y)/∂W)² over y ~ p; with 3,000 draws it must come within
    5% (relative, summed over entries) of Σ_y p_y·(p − e_y)²xᵀ², which the empirical one does not."""
    model = LinearLM()
    data = [one_example(1, 2)] * 3000
    sampled = fisher_diagonal(model, data, estimator="sampled", n_samples=3000, seed=5)["head.weight"]
    x = model.emb.weight[1]
    p = torch.softmax(model.head.weight @ x, dim=0).detach()
    expected = sum(p[y] * hand_grad_sq(model, 1, y) for y in range(4)).detach()
    assert (sampled - expected).abs().sum() / expected.sum() < 0.05
    empirical = fisher_diagonal(model, data[:1], estimator="empirical", n_samples=1)["head.weight"]
    assert (empirical - expected).abs().sum() / expected.sum() > 0.2
    again = fisher_diagonal(model, data[:50], estimator="sampled", n_samples=50, seed=5)["head.weight"]
    torch.testing.assert_close(again, fisher_diagonal(model, data[:50], n_samples=50, seed=5)["head.weight"])


def tiny_lm() -> nn.Module:
    from transformers import LlamaForCausalLM

    torch.manual_seed(0)
    return LlamaForCausalLM(tiny_llama_config(vocab_size=64, pad_token_id=0))


def lm_batches(n_batches: int = 2, seed: int = 1) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n_batches):
        ids = torch.randint(1, 64, (3, 8), generator=g)
        labels = ids.clone()
        labels[:, :4] = -100  # the prompt
        mask = torch.ones_like(ids)
        ids[2, 6:], labels[2, 6:], mask[2, 6:] = 0, -100, 0  # padding
        out.append({"input_ids": ids, "attention_mask": mask, "labels": labels})
    return out


def test_fisher_on_a_tiny_llama_is_non_negative_and_the_estimators_differ():
    model = tiny_lm()
    model.train()
    emp = fisher_diagonal(model, lm_batches(), estimator="empirical", n_samples=6)
    smp = fisher_diagonal(model, lm_batches(), estimator="sampled", n_samples=6, seed=0)
    assert model.training  # put back
    assert set(emp) == {n for n, p in model.named_parameters() if p.requires_grad}
    assert all(bool((f >= 0).all()) and bool(torch.isfinite(f).all()) for f in emp.values())
    assert sum(float(f.sum()) for f in emp.values()) > 0
    diff = sum(float((emp[n] - smp[n]).abs().sum()) for n in emp)
    assert diff > 1e-3 * sum(float(f.sum()) for f in emp.values())
    with pytest.raises(ContinualError, match="no example with a trained token"):
        fisher_diagonal(
            model, [{"input_ids": torch.ones(1, 4, dtype=torch.long), "labels": torch.full((1, 4), -100)}]
        )
    with pytest.raises(ContinualError, match="unknown estimator"):
        fisher_diagonal(model, lm_batches(), estimator="true")


def test_ewc_penalty_is_zero_at_the_anchor_and_grows_quadratically(tmp_path):
    model = tiny_lm()
    fisher = fisher_diagonal(model, lm_batches(), estimator="empirical", n_samples=6)
    state = consolidate(None, fisher, model)
    penalty = EwcPenalty(state, lam=100.0)
    assert penalty(model).item() == 0.0
    direction = {n: torch.randn_like(p) for n, p in model.named_parameters()}

    def moved(step: float) -> float:
        with torch.no_grad():
            for n, p in model.named_parameters():
                p.copy_(state.anchor[n] + step * direction[n])
        return penalty(model).item()

    p1, p2 = moved(1e-2), moved(2e-2)
    assert p1 > 0
    assert p2 == pytest.approx(4 * p1, rel=1e-4)
    by_hand = 50.0 * sum(float((fisher[n] * (2e-2 * direction[n]) ** 2).sum()) for n in fisher)
    assert p2 == pytest.approx(by_hand, rel=1e-4)
    # the gradient is λ·F·(θ − θ*)
    model.zero_grad()
    penalty(model).backward()
    name = "model.layers.0.mlp.up_proj.weight"
    p = dict(model.named_parameters())[name]
    torch.testing.assert_close(p.grad, 100.0 * fisher[name] * (p.detach() - state.anchor[name]))
    # saved and reloaded, it is the same penalty
    state.save(tmp_path / "ewc.safetensors")
    assert EwcPenalty(EwcState.load(tmp_path / "ewc.safetensors"), 100.0)(model).item() == pytest.approx(p2)


def test_online_ewc_decays_the_old_fisher_and_moves_the_anchor():
    model = tiny_lm()
    f1 = fisher_diagonal(model, lm_batches(seed=1), estimator="empirical", n_samples=6)
    s1 = consolidate(None, f1, model, gamma=0.5)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01)
    f2 = fisher_diagonal(model, lm_batches(seed=2), estimator="empirical", n_samples=6)
    s2 = consolidate(s1, f2, model, gamma=0.5)
    s3 = consolidate(s2, f2, model, gamma=0.5)
    name = "model.norm.weight"
    torch.testing.assert_close(s2.fisher[name], 0.5 * f1[name] + f2[name])
    torch.testing.assert_close(s3.fisher[name], 0.25 * f1[name] + 0.5 * f2[name] + f2[name])
    torch.testing.assert_close(s2.anchor[name], dict(model.named_parameters())[name].detach())
    assert not torch.equal(s1.anchor[name], s2.anchor[name])
    assert (s1.tasks, s2.tasks, s3.tasks) == (1, 2, 3)
    with pytest.raises(ContinualError, match="gamma must be in"):
        consolidate(s1, f2, model, gamma=1.5)


def test_trainer_adds_the_penalty_to_training_loss_only(tmp_path):
    from transformers import TrainingArguments

    from instructkit.train.trainer import InstructTrainer

    model = tiny_lm()
    batch = lm_batches(1)[0]

    def trainer(accumulate: int) -> InstructTrainer:
        args = TrainingArguments(
            output_dir=str(tmp_path), use_cpu=True, report_to=[], gradient_accumulation_steps=accumulate
        )
        return InstructTrainer(
            model=model, args=args, loss_penalty=lambda m: m.model.norm.weight.sum() * 0 + 3.0
        )

    t = trainer(1)
    model.eval()
    base = t.compute_loss(model, dict(batch)).item()
    model.train()
    with torch.no_grad():
        plain = float(model(**batch).loss)
    assert base == pytest.approx(plain)
    assert t.compute_loss(model, dict(batch)).item() == pytest.approx(plain + 3.0)
    loss, outputs = t.compute_loss(model, dict(batch), return_outputs=True)
    assert loss.item() == pytest.approx(plain + 3.0) and outputs.logits.shape[-1] == 64
    # a loss already a share of the accumulated batch's tokens is summed over 2 micro-batches: the
    # penalty is halved so the optimizer step still sees it once
    n_tokens = int((batch["labels"][:, 1:] != -100).sum())
    t2 = trainer(2)
    shared = t2.compute_loss(model, dict(batch), num_items_in_batch=n_tokens).item()
    assert t2.model_accepts_loss_kwargs
    assert shared == pytest.approx(plain + 1.5, rel=1e-5)


# ------------------------------------------------------------------------------------------ LwF


def test_distillation_loss_matches_a_hand_computation_and_its_order():
    teacher = torch.tensor([[2.0, 0.0, -1.0]])
    student = torch.tensor([[0.0, 1.0, 0.5]])
    t = 2.0
    p = torch.softmax(teacher / t, -1)
    q = torch.softmax(student / t, -1)
    kl_pq = float((p * (p.log() - q.log())).sum())  # KL(teacher ‖ student)
    kl_qp = float((q * (q.log() - p.log())).sum())
    assert abs(kl_pq - kl_qp) > 1e-3  # the example tells the two orders apart
    got = float(distillation_loss(student, teacher, temperature=t))
    assert got == pytest.approx(kl_pq * t**2, rel=1e-6)
    # torch's kl_div(input=log Q, target=P) is KL(P ‖ Q); with log_target the target is log P
    ref = torch.nn.functional.kl_div(q.log(), p, reduction="sum")
    assert got == pytest.approx(float(ref) * t**2, rel=1e-6)
    assert float(distillation_loss(student, student.clone(), temperature=t)) == pytest.approx(0.0, abs=1e-7)
    assert got > 0


def test_distillation_loss_scales_by_t_squared():
    g = torch.Generator().manual_seed(0)
    teacher, student = torch.randn(4, 10, generator=g), torch.randn(4, 10, generator=g)
    for t in (1.0, 3.0):
        p = torch.log_softmax(teacher / t, -1)
        q = torch.log_softmax(student / t, -1)
        kl = float((p.exp() * (p - q)).sum(-1).mean())
        assert float(distillation_loss(student, teacher, temperature=t)) == pytest.approx(
            kl * t * t, rel=1e-5
        )


def test_distillation_loss_leaves_out_prompt_and_padding():
    labels = torch.tensor([[-100, -100, 5, 6, -100], [-100, 7, 8, -100, -100]])
    mask = trained_mask(labels)
    # position t is trained when token t+1 is: row 0 -> 1, 2; row 1 -> 0, 1
    assert mask.tolist() == [[False, True, True, False, False], [True, True, False, False, False]]
    g = torch.Generator().manual_seed(1)
    teacher, student = torch.randn(2, 5, 9, generator=g), torch.randn(2, 5, 9, generator=g)
    base = float(distillation_loss(student, teacher, mask))
    noisy = student.clone()
    noisy[~mask] += 100 * torch.randn(int((~mask).sum()), 9, generator=g)
    assert float(distillation_loss(noisy, teacher, mask)) == pytest.approx(base, rel=1e-6)
    assert float(distillation_loss(noisy, teacher)) != pytest.approx(base, rel=1e-3)
    only_kept = float(distillation_loss(student[mask], teacher[mask]))
    assert base == pytest.approx(only_kept, rel=1e-6)
    empty = distillation_loss(student.requires_grad_(), teacher, torch.zeros(2, 5, dtype=torch.bool))
    assert empty.item() == 0.0 and empty.requires_grad


def test_lwf_mixes_task_and_distillation_and_only_the_student_learns():
    model = tiny_lm()
    teacher = frozen_teacher(model)
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    batch = lm_batches(1)[0]
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask")}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    out = model(**batch)
    scalar = lambda x: x.detach().item()  # noqa: E731
    from instructkit.continual.strategies.lwf import teacher_logits

    z_t = teacher_logits(teacher, inputs)
    mask = trained_mask(batch["labels"])
    d = distillation_loss(out.logits, z_t, mask, 2.0)
    assert scalar(d) > 0
    assert scalar(lwf_loss(out.loss, out.logits, z_t, mask, alpha=0.0, temperature=2.0)) == pytest.approx(
        scalar(out.loss)
    )
    mixed = lwf_loss(out.loss, out.logits, z_t, mask, alpha=0.3, temperature=2.0)
    assert scalar(mixed) == pytest.approx(0.7 * scalar(out.loss) + 0.3 * scalar(d), rel=1e-6)
    mixed.backward()
    assert all(p.grad is None for p in teacher.parameters())
    assert model.lm_head.weight.grad is not None
    # the teacher is a copy: training the student left it where it was
    assert not torch.equal(teacher.lm_head.weight, model.lm_head.weight)


@pytest.mark.slow
def test_train_applies_the_loss_penalty_every_step(tmp_path, tiny_llama):
    """Through ``train``: the penalty is called at each training micro-batch (not in evaluation), and a large EWC
    penalty anchored at the starting weights keeps them there, where plain training moves them."""
    from transformers import AutoModelForCausalLM

    from instructkit.train.config import TrainConfig
    from instructkit.train.training import train

    demo = ROOT / "examples" / "data" / "demo.jsonl"

    def cfg(name: str) -> TrainConfig:
        return TrainConfig.from_dict(
            {
                "model": tiny_llama,
                "task": "causal-lm",
                "method": {"name": "full"},
                "name": name,
                "output_dir": str(tmp_path),
                "data": {"train": str(demo), "val_share": 0.2, "max_length": 64},
                "optim": {"lr": 5e-3, "batch_size": 4, "micro_batch_size": 2, "max_steps": 4},
                "bf16": "false",
            }
        )

    start = AutoModelForCausalLM.from_pretrained(tiny_llama)
    ones = {n: torch.ones_like(p) for n, p in start.named_parameters()}
    penalty = EwcPenalty(consolidate(None, ones, start), lam=1e6)
    calls: list[bool] = []

    def counted(model: nn.Module) -> torch.Tensor:
        calls.append(model.training)
        return penalty(model)

    held = train(cfg("held"), progress=False, loss_penalty=counted).model
    free = train(cfg("free"), progress=False).model
    assert len(calls) == 4 * 2 and all(calls)  # 4 steps of 2 micro-batches, none in evaluation

    # the token loss reaches the trainer the same way (LwF with the starting model as teacher)
    from instructkit.continual.strategies.lwf import LwfTokenLoss

    lwf = LwfTokenLoss(frozen_teacher(start), alpha=0.5, temperature=2.0)
    seen: list[int] = []

    def counted_lwf(logits, targets, inputs, keep):
        seen.append(int(keep.sum()))
        return lwf(logits, targets, inputs, keep)

    train(cfg("lwf"), progress=False, token_loss=counted_lwf)
    assert len(seen) == 4 * 2 and all(n > 0 for n in seen)

    def drift(model: nn.Module) -> float:
        return sum(
            float((p.detach() - start.state_dict()[n]).abs().sum()) for n, p in model.named_parameters()
        )

    assert drift(free) > 0
    # Adam's steps are about lr in size whatever the gradient's scale, so even a huge penalty holds the
    # weights within a few steps of θ*, not at it: measured 1,426 vs 9,241 (summed |θ − θ*|)
    assert drift(held) < drift(free) / 3


def test_lwf_token_loss_through_the_trainer(tmp_path):
    """``InstructTrainer(token_loss=LwfTokenLoss(...))`` on the trained-positions head gives (1 − α)·CE +
    α·T²·KL over the trained positions, as computed from full forwards of student and teacher."""
    from transformers import TrainingArguments

    from instructkit.continual.strategies.lwf import LwfTokenLoss
    from instructkit.train.trainer import InstructTrainer

    model = tiny_lm()
    teacher = frozen_teacher(model)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    batch = lm_batches(1)[0]
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to=[])

    def trainer(student_teacher: nn.Module) -> InstructTrainer:
        token_loss = LwfTokenLoss(student_teacher, alpha=0.3, temperature=2.0)
        return InstructTrainer(model=model, args=args, trained_positions_head=True, token_loss=token_loss)

    model.train()
    with torch.no_grad():
        out = model(**batch)
        z_t = teacher(**{k: batch[k] for k in ("input_ids", "attention_mask")}).logits
    mask = trained_mask(batch["labels"])
    want = 0.7 * out.loss.item() + 0.3 * distillation_loss(out.logits, z_t, mask, 2.0).item()
    t = trainer(teacher)
    assert t.compute_loss(model, dict(batch)).detach().item() == pytest.approx(want, rel=1e-5)
    # the student as its own teacher: the KL vanishes and only (1 − α)·CE is left
    assert trainer(model).compute_loss(model, dict(batch)).detach().item() == pytest.approx(
        0.7 * out.loss.item(), rel=1e-5
    )
    model.eval()  # evaluation keeps the plain cross-entropy
    assert t.compute_loss(model, dict(batch)).detach().item() == pytest.approx(out.loss.item(), rel=1e-5)
    with pytest.raises(ValueError, match="needs the trained-positions head"):
        InstructTrainer(model=model, args=args, token_loss=LwfTokenLoss(teacher, alpha=0.3, temperature=2.0))
