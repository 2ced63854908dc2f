"""Evol-Instruct (WizardLM, Xu et al. 2023): rewrite prompts, round after round, into harder ones (in-depth
evolving) or new ones of the same domain (in-breadth evolving), answer each, and eliminate failed evolutions.

Command: ``instructkit generate evol --in FILE --rounds M -o DIR [backend flags]``.

Followed (nlpxucan/WizardLM, ``Evol_Instruct/depth.py``, ``breadth.py``, ``openai_access.py``, and the paper,
arXiv 2304.12244 v2, section 3 and appendices):

* The four in-depth prompts of the code release (add constraints, deepen, concretize, increase reasoning
  steps) and its in-breadth prompt, character for character: ``\\r\\n`` line ends, the stray ``'`` after
  "into #The Given Prompt#", and the runs of tabs that the release's backslash line continuations put inside
  the string (``original_whitespace: false`` sends the same words with ``\\n`` and no tab runs).
* The fifth in-depth operation, complicate input, is not in the code release; its prompt is the paper's
  appendix one ("... using dataformat ... You must add [python code] format text as input data in
  [Rewritten Prompt]"). The paper prints a demonstration for Python code only: it is shown when the format
  drawn is ``python code``, other formats (``input_formats``) are asked with the same words and no
  demonstration, and the reply is cut at the paper's ``####`` separator.
* Each round, every prompt gets one operation drawn with equal probability among the six (the paper's
  "equal probability"); ``breadth_share`` changes the in-breadth share. The model rewrites the prompt
  (request 1), then answers the rewritten prompt (request 2), both with the release's system message
  "You are a helpful assistant.".
* Elimination, the paper's four rules (section 3.3), which the code release does not implement:
  (1) no information gain over the parent, judged by the model with the paper's appendix-G equality prompt
  (request 3; an evolved prompt identical to its parent is judged without asking); (2) the answer holds
  "sorry" and has fewer than 80 words; (3) the answer is only punctuation and stop words (scikit-learn's
  English list); (4) the evolved prompt copies the template's words ("#Rewritten Prompt#", "given prompt",
  ...). A failed evolution is a reject with its reason; as in the paper, its parent goes back into the
  pool and is evolved again (with a newly drawn operation) in the next round.

Also refused, each with a reason (a model's reply is never dropped silently): a request that failed, an
evolved prompt or answer cut by the length limit, an empty evolved prompt, an equality reply that says
neither Equal nor Not Equal (``unclear_judgment``).

Output: one record per successful evolution (user = evolved prompt, assistant = its answer) with its
lineage in ``meta.evol_history``: [{round, operation, parent, parent_id}, ...] from the input prompt on.
The input prompts themselves are not repeated in the output (the paper's dataset mixes them in; they are in
the input file). Requests are built in an order fixed by the config, the seed and the replies before them,
so a rerun is answered from the cache.

Why one file: a generator is one module registered by name (``@register_generator``), the seam a new
generator is added at; its config, the evolution prompts and the elimination rules are one algorithm read
top to bottom, as in the paper.
"""

from __future__ import annotations

import functools
import random
import re
from dataclasses import dataclass, field
from typing import Any

from instructkit.config import checked
from instructkit.generate.backends.base import BackendError, Reply, Request, Sampling
from instructkit.generate.cache import BudgetExhausted
from instructkit.generate.runner import (
    GenerateConfig,
    GenerateConfigError,
    GenerationResult,
    GenerationRun,
    Generator,
    register_generator,
)
from instructkit.records import Message, Record

# -- the prompts ------------------------------------------------------------------------------------------

_TABS = "\t\t\t\t\t"  # the release's source indentation, inside its strings through line continuations

