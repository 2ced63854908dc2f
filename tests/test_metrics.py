"""Eval metrics equal their reference implementations (scikit-learn, seqeval, rouge_score, sacrebleu, the
official SQuAD v1.1 script), the reply-parsing rule does what its docstring says, and perplexity is the
token-weighted loss of a tiny random Llama computed one sample at a time."""

from __future__ import annotations

import math
import re
import string
import subprocess
import sys
from collections import Counter

import pytest
import sacrebleu
import sklearn.metrics as skm
import torch
from rouge_score import rouge_scorer
from seqeval import metrics as sq
from seqeval.scheme import IOB2
from transformers import LlamaForCausalLM

from instructkit.evaluate.metrics import METRICS, classification, get_metric, ner, perplexity, rouge, squad
from instructkit.evaluate.metrics import bleu as bleu_mod
from instructkit.evaluate.metrics.classification import parse_label

from .conftest import tiny_llama_config

# ---------------------------------------------------------------------------------------------- registry


def test_registry_names_kinds_and_lazy_pass_at_k():
    assert set(METRICS) == {
        "accuracy",
        "entity-f1",
        "entity-f1-strict",
        "entity-f1-text",
        "exact-match",
        "squad",
        "rouge",
        "bleu",
        "chrf",
        "perplexity",
        "pass@k",
        "semeval-f1",
    }
    assert get_metric("pass@k").module == "instructkit.evaluate.metrics.pass_at_k"
    assert get_metric("pass@k").kind == "code"
    assert get_metric("perplexity").higher_is_better is False
    assert all(m.higher_is_better for n, m in METRICS.items() if n != "perplexity")
    for name, m in METRICS.items():
        if name != "pass@k":  # written elsewhere; must not be needed to list or use the others
            assert callable(m.function_object()), name


def test_registry_imports_nothing_heavy():
    code = (
        "import sys, instructkit.evaluate.metrics as m; m.get_metric('pass@k'); "
        "print(sorted(x for x in ('torch', 'sklearn', 'seqeval', 'rouge_score', 'sacrebleu') if x in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_unknown_metric_lists_known_names():
    with pytest.raises(ValueError, match=r"unknown metric 'blue'.*bleu.*pass@k"):
        get_metric("blue")


def test_fixed_option_cannot_be_overridden():
    with pytest.raises(ValueError, match="fixes strict"):
        get_metric("entity-f1-strict").compute([["O"]], [["O"]], strict=False)


# ---------------------------------------------------------------------------------------- classification

REFS = ["pos", "neg", "neu", "pos", "neg", "pos", "neu", "neg", "pos", "neu"]
PREDS = ["pos", "neg", "pos", "pos", "neu", "neg", "neu", "neg", "pos", "pos"]


def _sklearn_scores(y_true, y_pred, labels=None):
    p, r, f, s = skm.precision_recall_fscore_support(
        y_true, y_pred, labels=labels, average=None, zero_division=0
    )
    names = labels if labels is not None else sorted(set(y_true) | set(y_pred))
    return {
        "accuracy": skm.accuracy_score(y_true, y_pred),
        "macro_f1": skm.f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0),
        "micro_f1": skm.f1_score(y_true, y_pred, labels=labels, average="micro", zero_division=0),
        "per_class": {
            str(n): {"precision": p[i], "recall": r[i], "f1": f[i], "support": s[i]}
            for i, n in enumerate(names)
        },
    }


def _assert_matches(got, want):
    # exact: the same scikit-learn functions on the same labels (indices vs names must not change a bit)
    for key in ("accuracy", "macro_f1", "micro_f1"):
        assert got[key] == want[key], key
    assert got["per_class"] == want["per_class"]


def test_classification_equals_sklearn():
    got = classification.compute(PREDS, REFS)
    _assert_matches(got, _sklearn_scores(REFS, PREDS))
    assert got["accuracy"] == pytest.approx(0.6)  # a value, not only parity
    assert got["macro_f1"] != pytest.approx(got["accuracy"])
    assert (got["n"], got["unparsed"]) == (10, 0)


def test_classification_integer_labels_and_label_order():
    refs, preds = [2, 0, 1, 1, 0, 2], [2, 0, 0, 1, 0, 1]
    got = classification.compute(preds, refs, labels=[2, 1, 0])
    _assert_matches(got, _sklearn_scores(refs, preds, labels=[2, 1, 0]))
    assert list(got["per_class"]) == ["2", "1", "0"]


