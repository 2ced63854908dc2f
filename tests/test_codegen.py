"""Execution-checked code generation (``generate/code.py``): the reply parser, the stubs and the prompt on
fixed inputs; then the generator with a scripted backend and the real sandbox — a correct sample kept, and
one whose tests fail, one whose tests pass on a stub, one with a syntax error and one that loops forever each
rejected with its reason; HumanEval copies, seed copies and near-copies rejected; a rerun answered from the
cache; the token budget.

Tests that run the generator start sandbox processes, so they are ``slow`` (as in tests/test_sandbox.py)."""

from __future__ import annotations

import itertools
import json
import sys
import threading
from pathlib import Path

import pytest

from instructkit.config import ConfigError
from instructkit.generate import code as cg
from instructkit.generate.backends.base import Reply, Request
from instructkit.generate.runner import generate, load_generate_config
from tests.scripted_backend import ScriptedBackend

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the sandbox is Linux-only")


def reply(task: str, solution: str, tests: str) -> str:
    return f"### Task\n{task}\n\n### Solution\n```python\n{solution}\n```\n\n### Tests\n```python\n{tests}\n```\n"


CORRECT = reply(
    "Write a function `double_all(values: list[int]) -> list[int]` that returns every value times two.",
    "def double_all(values: list[int]) -> list[int]:\n    return [2 * v for v in values]",
    "assert double_all([1, 2, 3]) == [2, 4, 6]\nassert double_all([]) == []",
)
TESTS_FAIL = reply(
    "Write a function `last_word(sentence: str) -> str` that returns the final word of a sentence.",
    "def last_word(sentence: str) -> str:\n    return sentence.split()[0]",
    "assert last_word('the quick fox') == 'fox'",
)
PASSES_ON_STUB = reply(
    "Write a function `triple(x: int) -> int` that multiplies a number by three.",
    "def triple(x: int) -> int:\n    return 3 * x",
    "assert callable(triple)\ntriple(2)",
)
SYNTAX_ERROR = reply(
    "Write a function `halve(x: float) -> float` that divides a number by two.",
    "def halve(x: float) -> float\n    return x / 2",
    "assert halve(4) == 2",
)
LOOPS = reply(
    "Write a function `next_even(n: int) -> int` that returns the smallest even number above n.",
    "def next_even(n: int) -> int:\n    while True:\n        n += 0\n    return n",
    "assert next_even(3) == 4",
)


def scripted(answers: list[str | Reply]) -> ScriptedBackend:
    """Answers in the order requests reach the backend (cache hits never do)."""
    it = itertools.cycle(answers)
    lock = threading.Lock()

    def answer(request: Request) -> str | Reply:
        with lock:
            return next(it)

    return ScriptedBackend(answer=answer)


def config(**kw):
    base = {"backend": {"name": "local"}, "timeout": 1.5, "workers": 2}
    return load_generate_config("code", base | kw)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# ------------------------------------------------------------------------------------------- parser
def test_parse_a_well_formed_reply() -> None:
    got = cg.parse_code_reply("Sure!\n" + CORRECT + "\nHope this helps.")
    assert isinstance(got, cg.CodeSample)
    assert got.task.startswith("Write a function `double_all")
    assert (
        got.solution == "def double_all(values: list[int]) -> list[int]:\n    return [2 * v for v in values]"
    )
    assert got.tests == "assert double_all([1, 2, 3]) == [2, 4, 6]\nassert double_all([]) == []"


def test_parse_other_heading_styles_and_a_second_exercise_is_ignored() -> None:
    text = (
        "**Task:**\nAdd two numbers.\n## Solution:\ndef add(a, b):\n    return a + b\n"
        "# tests\n```py\nassert add(1, 2) == 3\n```\n### Task\nSomething else\n### Solution\n```python\nx\n```"
    )
    got = cg.parse_code_reply(text)
    assert isinstance(got, cg.CodeSample)
    assert (got.task, got.solution, got.tests) == (
        "Add two numbers.",
        "def add(a, b):\n    return a + b",
        "assert add(1, 2) == 3",
    )


