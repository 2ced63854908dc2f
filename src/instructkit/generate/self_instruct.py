"""Self-Instruct's pure pieces: seed tasks, the prompts it sends, the parsers of what comes back, and
instance cleaning. No model is called here; a generator wires these to a backend.

Followed (yizhongw/self-instruct, the paper's code release):

* ``bootstrap_instructions.py``: ``encode_prompt`` (a header line, the 8 sampled instructions as
  ``1. ...`` to ``8. ...`` with whitespace squashed and a trailing ":" removed, then ``9.`` for the model
  to continue), the sampling (up to 2 machine-generated instructions, the rest from the seeds, shuffled)
  and ``post_process_gpt3_response`` (split at ``\\n<number>. ``). The paper's figure writes the same list
  as ``Task 9: ...``; both are parsed. Unlike the original, which drops a whole reply cut by the length
  limit and lowercases each instruction (``str.capitalize``), only the cut last item is dropped (with
  a reason) and the text keeps its case.
* ``identify_clf_or_not.py`` / ``templates/clf_task_template.py``: few-shot "is it classification?"
  with Yes/No answers; ``generate_instances.py`` / ``templates/instance_gen_template.py``: output-first
  (class label, then input) for classification tasks, input-first otherwise, ``Example N`` blocks.
  The few-shot examples here come from the seed tasks, not the original's hand-written templates.
* ``prepare_for_finetuning.py``: instance cleaning (input equal to output, empty output, one input
  with conflicting outputs, duplicates).

Why one file: a generator is one module registered by name (``@register_generator``), the seam a
new generator is added at; its config, prompts, parsing and filtering are one algorithm read top to
bottom, each step following the paper's scripts named above.
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
import re
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from instructkit.config import checked
from instructkit.data.base import build_step
from instructkit.data.filters import instruction_part
from instructkit.generate.backends.base import Reply, Request, Sampling
from instructkit.generate.cache import BudgetExhausted
from instructkit.generate.runner import (
    GenerateConfig,
    GenerationResult,
    GenerationRun,
    Generator,
    register_generator,
    stopped_by_budget,
)
from instructkit.records import Message, Record

SEEDS_FILE = "self_instruct_seeds.jsonl"

INSTRUCTION_HEADER = "Come up with a series of tasks:\n"
CLASSIFICATION_HEADER = "Come up with a series of classification tasks. Try to specify the possible output labels when possible.\n"
CLF_QUESTION = "Is it classification?"
CLF_HEADER = "Can the following task be regarded as a classification task with finite output labels?\n\n"
INPUT_FIRST_HEADER = (
    "Come up with examples for the following tasks. Try to generate multiple examples when possible. "
    "If the task doesn't require additional input, you can generate the output directly.\n\n"
)
OUTPUT_FIRST_HEADER = (
    "Given the classification task definition and the class labels, generate an input that corresponds "
    "to each of the class labels. If the task doesn't require input, just generate the correct class "
    "label.\n\n"
)


@dataclass
class Instance:
    input: str
    output: str


@dataclass
class SeedTask:
    """One task in Self-Instruct's shape."""

    instruction: str
    instances: list[Instance] = field(default_factory=list)
    is_classification: bool = False


@dataclass
class Rejected:
    """Something a parser or cleaner refused, kept with its reason (never dropped silently)."""

    text: str
    reason: str
    detail: str = ""


def default_seeds_path() -> Path:
    return Path(str(resources.files("instructkit.generate").joinpath("seeds", SEEDS_FILE)))


def load_seed_tasks(path: str | Path | None = None, fmt: str | None = None) -> list[SeedTask]:
    """Seed tasks from ``path`` (the bundled set when None), in any format instructkit reads.

    Self-Instruct files keep their tasks; records of other formats become tasks by their instruction
    (:func:`~instructkit.data.filters.instruction_part`), the rest of the first user turn as the input and
    the reply as the output; records sharing an instruction become one task's instances."""
    from instructkit.formats import read_records

    records = read_records(path if path is not None else default_seeds_path(), fmt=fmt)
    tasks: dict[str, SeedTask] = {}
    for rec in records:
        instruction = instruction_part(rec)
        if not instruction:
            continue
        rest = rec.first_instruction().strip()[len(instruction) :].strip()
        task = tasks.setdefault(
            instruction,
            SeedTask(instruction, [], bool(rec.meta.get("is_classification", False))),
        )
        task.instances.append(Instance(rest, rec.reply_text()))
    return list(tasks.values())