DEPTH_BASE = (
    "I want you act as a Prompt Rewriter.\r\n "
    f"{_TABS}Your objective is to rewrite a given prompt into a more complex version to make those famous AI "
    "systems (e.g., chatgpt and GPT4) a bit harder to handle.\r\n "
    f"{_TABS}But the rewritten prompt must be reasonable and must be understood and responded by humans.\r\n "
    f"{_TABS}Your rewriting cannot omit the non-text parts such as the table and code in #The Given Prompt#:. "
    "Also, please do not omit the input in #The Given Prompt#. \r\n "
    f"{_TABS}You SHOULD complicate the given prompt using the following method: \r\n"
    f"{_TABS}{{}} \r\n"
    f"{_TABS}You should try your best not to make the #Rewritten Prompt# become verbose, #Rewritten Prompt# "
    "can only add 10 to 20 words into #The Given Prompt#. \r\n"
    f"{_TABS}'#The Given Prompt#', '#Rewritten Prompt#', 'given prompt' and 'rewritten prompt' are not "
    "allowed to appear in #Rewritten Prompt#\r\n"
)
"""``depth.py``'s ``base_instruction``; ``{}`` takes the operation's method line."""

DEPTH_METHODS = {
    "add_constraints": "Please add one more constraints/requirements into #The Given Prompt#'",
    "deepen": "If #The Given Prompt# contains inquiries about certain issues, the depth and breadth of the "
    "inquiry can be increased.",
    "concretize": "Please replace general concepts with more specific concepts.",
    "increase_reasoning": "If #The Given Prompt# can be solved with just a few simple thinking processes, you "
    "can rewrite it to explicitly request multiple-step reasoning.",
}
"""The method line of each in-depth prompt of ``depth.py`` (createConstraintsPrompt, createDeepenPrompt,
createConcretizingPrompt, createReasoningPrompt)."""

BREADTH_BASE = (
    "I want you act as a Prompt Creator.\r\n"
    "Your goal is to draw inspiration from the #Given Prompt# to create a brand new prompt.\r\n"
    "This new prompt should belong to the same domain as the #Given Prompt# but be even more rare.\r\n"
    "The LENGTH and complexity of the #Created Prompt# should be similar to that of the #Given Prompt#.\r\n"
    "The #Created Prompt# must be reasonable and must be understood and responded by humans.\r\n"
    "'#Given Prompt#', '#Created Prompt#', 'given prompt' and 'created prompt' are not allowed to appear in "
    "#Created Prompt#\r\n"
)
"""``breadth.py``'s ``base_instruction``."""

COMPLICATE_INPUT_HEAD = (
    "I want you act as a Prompt Rewriter. Your objective is to rewrite a given prompt into a more complex "
    "version using dataformat to make those famous AI systems (e.g., chatgpt and GPT4) more difficult to "
    "handle. But the rewritten prompt must be reasonable and must be understood and responded by humans.\n"
    "You must add [{fmt}] format text as input data in [Rewritten Prompt]\n"
)
COMPLICATE_INPUT_DEMO = (
    "The Given Prompt:\n"
    "Transformat python code\n"
    "Rewritten Prompt(MUST contain a specific python code as input):\n"
    "I have the following Python code:\n"
    'cursor . execute (" INSERT INTO table VALUES var1 , var2 , var3 ,")\n'
    "where var1 is an integer, var2 and var3 are strings.\n"
    "How can I write the variable names without Python including them as part of the query text?\n"
    "####\n"
)
"""The paper's appendix demonstration (for the ``python code`` format only)."""
COMPLICATE_INPUT_TAIL = (
    "The Given Prompt:\n{instruction}\nRewritten Prompt(MUST contain a specific {fmt} as input):\n"
)
COMPLICATE_INPUT_SEPARATOR = "####"

EQUALITY_PROMPT = (
    "Here are two Instructions to ChatGPT AI, do you think they are equal to each other, which meet the "
    "following requirements:\n"
    "1. They have same constraints and requirments.\n"
    "2. They have same depth and breadth of the inquiry.\n"
    "The First Prompt: {first}\n"
    "The Second Prompt: {second}\n"
    "Your Judgement (Just answer: Equal or Not Equal. No need to explain the reason.):"
)
"""The paper's appendix G prompt (its spelling kept); the first prompt is the parent, the second the
evolved one."""

