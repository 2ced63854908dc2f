"""The HF ``Trainer`` instructkit runs, with the two things it lacks for causal-LM fine-tuning on CPU.

* **LM head on trained positions only.** A causal LM's forward computes logits for every position:
  ``batch x length x vocab`` floats (SmolLM2: 8 x 512 x 49,152 = 805 MB in fp32, and as much again for
  their gradient), though only the positions whose next token is trained (the assistant replies) enter
  the loss. ``transformers`` offers ``logits_to_keep``, but as one index set for every row, which does not
  fit rows whose trained spans differ. So while the loss is computed, a forward pre-hook on the output
  embedding hands it only the trained positions' hidden states (row-major, the order of the targets),
  and the loss is the same token-mean cross-entropy as ``ForCausalLMLoss``. The hook runs inside the
  model's own forward, so DDP, PEFT wrappers and autocast see an ordinary call. Evaluation, which needs
  full logits, is unchanged. Measured in ``benchmarks/sft_throughput.py`` (``--ablate``).
* **Non-padding token counts for packed batches.** The Trainer counts tokens from a 2D attention mask;
  packed rows carry a 4D additive mask, so the packing collator passes its real-token count under
  ``TOKENS_KEY``, which is taken out of the batch before the model sees it.
* **Length-grouped order that a resume replays.** HF's ``LengthGroupedSampler`` draws each epoch's order
  from torch's global RNG when the epoch's iterator starts. A run resumed mid-epoch starts that iterator
  right after setup, so it draws epoch k's order from the RNG state of epoch 0 and trains on other
  batches (the random sampler is exact because accelerate swaps it for a sampler seeded with
  ``seed + epoch``). ``EpochSeededLengthGroupedSampler`` does the same for length grouping.
* **A loss penalty.** ``loss_penalty(model)`` (a tensor) is added to each training step's loss: the seam
  continual strategies regularize through (EWC's (λ/2)·Σ F(θ−θ*)², ``continual/strategies/ewc.py``). It is
  scaled so that gradient accumulation counts it once per optimizer step, and left out of evaluation.
* **A token loss.** ``token_loss(logits, targets, inputs, keep)`` replaces the cross-entropy *sum* over the
  trained positions in training steps (on the trained-positions head only), and is normalised exactly as
  that sum is: the seam for losses that read the logits, LwF's distillation (``continual/strategies/lwf.py``).
* **Weights-only resume.** ``weights_only_resume`` skips loading the optimizer, scheduler, scaler and RNG
  state (see ``train/checkpoints.py``: a checkpoint missing them is refused unless asked for this).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import torch
from transformers import Trainer
from transformers.trainer_pt_utils import LengthGroupedSampler, get_length_grouped_indices

from instructkit.templates import IGNORE_INDEX

TOKENS_KEY = "instructkit_num_tokens"


@contextlib.contextmanager
def trained_positions_only(head: torch.nn.Module, keep: torch.Tensor) -> Iterator[None]:
    """While active, ``head`` (the output embedding) sees only ``hidden[keep]`` (``keep``: (B, L) bool)
    and returns ``(n_kept, vocab)`` logits."""

    def select(module: torch.nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
        hidden = args[0]
        if hidden.dim() != 3 or hidden.shape[:2] != keep.shape:
            raise RuntimeError(
                f"trained-positions head: hidden states {tuple(hidden.shape)} do not match labels "
                f"{tuple(keep.shape)}; set trained_positions_head: false for this model"
            )
        return (hidden[keep], *args[1:])

    handle = head.register_forward_pre_hook(select)
    try:
        yield
    finally:
        handle.remove()


def causal_lm_targets(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, L) labels -> the positions whose next token is trained, and those tokens (row-major)."""
    nxt = labels[:, 1:]
    keep = torch.zeros_like(labels, dtype=torch.bool)
    keep[:, :-1] = nxt != IGNORE_INDEX
    return keep, nxt[nxt != IGNORE_INDEX]


class EpochSeededLengthGroupedSampler(LengthGroupedSampler):
    """``LengthGroupedSampler`` whose order depends on ``seed + epoch`` only (accelerate and the Trainer
    call ``set_epoch`` before each epoch's iterator, also after skipping the batches a resume has seen)."""

    def __init__(self, batch_size: int, lengths: list[int], seed: int):
        super().__init__(batch_size, lengths=lengths)
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return iter(get_length_grouped_indices(self.lengths, self.batch_size, generator=generator))