def test_unparsed_is_wrong_but_not_a_class():
    preds = [None if i in (2, 5) else p for i, p in enumerate(PREDS)]
    got = classification.compute(preds, REFS, labels=["neg", "neu", "pos"])
    want = _sklearn_scores(
        REFS, ["<unparsed>" if p is None else p for p in preds], labels=["neg", "neu", "pos"]
    )
    _assert_matches(got, want)
    assert got["unparsed"] == 2
    assert "<unparsed>" not in got["per_class"]
    assert got["micro_f1"] > got["accuracy"]  # a miss, not a false positive of a real class


def test_parse_mode_maps_replies_then_scores():
    replies = ["Positive.", "The answer is: negative", "I'd say neutral!", "no idea", "POS? no: negative"]
    refs = ["positive", "negative", "neutral", "positive", "negative"]
    got = classification.compute(replies, refs, labels=["negative", "neutral", "positive"], parse=True)
    parsed = ["positive", "negative", "neutral", "<unparsed>", "negative"]
    _assert_matches(got, _sklearn_scores(refs, parsed, labels=["negative", "neutral", "positive"]))
    assert (got["accuracy"], got["unparsed"]) == (0.8, 1)


def test_reference_outside_label_set_is_an_error():
    with pytest.raises(ValueError, match="not in labels"):
        classification.compute(["a", "b"], ["a", "c"], labels=["a", "b"])


LABELS = ["positive", "negative", "neutral"]


@pytest.mark.parametrize(
    ("reply", "labels", "expected"),
    [
        ("Positive", LABELS, "positive"),  # whole reply, case-insensitive
        ("  negative. ", LABELS, "negative"),  # punctuation and spaces
        ("The answer is: Neutral!", LABELS, "neutral"),  # first whole word
        ("negative, not positive", LABELS, "negative"),  # earliest wins
        ("positive overall, some negative points", LABELS, "positive"),
        ("not positive", LABELS, "positive"),  # documented: negation is not read
        ("positively", LABELS, None),  # not a whole word
        ("I cannot tell.", LABELS, None),
        ("", LABELS, None),
        ("Not entailment.", ["entailment", "not_entailment"], "not_entailment"),  # _ is punctuation
        ("entailment", ["entailment", "not_entailment"], "entailment"),
        ("the premise entails it", ["entailment", "not_entailment"], None),
        ("Answer: very positive", ["very", "very positive"], "very positive"),  # same offset: longer
        ("这是正面的评价。", ["正面", "负面"], "正面"),  # CJK: no spaces between words
        ("答案:negative", LABELS, "negative"),  # a CJK neighbour is a word boundary
    ],
)
def test_parse_label_rule(reply, labels, expected):
    assert parse_label(reply, labels) == expected


def test_parse_label_rejects_labels_that_normalise_alike():
    with pytest.raises(ValueError, match="same once normalized"):
        parse_label("yes", ["Yes", "yes."])


# ------------------------------------------------------------------------------------------------- NER

NER_TRUE = [
    ["B-PER", "I-PER", "O", "B-LOC", "O"],
    ["B-ORG", "I-ORG", "I-ORG", "O", "B-PER"],
    ["O", "B-LOC", "I-LOC", "O", "B-MISC"],
    ["B-PER", "O", "B-ORG", "O", "O"],
]
NER_PRED = [
    ["B-PER", "I-PER", "O", "B-LOC", "O"],
    ["I-ORG", "I-ORG", "I-ORG", "O", "B-LOC"],  # ORG starts with I- (default: correct, strict: wrong)
    ["O", "B-LOC", "O", "O", "B-MISC"],
    ["B-PER", "O", "B-ORG", "I-ORG", "O"],
]


@pytest.mark.parametrize("strict", [False, True])
def test_entity_f1_equals_seqeval(strict):
    kw = {"mode": "strict", "scheme": IOB2} if strict else {}
    got = ner.compute(NER_PRED, NER_TRUE, strict=strict)
    assert got["precision"] == sq.precision_score(NER_TRUE, NER_PRED, **kw)
    assert got["recall"] == sq.recall_score(NER_TRUE, NER_PRED, **kw)
    assert got["f1"] == sq.f1_score(NER_TRUE, NER_PRED, **kw)
    report = sq.classification_report(NER_TRUE, NER_PRED, output_dict=True, zero_division=0, **kw)
    assert set(got["per_type"]) == {"LOC", "MISC", "ORG", "PER"}
    for t, v in got["per_type"].items():
        assert (v["precision"], v["recall"], v["f1"], v["support"]) == (
            report[t]["precision"],
            report[t]["recall"],
            report[t]["f1-score"],
            report[t]["support"],
        )
    assert got["mode"] == ("strict-IOB2" if strict else "default")