@pytest.mark.parametrize(
    ("text", "finish", "reason", "detail"),
    [
        (
            "Here is a function:\n```python\ndef f(): pass\n```",
            "stop",
            "malformed_reply",
            "no '### Task' section",
        ),
        (
            "### Task\nDo it.\n### Tests\n```python\nassert 1\n```",
            "stop",
            "malformed_reply",
            "no '### Solution'",
        ),
        (
            "### Task\n\n### Solution\n```python\nx = 1\n```\n### Tests\nassert x",
            "stop",
            "malformed_reply",
            "'### Task' section is empty",
        ),
        (
            "### Task\nDo.\n### Solution\n```python\ndef f(): return 1\n```\n### Tests\n```python\nassert f() ==",
            "length",
            "truncated",
            "length limit",
        ),
        ("### Task\nDo.\n### Solution\n```python\ndef f(): return 1", "length", "truncated", "length limit"),
    ],
)
def test_parse_refusals_name_their_reason(text: str, finish: str, reason: str, detail: str) -> None:
    got = cg.parse_code_reply(text, finish)
    assert isinstance(got, cg.Rejected) and got.reason == reason and detail in got.detail


def test_a_reply_cut_after_its_tests_closed_is_not_truncated() -> None:
    got = cg.parse_code_reply(CORRECT + "\nNow let me explain the solution in detail, line by", "length")
    assert isinstance(got, cg.CodeSample)


def test_syntax_and_shape_problems() -> None:
    def sample(solution: str, tests: str = "assert f() == 1") -> cg.CodeSample:
        return cg.CodeSample("t", solution, tests)

    assert cg.syntax_problem(sample("def f():\n    return 1")) is None
    assert cg.syntax_problem(sample("def f(:\n    return 1")).startswith("solution line 1")
    assert cg.syntax_problem(sample("return 1")).startswith("solution line 1: 'return' outside function")
    assert cg.syntax_problem(sample("def f(): return 1", "assert f( == 1")).startswith("tests line 1")
    assert cg.shape_problem(sample("def f(): return 1", "print(f())")).reason == "no_tests"
    assert cg.shape_problem(sample("def f(): return 1", "")).reason == "no_tests"
    assert cg.shape_problem(sample("f = lambda: 1")).reason == "no_function"
    assert cg.shape_problem(sample("def f(): return 1")) is None


# ------------------------------------------------------------------------------------------- stubs
SOLUTION = '''import math

LIMIT = 10


@staticmethod
def area(r: float, *, scale: float = 1.0) -> float:
    """Area of a circle."""
    return math.pi * r * r * scale


class Counter:
    start = 0

    def __init__(self, n: int) -> None:
        self.n = n

    def bump(self) -> int:
        self.n += 1
        return self.n
'''


def test_stubs_keep_signatures_docstrings_and_module_statements() -> None:
    none_stub = cg.stub_source(SOLUTION, "return_none")
    raise_stub = cg.stub_source(SOLUTION, "raise")
    assert (
        'def area(r: float, *, scale: float=1.0) -> float:\n    """Area of a circle."""\n    return None'
        in none_stub
    )
    assert "import math" in none_stub and "LIMIT = 10" in none_stub and "@staticmethod" in none_stub
    assert (
        "def bump(self) -> int:\n        raise NotImplementedError" in raise_stub
        and "start = 0" in raise_stub
    )
    assert "math.pi" not in none_stub and "self.n += 1" not in raise_stub
    plain = "def f(x):\n    return x + 1"
    ns: dict = {}
    exec(cg.stub_source(plain, "return_none"), ns)
    assert ns["f"](1) is None
    exec(cg.stub_source(plain, "raise"), ns)
    with pytest.raises(NotImplementedError):
        ns["f"](1)
    with pytest.raises(ValueError, match="unknown stub 'pass'"):
        cg.stub_source(plain, "pass")


# ------------------------------------------------------------------------------------------- prompt, seeds, config
def test_bundled_seeds_are_exercises_with_tests() -> None:
    seeds = cg.load_code_seeds()
    assert len(seeds) == 18 and len({s.task for s in seeds}) == 18
    assert all(s.tests.count("assert") >= 1 and cg.function_names(s.solution) for s in seeds)
    assert all(cg.syntax_problem(s) is None for s in seeds)
    assert [s.id for s in seeds][:2] == ["code_seed_01", "code_seed_02"]


def test_seeds_from_another_format(tmp_path: Path) -> None:
    path = tmp_path / "alpaca.json"
    path.write_text(
        json.dumps([{"instruction": "Add one.", "input": "", "output": "def f(x):\n    return x + 1"}])
    )
    (seed,) = cg.load_code_seeds(path)
    assert (seed.task, seed.solution, seed.tests) == ("Add one.", "def f(x):\n    return x + 1", "")


