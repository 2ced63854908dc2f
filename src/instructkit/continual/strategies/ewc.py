"""ewc: elastic weight consolidation. After each task, estimate how much each trainable parameter
mattered to it (the diagonal of the Fisher information at the task's final weights θ*), and in later
rounds add the penalty (λ/2)·Σ_i F_i·(θ_i − θ*_i)² to the loss, so the parameters that mattered move less.
Kirkpatrick et al., "Overcoming catastrophic forgetting in neural networks" (PNAS 2017), eq. 3.

Across several tasks this keeps one Fisher and one anchor (online EWC, Schwarz et al., "Progress &
Compress", ICML 2018, sec. 4): after task k, F ← γ·F + F_k and θ* ← θ_k. γ = 1 sums the tasks' Fishers;
γ < 1 lets older tasks' importance fade.

Two estimators of F_i = E[(∂ log p(y|x)/∂θ_i)²], over ``n_samples`` examples of the finished task:

* ``sampled`` (the Fisher proper): y drawn from the model's own predictive distribution at each trained
  position. Kunstner et al., "Limitations of the Empirical Fisher Approximation" (NeurIPS 2019), argue
  for this one.
* ``empirical``: y = the data's labels; cheaper to reason about, and what many implementations use.

Per example the gradient is of the mean token negative log-likelihood over its trained tokens (the
training loss's own normalisation, so λ weighs the penalty against that loss), squared, then averaged
over examples. Gradients are per example (batch of one): the square of a batch's mean gradient is not
the mean of squares.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from instructkit.config import checked
from instructkit.continual.strategies.base import ContinualError, Strategy, register
from instructkit.files import sha256_file
from instructkit.train.trainer import causal_lm_targets

if TYPE_CHECKING:
    from instructkit.continual.plan import Round

ESTIMATORS = ("sampled", "empirical")
STATE_FILE = "ewc.safetensors"
MODEL_INPUTS = ("input_ids", "attention_mask", "position_ids")


@register
@dataclass
class Ewc(Strategy):
    name = "ewc"
    lam: float = checked(1000.0, ge=0, finite=True)
    """λ, the penalty's weight against the training loss. Not tuned here: the Fisher of a mean-token loss
    is small per parameter, so useful values are large; measure on the benchmark before trusting one."""
    estimator: str = checked("sampled", choices=ESTIMATORS)
    """How y is chosen for the Fisher: sampled from the model (the Fisher) or the data's labels (empirical)."""
    n_samples: int = checked(200, ge=1)
    """Examples of the finished task the Fisher is averaged over."""
    gamma: float = checked(1.0, ge=0, le=1)
    """Online EWC decay: F ← γ·F_old + F_new after each task."""
    seed: int = 0
    """Seeds the sampled estimator's draws."""

    def loss_penalty(self, rnd: Round) -> EwcPenalty | None:
        """The anchor to the earlier tasks' weights (none in round 0: nothing learned yet)."""
        if rnd.prev is None:
            return None
        return EwcPenalty(EwcState.load(rnd.prev / STATE_FILE), self.lam)

    def after_training(self, rnd: Round, result: Any) -> None:
        """The Fisher of the task just learned, at the trained weights, merged into the earlier tasks'."""
        from instructkit.train.tasks import TASKS, LabelInfo

        cfg = rnd.train_config()
        spec = TASKS[cfg.task]()
        feats, _ = spec.features(rnd.task.kept, result.tokenizer, LabelInfo(), cfg.data.max_length)
        collate = spec.collator(result.tokenizer)
        model = result.model
        device = next(model.parameters()).device

        def batches() -> Iterable[dict[str, torch.Tensor]]:
            for i in range(0, len(feats), 8):
                batch = collate(feats[i : i + 8])
                yield {k: v.to(device) for k, v in batch.items() if hasattr(v, "to")}

        fisher = fisher_diagonal(
            model, batches(), estimator=self.estimator, n_samples=self.n_samples, seed=self.seed
        )
        state = EwcState.load(rnd.prev / STATE_FILE) if rnd.prev is not None else None
        consolidate(state, fisher, model, self.gamma).save(rnd.folder / STATE_FILE)

    def outputs(self, folder: Path, task: str) -> list[Path]:
        return [folder / STATE_FILE]

    def lineage(self, rnd: Round) -> dict[str, Any]:
        return {"ewc_state_sha256": sha256_file(rnd.folder / STATE_FILE)}


def trainable_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    if not params:
        raise ContinualError("ewc: the model has no trainable parameters")
    return params


def _rows(
    batches: Iterable[dict[str, torch.Tensor]],
) -> Iterable[tuple[dict[str, torch.Tensor], torch.Tensor]]:
    for batch in batches:
        if "labels" not in batch or "input_ids" not in batch:
            raise ContinualError(f"ewc: a batch needs input_ids and labels, got {sorted(batch)}")
        for i in range(batch["input_ids"].shape[0]):
            inputs = {k: batch[k][i : i + 1] for k in MODEL_INPUTS if k in batch}
            yield inputs, batch["labels"][i : i + 1]