def test_entity_f1_default_and_strict_disagree_on_stray_inside_tag():
    y_true, y_pred = [["B-X", "I-X", "O"]], [["I-X", "I-X", "O"]]
    assert sq.f1_score(y_true, y_pred) == 1.0
    assert sq.f1_score(y_true, y_pred, mode="strict", scheme=IOB2) == 0.0
    assert get_metric("entity-f1").compute(y_pred, y_true)["f1"] == 1.0
    assert get_metric("entity-f1-strict").compute(y_pred, y_true)["f1"] == 0.0
    # the fixture set differs too: the I-ORG entity counts only in default mode
    assert ner.compute(NER_PRED, NER_TRUE)["per_type"]["ORG"]["recall"] == 0.5
    assert ner.compute(NER_PRED, NER_TRUE, strict=True)["per_type"]["ORG"]["recall"] == 0.0


def test_entity_f1_length_mismatch_names_the_sentence():
    with pytest.raises(ValueError, match="sentence 1 has 2 predicted tags but 3 gold"):
        ner.compute([["O"], ["O", "O"]], [["O"], ["O", "O", "O"]])


# ----------------------------------------------------------------------------------------------- SQuAD
# The official evaluate-v1.1.py functions, verbatim (https://rajpurkar.github.io/SQuAD-explorer/).
# fmt: off


def normalize_answer(s):
    """Lower text and remove punctuation, articles and extra whitespace."""
    def remove_articles(text):
        return re.sub(r'\b(a|an|the)\b', ' ', text)

    def white_space_fix(text):
        return ' '.join(text.split())

    def remove_punc(text):
        exclude = set(string.punctuation)
        return ''.join(ch for ch in text if ch not in exclude)

    def lower(text):
        return text.lower()

    return white_space_fix(remove_articles(remove_punc(lower(s))))