DEPTH_OPERATIONS = ("add_constraints", "deepen", "concretize", "increase_reasoning", "complicate_input")
OPERATIONS = (*DEPTH_OPERATIONS, "breadth")

DEFAULT_INPUT_FORMATS = [
    "python code", "SQL database", "JSON data", "XML data", "excel table", "HTML page", "Latex",
    "Shell cmd", "Markdown", "formula",
]  # fmt: skip

DEFAULT_TEMPLATE_WORDS = [
    "#The Given Prompt#", "#Given Prompt#", "#Rewritten Prompt#", "#Created Prompt#",
    "given prompt", "rewritten prompt", "created prompt",
]  # fmt: skip

SYSTEM_PROMPT = "You are a helpful assistant."
"""The release's system message (``openai_access.py``)."""


def _clean_whitespace(text: str) -> str:
    """The release's words with ``\\n`` line ends and without the indentation runs after them."""
    return re.sub(r"\r\n[ \t]*", "\n", text)


def evolve_prompt(operation: str, instruction: str, input_format: str = "python code", *,
                  original_whitespace: bool = True) -> str:  # fmt: skip
    """The prompt that asks the model to evolve ``instruction`` by ``operation`` (one of :data:`OPERATIONS`;
    ``input_format`` only for ``complicate_input``)."""
    if operation in DEPTH_METHODS:
        text = DEPTH_BASE.format(DEPTH_METHODS[operation])
        text += f"#The Given Prompt#: \r\n {instruction} \r\n#Rewritten Prompt#:\r\n"
    elif operation == "breadth":
        text = BREADTH_BASE + f"#Given Prompt#: \r\n {instruction} \r\n#Created Prompt#:\r\n"
    elif operation == "complicate_input":
        text = COMPLICATE_INPUT_HEAD.format(fmt=input_format)
        if input_format == "python code":
            text += COMPLICATE_INPUT_DEMO
        text += COMPLICATE_INPUT_TAIL.format(instruction=instruction, fmt=input_format)
    else:
        raise ValueError(f"unknown operation {operation!r}; one of {', '.join(OPERATIONS)}")
    return text if original_whitespace else _clean_whitespace(text)


def equality_prompt(parent: str, evolved: str) -> str:
    return EQUALITY_PROMPT.format(first=parent, second=evolved)


def clean_evolved(operation: str, reply: str) -> str:
    """The evolved prompt in a rewrite reply: stripped; for complicate input, cut at the ``####`` separator
    that the prompt's demonstration ends with (a model continuing the pattern writes it after its prompt)."""
    if operation == "complicate_input":
        reply = reply.split(COMPLICATE_INPUT_SEPARATOR, 1)[0]
    return reply.strip()


def parse_equality(reply: str) -> bool | None:
    """True for "Equal", False for "Not Equal" (also "unequal"), None when the reply says neither."""
    text = reply.strip().lower()
    if re.search(r"\bnot\s+equal\b|\bunequal\b", text):
        return False
    if re.search(r"\bequal\b", text):
        return True
    return None


def copied_template_words(prompt: str, words: list[str]) -> str | None:
    """Rule 4: the first of ``words`` (any case) that the evolved prompt contains, else None."""
    low = prompt.lower()
    return next((w for w in words if w.lower() in low), None)


def is_short_refusal(answer: str, word: str = "sorry", max_words: int = 80) -> bool:
    """Rule 2: the answer holds ``word`` (any case) and has fewer than ``max_words`` words."""
    return word.lower() in answer.lower() and len(answer.split()) < max_words


@functools.cache
def _stop_words() -> frozenset[str]:
    # scikit-learn's English list (318 words, a dependency already); nltk's needs a corpus download.
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    return frozenset(ENGLISH_STOP_WORDS)


