"""The studio's jobs: ``instructkit run | train | continual | generate`` started as subprocesses, watched, and
stopped the way Ctrl-C stops them.

Each job has a folder ``<runs>/.studio/jobs/<id>/`` with ``config.yaml`` (what it runs), ``log.txt`` (its
stdout and stderr) and ``job.json`` (kind, run folder, command, status, exit code). The command runs with
``--runs`` as its working directory, in its own process group::

    python -m instructkit.cli run .studio/jobs/<id>/config.yaml

so a job is exactly a CLI run: cancelling one sends the group SIGINT (then SIGTERM, then SIGKILL after a
grace period each), and the same command run again from a terminal resumes it as it resumes a killed CLI
run (a recipe skips its fresh stages and training goes on from its newest checkpoint; ``instructkit train``
takes ``--resume``).

Progress is read from what the run writes: the stage from the ledger's log lines (``[train] running``,
``[data] up to date, skipped``) against the stages the kind plans, the step, total, loss, tokens/s and ETA
from the training run's ``metrics.jsonl``.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field, fields
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from instructkit.files import write_text
from instructkit.studio.errors import StudioError
from instructkit.studio.paths import RunsRoot
from instructkit.studio.runs import read_json, read_jsonl, summarize

JOBS_DIR = ".studio/jobs"
GRACE_S = 20.0
"""Seconds a job has to stop after SIGINT (a checkpoint being written finishes first) before SIGTERM, and
again before SIGKILL."""
MAX_POINTS = 600
"""Loss points sent per event at most (the newest ones)."""
STATUSES = ("running", "done", "failed", "cancelled")
_STAGE_LINE = re.compile(r"^\[([\w.-]+)\] (running|up to date, skipped)\s*$")
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


@dataclass
class Job:
    id: str
    kind: str
    run: str
    """The run folder, relative to ``--runs``."""
    argv: list[str]
    plan: list[str]
    """The stages the run goes through, in order."""
    started: float
    generator: str | None = None
    status: str = "running"
    returncode: int | None = None
    ended: float | None = None
    cancel_requested: bool = False
    note: str = ""
    proc: subprocess.Popen | None = field(default=None, repr=False, compare=False)
    watcher: threading.Thread | None = field(default=None, repr=False, compare=False)

    @property
    def command(self) -> str:
        """The command as typed in a terminal in the runs folder (``instructkit ...``)."""
        return " ".join(["instructkit", *self.argv[3:]])

    def record(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("proc", "watcher")}


def _ctrl_c_stops() -> None:
    """In the job's process before it starts: SIGINT back to its default. A studio started in the background
    by a shell (``instructkit studio ... &``) ignores SIGINT, a child inherits that, and Python then installs
    no Ctrl-C handler: Cancel would do nothing until SIGTERM. (Only ``signal`` is called here, no lock is
    taken, so it is safe between fork and exec.)"""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def planned_stages(kind: str, config: dict[str, Any]) -> list[str]:
    """The stages a job of ``kind`` goes through, as its runner names them in ``stages.json``."""
    if kind == "run":
        first = [s for s in ("generate", "template") if config.get(s)]
        return [*first, "data", "before", "train", "after", "report"]
    if kind == "continual":
        tasks = config.get("tasks") if isinstance(config.get("tasks"), list) else []
        return ["round-base", *(f"round-{k}" for k in range(len(tasks)))]
    return [kind]


def command(kind: str, config_rel: str, generator: str | None, output: str | None, resume: bool) -> list[str]:
    argv = [sys.executable, "-m", "instructkit.cli"]
    if kind == "generate":
        return [*argv, "generate", str(generator), "-o", str(output), "--config", config_rel]
    return [*argv, kind, config_rel, *(["--resume"] if resume and kind == "train" else [])]


class JobManager:
    """The jobs under ``<runs>/.studio/jobs``: at most ``max_jobs`` running at once."""

    def __init__(self, root: RunsRoot, max_jobs: int = 1):
        self.root = root
        self.max_jobs = max_jobs
        self.lock = threading.Lock()
        self.jobs: dict[str, Job] = {}
        self._load()

    @property
    def folder(self) -> Path:
        return self.root.root / JOBS_DIR

    def _load(self) -> None:
        """The jobs of earlier studio sessions (read-only history); one that says it was running when its
        studio went away is not watched by anyone now."""
        if not self.folder.is_dir():
            return
        for meta in sorted(self.folder.glob("*/job.json")):
            data = read_json(meta)
            if not isinstance(data, dict):
                continue
            try:
                job = Job(**{k: v for k, v in data.items() if k in Job.__dataclass_fields__})
            except TypeError:
                continue
            if not _well_formed(job, meta.parent.name):
                continue  # a damaged job.json: not a job this studio can show
            if job.status == "running":
                job.status, job.note = "failed", "the studio stopped while this job ran"
            self.jobs[job.id] = job

    # ------------------------------------------------------------------ starting and stopping
    def active(self) -> list[Job]:
        return [j for j in self.jobs.values() if j.status == "running"]

    def check_room(self, run: str | None = None) -> None:
        """429 when ``max_jobs`` are running; 409 when a job is running in the run folder ``run``."""
        active = self.active()
        if len(active) >= self.max_jobs:
            raise StudioError(429, f"{len(active)} job(s) running, the most this studio runs at once "
                              f"(max_jobs {self.max_jobs}); wait for one to end or cancel it", code="too_many_jobs")  # fmt: skip
        busy = next((j for j in active if run is not None and j.run == run), None)
        if busy is not None:
            raise StudioError(409, f"output_dir: job {busy.id} is running in {run!r}", field="output_dir",
                              code="busy")  # fmt: skip

    def start(
        self,
        kind: str,
        config: dict[str, Any],
        run: str,
        *,
        generator: str | None = None,
        resume: bool = False,
    ) -> Job:
        """Write the job's config and start its command (the caller has checked the config)."""
        with self.lock:
            self.check_room(run)
            job_id = time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(3)
            folder = self.folder / job_id
            folder.mkdir(parents=True)
            write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True), folder / "config.yaml")
            argv = command(kind, f"{JOBS_DIR}/{job_id}/config.yaml", generator, run, resume)
            job = Job(job_id, kind, run, argv, planned_stages(kind, config), time.time(), generator)
            env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "120"}
            with open(folder / "log.txt", "ab") as log:
                job.proc = subprocess.Popen(argv, cwd=self.root.root, stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, start_new_session=True, env=env,
                                            preexec_fn=_ctrl_c_stops)  # fmt: skip
            self.jobs[job_id] = job
            self._save(job)
        job.watcher = threading.Thread(target=self._watch, args=(job,), daemon=True, name=f"job-{job_id}")
        job.watcher.start()
        return job

    def _save(self, job: Job) -> None:
        write_text(json.dumps(job.record(), indent=2) + "\n", self.folder / job.id / "job.json")

    def _watch(self, job: Job) -> None:
        assert job.proc is not None
        rc = job.proc.wait()
        with self.lock:
            job.returncode, job.ended = rc, time.time()
            if rc == 0:
                job.status = "done"
            else:
                job.status = "cancelled" if job.cancel_requested else "failed"
            self._save(job)

    def get(self, job_id: str) -> Job:
        job = self.jobs.get(job_id)
        if job is None:
            raise StudioError(404, f"job: no job {job_id!r}", field="job", code="not_found")
        return job

    def cancel(self, job_id: str, grace: float = GRACE_S) -> Job:
        """Stop the job's process group as Ctrl-C would: SIGINT, then SIGTERM and SIGKILL ``grace`` s apart.
        Cancelling a job already being stopped changes nothing (a second SIGINT would cut short the first's
        orderly stop, a checkpoint being written)."""
        job = self.get(job_id)
        with self.lock:
            if job.status != "running" or job.proc is None:
                raise StudioError(
                    409, f"job {job_id} is {job.status}, not running", field="job", code="not_running"
                )
            if job.cancel_requested:
                return job
            job.cancel_requested = True
        threading.Thread(target=self._stop, args=(job, grace), daemon=True).start()
        return job

    def _stop(self, job: Job, grace: float) -> None:
        assert job.proc is not None
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(job.proc.pid, sig)
            except (ProcessLookupError, PermissionError):
                return
            try:
                job.proc.wait(timeout=grace)
                return
            except subprocess.TimeoutExpired:
                continue

    def stop_all(self, grace: float = 10.0) -> None:
        """Cancel every running job and wait for them (the studio is stopping); they resume from the CLI."""
        threads = []
        for job in self.active():
            if job.proc is None:
                continue
            job.cancel_requested = True
            t = threading.Thread(target=self._stop, args=(job, grace), daemon=True)
            t.start()
            threads.append(t)
        for t in threads:
            t.join(timeout=3 * grace + 5)
        for job in list(self.jobs.values()):
            if job.watcher is not None:
                job.watcher.join(timeout=5)  # its status and job.json written

    # ------------------------------------------------------------------ progress
    def running(self) -> dict[str, dict[str, Any]]:
        """Run path (relative to ``--runs``) → ``{"job", "kind", "stage"}`` for each running job."""
        out = {}
        for job in self.active():
            out[job.run] = {"job": job.id, "kind": job.kind, "stage": self._stages(job)[0]}
        return out

    def list(self) -> list[dict[str, Any]]:
        rows = sorted(self.jobs.values(), key=lambda j: j.started, reverse=True)
        return [_summary(j) for j in rows]

    def progress(self, job_id: str) -> dict[str, Any]:
        """The job's state for an event: status, stage, step/total, loss points, tokens/s, ETA; when it has
        ended, its exit code, the log's tail (failed or cancelled) and the run's metrics before/after."""
        job = self.get(job_id)
        stage, stages = self._stages(job)
        out = _summary(job)
        out.update(stage=stage, stages=stages, command=job.command, resume=resume_command(job))
        out.update(training(self._metrics_file(job, stage)))
        if job.status == "done" and job.kind == "train" and out.get("total"):
            out["step"] = out["total"]
        if job.status != "running":
            out["log_tail"] = self.log_tail(job) if job.status != "done" else ""
            folder = self.root.root / job.run
            if folder.is_dir():
                out["metrics"] = summarize(self.root.root, folder).metrics
        return out

    def log_tail(self, job: Job, lines: int = 40, max_bytes: int = 32_768) -> str:
        """The last ``lines`` non-blank lines of the job's log (of its last ``max_bytes``), colours removed."""
        path = self.folder / job.id / "log.txt"
        try:
            with open(path, "rb") as f:
                f.seek(max(0, f.seek(0, os.SEEK_END) - max_bytes))
                text = f.read().decode("utf-8", "replace")
        except OSError:
            return ""
        text = _ANSI.sub("", text).replace("\r", "\n")
        return "\n".join([x for x in text.splitlines() if x.strip()][-lines:])

    def _stages(self, job: Job) -> tuple[str | None, list[dict[str, str]]]:
        """(the current stage, every planned stage with its state: pending, running, done or skipped)."""
        states = {s: "pending" for s in job.plan}
        current = None
        for line in self.log_tail(job, lines=1_000_000, max_bytes=8 << 20).splitlines():
            m = _STAGE_LINE.match(line.strip())
            if not m or m.group(1) not in states:
                continue
            if current is not None and states[current] == "running":
                states[current] = "done"
            current = m.group(1)
            states[current] = "running" if m.group(2) == "running" else "skipped"
        if len(job.plan) == 1 and job.status == "running":
            current = job.plan[0]
            states[current] = "running"
        if job.status == "done":
            states = {s: ("skipped" if v == "skipped" else "done") for s, v in states.items()}
            current = job.plan[-1] if job.plan else None
        elif current is not None and states[current] == "skipped" and job.status == "running":
            later = [s for s in job.plan[job.plan.index(current) + 1 :] if states[s] == "pending"]
            current = later[0] if later else current
        elif job.status != "running" and current is not None and states[current] == "running":
            states[current] = job.status  # where it stopped: failed or cancelled
        return current, [{"name": s, "state": v} for s, v in states.items()]

    def _metrics_file(self, job: Job, stage: str | None) -> Path | None:
        folder = self.root.root / job.run
        if job.kind == "run":
            return folder / "train" / "metrics.jsonl"
        if job.kind == "train":
            return folder / "metrics.jsonl"
        if job.kind == "continual" and stage and stage.startswith("round-") and stage != "round-base":
            return folder / stage / "train" / "metrics.jsonl"
        return None


