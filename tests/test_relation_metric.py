"""``semeval-f1`` equals SemEval-2010 Task 8's official score: hand-computed cases (wrong direction, ``Other``
on either side, a type never predicted, a skipped example) with the expected numbers written as fractions,
and agreement with a reimplementation of the official scorer's counting (``semeval2010_task8_scorer-v1.2.pl``,
its (9+1)-way evaluation with directionality) on seeded random label lists."""

from __future__ import annotations

import random
import re
from fractions import Fraction as F

import pytest

from instructkit.evaluate.metrics import METRICS, get_metric
from instructkit.evaluate.metrics.relation import compute

TYPES = [
    "Cause-Effect",
    "Component-Whole",
    "Content-Container",
    "Entity-Destination",
    "Entity-Origin",
    "Instrument-Agency",
    "Member-Collection",
    "Message-Topic",
    "Product-Producer",
]
LABELS = [f"{t}({d})" for t in TYPES for d in ("e1,e2", "e2,e1")] + ["Other"]


def pct(x: F) -> float:
    return float(100 * x)


def check(got: dict, want: dict) -> None:
    for key, value in want.items():
        assert got[key] == pytest.approx(pct(value) if isinstance(value, F) else value, abs=1e-9), key


# --------------------------------------------------------------------------------------- hand-computed


def test_wrong_direction_costs_precision_and_recall_and_other_on_both_sides():
    refs = ["Component-Whole(e1,e2)", "Component-Whole(e1,e2)", "Component-Whole(e2,e1)",
            "Cause-Effect(e1,e2)", "Cause-Effect(e2,e1)", "Other", "Other"]  # fmt: skip
    preds = ["Component-Whole(e1,e2)", "Component-Whole(e2,e1)", "Component-Whole(e2,e1)",
             "Cause-Effect(e1,e2)", "Other", "Cause-Effect(e1,e2)", "Other"]  # fmt: skip
    got = compute(preds, refs)
    # Component-Whole: 3 predicted (one in the wrong direction), 2 exact, 3 gold -> P = R = 2/3.
    # Cause-Effect: 2 predicted (one for a gold Other), 1 exact, 2 gold (one predicted Other) -> P = R = 1/2.
    check(got, {
        "semeval_macro_f1": (F(2, 3) + F(1, 2)) / 2,  # 7/12; Other is no class of the average
        "semeval_macro_precision": F(7, 12),
        "semeval_macro_recall": F(7, 12),
        "semeval_micro_precision": F(3, 5),
        "semeval_micro_recall": F(3, 5),
        "semeval_micro_f1": F(3, 5),
        "semeval_accuracy": F(4, 7),
        "n": 7, "unparsed": 0, "wrong_direction": 1,
    })  # fmt: skip
    cw = got["semeval_per_class"]["Component-Whole"]
    assert (cw["precision"], cw["recall"], cw["support"]) == (
        pytest.approx(pct(F(2, 3))),
        pytest.approx(pct(F(2, 3))),
        3,
    )
    other = got["semeval_per_class"]["Other"]  # reported, not averaged: 2 predicted, 1 exact, 2 gold
    assert other["f1"] == pytest.approx(pct(F(1, 2)))
    assert set(got["semeval_per_class"]) == {"Component-Whole", "Cause-Effect", "Other"}


def test_type_never_predicted_and_type_only_predicted():
    refs = ["Member-Collection(e1,e2)", "Member-Collection(e1,e2)", "Entity-Destination(e1,e2)", "Other"]
    preds = ["Member-Collection(e1,e2)", "Product-Producer(e1,e2)", "Other", "Member-Collection(e1,e2)"]
    got = compute(preds, refs)
    # Member-Collection: 2 predicted, 1 exact, 2 gold -> 1/2, 1/2, F1 1/2. Entity-Destination: never
    # predicted -> P = R = F1 = 0. Product-Producer is not in the references: no class of the average.
    check(got, {
        "semeval_macro_f1": F(1, 4),
        "semeval_macro_precision": F(1, 4),
        "semeval_macro_recall": F(1, 4),
        "semeval_micro_precision": F(1, 2),  # 1 exact / (2 + 0) predicted of the reference types
        "semeval_micro_recall": F(1, 3),
        "semeval_micro_f1": F(2, 5),
        "semeval_accuracy": F(1, 4),
        "wrong_direction": 0,
    })  # fmt: skip
    assert got["semeval_per_class"]["Entity-Destination"] == {
        "precision": 0.0,
        "recall": 0.0,
        "f1": 0.0,
        "support": 1,
    }
    assert "Product-Producer" not in got["semeval_per_class"]