def only_stop_words(answer: str) -> bool:
    """Rule 3: the answer holds no word but stop words (punctuation and spaces aside; empty counts)."""
    words = re.findall(r"[^\W_]+", answer.lower())
    return all(w in _stop_words() for w in words)


# -- the config ---------------------------------------------------------------------------------------------


def _sampling(**kw: Any) -> dict[str, Any]:
    return dict(kw)


@dataclass
class EvolConfig(GenerateConfig):
    """Evol-Instruct: ``instructkit generate evol --in FILE --rounds M -o DIR``."""

    input: str | None = None
    """The prompts to evolve: a file in any format instructkit reads; each record's first user turn is its
    prompt (an Alpaca record's instruction and input joined)."""
    input_format: str | None = None
    """The format of ``input`` (alpaca, sharegpt, openai, ...); None detects it."""
    max_prompts: int | None = checked(None, ge=1)
    """Evolve only the first this many prompts of ``input`` (None: all)."""
    rounds: int = checked(4, ge=1)
    """Evolution rounds M (the paper made its 250k instructions in 4). Each round every prompt of the pool
    gets one operation; a prompt whose evolution failed is tried again from the same parent next round."""
    operations: list[str] = field(default_factory=lambda: list(OPERATIONS))
    """The operations drawn from: add_constraints, deepen, concretize, increase_reasoning, complicate_input
    (in-depth) and breadth (in-breadth mutation)."""
    breadth_share: float | None = checked(None, ge=0, le=1)
    """Probability that a prompt gets the in-breadth operation (the rest split equally among the in-depth
    ones listed); None: every listed operation equally likely, as the paper (1/6 with all six)."""
    input_formats: list[str] = field(default_factory=lambda: list(DEFAULT_INPUT_FORMATS))
    """Data formats complicate_input adds as input, one drawn per use (the paper's examples: code, tables,
    formulas, XML, SQL, ...)."""
    system_prompt: str | None = SYSTEM_PROMPT
    """System message of every request (the release's); None or empty: no system message."""
    original_whitespace: bool = True
    """Send the release's prompts byte for byte (``\\r\\n`` and its tab runs); false: ``\\n`` and no tab
    runs, the same words."""
    evolve_sampling: dict[str, Any] = field(
        default_factory=lambda: _sampling(temperature=1.0, top_p=0.95, max_tokens=512)
    )
    """Sampling of the rewrite requests (temperature, top_p, max_tokens, stop). The release used
    temperature 1, top_p 0.95 and 2048 tokens; an evolved prompt adds 10 to 20 words, so 512 is plenty.
    The seed is ``seed`` + round, the same for a whole round, so the local backend batches a round."""
    answer_sampling: dict[str, Any] = field(
        default_factory=lambda: _sampling(temperature=1.0, top_p=0.95, max_tokens=1024)
    )
    """Sampling of the answer requests (the release: temperature 1, top_p 0.95, 2048 tokens)."""
    judge_sampling: dict[str, Any] = field(default_factory=lambda: _sampling(temperature=0.0, max_tokens=16))
    """Sampling of the equality judgments (greedy; the answer is "Equal" or "Not Equal")."""
    refusal_word: str = "sorry"
    """Rule 2: an answer holding this word (any case) and shorter than ``refusal_max_words`` is a refusal."""
    refusal_max_words: int = checked(80, ge=1)
    """Rule 2: answers with fewer words than this that hold ``refusal_word`` are refusals (the paper: 80)."""
    template_words: list[str] = field(default_factory=lambda: list(DEFAULT_TEMPLATE_WORDS))
    """Rule 4: an evolved prompt containing any of these (any case) copied the template."""
    unclear_judgment: str = checked("reject", choices=("reject", "keep"))
    """An equality reply that says neither Equal nor Not Equal: reject the evolution (unclear_judgment) or
    keep it as if Not Equal (its record says ``judgment: unclear``)."""
    keep_truncated_answers: bool = False
    """Keep answers cut by ``answer_sampling.max_tokens`` (default: reject them as answer_truncated)."""

    def validate(self) -> None:
        if not self.input:
            raise GenerateConfigError(
                "{key} is required: the file of prompts to evolve (--in FILE)", key="input"
            )
        if not self.operations:
            raise GenerateConfigError(
                "{key} is empty; list some of: " + ", ".join(OPERATIONS), key="operations"
            )
        for i, op in enumerate(self.operations):
            if op not in OPERATIONS:
                raise GenerateConfigError(
                    f"{{key}}: unknown operation {op!r}; choose from {', '.join(OPERATIONS)}",
                    key=f"operations[{i}]",
                )
        if len(set(self.operations)) != len(self.operations):
            raise GenerateConfigError("{key} lists an operation twice", key="operations")
        depth = [op for op in self.operations if op != "breadth"]
        if self.breadth_share is not None:
            if self.breadth_share > 0 and "breadth" not in self.operations:
                raise GenerateConfigError("{key} is above 0 but operations lack breadth", key="breadth_share")
            if self.breadth_share < 1 and not depth:
                raise GenerateConfigError(
                    "{key} is below 1 but operations hold no in-depth one", key="breadth_share"
                )
        if "complicate_input" in self.operations and not self.input_formats:
            raise GenerateConfigError(
                "{key} is empty but operations include complicate_input", key="input_formats"
            )
        if not self.template_words or any(not w.strip() for w in self.template_words):
            raise GenerateConfigError("{key} needs non-empty words", key="template_words")
        for name in ("evolve_sampling", "answer_sampling", "judge_sampling"):
            self.sampling(name, 0)

    def sampling(self, name: str, round_: int) -> Sampling:
        """The Sampling of request kind ``name`` in round ``round_`` (seed = ``seed`` + round)."""
        params = dict(getattr(self, name))
        if "seed" in params:
            raise GenerateConfigError("{key} is set by the top-level seed (seed + round)", key=f"{name}.seed")
        try:
            return Sampling(**params, seed=self.seed + round_)
        except BackendError as e:
            raise GenerateConfigError(e.template, key=f"{name}.{e.key}" if e.key else name) from None
        except TypeError:
            known = ", ".join(f for f in Sampling.__dataclass_fields__ if f != "seed")
            bad = next(k for k in params if k not in Sampling.__dataclass_fields__)
            raise GenerateConfigError(f"unknown key {{key}} (known: {known})", key=f"{name}.{bad}") from None

    def draw(self, rng: random.Random) -> tuple[str, str | None]:
        """One operation (and, for complicate_input, the input format) drawn with ``rng``."""
        depth = [op for op in self.operations if op != "breadth"]
        if self.breadth_share is None:
            op = rng.choice(self.operations)
        else:
            op = "breadth" if rng.random() < self.breadth_share else rng.choice(depth)
        return op, (rng.choice(self.input_formats) if op == "complicate_input" else None)


