"""Code instructions checked by execution: ``instructkit generate code --seeds FILE -n N -o DIR``.

Each request shows ``shots`` seed exercises (task, solution, assert-based tests; chosen by a seeded rng) and
asks the model for a new one in the same fixed layout::

    ### Task
    <what to write>
    ### Solution
    ```python
    <code>
    ```
    ### Tests
    ```python
    assert ...
    ```

A candidate sample goes through these stages, each refusal counted by reason and kept in ``rejects.jsonl``:

* ``reply``: ``request_failed`` (the backend gave no answer), ``truncated`` (cut by ``max_tokens`` inside
  its last code block), ``malformed_reply`` (a section missing or empty; the detail names it);
* ``syntax``: ``syntax_error`` — the solution, the tests or the two together do not compile;
* ``shape``: ``no_tests`` (the tests hold no ``assert``), ``no_function`` (the solution defines no
  top-level function, so there is nothing to stub);
* ``execute``: solution + tests run in the evaluation sandbox (:mod:`instructkit.sandbox`, one
  batch per round): ``tests_fail``, ``timeout``, ``sandbox_error``;
* ``stub``: ``tests_pass_on_stub`` — the same tests pass on a stub of the solution, so they check nothing;
* ``decontaminate``: ``contaminated`` — the curate step ``decontaminate`` (HumanEval by default);
* ``exact_dedup``: ``duplicate_task`` — the same task description (case and spacing ignored) as a seed
  or a kept sample;
* ``rouge_novelty``: ``too_similar`` — Self-Instruct's ROUGE-L filter on the task description, against
  the seeds and the kept samples (:meth:`~instructkit.data.instruction_filters.RougeNovelty.judge`).

**The stubs** (:func:`stub_source`): every top-level function (and every method of a top-level class)
keeps its signature, decorators and docstring, with a body of ``return None`` or of
``raise NotImplementedError``; imports and other top-level statements stay, so names the tests use
(constants, annotations) still resolve. Both stubs run by default, because each catches tests the other
lets through: ``return None`` catches tests that call the function but never check what it returns (or
only check falsy results, ``assert not f(4)``); ``raise NotImplementedError`` catches tests that only
check that a call raises (``try: f(-1) ... except Exception: pass``). Tests that never call the function
pass on both. A stub run that times out counts as the tests failing on it.

The sandbox runs each program with ``__name__`` set to ``"__codegen__"`` (a solution's ``if __name__ ==
"__main__":`` block, which may read stdin, does not run) and with ``must_finish`` (an early ``sys.exit(0)``
in the tests is a failure, not a pass), as the HumanEval check does.

Records: the user turn is the task description, the assistant turn the solution in a ``python`` code
fence (the layout chat models answer in, and the one instructkit's HumanEval eval extracts first);
``meta`` keeps the tests, the function names, the sandbox verdicts, the seed exercises the prompt showed,
the round and the most similar earlier task descriptions.

Requests: ``per_round`` per round, each with its own shots (no two alike in a round) and one ``Sampling``
per round (seed ``seed + round``), so the local backend batches a round in one engine call. With
``generated_shots`` 0 (the default) the requests depend on the config alone, so a rerun of the same
command asks exactly the same ones and answers them from the cache. Once ``n`` samples are kept, the rest
of that round's replies are not candidates (they are counted in the card as ``unused_replies`` and stay in
the cache, where a rerun with a larger ``n`` finds them).

Why one file: a generator is one module registered by name (``@register_generator``), the seam a new
generator is added at; its config, prompts, reply parsing and the execution checks are one algorithm read
top to bottom (the sandbox itself lives in ``instructkit.sandbox``).
"""

from __future__ import annotations

import ast
import hashlib
import random
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from instructkit.config import checked
from instructkit.data.base import build_step
from instructkit.data.decontam.step import BUILTIN as DECONTAM_BENCHMARKS
from instructkit.data.instruction_filters import RougeNovelty
from instructkit.data.similarity import SimilarityIndex
from instructkit.generate.backends.base import Reply, Request, Sampling
from instructkit.generate.cache import BudgetExhausted
from instructkit.generate.runner import (
    GenerateConfig,
    GenerateConfigError,
    GenerationResult,
    GenerationRun,
    Generator,
    register_generator,
    stopped_by_budget,
)
from instructkit.records import Record