def test_macro_f1_is_mean_of_f1s_and_skipped_is_a_miss():
    refs = ["Instrument-Agency(e2,e1)", "Instrument-Agency(e2,e1)", "Instrument-Agency(e1,e2)",
            "Message-Topic(e1,e2)", "Message-Topic(e1,e2)", "Other", "Other"]  # fmt: skip
    preds = ["Instrument-Agency(e2,e1)", None, "Instrument-Agency(e2,e1)",
             "Message-Topic(e1,e2)", "Other", "Message-Topic(e2,e1)", "Other"]  # fmt: skip
    got = compute(preds, refs)
    # Instrument-Agency: 2 predicted (the skipped one is not), 1 exact, 3 gold -> P 1/2, R 1/3, F1 2/5.
    # Message-Topic: 2 predicted (one for a gold Other), 1 exact, 2 gold -> 1/2, 1/2, F1 1/2.
    check(got, {
        "semeval_macro_f1": F(9, 20),  # mean of F1s; 2PR/(P+R) of macro P 1/2 and R 5/12 would be 5/11
        "semeval_macro_precision": F(1, 2),
        "semeval_macro_recall": F(5, 12),
        "semeval_micro_precision": F(2, 4),
        "semeval_micro_recall": F(2, 5),
        "semeval_micro_f1": F(4, 9),
        "semeval_accuracy": F(3, 7),  # the skipped example counts as wrong
        "n": 7, "unparsed": 1, "wrong_direction": 1,
    })  # fmt: skip


def test_generic_labels_and_other_label():
    refs = ["born_in", "none", "works_for", "none", "none"]
    preds = ["born_in", "works_for", "none", "none", "none"]
    got = compute(preds, refs, other_label="none")
    # born_in 1/1, 1/1 -> F1 1; works_for: 1 predicted (for a gold none), 0 exact -> F1 0
    check(got, {"semeval_macro_f1": F(1, 2), "semeval_accuracy": F(3, 5)})
    # without other_label, "none" is a class of the average: P 2/3, R 2/3 -> F1 (1 + 0 + 2/3) / 3
    check(compute(preds, refs), {"semeval_macro_f1": F(5, 9)})
    check(compute(["none", "none"], ["born_in", "none"], other_label="none"), {"semeval_macro_f1": F(0)})


def test_parse_and_labels_options_as_the_eval_passes_them():
    refs = ["Cause-Effect(e1,e2)", "Cause-Effect(e2,e1)", "Other"]
    labels = ["Cause-Effect(e1,e2)", "Cause-Effect(e2,e1)", "Other"]
    replies = ["The answer: Cause-Effect(e1,e2).", "cause effect e1 e2", "no idea"]
    got = get_metric("semeval-f1").compute(replies, refs, labels=labels, parse=True)
    # reply 2 parses to the wrong direction, reply 3 to nothing: Cause-Effect P 1/2, R 1/2
    check(
        got, {"semeval_macro_f1": F(1, 2), "semeval_accuracy": F(1, 3), "unparsed": 1, "wrong_direction": 1}
    )
    # without parse, a prediction outside labels= is a skipped example, not a false positive
    got = compute(["Cause-Effect(e1,e2)", "Cause-Effect", "Other"], refs, labels=labels)
    check(got, {"semeval_macro_f1": F(2, 3), "unparsed": 1})  # P 1/1, R 1/2
    with pytest.raises(ValueError, match="not in labels="):
        compute(["Other"], ["Entity-Origin(e1,e2)"], labels=["Other"])


def test_errors_and_registry():
    with pytest.raises(ValueError, match="no relation type other than 'Other'"):
        compute(["Other"], ["Other"])
    with pytest.raises(ValueError, match="must pair up"):
        compute(["Other"], ["Other", "Other"])
    with pytest.raises(ValueError, match="label strings"):
        compute(["Other"], [None])
    m = METRICS["semeval-f1"]
    assert (m.kind, m.higher_is_better, m.module) == (
        "classification",
        True,
        "instructkit.evaluate.metrics.relation",
    )


# ------------------------------------------------------------------------ the official scorer's counting


def _strip(label: str) -> str:
    return re.sub(r"\(e[12],e[12]\)[\n\r]*$", "", label)


