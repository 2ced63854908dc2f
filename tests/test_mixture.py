"""Mixtures: examples-proportional shares with a cap, exact on synthetic sources with a fixed seed; the
card's counts balance; the config's errors name the key; `instructkit data mixture` through the CLI and
`instructkit config show mixture | template`."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from instructkit.cli import app
from instructkit.config import ConfigError, field_docs, load
from instructkit.tasks.mixture import (
    MixtureConfig,
    MixtureSource,
    allocate,
    build_mixture,
    load_mixture,
)
from instructkit.tasks.templates import TemplateSpec

ROOT = Path(__file__).parent.parent
EDIBLE = ROOT / "examples/data/natural-instructions/task1149_item_check_edible.json"
ENV = {"COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb"}


def invoke(*args: str):
    return CliRunner().invoke(app, list(args), env=ENV)


def _labeled(tmp_path: Path, name: str, n: int, bad: int = 0) -> str:
    """``n`` classification rows (labels a/b alternating), then ``bad`` rows without a label."""
    rows = [{"text": f"{name} text {i}", "label": "ab"[i % 2]} for i in range(n)]
    rows += [{"text": f"{name} unlabeled {i}"} for i in range(bad)]
    path = tmp_path / f"{name}.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def _sni(tmp_path: Path, name: str, n: int) -> str:
    doc = {
        "Definition": [f"Copy the input ({name})"],
        "Positive Examples": [{"input": "x", "output": "x"}],
        "Instances": [{"id": f"{name}-{i}", "input": f"in {i}", "output": [f"out {i}"]} for i in range(n)],
    }
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(doc))
    return str(path)


def _config(**kw) -> MixtureConfig:
    return load(MixtureConfig, kw)


@pytest.mark.parametrize(
    ("limits", "weights", "total", "expect"),
    [
        ([10, 10, 10], [1, 1, 1], 10, [4, 3, 3]),  # 3.33 each; the one left over goes to the first
        ([100, 5], [1, 1], 50, [48, 2]),  # 47.6 and 2.38
        (
            [100, 5],
            [1, 30],
            50,
            [45, 5],
        ),  # the weighted share (30.6) is above 5: capped, the rest to the other
        ([100, 40, 10], [1, 1, 1], 150, [100, 40, 10]),  # the total is everything
        ([3, 7], [1, 5], None, [3, 7]),  # without a total: the limits, weights do not apply
        ([0, 8], [1, 1], 4, [0, 4]),
    ],
)
def test_allocate_is_exact(
    limits: list[int], weights: list[float], total: int | None, expect: list[int]
) -> None:
    got = allocate(limits, weights, total)
    assert got == expect
    assert all(0 <= g <= n for g, n in zip(got, limits, strict=True))
    if total is not None:
        assert sum(got) == total
    with pytest.raises(ValueError, match="more than the sources hold"):
        allocate(limits, weights, sum(limits) + 1)


def test_capped_mixture_proportions_and_card_balance(tmp_path: Path) -> None:
    big = _labeled(tmp_path, "big", 500, bad=7)
    small = _labeled(tmp_path, "small", 20)
    task = _sni(tmp_path, "task7_copy", 60)
    cfg = _config(
        cap=100,
        seed=3,
        sources=[
            {"data": [big], "task": "classification", "templates": ["classification/options-first"]},
            {"data": [small], "task": "classification", "templates": ["classification/no-options"]},
            {"sni": task, "encoding": "definition+2pos", "cap": 50},
        ],
    )
    mixed = build_mixture(cfg)
    counts = {c.name: c for c in mixed.counts}
    assert list(counts) == ["big/classification", "small/classification", "task7_copy"]
    got = {n: (c.read, c.rejected, c.available, c.limit, c.taken) for n, c in counts.items()}
    assert got == {
        "big/classification": (507, 7, 500, 100, 100),  # capped at K
        "small/classification": (20, 0, 20, 20, 20),  # under K: all of it
        "task7_copy": (60, 0, 60, 50, 50),  # its own cap
    }
    assert [c.rate for c in mixed.counts] == [round(100 / 170, 6), round(20 / 170, 6), round(50 / 170, 6)]
    card = mixed.card()
    assert card["records"] == len(mixed.records) == 170 and card["read"] == 587 and card["rejected"] == 7
    assert card["by_task"] == {"classification": 120, "task7_copy": 50}
    assert len(mixed.rejects) == 7 and {r["mixture_source"] for r in mixed.rejects} == {"big/classification"}
    taken = [r.meta["mixture_source"] for r in mixed.records]
    assert {n: taken.count(n) for n in counts} == {n: c.taken for n, c in counts.items()}
    # no record twice, and the cap took a sample of the big source, not its first 100 rows
    rows = [r.meta["row"] for r in mixed.records if r.meta["mixture_source"] == "big/classification"]
    assert len(set(rows)) == 100 and max(rows) > 150
    # the SNI source kept its encoding (one positive example: the task has only one)
    sni = [r for r in mixed.records if r.meta["mixture_source"] == "task7_copy"]
    assert all(
        r.meta["positive_examples"] == 1 and "Positive Example 1" in r.messages[0].content for r in sni
    )


def test_total_shares_by_weight_and_seed_is_reproducible(tmp_path: Path) -> None:
    a = _labeled(tmp_path, "a", 300)
    b = _labeled(tmp_path, "b", 300)
    c = _sni(tmp_path, "task8_copy", 30)
    cfg = _config(
        cap=200,
        total=90,
        seed=11,
        sources=[
            {"data": [a], "task": "classification", "weight": 2},
            {"data": [b], "task": "classification", "name": "b"},
            {"sni": c},
        ],
    )
    # mass: 2*200, 1*200, 1*30 = 630; shares 57.14, 28.57, 4.29 -> 57, 29, 4
    first = build_mixture(cfg)
    assert [x.taken for x in first.counts] == [57, 29, 4]
    assert len(first.records) == 90
    again = build_mixture(cfg)
    assert [r.to_dict() for r in again.records] == [r.to_dict() for r in first.records]
    other = build_mixture(dataclasses.replace(cfg, seed=12))
    assert [r.to_dict() for r in other.records] != [r.to_dict() for r in first.records]
    with pytest.raises(
        ConfigError, match=r"'total': total 431 is more than the sources hold under their caps \(430\)"
    ):
        build_mixture(dataclasses.replace(cfg, total=431))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"sources": []}, "'sources' must list at least one source"),
        ({"sources": [{}]}, "'sources[0].sni': give either sni"),
        ({"sources": [{"sni": "t.json", "data": ["x.jsonl"]}]}, "'sources[0].sni': give either sni"),
        ({"sources": [{"data": ["x.jsonl"]}]}, "'sources[0].task' is required with data"),
        ({"sources": [{"data": ["x.jsonl"], "task": "sentiment"}]}, "'sources[0].task': unknown task 'sentiment'"),
        ({"sources": [{"sni": "t.json", "task": "qa"}]}, "'sources[0].task' applies to data sources only"),
        ({"sources": [{"sni": "t.json", "encoding": "pos"}]}, "'sources[0].encoding' must be one of"),
        ({"sources": [{"sni": "t.json", "weight": 0}]}, "'sources[0].weight' must be greater than 0"),
        ({"sources": [{"sni": "t.json"}], "cap": 0}, "'cap' must be at least 1"),
        ({"sources": [{"sni": "t.json"}, {"sni": "t.json"}]}, "'sources[1].name': two sources are named 't'"),
        ({"sources": [{"sni": "t.json", "wieght": 2}]}, "unknown key 'sources[0].wieght' (known: cap, data, encoding"),
    ],
)  # fmt: skip
def test_config_errors_name_the_key(tmp_path: Path, data: dict, message: str) -> None:
    path = tmp_path / "mix.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError) as e:
        load_mixture(path)
    assert message in str(e.value) and str(path) in str(e.value)


def test_every_field_is_documented() -> None:
    for cls in (MixtureConfig, MixtureSource, TemplateSpec):
        docs = field_docs(cls)
        assert [f.name for f in dataclasses.fields(cls) if not docs.get(f.name)] == [], cls


COUNTS = re.compile(r"wrote (\d+) records")


def test_cli_mixture_writes_records_card_and_rejects(tmp_path: Path) -> None:
    data = _labeled(tmp_path, "reviews", 40, bad=2)
    config = tmp_path / "mix.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "cap": 30,
                "seed": 1,
                "sources": [
                    {"sni": str(EDIBLE), "encoding": "definition"},
                    {"data": ["reviews.jsonl"], "task": "classification"},  # relative to the config's folder
                ],
            }
        )
    )
    out = tmp_path / "out" / "mix.jsonl"
    result = invoke("data", "mixture", str(config), "-o", str(out))
    assert result.exit_code == 0, result.output
    assert int(COUNTS.search(result.output).group(1)) == 60
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(lines) == 60
    card = json.loads((tmp_path / "out" / "mix.card.json").read_text())
    assert [(s["name"], s["read"], s["rejected"], s["available"], s["taken"]) for s in card["sources"]] == [
        ("task1149_item_check_edible", 119, 0, 119, 30),
        ("reviews/classification", 42, 2, 40, 30),
    ]
    assert card["by_task"] == {"classification": 30, "task1149_item_check_edible": 30}
    rejects = (tmp_path / "out" / "mix.rejects.jsonl").read_text().splitlines()
    assert len(rejects) == 2 and all(json.loads(r)["reason"] == "missing_field" for r in rejects)
    assert data  # the data file stays where it was
    # an output that would replace an input is refused before anything is written
    result = invoke("data", "mixture", str(config), "-o", str(tmp_path / "reviews.jsonl"))
    assert result.exit_code != 0 and "replace the input" in result.output
    # a bad config is one line naming the key, no traceback
    config.write_text(yaml.safe_dump({"sources": [{"sni": str(EDIBLE), "cap": -1}]}))
    result = invoke("data", "mixture", str(config), "-o", str(out))
    assert result.exit_code != 0 and "'sources[0].cap' must be at least 1" in result.output
    assert "Traceback" not in result.output


def test_cli_mixture_names_a_malformed_task_file(tmp_path: Path) -> None:
    bad = tmp_path / "task9_bad.json"
    bad.write_text(json.dumps({"Definition": ["d"], "Instances": []}))
    config = tmp_path / "mix.yaml"
    config.write_text(yaml.safe_dump({"sources": [{"sni": str(bad)}]}))
    result = invoke("data", "mixture", str(config), "-o", str(tmp_path / "o.jsonl"))
    assert result.exit_code != 0 and "task9_bad.json: 'Positive Examples' is missing" in result.output
    assert not (tmp_path / "o.jsonl").exists()


@pytest.mark.parametrize(
    ("kind", "expect"),
    [
        (
            "mixture",
            ["sources[N].sni", "sources[N].encoding", "definition+2pos", "sources[N].weight", "total", "cap"],
        ),
        ("template", ["[N].prompt", "[N].parser", "Jinja template of the user turn."]),
    ],
)
def test_config_show_mixture_and_template(kind: str, expect: list[str]) -> None:
    result = invoke("config", "show", kind)
    assert result.exit_code == 0, result.output
    for text in expect:
        assert text in result.output, (text, result.output)