def f1_score(prediction, ground_truth):
    prediction_tokens = normalize_answer(prediction).split()
    ground_truth_tokens = normalize_answer(ground_truth).split()
    common = Counter(prediction_tokens) & Counter(ground_truth_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0
    precision = 1.0 * num_same / len(prediction_tokens)
    recall = 1.0 * num_same / len(ground_truth_tokens)
    f1 = (2 * precision * recall) / (precision + recall)
    return f1


def exact_match_score(prediction, ground_truth):
    return (normalize_answer(prediction) == normalize_answer(ground_truth))


def metric_max_over_ground_truths(metric_fn, prediction, ground_truths):
    scores_for_ground_truths = []
    for ground_truth in ground_truths:
        score = metric_fn(prediction, ground_truth)
        scores_for_ground_truths.append(score)
    return max(scores_for_ground_truths)


def evaluate(dataset, predictions):
    f1 = exact_match = total = 0
    for article in dataset:
        for paragraph in article['paragraphs']:
            for qa in paragraph['qas']:
                total += 1
                if qa['id'] not in predictions:
                    message = 'Unanswered question ' + qa['id'] + \
                              ' will receive score 0.'
                    print(message, file=sys.stderr)
                    continue
                ground_truths = list(map(lambda x: x['text'], qa['answers']))
                prediction = predictions[qa['id']]
                exact_match += metric_max_over_ground_truths(
                    exact_match_score, prediction, ground_truths)
                f1 += metric_max_over_ground_truths(
                    f1_score, prediction, ground_truths)

    exact_match = 100.0 * exact_match / total
    f1 = 100.0 * f1 / total

    return {'exact_match': exact_match, 'f1': f1}
# fmt: on

SQUAD_CASES = [
    ("Denver Broncos", ["Denver Broncos", "The Denver Broncos", "Broncos"]),
    ("the Denver Broncos.", ["Denver Broncos"]),
    ("Carolina Panthers", ["Denver Broncos"]),
    ("Santa Clara, California", ["Levi's Stadium", "Santa Clara, California"]),
    ("Levis Stadium in Santa Clara", ["Levi's Stadium"]),
    ("an apple a day", ["apple day"]),
    ("Theater of the absurd", ["theater absurd"]),  # "the" inside a word stays
    ("“quoted” answer", ['"quoted" answer']),  # curly quotes are not string.punctuation
    ("", ["something"]),
    ("", [""]),  # v1.1: F1 0 even when both are empty
    ("The", ["a"]),
    ("Über größe", ["über GRÖSSE"]),
    ("1,000 yards", ["1000 yards", "one thousand yards"]),
    ("the the the cat", ["cat cat"]),
]


def test_squad_equals_official_script():
    dataset = [{"paragraphs": [{"qas": [
        {"id": str(i), "answers": [{"text": g} for g in golds]} for i, (_, golds) in enumerate(SQUAD_CASES)
    ]}]}]  # fmt: skip
    official = evaluate(dataset, {str(i): pred for i, (pred, _) in enumerate(SQUAD_CASES)})
    got = squad.compute([p for p, _ in SQUAD_CASES], [g for _, g in SQUAD_CASES])
    assert got == official  # exactly, same float operations in the same order
    assert 0 < got["exact_match"] < got["f1"] < 100
    for pred, golds in SQUAD_CASES:
        for text in [pred, *golds]:
            assert squad.normalize_answer(text) == normalize_answer(text)
        for g in golds:
            assert squad.token_f1(pred, g) == f1_score(pred, g)


def test_squad_single_reference_string_and_registry_aliases():
    got = get_metric("exact-match").compute(["The Broncos!"], ["broncos"])
    assert (
        got
        == get_metric("squad").compute(["The Broncos!"], [["broncos"]])
        == {"exact_match": 100.0, "f1": 100.0}
    )


# ----------------------------------------------------------------------------------------------- ROUGE

ROUGE_PREDS = [
    "the cat was found under the bed",
    "Running dogs chased the cars quickly.",
    "a completely unrelated sentence",
    "The quick brown fox jumps over the lazy dog",
]
ROUGE_REFS = [
    "the cat was under the bed",
    "The dog runs after cars",
    "nothing in common here",
    "A quick brown dog jumps over the lazy fox",
]


def _rouge_reference(preds, refs, use_stemmer=True):
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=use_stemmer)
    scores = [scorer.score(r, p) for p, r in zip(preds, refs, strict=True)]
    return {t: sum(s[t].fmeasure for s in scores) / len(scores) for t in ("rouge1", "rouge2", "rougeL")}


@pytest.mark.parametrize("use_stemmer", [True, False])
def test_rouge_equals_rouge_score(use_stemmer):
    got = rouge.compute(ROUGE_PREDS, ROUGE_REFS, use_stemmer=use_stemmer)
    want = _rouge_reference(ROUGE_PREDS, ROUGE_REFS, use_stemmer)
    assert got["tokenizer"] == "default"
    for t in want:
        assert got[t] == pytest.approx(want[t], abs=1e-12)
    assert 0 < got["rouge2"] < got["rouge1"] < 1


def test_rouge_stemmer_on_by_default():
    assert rouge.compute(["dogs running"], ["dog runs"])["rouge1"] == 1.0
    assert rouge.compute(["dogs running"], ["dog runs"], use_stemmer=False)["rouge1"] == 0.0


def test_rouge_multi_reference_takes_best():
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    refs = [["a dog sat", "the cat sat on the mat"], ["nothing"]]
    preds = ["the cat sat on a mat", "nothing at all"]
    got = rouge.compute(preds, refs)
    for t in ("rouge1", "rouge2", "rougeL"):
        want = sum(scorer.score_multi(r, p)[t].fmeasure for p, r in zip(preds, refs, strict=True)) / 2
        assert got[t] == pytest.approx(want, abs=1e-12)


def test_cjk_char_tokenizer_is_default_on_latin_text():
    default = rouge.compute(ROUGE_PREDS, ROUGE_REFS, tokenizer="default")
    cjk = rouge.compute(ROUGE_PREDS, ROUGE_REFS, tokenizer="cjk-char")
    assert {k: v for k, v in cjk.items() if k != "tokenizer"} == {
        k: v for k, v in default.items() if k != "tokenizer"
    }
    tok = rouge.CJKCharTokenizer(use_stemmer=True)
    default_tok = rouge_scorer.RougeScorer(["rouge1"], use_stemmer=True)._tokenizer
    for text in [*ROUGE_PREDS, *ROUGE_REFS, "Café-au-lait, naïve résumés! 3.14 x2"]:
        assert tok.tokenize(text) == default_tok.tokenize(text)


