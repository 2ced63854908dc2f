"""The relation-classification head: entity start markers found by offsets, the label at both of them,
the prediction from their summed logits, scored with SemEval-2010 Task 8's macro-F1; trained and exported
like any token-classification model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from instructkit.cli import app
from instructkit.records import Record
from instructkit.templates import IGNORE_INDEX
from instructkit.train.tasks import TASKS, TaskDataError
from instructkit.train.tasks.relation_cls import marked_text_and_label, marker_positions, predict

TEXTS = [
    ("The <e1>lid</e1> of the <e2>jar</e2> broke.", "Component-Whole(e1,e2)"),
    ("The <e1>jar</e1> had a broken <e2>lid</e2>.", "Component-Whole(e2,e1)"),
    ("<e1>Smoke</e1> came from the <e2>fire</e2>.", "Cause-Effect(e2,e1)"),
    ("A <e1>cat</e1> sat near a <e2>dog</e2>, quietly.", "Other"),
]


def tokenizer(tiny_bert: str):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_bert)


def test_the_start_markers_are_found_by_offsets(tiny_bert: str) -> None:
    tok = tokenizer(tiny_bert)
    for text, _ in TEXTS:
        enc = tok(text, return_offsets_mapping=True)
        i1, i2 = marker_positions(text, enc["offset_mapping"])
        pieces = tok.convert_ids_to_tokens(enc["input_ids"])
        assert pieces[i1] == "<" and pieces[i2] == "<" and i1 != i2
        s1, s2 = enc["offset_mapping"][i1][0], enc["offset_mapping"][i2][0]
        assert text[s1 : s1 + 4] == "<e1>" and text[s2 : s2 + 4] == "<e2>"
    # a byte-level BPE token holds the space before the marker: its span still covers the '<'
    assert marker_positions(
        "a <e1>b</e1> <e2>c</e2>", [(0, 1), (1, 3), (3, 6), (6, 7), (7, 12), (12, 14)]
    ) == (1, 5)
    assert marker_positions("a <e1>b</e1> <e2>c</e2>", [(0, 1), (1, 3)]) is None  # cut off by truncation


def test_features_label_both_markers_and_count_truncated_records(tiny_bert: str) -> None:
    task = TASKS["relation-classification"]()
    records = [Record(text=t, label=lab) for t, lab in TEXTS]
    labels = task.labels(records)
    assert labels.names == sorted({lab for _, lab in TEXTS})
    feats, dropped = task.features(records, tokenizer(tiny_bert), labels, 64)
    for f, (_, lab) in zip(feats, TEXTS, strict=True):
        marked = [x for x in f["labels"] if x != IGNORE_INDEX]
        assert marked == [labels.names.index(lab)] * 2
    long = Record(text="word " * 80 + "<e1>a</e1> <e2>b</e2>", label="Other")
    feats, dropped = task.features([*records, long], tokenizer(tiny_bert), labels, 32)
    assert len(feats) == 4 and dropped == {"marker_truncated": 1}


def test_a_chat_record_takes_its_label_from_meta_or_the_reply() -> None:
    chat = Record.chat(
        [
            {"role": "user", "content": TEXTS[0][0]},
            {"role": "assistant", "content": " Component-Whole(e1,e2) "},
        ]
    )
    assert marked_text_and_label(chat, 0) == (TEXTS[0][0], "Component-Whole(e1,e2)")
    chat.meta["label"] = "Other"
    assert marked_text_and_label(chat, 0)[1] == "Other"
    with pytest.raises(TaskDataError, match=r"record 3 .*no <e2> marker"):
        marked_text_and_label(Record(text="<e1>a</e1> b", label="Other"), 3)


def test_the_prediction_sums_the_two_markers_logits() -> None:
    names = ["A", "B", "C"]
    logits = np.zeros((5, 3))
    logits[1] = [2.0, 0.0, 1.5]  # alone, e1 says A
    logits[3] = [-1.0, 0.0, 1.0]  # together: A 1.0, B 0.0, C 2.5 -> C
    logits[4] = [9.0, 9.0, 9.0]  # not a marker: never read
    assert predict(logits, (1, 3), names) == "C"
    assert predict(logits, None, names) is None


@pytest.mark.slow
def test_train_eval_and_export_a_relation_head(tiny_bert: str, tmp_path: Path) -> None:
    rows = [{"text": t, "label": lab} for t, lab in TEXTS] * 6
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = {
        "name": "rel",
        "output_dir": str(tmp_path / "runs"),
        "model": tiny_bert,
        "task": "relation-classification",
        "method": {"name": "full"},
        "data": {"train": str(tmp_path / "train.jsonl"), "val_share": 0.2, "max_length": 32},
        "optim": {"lr": 5e-3, "batch_size": 4, "epochs": 3},
        "eval": {"metric": "f1"},
        "bf16": "false",
    }
    (tmp_path / "rel.yaml").write_text(yaml.safe_dump(cfg))
    runner = CliRunner()
    res = runner.invoke(app, ["train", str(tmp_path / "rel.yaml")])
    assert res.exit_code == 0, res.output
    run = tmp_path / "runs" / "rel"
    info = json.loads((run / "model" / "instructkit.json").read_text())
    assert info["task"] == "relation-classification" and info["labels"]["names"] == sorted(
        {lab for _, lab in TEXTS}
    )
    res = runner.invoke(
        app, ["eval", "-m", str(run), "-d", str(tmp_path / "train.jsonl"), "-o", str(tmp_path / "ev")]
    )
    assert res.exit_code == 0, res.output
    body = json.loads((tmp_path / "ev" / "eval" / "results.json").read_text())
    m = body["metrics"]
    assert {"semeval_macro_f1", "accuracy"} <= set(m) and m["marker_truncated"] == 0
    preds = [
        json.loads(x)
        for x in (tmp_path / "ev" / "eval" / "results.predictions.jsonl").read_text().splitlines()
    ]
    right = sum(p["prediction"] == p["reference"] for p in preds)
    assert m["accuracy"] == pytest.approx(right / len(preds))
    # the trained folder is a plain token-classification model: export reloads it with transformers alone
    res = runner.invoke(app, ["export", str(run), "-o", str(tmp_path / "exported")])
    assert res.exit_code == 0, res.output
    from transformers import AutoModelForTokenClassification

    model = AutoModelForTokenClassification.from_pretrained(tmp_path / "exported")
    assert model.config.num_labels == 4
