"""The model side of the engine: the forward passes that prefill prompts and decode the lanes' rows.

:class:`ModelRunner` owns the model, the lanes (one running batch per adapter: :class:`~instructkit.serve.
engine.kv_buffers.Lane`), the prefix cache and the draft proposers, and makes one step of one lane at a
time; the scheduler (:class:`~instructkit.decoding.engine.scheduler.Engine`) decides when, on its thread.
How a step shares a forward pass is decided once, by :meth:`ModelRunner._probe` at start:

* ``packed`` (a model whose attention goes through transformers' attention interface as ``sdpa``): one
  pass per step decodes every row, checks its draft tokens and prefills every prompt admitted since the
  last step (each after the longest prefix it shares with a recent prompt of the same lane), as one flat
  sequence (:mod:`~instructkit.decoding.engine.attention` says why and how).
* ``separate-prefill`` (any other model whose cache is a plain per-layer key/value list): each prompt is
  prefilled in a pass of its own, then merged into the batch, which decodes one token per row a step.
* ``one-at-a-time``: models whose cache is not a plain per-layer key/value list (sliding-window or
  linear-attention layers) are served one request at a time, and say so.

A finished row (EOS, a stop string, ``max_tokens``, a client gone) leaves the batch at once and its caller
gets the result at once. Greedy replies match one-request ``generate`` in every mode (the tests compare
them token for token).
"""

from __future__ import annotations

import contextlib
import inspect
import logging
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import torch

from instructkit.decoding.engine import lean, packed
from instructkit.decoding.engine.attention import PACKED, Join, Plan, additive, register_packed_attention
from instructkit.decoding.engine.drafts import SuffixDrafts, after_check, draft_order, propose_drafts
from instructkit.decoding.engine.kv_buffers import Lane, cache_of, slot_layer_class
from instructkit.decoding.engine.prefix_cache import PrefixCache, common_prefix
from instructkit.decoding.engine.requests import Request
from instructkit.decoding.engine.sampling import Sampling, sample

log = logging.getLogger("instructkit.serve")

SHARED_PREFIX_WAIT = 32
"""Tokens a joining prompt must share with another prompt prefilled in the same step (beyond what the prefix
cache holds) to wait one step and take them from the cache instead: 32 tokens cost about 100 ms to prefill
on the bundled model (2 cores), a step's wait about as much, and few-shot prompts share hundreds (the 6
Self-Instruct classification prompts of a round share 300 of their 330 tokens)."""


