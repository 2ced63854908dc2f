"""The worker side of the sandbox: what runs in a worker interpreter (``python -I worker.py --worker
CONFIG_JSON``) and in the sample processes it forks. The package docstring has the design.

Why one file: it runs as a script in isolated mode, which puts no folder on
``sys.path``, so it cannot import a sibling module (and must not import instructkit or anything outside the
standard library, which would make every worker as large as the caller). Its parts, in order: the
confinement a worker sets up once (namespaces, the probe, mounts, the seccomp filter), the per-sample
child (rlimits, the uid drop, running the program), and cleanup (killing and reaping what a sample left).
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass

# -- runs as `python -I worker.py --worker CONFIG_JSON` ------------------------------------------------------
# Everything below runs in the worker or in the sample processes it forks, so it imports only stdlib.
#
# Cost model: a forked child shares the worker's memory copy-on-write, and every Python-level step writes
# (reference counts, specialization caches), so each step in the child copies pages. Those page faults
# are most of what a sample costs beyond its own program. So whatever is the same for every sample (the
# environment, stdio objects, sys.path and sys.argv, no_new_privs, which fds to close) is done once in the
# worker, and per-sample values (rlimits) are computed before the fork; the child makes a few syscalls.

_CLONE_NEWNS = 0x00020000
_CLONE_NEWIPC = 0x08000000
_CLONE_NEWUSER = 0x10000000
_CLONE_NEWPID = 0x20000000
_CLONE_NEWNET = 0x40000000
_MS_NOSUID, _MS_NODEV, _MS_NOEXEC, _MS_REC, _MS_PRIVATE = 0x2, 0x4, 0x8, 0x4000, 0x40000
_PR_SET_PDEATHSIG = 1
_PR_SET_SECCOMP = 22
_PR_SET_CHILD_SUBREAPER = 36
_PR_SET_NO_NEW_PRIVS = 38
_SECCOMP_MODE_FILTER = 2
_SYS_MOUNT_SETATTR = 442  # the same number on x86_64 and aarch64 (and every other architecture but alpha)
_AT_FDCWD, _AT_RECURSIVE, _MOUNT_ATTR_RDONLY = -100, 0x8000, 0x1
_DONE_FD = 3  # the sample writes b"S" here once set up, and a nonce once its program has run to the end
_PRIVATE_TMPFS = ("/tmp", "/dev/shm")  # a fresh tmpfs on each, per sample, where the kernel allows
_libc = None
_seccomp_buffers: list = []  # the filter the samples install, kept alive for the worker's lifetime


def _libc_call(name: str, *args: int | bytes | None) -> int:
    import ctypes

    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    # c_ulong: prctl and syscall are variadic, and the kernel checks unused arguments are exactly 0.
    returned = getattr(_libc, name)(*(ctypes.c_ulong(a) if isinstance(a, int) else a for a in args))
    if returned == -1:
        err = ctypes.get_errno()
        raise OSError(err, f"{os.strerror(err)} ({name})")
    return returned


@dataclass
class _Confinement:
    """What this worker set up once; decides how each sample is confined and cleaned up."""

    uid: int | None  # samples run as this uid; None when the worker is not root
    network: str  # "netns" or "guard"
    pid_namespace: bool  # the worker is init of its own PID namespace, and samples live in it
    sample_dir: str  # each sample's cwd, made for it and removed after it; one path, so one environment
    unshare_flags: int  # each sample's own namespaces (IPC, mount); 0: none
    tmpfs: tuple[bytes, ...]  # fresh tmpfs per sample (the cwd made in /tmp's); empty: the host's /tmp
    read_only_host: bool  # in the sample's mount namespace, every mount but its tmpfs is read-only
    private_proc: bool  # a fresh /proc per sample, showing the worker's PID namespace only
    seccomp: int  # address of the sock_fprog each sample installs; 0: none
    devnull: int  # fds the child needs, opened once
    out_fd: int
    err_fd: int
    close_ranges: list[tuple[int, int]]  # what the child closes: all but 0-3 and the import-path fds


def _worker_main(config: dict) -> None:
    inp, out = sys.stdin.buffer, sys.stdout.buffer  # the pipes to the parent, before sys.std* change
    uid = None
    if os.geteuid() == 0:
        import pwd

        uid = config["uid_base"] + os.getpid()
        try:
            name = pwd.getpwuid(uid).pw_name
        except KeyError:
            pass
        else:  # a real account: its processes would be killed by the sweep
            error = f"uid {uid} belongs to user {name!r}; pass another uid_base"
            out.write(json.dumps({"error": error}).encode() + b"\n")
            out.flush()
            return
    why_not = {"uid drop": None if uid is not None else "the worker is not root"}
    network = config["network"]
    why_not["network namespace"] = f"turned off (network={network!r})"
    if network == "auto":
        try:
            _libc_call("unshare", _CLONE_NEWNET)
            network, why_not["network namespace"] = "netns", None
        except OSError as exc:
            network, why_not["network namespace"] = "guard", f"refused ({exc.strerror})"
    if config.get("sweep_uid") is not None and uid is not None:
        # leftovers of a killed worker that had no PID namespace; from out here, where kill(-1) sees them
        _kill_uid(config["sweep_uid"])
    pid_namespace = False
    if uid is None:
        why_not["PID namespace"] = "needs root"
    elif not config["pid_namespace"]:
        why_not["PID namespace"] = "turned off (pid_namespace=False)"
    else:
        try:
            _become_pid_namespace_init()
            pid_namespace, why_not["PID namespace"] = True, None
        except OSError as exc:
            why_not["PID namespace"] = f"refused ({exc.strerror})"
    _libc_call("prctl", _PR_SET_CHILD_SUBREAPER, 1)  # orphans of samples come back to this process
    # inherited by every sample, and no setuid binary can then give root back; harmless to the worker.
    # It also lets a sample of any uid install the seccomp filter.
    _libc_call("prctl", _PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    seccomp = 0
    try:
        seccomp = _load_seccomp(_seccomp_program(all_sockets=network == "guard"))
    except ValueError as exc:
        found = _probe_isolation(uid, pid_namespace, 0)
        found["seccomp"] = str(exc)
    else:
        found = _probe_isolation(uid, pid_namespace, seccomp)
    got = {key: why is None for key, why in found.items()}
    if why_not["network namespace"]:
        instead = (
            "the seccomp filter refuses socket()" if got["seccomp"] else "only a Python-level socket guard"
        )
        why_not["network namespace"] += f"; {instead}"
    why_not.update((_PROTECTIONS[key], why) for key, why in found.items())
    missing = [f"{name}: {why}" for name, why in why_not.items() if why is not None]
    seccomp = seccomp if got["seccomp"] else 0
    import builtins  # noqa: F401  what a sample needs, imported from the worker's own clean sys.path
    import linecache  # noqa: F401
    import resource  # noqa: F401

    if network == "guard":
        import socket  # noqa: F401
    host_pid = int(os.readlink("/proc/self"))  # os.getpid() is 1 inside a PID namespace
    conf = _prepare(config, uid, network, pid_namespace, f"worker-{host_pid}", got, seccomp)
    info = {"network": network, "uid": uid, "pid": host_pid, "pid_namespace": pid_namespace, **got,
            "missing": missing}  # fmt: skip
    out.write(json.dumps(info).encode() + b"\n")
    out.flush()
    for line in inp:
        job = json.loads(line)
        try:
            reply = _execute(job, conf)
        except Exception:  # the sandbox's own failure, not the program's: report it, keep serving
            reply = {"status": "error", "returncode": None, "stdout": "", "stderr": traceback.format_exc(),
                     "seconds": 0.0, "peak_memory_mb": 0.0}  # fmt: skip
        try:
            out.write(json.dumps(reply).encode() + b"\n")
            out.flush()
        except BrokenPipeError:  # the parent is gone
            return


def _become_pid_namespace_init() -> None:
    """Fork into a new PID namespace; the child, its init, carries on as the worker and returns.

    Inside, ``kill(-1, SIGKILL)`` ends every process of every sample and nothing else, orphans come to
    the worker to be reaped, and if the worker dies the kernel kills the whole namespace. The original
    process only waits for it and exits with it. OSError where namespaces are not allowed.
    """
    _libc_call("unshare", _CLONE_NEWPID)
    inner = os.fork()
    if inner == 0:
        _libc_call("prctl", _PR_SET_PDEATHSIG, signal.SIGKILL)
        return
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)  # let go of the pipes: the parent sees end of file as soon as the inner worker exits
    os.dup2(null, 1)
    _, status = os.waitpid(inner, 0)
    os._exit(max(os.waitstatus_to_exitcode(status), 0))


#: What the probe tries, as ``Sandbox.isolation`` names it and as its ``missing`` lines say it.
_PROTECTIONS = {
    "ipc_namespace": "IPC namespace",
    "private_tmp": "private /tmp and /dev/shm",
    "read_only_host": "read-only host mounts",
    "private_proc": "private /proc",
    "seccomp": "seccomp filter",
}


def _probe_isolation(uid: int | None, pid_namespace: bool, seccomp: int) -> dict[str, str | None]:
    """Try each per-sample protection once, in a throwaway child, as a sample will: key -> why not, or None.

    So that ``Sandbox.isolation`` says at start what the samples get, and each sample does only what works.
    """
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        found: dict[str, str | None] = {}

        def attempt(key: str, why_not: str | None, step: Callable[[], object]) -> None:
            if why_not is None:
                try:
                    step()
                except OSError as exc:
                    why_not = f"refused ({exc.strerror})"
            found[key] = why_not
            os.write(write, json.dumps([key, why_not]).encode() + b"\n")  # line by line: the probe may die

        def private_tmp() -> None:
            _libc_call("unshare", _CLONE_NEWNS)
            _make_mounts_private()
            _mount_tmpfs(_tmpfs_targets(), b"size=1m")

        root = None if uid is not None else "needs root"
        attempt("ipc_namespace", root, lambda: _libc_call("unshare", _CLONE_NEWIPC))
        attempt("private_tmp", root, private_tmp)
        mounts = found["private_tmp"] and "needs the mount namespace"
        attempt("read_only_host", mounts, _remount_read_only)
        attempt("private_proc", mounts or (None if pid_namespace else "needs the PID namespace"), _mount_proc)
        attempt("seccomp", None if seccomp else "not built", lambda: _install_seccomp(seccomp, check=True))
        os._exit(0)
    os.close(write)
    _, status = os.waitpid(pid, 0)
    with open(read, "rb") as lines:
        found = dict(json.loads(line) for line in lines)
    died = f"the probe died (exit status {os.waitstatus_to_exitcode(status)})"
    return {key: found.get(key, died) for key in _PROTECTIONS}


def _tmpfs_targets() -> tuple[bytes, ...]:
    return tuple(target.encode() for target in _PRIVATE_TMPFS if os.path.isdir(target))


def _make_mounts_private() -> None:
    """In a new mount namespace: no mount made here reaches the host's (``mount --make-rprivate /``)."""
    _libc_call("mount", None, b"/", None, _MS_REC | _MS_PRIVATE, None)


