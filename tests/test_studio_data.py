"""The studio's Data API: the card's accounting, rejects by step and reason (with the record each duplicated
or the benchmark item it leaked from), duplicate clusters, histograms that add up to the splits, and the
loss mask equal to the project's own masking; paths and models outside ``--runs`` refused."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from instructkit.studio.app import build_app
from instructkit.studio.config import StudioConfig

FIXTURE = Path(__file__).parent / "fixtures" / "studio-data" / "records.jsonl"
DEMO = Path(__file__).parent.parent / "examples" / "data" / "demo.jsonl"
RICH_STEPS = [
    "normalize",
    "empty",
    {"step": "length", "min": 4},
    "refusal",
    {"step": "exact_dedup", "key": "prompt"},
    {"step": "near_dedup", "key": "prompt", "threshold": 0.6},
    {"step": "decontaminate", "benchmarks": ["humaneval"]},
]


def client(root: Path) -> TestClient:
    return TestClient(build_app(StudioConfig(runs=str(root))))


def card_of(root: Path, rel: str) -> dict:
    return json.loads((root / rel / "card.json").read_text())


def rejects_of(root: Path, rel: str) -> list[dict]:
    return [json.loads(line) for line in (root / rel / "rejects.jsonl").read_text().splitlines() if line]


@pytest.fixture(scope="module")
def rich(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A runs folder with one curated folder ``rich`` (the demo data plus tests/fixtures/studio-data): rejects
    of five reasons, an exact duplicate, a near-duplicate cluster of four and a HumanEval leak."""
    from instructkit.data.curate_config import CurateConfig
    from instructkit.data.pipeline import curate

    runs = tmp_path_factory.mktemp("studio-data") / "runs"
    cfg = CurateConfig.from_dict({"steps": RICH_STEPS, "split": {"val": 0.1, "test": 0.2, "seed": 0}})
    curate([DEMO, FIXTURE], runs / "rich", cfg)
    return runs


def test_the_listing_has_every_data_folder_and_recipe_data(studio_root: Path) -> None:
    with client(studio_root) as c:
        rows = {f["path"]: f for f in c.get("/api/data").json()["folders"]}
    assert set(rows) == {"a/data", "b/data", "curated"}
    assert rows["a/data"]["run"] == "a" and rows["curated"]["run"] is None
    card = card_of(studio_root, "curated")
    assert (rows["curated"]["in"], rows["curated"]["kept"], rows["curated"]["rejected"]) == (33, 30, 3)
    assert rows["curated"]["splits"] == card["splits"]


def test_accounting_is_the_cards(studio_root: Path) -> None:
    card = card_of(studio_root, "curated")
    with client(studio_root) as c:
        acc = c.get("/api/data/card", params={"path": "curated"}).json()
    assert (acc["in"], acc["kept"], acc["rejected"]) == (
        card["accounting"]["in"],
        card["accounting"]["kept"],
        card["accounting"]["rejected"],
    )
    assert acc["in"] == acc["kept"] + acc["rejected"] and acc["balanced"] is True
    assert [(s["step"], s["in"], s["kept"], s["dropped"]) for s in acc["steps"]] == [
        (s["step"], s["in"], s["kept"], s["dropped"]) for s in card["steps"]
    ]
    assert (
        acc["rejected_by_reason"] == card["rejected_by_reason"] == {"empty_content": 2, "exact_duplicate": 1}
    )
    assert acc["splits"] == card["splits"]


