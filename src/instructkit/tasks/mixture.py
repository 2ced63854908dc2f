"""Task mixtures: several instruction sources mixed into one training file, examples-proportional with a
cap, as T5 and FLAN mix their tasks.

Mixing tasks by their size lets the largest dataset drown the others; mixing them equally over-samples
the small ones. T5 (Raffel et al., 2020, section 3.5.2) and FLAN (Wei et al., 2022; Chung et al., 2022)
take the middle road: *examples-proportional mixing with an artificial limit K*, each task sampled at a
rate proportional to ``min(n_examples, K)``. A mixture config lists the sources, each either

* a Super-NaturalInstructions task file and an encoding (``natural_instructions.py``), or
* labeled data files, their task, the templates to render them with and an optional field map (the
  same path as ``instructkit data template``: ``read_task_records`` then ``render_records``),

with a ``weight`` and an optional per-source ``cap``, and :func:`build_mixture` renders every source,
then takes from each. The exact rule:

* ``limit_i = min(available_i, cap_i)``, where ``available_i`` is the source's rendered records (read
  minus rejected) and ``cap_i`` the source's own ``cap``, else the mixture's ``cap`` (K), else no cap.
* ``rate_i = weight_i * limit_i / sum_j(weight_j * limit_j)``.
* Without ``total``, each source gives ``limit_i`` records (the whole capped mixture; in it, source
  ``i``'s share is ``limit_i / sum_j limit_j``, examples-proportional with the cap; weights do not
  apply, since no source can give more than its limit without repeating records).
* With ``total`` N (at most ``sum_j limit_j``), source ``i`` gets ``N * rate_i`` records, never more than
  ``limit_i``: a source whose share exceeds its limit gives its limit, and the rest of N is shared out
  among the others by the same rule again (so the result has exactly N records); the shares are made
  whole numbers by largest remainder (floors first, then one more each by descending fraction, ties to
  the earlier source).
* Which records: a seeded sample without replacement from each source (``random.Random`` seeded with
  ``seed`` and the source's index), kept in the source's order; the mixture is then shuffled with
  ``seed``. The same config and files give the same output, byte for byte.

Unlike T5's stream, a written file cannot repeat an example without it showing twice in training, so the
cap and the total only ever take fewer records, never the same record again. The card (:class:`Mixture`,
``card()``) counts per source: read, rejected, available, limit, rate, taken, and the records taken per
task; ``read == available + rejected`` and ``taken <= limit <= available`` for every source.
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections import Counter
from pathlib import Path
from typing import Any

from instructkit.config import ConfigError, checked, load, read_yaml
from instructkit.records import Record
from instructkit.tasks.natural_instructions import ENCODINGS, read_sni_task, render_sni
from instructkit.tasks.records import TASK_SCHEMAS, read_task_records
from instructkit.tasks.templates import task_options


@dataclasses.dataclass
class MixtureSource:
    """One source of a mixture: a Super-NaturalInstructions task file, or labeled files + task + templates."""

    sni: str | None = None
    """A Super-NaturalInstructions task file (taskNNN_name.json); give this or `data`, not both."""
    encoding: str = checked("definition", choices=tuple(ENCODINGS))
    """With `sni`: the encoding of each prompt (definition: the task's definition and the instance;
    definition+2pos: two positive examples between them)."""
    data: list[str] | None = None
    """Labeled data files (JSONL, JSON, Parquet, CoNLL; .gz too) read as `task` records; give this or `sni`."""
    task: str | None = None
    """With `data`: the task the rows hold (classification, ner, relation, qa, translation, summarization,
    dialogue, code)."""
    templates: list[str] = dataclasses.field(default_factory=lambda: ["all"])
    """With `data`: the templates to render with (`instructkit templates list`), one picked per record by a
    generator seeded with the mixture's seed; ['all'] for every template of the task."""
    fields: dict[str, str] = dataclasses.field(default_factory=dict)
    """With `data`: the field map, task field -> the data's column ({text: sentence})."""
    format: str | None = None
    """With `data`: the input container (jsonl, json, parquet) or format (conll, sharegpt, ...); detected
    when not given."""
    name: str | None = None
    """The source's name in the card and in each record's meta.mixture_source; default: the SNI task's
    name, or the first data file's stem and the task (sentiment/classification). Must be unique."""
    weight: float = checked(1.0, gt=0, finite=True)
    """Multiplies the source's rate (applies with `total`): rate = weight * min(available, cap), normalized."""
    cap: int | None = checked(None, ge=1)
    """This source's cap, in place of the mixture's `cap`; null for the mixture's."""
    test: list[str] | None = None
    """With `data`: held-out files of the same task (a dataset's own test split). Every row is rendered
    with `test_template` into the held-out set (never capped, sampled or mixed into the training records):
    `instructkit data mixture --test FILE` writes it, and a run recipe's `eval.split: held-out` scores it."""
    test_template: str | None = None
    """With `test`: the one template the held-out rows are rendered with, so every score before and after
    training reads the same prompts; default: the first of `templates`; for ['all'], the task's first
    built-in template (the first `instructkit templates show` lists for it, e.g. classification/options-first)."""

    def validate(self) -> None:
        if (self.sni is None) == (self.data is None):
            raise ConfigError(
                "{key}: give either sni (a task file) or data (labeled files), not both", key="sni"
            )
        if self.sni is not None:
            for name in ("task", "format"):
                if getattr(self, name) is not None:
                    raise ConfigError("{key} applies to data sources only, not to sni ones", key=name)
            if self.fields:
                raise ConfigError("{key} applies to data sources only, not to sni ones", key="fields")
            if self.templates != ["all"]:
                raise ConfigError(
                    "{key} applies to data sources only (an sni task carries its definition)", key="templates"
                )
            for name in ("test", "test_template"):
                if getattr(self, name) is not None:
                    raise ConfigError("{key} applies to data sources only, not to sni ones", key=name)
            return
        if not self.data:
            raise ConfigError("{key} must list at least one file", key="data")
        if self.task is None:
            raise ConfigError("{key} is required with data (the task its rows hold)", key="task")
        if self.task not in TASK_SCHEMAS:
            raise ConfigError(
                f"{{key}}: unknown task {self.task!r} (known: {', '.join(TASK_SCHEMAS)})", key="task"
            )
        if not self.templates:
            raise ConfigError("{key} must name at least one template, or ['all']", key="templates")
        if self.encoding != "definition":
            raise ConfigError("{key} applies to sni sources only", key="encoding")
        if self.test is not None and not self.test:
            raise ConfigError("{key} must list at least one file (or be left out)", key="test")
        if self.test_template is not None and self.test is None:
            raise ConfigError("{key} applies only with test (held-out files)", key="test_template")


