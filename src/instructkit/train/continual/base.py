"""What a continual-learning strategy is: a typed set of parameters (a dataclass, each field documented
under it, ranges beside it) registered by name, as the fine-tuning methods are (``train/methods``)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

from instructkit.config import ConfigError, check_ranges, load

STRATEGIES: dict[str, type[Strategy]] = {}


class ContinualError(ConfigError):
    """A strategy or score matrix that cannot be used as given; the message names the key or cell."""


def register(cls: type[Strategy]) -> type[Strategy]:
    STRATEGIES[cls.name] = cls
    return cls


def strategy_class(name: str, prefix: str = "") -> type[Strategy]:
    """The registered class of ``name``; an unknown name is a ContinualError naming ``prefix.name``."""
    key = str(name).strip().lower().replace("_", "-")
    if key not in STRATEGIES:
        raise ContinualError(
            ("{key}: " if prefix else "")
            + f"unknown strategy {name!r}; choose one of {', '.join(sorted(STRATEGIES))}",
            key=f"{prefix}.name" if prefix else None,
        )
    return STRATEGIES[key]


def build_strategy(name: str, params: dict[str, Any] | None = None, *, prefix: str = "") -> Strategy:
    """The strategy ``name`` with ``params``, loaded like any config (types, ranges, unknown keys named
    under ``prefix``, e.g. ``"strategy"``)."""
    return load(
        strategy_class(name, prefix),
        dict(params or {}),
        prefix=prefix,
        error=ContinualError,
        noun="parameter",
        ignore=("name",),
    )


@dataclass
class Strategy:
    """Base class: a dataclass whose fields are the strategy's parameters."""

    name: ClassVar[str]

    def __post_init__(self) -> None:
        check_ranges(self, error=ContinualError)
        self.validate()

    def validate(self) -> None:
        """Rules across parameters; raise ContinualError naming the parameter (``key=``)."""

    def params(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