def _remount_read_only() -> None:
    """Every mount of this (new) namespace read-only in one call: ``mount_setattr(2)``, Linux 5.12+.

    Files opened before stay writable (the sample's stdout and stderr): they belong to the worker's mounts.
    """
    import ctypes

    # struct mount_attr: attributes to set, to clear, propagation, user namespace fd
    attr = (ctypes.c_uint64 * 4)(_MOUNT_ATTR_RDONLY, 0, 0, 0)
    _libc_call("syscall", _SYS_MOUNT_SETATTR, _AT_FDCWD, b"/", _AT_RECURSIVE, attr, ctypes.sizeof(attr))


def _mount_tmpfs(targets: tuple[bytes, ...], options: bytes) -> None:
    for target in targets:
        _libc_call("mount", b"tmpfs", target, b"tmpfs", _MS_NOSUID | _MS_NODEV, options)


def _mount_proc() -> None:
    """A /proc of the PID namespace this process is in: the worker's, which holds only it and the sample."""
    _libc_call("mount", b"proc", b"/proc", b"proc", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC, None)


def _install_seccomp(address: int, check: bool = False) -> None:
    _libc_call("prctl", _PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, address, 0, 0)
    if check:  # the filter must refuse socket(AF_UNIX, SOCK_STREAM) with EPERM
        try:
            os.close(_libc_call("socket", 1, 1, 0))
        except PermissionError:
            return
        raise OSError(0, "the filter let socket(AF_UNIX) through")