class ModelRunner:
    """Forward passes over lanes of requests. ``activate(lane)`` returns a context manager that makes the
    model run with that lane's adapter (``None``: the base model); a model without adapters needs none.
    Every method but the constructor runs on the engine's thread."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        activate: Callable[[str | None], AbstractContextManager] | None = None,
        prefix_cache_mb: float = 256,
        draft_tokens: int = 2,
        suffix_draft_tokens: int = 16,
        packed_weights: bool = True,
    ):
        self.model = model
        self.packed_weights = packed_weights  # oneDNN's prepacked fp32 linears while running (packed.py)
        self._packed_layers: list[Any] = []
        self.tokenizer = tokenizer
        self.activate = activate or (lambda lane: contextlib.nullcontext())
        self.device = next(model.parameters()).device
        eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
        eos = [eos] if isinstance(eos, int) else list(eos or [])
        if tokenizer.eos_token_id is not None:
            eos.append(tokenizer.eos_token_id)
        self.eos = set(eos)
        # transformers 5.2x renamed ``past_key_values`` to ``cache`` (the old name warns, then goes away)
        params = inspect.signature(self._inner().forward).parameters  # PEFT passes it on
        self._cache_arg = "cache" if "cache" in params else "past_key_values"
        self.context_length = int(getattr(model.config, "max_position_embeddings", 0) or 0) or None
        self._lanes: dict[str | None, Lane] = {}
        self._batchable: bool | None = None  # decided on the first prefill (the model's cache layout)
        self.prefix_cache = PrefixCache(int(prefix_cache_mb * 2**20)) if prefix_cache_mb > 0 else None
        self._slot: type | None = None  # the in-place cache layer class (made once, on first use)
        self._packed = False  # prompts are prefilled inside decoding steps (decided by the start-up probe)
        self._lean = False  # packed steps run lean.forward, not the model's own (decided by the probe)
        self._attn_before: str | None = None  # the model's attention implementation before packing
        self._kv: tuple[int, int, torch.dtype] | None = None  # key/value heads, head dim, dtype
        self.stats: dict[str, Any] = {"requests": 0, "finished": 0, "cancelled": 0, "steps": 0, "max_rows": 0}
        self.stats["busy_s"] = 0.0  # seconds spent prefilling and decoding (the rest: waiting for work)
        self.stats.update(packed_prompts=0, draft_tokens=0, accepted_tokens=0, lean_forward=False)
        self.draft_tokens = draft_tokens  # prompt-lookup draft tokens per greedy row and step (0: none)
        self.suffix_draft_tokens = suffix_draft_tokens  # drafts from earlier requests' sequences (0: none)
        self.suffix_drafts = SuffixDrafts() if suffix_draft_tokens > 0 else None

    def _inner(self) -> Any:
        return self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model

    def _lane(self, name: str | None) -> Lane:
        lane = self._lanes.get(name)
        if lane is None:
            lane = self._lanes[name] = Lane(name)
        return lane

    # ---------------------------------------------------------------- how steps share a pass
    @torch.inference_mode()
    def _probe(self) -> None:
        """Decide, on a 4-token prompt, how requests share forward passes.

        A model whose cache is a plain key/value list per layer is batched. One whose attention goes through
        transformers' attention interface (``sdpa`` today) is also *packed*: a joining prompt is prefilled
        inside the next decoding step instead of in a forward pass of its own. Each forward pass reads every
        weight once (~55 ms of a ~100 ms 8-row step of the bundled model on one thread), so a prompt that
        rides along costs only its tokens' share. The packed path must give the plain forward's logits on the
        probe (max abs diff <= 1e-4 in fp32), or the engine keeps the plain path and says why."""
        ids = torch.arange(1, 5, device=self.device)[None]
        with self.activate(None):
            out = self.model(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=True)
        layers = getattr(cache_of(out), "layers", None)
        from transformers.cache_utils import DynamicLayer

        self._batchable = bool(layers) and all(type(layer) is DynamicLayer for layer in layers)
        if not self._batchable:
            log.warning("this model's KV cache is not a plain key/value list: serving one request at a time")
            return
        keys = layers[0].keys
        self._kv = (keys.shape[1], keys.shape[3], keys.dtype)
        inner = self._inner()
        before = getattr(inner.config, "_attn_implementation", None)
        if before != "sdpa" or not getattr(inner, "_supports_attention_backend", False):
            log.info("attention is %s: prompts are prefilled in passes of their own", before)
            return
        register_packed_attention()
        inner.set_attn_implementation(PACKED)
        if inner.config._attn_implementation != PACKED:
            return
        self._attn_before, self._packed = before, True
        probe = Request(ids[0].tolist(), Sampling(), None, self.eos, deltas=False)
        join = self._new_join(probe, 0, None)
        try:
            logits = self._forward(Lane(None), [join])
            diff = float((logits[0].float() - out.logits[0, -1].float()).abs().max())
            why = f"differs from the plain forward ({diff:.2e})"
            ok = diff <= (1e-4 if logits.dtype == torch.float32 else 5e-2)  # half precision rounds more
        except Exception as e:  # an attention variant the plan does not cover (e.g. soft-capped scores)
            ok, why = False, f"failed ({type(e).__name__}: {e})"
        if not ok:
            log.warning("packed prefill %s: prefilling each prompt in a pass of its own", why)
            inner.set_attn_implementation(before)
            self._attn_before, self._packed = None, False
            return
        self._lean = self._probe_lean(probe, logits)
        self.stats["lean_forward"] = self._lean

    def _probe_lean(self, probe: Request, want: torch.Tensor) -> bool:
        """Whether packed steps can run :func:`~instructkit.decoding.engine.lean.forward`: the model is one it
        covers, and on the probe it gives the model's own forward's logits (``want``) to the bit."""
        why = lean.supported(self._inner())
        if why is None:
            self._lean = True
            try:
                got = self._forward(Lane(None), [self._new_join(probe, 0, None)])
                if not torch.equal(got, want):
                    why = f"its logits differ from the model's own forward ({float((got - want).abs().max()):.2e})"
            except Exception as e:  # a Llama variant it does not cover
                why = f"it failed ({type(e).__name__}: {e})"
            self._lean = False
        if why is not None:
            log.info("packed steps run the model's own forward: the written-out one does not apply (%s)", why)
        return why is None

    def _pack_weights(self) -> None:
        """Route the model's linear layers through oneDNN's prepacked weights (:mod:`~instructkit.decoding.
        engine.packed`), where the engine was asked to and the model is fp32 on a CPU."""
        if self.packed_weights and not self._packed_layers:
            self._packed_layers = packed.install(self.model)
        self.stats["packed_weights"] = bool(self._packed_layers)

    def _restore_attention(self) -> None:
        """Give the model back with the attention implementation and the linear layers it came with."""
        packed.restore(self._packed_layers)
        self._packed_layers = []
        self._lean = self.stats["lean_forward"] = False
        if self._attn_before is not None:
            self._inner().set_attn_implementation(self._attn_before)
            self._attn_before, self._packed = None, False

    # ---------------------------------------------------------------- separate prefill, then decode
    @torch.inference_mode()
    def _prefill(self, req: Request) -> None:
        ids = torch.as_tensor([req.prompt_ids], dtype=torch.long, device=self.device)
        reused, past = 0, None
        if self.prefix_cache is not None and self._batchable:
            reused, past = self.prefix_cache.lookup(req.lane, req.prompt_ids)
        extra: dict[str, Any] = {}
        if past is not None:
            from transformers import DynamicCache

            cache = DynamicCache(config=self.model.config)
            for layer, (k, v) in zip(cache.layers, past, strict=False):
                layer.lazy_initialization(k, v)
                layer.keys, layer.values = k, v
            positions = torch.arange(reused, ids.shape[1], device=self.device)[None]
            extra = {self._cache_arg: cache, "position_ids": positions}
        with self.activate(req.lane):
            out = self.model(
                input_ids=ids[:, reused:],
                attention_mask=torch.ones_like(ids),
                use_cache=True,
                logits_to_keep=1,
                **extra,
            )
        cache = cache_of(out)
        layers = getattr(cache, "layers", None)
        if self._batchable is None:
            from transformers.cache_utils import DynamicLayer

            self._batchable = bool(layers) and all(type(layer) is DynamicLayer for layer in layers)
            if not self._batchable:
                log.warning(
                    "this model's KV cache is not a plain key/value list: serving one request at a time"
                )
        kv = [[layer.keys, layer.values] for layer in layers] if layers else None
        if self.prefix_cache is not None and self._batchable and kv is not None:
            self.prefix_cache.store(req.lane, req.prompt_ids, kv)
        token = self._sample(out.logits[:, -1, :], [req])[0]
        if self._take(req, token):
            return
        lane = self._lane(req.lane)
        if not self._batchable or kv is None:
            lane.rows.append(req)
            lane.cache = cache
            lane.next_tokens = torch.tensor([token])
            lane.positions = torch.tensor([len(req.prompt_ids)])
            lane.mask = torch.ones((1, len(req.prompt_ids)), dtype=torch.long)
            return
        self._join_all(lane, [(req, kv, token)])

    def _join_all(self, lane: Lane, new: list[tuple[Request, list[list[torch.Tensor]], int]]) -> None:
        """Merge prefilled rows into the lane's batch (:meth:`Lane.join`)."""
        if not new:
            return
        lane.join(new)
        self.stats["max_rows"] = max(self.stats["max_rows"], len(lane.rows))

    def _drop_cancelled(self, lane: Lane, drop_empty: bool) -> bool:
        """Finish the rows whose client left, before spending a forward on them; True if there were any."""
        gone = [i for i, r in enumerate(lane.rows) if r.cancelled]
        for i in gone:
            self.stats["cancelled"] += 1
            lane.rows[i].finish("cancelled")
        if gone:
            self._keep(lane, [i for i in range(len(lane.rows)) if i not in gone], drop_empty=drop_empty)
        return bool(gone)

    @torch.inference_mode()
    def _decode(self, lane: Lane) -> None:
        if self._drop_cancelled(lane, drop_empty=True) and not lane.rows:
            return
        batch = len(lane.rows)
        used = lane.length
        mask = torch.cat([lane.mask, torch.ones((batch, 1), dtype=torch.long)], dim=1)
        if self._batchable:
            from transformers import DynamicCache

            lane.ensure_room(1)
            cache = DynamicCache(config=self.model.config)
            slot = self._slot or slot_layer_class()
            self._slot = slot
            cache.layers = [slot(k, v, used) for k, v in lane.layers]
        else:
            cache = lane.cache
        with self.activate(lane.name):
            out = self.model(
                input_ids=lane.next_tokens[:, None].to(self.device),
                attention_mask=mask.to(self.device),
                position_ids=lane.positions[:, None].to(self.device),
                **{self._cache_arg: cache},
                use_cache=True,
                logits_to_keep=1,
            )
        self.stats["steps"] += 1
        lane.mask = mask
        lane.positions = lane.positions + 1
        tokens = self._sample(out.logits[:, -1, :], lane.rows)
        keep = [
            i for i, (req, tok) in enumerate(zip(lane.rows, tokens, strict=True)) if not self._take(req, tok)
        ]
        lane.next_tokens = torch.tensor(tokens, dtype=torch.long)
        if len(keep) < batch:
            self._keep(lane, keep)

    def _keep(self, lane: Lane, keep: list[int], drop_empty: bool = True) -> None:
        """Keep only rows ``keep`` (:meth:`Lane.keep`); a lane left empty goes, unless ``drop_empty`` is off."""
        if not keep and drop_empty:
            self._lanes.pop(lane.name, None)
        lane.keep(keep, self.device, bool(self._batchable))

    # ---------------------------------------------------------------- packed steps
    def _new_join(self, req: Request, reused: int, past: list[list[torch.Tensor]] | None) -> Join:
        assert self._kv is not None
        layers = len(past) if past is not None else int(self.model.config.num_hidden_layers)
        return Join.create(req, reused, past, layers, self._kv, self.device)

    def _forward(
        self, lane: Lane, joins: list[Join], drafts: dict[int, list[int]] | None = None
    ) -> torch.Tensor:
        """One forward pass over the lane's decoding rows, their draft tokens and the joining prompts' new
        tokens, as one flat sequence. Returns the logits of every row's next token, then of every draft token
        (row by row), then of each joining prompt's last token. Appends the rows' new column to the mask
        (the draft columns are the caller's: only it knows which were accepted)."""
        assert self._kv is not None  # set by the start-up probe, before any packed step
        drafts = drafts or {}
        rows = len(lane.rows)
        used = lane.length
        widest = max((len(d) for d in drafts.values()), default=0)
        mask = None
        plan_drafts = []
        if rows:
            lane.ensure_room(1 + widest)  # the buffers are full: grow them (amortised)
            lane.mask = torch.cat([lane.mask, torch.ones((rows, 1), dtype=torch.long)], dim=1)
            seen = lane.mask.bool().to(self.device)
            mask = additive(seen[:, None, None, :], self._kv[2])
            for k in sorted({len(d) for d in drafts.values()}):
                group = [row for row in draft_order(drafts) if len(drafts[row]) == k]
                index = torch.tensor(group, device=self.device)
                causal = torch.ones((k, k), dtype=torch.bool, device=self.device).tril()
                past = seen[index][:, None].expand(-1, k, -1)
                group_mask = torch.cat([past, causal.expand(len(group), -1, -1)], dim=2)
                if group == list(range(group[0], group[0] + len(group))):  # the plan reads a view
                    index = slice(group[0], group[0] + len(group))
                plan_drafts.append((index, k, additive(group_mask[:, None], self._kv[2])))
        order = draft_order(drafts)
        ids = [lane.next_tokens] + [torch.tensor(drafts[row]) for row in order]
        ids += [torch.tensor(j.req.prompt_ids[j.m :]) for j in joins]
        positions = [lane.positions]
        positions += [torch.arange(1, len(drafts[row]) + 1) + lane.positions[row] for row in order]
        positions += [torch.arange(j.m, j.n) for j in joins]
        keep = list(range(rows + sum(len(d) for d in drafts.values())))
        at = len(keep)
        for j in joins:
            at += j.n - j.m
            keep.append(at - 1)
        plan = Plan(lane, used, mask, plan_drafts, joins)
        input_ids, position_ids = (
            torch.cat(ids)[None].to(self.device),
            torch.cat(positions)[None].to(self.device),
        )
        with self.activate(lane.name):
            if self._lean:
                return lean.forward(
                    self._inner(), input_ids, position_ids, torch.tensor(keep, device=self.device), plan
                )
            out = self.model(
                input_ids=input_ids,
                position_ids=position_ids,
                # a 4D mask is used as given: transformers builds none (the plan masks each part)
                attention_mask=torch.ones((1, 1, 1, 1), dtype=torch.bool, device=self.device),
                use_cache=False,
                logits_to_keep=torch.tensor(keep, device=self.device),
                instructkit_plan=plan,
            )
        return out.logits[0]

    def _joins(self, lane: Lane) -> tuple[list[Join], list[Request]]:
        """Buffers for the lane's admitted prompts (each starting from the prefix cache's longest match), and
        the prompts that wait one step: one that shares :data:`SHARED_PREFIX_WAIT` or more tokens beyond what
        the cache holds with a prompt prefilled in this step would compute them a second time; a step later
        the cache holds them (a set of few-shot prompts with the same examples prefills them once)."""
        joins: list[Join] = []
        later: list[Request] = []
        for req in lane.pending:
            if req.cancelled:
                self.stats["cancelled"] += 1
                req.finish("cancelled")
                continue
            reused, past = 0, None
            if self.prefix_cache is not None:
                cached = self.prefix_cache.longest(req.lane, req.prompt_ids)[0]
                limit = len(req.prompt_ids) - 1
                shared = max(
                    (common_prefix(req.prompt_ids, j.req.prompt_ids, limit) for j in joins), default=0
                )
                if shared >= cached + SHARED_PREFIX_WAIT:
                    later.append(req)
                    continue
                reused, past = self.prefix_cache.lookup(req.lane, req.prompt_ids)
            joins.append(self._new_join(req, reused, past))
        return joins, later

    @torch.inference_mode()
    def _step(self, lane: Lane) -> None:
        """One packed step: decode every row of the lane (checking its draft tokens, if any) and prefill every
        admitted prompt, in one forward pass."""
        self._drop_cancelled(lane, drop_empty=False)
        joins, later = self._joins(lane)
        if not lane.rows and not joins:
            lane.pending = []
            self._lanes.pop(lane.name, None)
            return
        rows = len(lane.rows)
        drafts = propose_drafts(
            lane.rows,
            draft_tokens=self.draft_tokens,
            suffix_drafts=self.suffix_drafts,
            suffix_draft_tokens=self.suffix_draft_tokens,
            context_length=self.context_length,
        )
        used = lane.length
        logits = self._forward(lane, joins, drafts)  # a failure here fails lane.rows and lane.pending
        lane.pending = later
        self.stats["steps"] += 1
        self.stats["packed_prompts"] += len(joins) if rows else 0
        tokens = self._sample(logits[:rows], lane.rows)
        at = rows
        checked: dict[int, list[int]] = {}
        for row in draft_order(drafts):
            k = len(drafts[row])
            checked[row] = logits[at : at + k].float().argmax(dim=-1).tolist()  # the token after each draft
            at += k
        widest = max((len(d) for d in drafts.values()), default=0)
        if widest:
            lane.mask = torch.cat([lane.mask, torch.zeros((rows, widest), dtype=torch.long)], dim=1)
        keep, last, accepted = [], [], []
        for i, req in enumerate(lane.rows):
            token = tokens[i]
            done = self._take(req, token)
            draft, n = drafts.get(i, []), 0
            while not done and n < len(draft) and draft[n] == token:  # the draft token is what greedy picks
                token = checked[i][n]
                n += 1
                done = self._take(req, token)
            if n:
                lane.mask[i, used + 1 : used + 1 + n] = 1
            self.stats["draft_tokens"] += len(draft)
            self.stats["accepted_tokens"] += n
            req.kept += n if req.looked_up else 0
            after_check(req, len(draft), n, self.suffix_draft_tokens)
            accepted.append(n)
            last.append(token)
            if not done:
                keep.append(i)
        lane.positions = lane.positions + 1 + torch.tensor(accepted, dtype=torch.long)
        lane.next_tokens = torch.tensor(last, dtype=torch.long)
        if len(keep) < rows:
            self._keep(lane, keep, drop_empty=False)
        new = []
        for j, token in zip(joins, self._sample(logits[at:], [j.req for j in joins]), strict=True):
            kv = [[k, v] for k, v in j.layers]
            if self.prefix_cache is not None:
                self.prefix_cache.store(j.req.lane, j.req.prompt_ids, kv)
            if not self._take(j.req, token):
                new.append((j.req, kv, token))
        self._join_all(lane, new)
        if not lane.rows and not lane.pending:
            self._lanes.pop(lane.name, None)

    # ---------------------------------------------------------------- per-row token handling
    def _sample(self, logits: torch.Tensor, rows: list[Request]) -> list[int]:
        return sample(logits, rows)

    def _take(self, req: Request, token: int) -> bool:
        """Record one generated token; deliver the new text; True when the request is finished."""
        if req.cancelled:
            self.stats["cancelled"] += 1
            req.finish("cancelled")
            return True
        reason = req.append(token, self.tokenizer, self.context_length)
        return self._done(req, reason) if reason is not None else False

    def _done(self, req: Request, reason: str) -> bool:
        req.flush()
        self.stats["finished"] += 1
        if self.suffix_drafts is not None:
            self.suffix_drafts.add(req.lane, req.prompt_ids + req.generated)
        req.finish(reason)
        return True