def test_a_card_that_does_not_balance_says_so(studio_root: Path, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    shutil.copytree(studio_root / "curated", runs / "bad")
    card = card_of(runs, "bad")
    card["accounting"]["kept"] += 1  # the card claims balanced; the studio recomputes
    (runs / "bad" / "card.json").write_text(json.dumps(card))
    with client(runs) as c:
        acc = c.get("/api/data/card", params={"path": "bad"}).json()
    assert acc["balanced"] is False and acc["card_says_balanced"] is True


def test_rejects_per_step_and_reason_are_the_cards_counts_and_the_files_lines(studio_root: Path) -> None:
    card = card_of(studio_root, "curated")
    lines = rejects_of(studio_root, "curated")
    pairs = [(st["step"], reason, n) for st in card["steps"] for reason, n in st["dropped"].items()]
    assert pairs == [("read", "empty_content", 2), ("exact_dedup", "exact_duplicate", 1)]
    with client(studio_root) as c:
        for step, reason, n in pairs:
            for params in ({"step": step, "reason": reason}, {"reason": reason}):
                got = c.get("/api/data/rejects", params={"path": "curated", **params}).json()
                assert got["total"] == got["expected"] == n == card["rejected_by_reason"][reason]
                want = [r for r in lines if r["reason"] == reason]
                assert [i["line"] for i in got["items"]] == [lines.index(r) + 1 for r in want]
                assert [(i["step"], i["detail"], i["id"]) for i in got["items"]] == [
                    (r["step"], r["detail"], r["id"]) for r in want
                ]
        everything = c.get("/api/data/rejects", params={"path": "curated"}).json()
        assert everything["total"] == card["accounting"]["rejected"] == len(lines)
    # a read reject shows the raw input the reader refused
    raw = [i["view"]["raw"] for i in everything["items"] if i["reason"] == "empty_content"]
    assert raw == [r["record"] for r in lines if r["reason"] == "empty_content"]


def test_a_duplicate_shows_the_kept_record_it_duplicated(studio_root: Path) -> None:
    with client(studio_root) as c:
        (item,) = c.get("/api/data/rejects", params={"path": "curated", "reason": "exact_duplicate"}).json()[
            "items"
        ]
    m = item["match"]
    assert m["kind"] == "duplicate" and m["where"] == "kept"
    kept = (studio_root / "curated" / f"{m['split']}.jsonl").read_text().splitlines()[m["index"]]
    assert json.loads(kept)["messages"] == m["view"]["messages"] == item["view"]["messages"]
    assert item["view"]["messages"][0]["content"] == "What is 0 plus 3?"  # the fixture's one duplicate


def test_rich_folder_rejects_clusters_and_leaks(rich: Path) -> None:
    card = card_of(rich, "rich")
    lines = rejects_of(rich, "rich")
    assert card["rejected_by_reason"] == dict(sorted(Counter(r["reason"] for r in lines).items()))
    with client(rich) as c:
        for reason, n in card["rejected_by_reason"].items():
            got = c.get("/api/data/rejects", params={"path": "rich", "reason": reason}).json()
            assert got["total"] == n and [i["id"] for i in got["items"]] == [
                r["id"] for r in lines if r["reason"] == reason
            ]
        (leak,) = c.get("/api/data/rejects", params={"path": "rich", "reason": "contaminated"}).json()[
            "items"
        ]
        near = c.get("/api/data/rejects", params={"path": "rich", "reason": "near_duplicate"}).json()["items"]
        cl = c.get("/api/data/clusters", params={"path": "rich"}).json()
    from instructkit.data.decontam.index import load_humaneval

    prompt = next(it.texts[0] for it in load_humaneval() if it.item_id == "HumanEval/2")
    assert (leak["match"]["benchmark"], leak["match"]["item"], leak["match"]["text"]) == (
        "humaneval",
        "HumanEval/2",
        prompt,
    )
    assert {i["match"]["id"] for i in near} == {"extra-001"} and len(near) == 3
    assert {i["match"]["where"] for i in near} == {"kept"}
    by_id = {item["id"]: item for item in cl["items"]}
    assert cl["total"] == 2 and set(by_id) == {"extra-001", "extra-008"}
    sky = by_id["extra-001"]
    assert sky["size"] == 4 and [m["id"] for m in sky["members"]] == ["extra-002", "extra-003", "extra-004"]
    assert sky["kept"]["view"]["messages"][0]["content"].startswith("Explain in simple terms why the sky")
    assert [m["id"] for m in by_id["extra-008"]["members"]] == ["extra-009"]


def test_generated_set_counts_only_the_accounted_rejects_without_a_step(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    (runs / "gen").mkdir(parents=True)
    rows = [
        {"step": "parse", "reason": "truncated", "detail": "x", "counted": True, "text": "a"},
        {"step": "instance_parse", "reason": "truncated", "detail": "x", "counted": False, "text": "b"},
        {"step": "rouge_novelty", "reason": "too_similar", "detail": "0.812 Name a colour.", "counted": True,
         "text": "Name a colour please."},
    ]  # fmt: skip
    (runs / "gen" / "rejects.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (runs / "gen" / "records.jsonl").write_text(
        json.dumps(
            {
                "messages": [
                    {"role": "user", "content": "Hi there you"},
                    {"role": "assistant", "content": "Hello"},
                ]
            }
        )
        + "\n"
    )
    card = {
        "generator": "self-instruct",
        "summary": {"unit": "instruction", "records": 1},
        "steps": [
            {"step": "parse", "in": 3, "kept": 2, "dropped": {"truncated": 1}},
            {"step": "rouge_novelty", "in": 2, "kept": 1, "dropped": {"too_similar": 1}},
            {"step": "instance_parse", "in": 1, "kept": 0, "dropped": {"truncated": 1}},
        ],
        "accounting": {"in": 3, "kept": 1, "rejected": 2, "balanced": True},
        "rejected_by_reason": {"too_similar": 1, "truncated": 1},
        "files": {"records": "records.jsonl", "rejects": "rejects.jsonl"},
    }
    (runs / "gen" / "card.json").write_text(json.dumps(card))
    with client(runs) as c:
        assert c.get("/api/data").json()["folders"][0]["kind"] == "generate"
        plain = c.get("/api/data/rejects", params={"path": "gen", "reason": "truncated"}).json()
        inst = c.get("/api/data/rejects", params={"path": "gen", "step": "instance_parse"}).json()
        sim = c.get("/api/data/rejects", params={"path": "gen", "reason": "too_similar"}).json()
        hist = c.get("/api/data/histograms", params={"path": "gen"}).json()
    assert plain["total"] == plain["expected"] == 1 and plain["items"][0]["view"]["text"] == "a"
    assert inst["total"] == inst["expected"] == 1 and inst["items"][0]["counted"] is False
    assert sim["items"][0]["match"] == {"kind": "similar", "score": 0.812, "text": "Name a colour."}
    assert hist["splits"]["records"]["words"] == [{"lo": 4, "hi": 4, "count": 1}]


def test_histograms_add_up_to_the_splits(studio_root: Path, rich: Path) -> None:
    for root, rel in ((studio_root, "curated"), (rich, "rich")):
        card = card_of(root, rel)
        with client(root) as c:
            splits = c.get("/api/data/histograms", params={"path": rel}).json()["splits"]
        assert set(splits) == set(card["splits"])
        for name, h in splits.items():
            assert h["records"] == card["splits"][name]
            assert sum(b["count"] for b in h["words"]) == card["splits"][name]
            assert sum(b["count"] for b in h["turns"]) == card["splits"][name]  # every record is a chat
            if h["words"]:
                assert max(b["hi"] for b in h["words"]) >= card["stats"][name]["words_per_record"]["max"]
    multi = sum(b["count"] for h in splits.values() for b in h["turns"] if b["lo"] >= 2)
    assert multi == sum(card["stats"][s]["multi_turn"] for s in card["splits"]) > 0


def test_the_mask_equals_the_projects_assistant_only_labels(studio_root: Path) -> None:
    from instructkit.formats import read_records
    from instructkit.models import load_tokenizer
    from instructkit.templates import IGNORE_INDEX, render_with_labels

    record = read_records(studio_root / "curated" / "train.jsonl")[3]
    tok = load_tokenizer(str(studio_root / "inputs" / "model"))
    want = render_with_labels(tok, record)
    with client(studio_root) as c:
        got = c.get(
            "/api/data/mask",
            params={"path": "curated", "split": "train", "index": 3, "model": "inputs/model"},
        ).json()
        run = c.get(
            "/api/data/mask", params={"path": "curated", "split": "train", "index": 3, "model": "a"}
        ).json()
    assert got["n_trained"] == want.n_trained == sum(1 for t in got["tokens"] if t["trained"]) > 0
    assert got["n_tokens"] == len(want.input_ids) == len(got["tokens"])
    assert [t["trained"] for t in got["tokens"]] == [x != IGNORE_INDEX for x in want.labels]
    trained = "".join(t["text"] for t in got["tokens"] if t["trained"])
    assert trained.startswith(record.messages[-1].content)  # the reply (and the turn's close) is learned
    assert "".join(t["text"] for t in got["tokens"]) == want.text
    # a trained run masks with its own saved tokenizer and template, at its max_length
    assert run["max_length"] == 64 and run["n_trained"] == want.n_trained


@pytest.mark.parametrize(
    ("params", "status", "field"),
    [
        ({"path": "../x"}, 403, "path"),
        ({"path": "/etc"}, 403, "path"),
        ({"path": "inputs"}, 404, "path"),
        ({"model": "../inputs/model"}, 403, "model"),
        ({"model": "/tmp"}, 403, "model"),
        ({"model": "a/../../x"}, 403, "model"),
        ({"model": "HuggingFaceTB/SmolLM2-135M"}, 400, "model"),
        ({"model": "inputs"}, 400, "model"),
        ({"split": "nope"}, 400, "split"),
        ({"index": 99}, 400, "index"),
    ],
)
def test_mask_refuses_paths_and_models_outside_the_runs_folder(
    studio_root: Path, params: dict, status: int, field: str
) -> None:
    query = {"path": "curated", "split": "train", "index": 0, "model": "inputs/model", **params}
    with client(studio_root) as c:
        r = c.get("/api/data/mask", params=query)
    assert r.status_code == status and r.json()["error"]["field"] == field, r.text


@pytest.mark.parametrize("route", ["card", "rejects", "clusters", "histograms"])
def test_data_routes_refuse_traversal(studio_root: Path, route: str) -> None:
    with client(studio_root) as c:
        for path in ("../x", "a/../../etc", "/etc/passwd"):
            r = c.get(f"/api/data/{route}", params={"path": path})
            assert r.status_code == 403 and r.json()["error"]["field"] == "path", r.text


@pytest.mark.parametrize(("params", "field"), [({"limit": 201}, "limit"), ({"limit": 0}, "limit"),
                                               ({"offset": -1}, "offset"), ({"step": "nope"}, "step")])  # fmt: skip
def test_bad_pages_and_steps_are_refused(studio_root: Path, params: dict, field: str) -> None:
    with client(studio_root) as c:
        r = c.get("/api/data/rejects", params={"path": "curated", **params})
        ok = c.get("/api/data/rejects", params={"path": "curated", "limit": 200, "offset": 2}).json()
    assert (
        r.status_code == 400 and r.json()["error"]["field"] == field and field in r.json()["error"]["message"]
    )
    assert ok["total"] == 3 and [i["line"] for i in ok["items"]] == [3]
