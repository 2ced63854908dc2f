"""Data steps: small classes registered by name, configured from YAML, run by the pipeline.

Three shapes, after datatrove's:

* :class:`Filter` — ``keep(record) -> bool | tuple[bool, str] | tuple[bool, str, str]``; a ``False``
  drops the record with the step's reason code (or the returned one, and an optional detail).
* :class:`Mapper` — ``apply(record) -> Record``; rewrites a record (or raises :class:`Drop`).
* :class:`DatasetStep` — ``run(records) -> list[Verdict]``; needs the whole dataset at once (dedup).

A step's parameters are its dataclass fields; the pipeline builds it from a YAML mapping and an
unknown key is an error naming the step and the key.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

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


class StepConfigError(ValueError):
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

    def params(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def build(cls, params: dict[str, Any]) -> Step:
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(params) - fields)
        if unknown:
            raise StepConfigError(
                f"step '{cls.name}': unknown parameter '{unknown[0]}' (known: {', '.join(sorted(fields)) or 'none'})"
            )
        try:
            step = cls(**params)
        except (TypeError, ValueError) as e:
            raise StepConfigError(f"step '{cls.name}': {e}") from None
        step.validate()
        return step

    def validate(self) -> None:
        """Check parameter values; raise StepConfigError naming the parameter."""


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


def build_step(spec: Any) -> Step:
    """``{"step": name, **params}`` or ``{name: {params}}`` or a bare ``name`` → a configured step."""
    if isinstance(spec, str):
        name, params = spec, {}
    elif isinstance(spec, dict) and "step" in spec:
        params = dict(spec)
        name = params.pop("step")
    elif isinstance(spec, dict) and len(spec) == 1:
        name, params = next(iter(spec.items()))
        params = dict(params or {})
    else:
        raise StepConfigError(f"a step is a name or a mapping with 'step: NAME'; got {spec!r}")
    if name not in STEPS:
        raise StepConfigError(f"unknown step '{name}'; known steps: {', '.join(sorted(STEPS))}")
    return STEPS[name].build(params)