# -- the generator -------------------------------------------------------------------------------------------


@dataclass
class Lineage:
    """One input prompt and the latest successful evolution of it (the pool entry a round evolves)."""

    index: int
    root_id: str
    text: str
    id: str
    history: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Attempt:
    """One evolution of one lineage in one round, as it goes through the requests."""

    lineage: Lineage
    round: int
    operation: str
    input_format: str | None
    evolved: str = ""
    answer: str = ""
    judgment: str = ""

    def extra(self) -> dict[str, Any]:
        out = {"round": self.round, "operation": self.operation, "parent": self.lineage.text,
               "parent_id": self.lineage.id}  # fmt: skip
        if self.input_format:
            out["input_format"] = self.input_format
        return out


class _Stopped(Exception):
    def __init__(self, e: BudgetExhausted, step: str) -> None:
        self.e, self.step = e, step


@register_generator
class EvolGenerator(Generator):
    name = "evol"
    config = EvolConfig
    unit = "prompt"
    files = ("input",)

    def run(self, cfg: EvolConfig, run: GenerationRun) -> GenerationResult:
        lineages = read_lineages(cfg, run)
        records: list[Record] = []
        per_round: list[dict[str, int]] = []
        for rnd in range(1, cfg.rounds + 1):
            try:
                kept = self.round(cfg, run, lineages, rnd)
            except _Stopped as s:
                e = s.e
                answered = sum(r is not None for r in e.replies)
                stopped = (
                    f"token budget spent: {e.spent:,} of {e.budget:,} tokens on {e.sent:,} requests; stopped in "
                    f"round {rnd} of {cfg.rounds} at the {s.step} step ({answered} of {len(e.replies)} of its "
                    f"requests answered); {len(records)} evolved prompts kept from {rnd - 1} finished round(s). "
                    "Rerun with a larger --budget-tokens to go on from the cache"
                )
                extra = {"rounds_done": rnd - 1, "per_round": per_round, "prompts": len(lineages)}
                return run.finish(records, stopped=stopped, extra=extra)
            per_round.append({"round": rnd, "attempted": len(lineages), "kept": len(kept)})
            records += kept
        stopped = f"evolved {len(lineages)} prompts for {cfg.rounds} rounds: {len(records)} evolutions kept"
        extra = {"rounds_done": cfg.rounds, "per_round": per_round, "prompts": len(lineages)}
        return run.finish(records, stopped=stopped, extra=extra)

    def round(self, cfg: EvolConfig, run: GenerationRun, lineages: list[Lineage], rnd: int) -> list[Record]:
        """Evolve every lineage once; return the records of the successful evolutions (their lineages move
        on to the evolved prompt, the failed ones stay at their parent)."""
        attempts = []
        for lin in lineages:
            # one rng per (seed, prompt, round): a prompt's draws do not depend on the others' fates
            op, fmt = cfg.draw(random.Random(f"evol:{cfg.seed}:{lin.index}:{lin.root_id}:{rnd}"))
            attempts.append(Attempt(lin, rnd, op, fmt))

        # request 1: rewrite
        s = cfg.sampling("evolve_sampling", rnd)
        prompts = [evolve_prompt(a.operation, a.lineage.text, a.input_format or "python code",
                                 original_whitespace=cfg.original_whitespace) for a in attempts]  # fmt: skip
        replies = _complete(run, [self.request(cfg, p, s) for p in prompts], "rewrite")
        alive = []
        for a, reply in zip(attempts, replies, strict=True):
            a.evolved = clean_evolved(a.operation, reply.text)
            reason, detail = self.check_evolved(cfg, a, reply)
            if reason:
                _reject(run, "evolve", reason, a.evolved or reply.text, detail, a)
            else:
                run.passed("evolve")
                alive.append(a)

        # request 2: answer the evolved prompt; rules 2 and 3
        s = cfg.sampling("answer_sampling", rnd)
        replies = _complete(run, [self.request(cfg, a.evolved, s) for a in alive], "answer")
        judged = []
        for a, reply in zip(alive, replies, strict=True):
            a.answer = reply.text.strip()
            reason, detail = self.check_answer(cfg, reply)
            if reason:
                _reject(run, "answer", reason, a.evolved, detail, a, answer=reply.text)
            else:
                run.passed("answer")
                judged.append(a)

        # request 3: rule 1, the equality judgment
        s = cfg.sampling("judge_sampling", rnd)
        reqs = [self.request(cfg, equality_prompt(a.lineage.text, a.evolved), s) for a in judged]
        replies = _complete(run, reqs, "equality")
        kept = []
        for a, reply in zip(judged, replies, strict=True):
            if not reply.ok:
                _reject(run, "equality", "judge_request_failed", a.evolved, reply.error, a)
                continue
            equal = parse_equality(reply.text)
            a.judgment = {True: "equal", False: "not_equal", None: "unclear"}[equal]
            if equal:
                _reject(run, "equality", "no_information_gain", a.evolved, f"judge: {reply.text.strip()}", a)
            elif equal is None and cfg.unclear_judgment == "reject":
                _reject(run, "equality", "unclear_judgment", a.evolved, f"judge: {reply.text.strip()!r}", a)
            else:
                run.offered()
                run.passed("equality")
                kept.append(self.advance(a))
        return kept

    @staticmethod
    def request(cfg: EvolConfig, content: str, sampling: Sampling) -> Request:
        system = [{"role": "system", "content": cfg.system_prompt}] if cfg.system_prompt else []
        return Request([*system, {"role": "user", "content": content}], sampling)

    @staticmethod
    def check_evolved(cfg: EvolConfig, a: Attempt, reply: Reply) -> tuple[str | None, str | None]:
        if not reply.ok:
            return "rewrite_request_failed", reply.error
        if reply.finish_reason == "length":
            return "prompt_truncated", "the rewrite hit evolve_sampling.max_tokens"
        if not a.evolved:
            return "empty_prompt", None
        word = copied_template_words(a.evolved, cfg.template_words)
        if word is not None:
            return "copies_template_words", word
        if " ".join(a.evolved.split()) == " ".join(a.lineage.text.split()):
            return "no_information_gain", "identical to its parent (judged without a request)"
        return None, None

    @staticmethod
    def check_answer(cfg: EvolConfig, reply: Reply) -> tuple[str | None, str | None]:
        if not reply.ok:
            return "answer_request_failed", reply.error
        if reply.finish_reason == "length" and not cfg.keep_truncated_answers:
            return "answer_truncated", "the answer hit answer_sampling.max_tokens"
        if only_stop_words(reply.text):
            return "only_punctuation_and_stop_words", "empty" if not reply.text.strip() else None
        if is_short_refusal(reply.text, cfg.refusal_word, cfg.refusal_max_words):
            return "short_refusal", f"{len(reply.text.split())} words with {cfg.refusal_word!r}"
        return None, None

    @staticmethod
    def advance(a: Attempt) -> Record:
        """Move the lineage on to its evolved prompt and return the record of this evolution."""
        lin = a.lineage
        step = {"round": a.round, "operation": a.operation, "parent": lin.text, "parent_id": lin.id}
        if a.input_format:
            step["input_format"] = a.input_format
        new_id = f"{lin.root_id}.evol{a.round}"
        lin.history = [*lin.history, step]
        lin.text, lin.id = a.evolved, new_id
        return Record(
            messages=[Message("user", a.evolved), Message("assistant", a.answer)],
            meta={
                "id": new_id,
                "source_id": lin.root_id,
                "evol_history": list(lin.history),
                "equality_judgment": a.judgment,
            },
        ).validated()