def test_rouge_cjk_scores_zero_with_default_tokenizer_only():
    pred, ref = ["猫在垫子上"], ["猫坐在垫子上"]
    assert rouge_scorer.RougeScorer(["rouge1"]).score(ref[0], pred[0])["rouge1"].fmeasure == 0.0
    default = rouge.compute(pred, ref, tokenizer="default")
    assert default["rouge1"] == default["rougeL"] == 0.0
    auto = rouge.compute(pred, ref)
    assert auto["tokenizer"] == "cjk-char"
    # unigrams: all 5 predicted characters are among the 6 reference ones: P=1, R=5/6, F=10/11;
    # bigrams: 3 shared (在垫 垫子 子上) of 4 predicted and 5 reference: P=3/4, R=3/5, F=2/3
    assert auto["rouge1"] == pytest.approx(10 / 11)
    assert auto["rouge2"] == pytest.approx(2 / 3)
    assert auto["rougeL"] == pytest.approx(10 / 11)
    assert rouge.CJKCharTokenizer().tokenize("GPT模型, two Models") == ["gpt", "模", "型", "two", "models"]


def test_rouge_unknown_tokenizer():
    with pytest.raises(ValueError, match="unknown ROUGE tokenizer 'jieba'"):
        rouge.compute(["a"], ["a"], tokenizer="jieba")


# ------------------------------------------------------------------------------------------ BLEU / chrF

HYPS = [
    "The cat sat on the mat.",
    "There is a dog in the garden, it barks.",
    "He read the book because he was interested in world history.",
]
BLEU_REFS = [
    "The cat is sitting on the mat.",
    "A dog is in the garden and it is barking.",
    "He was interested in world history because he read the book.",
]
VERSION = sacrebleu.__version__


def test_bleu_equals_sacrebleu_with_signature():
    got = bleu_mod.compute_bleu(HYPS, BLEU_REFS)
    assert got["bleu"] == sacrebleu.corpus_bleu(HYPS, [BLEU_REFS]).score
    assert 0 < got["bleu"] < 100
    assert got["signature"] == f"nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:{VERSION}"
    lc = get_metric("bleu").compute([h.upper() for h in HYPS], BLEU_REFS, lowercase=True)
    assert (
        lc["bleu"] == bleu_mod.compute_bleu([h.lower() for h in HYPS], [r.lower() for r in BLEU_REFS])["bleu"]
    )
    assert lc["bleu"] != got["bleu"]
    assert lc["signature"] == f"nrefs:1|case:lc|eff:no|tok:13a|smooth:exp|version:{VERSION}"


def test_chrf_equals_sacrebleu_with_signature():
    got = get_metric("chrf").compute(HYPS, BLEU_REFS)
    assert got["chrf"] == sacrebleu.corpus_chrf(HYPS, [BLEU_REFS]).score
    assert got["signature"] == f"nrefs:1|case:mixed|eff:yes|nc:6|nw:0|space:no|version:{VERSION}"
    plus = bleu_mod.compute_chrf(HYPS, BLEU_REFS, word_order=2)
    assert plus["chrf"] == sacrebleu.corpus_chrf(HYPS, [BLEU_REFS], word_order=2).score != got["chrf"]
    assert "nw:2" in plus["signature"]


def test_bleu_variable_number_of_references():
    refs = [[BLEU_REFS[0], "A cat sat on the mat."], [BLEU_REFS[1]], [BLEU_REFS[2], "He read it."]]
    streams = [[r[0] for r in refs], ["A cat sat on the mat.", None, "He read it."]]
    got = bleu_mod.compute_bleu(HYPS, refs)
    assert got["bleu"] == sacrebleu.corpus_bleu(HYPS, streams).score
    assert got["bleu"] > bleu_mod.compute_bleu(HYPS, BLEU_REFS)["bleu"]
    assert got["signature"].startswith("nrefs:var|")


def test_generation_metrics_refuse_unpaired_inputs():
    for name in ("bleu", "chrf", "rouge", "squad", "accuracy"):
        with pytest.raises(ValueError, match="2 predictions but 1 references"):
            get_metric(name).compute(["a", "b"], ["a"])