SEEDS_FILE = "code_seeds.jsonl"
RUN_NAME = "__codegen__"
STUBS = ("return_none", "raise")

HEADER = (
    "You write short Python programming exercises. Each exercise has a task description, a solution "
    "and tests. Here are some examples.\n\n"
)
INSTRUCTION = (
    "Write one new exercise, different from the examples, in exactly the same layout: a '### Task' "
    "section that describes one function to write, a '### Solution' section with the function in one "
    "```python block, and a '### Tests' section with one ```python block of assert statements that "
    "call the function. The tests must not define the function or import it."
)


# ----------------------------------------------------------------------------------------------- samples
@dataclass
class CodeSample:
    """One exercise: a task description, a Python solution and assert-based tests (code, no fences)."""

    task: str
    solution: str
    tests: str
    id: str = ""

    def __post_init__(self) -> None:
        if not self.id:
            self.id = hashlib.sha256(f"{self.task}\0{self.solution}".encode()).hexdigest()[:16]


@dataclass
class Rejected:
    """A candidate refused before it became a sample (kept with its reason, never dropped silently)."""

    reason: str
    detail: str = ""


def default_seeds_path() -> Path:
    return Path(str(resources.files("instructkit.generate").joinpath("seeds", SEEDS_FILE)))


_FENCE = re.compile(r"```[ \t]*(?:[Pp]ython3?|py)?[ \t]*\n(.*?)(?:\n[ \t]*```|$)", re.S)


def code_of(text: str) -> str:
    """The first fenced code block of ``text``, else ``text`` itself (stripped of surrounding blank lines)."""
    m = _FENCE.search(text)
    return (m.group(1) if m else text).strip("\n").rstrip()


def load_code_seeds(path: str | Path | None = None, fmt: str | None = None) -> list[CodeSample]:
    """Seed exercises from ``path`` (the bundled set when None), in any format instructkit reads: the first
    user turn is the task, the reply (its first code block, if it has one) the solution, ``meta.tests`` the
    tests. Records without tests are still seeds (their task descriptions count for novelty) but are never
    shown as an example."""
    from instructkit.formats import read_records

    source = path if path is not None else default_seeds_path()
    seeds = []
    for i, rec in enumerate(read_records(source, fmt=fmt)):
        task = rec.first_instruction().strip()
        if not task:
            raise GenerateConfigError(f"seed record {i} ({rec.id}) of {source} has no task (no user turn)")
        tests = rec.meta.get("tests") or ""
        if not isinstance(tests, str):
            raise GenerateConfigError(f"seed record {i} ({rec.id}) of {source}: meta.tests must be a string")
        seeds.append(CodeSample(task, code_of(rec.reply_text()), code_of(tests), rec.id))
    return seeds


# ----------------------------------------------------------------------------------------------- prompt
def render_exercise(sample: CodeSample) -> str:
    return (
        f"### Task\n{sample.task.strip()}\n\n### Solution\n```python\n{sample.solution}\n```\n\n"
        f"### Tests\n```python\n{sample.tests}\n```\n"
    )


def code_prompt(examples: list[CodeSample]) -> str:
    """The request's one user turn: the header, the examples (separated by ``---``), the instruction."""
    return HEADER + "\n---\n\n".join(render_exercise(e) for e in examples) + "\n---\n\n" + INSTRUCTION


def choose_shots(
    seeds: list[CodeSample], generated: list[CodeSample], shots: int, generated_shots: int, rng: random.Random
) -> list[CodeSample]:
    """Up to ``generated_shots`` kept samples and the rest from the seeds, shuffled."""
    shown = rng.sample(generated, min(generated_shots, len(generated)))
    shown += rng.sample(seeds, shots - len(shown))
    rng.shuffle(shown)
    return shown


# ----------------------------------------------------------------------------------------------- parsing
_HEADING = re.compile(
    r"^[ \t]*(?:#{1,6}[ \t]*|\*\*)(task|solution|tests?)[ \t]*:?[ \t]*(?:\*\*)?[ \t]*:?[ \t]*$",
    re.IGNORECASE | re.MULTILINE,
)