def test_requests_differ_share_one_sampling_per_round_and_repeat_for_the_same_seed() -> None:
    cfg = config(per_round=6, shots=3, seed=4)
    seeds = cg.load_code_seeds()
    reqs, shown = cg.CodeGenerator._requests(cfg, 2, seeds, [])
    assert len(reqs) == 6 and len({r.messages[0]["content"] for r in reqs}) == 6
    assert {r.sampling for r in reqs} == {reqs[0].sampling} and reqs[0].sampling.seed == 6
    assert all(len(s) == 3 for s in shown)
    prompt = reqs[0].messages[0]["content"]
    assert prompt.startswith(cg.HEADER) and prompt.endswith(cg.INSTRUCTION)
    assert prompt.count("### Task\n") == 3 and prompt.count("### Tests\n```python\n") == 3
    again, _ = cg.CodeGenerator._requests(cfg, 2, seeds, [])
    assert [r.messages for r in again] == [r.messages for r in reqs]
    other, _ = cg.CodeGenerator._requests(cfg, 3, seeds, [])
    assert [r.messages for r in other] != [r.messages for r in reqs]


def test_config_errors_name_the_key() -> None:
    with pytest.raises(ConfigError, match="stubs"):
        config(stubs=["pass"])
    with pytest.raises(ConfigError, match="stubs"):
        config(stubs=[])
    with pytest.raises(ConfigError, match="generated_shots"):
        config(shots=2, generated_shots=3)
    with pytest.raises(ConfigError, match="decontaminate"):
        config(decontaminate=["mbpp"])
    with pytest.raises(ConfigError, match="unknown key 'shot'"):
        config(shot=2)
    with pytest.raises(ConfigError, match="timeout"):
        config(timeout=0)


# ------------------------------------------------------------------------------------------- the generator
@pytest.mark.slow
@linux_only
def test_only_the_correct_sample_is_kept_and_each_other_rejected_with_its_reason(tmp_path: Path) -> None:
    backend = scripted([CORRECT, TESTS_FAIL, PASSES_ON_STUB, SYNTAX_ERROR, LOOPS])
    cfg = config(n=5, per_round=5, max_rounds=1)
    res = generate("code", cfg, tmp_path / "out", show_progress=False, backend=backend)
    assert backend.calls == 5
    (rec,) = res.records
    assert rec.messages[0].content.startswith("Write a function `double_all")
    assert (
        rec.messages[1].content
        == "```python\ndef double_all(values: list[int]) -> list[int]:\n    return [2 * v for v in values]\n```"
    )
    assert rec.meta["tests"].startswith("assert double_all([1, 2, 3])")
    assert rec.meta["functions"] == ["double_all"] and rec.meta["source"] == "generate:code"
    assert rec.meta["verdicts"]["solution"]["status"] == "passed"
    assert rec.meta["verdicts"]["stubs"] == {"return_none": "failed", "raise": "failed"}
    assert len(rec.meta["shown"]) == cfg.shots and rec.meta["most_similar"]

    rejects = read_jsonl(tmp_path / "out" / "rejects.jsonl")
    by_reason = {r["reason"]: r for r in rejects}
    assert sorted(by_reason) == ["syntax_error", "tests_fail", "tests_pass_on_stub", "timeout"]
    assert len(rejects) == 4 and all(r["counted"] for r in rejects)
    assert (
        by_reason["tests_fail"]["step"] == "execute" and "AssertionError" in by_reason["tests_fail"]["detail"]
    )
    assert (
        by_reason["timeout"]["step"] == "execute"
        and by_reason["timeout"]["verdicts"]["solution"]["status"] == "timeout"
    )
    assert by_reason["syntax_error"]["step"] == "syntax" and by_reason["syntax_error"]["detail"].startswith(
        "solution line 1"
    )
    stub = by_reason["tests_pass_on_stub"]
    assert stub["step"] == "stub" and stub["detail"] == "the tests pass on the return_none stub"
    assert stub["verdicts"]["stubs"] == {"return_none": "passed", "raise": "failed"}
    assert stub["task"].startswith("Write a function `triple") and stub["tests"].startswith("assert callable")

    card = json.loads((tmp_path / "out" / "card.json").read_text())
    assert card["accounting"] == {"in": 5, "kept": 1, "rejected": 4, "balanced": True}
    assert card["rejected_by_reason"] == {
        "syntax_error": 1,
        "tests_fail": 1,
        "tests_pass_on_stub": 1,
        "timeout": 1,
    }
    steps = {s["step"]: s for s in card["steps"]}
    assert steps["execute"]["in"] == 4 and steps["execute"]["kept"] == 2  # the syntax error never ran
    assert steps["stub"]["in"] == 2 and steps["stub"]["kept"] == 1
    assert steps["decontaminate"]["in"] == 1 and steps["rouge_novelty"]["kept"] == 1
    assert card["stopped"] == "max_rounds (1) reached with 1 of 5 samples"
    assert card["summary"]["sent"] == 5 and card["summary"]["unit"] == "sample"
    assert read_jsonl(tmp_path / "out" / "records.jsonl")[0]["meta"]["id"] == rec.id

    # the same command again: every request is in the cache, nothing is sent, the same sample is kept
    again = scripted([CORRECT])
    res2 = generate("code", cfg, tmp_path / "out", show_progress=False, backend=again)
    assert again.calls == 0
    assert res2.card["summary"]["sent"] == 0 and res2.card["summary"]["cache_hits"] == 5
    (rec2,) = res2.records
    assert rec2.messages == rec.messages and rec2.id == rec.id and rec2.meta["tests"] == rec.meta["tests"]
    assert res2.card["rejected_by_reason"] == card["rejected_by_reason"]


