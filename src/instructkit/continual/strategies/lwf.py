"""lwf: learning without forgetting. While training round k, the previous round's model (the teacher,
frozen) reads the same batch, and the current model (the student) is pulled towards its outputs on the
new data as well as towards the new labels:

    loss = (1 − α)·task_loss + α·T²·KL(softmax(z_teacher/T) ‖ softmax(z_student/T))

Li & Hoiem, "Learning without Forgetting" (ECCV 2016 / TPAMI 2017), with the distillation term of Hinton
et al., "Distilling the Knowledge in a Neural Network" (2015): the T² keeps the soft term's gradients on
the scale of the hard loss's when T changes (they shrink as 1/T²). The KL's order matters: the teacher's
distribution is the target P and the student's the approximation Q in KL(P‖Q) = Σ P·(log P − log Q),
which is ``kl_div(log Q, log P, log_target=True)`` in torch's argument order (input = student).

The KL is taken at the positions the task loss trains (the reply tokens; prompt and padding excluded)
and averaged over them, as the task loss is.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from instructkit.config import checked
from instructkit.continual.strategies.base import ContinualError, Strategy, register
from instructkit.train.trainer import causal_lm_targets, trained_positions_only

if TYPE_CHECKING:
    from instructkit.continual.plan import Round


@register
@dataclass
class Lwf(Strategy):
    name = "lwf"
    temperature: float = checked(2.0, gt=0, finite=True)
    """T: both models' logits are divided by T before the softmax (Li & Hoiem use 2)."""
    alpha: float = checked(0.5, ge=0, le=1)
    """α: the distillation term's share of the loss; 0 is plain fine-tuning, 1 distillation alone."""

    def check(self, cfg: Any) -> None:
        if not cfg.trained_positions_head:
            raise ContinualError(
                "{key}: lwf distils at the trained positions only; leave it true",
                key="train.trained_positions_head",
            )

    def token_loss(self, rnd: Round) -> LwfTokenLoss:
        """Distillation from the previous round's model (round 0: the untouched model) as the teacher."""
        from instructkit.train.saved_model import load_base, load_trained
        from instructkit.train.tasks import TASKS, LabelInfo

        if rnd.prev is not None:
            teacher = load_trained(rnd.prev / "train" / "model")[0]
        else:
            recipe = rnd.plan.recipe
            teacher = load_base(recipe.model, TASKS[recipe.task](), LabelInfo(), recipe.seed)
        return LwfTokenLoss(frozen_teacher(teacher), alpha=self.alpha, temperature=self.temperature)


def frozen_teacher(model: nn.Module) -> nn.Module:
    """A copy of ``model`` in eval mode with every parameter frozen: the previous round's model."""
    teacher = copy.deepcopy(model)
    teacher.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


def teacher_logits(teacher: nn.Module, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    """The teacher's logits on ``inputs`` without building a graph (it never trains)."""
    with torch.no_grad():
        return teacher(**inputs).logits.detach()


def trained_mask(labels: torch.Tensor) -> torch.Tensor:
    """(B, L) labels -> (B, L) bool: the positions whose next token the task loss trains (causal LM:
    the logits at t predict token t+1), so prompt and padding positions are left out."""
    return causal_lm_targets(labels)[0]


def distillation_loss(
    student: torch.Tensor,
    teacher: torch.Tensor,
    mask: torch.Tensor | None = None,
    temperature: float = 2.0,
    reduction: str = "mean",
) -> torch.Tensor:
    """T²·KL(softmax(teacher/T) ‖ softmax(student/T)), averaged (``reduction="sum"``: summed) over the
    positions where ``mask`` is true (all positions when None). ``student`` and ``teacher``: (..., vocab)
    logits of the same shape; the teacher's carry no gradient."""
    if reduction not in ("mean", "sum"):
        raise ContinualError(f"lwf: reduction must be mean or sum, got {reduction!r}")
    if student.shape != teacher.shape:
        raise ContinualError(f"lwf: student logits {tuple(student.shape)} vs teacher {tuple(teacher.shape)}")
    if temperature <= 0:
        raise ContinualError(f"lwf: temperature must be > 0, got {temperature}")
    log_q = torch.log_softmax(student.float() / temperature, dim=-1)
    log_p = torch.log_softmax(teacher.detach().float() / temperature, dim=-1)
    per_position = nn.functional.kl_div(log_q, log_p, log_target=True, reduction="none").sum(-1)
    if mask is not None:
        if mask.shape != per_position.shape:
            raise ContinualError(f"lwf: mask {tuple(mask.shape)} vs positions {tuple(per_position.shape)}")
        per_position = per_position[mask.bool()]
        if per_position.numel() == 0:
            return student.sum() * 0.0  # no trained position: no term, but a graph to backpropagate
    pooled = per_position.sum() if reduction == "sum" else per_position.mean()
    return pooled * temperature**2


def lwf_loss(
    task_loss: torch.Tensor,
    student: torch.Tensor,
    teacher: torch.Tensor,
    mask: torch.Tensor | None,
    *,
    alpha: float,
    temperature: float,
) -> torch.Tensor:
    """(1 − α)·task_loss + α·:func:`distillation_loss`."""
    if not 0 <= alpha <= 1:
        raise ContinualError(f"lwf: alpha must be in [0, 1], got {alpha}")
    return (1 - alpha) * task_loss + alpha * distillation_loss(student, teacher, mask, temperature)


def _output_head(model: nn.Module) -> nn.Module:
    base = model.get_base_model() if hasattr(model, "get_base_model") else model  # PEFT
    head = base.get_output_embeddings() if hasattr(base, "get_output_embeddings") else None
    if head is None:
        raise ContinualError(f"lwf: the teacher ({type(base).__name__}) has no output embedding to read")
    return head


class LwfTokenLoss:
    """The trainer's ``token_loss`` for LwF (``InstructTrainer(token_loss=...)``): at the trained positions,
    (1 − α)·Σ cross-entropy + α·Σ T²·KL(teacher ‖ student), both sums, so the trainer normalises them as it
    normalises the cross-entropy alone. The teacher runs on the same inputs with its head restricted to the
    same positions, under no_grad."""

    def __init__(self, teacher: nn.Module, *, alpha: float, temperature: float):
        if not 0 <= alpha <= 1:
            raise ContinualError(f"lwf: alpha must be in [0, 1], got {alpha}")
        if temperature <= 0:
            raise ContinualError(f"lwf: temperature must be > 0, got {temperature}")
        self.teacher = teacher
        self.alpha = alpha
        self.temperature = temperature

    def __call__(
        self, logits: torch.Tensor, targets: torch.Tensor, inputs: dict[str, torch.Tensor], keep: torch.Tensor
    ) -> torch.Tensor:
        with torch.no_grad(), trained_positions_only(_output_head(self.teacher), keep):
            teacher = self.teacher(**inputs, use_cache=False).logits
        ce = nn.functional.cross_entropy(logits.float(), targets, reduction="sum")
        kl = distillation_loss(logits, teacher, None, self.temperature, reduction="sum")
        return (1 - self.alpha) * ce + self.alpha * kl