class InstructTrainer(Trainer):
    """``Trainer`` + the trained-positions LM head (causal-lm) + packed-batch token counts + a
    length-grouped order that resumes exactly + weights-only resume."""

    def __init__(
        self,
        *args: Any,
        trained_positions_head: bool = False,
        weights_only_resume: bool = False,
        loss_penalty: Callable[[torch.nn.Module], torch.Tensor] | None = None,
        token_loss: Callable[[torch.Tensor, torch.Tensor, dict[str, Any], torch.Tensor], torch.Tensor]
        | None = None,
        **kwargs: Any,
    ):
        if token_loss is not None and not trained_positions_head:
            raise ValueError("token_loss needs the trained-positions head (trained_positions_head: true)")
        super().__init__(*args, **kwargs)
        self.token_loss = token_loss
        self.trained_positions_head = trained_positions_head
        self.weights_only_resume = weights_only_resume
        self.loss_penalty = loss_penalty

    def _get_train_sampler(self, train_dataset: Any = None) -> Any:
        sampler = super()._get_train_sampler(train_dataset)
        if type(sampler) is LengthGroupedSampler:
            seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
            return EpochSeededLengthGroupedSampler(sampler.batch_size, sampler.lengths, seed)
        return sampler

    def _load_optimizer_and_scheduler(self, checkpoint: str | None) -> None:
        if not self.weights_only_resume:
            super()._load_optimizer_and_scheduler(checkpoint)

    def _load_scaler(self, checkpoint: str | None) -> None:
        if not self.weights_only_resume:
            super()._load_scaler(checkpoint)

    def _load_rng_state(self, checkpoint: str | None) -> None:
        if not self.weights_only_resume:
            super()._load_rng_state(checkpoint)

    def _output_head(self, model: torch.nn.Module) -> torch.nn.Module | None:
        m = self.accelerator.unwrap_model(model)
        if hasattr(m, "get_base_model"):  # PEFT
            m = m.get_base_model()
        return m.get_output_embeddings() if hasattr(m, "get_output_embeddings") else None

    def compute_loss(
        self,
        model: torch.nn.Module,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | int | None = None,
    ) -> Any:
        out = self._task_loss(model, inputs, return_outputs, num_items_in_batch)
        if self.loss_penalty is None or not model.training:
            return out
        loss, rest = (out[0], out[1:]) if isinstance(out, tuple) else (out, None)
        term = self.loss_penalty(self.accelerator.unwrap_model(model))
        # training_step divides the loss by the accumulation steps unless it is already a share of the
        # accumulated batch's token sum; the penalty is per optimizer step, so it is divided either way.
        scaled = self.loss_is_scaled_for_ga
        if scaled is None:
            scaled = (self.model_accepts_loss_kwargs and num_items_in_batch is not None) or (
                self.compute_loss_func is not None
            )
        if scaled:
            term = term / getattr(
                self, "current_gradient_accumulation_steps", self.args.gradient_accumulation_steps
            )
        loss = loss + term.to(loss.dtype)
        return (loss, *rest) if rest is not None else loss

    def _task_loss(
        self,
        model: torch.nn.Module,
        inputs: dict[str, Any],
        return_outputs: bool,
        num_items_in_batch: torch.Tensor | int | None,
    ) -> Any:
        head = self._output_head(model) if self.trained_positions_head else None
        if head is None or return_outputs or "labels" not in inputs:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        inputs = dict(inputs)
        labels = inputs.pop("labels")
        keep, targets = causal_lm_targets(labels)
        with trained_positions_only(head, keep):
            logits = model(**inputs, use_cache=False).logits
        if self.token_loss is not None and model.training:
            total = self.token_loss(logits, targets, inputs, keep)
        else:
            total = torch.nn.functional.cross_entropy(logits.float(), targets, reduction="sum")
        # As transformers' ForCausalLMLoss: fp32 cross-entropy, a sum over the accumulated batch's
        # trained tokens when the Trainer passes their count, else the mean of this batch.
        if num_items_in_batch is not None:
            loss = total / num_items_in_batch
            if self.args.average_tokens_across_devices:
                loss = loss * self.accelerator.num_processes  # DDP averages gradients over processes
        else:
            loss = total / targets.numel()
        return loss

    def _prepare_inputs(self, inputs: dict[str, Any]) -> dict[str, Any]:
        inputs = super()._prepare_inputs(inputs)
        inputs.pop(TOKENS_KEY, None)
        return inputs

    def _track_num_input_tokens(self, inputs: dict[str, Any]) -> None:
        if TOKENS_KEY in inputs:
            n = torch.as_tensor(inputs[TOKENS_KEY], device=self.args.device, dtype=torch.int64)
        elif isinstance(inputs.get("attention_mask"), torch.Tensor) and inputs["attention_mask"].dim() == 2:
            n = inputs["attention_mask"].sum().to(torch.int64)
        else:
            n = torch.as_tensor(inputs["input_ids"].numel(), device=self.args.device, dtype=torch.int64)
        self.state.num_input_tokens_seen += int(self.accelerator.gather(n).sum().item())
