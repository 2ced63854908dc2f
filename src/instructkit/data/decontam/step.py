"""The decontamination step: drop records that share an n-gram with an evaluation set."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from instructkit.config import checked
from instructkit.data.base import Filter, register
from instructkit.records import Record

BUILTIN = ("humaneval",)


@register
@dataclass
class Decontaminate(Filter):
    """Drop records sharing an ``n``-gram (default 13; 8 for short prompts) of code-aware tokens with a
    benchmark's prompts or solutions. ``benchmarks`` names built-ins (humaneval); ``files`` adds any
    file instructkit reads. The reject names the benchmark item and the n-gram."""

    name = "decontaminate"
    reason = "contaminated"
    ray_broadcast = ("index",)  # built once on the driver; the step pickles without it (__getstate__)
    benchmarks: list[str] = checked(default_factory=lambda: ["humaneval"], choices=BUILTIN)
    """Built-in benchmarks to check against (humaneval)."""
    files: list[str] = field(default_factory=list)
    """More benchmark files, in any format instructkit reads."""
    n: int = checked(13, ge=3)
    """Length of the shared n-gram (in code-aware tokens) that marks a record contaminated."""

    @cached_property
    def index(self) -> Any:
        from instructkit.data.decontam.index import ContaminationIndex, load_benchmark_file, load_humaneval

        items = []
        if "humaneval" in self.benchmarks:
            items += load_humaneval()
        for path in self.files:
            items += load_benchmark_file(path)
        return ContaminationIndex(items, n=self.n)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("index", None)
        return state

    def keep(self, record: Record) -> bool | tuple[bool, str, str]:
        match = self.index.match_record(record)
        if match is None:
            return True
        return False, "contaminated", f"{match.benchmark} {match.item_id}: shares '{match.ngram}'"