# ------------------------------------------------------------------------------------------ perplexity


@pytest.fixture(scope="module")
def random_lm() -> LlamaForCausalLM:
    torch.manual_seed(0)
    return LlamaForCausalLM(tiny_llama_config(vocab_size=100, initializer_range=0.1))


def _lm_samples() -> list[dict[str, list[int]]]:
    """Different lengths and trained spans: prompt masked, a single trained token, a fully trained one,
    one with nothing trained (skipped), and a multi-turn one with a masked gap."""
    g = torch.Generator().manual_seed(1)
    out = []
    for prompt, answer in [(5, 9), (0, 7), (3, 1), (12, 14), (6, 0), (2, 11), (1, 3)]:
        ids = torch.randint(1, 100, (prompt + answer,), generator=g).tolist()
        out.append({"input_ids": ids, "labels": [-100] * prompt + ids[prompt:]})
    ids = torch.randint(1, 100, (15,), generator=g).tolist()
    out.append({"input_ids": ids, "labels": [-100] * 3 + ids[3:7] + [-100] * 4 + ids[11:]})
    return out


def _reference_sum_and_count(model, sample) -> tuple[float, int]:
    """One sample alone, no padding: HF's own loss (mean over trained, shifted tokens) times their count."""
    ids, labels = torch.tensor([sample["input_ids"]]), torch.tensor([sample["labels"]])
    n = int((labels[0, 1:] != -100).sum())
    if n == 0:
        return 0.0, 0
    with torch.no_grad():
        loss = model(input_ids=ids, labels=labels).loss.item()
    return loss * n, n


@pytest.mark.parametrize("batch_size", [1, 3, 8])
def test_perplexity_is_token_weighted_batched_loss(random_lm, batch_size):
    samples = _lm_samples()
    ref = [_reference_sum_and_count(random_lm, s) for s in samples]
    total, tokens = sum(s for s, _ in ref), sum(n for _, n in ref)
    got = perplexity.perplexity(random_lm, samples, batch_size=batch_size)
    assert got["tokens"] == tokens == 9 + 6 + 1 + 14 + 0 + 11 + 3 + 8
    assert got["loss"] == pytest.approx(total / tokens, abs=1e-5)
    assert got["perplexity"] == pytest.approx(math.exp(total / tokens), rel=1e-5)
    sample_mean = sum(s / n for s, n in ref if n) / sum(1 for _, n in ref if n)
    assert abs(got["loss"] - sample_mean) > 1e-3  # token-weighted, not a mean of sample means
    assert 3 < got["loss"] < 6  # about ln(100) for a random model


def test_perplexity_registry_form_restores_mode(random_lm):
    random_lm.train()
    got = get_metric("perplexity").compute(_lm_samples(), None, model=random_lm, batch_size=4)
    assert random_lm.training
    random_lm.eval()
    assert got == pytest.approx(perplexity.perplexity(random_lm, _lm_samples(), batch_size=4), abs=1e-6)


def test_perplexity_errors(random_lm):
    with pytest.raises(ValueError, match="no trained tokens"):
        perplexity.perplexity(random_lm, [{"input_ids": [1, 2], "labels": [-100, -100]}])
    with pytest.raises(ValueError, match="sample 0: 2 input_ids but 1 labels"):
        perplexity.perplexity(random_lm, [{"input_ids": [1, 2], "labels": [1]}])
    with pytest.raises(ValueError, match="references=None"):
        perplexity.compute(_lm_samples(), ["x"], model=random_lm)


# ------------------------------------------------------------------ entity-f1-text (no reference package)
def test_entity_f1_text_reads_type_span_lines():
    m = get_metric("entity-f1-text")
    refs = ["person: Ada\nlocation: Paris", "none", "person: Alan"]
    preds = ["Person: ada\nlocation: Rome", "none", "person: Alan\norganisation ACME"]
    out = m.compute(preds, refs)
    # predicted {ada, rome, alan} vs gold {ada, paris, alan}: TP 2 of 3 predicted, 2 of 3 gold
    assert out["precision"] == pytest.approx(2 / 3) and out["recall"] == pytest.approx(2 / 3)
    assert out["malformed"] == 1 and out["per_type"]["location"]["f1"] == 0.0
    assert m.compute(["none", "None."], ["none", "none"])["f1"] == 1.0
    assert m.compute(["person: Ada"], ["none"])["f1"] == 0.0