def parse_code_reply(text: str, finish_reason: str | None = "stop") -> CodeSample | Rejected:
    """The exercise in a reply, or why there is none.

    Sections start at a heading line (``### Task``, ``## Solution:``, ``**Tests**``; any case); a second
    ``Task`` heading starts another exercise, which is ignored. The solution and tests are each section's
    first code fence, or its whole text without one (empty tests become ``no_tests`` later). A reply cut by the length limit is ``truncated``
    when its tests' code block never closes (a cut that came after the block loses nothing)."""
    marks = list(_HEADING.finditer(text))
    sections: dict[str, str] = {}
    for i, m in enumerate(marks):
        word = m.group(1).lower()
        name = "tests" if word.startswith("test") else word
        if name in sections:
            if name == "task":
                break  # the model went on to another exercise
            continue
        end = marks[i + 1].start() if i + 1 < len(marks) else len(text)
        sections[name] = text[m.end() : end]
    missing = [s for s in ("task", "solution", "tests") if s not in sections]
    if finish_reason == "length" and ("tests" not in sections or _unclosed_fence(sections["tests"])):
        return Rejected("truncated", "the reply hit the length limit before its tests ended")
    if missing:
        return Rejected("malformed_reply", f"no '### {missing[0].capitalize()}' section")
    task = sections["task"].strip()
    solution, tests = code_of(sections["solution"]), code_of(sections["tests"])
    for name, value in (("Task", task), ("Solution", solution)):
        if not value.strip():
            return Rejected("malformed_reply", f"the '### {name}' section is empty")
    return CodeSample(task, solution, tests)  # empty tests are refused as no_tests by shape_problem


def _unclosed_fence(section: str) -> bool:
    return section.count("```") % 2 == 1 or "```" not in section


def syntax_problem(sample: CodeSample) -> str | None:
    """Why the solution, the tests or the program made of both do not compile (None when they do).
    ``compile``, not ``ast.parse``: it also refuses ``return`` outside a function and the like."""
    for name, source in (
        ("solution", sample.solution),
        ("tests", sample.tests),
        ("program", program(sample)),
    ):
        try:
            compile(source, f"<{name}>", "exec", dont_inherit=True)
        except (SyntaxError, ValueError) as e:  # ValueError: a NUL byte in the source
            where = f" line {e.lineno}" if isinstance(e, SyntaxError) and e.lineno else ""
            msg = e.msg if isinstance(e, SyntaxError) else str(e)
            return f"{name}{where}: {msg}"
    return None


def shape_problem(sample: CodeSample) -> Rejected | None:
    """``no_tests`` when the tests hold no assert statement, ``no_function`` when the solution has no
    top-level function to stub (only for code that compiles)."""
    if not any(isinstance(node, ast.Assert) for node in ast.walk(ast.parse(sample.tests))):
        return Rejected("no_tests", "the tests hold no assert statement")
    if not function_names(sample.solution):
        return Rejected("no_function", "the solution defines no top-level function")
    return None


def function_names(solution: str) -> list[str]:
    """The top-level functions and classes of a solution (what its tests call)."""
    tree = ast.parse(solution)
    return [n.name for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)]