def _complete(run: GenerationRun, requests: list[Request], step: str) -> list[Reply]:
    try:
        return run.complete(requests)
    except BudgetExhausted as e:
        raise _Stopped(e, step) from None


def _reject(run: GenerationRun, stage: str, reason: str, text: str, detail: str | None, a: Attempt,
            **more: Any) -> None:  # fmt: skip
    run.offered()
    run.reject(stage, reason, text=text, detail=detail, **a.extra(), **more)


def read_lineages(cfg: EvolConfig, run: GenerationRun) -> list[Lineage]:
    """The input prompts (first user turns), the first ``max_prompts`` of them; records without a prompt are
    written to the rejects (outside the accounting: they never became candidates)."""
    from instructkit.formats import read_records

    assert cfg.input is not None
    records = read_records(cfg.input, fmt=cfg.input_format)
    out: list[Lineage] = []
    for i, rec in enumerate(records):
        if cfg.max_prompts is not None and len(out) >= cfg.max_prompts:
            break
        text = rec.first_instruction().strip() if rec.messages is not None else ""
        if not text:
            run.reject("input", "no_prompt", detail=f"{cfg.input} record {i + 1} has no user turn",
                       record=rec, counted=False)  # fmt: skip
            continue
        out.append(Lineage(i, rec.id, text, rec.id))
    return out
