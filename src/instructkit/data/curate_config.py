"""The curate config: the steps in order, the split, the output files, and the engine that runs them."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from instructkit.config import ConfigError, checked, load, read_yaml
from instructkit.data.base import Step, StepConfigError, build_step
from instructkit.data.split import SplitConfig
from instructkit.files import OutputError, check_suffix
from instructkit.formats import format_names, get_format

DEFAULT_STEPS: list[Any] = [
    "normalize",
    "empty",
    "identical",
    {"step": "length", "min": 1, "max": 4096},
    "refusal",
    "repetition",
    {"step": "pii", "action": "mask"},
    {"step": "exact_dedup", "key": "prompt"},
    {"step": "near_dedup", "key": "prompt", "threshold": 0.7},
    {"step": "decontaminate", "benchmarks": ["humaneval"], "n": 13},
]


@dataclass
class CurateConfig:
    steps: list[Any] = field(default_factory=lambda: list(DEFAULT_STEPS))
    """Steps in order: a name, or a mapping ``{step: NAME, param: value, ...}`` (``instructkit config show
    step NAME`` lists a step's parameters)."""
    split: SplitConfig = field(default_factory=SplitConfig)
    """Train/val/test shares, seed, stratification, cluster-awareness."""
    output_format: str = "instructkit"
    """Format of train/val/test files (any writable format)."""
    output_suffix: str = ".jsonl"
    """Container of train/val/test files: .jsonl, .json, .parquet (optionally .gz)."""
    num_proc: int = checked(1, ge=1)
    """Worker processes for per-record steps."""
    on_error: str = checked("skip", choices=("skip", "raise"))
    """Bad input records: 'skip' rejects them (step 'read'), 'raise' stops at the first."""
    input_format: str | None = None
    """Input format; detected from the content when null."""
    engine: str = checked("local", choices=("local", "ray"))
    """local: this process (and ``num_proc`` workers); ray: a Ray cluster (``pip install
    'instructkit[ray]'``), with byte-identical output. Inputs may then be URLs (``s3://``, ``file://``)."""
    address: str | None = None
    """Ray cluster to join with engine ray: ``auto`` (the one ``ray start`` runs here), ``HOST:PORT`` or
    ``ray://HOST:PORT``; null starts a local cluster for the run and stops it after."""

    @classmethod
    def from_dict(cls, data: dict[str, Any], prefix: str = "") -> CurateConfig:
        """``prefix``: where the mapping sits (a recipe's ``curate``), for the dotted keys in errors."""
        try:
            return load(cls, data, prefix=prefix, error=StepConfigError)
        except ConfigError as e:
            raise StepConfigError(e.template, key=e.key, where=("curate config", *e.where)) from None

    @classmethod
    def from_yaml(cls, path: str | Path) -> CurateConfig:
        data = read_yaml(path, StepConfigError)
        try:
            return cls.from_dict(data)
        except StepConfigError as e:
            raise e.within(path) from None

    def validate(self) -> None:
        """Rules across fields, and every step built (so a bad step parameter fails here, at load)."""
        self.split.validate()
        if self.output_format not in format_names():
            raise StepConfigError(
                f"{{key}} must be one of {', '.join(format_names())}, not {self.output_format!r}",
                key="output_format",
            )
        if self.on_error not in ("skip", "raise"):
            raise StepConfigError("{key} must be skip or raise", key="on_error")
        if self.num_proc < 1:
            raise StepConfigError("{key} must be at least 1", key="num_proc")
        if self.engine not in ("local", "ray"):
            raise StepConfigError("{key} must be local or ray", key="engine")
        if self.address is not None and self.engine != "ray":
            raise StepConfigError("{key} is for engine ray; set engine: ray or drop it", key="address")
        try:
            check_suffix(
                f"train{self.output_suffix}", get_format(self.output_format).container, "output_suffix"
            )
        except OutputError as e:
            raise StepConfigError(str(e)) from None
        self.build_steps()

    def build_steps(self) -> list[Step]:
        return [build_step(s, f"steps[{i}]") for i, s in enumerate(self.steps)]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
