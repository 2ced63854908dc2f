"""What every generator shares: the output folder, the cached backend, live progress, the rejects and
the card.

A generator's output folder ``DIR`` holds:

* ``records.jsonl`` — the generated records (instructkit's canonical format; every other format is one
  ``instructkit data convert`` away);
* ``rejects.jsonl`` — every candidate that did not make it, with its stage, reason and detail;
* ``card.json`` / ``card.md`` — the resolved config, the backend and what it spent, and a ledger per
  stage (in, kept, dropped by reason), with ``candidates in = kept + rejected`` checked. The card's
  ``backend.settings`` are the settings the backend ran with, defaults included (timeout, retries, rate
  limit, prices, ...); a secret (``api_key``, any parameter named like a key, token, secret or password, the
  password of a URL) is written as ``***``, here and in ``config.backend``;
* ``cache.sqlite`` — every answered request (:mod:`instructkit.generate.cache`).

Why the folder is not replaced as a unit, as curate's is: the cache inside it is what makes a rerun free,
and it is written as answers arrive. The other four files are committed together at the end
(``files.commit_files``), so a reader finds the previous run's set or the new one. A generator
makes its requests in an order fixed by its config and seed and by the replies before them, so a rerun of
the same command asks the same requests, finds them in the cache, and goes on from where the kill
stopped it.

Progress: on a terminal, a live rich bar on stderr. When stderr is not a terminal (a log file, a pipe, a
CI job) the bar would print nothing until the end, so the run writes a plain line to stderr instead every
``progress_every`` seconds (15 by default) and one when it ends: kept of target, rejected, requests, tokens
and their rate. ``show_progress=False`` (``--quiet``) turns both off.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from instructkit import __version__
from instructkit.config import ConfigError, checked, load
from instructkit.data.base import Step, build_step, verdict_of
from instructkit.data.engines.accounting import StepReport
from instructkit.data.engines.local import run_steps
from instructkit.files import OutputError, commit_files, encode_text
from instructkit.formats import dump_records
from instructkit.formats.io import encode_rows
from instructkit.generate.backends.base import Backend, Reply, Request, build_backend
from instructkit.generate.cache import BudgetExhausted, CachedBackend
from instructkit.generate.card import backend_settings, redacted, render_generation_card
from instructkit.generate.progress import PROGRESS_EVERY, Progress
from instructkit.records import Record

RECORDS_FILE = "records.jsonl"
REJECTS_FILE = "rejects.jsonl"
CACHE_FILE = "cache.sqlite"
CARD_FILES = ("card.json", "card.md")


@dataclass
class GenerationResult:
    out_dir: Path
    records: list[Record]
    rejects: list[dict[str, Any]]
    card: dict[str, Any]

    @property
    def summary(self) -> dict[str, Any]:
        return self.card["summary"]


@dataclass
class Ledger:
    """The stages in the order they first saw a candidate, each a :class:`StepReport` (the curate card's
    step shape, so both cards read alike)."""

    stages: dict[str, StepReport] = field(default_factory=dict)

    def stage(self, name: str, params: dict[str, Any] | None = None) -> StepReport:
        if name not in self.stages:
            self.stages[name] = StepReport(name, params or {})
        return self.stages[name]


class GenerationRun:
    """One generator run over ``out_dir``: send requests through the cache (``complete``), account for every
    candidate (``passed``/``reject``/``filter``/``curate``), then ``finish`` writes the records, the rejects
    and the card.

    ``unit`` names what the accounting counts (``instruction``, ``prompt``, ``sample``): candidates in =
    records kept + candidates rejected, where a candidate is one unit. Rejects of finer things (an instance of
    a kept instruction) are written with ``counted=False`` and shown in their own stage, outside the sum.
    """

    def __init__(
        self,
        generator: str,
        out_dir: str | Path,
        backend: Backend,
        config: dict[str, Any],
        *,
        unit: str = "instruction",
        budget_tokens: int | None = None,
        show_progress: bool = True,
        target: int | None = None,
        progress_every: float = PROGRESS_EVERY,
    ) -> None:
        self.generator = generator
        self.out_dir = Path(out_dir)
        if self.out_dir.exists() and not self.out_dir.is_dir():
            raise OutputError(f"the output {self.out_dir} is a file; a generator writes a folder")
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.config = config
        self.unit = unit
        self.backend = CachedBackend(backend, self.out_dir / CACHE_FILE, budget_tokens)
        self.backend_settings = backend_settings(backend)
        self.budget_tokens = budget_tokens
        self.ledger = Ledger()
        self.rejects: list[dict[str, Any]] = []
        self.candidates = 0
        self.kept = 0
        self.target = target
        self.started = time.monotonic()
        self._progress = Progress(self, show_progress, progress_every)

    # -- requests ---------------------------------------------------------------------------------------

    def complete(self, requests: Sequence[Request]) -> list[Reply]:
        """One reply per request, cached; raises :class:`~instructkit.generate.cache.BudgetExhausted` when
        the token budget is spent (the generator stops there and ``finish`` says how far it got)."""
        if not requests:
            return []
        return self.backend.complete(list(requests), on_reply=lambda i, r: self._progress.update())

    # -- accounting -------------------------------------------------------------------------------------

    def offered(self, n: int = 1) -> None:
        """``n`` new candidates enter the accounting."""
        self.candidates += n
        self._progress.update()

    def passed(self, stage: str, n: int = 1, params: dict[str, Any] | None = None) -> None:
        st = self.ledger.stage(stage, params)
        st.n_in += n
        st.kept += n

    def reject(
        self,
        stage: str,
        reason: str,
        text: str | None = None,
        detail: str | None = None,
        *,
        record: Record | None = None,
        counted: bool = True,
        **extra: Any,
    ) -> None:
        """One candidate refused at ``stage`` for ``reason`` (kept in ``rejects.jsonl``, never dropped)."""
        st = self.ledger.stage(stage)
        st.n_in += 1
        st.dropped[reason] += 1
        row: dict[str, Any] = {"step": stage, "reason": reason, "detail": detail or None, "counted": counted}
        if text is not None:
            row["text"] = text
        if record is not None:
            row["id"] = record.id
            row["record"] = record.to_dict()
        row.update(extra)
        self.rejects.append(row)
        self._progress.update()

    def filter(self, steps: Sequence[Step], records: list[Record]) -> list[Record]:
        """Run per-record data steps (filters and mappers) on candidates, one record at a time, rejecting with
        each step's reason; whole-dataset steps go through :meth:`curate`."""
        for step in steps:
            kept = []
            for rec in records:
                reason, detail, rec = verdict_of(step, rec)
                if reason:
                    self.reject(step.name, reason, detail=detail, record=rec)
                else:
                    self.passed(step.name, params=step.params())
                    kept.append(rec)
            self.ledger.stage(step.name, step.params()).params = step.params()
            records = kept
        return records

    def curate(self, records: list[Record], specs: Sequence[Any], prefix: str = "curate") -> list[Record]:
        """The finished records through curate steps (any registered step, whole-dataset ones included),
        each step's drops counted in the card like any other stage."""
        if not specs or not records:
            return records
        steps = [build_step(s, prefix=f"{prefix}[{i}]") for i, s in enumerate(specs)]
        kept, reports, rejects = run_steps(records, steps)
        for report in reports:
            st = self.ledger.stage(report.name, report.params)
            st.n_in += report.n_in
            st.kept += report.kept
            st.dropped.update(report.dropped)
        for r in rejects:
            r["counted"] = True
            self.rejects.append(r)
        return kept

    # -- the end ----------------------------------------------------------------------------------------

    def finish(
        self,
        records: list[Record],
        stopped: str,
        kept: int | None = None,
        extra: dict[str, Any] | None = None,
    ) -> GenerationResult:
        """Write records, rejects and card (one commit) and close the cache. ``stopped`` says why the
        generator ended, in words (``"reached 20 instructions"``, ``"token budget spent ..."``); ``kept``
        counts kept units when a unit makes several records (a task and its instances)."""
        self.kept = len(records) if kept is None else kept
        self._progress.close()
        counted = sum(1 for r in self.rejects if r.get("counted", True))
        stats = self.backend.stats
        usage = self.backend.usage
        card = {
            "instructkit_version": __version__,
            "generator": self.generator,
            "config": self.config,
            "backend": {**self.backend.key(), "settings": self.backend_settings},
            "stopped": stopped,
            "summary": {
                "unit": self.unit,
                "kept": self.kept,
                "records": len(records),
                "rejected": counted,
                "requests": stats.hits + stats.misses,
                "sent": stats.misses,
                "cache_hits": stats.hits,
                "errors": stats.errors,
                "prompt_tokens": stats.prompt_tokens,
                "completion_tokens": stats.completion_tokens,
                "cost": usage.cost,
                "seconds": round(time.monotonic() - self.started, 1),
                "budget_tokens": self.budget_tokens,
                **(extra or {}),
            },
            "steps": [st.to_dict() for st in self.ledger.stages.values()],
            "accounting": {
                "in": self.candidates,
                "kept": self.kept,
                "rejected": counted,
                "balanced": self.candidates == self.kept + counted,
            },
            "rejected_by_reason": dict(
                sorted(Counter(r["reason"] for r in self.rejects if r.get("counted", True)).items())
            ),
            "files": {"records": RECORDS_FILE, "rejects": REJECTS_FILE, "cache": CACHE_FILE},
        }
        rows, _ = dump_records(records, "instructkit")
        out = self.out_dir
        commit_files(
            [
                (out / RECORDS_FILE, encode_rows(rows, out / RECORDS_FILE)),
                (out / REJECTS_FILE, encode_rows(self.rejects, out / REJECTS_FILE)),
                (
                    out / "card.json",
                    encode_text(json.dumps(card, indent=2, ensure_ascii=False) + "\n", out / "card.json"),
                ),
                (out / "card.md", encode_text(render_generation_card(card, self.rejects), out / "card.md")),
            ]
        )
        self.backend.close()
        return GenerationResult(out, records, self.rejects, card)

    def close(self) -> None:
        self._progress.close()
        self.backend.close()