# ----------------------------------------------------------------------------------------------- stubs
def stub_source(solution: str, kind: str) -> str:
    """The solution with every top-level function's body (and every method's, in a top-level class)
    replaced: ``return_none`` → ``return None``, ``raise`` → ``raise NotImplementedError``. Signatures,
    decorators, docstrings, imports and other top-level statements stay (module docstring: why both)."""
    if kind not in STUBS:
        raise ValueError(f"unknown stub {kind!r}; choose one of {', '.join(STUBS)}")
    tree = ast.parse(solution)

    def body(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> list[ast.stmt]:
        doc = fn.body[:1] if ast.get_docstring(fn, clean=False) is not None else []
        if kind == "return_none":
            stmt: ast.stmt = ast.Return(ast.Constant(None))
        else:
            stmt = ast.Raise(ast.Name("NotImplementedError", ast.Load()), None)
        return [*doc, stmt]

    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            node.body = body(node)
        elif isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
                    item.body = body(item)
    return ast.unparse(ast.fix_missing_locations(tree))


def program(sample: CodeSample, solution: str | None = None) -> str:
    """What the sandbox runs: the solution (or a stub of it), then the tests."""
    return f"{sample.solution if solution is None else solution}\n\n\n{sample.tests}\n"


def _why_failed(stderr: str) -> str:
    """The last line of a traceback (``AssertionError``, ``NameError: name 'f' is not defined``)."""
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    return lines[-1].strip()[:300] if lines else ""


# ----------------------------------------------------------------------------------------------- config
@dataclass
class CodeConfig(GenerateConfig):
    """``instructkit generate code``: execution-checked Python exercises (module docstring for the stages)."""

    n: int = checked(20, ge=1)
    """How many samples to keep; the run stops once it has them (or after ``max_rounds``)."""
    seeds: str | None = None
    """Seed exercises, in any format instructkit reads (task = first user turn, solution = the reply's
    first code block, tests = ``meta.tests``); None: the bundled set of 18 Python function exercises."""
    seeds_format: str | None = None
    """Format of the seeds file; None: detected from its content."""
    shots: int = checked(3, ge=1)
    """Exercises shown in each request."""
    generated_shots: int = checked(0, ge=0)
    """Of the ``shots``, how many come from the samples kept so far once there are some (0: seeds only,
    which makes every request depend on the config alone)."""
    per_round: int = checked(8, ge=1)
    """Requests per round; a round's replies are checked in the sandbox together (one batch for the
    local backend)."""
    max_rounds: int = checked(20, ge=1)
    """Stop after this many rounds even if fewer than ``n`` samples were kept."""
    temperature: float = checked(0.7, ge=0, finite=True)
    """Sampling temperature of the requests (0: greedy; then only the shots make requests differ)."""
    top_p: float = checked(0.95, gt=0, le=1)
    """Nucleus sampling threshold of the requests."""
    max_tokens: int = checked(768, ge=1)
    """Longest reply, in tokens (a task, a solution and tests); a reply cut inside its tests is rejected
    as truncated."""
    timeout: float = checked(5.0, gt=0, finite=True)
    """Wall-clock seconds each program (solution + tests, stub + tests) may run in the sandbox; past it the
    sample is rejected as ``timeout``."""
    memory_mb: int = checked(512, ge=16)
    """Address space each sandboxed program may use (a bigger allocation fails the program)."""
    workers: int | None = checked(None, ge=1)
    """Sandbox worker processes (programs run in parallel); None: the usable CPU count."""
    stubs: list[str] = checked(default_factory=lambda: list(STUBS), choices=STUBS)
    """Stub solutions the tests must fail on: ``return_none`` and/or ``raise`` (module docstring: why
    both by default)."""
    similarity_threshold: float = checked(0.7, ge=0, le=1)
    """A task description whose ROUGE-L F against a seed's or a kept sample's is at least this is
    rejected as ``too_similar`` (Self-Instruct's 0.7)."""
    most_similar: int = checked(3, ge=0)
    """How many most similar earlier task descriptions each record keeps in ``meta.most_similar``."""
    decontaminate: list[str] = checked(default_factory=lambda: ["humaneval"], choices=DECONTAM_BENCHMARKS)
    """Built-in benchmarks kept samples must share no n-gram with (the ``decontaminate`` curate step);
    an empty list (and no ``decontaminate_files``) turns the stage off."""
    decontaminate_files: list[str] = field(default_factory=list)
    """More benchmark files to decontaminate against, in any format instructkit reads."""
    decontaminate_n: int = checked(13, ge=3)
    """N-gram length (code-aware tokens) that marks a sample contaminated."""

    def validate(self) -> None:
        if not self.stubs:
            raise GenerateConfigError("{key} needs at least one of return_none, raise", key="stubs")
        if self.generated_shots > self.shots:
            raise GenerateConfigError(
                f"{{key}} ({self.generated_shots}) is more than shots ({self.shots})", key="generated_shots"
            )


# ----------------------------------------------------------------------------------------------- generator
@dataclass
class _Candidate:
    reply_index: int
    shown: list[str]
    sample: CodeSample | None = None
    rejected: tuple[str, str, str] | None = None  # (stage, reason, detail)
    reply: str = ""  # the raw reply, kept in the reject row when it did not parse
    verdicts: dict[str, Any] = field(default_factory=dict)


@register_generator
class CodeGenerator(Generator):
    name = "code"
    config = CodeConfig
    unit = "sample"
    files = ("seeds",)

    def run(self, cfg: CodeConfig, run: GenerationRun) -> GenerationResult:
        from instructkit.sandbox import Sandbox

        seeds = load_code_seeds(cfg.seeds, cfg.seeds_format)
        showable = [s for s in seeds if s.tests and s.solution]
        if len(showable) < cfg.shots - cfg.generated_shots:
            raise GenerateConfigError(
                f"{{key}} is {cfg.shots} but the seeds hold {len(showable)} exercises with a solution and "
                f"tests (meta.tests) to show",
                key="shots",
            )
        decontam = None
        if cfg.decontaminate or cfg.decontaminate_files:
            decontam = build_step(
                {
                    "step": "decontaminate",
                    "benchmarks": list(cfg.decontaminate),
                    "files": list(cfg.decontaminate_files),
                    "n": cfg.decontaminate_n,
                },
                prefix="decontaminate",
            )
        novelty = RougeNovelty(threshold=cfg.similarity_threshold, k=cfg.most_similar)
        index = SimilarityIndex([s.task for s in seeds])
        seen_tasks = {_norm(s.task) for s in seeds}
        kept: list[Record] = []
        kept_samples: list[CodeSample] = []
        unused = 0
        stopped = ""
        with Sandbox(cfg.workers, timeout=cfg.timeout, memory_mb=cfg.memory_mb, run_name=RUN_NAME,
                     must_finish=True) as sandbox:  # fmt: skip
            for rnd in range(cfg.max_rounds):
                requests, shown = self._requests(cfg, rnd, showable, kept_samples)
                budget_error = None
                try:
                    replies: list[Reply | None] = list(run.complete(requests))
                except BudgetExhausted as e:
                    replies, budget_error = e.replies, e
                cands = [self._parse(i, shown[i], r) for i, r in enumerate(replies) if r is not None]
                self._execute(cfg, sandbox, cands)
                for n_done, cand in enumerate(cands):
                    if len(kept) >= cfg.n:
                        unused = len(cands) - n_done
                        break
                    run.offered()
                    rec = self._account(cfg, run, cand, rnd, decontam, novelty, index, seen_tasks)
                    if rec is not None:
                        kept.append(rec)
                        kept_samples.append(cand.sample)  # type: ignore[arg-type]
                        run.kept = len(kept)
                if budget_error is not None:
                    stopped = stopped_by_budget(budget_error, len(kept), cfg.n, self.unit)
                    break
                if len(kept) >= cfg.n:
                    stopped = f"reached {cfg.n} samples in {rnd + 1} round(s)"
                    if unused:
                        stopped += (
                            f" ({unused} later replies of the last round not needed; they stay in the cache)"
                        )
                    break
            else:
                stopped = f"max_rounds ({cfg.max_rounds}) reached with {len(kept)} of {cfg.n} samples"
            isolation = sandbox.isolation
        extra = {"unused_replies": unused, "sandbox_missing": list(isolation["missing"])}  # type: ignore[call-overload]
        return run.finish(kept, stopped, extra=extra)

    # -- the pieces of a round ------------------------------------------------------------------------

    @staticmethod
    def _requests(
        cfg: CodeConfig, rnd: int, seeds: list[CodeSample], generated: list[CodeSample]
    ) -> tuple[list[Request], list[list[str]]]:
        """The round's requests: each its own shots (redrawn when a set repeats in the round, since the
        cache answers identical requests once), one Sampling for the whole round."""
        sampling = Sampling(temperature=cfg.temperature, top_p=cfg.top_p, max_tokens=cfg.max_tokens,
                            seed=cfg.seed + rnd)  # fmt: skip
        requests, shown, used = [], [], set()
        for i in range(cfg.per_round):
            rng = random.Random(f"code:{cfg.seed}:{rnd}:{i}")
            for _ in range(100):
                shots = choose_shots(seeds, generated, cfg.shots, cfg.generated_shots, rng)
                key = tuple(s.id for s in shots)
                if key not in used:
                    break
            used.add(key)
            requests.append(Request([{"role": "user", "content": code_prompt(shots)}], sampling))
            shown.append(list(key))
        return requests, shown

    @staticmethod
    def _parse(i: int, shown: list[str], reply: Reply) -> _Candidate:
        cand = _Candidate(i, shown)
        if not reply.ok:
            cand.rejected = ("reply", "request_failed", reply.error or "")
            return cand
        got = parse_code_reply(reply.text, reply.finish_reason)
        if isinstance(got, Rejected):
            cand.rejected = ("reply", got.reason, got.detail)
            cand.reply = reply.text
            return cand
        cand.sample = got
        problem = syntax_problem(got)
        if problem is not None:
            cand.rejected = ("syntax", "syntax_error", problem)
            return cand
        shape = shape_problem(got)
        if shape is not None:
            cand.rejected = ("shape", shape.reason, shape.detail)
        return cand

    @staticmethod
    def _execute(cfg: CodeConfig, sandbox: Any, cands: list[_Candidate]) -> None:
        """Solution + tests for every candidate still in, in one sandbox batch; then each stub + tests for
        those that passed, in another."""
        todo = [c for c in cands if c.rejected is None and c.sample is not None]
        results = sandbox.map([program(c.sample) for c in todo])  # type: ignore[arg-type]
        passed = []
        for c, res in zip(todo, results, strict=True):
            c.verdicts["solution"] = {"status": res.status, "seconds": res.seconds}
            if res.status == "passed":
                passed.append(c)
            elif res.status == "timeout":
                c.rejected = ("execute", "timeout", f"solution + tests ran past {cfg.timeout:g} s")
            elif res.status == "failed":
                c.rejected = ("execute", "tests_fail", _why_failed(res.stderr))
            else:
                c.rejected = ("execute", "sandbox_error", _why_failed(res.stderr))
        jobs = [(c, kind) for c in passed for kind in cfg.stubs]
        stub_results = sandbox.map([program(c.sample, stub_source(c.sample.solution, k)) for c, k in jobs])  # type: ignore[union-attr]
        for (c, kind), res in zip(jobs, stub_results, strict=True):
            c.verdicts.setdefault("stubs", {})[kind] = res.status
        for c in passed:
            on_stub = [k for k, status in c.verdicts["stubs"].items() if status == "passed"]
            if on_stub:
                c.rejected = (
                    "stub",
                    "tests_pass_on_stub",
                    f"the tests pass on the {', '.join(on_stub)} stub",
                )

    def _account(
        self,
        cfg: CodeConfig,
        run: GenerationRun,
        cand: _Candidate,
        rnd: int,
        decontam: Any,
        novelty: RougeNovelty,
        index: SimilarityIndex,
        seen_tasks: set[str],
    ) -> Record | None:
        """Walk one candidate through the stages in order, counting it in each; the record when kept."""
        order = ("reply", "syntax", "shape", "execute", "stub")
        s = cand.sample
        extra: dict[str, Any] = {"round": rnd, "reply_index": cand.reply_index}
        if s is not None:
            extra.update(task=s.task, solution=s.solution, tests=s.tests)
        elif cand.reply:
            extra["reply"] = cand.reply
        if cand.verdicts:
            extra["verdicts"] = cand.verdicts
        for stage in order:
            if cand.rejected is not None and cand.rejected[0] == stage:
                _, reason, detail = cand.rejected
                run.reject(stage, reason, text=s.task if s else None, detail=detail, **extra)
                return None
            run.passed(stage)
        assert s is not None
        rec = Record.chat(
            [
                {"role": "user", "content": s.task},
                {"role": "assistant", "content": f"```python\n{s.solution}\n```"},
            ],
            id=s.id,
            source="generate:code",
            tests=s.tests,
            functions=function_names(s.solution),
            verdicts=cand.verdicts,
            shown=cand.shown,
            round=rnd,
        )
        if decontam is not None and not run.filter([decontam], [rec]):
            return None
        key = _norm(s.task)
        if key in seen_tasks:
            run.reject("exact_dedup", "duplicate_task", text=s.task, record=rec)
            return None
        run.passed("exact_dedup")
        verdict = novelty.judge(index, s.task)
        if verdict.reason:
            run.reject("rouge_novelty", verdict.reason, text=s.task, detail=verdict.detail, record=rec)
            return None
        run.passed("rouge_novelty", params={"threshold": cfg.similarity_threshold, "k": cfg.most_similar})
        seen_tasks.add(key)
        rec.meta.update(verdict.meta or {})
        return rec


def _norm(task: str) -> str:
    return " ".join(task.casefold().split())
