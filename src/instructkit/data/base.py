"""Data steps: small classes registered by name, configured from YAML, run by the pipeline.

Three shapes, after datatrove's:

* :class:`Filter` — ``keep(record) -> bool | tuple[bool, str] | tuple[bool, str, str]``; a ``False``
  drops the record with the step's reason code (or the returned one, and an optional detail).
* :class:`Mapper` — ``apply(record) -> Record``; rewrites a record (or raises :class:`Drop`).
* :class:`DatasetStep` — ``run(records) -> list[Verdict]``; needs the whole dataset at once (dedup).

:func:`verdict_of` is what a per-record step says of one record, the same call in every engine.

A step declares how the Ray engine (``data.engines.ray``) runs it, so the engine never asks which step
class it holds: a per-record step names in ``ray_broadcast`` what it builds once and every worker needs
(decontaminate's n-gram index: built on the driver, sent to each worker process once), and a dataset step
gives its own distributed form in :meth:`DatasetStep.ray_stage` (exact and near dedup: ``data/dedup``).

A step's parameters are its dataclass fields, each documented right under it, ranges declared beside it
(``instructkit.config.checked``); the shared config loader builds a step from a YAML mapping, so a wrong
type, a value out of range or an unknown parameter is an error naming the step and the parameter.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

from instructkit.config import ConfigError, load
from instructkit.records import Record

STEPS: dict[str, type[Step]] = {}


def register(cls: type[Step]) -> type[Step]:
    STEPS[cls.name] = cls
    return cls


class Drop(Exception):  # noqa: N818 - a verdict, not an error
    """Raised by a Mapper to drop the record it was given, with a reason code."""

    def __init__(self, reason: str, detail: str | None = None):
        self.reason = reason
        self.detail = detail
        super().__init__(reason)


class StepConfigError(ConfigError):
    """A step in a curation config is unknown or has a bad parameter."""


@dataclass
class Verdict:
    """The outcome for one record of a dataset step: kept (``reason`` None) or dropped with a reason."""

    reason: str | None = None
    detail: str | None = None
    meta: dict[str, Any] | None = None  # keys to add to the record's meta (cluster ids, ...)


@dataclass
class Step:
    name: ClassVar[str]
    description: ClassVar[str] = ""
    ray_broadcast: ClassVar[tuple[str, ...]] = ()
    """Attributes (cached properties) the Ray engine builds once on the driver and puts in each worker
    process once, instead of each worker building them (the step must pickle without them)."""

    def params(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def build(cls, params: dict[str, Any], prefix: str = "") -> Step:
        """The step with ``params`` (types, ranges, unknown parameters checked); ``prefix`` is where the
        step sits in its config (``steps[3]``), so an error names ``steps[3].threshold``."""
        try:
            return load(cls, params, prefix=prefix, error=StepConfigError, noun="parameter")
        except StepConfigError as e:
            raise e.within(f"step '{cls.name}'") from None

    def validate(self) -> None:
        """Rules across parameters; raise StepConfigError naming the parameter (``key=``)."""


@dataclass
class Filter(Step):
    reason: ClassVar[str] = "filtered"

    def keep(self, record: Record) -> bool | tuple[bool, str] | tuple[bool, str, str]:
        raise NotImplementedError


@dataclass
class Mapper(Step):
    def apply(self, record: Record) -> Record:
        raise NotImplementedError


@dataclass
class DatasetStep(Step):
    def run(self, records: list[Record], progress: Any = None) -> list[Verdict]:
        raise NotImplementedError

    def ray_stage(self, engine: Any, alive: list[Any], stepno: int) -> list[Any]:
        """This step on the Ray engine: the blocks of ``alive`` (object refs of Arrow blocks, see
        ``data.engines.ray.blocks``) in, the blocks of records still in out, each dropped record left
        with the engine as a reject row of step number ``stepno`` (``engine.keep``)."""
        raise StepConfigError(
            f"step '{self.name}' sees the whole dataset and has no Ray form yet; run it with {{key}} local",
            key="engine",
        )


class StepFailed(RuntimeError):
    """A step raised on a record (a bug in the step, or input it cannot take): names the step and record."""


def verdict_of(step: Step, rec: Record) -> tuple[str, str, Record]:
    """What a per-record step says of one record: (reason, detail, record) — reason "" when kept; a Mapper
    returns the record it made."""
    if isinstance(step, Mapper):
        try:
            return "", "", step.apply(rec)
        except Drop as d:
            return d.reason, d.detail or "", rec
    verdict = step.keep(rec)
    if verdict is True:
        return "", "", rec
    if verdict is False:
        return step.reason, "", rec
    ok, reason, *rest = verdict
    return ("", "", rec) if ok else (reason, rest[0] if rest else "", rec)


def checked_verdict(step: Step, rec: Record) -> tuple[str, str, Record]:
    """:func:`verdict_of`, with an exception from the step turned into :class:`StepFailed` naming the
    step, the record's id and its source file (both engines raise the same message)."""
    try:
        return verdict_of(step, rec)
    except Exception as e:
        raise StepFailed(
            f"step '{step.name}' failed on record {rec.id} (from {rec.meta.get('source') or '?'}): "
            f"{type(e).__name__}: {e}"
        ) from e


def build_step(spec: Any, prefix: str = "") -> Step:
    """``{"step": name, **params}`` or ``{name: {params}}`` or a bare ``name`` → a configured step;
    ``prefix`` (``steps[3]``) is where the spec sits in its config, for the error messages."""
    where = f"{prefix}: " if prefix else ""
    if isinstance(spec, str):
        name, params = spec, {}
    elif isinstance(spec, dict) and "step" in spec:
        params = dict(spec)
        name = params.pop("step")
    elif isinstance(spec, dict) and len(spec) == 1:
        name, params = next(iter(spec.items()))
        if params is not None and not isinstance(params, dict):
            raise StepConfigError(f"{where}the parameters of step {name!r} must be a mapping, got {params!r}")
        params = dict(params or {})
    else:
        raise StepConfigError(f"{where}a step is a name or a mapping with 'step: NAME'; got {spec!r}")
    if not isinstance(name, str) or name not in STEPS:
        raise StepConfigError(f"{where}unknown step '{name}'; known steps: {', '.join(sorted(STEPS))}")
    return STEPS[name].build(params, prefix)