def _well_formed(job: Job, folder: str) -> bool:
    """Whether a job read back from ``job.json`` has the types a live one has (``id`` its folder's name)."""

    def strings(x: Any) -> bool:
        return isinstance(x, list) and all(isinstance(v, str) for v in x)

    def number(x: Any, none: bool = False) -> bool:
        return (x is None and none) or (isinstance(x, int | float) and not isinstance(x, bool))

    return (
        job.id == folder
        and all(isinstance(v, str) for v in (job.kind, job.run, job.note))
        and not PurePosixPath(job.run).is_absolute()
        and ".." not in PurePosixPath(job.run).parts  # the run page and progress read there
        and strings(job.argv)
        and strings(job.plan)
        and number(job.started)
        and number(job.ended, none=True)
        and (job.returncode is None or isinstance(job.returncode, int))
        and job.status in STATUSES
        and (job.generator is None or isinstance(job.generator, str))
    )


def resume_command(job: Job) -> str:
    """What to type in the runs folder to go on after a cancel (the same command; train adds --resume)."""
    return job.command + (" --resume" if job.kind == "train" and "--resume" not in job.argv else "")


def _summary(job: Job) -> dict[str, Any]:
    end = job.ended if job.ended is not None else time.time()
    return {"id": job.id, "kind": job.kind, "run": job.run, "generator": job.generator, "status": job.status,
            "returncode": job.returncode, "started": job.started, "ended": job.ended,
            "elapsed": round(end - job.started, 1), "cancel_requested": job.cancel_requested,
            "note": job.note}  # fmt: skip