def fisher_diagonal(
    model: nn.Module,
    batches: Iterable[dict[str, torch.Tensor]],
    *,
    estimator: str = "sampled",
    n_samples: int = 200,
    seed: int = 0,
    forward: Callable[[nn.Module, dict[str, torch.Tensor]], torch.Tensor] | None = None,
) -> dict[str, torch.Tensor]:
    """The diagonal Fisher (fp32, one tensor per trainable parameter) over the first ``n_samples``
    examples with at least one trained token. ``batches`` are causal-LM batches (``input_ids``,
    ``attention_mask``, ``labels`` with -100 on untrained tokens); ``forward(model, inputs)`` returns
    logits (default: ``model(**inputs).logits``). The model runs in eval mode (no dropout) and is put back."""
    if estimator not in ESTIMATORS:
        raise ContinualError(f"ewc: unknown estimator {estimator!r}; one of {', '.join(ESTIMATORS)}")
    if n_samples < 1:
        raise ContinualError(f"ewc: n_samples must be ≥ 1, got {n_samples}")
    forward = forward or (lambda m, inputs: m(**inputs).logits)
    params = trainable_parameters(model)
    names, tensors = list(params), list(params.values())
    fisher = {n: torch.zeros_like(p, dtype=torch.float32) for n, p in params.items()}
    generator = torch.Generator().manual_seed(seed)
    was_training = model.training
    model.eval()
    count = 0
    try:
        for inputs, labels in _rows(batches):
            if count >= n_samples:
                break
            keep, targets = causal_lm_targets(labels)
            if targets.numel() == 0:
                continue  # nothing trained in this example: it carries no information about the task
            logits = forward(model, inputs)[keep].float()
            if estimator == "sampled":
                with torch.no_grad():
                    probs = torch.softmax(logits.detach().cpu(), dim=-1)
                    targets = torch.multinomial(probs, 1, generator=generator).squeeze(-1).to(logits.device)
            loss = nn.functional.cross_entropy(logits, targets.to(logits.device))
            grads = torch.autograd.grad(loss, tensors, allow_unused=True)
            for name, g in zip(names, grads, strict=True):
                if g is not None:
                    fisher[name] += g.detach().float() ** 2
            count += 1
    finally:
        model.train(was_training)
    if count == 0:
        raise ContinualError("ewc: no example with a trained token to estimate the Fisher from")
    return {n: f / count for n, f in fisher.items()}


@dataclass
class EwcState:
    """What later rounds need from the finished ones: the accumulated Fisher and the anchor θ*."""

    fisher: dict[str, torch.Tensor]
    anchor: dict[str, torch.Tensor]
    tasks: int = 1

    def save(self, path: str | Path) -> None:
        """One safetensors file (``fisher.NAME`` and ``anchor.NAME``), written atomically."""
        from safetensors.torch import save

        from instructkit.files import atomic_write_bytes

        tensors = {f"fisher.{n}": t.contiguous().cpu() for n, t in self.fisher.items()}
        tensors |= {f"anchor.{n}": t.contiguous().cpu() for n, t in self.anchor.items()}
        atomic_write_bytes(Path(path), save(tensors, metadata={"tasks": str(self.tasks)}))

    @classmethod
    def load(cls, path: str | Path) -> EwcState:
        from safetensors import safe_open

        fisher, anchor = {}, {}
        with safe_open(str(path), framework="pt") as f:
            tasks = int((f.metadata() or {}).get("tasks", "1"))
            for key in f.keys():  # noqa: SIM118 (safe_open is not a mapping)
                kind, _, name = key.partition(".")
                {"fisher": fisher, "anchor": anchor}[kind][name] = f.get_tensor(key)
        if set(fisher) != set(anchor):
            raise ContinualError(f"{path}: Fisher and anchor name different parameters")
        return cls(fisher, anchor, tasks)


def consolidate(
    state: EwcState | None, fisher: dict[str, torch.Tensor], model: nn.Module, gamma: float = 1.0
) -> EwcState:
    """Online EWC after a finished task: F ← γ·F_old + F_new, θ* ← the model's trainable parameters now."""
    if not 0 <= gamma <= 1:
        raise ContinualError(f"ewc: gamma must be in [0, 1], got {gamma}")
    anchor = {n: p.detach().clone().float() for n, p in trainable_parameters(model).items()}
    if set(fisher) != set(anchor):
        raise ContinualError("ewc: the Fisher names other parameters than the model's trainable ones")
    if state is None:
        return EwcState({n: f.clone() for n, f in fisher.items()}, anchor, 1)
    if set(state.fisher) != set(fisher):
        raise ContinualError("ewc: the new task's Fisher names other parameters than the earlier tasks'")
    merged = {n: gamma * state.fisher[n] + fisher[n] for n in fisher}
    return EwcState(merged, anchor, state.tasks + 1)


class EwcPenalty:
    """(λ/2)·Σ_i F_i·(θ_i − θ*_i)² over the parameters in ``state``: a callable ``penalty(model)`` that the
    trainer adds to the training loss (``InstructTrainer(loss_penalty=...)``)."""

    def __init__(self, state: EwcState, lam: float):
        if lam < 0:
            raise ContinualError(f"ewc: lam must be ≥ 0, got {lam}")
        self.state = state
        self.lam = lam
        self._on_device: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}  # name -> (F, θ*) on p's device

    def __call__(self, model: nn.Module) -> torch.Tensor:
        params = dict(model.named_parameters())
        missing = [n for n in self.state.fisher if n not in params]
        if missing:
            raise ContinualError(
                f"ewc: the model has no parameter {missing[0]!r} that the Fisher was taken on"
            )
        total: Any = None
        for name, f in self.state.fisher.items():
            p = params[name]
            if name not in self._on_device or self._on_device[name][0].device != p.device:
                self._on_device[name] = (f.to(p.device), self.state.anchor[name].to(p.device))
            fisher, anchor = self._on_device[name]
            diff = p.float() - anchor
            term = (fisher * diff * diff).sum()
            total = term if total is None else total + term
        return 0.5 * self.lam * total
