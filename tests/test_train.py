"""The training engine end to end on tiny random models: loss falls, the run folder is complete, the
saved model reloads with equal logits, a killed run resumes to the same weights."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from instructkit.train.config import ConfigError, TrainConfig
from instructkit.train.saved_model import load_trained
from instructkit.train.training import train

ROOT = Path(__file__).parent.parent
DEMO = ROOT / "examples" / "data" / "demo.jsonl"
NER = ROOT / "examples" / "data" / "ner-sample.conll"


def make_cfg(tmp_path: Path, model: str, task: str, train_file: Path, method: dict, **optim) -> TrainConfig:
    return TrainConfig.from_dict(
        {
            "model": model,
            "task": task,
            "method": method,
            "name": "run",
            "output_dir": str(tmp_path),
            "data": {"train": str(train_file), "val_share": 0.2, "max_length": 96},
            "optim": {"lr": 5e-3, "batch_size": 4, "max_steps": 12, **optim},
            "logging_steps": 1,
            "bf16": "false",
        }
    )


def losses(run_dir: Path) -> list[float]:
    return [
        json.loads(x)["loss"] for x in (run_dir / "metrics.jsonl").read_text().splitlines() if '"loss"' in x
    ]


def same_logits(result, batch: dict) -> None:
    model, _, info = load_trained(result.run_dir)
    result.model.eval()
    with torch.no_grad():
        a = result.model(**batch).logits
        b = model(**batch).logits
    assert torch.allclose(a, b, atol=1e-5), (a - b).abs().max()


@pytest.mark.parametrize("method", [{"name": "full"}, {"name": "lora", "r": 4, "alpha": 8}])
@pytest.mark.slow
def test_causal_lm_sft(tmp_path: Path, tiny_llama: str, method: dict) -> None:
    result = train(make_cfg(tmp_path, tiny_llama, "causal-lm", DEMO, method), progress=False)
    run = result.run_dir
    curve = losses(run)
    assert sum(curve[-3:]) / 3 < sum(curve[:3]) / 3, curve
    for name in (
        "config.yaml",
        "metrics.jsonl",
        "train_metrics.json",
        "plots/loss.png",
        "model/instructkit.json",
    ):
        assert (run / name).exists(), name
    assert list((run / "logs").iterdir()), "no TensorBoard event files"
    info = json.loads((run / "model" / "instructkit.json").read_text())
    assert info["task"] == "causal-lm" and info["method"]["name"] == method["name"] and info["chat_template"]
    ids = result.tokenizer("Hello there, how are you?", return_tensors="pt")
    same_logits(result, {"input_ids": ids["input_ids"]})
    # the finished model folder lists every file it holds, with its checksum (models/manifest.py)
    from instructkit.models.manifest import MANIFEST, problem, read_manifest

    doc = read_manifest(run / "model")
    on_disk = {p.relative_to(run / "model").as_posix() for p in (run / "model").rglob("*") if p.is_file()}
    assert doc is not None and set(doc["files"]) == on_disk - {MANIFEST} and problem(run / "model") is None


@pytest.mark.parametrize(
    "method",
    [
        {"name": "full"},
        {"name": "lora", "r": 4},
        {"name": "adapter"},
        {"name": "freeze", "layers": 1},
        {"name": "bitfit"},
    ],
)
@pytest.mark.slow
def test_token_classification(tmp_path: Path, tiny_bert: str, method: dict) -> None:
    cfg = make_cfg(tmp_path, tiny_bert, "token-classification", NER, method, lr=1e-2, max_steps=15)
    cfg.data.val_share = 0.25
    result = train(cfg, progress=False)
    curve = losses(result.run_dir)
    assert curve[-1] < curve[0], curve
    info = json.loads((result.model_dir / "instructkit.json").read_text())
    assert info["labels"]["names"][0] == "O" and "B-PER" in info["labels"]["names"]
    assert "val_f1" in result.metrics
    enc = result.tokenizer(
        ["Maria", "met", "Tom", "in", "Oslo"], is_split_into_words=True, return_tensors="pt"
    )
    same_logits(result, dict(enc))


@pytest.mark.slow
def test_sequence_classification(tmp_path: Path, tiny_bert: str) -> None:
    rows = [
        {"text": f"{w} movie, {w} acting", "label": lab}
        for w, lab in [("great", "pos"), ("awful", "neg"), ("superb", "pos"), ("boring", "neg")] * 6
    ]
    data = tmp_path / "cls.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = train(
        make_cfg(tmp_path, tiny_bert, "sequence-classification", data, {"name": "full"}, lr=1e-2),
        progress=False,
    )
    info = json.loads((result.model_dir / "instructkit.json").read_text())
    assert info["labels"] == {"names": ["neg", "pos"], "problem_type": "single_label_classification"}
    assert "val_accuracy" in result.metrics
    curve = losses(result.run_dir)
    assert curve[-1] < curve[0]
    same_logits(result, dict(result.tokenizer("great acting", return_tensors="pt")))


@pytest.mark.slow
def test_resume_matches_uninterrupted_run(
    tmp_path: Path, tiny_llama: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from transformers import Trainer, TrainerCallback

    def cfg(folder: Path) -> TrainConfig:
        c = make_cfg(folder, tiny_llama, "causal-lm", DEMO, {"name": "full"}, max_steps=8)
        c.save_every_steps = 3
        c.optim.dropout = 0.1  # dropout makes the RNG state part of what must resume exactly
        return c

    reference = train(cfg(tmp_path / "a"), progress=False)

    class Kill(TrainerCallback):
        def on_save(self, args, state, control, **kw):
            if state.global_step == 3:
                raise KeyboardInterrupt("killed after the step-3 checkpoint")

    init = Trainer.__init__

    def init_with_kill(self, *a, **k):
        k["callbacks"] = [*(k.get("callbacks") or []), Kill()]
        init(self, *a, **k)

    monkeypatch.setattr(Trainer, "__init__", init_with_kill)
    with pytest.raises(KeyboardInterrupt):
        train(cfg(tmp_path / "b"), progress=False)
    monkeypatch.setattr(Trainer, "__init__", init)
    resumed = train(cfg(tmp_path / "b"), resume=True, progress=False)
    assert resumed.metrics["steps"] == 8
    steps = [json.loads(x)["step"] for x in (resumed.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(steps), "metrics.jsonl repeats steps after the resume"
    ref = dict(reference.model.named_parameters())
    for name, p in resumed.model.named_parameters():
        assert torch.allclose(p, ref[name], atol=1e-6), name
    assert any(
        not torch.allclose(p, q)
        for p, q in zip(reference.model.parameters(), load_base_params(tiny_llama), strict=True)
    )


def load_base_params(folder: str) -> list[torch.Tensor]:
    from transformers import AutoModelForCausalLM

    return list(AutoModelForCausalLM.from_pretrained(folder).parameters())


def test_config_errors_name_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown key 'optim.learning_rate'"):
        TrainConfig.from_dict({"data": {"train": "x"}, "optim": {"learning_rate": 1}})
    with pytest.raises(ConfigError, match="task must be one of"):
        TrainConfig.from_dict({"data": {"train": "x"}, "task": "chat"})
    with pytest.raises(ConfigError, match="'optim.lr' must be float, got 'fast'"):
        TrainConfig.from_dict({"data": {"train": "x"}, "optim": {"lr": "fast"}})
    ok = tmp_path / "ok.yaml"
    ok.write_text("data: {train: x}\nmethod: {name: lora}\nbf16: true\n")
    cfg = TrainConfig.from_yaml(ok, {"optim.lr": "5e-4", "optim.max_steps": "7", "method.r": "16"})
    assert cfg.optim.lr == 5e-4 and cfg.optim.max_steps == 7 and cfg.method["r"] == 16 and cfg.bf16 is True
    bad = tmp_path / "t.yaml"
    bad.write_text("data: {train: x}\nepochs: 3\n")
    with pytest.raises(ConfigError, match="t.yaml: unknown key 'epochs'"):
        TrainConfig.from_yaml(bad)


@pytest.mark.parametrize("bf16", ["false", "true"])
@pytest.mark.slow
def test_causal_lm_packing(tmp_path: Path, tiny_llama: str, bf16: str) -> None:
    cfg = make_cfg(tmp_path, tiny_llama, "causal-lm", DEMO, {"name": "full"})
    cfg.packing = True
    cfg.bf16 = bf16
    cfg.data.max_length = 256
    result = train(cfg, progress=False)
    curve = losses(result.run_dir)
    assert sum(curve[-3:]) / 3 < sum(curve[:3]) / 3, curve
    assert result.metrics["val_loss"] == result.metrics["val_loss"]  # eval (unpacked) ran, no NaN


def test_packing_refuses_prompt_tuning(tmp_path: Path, tiny_llama: str) -> None:
    cfg = make_cfg(
        tmp_path, tiny_llama, "causal-lm", DEMO, {"name": "prompt-tuning", "num_virtual_tokens": 4}
    )
    cfg.packing = True
    with pytest.raises(ConfigError, match="prompt-tuning"):
        train(cfg, progress=False)


@pytest.mark.parametrize("packing", [False, True])
@pytest.mark.slow
def test_trained_positions_head_trains_the_same_weights(
    tmp_path: Path, tiny_llama: str, packing: bool
) -> None:
    """The LM head on trained positions only is an optimisation, not a different loss: two runs, with and
    without it, end with the same weights, losses, and token counts."""
    runs = {}
    for head_only in (False, True):
        cfg = make_cfg(
            tmp_path / str(head_only), tiny_llama, "causal-lm", DEMO, {"name": "full"}, max_steps=6
        )
        cfg.trained_positions_head = head_only
        cfg.packing = packing
        cfg.optim.grad_accum = 2  # the loss is normalised over the accumulated batch, as transformers does
        runs[head_only] = train(cfg, progress=False)
    a, b = runs[False], runs[True]
    assert losses(a.run_dir) == pytest.approx(losses(b.run_dir), rel=1e-4)
    ref = dict(a.model.named_parameters())
    for name, p in b.model.named_parameters():
        assert torch.allclose(p, ref[name], atol=5e-5), (name, (p - ref[name]).abs().max())
    assert a.metrics["tokens_seen"] == b.metrics["tokens_seen"] > 0
    base = load_base_params(tiny_llama)
    moved = max((p - q).abs().max().item() for p, q in zip(b.model.parameters(), base, strict=True))
    assert moved > 100 * 5e-5, f"training barely moved the weights ({moved}); the comparison is vacuous"


def test_trained_positions_head_sees_only_trained_positions(tiny_llama: str) -> None:
    from transformers import AutoModelForCausalLM

    from instructkit.train.trainer import causal_lm_targets, trained_positions_only

    model = AutoModelForCausalLM.from_pretrained(tiny_llama)
    ids = torch.randint(0, 100, (2, 7))
    labels = torch.full((2, 7), -100)
    labels[0, 3:5] = ids[0, 3:5]
    labels[1, 6] = ids[1, 6]
    keep, targets = causal_lm_targets(labels)
    assert keep.sum() == 3 and targets.tolist() == [ids[0, 3], ids[0, 4], ids[1, 6]]
    with torch.no_grad():
        full = model(input_ids=ids).logits
        with trained_positions_only(model.get_output_embeddings(), keep):
            part = model(input_ids=ids).logits
    assert part.shape == (3, full.shape[-1])
    assert torch.allclose(part, full[keep], atol=1e-6)
    head = model.get_output_embeddings()
    with (
        torch.no_grad(),
        pytest.raises(RuntimeError, match="trained_positions_head: false"),
        trained_positions_only(head, keep[:, :5]),
    ):
        model(input_ids=ids)