@dataclasses.dataclass
class MixtureConfig:
    """A mixture (instructkit data mixture CONFIG.yaml -o OUT.jsonl)."""

    sources: list[MixtureSource]
    """The sources, each {sni, encoding} or {data, task, templates, fields}, with weight and cap."""
    cap: int | None = checked(None, ge=1)
    """K, the examples-proportional cap: no source gives more than min(available, K) records (a source's
    own cap overrides it); null for no cap."""
    total: int | None = checked(None, ge=1)
    """How many records the mixture holds, shared out by rate (weight * min(available, cap)); null for
    every source's capped count. More than the sources hold under their caps is an error."""
    seed: int = 0
    """Seed of the template picks, each source's sample and the final shuffle."""
    template_files: list[str] = dataclasses.field(default_factory=list)
    """YAML files of more templates ({name, task, prompt, answer, parser, options}), usable by name in
    sources' templates (`instructkit config show template`)."""

    def validate(self) -> None:
        if not self.sources:
            raise ConfigError("{key} must list at least one source", key="sources")
        seen: dict[str, int] = {}
        for i, src in enumerate(self.sources):
            name = source_name(src)
            if name in seen:
                raise ConfigError(
                    f"{{key}}: two sources are named {name!r} (sources[{seen[name]}] too); give each a name",
                    key=f"sources[{i}].name",
                )
            seen[name] = i


def source_name(src: MixtureSource) -> str:
    """The source's ``name``, else the SNI file's stem, else the first data file's stem + ``/`` + task."""
    if src.name:
        return src.name
    if src.sni is not None:
        return Path(src.sni).name.removesuffix(".json")
    stem = Path(src.data[0]).name.split(".")[0] if src.data else "data"
    return f"{stem}/{src.task}"


def load_mixture(path: str | Path) -> MixtureConfig:
    """A mixture config from YAML; an error is one line naming the file and the dotted key."""
    try:
        return load(MixtureConfig, read_yaml(path))
    except ConfigError as e:
        raise (e if e.where else e.within(path)) from None