def training(path: Path | None) -> dict[str, Any]:
    """Step, total, loss points (train and eval), tokens/s and ETA from a ``metrics.jsonl`` (empty when
    there is none yet). The total is the ``max_steps`` each entry records; the rates come from the
    entries' ``train_runtime`` since the last (re)start of training."""
    entries = read_jsonl(path) if path is not None else []
    losses = [e for e in entries if isinstance(e.get("loss"), int | float)]
    out: dict[str, Any] = {
        "step": max((int(e.get("step", 0)) for e in entries), default=0) if entries else None,
        "total": next((e["max_steps"] for e in reversed(entries) if isinstance(e.get("max_steps"), int)), None),
        "loss": [[e["step"], e["loss"]] for e in losses][-MAX_POINTS:],
        "eval_loss": [[e["step"], e["eval_loss"]] for e in entries
                      if isinstance(e.get("eval_loss"), int | float)][-MAX_POINTS:],
        "tokens_per_second": None,
        "eta_seconds": None,
    }  # fmt: skip
    timed = [e for e in losses if isinstance(e.get("train_runtime"), int | float)]
    start = 0
    for i in range(1, len(timed)):
        if timed[i]["train_runtime"] < timed[i - 1]["train_runtime"]:
            start = i  # training restarted (a resume): its clock starts again
    timed = timed[start:]
    if timed and isinstance(timed[-1].get("train_tokens_per_second"), int | float):
        out["tokens_per_second"] = timed[-1]["train_tokens_per_second"]
    if len(timed) >= 2 and out["total"]:
        first, last = timed[0], timed[-1]
        steps = last["step"] - first["step"]
        if steps > 0:
            per_step = (last["train_runtime"] - first["train_runtime"]) / steps
            out["eta_seconds"] = round(max(out["total"] - last["step"], 0) * per_step, 1)
    return out