#: Syscalls the filter checks, for the architectures it knows: (AUDIT_ARCH_*, numbers).
_SECCOMP_ARCHES = {
    "x86_64": (0xC000003E, {"socket": 41, "socketpair": 53, "clone": 56, "unshare": 272, "setns": 308,
                            "clone3": 435, "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427,
                            "add_key": 248, "request_key": 249, "keyctl": 250}),
    "aarch64": (0xC00000B7, {"socket": 198, "socketpair": 199, "clone": 220, "unshare": 97, "setns": 268,
                             "clone3": 435, "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427,
                             "add_key": 217, "request_key": 218, "keyctl": 219}),
}  # fmt: skip


def _seccomp_program(all_sockets: bool) -> bytes:
    """The samples' syscall filter: classic BPF, as ``struct sock_filter`` entries, for this machine.

    * ``socket(AF_UNIX)`` is refused (EPERM): a network namespace does not isolate UNIX sockets bound to a
      path (D-Bus, syslog, docker), and BPF cannot read the path a ``connect`` names, so no such socket
      is made at all. With ``all_sockets`` (no network namespace) every ``socket()`` is. ``socketpair``
      stays, stream and seqpacket only (asyncio and multiprocessing use them): a datagram pair can
      ``sendto`` a path. Abstract UNIX addresses belong to the network namespace, so are the sample's own.
    * A new user namespace (``unshare``/``clone`` with ``CLONE_NEWUSER``) and ``setns`` are refused: as
      root of its own user namespace a process reaches much kernel code (mounts, netfilter) meant for
      root only. ``clone3`` answers ENOSYS (its flags sit in memory BPF cannot read), so libc falls back
      to ``clone``, which the filter can check.
    * io_uring is refused: its operations (connect, openat, socket) run without passing the filter.
    * Kernel keyrings are refused: keys belong to the uid, not the process, and would outlive the sample.
    * Syscalls of another architecture (32-bit ones on a 64-bit kernel) kill the process, and x32 numbers
      are refused: the numbers above would not mean the same syscalls there.

    Hand-written rather than through libseccomp: the worker runs ``python -I`` with the stdlib only, on
    purpose (see the cost model), and libseccomp's Python binding is a Debian package for the system
    Python, not something this interpreter can import; the filter is a dozen comparisons. ValueError on
    a machine it has no syscall numbers for.
    """
    import struct

    machine = os.uname().machine
    if machine not in _SECCOMP_ARCHES or sys.maxsize < 2**32 or sys.byteorder != "little":
        raise ValueError(
            f"no syscall numbers for {machine} ({struct.calcsize('P') * 8}-bit, {sys.byteorder})"
        )
    arch, nr = _SECCOMP_ARCHES[machine]
    load, jeq, jge, jset, and_, ret = 0x20, 0x15, 0x35, 0x45, 0x54, 0x06  # BPF_LD|BPF_W|BPF_ABS, BPF_JMP|...
    allow, kill = 0x7FFF0000, 0x80000000  # SECCOMP_RET_ALLOW, SECCOMP_RET_KILL_PROCESS
    eperm, enosys = 0x00050000 | 1, 0x00050000 | 38  # SECCOMP_RET_ERRNO | errno
    arg = [16, 24]  # offsets of the low 32 bits of arguments 0 and 1 in struct seccomp_data (little-endian)
    # (opcode, k, jump if true, jump if false); a jump names a label below, None goes on to the next one
    code: list = [(load, 4), (jeq, arch, None, "kill"), (load, 0)]
    if machine == "x86_64":  # the x32 ABI: the same syscalls again, under numbers with bit 30 set
        code.append((jge, 0x40000000, "eperm", None))
    refused = ("setns", "io_uring_setup", "io_uring_enter", "io_uring_register", "add_key", "request_key")
    refused += ("keyctl",)
    code += [
        (jeq, nr["socket"], "socket", None),
        (jeq, nr["socketpair"], "socketpair", None),
        (jeq, nr["unshare"], "namespace flags", None),
        (jeq, nr["clone"], "namespace flags", None),
        (jeq, nr["clone3"], "enosys", None),
        *[(jeq, nr[name], "eperm", None) for name in refused],
        (ret, allow),
        "socket",
        *([(ret, eperm)] if all_sockets else [(load, arg[0]), (jeq, 1, "eperm", "allow")]),  # AF_UNIX
        "socketpair",  # its type without SOCK_NONBLOCK/SOCK_CLOEXEC: SOCK_STREAM or SOCK_SEQPACKET
        *[(load, arg[1]), (and_, 0xF), (jeq, 1, "allow", None), (jeq, 5, "allow", "eperm")],
        "namespace flags",
        *[(load, arg[0]), (jset, _CLONE_NEWUSER, "eperm", "allow")],
        "allow",
        (ret, allow),
        "eperm",
        (ret, eperm),
        "enosys",
        (ret, enosys),
        "kill",
        (ret, kill),
    ]
    labels, n = {}, 0
    for item in code:
        if isinstance(item, str):
            labels[item] = n
        else:
            n += 1
    program = []
    for item in code:
        if not isinstance(item, str):
            op, k, *jumps = item
            jt, jf = (labels[j] - len(program) - 1 if j else 0 for j in [*jumps, None, None][:2])
            program.append(struct.pack("=HBBI", op, jt, jf, k))
    return b"".join(program)