def stopped_by_budget(e: BudgetExhausted, done: int, target: int, unit: str) -> str:
    return (
        f"token budget spent: {e.spent:,} of {e.budget:,} tokens on {e.sent:,} requests, {done} of {target} "
        f"{unit}s made; rerun with a larger --budget-tokens to go on from the cache"
    )


# -- the generators' shared config and registry ------------------------------------------------------------


class GenerateConfigError(ConfigError):
    """A generator config the user wrote is invalid (the message names the key by its dotted path)."""


@dataclass
class GenerateConfig:
    """Fields every generator has; each generator's config adds its own (``instructkit config show
    generate-NAME`` lists them)."""

    backend: dict[str, Any] = field(default_factory=lambda: {"name": "local"})
    """Where requests go: ``name`` (local or openai) and that backend's parameters (local: model,
    batch_size; openai: model, base_url, api_key, concurrency, requests_per_minute, prices, ...)."""
    seed: int = 0
    """Seeds every random choice (prompt sampling, sampled decoding): the same seed and cache give the same
    requests, which is what lets a rerun answer from the cache."""
    budget_tokens: int | None = checked(None, ge=1)
    """Stop cleanly once this run's new requests have spent this many tokens (cache hits are free)."""


GENERATORS: dict[str, type[Generator]] = {}


