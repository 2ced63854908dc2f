"""The jobs API: the forms built from the config schemas, starting a job (checked first by the CLI's own
loaders), its progress as server-sent events, and cancelling it.

``GET /api/forms/{kind}`` (``?generator=NAME`` or ``/api/forms/generate/NAME`` for generate, ``?from=PATH`` to prefill from a YAML under
``--runs``), ``POST /api/jobs``, ``GET /api/jobs``, ``GET /api/jobs/{id}``, ``GET /api/jobs/{id}/events``,
``POST /api/jobs/{id}/cancel``.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator
from pathlib import Path, PurePosixPath
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from instructkit.studio import forms
from instructkit.studio.errors import StudioError
from instructkit.studio.jobs import JOBS_DIR, JobManager
from instructkit.studio.state import StudioState, studio_state

router = APIRouter()
EVENT_EVERY_S = 0.5
STUDIO_DIR = JOBS_DIR.split("/")[0]
"""The studio's own folder under ``--runs`` (its jobs' configs and logs): no job's run folder."""
_made = threading.Lock()


def manager(state: StudioState) -> JobManager:
    """The studio's JobManager, made on first use; its stop-all runs when the studio stops."""
    with _made:
        if state.jobs is None:
            state.jobs = JobManager(state.root, state.cfg.max_jobs)
            state.closers.append(state.jobs.stop_all)
    return state.jobs


def _kind(kind: str) -> str:
    if kind not in forms.KINDS:
        raise StudioError(404, f"kind: {kind!r} is not one of {', '.join(forms.KINDS)}", field="kind",
                          code="not_found")  # fmt: skip
    return kind


@router.get("/api/forms/{kind}")
def form(
    kind: str,
    generator: str | None = None,
    source: str | None = Query(None, alias="from"),
    state: StudioState = Depends(studio_state),
) -> dict[str, Any]:
    """The form of ``kind``: its field tree, the YAML files it can start from, and (``from``) their values."""
    out = forms.form(_kind(kind), generator)
    out["sources"] = forms.yaml_sources(state.root)
    out["values"] = forms.prefill(kind, state.root, source) if source else {}
    out["from"] = source
    return out


@router.get("/api/forms/generate/{generator}")
def generate_form(
    generator: str, source: str | None = Query(None, alias="from"), state: StudioState = Depends(studio_state)
) -> dict[str, Any]:
    """The form of one generator (``self-instruct``, ``evol``, ``code``)."""
    return form("generate", generator, source, state)


class JobRequest(BaseModel):
    kind: str
    config: dict[str, Any] = Field(default_factory=dict)
    """The config as nested values (what the YAML file would hold)."""
    yaml: list[str] = Field(default_factory=list)
    """Dotted keys whose value is YAML/JSON text (a form's list and mapping fields), read as ``--set`` reads."""
    generator: str | None = None
    """generate: the generator's name."""
    output: str | None = None
    """generate: the output folder, under ``--runs``."""
    resume: bool = False
    """train: continue from the run's newest checkpoint (``--resume``)."""


def _under_root(state: StudioState, path: str, field: str) -> str:
    """``path`` (a run folder as a config gives it: relative to ``--runs``, or absolute) relative to
    ``--runs``; 403 naming ``field`` when it is not below it."""
    root = state.root
    p = PurePosixPath(path)
    if p.is_absolute():
        try:
            resolved = Path(path).resolve()
        except (OSError, RuntimeError):  # a loop of symlinks
            raise StudioError(400, f"{field}: {path[:200]!r} is not a usable path", field=field,
                              code="path_refused") from None  # fmt: skip
        if resolved == root.root or not resolved.is_relative_to(root.root):
            raise StudioError(403, f"{field}: {path!r} is not under the runs folder", field=field,
                              code="path_refused")  # fmt: skip
        path = root.rel(resolved)
    rel = root.rel(root.resolve(path, field=field, must_exist=False))
    if not rel:
        raise StudioError(403, f"{field}: the run folder would be the runs folder itself", field=field,
                          code="path_refused")  # fmt: skip
    if rel.split("/")[0] == STUDIO_DIR:
        raise StudioError(403, f"{field}: {rel!r} is in the studio's own folder {STUDIO_DIR}/", field=field,
                          code="path_refused")  # fmt: skip
    return rel


def _given_run_dir(kind: str, config: dict[str, Any]) -> str | None:
    """output_dir/name as written (defaults where not), when both are strings: checked before the loader
    runs, so nothing looks outside ``--runs``."""
    if kind == "generate":
        return None
    defaults = {"run": "run", "train": "run", "continual": "continual"}
    out, name = config.get("output_dir", "runs"), config.get("name", defaults[kind])
    if (
        isinstance(out, str)
        and isinstance(name, str)
        and name
        and "/" not in name
        and name not in (".", "..")
    ):
        return str(PurePosixPath(out) / name)
    return None


MAX_PATH_CHARS = 4096
"""A config string longer than this (or with a line break) is text, not a path."""