# ------------------------------------------------------------------------------------------------ mixing
def allocate(limits: list[int], weights: list[float], total: int | None) -> list[int]:
    """How many records each source gives (see the module docstring for the rule): ``limits`` without a
    ``total``; else exactly ``total``, shared by ``weight * limit``, no source above its limit."""
    if total is None:
        return list(limits)
    if total > sum(limits):
        raise ValueError(f"total {total} is more than the sources hold under their caps ({sum(limits)})")
    take = [0] * len(limits)
    active = [i for i, n in enumerate(limits) if n > 0]
    left = total
    while active:
        mass = sum(weights[i] * limits[i] for i in active)
        share = {i: left * weights[i] * limits[i] / mass for i in active}
        full = [i for i in active if share[i] >= limits[i]]
        if not full:
            floors = {i: math.floor(share[i]) for i in active}
            for i in active:
                take[i] = floors[i]
            rest = left - sum(floors.values())
            by_fraction = sorted(active, key=lambda i: (-(share[i] - floors[i]), i))
            for i in by_fraction[:rest]:
                take[i] += 1
            break
        for i in full:
            take[i] = limits[i]
            left -= limits[i]
        active = [i for i in active if i not in full]
    return take


@dataclasses.dataclass
class SourceCount:
    """One source's line of the card."""

    name: str
    kind: str
    task: str
    read: int
    rejected: int
    available: int
    cap: int | None
    limit: int
    weight: float
    rate: float
    taken: int
    detail: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class Mixture:
    """What :func:`build_mixture` made: the mixed ``records``, every source's ``rejects`` and the
    per-source ``counts`` (the card)."""

    records: list[Record]
    rejects: list[dict[str, Any]]
    counts: list[SourceCount]
    config: MixtureConfig

    def card(self) -> dict[str, Any]:
        """The card: the rule, the settings, each source's counts and the records taken per task."""
        by_task: Counter[str] = Counter(str(r.meta.get("task") or "-") for r in self.records)
        return {
            "rule": "rate_i = weight_i * min(available_i, cap_i) / sum_j(weight_j * min(available_j, cap_j)); "
            "without total each source gives min(available_i, cap_i)",
            "cap": self.config.cap,
            "total": self.config.total,
            "seed": self.config.seed,
            "records": len(self.records),
            "read": sum(c.read for c in self.counts),
            "rejected": sum(c.rejected for c in self.counts),
            "sources": [dataclasses.asdict(c) for c in self.counts],
            "by_task": dict(sorted(by_task.items())),
        }


def _resolve(p: str, base: Path | None) -> str:
    """As given when it exists (relative to the working directory), else relative to the config's folder."""
    path = Path(p)
    if base is None or path.exists() or path.is_absolute() or p.startswith("pkg:"):
        return p
    return str(base / path)


def _render_source(
    src: MixtureSource, seed: int, base: Path | None, template_set: Any
) -> tuple[list[Record], list[dict[str, Any]], int, str, dict[str, Any]]:
    """``(records, rejects, read, task, detail)`` of one source."""
    if src.sni is not None:
        task = read_sni_task(_resolve(src.sni, base))
        done = render_sni(task, src.encoding)
        detail = {"encoding": src.encoding, "positive_examples": done.positive_used}
        return done.records, done.rejects, done.n_in, task.name, detail
    from instructkit.tasks.templates import render_records

    assert src.task is not None and src.data is not None  # validate() made sure
    chosen = (
        template_set.for_task(src.task)
        if src.templates == ["all"]
        else [template_set.get(n, src.task) for n in src.templates]
    )
    read = read_task_records([_resolve(p, base) for p in src.data], src.task, src.fields or None, src.format)
    options = None
    if src.test is not None:  # one option list for training and held-out prompts alike
        options = task_options(src.task, [*read.records, *_read_test(src, base).records])
    done = render_records(read.records, chosen, seed=seed, options=options)
    detail = {"templates": dict(done.used)}
    return done.records, read.rejects + done.rejects, read.n_in, src.task, detail


def _read_test(src: MixtureSource, base: Path | None) -> Any:
    assert src.task is not None and src.test is not None
    return read_task_records([_resolve(p, base) for p in src.test], src.task, src.fields or None, src.format)


def test_template_name(src: MixtureSource, template_set: Any) -> str:
    """The template a source's held-out rows are rendered with (see ``MixtureSource.test_template``)."""
    assert src.task is not None
    if src.test_template:
        return src.test_template
    if src.templates != ["all"]:
        return src.templates[0]
    template_set.for_task(src.task)  # an unknown task is an error naming the known ones
    # the task's first template as declared (built-ins first), not by name: each task's first built-in is
    # its plainest, e.g. classification/options-first rather than classification/no-options
    return next(t.name for t in template_set.templates.values() if t.task == src.task)


@dataclasses.dataclass
class HeldOut:
    """The held-out set of a mixture's sources that name ``test`` files: every row rendered with the
    source's one test template (``records``), the rows that failed (``rejects``) and per source
    ``{name, task, template, read, rejected, records}`` (``counts``; read = records + rejected)."""

    records: list[Record]
    rejects: list[dict[str, Any]]
    counts: list[dict[str, Any]]