@pytest.mark.slow
@linux_only
def test_humaneval_copies_seed_copies_and_near_copies_are_rejected(tmp_path: Path) -> None:
    from instructkit.benchmark_sets import humaneval_problems

    he = humaneval_problems()[0]
    copied = reply(
        "Check if in given list of numbers, are any two numbers closer to each other than given threshold.",
        he["prompt"] + he["canonical_solution"],
        he["test"] + f"\ncheck({he['entry_point']})",
    )
    seed = next(s for s in cg.load_code_seeds() if s.id == "code_seed_16")
    seed_copy = reply(seed.task, seed.solution, seed.tests)
    near_copy = reply(seed.task.replace("removes repeated", "drops repeated"), seed.solution, seed.tests)
    backend = scripted([copied, seed_copy, near_copy, CORRECT])
    res = generate("code", config(n=4, per_round=4, max_rounds=1), tmp_path / "out", show_progress=False,
                   backend=backend)  # fmt: skip
    assert [r.messages[0].content for r in res.records] == [cg.parse_code_reply(CORRECT).task]
    rejects = {r["reason"]: r for r in read_jsonl(tmp_path / "out" / "rejects.jsonl")}
    assert sorted(rejects) == ["contaminated", "duplicate_task", "too_similar"]
    assert rejects["contaminated"]["step"] == "decontaminate"
    assert rejects["contaminated"]["detail"].startswith("humaneval HumanEval/0")
    assert rejects["duplicate_task"]["step"] == "exact_dedup"
    assert rejects["too_similar"]["step"] == "rouge_novelty" and seed.task in rejects["too_similar"]["detail"]
    assert res.card["accounting"]["balanced"] and res.card["accounting"]["in"] == 4
    # a run that turns decontamination off keeps the HumanEval copy
    off = generate("code", config(n=1, per_round=1, max_rounds=1, decontaminate=[]), tmp_path / "off",
                   show_progress=False, backend=scripted([copied]))  # fmt: skip
    assert len(off.records) == 1 and "decontaminate" not in {s["step"] for s in off.card["steps"]}


@pytest.mark.slow
@linux_only
def test_replies_that_do_not_parse_are_rejected_with_their_reason(tmp_path: Path) -> None:
    answers: list[str | Reply] = [
        "I cannot help with that.",
        Reply(CORRECT[: CORRECT.index("assert double_all([]")], "length", 10, 10),
        reply("Print hello.", "def hello():\n    print('hello')", "hello()"),
        reply("Set x to one.", "x = 1", "assert x == 1"),
        Reply.failed("retries exhausted: 503"),
    ]
    res = generate("code", config(n=1, per_round=5, max_rounds=1), tmp_path / "out", show_progress=False,
                   backend=scripted(answers))  # fmt: skip
    assert res.records == []
    rejects = read_jsonl(tmp_path / "out" / "rejects.jsonl")
    assert [(r["step"], r["reason"]) for r in rejects] == [
        ("reply", "malformed_reply"),
        ("reply", "truncated"),
        ("shape", "no_tests"),
        ("shape", "no_function"),
        ("reply", "request_failed"),
    ]
    assert rejects[0]["reply"] == "I cannot help with that."
    assert res.card["accounting"] == {"in": 5, "kept": 0, "rejected": 5, "balanced": True}