def _check_reads(state: StudioState, config: Any) -> None:
    """403 naming the dotted key of a config string that names an existing file or folder outside ``--runs``
    (an absolute path, ``../``, ``~``, a symlink out): the job would read it (data, a model, a seed file) and
    the studio would show what it made of it. A YAML file under ``--runs`` the config names (a recipe's
    ``train`` or ``curate`` file) is checked the same way, its relative paths taken from the runs folder and
    from its own folder, as the runner looks for them."""
    root = state.root.root
    seen: set[Path] = set()

    def refuse(key: str, value: str, why: str, status: int = 403) -> StudioError:
        return StudioError(status, f"{key}: {value[:200]!r} {why}; a studio job reads and writes only under "
                           "the runs folder", field=key.split(":")[0], code="path_refused")  # fmt: skip

    def check(value: str, key: str, bases: tuple[Path, ...], depth: int) -> None:
        if "\0" in value:
            raise refuse(key, value, "holds a NUL byte")
        if not value.strip() or "\n" in value or len(value) > MAX_PATH_CHARS:
            return
        given = Path(value).expanduser() if value.startswith("~") else Path(value)
        for base in (Path("/"),) if given.is_absolute() else bases:
            try:
                target = (base / given).resolve()
                exists = target.exists()
            except (OSError, RuntimeError):
                continue  # not a name the job can open either
            if not exists:
                continue
            if target != root and not target.is_relative_to(root):
                raise refuse(key, value, "is outside the runs folder")
            if target.suffix in (".yaml", ".yml") and target.is_file() and target not in seen and depth < 3:
                seen.add(target)
                try:
                    import yaml

                    inner = yaml.safe_load(target.read_text(encoding="utf-8"))
                except (OSError, ValueError, yaml.YAMLError):
                    continue  # the config check names an unreadable file
                try:
                    forms.check_nesting(inner)  # aliases expanding to a huge document: not walked
                except StudioError as e:
                    raise StudioError(
                        400, f"{key}: {value[:200]!r}: {e.message}", field=key.split(":")[0]
                    ) from None
                walk(inner, f"{key}:{state.root.rel(target)}:", (root, target.parent), depth + 1)

    def walk(value: Any, key: str, bases: tuple[Path, ...], depth: int) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, f"{key}.{k}" if key and not key.endswith(":") else f"{key}{k}", bases, depth)
        elif isinstance(value, list):
            for i, v in enumerate(value):
                walk(v, f"{key}[{i}]", bases, depth)
        elif isinstance(value, str):
            check(value, key, bases, depth)

    walk(config, "", (root,), 0)


@router.post("/api/jobs")
def start(body: JobRequest, state: StudioState = Depends(studio_state)) -> dict[str, Any]:
    """Check the config with the CLI's loaders (400 naming the dotted key; nothing written), check the run
    folder is under ``--runs`` (403), then write ``.studio/jobs/<id>/config.yaml`` and start the command."""
    kind = _kind(body.kind)
    jobs = manager(state)
    jobs.check_room()
    config = forms.parse_yaml_fields(body.config, body.yaml)
    generator = None
    if kind == "generate":
        generator = (body.generator or "").strip().lower()
        if generator not in forms.generators():
            raise StudioError(400, f"generator: {body.generator!r} is not one of {', '.join(forms.generators())}",
                              field="generator")  # fmt: skip
        if not body.output:
            raise StudioError(400, "output: give the output folder (under the runs folder)", field="output")
        run = _under_root(state, body.output, "output")
    else:
        given = _given_run_dir(kind, config)
        if given is not None:
            _under_root(state, given, "output_dir")
    _check_reads(state, config)
    checked = forms.check_job_config(kind, config, state.root, generator)
    if kind != "generate":
        run = _under_root(state, checked["run_dir"], "output_dir")
    job = jobs.start(kind, config, run, generator=generator, resume=body.resume)
    return jobs.progress(job.id)


@router.get("/api/jobs")
def list_jobs(state: StudioState = Depends(studio_state)) -> dict[str, Any]:
    jobs = manager(state)
    return {"jobs": jobs.list(), "max_jobs": jobs.max_jobs}


@router.get("/api/jobs/{job_id}")
def job(job_id: str, state: StudioState = Depends(studio_state)) -> dict[str, Any]:
    return manager(state).progress(job_id)


@router.post("/api/jobs/{job_id}/cancel")
def cancel(job_id: str, state: StudioState = Depends(studio_state)) -> dict[str, Any]:
    """SIGINT to the job's process group (then SIGTERM, SIGKILL); its status turns ``cancelled`` when it
    has stopped. It resumes as a killed CLI run does: the same command, run again from the runs folder."""
    jobs = manager(state)
    jobs.cancel(job_id)
    return jobs.progress(job_id)


@router.get("/api/jobs/{job_id}/events")
async def events(
    job_id: str, request: Request, state: StudioState = Depends(studio_state)
) -> StreamingResponse:
    """``text/event-stream``: a ``progress`` event every ``EVENT_EVERY_S`` while the job runs, then one
    ``end`` event (exit code, the log's tail when it failed or was cancelled, the run's metrics)."""
    jobs = manager(state)
    jobs.get(job_id)  # 404 before the stream starts

    async def stream() -> AsyncIterator[str]:
        while True:
            p = await asyncio.to_thread(jobs.progress, job_id)
            end = p["status"] != "running"
            yield f"event: {'end' if end else 'progress'}\ndata: {json.dumps(p)}\n\n"
            if end or await request.is_disconnected():
                return
            await asyncio.sleep(EVENT_EVERY_S)

    headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)