def official_scorer(proposed: dict[int, str], answer: dict[int, str]) -> dict:
    """The v1.2 scorer's (9+1)-way evaluation with directionality, as its Perl does it: ids -> labels,
    ``Other`` read as ``_Other``, a proposed file that may skip ids, the WRONG_DIR column, percentages."""
    proposed = {i: "_Other" if v == "Other" else v for i, v in proposed.items()}
    answer = {i: "_Other" if v == "Other" else v for i, v in answer.items()}
    conf: dict[str, dict[str, int]] = {}
    all_proposed: dict[str, int] = {}
    all_answer: dict[str, int] = {}
    for i, lp in proposed.items():
        la = answer[i]
        lp_nd, la_nd = _strip(lp), _strip(la)
        if lp == la:
            row = lp_nd
        elif lp_nd == la_nd:
            row = "WRONG_DIR"
        else:
            row = lp_nd
        conf.setdefault(row, {}).setdefault(la_nd, 0)
        conf[row][la_nd] += 1
        all_proposed[row] = all_proposed.get(row, 0) + 1
    for la in answer.values():
        all_answer[_strip(la)] = all_answer.get(_strip(la), 0) + 1

    freq_correct = sum(conf.get(a, {}).get(a, 0) for a in all_answer)
    macro_p = macro_r = macro_f1 = 0.0
    micro_correct = micro_proposed = micro_answer = 0
    per_class = {}
    for a in sorted(all_answer):
        wrong_dir = conf.get("WRONG_DIR", {}).get(a, 0)
        n_prop = all_proposed.get(a, 0)
        diag = conf.get(a, {}).get(a, 0)
        p = 0 if n_prop == 0 else 100.0 * diag / (n_prop + wrong_dir)
        r = 0 if all_answer[a] == 0 else 100.0 * diag / all_answer[a]
        f1 = 0 if p + r == 0 else 2 * p * r / (p + r)
        per_class["Other" if a == "_Other" else a] = (p, r, f1, all_answer[a])
        if a != "_Other":
            macro_p, macro_r, macro_f1 = macro_p + p, macro_r + r, macro_f1 + f1
            micro_correct += diag
            micro_proposed += n_prop + wrong_dir
            micro_answer += all_answer[a]
    micro_p = 0 if micro_proposed == 0 else 100.0 * micro_correct / micro_proposed
    micro_r = 0 if micro_answer == 0 else 100.0 * micro_correct / micro_answer
    micro_f1 = 0 if micro_p + micro_r == 0 else 2.0 * micro_p * micro_r / (micro_p + micro_r)
    distinct = len(all_answer) - (1 if "_Other" in all_answer else 0)
    return {
        "macro_p": macro_p / distinct,
        "macro_r": macro_r / distinct,
        "macro_f1": macro_f1 / distinct,
        "micro": (micro_p, micro_r, micro_f1),
        "accuracy_skipped_wrong": 100.0 * freq_correct / len(answer),
        "per_class": per_class,
        "wrong_dir": sum(conf.get("WRONG_DIR", {}).values()),
    }


def test_official_scorer_reimplementation_on_a_hand_case():
    """The reimplementation itself, on the first hand-computed case."""
    refs = ["Component-Whole(e1,e2)", "Component-Whole(e1,e2)", "Component-Whole(e2,e1)",
            "Cause-Effect(e1,e2)", "Cause-Effect(e2,e1)", "Other", "Other"]  # fmt: skip
    preds = ["Component-Whole(e1,e2)", "Component-Whole(e2,e1)", "Component-Whole(e2,e1)",
             "Cause-Effect(e1,e2)", "Other", "Cause-Effect(e1,e2)", "Other"]  # fmt: skip
    want = official_scorer(dict(enumerate(preds)), dict(enumerate(refs)))
    assert want["macro_f1"] == pytest.approx(pct(F(7, 12)), abs=1e-9)
    assert want["accuracy_skipped_wrong"] == pytest.approx(pct(F(4, 7)), abs=1e-9)


@pytest.mark.parametrize("seed", range(5))
def test_agrees_with_official_scorer_counting_on_random_labels(seed):
    rng = random.Random(seed)
    compared = raised = 0
    for _ in range(200):
        pool = rng.sample(LABELS, rng.randint(1, len(LABELS)))  # small pools: many exact matches
        if rng.random() < 0.5:
            pool.append("Other")
        n = rng.randint(1, 30)
        refs = [rng.choice(pool) for _ in range(n)]
        preds = [None if rng.random() < 0.1 else rng.choice(pool + LABELS[:2]) for _ in range(n)]
        if all(r == "Other" for r in refs):  # the scorer divides by zero there
            with pytest.raises(ValueError):
                compute(preds, refs)
            raised += 1
            continue
        got = compute(preds, refs)
        want = official_scorer({i: p for i, p in enumerate(preds) if p is not None}, dict(enumerate(refs)))
        assert got["semeval_macro_f1"] == pytest.approx(want["macro_f1"], abs=1e-9)
        assert got["semeval_macro_precision"] == pytest.approx(want["macro_p"], abs=1e-9)
        assert got["semeval_macro_recall"] == pytest.approx(want["macro_r"], abs=1e-9)
        micro = (got["semeval_micro_precision"], got["semeval_micro_recall"], got["semeval_micro_f1"])
        assert micro == pytest.approx(want["micro"], abs=1e-9)
        assert got["semeval_accuracy"] == pytest.approx(want["accuracy_skipped_wrong"], abs=1e-9)
        assert got["wrong_direction"] == want["wrong_dir"]
        assert got["unparsed"] == preds.count(None)
        assert set(got["semeval_per_class"]) == set(want["per_class"])
        for t, c in got["semeval_per_class"].items():
            row = (c["precision"], c["recall"], c["f1"], c["support"])
            assert row == pytest.approx(want["per_class"][t], abs=1e-9), t
        compared += 1
    assert compared > 150 and raised + compared == 200