def _squash(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def sample_prompt_instructions(
    seeds: list[str], generated: list[str], rng: random.Random, n: int = 8, n_generated: int = 2
) -> list[str]:
    """The instructions one request shows: up to ``n_generated`` from those generated so far, the rest
    from the seeds, shuffled (as ``bootstrap_instructions.py``, with a caller-seeded ``rng``)."""
    shown = rng.sample(generated, min(n_generated, len(generated)))
    need = n - len(shown)
    if len(seeds) < need:
        raise ValueError(f"a prompt shows {n} instructions; {len(seeds)} seed tasks is too few (need {need})")
    shown += rng.sample(seeds, need)
    rng.shuffle(shown)
    return shown


def instruction_prompt(instructions: list[str], classification: bool = False) -> str:
    """Self-Instruct's ``encode_prompt``: the header, ``1. ...`` to ``8. ...``, then ``9.`` to continue."""
    prompt = CLASSIFICATION_HEADER if classification else INSTRUCTION_HEADER
    for i, inst in enumerate(instructions, 1):
        prompt += f"{i}. {_squash(inst).rstrip(':')}\n"
    return prompt + f"{len(instructions) + 1}."


# A new item: "9. ...", "9 . ...", "9) ..." or "Task 9: ..." at the start of a line.
# The number must be followed by a space or the line's end, so "3.14 is pi" continues an item.
_ITEM = re.compile(r"^[ \t]*(?:task\s*(\d+)\s*[:.]|(\d+)\s?[.)](?=\s|$))[ \t]*", re.IGNORECASE | re.MULTILINE)


# A model that restarts the list inside an item ("9. 1. Use ...") leaves numbers at the item's start.
_LEADING_NUMBERS = re.compile(r"^(?:\d+\s?[.)]\s*)+")


def parse_instructions(
    reply: str, finish_reason: str | None = "stop", first_number: int = 9
) -> tuple[list[str], list[Rejected]]:
    """The instructions of a reply that continues the numbered list, and what was refused.

    The reply usually starts right after the prompt's ``9.`` (no number), then ``10. ...``; a reply that
    restates ``9.`` or uses ``Task 9:`` lines parses the same. Lines without a number continue the item
    before them. When the reply was cut by the length limit (``finish_reason == "length"``) its last item
    is incomplete and is refused as ``truncated``."""
    items: list[str] = []
    starts = list(_ITEM.finditer(reply))
    head = reply[: starts[0].start()] if starts else reply
    if head.strip():
        items.append(head)
    for i, m in enumerate(starts):
        end = starts[i + 1].start() if i + 1 < len(starts) else len(reply)
        items.append(reply[m.end() : end])
    kept: list[str] = []
    rejected: list[Rejected] = []
    for i, raw in enumerate(items):
        text = _LEADING_NUMBERS.sub("", _squash(raw))
        if i == len(items) - 1 and finish_reason == "length":
            rejected.append(Rejected(text, "truncated", "the reply hit the length limit"))
        elif not text:
            rejected.append(Rejected(raw, "empty_item"))
        else:
            kept.append(text)
    if not items:
        rejected.append(Rejected(reply, "no_instructions", "the reply holds no list item"))
    return kept, rejected


def classification_prompt(instruction: str, examples: list[SeedTask], n_examples: int = 12) -> str:
    """The few-shot "is it classification?" prompt, examples from the seeds (both answers shown)."""
    clf = [t for t in examples if t.is_classification][: n_examples // 2]
    gen = [t for t in examples if not t.is_classification][: n_examples - len(clf)]
    shots = [t for pair in zip(gen, clf, strict=False) for t in pair] + gen[len(clf) :] + clf[len(gen) :]
    prompt = CLF_HEADER
    for t in shots:
        prompt += (
            f"Task: {_squash(t.instruction)}\n{CLF_QUESTION} {'Yes' if t.is_classification else 'No'}\n\n"
        )
    return prompt + f"Task: {_squash(instruction)}\n{CLF_QUESTION}"


def parse_classification(reply: str) -> bool | Rejected:
    """Yes/No (first word, any case) → bool; anything else is refused with a reason (the generator then
    treats the task as not classification, as the original does)."""
    m = re.match(r"\W*(yes|no)\b", reply.strip(), re.IGNORECASE)
    if m is None:
        return Rejected(reply, "unparseable_classification", "expected Yes or No")
    return m.group(1).lower() == "yes"


def _example_block(task: SeedTask, output_first: bool) -> str:
    out = f"Task: {_squash(task.instruction)}\n"
    for i, inst in enumerate(task.instances, 1):
        if output_first:
            out += f"Class label: {inst.output.strip()}\n"
            if inst.input.strip():
                out += f"Input: {inst.input.strip()}\n"
        else:
            out += f"Example {i}\n"
            if inst.input.strip():
                out += f"Input: {inst.input.strip()}\n"
            out += f"Output: {inst.output.strip()}\n"
    return out + "\n"


def instance_prompt(instruction: str, is_classification: bool, examples: list[SeedTask]) -> str:
    """Output-first (class label, then an input for it) for classification tasks, input-first
    (``Example N`` with ``Input:``/``Output:``) otherwise; few-shot from seed tasks of the same kind."""
    same = [t for t in examples if t.is_classification == is_classification and t.instances]
    prompt = OUTPUT_FIRST_HEADER if is_classification else INPUT_FIRST_HEADER
    prompt += "".join(_example_block(t, is_classification) for t in same)
    return prompt + f"Task: {_squash(instruction)}\n"


_FIELD = re.compile(r"^\s*(input|output|class label)\s*:\s*", re.IGNORECASE | re.MULTILINE)


def _fields(block: str) -> dict[str, str]:
    out: dict[str, str] = {}
    marks = list(_FIELD.finditer(block))
    for i, m in enumerate(marks):
        end = marks[i + 1].start() if i + 1 < len(marks) else len(block)
        out.setdefault(m.group(1).lower(), block[m.end() : end].strip())
    return out


def parse_instances(
    reply: str, is_classification: bool, finish_reason: str | None = "stop"
) -> tuple[list[Instance], list[Rejected]]:
    """Instances from an instance-generation reply (``Example N`` blocks with ``Input:``/``Output:``, or
    ``Class label:`` blocks each followed by its ``Input:``). Text after a new ``Task:`` is ignored (the
    model started another task). A last block cut by the length limit is refused as ``truncated``."""
    reply = re.split(r"^\s*Task\s*:", reply, maxsplit=1, flags=re.MULTILINE)[0]
    if is_classification:
        blocks = re.split(r"^(?=\s*class label\s*:)", reply, flags=re.IGNORECASE | re.MULTILINE)
    else:
        blocks = re.split(r"^\s*Example\s*\d+\s*:?\s*$", reply, flags=re.IGNORECASE | re.MULTILINE)
    blocks = [b for b in blocks if b.strip()]
    kept: list[Instance] = []
    rejected: list[Rejected] = []
    for i, block in enumerate(blocks):
        if i == len(blocks) - 1 and finish_reason == "length":
            rejected.append(Rejected(block.strip(), "truncated", "the reply hit the length limit"))
            continue
        f = _fields(block)
        if is_classification:
            if "class label" not in f:
                rejected.append(Rejected(block.strip(), "malformed_instance", "no 'Class label:'"))
                continue
            kept.append(Instance(f.get("input", ""), f["class label"]))
        elif "output" in f:
            kept.append(Instance(f.get("input", ""), f["output"]))
        elif "input" not in f and len(blocks) == 1:
            kept.append(Instance("", block.strip()))  # the task needs no input: the reply is the output
        else:
            rejected.append(Rejected(block.strip(), "malformed_instance", "no 'Output:'"))
    if not blocks:
        rejected.append(Rejected(reply, "no_instances", "the reply holds no instance"))
    return kept, rejected


def clean_instances(
    instances: list[Instance], instruction: str | None = None
) -> tuple[list[Instance], list[Rejected]]:
    """Self-Instruct's instance cleaning: an empty output, an output equal to its input (case and
    whitespace ignored), and every instance of an input given conflicting outputs are refused; exact
    repeats are refused as duplicates (the first is kept). With ``instruction``, an output that only
    repeats (a part of) the instruction is refused too: small models echo the task instead of doing it
    (the bundled SmolLM2 did so for 2 of the 3 tasks of a demo run). Outputs under 20 characters are
    exempt, so a class label the instruction names ("positive or negative") is not refused."""
    outputs: dict[str, set[str]] = defaultdict(set)
    for inst in instances:
        outputs[_squash(inst.input)].add(_squash(inst.output))
    kept: list[Instance] = []
    rejected: list[Rejected] = []
    seen: set[tuple[str, str]] = set()
    for inst in instances:
        text = f"Input: {inst.input}\nOutput: {inst.output}"
        key = (_squash(inst.input), _squash(inst.output))
        if not key[1]:
            rejected.append(Rejected(text, "empty_output"))
        elif key[0] and key[0].casefold() == key[1].casefold():
            rejected.append(Rejected(text, "input_equals_output"))
        elif instruction is not None and _copies(key[1], instruction):
            rejected.append(Rejected(text, "output_copies_instruction"))
        elif len(outputs[key[0]]) > 1:
            rejected.append(
                Rejected(text, "conflicting_outputs", f"{len(outputs[key[0]])} outputs for one input")
            )
        elif key in seen:
            rejected.append(Rejected(text, "duplicate_instance"))
        else:
            seen.add(key)
            kept.append(inst)
    return kept, rejected


def _letters(text: str) -> str:
    return " ".join(re.sub(r"[^0-9a-z]+", " ", text.casefold()).split())


def _copies(output: str, instruction: str) -> bool:
    """``output`` is (a part of) ``instruction``, case, spacing and punctuation ignored; 20+ characters."""
    out = _letters(output)
    return len(out) >= 20 and out in _letters(instruction)


def task_records(
    instruction: str,
    instances: list[Instance],
    is_classification: bool,
    most_similar: list[tuple[str, float]] | None = None,
    **meta: Any,
) -> list[Record]:
    """Canonical records of one generated task (one per instance), with the Self-Instruct fields in
    ``meta`` (``is_classification``, ``group``, ``most_similar``) so the self-instruct writer can regroup
    them into one task object."""
    from instructkit.formats.base import join_prompt

    group = meta.pop("group", None) or hashlib.sha256(instruction.encode()).hexdigest()[:16]
    similar = [{"instruction": t, "rouge_l": s} for t, s in most_similar or []]
    return [
        Record(
            messages=[
                Message("user", join_prompt(instruction, inst.input)),
                Message("assistant", inst.output),
            ],
            meta={
                "id": f"{group}#{i}",
                "group": group,
                "is_classification": is_classification,
                "most_similar": similar,
                **meta,
            },
        ).validated()
        for i, inst in enumerate(instances)
    ]


# -- the generator --------------------------------------------------------------------------------------


def _default_filters() -> list[Any]:
    from instructkit.data.instruction_filters import INSTRUCTION_FILTERS

    return list(INSTRUCTION_FILTERS)


@dataclass
class SelfInstructConfig(GenerateConfig):
    """``instructkit generate self-instruct``: Self-Instruct's bootstrap loop (module docstring)."""

    seeds: str | None = None
    """Seed tasks: a file in any format instructkit reads (Self-Instruct's ``instruction``/``instances``/
    ``is_classification`` keep their tasks); null: the bundled set of 48 tasks."""
    seeds_format: str | None = None
    """Format of the seeds file; detected from the content when null."""
    n: int = checked(20, ge=1)
    """Instructions to make (each with its instances); the run stops once this many are kept."""
    requests_per_round: int = checked(8, ge=1)
    """Instruction requests per round (they go out together: one batch, or this many in flight)."""
    max_rounds: int = checked(50, ge=1)
    """Stop after this many rounds even short of ``n`` (a model that never yields a usable instruction)."""
    shown: int = checked(8, ge=2)
    """Instructions each request shows as a numbered list (Self-Instruct: 8)."""
    shown_generated: int = checked(2, ge=0)
    """Of those, at most this many are generated ones once there are any (Self-Instruct: 2); the rest seeds."""
    filters: list[Any] = field(default_factory=_default_filters)
    """Filters each candidate instruction passes, in order: data step names or ``{step: NAME, ...}``
    (``rouge_novelty`` compares with the seeds and every instruction kept so far, across rounds)."""
    instruction_sampling: Sampling = field(
        default_factory=lambda: Sampling(0.7, 0.5, 128, ("\n\n", "\n16", "16.", "16 ."))
    )
    """Sampling of the instruction requests (Self-Instruct: temperature 0.7, top_p 0.5, these stops; max_tokens
    128 here instead of 1024 — a reply cut by the limit loses only its last item, and small local models
    ramble)."""
    classify_sampling: Sampling = field(default_factory=lambda: Sampling(0.0, 1.0, 3))
    """Sampling of the "is it classification?" requests (Self-Instruct: greedy, 3 tokens)."""
    instance_sampling: Sampling = field(
        default_factory=lambda: Sampling(0.0, 1.0, 300, ("Example 6", "Task:"))
    )
    """Sampling of the instance requests (Self-Instruct: greedy, 300 tokens, these stops)."""
    classify_examples: int = checked(12, ge=2)
    """Seed tasks shown as few-shot examples in the classification prompt."""
    instance_examples: int = checked(3, ge=1)
    """Seed tasks of the same kind (classification or not) shown in the instance prompt."""


@register_generator
class SelfInstructGenerator(Generator):
    """Self-Instruct (Wang et al., 2023) rounds: ask for new instructions (6 seeds + 2 generated shown), filter
    them (length, blacklist, "Write a program", odd starts, ROUGE-L novelty), ask whether each is a
    classification task, ask for its instances (output-first for classification), clean them.

    The order of requests depends only on the config, the seed and the replies before them (prompts are
    sampled with ``Random(f"{seed}:{round}:{i}")``), so a rerun asks the same requests and the cache answers
    them. An accepted instruction joins the prompt pool and the similarity index at once (as the original,
    whose instruction pass runs before the instance pass); one that then gets no usable instance is rejected
    as ``no_valid_instances`` but stays in the pool. A round's instance requests go out together with the next
    round's instruction requests when that round surely comes (``run``), so a backend that batches (``local``,
    a server) decodes them in the same steps; the files are those of one round after the other."""

    name = "self-instruct"
    config = SelfInstructConfig
    unit = "instruction"
    files = ("seeds",)
    pipelined = True
    """Send a round's instance requests with the next round's instruction requests when that round surely
    comes (``run``); False: one round after the other (the tests compare the two)."""

    def run(self, cfg: SelfInstructConfig, run: GenerationRun) -> GenerationResult:
        from instructkit.data.base import DatasetStep, Filter, Mapper
        from instructkit.data.instruction_filters import RougeNovelty
        from instructkit.data.similarity import SimilarityIndex
        from instructkit.generate.runner import GenerateConfigError

        seeds = load_seed_tasks(cfg.seeds, cfg.seeds_format)
        seed_texts = [t.instruction for t in seeds]
        need = cfg.shown - min(cfg.shown_generated, cfg.shown)
        if len(seeds) < need:
            raise GenerateConfigError(
                f"{{key}}: {len(seeds)} seed tasks, but each prompt shows {need} seeds (shown - shown_generated)",
                key="seeds",
            )
        steps = [build_step(s, prefix=f"filters[{i}]") for i, s in enumerate(cfg.filters)]
        per_record = [s for s in steps if isinstance(s, Filter | Mapper)]
        novelty = [s for s in steps if isinstance(s, RougeNovelty)]
        for i, s in enumerate(steps):
            if isinstance(s, DatasetStep) and not isinstance(s, RougeNovelty):
                raise GenerateConfigError(
                    f"{{key}}: {s.name} looks at a whole dataset; candidates arrive a few at a time, so only "
                    "per-record steps and rouge_novelty can filter them",
                    key=f"filters[{i}]",
                )
        index = SimilarityIndex(list(seed_texts))
        pool: list[str] = []  # generated instructions kept so far (shown in later prompts)
        records: list[Record] = []
        done = 0
        stopped = ""
        self._open: list[str] = []  # this round's accepted instructions not yet kept or rejected
        self.answers: Counter[str] = Counter()  # the "is it classification?" answers: yes, no, unclear
        # Pipelining: the next round's instruction requests depend only on the pool, which is final once this
        # round's instructions are accepted, so when that round surely comes (the target cannot be reached by
        # this round's tasks, and it is not the last round) they go out with this round's instance requests
        # and decode in the same steps; every reply is processed in the order the rounds would process it, so
        # the records, the rejects and the card are those of one round after the other. Not with a token
        # budget: which request spends the last tokens would then depend on how requests were grouped.
        pipelined = self.pipelined and run.budget_tokens is None
        # this round's instruction replies, when they came with the last round's instance requests
        ahead: list[Reply] | None = None
        try:
            for rnd in range(cfg.max_rounds):
                if done >= cfg.n:
                    break
                if ahead is None:
                    ahead = run.complete(self._instruction_requests(cfg, rnd, seed_texts, pool))
                accepted = self._instructions(cfg, run, rnd, ahead, per_record, novelty, index, done)
                pool.extend(t for t, _ in accepted)
                self._open = [t for t, _ in accepted]
                sure = pipelined and done + len(accepted) < cfg.n and rnd + 1 < cfg.max_rounds
                following = self._instruction_requests(cfg, rnd + 1, seed_texts, pool) if sure else []
                made, ahead = self._instances(cfg, run, rnd, seeds, accepted, following)
                for recs in made:
                    records.extend(recs)
                done += len(made)
            else:
                stopped = f"max_rounds ({cfg.max_rounds}) reached with {done} of {cfg.n} instructions"
        except BudgetExhausted as e:
            stopped = stopped_by_budget(e, done, cfg.n, self.unit)
            for text in self._open:  # accepted this round, their instances not asked: said, not dropped
                run.reject(
                    "budget", "budget_spent", text, "accepted, but the budget ran out before its instances"
                )
        stopped = stopped or f"reached {done} instructions"
        extra = {"instructions": done, "classification_answers": dict(self.answers)}
        return run.finish(records, stopped, kept=done, extra=extra)

    # one round's instruction requests: 8 prompts, each showing instructions sampled from the seeds and the pool
    def _instruction_requests(self, cfg, rnd, seed_texts, pool) -> list[Request]:  # noqa: ANN001
        requests = []
        for i in range(cfg.requests_per_round):
            rng = random.Random(f"{cfg.seed}:{rnd}:{i}")
            shown = sample_prompt_instructions(seed_texts, pool, rng, cfg.shown, cfg.shown_generated)
            sampling = dataclasses.replace(cfg.instruction_sampling, seed=cfg.seed + rnd)
            requests.append(Request([{"role": "user", "content": instruction_prompt(shown)}], sampling))
        return requests

    # one round's instruction pass over its replies: parsing, filters, novelty; returns (instruction, most similar)
    def _instructions(self, cfg, run, rnd, replies, per_record, novelty, index, done):  # noqa: ANN001
        candidates: list[Record] = []
        for i, reply in enumerate(replies):
            if not reply.ok:
                run.offered()
                run.reject("parse", "request_failed", reply.text, reply.error, round=rnd, request=i)
                continue
            kept, refused = parse_instructions(reply.text, reply.finish_reason, cfg.shown + 1)
            run.offered(len(kept) + len(refused))
            for r in refused:
                run.reject("parse", r.reason, r.text, r.detail, round=rnd, request=i)
            run.passed("parse", len(kept))
            candidates += [
                Record(messages=[Message("user", t)], meta={"round": rnd, "request": i}) for t in kept
            ]
        candidates = run.filter(per_record, candidates)
        accepted: list[tuple[str, list[tuple[str, float]]]] = []
        for rec in candidates:
            text = instruction_part(rec)
            if done + len(accepted) >= cfg.n:
                run.reject("target", "target_reached", text, f"{cfg.n} instructions already kept", record=rec)
                continue
            similar: list[tuple[str, float]] = []
            for step in novelty:
                verdict = step.judge(index, text)
                if verdict.reason:
                    run.reject(step.name, verdict.reason, text, verdict.detail, record=rec)
                    break
                run.passed(step.name, params=step.params())
                similar = [(m["instruction"], m["rouge_l"]) for m in verdict.meta["most_similar"]]
            else:
                accepted.append((text, similar))
        return accepted

    # one round's instance pass: classification, then instances (sent with ``following``, the next round's
    # instruction requests); returns the records of each task kept, and the replies to ``following`` (None
    # when there were none)
    def _instances(self, cfg, run, rnd, seeds, accepted, following):  # noqa: ANN001
        def ask(prompts: list[str], sampling: Sampling, first: Sequence[Request] = ()) -> list[Reply]:
            sampling = dataclasses.replace(sampling, seed=cfg.seed + rnd)
            return run.complete(
                [*first, *(Request([{"role": "user", "content": p}], sampling) for p in prompts)]
            )

        shots = (
            seeds[: cfg.classify_examples]
            if len(seeds) <= cfg.classify_examples
            else _spread(seeds, cfg.classify_examples)
        )
        verdicts = ask(
            [classification_prompt(t, shots, cfg.classify_examples) for t, _ in accepted],
            cfg.classify_sampling,
        )
        classified: list[tuple[str, list[tuple[str, float]], bool]] = []
        for (text, similar), reply in zip(accepted, verdicts, strict=True):
            self._open.remove(text)
            if not reply.ok:
                run.reject("classify", "request_failed", text, reply.error, round=rnd)
                continue
            # An answer that is not Yes or No means "not classification", as the original
            # (generate_instances.py keeps a task as classification only when the answer is "Yes"); the
            # card counts how often that happened, since small models often answer neither.
            got = parse_classification(reply.text)
            self.answers[("unclear" if isinstance(got, Rejected) else "yes" if got else "no")] += 1
            run.passed("classify")
            classified.append((text, similar, got is True))
        prompts = []
        for text, _, clf in classified:
            same = [t for t in seeds if t.is_classification == clf and t.instances]
            rng = random.Random(f"{cfg.seed}:{rnd}:instances:{text}")
            prompts.append(
                instance_prompt(text, clf, rng.sample(same, min(cfg.instance_examples, len(same))))
            )
        # the next round's instruction requests first: they start decoding at once (with the engine's 8 rows,
        # 31 s against 35 s instance-first and 39 s one call after the other, on round 1's 18 requests)
        replies = ask(prompts, cfg.instance_sampling, following)
        ahead, replies = replies[: len(following)], replies[len(following) :]
        made: list[list[Record]] = []
        self._open = []  # every classified one is kept or rejected below
        for (text, similar, clf), reply in zip(classified, replies, strict=True):
            if not reply.ok:
                run.reject("instances", "request_failed", text, reply.error, round=rnd)
                continue
            parsed, refused = parse_instances(reply.text, clf, reply.finish_reason)
            cleaned, dirty = clean_instances(parsed, text)
            # instance-level stages: they count instances, outside the instruction sum
            run.passed("instance_parse", len(parsed))
            for r in refused:
                run.reject("instance_parse", r.reason, r.text, r.detail, counted=False, instruction=text)
            run.passed("instance_cleaning", len(cleaned))
            for r in dirty:
                run.reject("instance_cleaning", r.reason, r.text, r.detail, counted=False, instruction=text)
            if not cleaned:
                run.reject(
                    "instances",
                    "no_valid_instances",
                    text,
                    f"{len(parsed)} parsed, {len(dirty)} refused",
                    round=rnd,
                )
                continue
            run.passed("instances")
            made.append(task_records(text, cleaned, clf, similar, round=rnd, generator="self-instruct"))
            run.kept += 1
        return made, (ahead if following else None)


def _spread(seeds: list[SeedTask], n: int) -> list[SeedTask]:
    """``n`` seed tasks for the few-shot classification prompt, both kinds represented (half
    classification when there are enough), in the seed file's order so the prompt is fixed."""
    clf = [t for t in seeds if t.is_classification][: n // 2]
    rest = [t for t in seeds if not t.is_classification][: n - len(clf)]
    return rest + clf
