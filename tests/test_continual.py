"""Continual-learning pieces: forgetting metrics on hand-computed matrices, the replay buffer's reservoir
(uniform, balanced, seeded, saved and reloaded), EWC's Fisher and penalty on a hand-computed linear model
and a tiny Llama, the trainer's loss-penalty seam, and LwF's distillation loss against a hand computation."""

from __future__ import annotations

import math
import random

import pytest
import torch
from torch import nn

from instructkit.records import Record
from instructkit.train.continual import STRATEGIES, ContinualError, build_strategy
from instructkit.train.continual import metrics as M
from instructkit.train.continual.ewc import EwcPenalty, EwcState, consolidate, fisher_diagonal
from instructkit.train.continual.lwf import distillation_loss, frozen_teacher, lwf_loss, trained_mask
from instructkit.train.continual.replay import ReplayBuffer, reservoir_sample
from tests.conftest import tiny_llama_config

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
    buf.add_task("b", recs("b", 5))
    path = tmp_path / "round-1" / "buffer.jsonl"
    path.parent.mkdir()
    buf.save(path)
    again = ReplayBuffer.load(path, per_task=8, seed=1)
    assert again.seen == buf.seen
    assert again.tasks == buf.tasks
    for task in buf.tasks:
        assert [r.text for r in again.kept[task]] == [r.text for r in buf.kept[task]]
        assert [r.meta["i"] for r in again.kept[task]] == [r.meta["i"] for r in buf.kept[task]]
    assert [r.text for r in again.draw(10, 4)] == [r.text for r in buf.draw(10, 4)]
    with pytest.raises(ContinualError, match="more than per_task=4"):
        ReplayBuffer.load(path, per_task=4)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "x", "meta": {}}\n')
    with pytest.raises(ContinualError, match="record 1: meta.replay"):
        ReplayBuffer.load(bad)