def _load_seccomp(program: bytes) -> int:
    """The filter as a ``struct sock_fprog`` that lives as long as the worker; returns its address."""
    import ctypes

    class SockFprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    buffer = ctypes.create_string_buffer(program, len(program))
    fprog = SockFprog(len(program) // 8, ctypes.addressof(buffer))
    _seccomp_buffers.extend([buffer, fprog])
    return ctypes.addressof(fprog)


def _prepare(config: dict, uid: int | None, network: str, pid_namespace: bool, name: str, got: dict[str, bool],
             seccomp: int) -> _Confinement:  # fmt: skip
    """Set up, once, everything that is the same for each sample (see the cost model above)."""
    import fcntl

    if got["private_tmp"]:  # made, per sample, in the sample's own /tmp
        sample_dir = os.path.join("/tmp", os.path.basename(config["workdir"]), name)
    else:
        sample_dir = os.path.join(config["workdir"], name)
    hidden = _PRIVATE_TMPFS if got["private_tmp"] else ()
    path_fds = _ImportView.build(config["sys_path"], uid, hidden).install()

    def high_fd(fd: int) -> int:  # out of the way of fds 0-3 of a child and of the worker's per-sample fds
        moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 256)
        os.close(fd)
        return moved

    devnull = high_fd(os.open(os.devnull, os.O_RDWR))

    def unlinked_file() -> int:  # the samples' stdout and stderr, reused: truncated before each sample
        try:
            return high_fd(os.open(config["workdir"], os.O_TMPFILE | os.O_RDWR, 0o600))
        except OSError:  # a file system without O_TMPFILE
            path = os.path.join(config["workdir"], f".{name}-{os.urandom(8).hex()}")
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
            os.unlink(path)
            return high_fd(fd)

    out_fd, err_fd = unlinked_file(), unlinked_file()
    close_ranges, low = [], _DONE_FD + 1  # devnull and the files too: the child has them as 0-2 by then
    for fd in sorted(path_fds):
        close_ranges.append((low, fd))
        low = fd + 1
    close_ranges.append((low, os.sysconf("SC_OPEN_MAX")))
    os.environ.clear()
    os.environ.update(PATH="/usr/local/bin:/usr/bin:/bin", HOME=sample_dir, TMPDIR=sample_dir, LANG="C.UTF-8",
                      OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")  # fmt: skip
    # the worker talks to the parent through the buffers it took at start; these are for the samples
    sys.stdin = open(0, encoding="utf-8", closefd=False)  # noqa: SIM115
    sys.stdout = open(1, "w", encoding="utf-8", errors="backslashreplace", closefd=False)  # noqa: SIM115
    sys.stderr = open(  # noqa: SIM115
        2, "w", encoding="utf-8", errors="backslashreplace", closefd=False, buffering=1
    )
    sys.path.insert(0, "")  # the sample's cwd, as for `python program.py` there; for the worker:
    os.chdir(config["workdir"])  # root's, where no sample can write a module to shadow a late import
    sys.argv = [""]
    unshare_flags = _CLONE_NEWIPC if got["ipc_namespace"] else 0
    unshare_flags |= _CLONE_NEWNS if got["private_tmp"] else 0
    tmpfs = _tmpfs_targets() if got["private_tmp"] else ()
    return _Confinement(uid, network, pid_namespace, sample_dir, unshare_flags, tmpfs, got["read_only_host"],
                        got["private_proc"], seccomp, devnull, out_fd, err_fd, close_ranges)  # fmt: skip


@dataclass
class _ImportView:
    """The parent's sys.path, as the sample's uid can reach it.

    A Python under /root (pyenv, 0700) is unreachable to any other uid, so ``import heapq`` would fail;
    a virtual environment under /tmp is hidden by the sample's own /tmp. The worker opens each such
    directory while root, and imports (its own and the samples') go through ``/proc/self/fd/N``, which
    reaches the directory without walking its parents. Packages imported already (``encodings``, for one)
    get their ``__path__`` rewritten the same way.
    """

    sys_path: list[str]
    fds: list[int]
    remap: list[tuple[str, str]]  # (unreachable directory, its /proc/self/fd path)

    @classmethod
    def build(cls, entries: list[str], uid: int | None, hidden: tuple[str, ...] = ()) -> _ImportView:
        """``hidden``: folders a sample sees replaced by its own (its /tmp, its /dev/shm)."""
        import fcntl

        view = cls([], [], [])
        for entry in entries:
            real = os.path.realpath(entry)
            seen = not any(
                p == h or p.startswith(h + "/") for h in hidden for p in (os.path.abspath(entry), real)
            )
            if uid is None or not os.path.isdir(real) or (seen and _world_reachable(real)):
                view.sys_path.append(entry)
                continue
            low = os.open(real, os.O_PATH | os.O_DIRECTORY)
            fd = fcntl.fcntl(low, fcntl.F_DUPFD_CLOEXEC, 256)  # clear of the fds a sample sets up
            os.close(low)
            proxy = f"/proc/self/fd/{fd}"
            view.fds.append(fd)
            view.sys_path.append(proxy)
            view.remap += [(entry.rstrip("/"), proxy), (real, proxy)]
        view.remap.sort(key=lambda pair: -len(pair[0]))  # longest prefix first
        return view

    def install(self) -> list[int]:
        """In the worker, which the samples inherit it from; returns the fds a sample must keep open."""
        sys.path[:] = self.sys_path
        sys.path_importer_cache.clear()
        for module in list(sys.modules.values()):
            path = getattr(module, "__path__", None)
            if self.remap and isinstance(path, list):
                path[:] = [self._proxy(p) for p in path]
        return self.fds

    def _proxy(self, path: str) -> str:
        for root, proxy in self.remap:
            if path == root or path.startswith(root + "/"):
                return proxy + path[len(root) :]
        return path


def _world_reachable(path: str) -> bool:
    parts = path.rstrip("/").split("/")
    return all(os.stat("/".join(parts[:i]) or "/").st_mode & 0o001 for i in range(1, len(parts) + 1))


def _execute(job: dict, conf: _Confinement) -> dict:
    tmpdir = None if conf.tmpfs else conf.sample_dir  # with its own /tmp, the sample makes its cwd there
    if tmpdir is not None:
        _make_sample_dir(tmpdir, conf.uid)
    try:
        for fd in (conf.out_fd, conf.err_fd):
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
        limits = _rlimits(job)
        # inodes too: an empty file costs no space but about 1 KiB of kernel memory
        tmpfs_options = b"size=%dm,nr_inodes=%d,mode=1777" % (job["tmp_mb"], job["tmp_mb"] * 1024)
        done_r, done_w = os.pipe()
        nonce = os.urandom(8).hex().encode()
        start = time.monotonic()
        pid = os.fork()
        if pid == 0:
            _child(job["code"], job["run_name"], nonce, limits, tmpfs_options, done_w, conf)
        os.close(done_w)
        try:
            exited = _wait_exit(pid, job["timeout"])
            seconds = time.monotonic() - start
            _kill_sample(pid, conf)  # before reaping pid: a zombie's group id cannot be reused
            _, wstatus, usage = os.wait4(pid, 0)
            _reap_children(conf, time.monotonic() + 10)
            marker = _read_available(done_r)
        finally:
            os.close(done_r)
        limit = job["max_output_bytes"]
        stdout, stderr = (
            os.pread(fd, limit, 0).decode(errors="replace") for fd in (conf.out_fd, conf.err_fd)
        )
    finally:
        if tmpdir is not None:
            try:
                os.rmdir(tmpdir)  # the common case: the program left nothing behind
            except OSError:
                import shutil

                shutil.rmtree(tmpdir, ignore_errors=True)
    returncode = os.waitstatus_to_exitcode(wstatus)
    cpu = usage.ru_utime + usage.ru_stime
    if not marker.startswith(b"S"):
        status = "error"  # the child failed before the program started; the reason is in stderr
    elif (
        not exited
        or returncode == -signal.SIGXCPU
        or (returncode == -signal.SIGKILL and cpu >= limits[0][1][0])
    ):
        status = "timeout"
    elif returncode == 0 and (nonce in marker or not job["must_finish"]):
        status = "passed"
    else:
        status = "failed"
    return dict(status=status, returncode=returncode, stdout=stdout, stderr=stderr, seconds=round(seconds, 6),
                peak_memory_mb=round(usage.ru_maxrss / 1024, 1))  # fmt: skip


def _make_sample_dir(path: str, uid: int | None) -> None:
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:  # left by a sample whose cleanup failed
        import shutil

        shutil.rmtree(path)
        os.mkdir(path, 0o700)
    if uid is not None:
        os.chown(path, uid, uid)


def _rlimits(job: dict) -> list[tuple[int, tuple[int, int]]]:
    """The sample's (resource, (soft, hard)) limits, CPU first; never above the worker's own hard limits."""
    import resource

    cpu = int(-(-job["timeout"] // 1)) + 1  # SIGXCPU at cpu seconds, SIGKILL a second later
    wanted = [
        (resource.RLIMIT_CPU, cpu, cpu + 1),
        (resource.RLIMIT_AS, job["memory_mb"] << 20, job["memory_mb"] << 20),
        (resource.RLIMIT_FSIZE, job["max_file_mb"] << 20, job["max_file_mb"] << 20),
        (resource.RLIMIT_NPROC, job["max_processes"], job["max_processes"]),
        (resource.RLIMIT_CORE, 0, 0),
    ]
    limits = []
    for which, soft, hard in wanted:
        current = resource.getrlimit(which)[1]
        if current != resource.RLIM_INFINITY:
            soft, hard = min(soft, current), min(hard, current)
        limits.append((which, (soft, hard)))
    return limits


def _child(
    code: str,
    run_name: str,
    nonce: bytes,
    limits: list,
    tmpfs_options: bytes,
    done_w: int,
    conf: _Confinement,
) -> None:
    """The sample process: confine itself, run the program, exit. Never returns into the worker."""
    import resource

    try:
        os.setsid()
        os.dup2(conf.devnull, 0)
        os.dup2(conf.out_fd, 1)
        os.dup2(conf.err_fd, 2)
        os.dup2(done_w, _DONE_FD, inheritable=False)
        for low, high in conf.close_ranges:  # the worker's pipes to the parent, among others
            os.closerange(low, high)
        if conf.unshare_flags:  # all of it goes when the sample's last process does
            _libc_call("unshare", conf.unshare_flags)
        if conf.tmpfs:
            _make_mounts_private()
            if conf.read_only_host:  # before the tmpfs mounts, which stay writable
                _remount_read_only()
            _mount_tmpfs(conf.tmpfs, tmpfs_options)
            os.mkdir(os.path.dirname(conf.sample_dir), 0o755)
            _make_sample_dir(conf.sample_dir, conf.uid)
        if conf.private_proc:
            _mount_proc()
        os.chdir(conf.sample_dir)
        for which, value in limits:
            resource.setrlimit(which, value)
        if conf.uid is not None:
            os.setgroups([])
            os.setresgid(conf.uid, conf.uid, conf.uid)
            os.setresuid(conf.uid, conf.uid, conf.uid)
        if not conf.pid_namespace:  # (in one, the kernel ends the sample if the worker dies)
            _libc_call("prctl", _PR_SET_PDEATHSIG, signal.SIGKILL)  # after setuid, which clears it
            if os.getppid() == 1:
                os._exit(125)
        if conf.network == "guard":
            _install_socket_guard()
        if conf.seccomp:  # last: it refuses unshare, which the set-up above needed
            _install_seccomp(conf.seccomp)
        os.write(_DONE_FD, b"S")
    except BaseException:
        try:
            os.write(2, f"sandbox setup failed:\n{traceback.format_exc()}".encode())
        finally:
            os._exit(126)
    os._exit(_run_program(code, run_name, nonce))


def _run_program(code: str, run_name: str, nonce: bytes) -> int:
    import builtins
    import linecache

    linecache.cache["<program>"] = (len(code), None, code.splitlines(True), "<program>")  # for tracebacks
    returncode = 0
    try:
        exec(compile(code, "<program>", "exec"), {"__name__": run_name, "__builtins__": builtins})
        threading_module = sys.modules.get("threading")
        if threading_module is not None:
            threading_module._shutdown()  # wait for non-daemon threads, as a normal interpreter exit does
        os.write(_DONE_FD, nonce)
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            returncode = (exc.code or 0) & 0xFF
        else:
            print(exc.code, file=sys.stderr)
            returncode = 1
    except BaseException as exc:
        traceback.print_exception(type(exc), exc, exc.__traceback__.tb_next)  # from the program's frame on
        returncode = 1
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:
            returncode = returncode or 1
    return returncode


def _install_socket_guard() -> None:
    """No network namespace: refuse sockets at the Python level (a guard, not a boundary)."""
    import errno
    import socket

    def refuse(*args: object, **kwargs: object) -> None:
        raise PermissionError(errno.EACCES, "network access is disabled in this sandbox")

    class NoSocket(socket.socket):
        def __init__(self, *args: object, **kwargs: object) -> None:
            refuse()

    socket.socket = socket.SocketType = NoSocket  # type: ignore[misc]
    for name in ("create_connection", "create_server", "socketpair", "fromfd", "getaddrinfo"):
        setattr(socket, name, refuse)


def _wait_exit(pid: int, timeout: float) -> bool:
    """Wait until ``pid`` exits (without reaping it) or ``timeout`` passes; True if it exited."""
    fd = os.pidfd_open(pid)
    try:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        return bool(poller.poll(timeout * 1000))
    finally:
        os.close(fd)


def _kill_sample(pid: int, conf: _Confinement) -> None:
    """SIGKILL every process of the sample that just ended (``pid`` is its first one, not yet reaped)."""
    if conf.pid_namespace:
        if os.getpid() != 1:  # kill(-1) as root outside our own namespace would hit the whole machine
            raise RuntimeError("refusing kill(-1): this worker is not init of its PID namespace")
        with contextlib.suppress(ProcessLookupError):
            os.kill(-1, signal.SIGKILL)  # as its init: every process in the namespace but this one
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    if conf.uid is not None:
        _kill_uid(conf.uid)  # also the ones that left the process group (setsid)


def _kill_uid(uid: int) -> None:
    """SIGKILL every process of ``uid``: a helper takes that uid, so that kill(-1) reaches no other."""
    pid = os.fork()
    if pid == 0:
        try:
            os.setresuid(uid, uid, uid)
            os.kill(-1, signal.SIGKILL)
        except BaseException:
            pass
        os._exit(0)
    os.waitpid(pid, 0)


def _reap_children(conf: _Confinement, deadline: float) -> None:
    """Reap every child; as subreaper (or init) these are the sample's leftovers. Kill any still alive."""
    while time.monotonic() < deadline:
        try:
            if conf.pid_namespace:
                os.waitpid(-1, 0)  # all were killed, and orphans come to init: this ends
                continue
            if os.waitpid(-1, os.WNOHANG)[0]:
                continue
        except ChildProcessError:
            return
        for pid in _children():  # without a namespace, a process outside the group may still run
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.001)


def _children() -> list[int]:
    me = str(os.getpid())
    kids = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat", "rb") as f:
                    stat = f.read()
            except OSError:
                continue
            if stat[stat.rindex(b")") + 2 :].split()[1].decode() == me:  # field 4, after "pid (comm) state"
                kids.append(int(name))
    return kids


def _read_available(fd: int) -> bytes:
    os.set_blocking(fd, False)
    chunks = []
    try:
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    except BlockingIOError:
        pass
    return b"".join(chunks)


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] != "--worker":
        sys.exit(f"usage: {sys.argv[0]} --worker CONFIG_JSON (started by Sandbox)")
    _worker_main(json.loads(sys.argv[2]))