@pytest.mark.slow
@linux_only
def test_the_target_ends_the_run_and_the_token_budget_stops_it(tmp_path: Path) -> None:
    other = CORRECT.replace("double_all", "negate_all").replace("times two", "negated").replace("2 * v", "-v")
    other = other.replace("[2, 4, 6]", "[-1, -2, -3]")
    res = generate("code", config(n=1, per_round=3, max_rounds=5), tmp_path / "n1", show_progress=False,
                   backend=scripted([TESTS_FAIL, CORRECT, other]))  # fmt: skip
    assert len(res.records) == 1 and res.card["summary"]["unused_replies"] == 1
    assert res.card["stopped"].startswith("reached 1 samples in 1 round(s) (1 later replies")
    assert res.card["accounting"] == {"in": 2, "kept": 1, "rejected": 1, "balanced": True}

    backend = scripted([CORRECT])
    res = generate("code", config(n=5, per_round=5, budget_tokens=50), tmp_path / "budget", show_progress=False,
                   backend=backend)  # fmt: skip
    assert backend.calls == 1  # the first request alone is over the budget
    assert (
        res.card["stopped"].startswith("token budget spent") and "1 of 5 samples made" in res.card["stopped"]
    )
    assert len(res.records) == 1 and res.card["accounting"]["balanced"]


@pytest.mark.slow
@linux_only
def test_bundled_seeds_pass_their_tests_fail_on_both_stubs_and_are_clean() -> None:
    from instructkit.data.base import build_step
    from instructkit.records import Record
    from instructkit.sandbox import Sandbox

    seeds = cg.load_code_seeds()
    with Sandbox(2, timeout=5.0, run_name=cg.RUN_NAME, must_finish=True) as sandbox:
        assert [r.status for r in sandbox.map([cg.program(s) for s in seeds])] == ["passed"] * len(seeds)
        for kind in cg.STUBS:
            stubbed = [cg.program(s, cg.stub_source(s.solution, kind)) for s in seeds]
            assert [r.status for r in sandbox.map(stubbed)] == ["failed"] * len(seeds)
    decontam = build_step("decontaminate")
    for s in seeds:
        rec = Record.chat([{"role": "user", "content": s.task}, {"role": "assistant", "content": s.solution}])
        assert decontam.keep(rec) is True, s.id


@pytest.mark.slow
@linux_only
def test_the_command_against_an_openai_compatible_server(tmp_path: Path) -> None:
    """`instructkit generate code` end to end: the shared backend flags, the subcommand's own options as
    config keys, the sandbox, the summary table."""
    import os
    import subprocess

    from tests.fake_openai_server import FakeServer

    root = Path(__file__).parent.parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root / "src"), os.environ.get("PYTHONPATH", "")])}
    out = tmp_path / "out"
    with FakeServer(answer=lambda prompt: CORRECT) as server:
        args = [sys.executable, "-m", "instructkit.cli", "generate", "code", "-n", "1", "--per-round", "2",
                "--stub", "raise", "--timeout", "5", "--workers", "1", "--base-url", server.url,
                "--api-key", "k", "--model", "fake", "-o", str(out), "-q"]  # fmt: skip
        done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    said = " ".join(done.stdout.split())  # rich wraps long lines
    assert "1 kept" in said and "stopped:" in said, said
    card = json.loads((out / "card.json").read_text())
    assert card["config"]["stubs"] == ["raise"] and card["config"]["per_round"] == 2
    assert card["backend"]["backend"] == "openai" and card["config"]["backend"]["api_key"] == "***"
    assert card["accounting"]["balanced"] and card["accounting"]["kept"] == 1


def test_shots_mix_kept_samples_in_once_there_are_some() -> None:
    import random

    seeds = cg.load_code_seeds()
    kept = [cg.CodeSample(f"kept {i}", "def f(): return 1", "assert f() == 1") for i in range(3)]
    first = cg.choose_shots(seeds, [], 4, 1, random.Random(0))
    assert len(first) == 4 and all(s in seeds for s in first)
    later = cg.choose_shots(seeds, kept, 4, 1, random.Random(0))
    assert sum(s in kept for s in later) == 1 and sum(s in seeds for s in later) == 3