def register_generator(cls: type[Generator]) -> type[Generator]:
    GENERATORS[cls.name] = cls
    return cls


class Generator:
    """A registered generator: its ``config`` class and ``run``, which drives a :class:`GenerationRun`."""

    name: ClassVar[str]
    config: ClassVar[type[GenerateConfig]]
    unit: ClassVar[str] = "instruction"
    files: ClassVar[tuple[str, ...]] = ()
    """Config fields that name input files: a recipe resolves them beside itself and hashes their bytes
    into the generate stage's digest."""

    def run(self, cfg: Any, run: GenerationRun) -> GenerationResult:
        raise NotImplementedError


def generator_class(name: str) -> type[Generator]:
    key = name.strip().lower()
    if key not in GENERATORS:
        raise GenerateConfigError(
            f"unknown generator {name!r}; choose one of {', '.join(sorted(GENERATORS))}"
        )
    return GENERATORS[key]


def load_generate_config(name: str, data: dict[str, Any], prefix: str = "") -> GenerateConfig:
    """The typed config of generator ``name`` from a mapping (a recipe's ``generate:`` less its
    ``generator`` key); every key checked and named by its dotted path."""
    cls = generator_class(name).config
    cfg = load(cls, data, prefix=prefix, error=GenerateConfigError)
    backend = dict(cfg.backend)
    bname = backend.pop("name", None)
    if not isinstance(bname, str):
        raise GenerateConfigError(
            "{key} needs a name (local or openai)", key=f"{prefix}.backend" if prefix else "backend"
        )
    try:
        build_backend(bname, **backend).close()  # every parameter checked now, before any work
    except ConfigError as e:
        raise e.under(f"{prefix}.backend" if prefix else "backend") from None
    return cfg


def generate(
    name: str,
    cfg: GenerateConfig,
    out_dir: str | Path,
    *,
    show_progress: bool = True,
    backend: Backend | None = None,
    progress_every: float = PROGRESS_EVERY,
) -> GenerationResult:
    """Run generator ``name`` with ``cfg`` into ``out_dir`` (the records, rejects, card and cache). ``backend``
    replaces the one ``cfg.backend`` names (tests pass a scripted one); ``progress_every``: seconds between
    two plain progress lines when stderr is not a terminal (module docstring)."""
    gen = generator_class(name)()
    if backend is None:
        params = dict(cfg.backend)
        backend = build_backend(params.pop("name"), **params)
    config = dataclasses.asdict(cfg)
    if isinstance(config.get("backend"), dict):
        config["backend"] = redacted(config["backend"])  # the card is shared; the key is not
    run = GenerationRun(
        name,
        out_dir,
        backend,
        config,
        unit=gen.unit,
        budget_tokens=cfg.budget_tokens,
        show_progress=show_progress,
        target=getattr(cfg, "n", None),
        progress_every=progress_every,
    )
    try:
        return gen.run(cfg, run)
    except BaseException:
        run.close()
        raise