def build_held_out(config: MixtureConfig, base: str | Path | None = None) -> HeldOut:
    """Render every source's ``test`` files with its test template, in source then file order (no
    sampling, no cap, no shuffle: the held-out set is the same whatever the mixture's caps or total).
    Options (the label set) are those of the source's training and test rows together, as its training
    records use."""
    from instructkit.tasks.templates import TemplateSet, render_records

    folder = Path(base) if base is not None else None
    template_set = TemplateSet([_resolve(p, folder) for p in config.template_files])
    out = HeldOut([], [], [])
    for i, src in enumerate(config.sources):
        if src.test is None:
            continue
        try:
            assert src.task is not None and src.data is not None
            tpl = template_set.get(test_template_name(src, template_set), src.task)
            train = read_task_records(
                [_resolve(p, folder) for p in src.data], src.task, src.fields or None, src.format
            )
            test = _read_test(src, folder)
        except ConfigError as e:
            raise e.within(f"sources[{i}]") from None
        options = task_options(src.task, [*train.records, *test.records])
        done = render_records(test.records, [tpl], options=options)
        name = source_name(src)
        out.records += [
            Record(messages=r.messages, meta={**r.meta, "mixture_source": name}) for r in done.records
        ]
        rejects = test.rejects + done.rejects
        out.rejects += [{**r, "mixture_source": name} for r in rejects]
        out.counts.append(
            {"name": name, "task": src.task, "template": tpl.name, "read": test.n_in,
             "rejected": len(rejects), "records": len(done.records)}
        )  # fmt: skip
    return out


def mixture_inputs(config: MixtureConfig, base: str | Path | None = None) -> list[str]:
    """Every file ``config`` reads (task files, data files, template files), resolved as :func:`build_mixture`
    resolves them, so a command can refuse an output that would replace one."""
    folder = Path(base) if base is not None else None
    paths = [_resolve(p, folder) for p in config.template_files]
    for src in config.sources:
        paths += [_resolve(p, folder) for p in ([src.sni] if src.sni is not None else src.data or [])]
        paths += [_resolve(p, folder) for p in src.test or []]
    return paths


def build_mixture(config: MixtureConfig, base: str | Path | None = None) -> Mixture:
    """Render every source of ``config`` and mix them (the module docstring's rule). Relative paths are
    taken as given when they exist, else under ``base`` (the config's folder). A bad file or template is
    an error naming it; bad rows are rejects, counted per source."""
    from instructkit.tasks.templates import TemplateSet

    folder = Path(base) if base is not None else None
    template_set = TemplateSet([_resolve(p, folder) for p in config.template_files])
    rendered = []
    for i, src in enumerate(config.sources):
        try:
            rendered.append(_render_source(src, config.seed, folder, template_set))
        except ConfigError as e:
            raise e.within(f"sources[{i}]") from None
    limits, weights = [], []
    for src, (records, *_rest) in zip(config.sources, rendered, strict=True):
        cap = src.cap if src.cap is not None else config.cap
        limits.append(len(records) if cap is None else min(len(records), cap))
        weights.append(src.weight)
    try:
        take = allocate(limits, weights, config.total)
    except ValueError as e:
        raise ConfigError(f"{{key}}: {e}", key="total") from None
    mass = sum(w * n for w, n in zip(weights, limits, strict=True))
    out: list[Record] = []
    rejects: list[dict[str, Any]] = []
    counts: list[SourceCount] = []
    for i, (src, (records, rej, n_read, task, detail)) in enumerate(
        zip(config.sources, rendered, strict=True)
    ):
        name = source_name(src)
        rng = random.Random(f"{config.seed}:{i}")
        picked = sorted(rng.sample(range(len(records)), take[i]))
        for j in picked:
            rec = records[j]
            out.append(Record(messages=rec.messages, meta={**rec.meta, "mixture_source": name}))
        for r in rej:
            rejects.append({**r, "mixture_source": name})
        counts.append(
            SourceCount(
                name=name,
                kind="sni" if src.sni is not None else "data",
                task=task,
                read=n_read,
                rejected=len(rej),
                available=len(records),
                cap=src.cap if src.cap is not None else config.cap,
                limit=limits[i],
                weight=src.weight,
                rate=round(weights[i] * limits[i] / mass, 6) if mass else 0.0,
                taken=take[i],
                detail=detail,
            )
        )
    random.Random(config.seed).shuffle(out)
    return Mixture(out, rejects, counts, config)


__all__ = [
    "HeldOut",
    "Mixture",
    "MixtureConfig",
    "MixtureSource",
    "SourceCount",
    "allocate",
    "build_held_out",
    "build_mixture",
    "load_mixture",
    "mixture_inputs",
    "source_name",
]
