"""``instructkit run RECIPE.yaml``: data -> eval before -> train -> eval after -> report, in one run folder.

A recipe names the input files and how to curate them, a training config (a file under
``recipes/train/`` or a mapping), and how to evaluate; :func:`check_recipe` checks all of it, the configs
it points to included, before any stage starts. The run folder ``<output_dir>/<name>/`` holds::

    generate/        generated records, rejects, card, cache.sqlite        (stage "generate", optional)
    template/        labeled data as instruction records: train.jsonl,
                     the held-out test.jsonl, card.json, rejects.jsonl       (stage "template", optional)
    data/            curated train/val/test, rejects.jsonl, card.json/md   (stage "data")
    eval/before.*    the untouched model on the eval split                 (stage "before")
    train/           the training run folder (config, checkpoints, model/)  (stage "train")
    eval/after.*     the tuned model on the same split, same decoding       (stage "after")
    report.md/.html  the before/after report                                (stage "report")
    stages.json      each finished stage's input hash

A stage is skipped when its outputs exist and the hash of its inputs (config section + content hashes of
the files it reads + the hashes of the stages before it) equals the one recorded when it finished, so a
rerun after a crash resumes at the stage that broke, and a changed input reruns exactly the stages
downstream of it.

Training resumes only from checkpoints made with the same inputs: each checkpoint's manifest records the
training config and the content hashes of the curated splits (``train/checkpoints.py``). After a change
(a new ``optim.lr``, other input data) or ``--force`` of train or an earlier stage, the old checkpoints
are moved to ``train/checkpoints-previous/`` and training starts at step 0; the log says which.

``stages.json`` is written atomically; if it is unreadable anyway, the run stops with an error naming it
rather than guessing which stages finished (delete it to rerun every stage).

A recipe with ``generate: {generator: NAME, ...}`` starts with the generation stage: its records join the
data stage's inputs. Its digest is the generator's resolved config and the bytes of the files it reads
(seeds, input), so it is skipped while those are unchanged; interrupted, it reruns and its request cache
(``generate/cache.sqlite``) answers every request already paid for.

A recipe with ``template:`` (a mixture config, path or mapping: ``instructkit config show mixture``) turns
labeled datasets into instruction records first (``tasks/``): the rendered training records join the
data stage's inputs, and the sources' ``test`` files (a dataset's own test split) are rendered with one
template each into ``template/test.jsonl``, the held-out split that ``eval.split: held-out`` scores. The
held-out rows are never curated, split or mixed: the score before and after training reads the same
prompts whatever the curation does, and each record is scored with its task's parser and metric.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from instructkit.config import ConfigError, checked, load, read_yaml, set_dotted
from instructkit.files import write_text
from instructkit.ledger import Stages, digest, file_digest, tree_digest

STAGES = ("generate", "template", "data", "before", "train", "after", "report")


class RecipeError(ConfigError):
    """A recipe is invalid; the message names the file and the key."""


@dataclass
class EvalSettings:
    split: str = checked("test", choices=("test", "val", "held-out"))
    """Which split to score: a curated one (test or val), or held-out: the template stage's rendering of
    its sources' test files (the dataset's own test split, never curated)."""
    metrics: list[str] | None = None
    """Metric names (null: the task's defaults)."""
    batch_size: int = checked(16, ge=1)
    """Prompts per generate call / samples per forward."""
    max_length: int = checked(512, ge=1)
    """Longest input in tokens."""
    max_new_tokens: int = checked(128, ge=1)
    """Longest generated reply (causal-lm)."""
    task_max_new_tokens: dict[str, int] = field(default_factory=dict)
    """For templated records (a template stage's held-out split): the longest reply per task (meta.task),
    in place of max_new_tokens, e.g. {classification: 8, code: 160}, so a mixture of tasks is decoded with
    each task's own budget; tasks not named use max_new_tokens."""
    labels: list[str] | None = None
    """For generative classification: the label set parsed from replies (default: the references)."""
    examples: int = checked(5, ge=0)
    """Changed answers shown in the report."""

    def __post_init__(self) -> None:
        from instructkit.evaluate.templated import TASK_METRICS

        for task, n in self.task_max_new_tokens.items():
            if task not in TASK_METRICS:
                raise ConfigError(
                    "{key}: unknown task (known: " + ", ".join(TASK_METRICS) + ")",
                    key=f"task_max_new_tokens.{task}",
                )
            if isinstance(n, bool) or not isinstance(n, int) or n < 1:
                raise ConfigError(
                    f"{{key}} must be an integer of at least 1, got {n!r}", key=f"task_max_new_tokens.{task}"
                )

    def digest_view(self) -> dict[str, Any]:
        """The settings as the before/after digests hash them: a new key is hashed only when set, so run
        folders made before it existed keep their finished stages (tests/test_run_digests.py)."""
        out = dataclasses.asdict(self)
        if not out["task_max_new_tokens"]:
            del out["task_max_new_tokens"]
        return out


@dataclass
class Recipe:
    name: str = "run"
    """Run name: the run folder is output_dir/name."""
    output_dir: str = "runs"
    """Folder that holds run folders."""
    inputs: list[str] = field(default_factory=list)
    """Input data files (any format instructkit reads)."""
    generate: dict[str, Any] | None = None
    """Optional first stage: ``{generator: self-instruct | evol | code, ...its config}`` (``instructkit config
    show generate NAME``); the generated records join ``inputs``."""
    template: str | dict[str, Any] | None = None
    """Optional stage before curation: a mixture config (a YAML path or mapping; ``instructkit config show
    mixture``) that renders labeled datasets into instruction records, which join ``inputs``; its sources'
    ``test`` files become the held-out split (``eval.split: held-out``)."""
    held_out: str | None = None
    """A held-out test file scored as it is by ``eval.split: held-out`` (a dataset's own test split, in any
    format instructkit reads; never curated): for recipes without a template stage, e.g. an encoder head
    on labeled rows."""
    curate: str | dict[str, Any] | None = None
    """A curate YAML path or mapping (null: the default pipeline)."""
    train: str | dict[str, Any] = ""
    """A training YAML path or mapping; data.train/val are set to the curated splits."""
    train_overrides: dict[str, Any] = field(default_factory=dict)
    """Dotted overrides on the training config: {optim.epochs: 2}."""
    eval: EvalSettings = field(default_factory=EvalSettings)
    """How the model is scored before and after training."""

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir) / self.name

    @classmethod
    def from_yaml(cls, path: str | Path, overrides: dict[str, Any] | None = None) -> Recipe:
        """The recipe's own keys checked; :func:`check_recipe` checks the configs it points to."""
        data = read_yaml(path, RecipeError)
        data.update(overrides or {})
        try:
            return load(cls, data, error=RecipeError)
        except ConfigError as e:
            raise RecipeError(e.template, key=e.key, where=(str(path), *e.where)) from None

    def validate(self) -> None:
        from instructkit.train.rundir import run_name_problem

        problem = run_name_problem(self.name)
        if problem:
            raise RecipeError(f"{{key}} {problem} (the run folder is output_dir/name)", key="name")
        if not self.inputs and not self.generate and not self.template:
            raise RecipeError(
                "{key} lists no data files (and there is no generate or template stage)", key="inputs"
            )
        if not self.train:
            raise RecipeError("{key} is required (a training YAML or mapping)", key="train")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class RunResult:
    run_dir: Path
    ran: list[str]
    skipped: list[str]
    before: dict[str, Any]
    after: dict[str, Any]
    report_html: Path
    report_md: Path


def _load_curate(recipe: Recipe, base: Path) -> Any:
    from instructkit.data.pipeline import CurateConfig

    if recipe.curate is None:
        return CurateConfig()
    if isinstance(recipe.curate, str):
        path = _resolve(recipe.curate, base)
        if not path.is_file():
            raise RecipeError(f"{{key}}: no such file {recipe.curate}", key="curate")
        return CurateConfig.from_yaml(path)
    return CurateConfig.from_dict(recipe.curate, prefix="curate")


def _resolve(p: str, base: Path) -> Path:
    """A path in a recipe: as given when it exists (relative to the working directory), else relative to
    the recipe's folder."""
    path = Path(p)
    return path if path.exists() or path.is_absolute() else base / path


def _train_config(recipe: Recipe, base: Path, data_dir: Path, suffix: str) -> Any:
    """The training config the train stage runs: the file or mapping, then ``train_overrides``, then the
    curated splits and the run folder. An error in an override is named ``train_overrides.KEY``."""
    from instructkit.train.config import TrainConfig

    fixed = {
        "data.train": str(data_dir / f"train{suffix}"),
        "data.val": str(data_dir / f"val{suffix}"),
        "output_dir": str(recipe.run_dir),
        "name": "train",
    }
    if isinstance(recipe.train, str):
        path = _resolve(recipe.train, base)
        if not path.is_file():
            raise RecipeError(f"{{key}}: no such file {recipe.train}", key="train")
        data, where = read_yaml(path), (str(path),)
    else:
        data, where = copy.deepcopy(recipe.train), ()
    try:
        for k, v in recipe.train_overrides.items():
            set_dotted(data, k, v)
    except ConfigError as e:
        raise e.under("train_overrides") from None
    for k, v in fixed.items():
        set_dotted(data, k, v)
    try:
        return TrainConfig.from_dict(data)
    except ConfigError as e:
        if e.key in recipe.train_overrides:  # the bad value came from the recipe, not the train config
            raise e.under("train_overrides") from None
        if not where:
            raise e.under("train") from None
        raise ConfigError(e.template, key=e.key, where=("train", *where, *e.where)) from None


def _generate_config(recipe: Recipe, base: Path) -> tuple[str, Any] | None:
    """(generator name, its typed config with file paths resolved) for the generate stage, or None."""
    from instructkit.generate.runner import generator_class, load_generate_config

    if recipe.generate is None:
        return None
    data = copy.deepcopy(recipe.generate)
    name = data.pop("generator", None)
    if not isinstance(name, str):
        raise RecipeError("{key} names the generator (self-instruct, evol or code)", key="generate.generator")
    try:
        gen = generator_class(name)
    except ConfigError as e:
        raise RecipeError(e.template, key="generate.generator") from None
    for f in gen.files:
        if isinstance(data.get(f), str):
            path = _resolve(data[f], base)
            if not path.is_file():
                raise RecipeError(f"{{key}}: no such file {data[f]}", key=f"generate.{f}")
            data[f] = str(path)
    return gen.name, load_generate_config(gen.name, data, prefix="generate")


def _template_config(recipe: Recipe, base: Path) -> tuple[Any, Path] | None:
    """(the template stage's mixture config, the folder its relative paths are resolved against), or None.
    Every file it reads must exist; ``eval.split: held-out`` needs a source with ``test`` files."""
    from instructkit.tasks.mixture import MixtureConfig, load_mixture, mixture_inputs

    if recipe.held_out is not None:
        path = _resolve(recipe.held_out, base)
        if not path.is_file():
            raise RecipeError(f"{{key}}: no such file {recipe.held_out}", key="held_out")
        if recipe.eval.split != "held-out":
            raise RecipeError("{key} is scored only with eval.split: held-out", key="held_out")
    if recipe.template is None:
        if recipe.eval.split == "held-out" and recipe.held_out is None:
            raise RecipeError(
                "{key} is held-out but the recipe has neither held_out nor a template stage", key="eval.split"
            )
        return None
    if isinstance(recipe.template, str):
        path = _resolve(recipe.template, base)
        if not path.is_file():
            raise RecipeError(f"{{key}}: no such file {recipe.template}", key="template")
        cfg, folder = load_mixture(path), path.parent
    else:
        try:
            cfg = load(MixtureConfig, copy.deepcopy(recipe.template))
        except ConfigError as e:
            raise e.under("template") from None
        folder = base
    for p in mixture_inputs(cfg, folder):
        if not p.startswith("pkg:") and not Path(p).is_file():
            raise RecipeError(f"{{key}}: no such file {p}", key="template")
    has_test = any(src.test is not None for src in cfg.sources)
    if has_test and recipe.held_out is not None:
        raise RecipeError(
            "{key}: give held-out rows either here or as template sources' test files", key="held_out"
        )
    if recipe.eval.split == "held-out" and not has_test and recipe.held_out is None:
        raise RecipeError("{key} is held-out but no template source names test files", key="eval.split")
    return cfg, folder


def check_recipe(recipe: Recipe, recipe_path: str | Path | None = None) -> tuple[Any, Any, list[Path]]:
    """Everything ``run_recipe`` needs, checked before any stage starts: the input files, the curate config
    and every step, the training config (with ``train_overrides`` applied) and its method's parameters, the
    metric names and the model. Returns (curate config, training config, input paths); an error names
    the recipe file and the key."""
    from instructkit.evaluate.metrics import METRICS
    from instructkit.models.registry import check_model

    base = Path(recipe_path).parent if recipe_path else Path.cwd()
    try:
        inputs = [_resolve(p, base) for p in recipe.inputs]
        for i, (given, path) in enumerate(zip(recipe.inputs, inputs, strict=True)):
            if not path.is_file():
                raise RecipeError(f"{{key}}: no such file {given}", key=f"inputs[{i}]")
        _generate_config(recipe, base)
        _template_config(recipe, base)
        curate_cfg = _load_curate(recipe, base)
        cfg = _train_config(recipe, base, recipe.run_dir / "data", curate_cfg.output_suffix)
        for i, m in enumerate(recipe.eval.metrics or []):
            if m not in METRICS:
                raise RecipeError(
                    f"{{key}}: unknown metric {m!r} (known: {', '.join(METRICS)})", key=f"eval.metrics[{i}]"
                )
    except ConfigError as e:
        raise e.within(recipe_path or "recipe") from None
    check_model(cfg.model)  # a hub id with no network fails here, in seconds, not after the data stage
    return curate_cfg, cfg, inputs


@dataclass
class _RecipeRun:
    """What the stages of :func:`run_recipe` share: the checked configs, the run folder and its
    ``stages.json``, and which stages ran or were skipped."""

    recipe: Recipe
    curate_cfg: Any
    cfg: Any  # the training config
    inputs: list[Path]
    stages: Stages
    force: list[str]
    progress: bool
    log: Callable[[str], None]
    base: Path = field(default_factory=Path.cwd)
    """The folder relative paths in the recipe are resolved against (the recipe's)."""
    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    @property
    def run_dir(self) -> Path:
        return self.recipe.run_dir

    @property
    def data_dir(self) -> Path:
        return self.run_dir / "data"

    @property
    def suffix(self) -> str:
        return self.curate_cfg.output_suffix

    @property
    def split_file(self) -> Path:
        """The split both evaluations score: a curated one, or the template stage's held-out set."""
        if self.recipe.eval.split == "held-out":
            if self.recipe.held_out is not None:
                return _resolve(self.recipe.held_out, self.base)
            return self.run_dir / "template" / "test.jsonl"
        return self.data_dir / f"{self.recipe.eval.split}{self.suffix}"

    def stage(self, name: str, digest: str, outputs: list[Path], work: Callable[[], None]) -> None:
        """Run ``work`` unless the stage is fresh (same input digest, outputs present); record the digest
        when it is done."""
        if self.stages.fresh(name, digest, outputs):
            self.log(f"[{name}] up to date, skipped")
            self.skipped.append(name)
            return
        self.log(f"[{name}] running")
        t0 = time.perf_counter()
        work()
        self.stages.finish(name, digest, time.perf_counter() - t0)
        self.ran.append(name)


def run_recipe(
    recipe: Recipe,
    *,
    recipe_path: str | Path | None = None,
    force: list[str] | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> RunResult:
    """Run the stages that are not fresh; see the module docstring. Each stage returns the digest of its
    inputs, which the stages downstream of it hash into theirs: a change reruns everything after it."""
    run = _open_recipe_run(recipe, recipe_path, force or [], progress, log)
    d_generate = _generate_stage(run, recipe_path)
    d_template = _template_stage(run, recipe_path)
    d_data = _data_stage(run, *(d for d in (d_generate, d_template) if d))
    _check_splits(run)
    d_before = _before_stage(run, d_data)
    d_train = _train_stage(run, d_data)
    d_after = _after_stage(run, d_train)
    html, md = _report_stage(run, d_before, d_after)
    before = json.loads((run.run_dir / "eval" / "before.json").read_text())["metrics"]
    after = json.loads((run.run_dir / "eval" / "after.json").read_text())["metrics"]
    return RunResult(run.run_dir, run.ran, run.skipped, before, after, html, md)


def _open_recipe_run(
    recipe: Recipe,
    recipe_path: str | Path | None,
    force: list[str],
    progress: bool,
    log: Callable[[str], None],
) -> _RecipeRun:
    """Check the run folder and the whole recipe before anything is written, then write ``recipe.yaml``
    and read ``stages.json``, forgetting the forced stages and those after them."""
    from instructkit.train.rundir import RECIPE_MARKERS, check_run_folder

    run_dir = recipe.run_dir
    problem = check_run_folder(run_dir, RECIPE_MARKERS)
    if problem:
        raise RecipeError(f"output_dir/name: {problem}")
    curate_cfg, cfg, inputs = check_recipe(recipe, recipe_path)  # all of it, before anything is written
    if (run_dir / "stages.json").exists():
        Stages(run_dir, RecipeError)  # a damaged stages.json stops the run before anything is written
    run_dir.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(recipe.to_dict(), sort_keys=False)
    saved = run_dir / "recipe.yaml"
    if not _same_recipe(saved, recipe):  # rewritten only when it changed: its time says when
        write_text(text, saved)
    stages = Stages(run_dir, RecipeError)
    for s in force:
        stages.forget(STAGES[STAGES.index(s) :])
    base = Path(recipe_path).parent if recipe_path else Path.cwd()
    return _RecipeRun(recipe, curate_cfg, cfg, inputs, stages, force, progress, log, base)


def _same_recipe(saved: Path, recipe: Recipe) -> bool:
    """Whether ``saved`` (a run folder's recipe.yaml) holds ``recipe``, read with today's defaults: a key
    added to the recipe since (with its default) does not make an old run's recipe look changed."""
    if not saved.is_file():
        return False
    try:
        return Recipe.from_yaml(saved).to_dict() == recipe.to_dict()
    except (ConfigError, OSError, yaml.YAMLError):
        return False


def _generate_stage(run: _RecipeRun, recipe_path: str | Path | None) -> str | None:
    """Generate records into ``generate/`` (they join the data stage's inputs); its digest: the generator,
    its resolved config and the bytes of the files it reads. None when the recipe has no generate stage."""
    from instructkit.generate.runner import RECORDS_FILE, generate, generator_class

    base = Path(recipe_path).parent if recipe_path else Path.cwd()
    got = _generate_config(run.recipe, base)
    if got is None:
        return None
    name, gcfg = got
    files = [getattr(gcfg, f) for f in generator_class(name).files if getattr(gcfg, f, None)]
    d_gen = digest("generate", name, dataclasses.asdict(gcfg), [file_digest(Path(f)) for f in files])
    out = run.run_dir / "generate"
    run.inputs = [*run.inputs, out / RECORDS_FILE]

    def work() -> None:
        result = generate(name, gcfg, out, show_progress=run.progress)
        s = result.summary
        run.log(
            f"[generate] {s['kept']} {s['unit']}s kept, {s['rejected']} rejected, {s['records']} records; "
            f"{s['sent']} requests sent, {s['cache_hits']} from the cache; {result.card['stopped']}"
        )

    run.stage("generate", d_gen, [out / RECORDS_FILE, out / "card.json"], work)
    return d_gen


def _template_stage(run: _RecipeRun, recipe_path: str | Path | None) -> str | None:
    """Render the template stage's mixture into ``template/train.jsonl`` (joins the data stage's inputs)
    and its held-out sources into ``template/test.jsonl``, with the card and the rejects; its digest: the
    mixture config and the bytes of every file it reads. None when the recipe has no template stage."""
    from instructkit.files import commit_files, encode_text
    from instructkit.formats import dump_records
    from instructkit.formats.io import encode_rows
    from instructkit.tasks.mixture import build_held_out, build_mixture, mixture_inputs

    base = Path(recipe_path).parent if recipe_path else Path.cwd()
    got = _template_config(run.recipe, base)
    if got is None:
        return None
    cfg, folder = got
    files = [p for p in mixture_inputs(cfg, folder) if not p.startswith("pkg:")]
    d_tpl = digest("template", dataclasses.asdict(cfg), [file_digest(Path(f)) for f in files])
    out = run.run_dir / "template"
    run.inputs = [*run.inputs, out / "train.jsonl"]
    has_test = any(src.test is not None for src in cfg.sources)

    def work() -> None:
        mixed = build_mixture(cfg, base=folder)
        card = mixed.card()
        rejects = list(mixed.rejects)
        outputs = [(out / "train.jsonl", mixed.records)]
        if has_test:
            held = build_held_out(cfg, base=folder)
            card["held_out"] = {"records": len(held.records), "sources": held.counts}
            rejects += [{**r, "split": "test"} for r in held.rejects]
            outputs.append((out / "test.jsonl", held.records))
        files = [
            (path, encode_rows(dump_records(recs, "instructkit", "raise")[0], path)) for path, recs in outputs
        ]
        files += [
            (
                out / "card.json",
                encode_text(json.dumps(card, indent=2, ensure_ascii=False) + "\n", out / "card.json"),
            ),
            (out / "rejects.jsonl", encode_rows(rejects, out / "rejects.jsonl")),
        ]
        out.mkdir(parents=True, exist_ok=True)
        commit_files(files)  # the four files as one unit: a killed stage leaves none of them half-written
        test_note = f", {card['held_out']['records']} held-out" if has_test else ""
        run.log(f"[template] {card['records']} training records{test_note}, {len(rejects)} rejected rows")

    outputs = [out / "train.jsonl", out / "card.json", *([out / "test.jsonl"] if has_test else [])]
    run.stage("template", d_tpl, outputs, work)
    return d_tpl


def _data_stage(run: _RecipeRun, *upstream: str) -> str:
    """Curate the inputs into train/val/test; its digest: the curate config, the inputs' paths and bytes
    (and the digests of the generate and template stages when there are any)."""
    from instructkit.data.pipeline import curate

    curate_cfg = run.curate_cfg.to_dict()
    # where the steps run does not change what they write (the engines' output is byte-identical), so
    # switching engine or cluster reruns nothing
    for key in ("engine", "address"):
        curate_cfg.pop(key, None)
    parts: list[Any] = [curate_cfg, [(str(p), file_digest(p)) for p in run.inputs]]
    d_data = digest("data", *parts, *upstream)
    data_dir, suffix = run.data_dir, run.suffix
    run.stage(
        "data",
        d_data,
        [data_dir / "card.json", *(data_dir / f"{s}{suffix}" for s in ("train", "val", "test"))],
        lambda: curate(run.inputs, data_dir, run.curate_cfg),
    )
    return d_data


def _check_splits(run: _RecipeRun) -> None:
    """Stop with one line, before any model is loaded, when a curated split a later stage needs is empty:
    the eval split (stages before and after score it) or train. The line names the split, its count out
    of the kept records and the curate config's shares (or why no record was kept at all)."""
    from instructkit.data.pipeline import nothing_kept

    card = json.loads((run.data_dir / "card.json").read_text())
    counts, kept, shares = card["splits"], card["accounting"]["kept"], card["config"]["split"]
    ev = run.recipe.eval.split
    if ev == "held-out" and run.recipe.held_out is not None:
        from instructkit.formats import read_records

        if not read_records(run.split_file):
            raise RecipeError(
                f"the held-out file {run.split_file} holds no records and stage before needs it"
            )
    elif ev == "held-out":
        held = json.loads((run.run_dir / "template" / "card.json").read_text()).get("held_out", {})
        if not held.get("records"):
            raise RecipeError(
                f"the held-out split is empty (0 of the template sources' test rows rendered; see "
                f"{run.run_dir / 'template' / 'rejects.jsonl'}) and stage before needs it"
            )
    checks = (
        [("train", "train")]
        if ev == "held-out"
        else [(ev, "before (the evaluation before training)"), ("train", "train")]
    )
    for name, stage in checks:
        if counts.get(name):
            continue
        shares_text = f"curate split: val {shares['val']}, test {shares['test']}, train the rest"
        if not kept:
            why, hint = nothing_kept(card, run.data_dir), ""
        elif name == "train":
            why, hint = f"0 of {kept} kept records; {shares_text}", "; lower split.val or split.test"
        else:
            why, hint = f"0 of {kept} kept records; {shares_text}", f"; raise curate's split.{name}"
        raise RecipeError(f"the curated {name} split is empty ({why}) and stage {stage} needs it{hint}")


def _evaluate(run: _RecipeRun, model_name: str, out_name: str, labels: Any = None) -> None:
    """Score ``model_name`` on the eval split as the recipe says; write ``eval/<out_name>.*``."""
    from instructkit.decoding import Decoding
    from instructkit.evaluate.scoring import evaluate, load_for_eval
    from instructkit.formats import read_records

    ev = run.recipe.eval
    records = read_records(run.split_file)
    lm = load_for_eval(model_name, task=run.cfg.task, labels=labels)
    result = evaluate(
        lm,
        records,
        ev.metrics,
        decoding=Decoding(max_new_tokens=ev.max_new_tokens),
        task_max_new_tokens=ev.task_max_new_tokens or None,
        batch_size=ev.batch_size,
        max_length=ev.max_length,
        class_labels=ev.labels,
        progress=run.progress,
        data_path=run.split_file,
    )
    result.write(run.run_dir, out_name)
    run.log(f"[{out_name}] {json.dumps({k: round(v, 4) for k, v in result.headline().items()})}")


def _before_stage(run: _RecipeRun, d_data: str) -> str:
    """The untouched model on the eval split; its digest adds the model name, the task, the eval settings
    and the split's bytes."""
    from instructkit.formats import read_records
    from instructkit.train.tasks import TASKS

    cfg = run.cfg

    def labels_from_train() -> Any:
        task = TASKS[cfg.task]()
        return task.labels(read_records(run.data_dir / f"train{run.suffix}")) if task.has_labels else None

    eval_settings = run.recipe.eval.digest_view()
    d_before = digest("before", d_data, cfg.model, cfg.task, eval_settings, file_digest(run.split_file))
    run.stage(
        "before",
        d_before,
        [run.run_dir / "eval" / "before.json"],
        lambda: _evaluate(run, cfg.model, "before", labels_from_train()),
    )
    return d_before


def _train_stage(run: _RecipeRun, d_data: str) -> str:
    """Train on the curated splits; its digest adds the training config. Resumes a crashed run unless a
    stage up to train was forced."""
    from instructkit.train.checkpoints import move_aside
    from instructkit.train.training import train

    cfg, log = run.cfg, run.log
    d_train = digest("train", d_data, cfg.to_dict())
    forced = [s for s in run.force if STAGES.index(s) <= STAGES.index("train")]

    def run_train() -> None:
        if forced:
            move_aside(cfg.run_dir / "checkpoints", log, f"--force {forced[0]}")
            train(cfg, progress=run.progress, log=log)
        else:  # resume a crashed run, unless its checkpoints were made with other inputs
            train(cfg, resume=True, restart_if_changed=True, progress=run.progress, log=log)

    run.stage("train", d_train, [cfg.run_dir / "model" / "instructkit.json"], run_train)
    return d_train


def _after_stage(run: _RecipeRun, d_train: str) -> str:
    """The tuned model on the same split; its digest adds the trained weights' bytes."""
    train_dir = run.cfg.run_dir
    eval_settings = run.recipe.eval.digest_view()
    d_after = digest(
        "after", d_train, tree_digest(train_dir / "model"), eval_settings, file_digest(run.split_file)
    )
    run.stage(
        "after",
        d_after,
        [run.run_dir / "eval" / "after.json"],
        lambda: _evaluate(run, str(train_dir), "after"),
    )
    return d_after


def _report_stage(run: _RecipeRun, d_before: str, d_after: str) -> tuple[Path, Path]:
    """The before/after report; its digest adds the after-eval's bytes. Returns (html, md)."""
    from instructkit.evaluate.report import build_report

    run_dir = run.run_dir
    d_report = digest("report", d_before, d_after, file_digest(run_dir / "eval" / "after.json"))
    html, md = run_dir / "report.html", run_dir / "report.md"
    run.stage(
        "report", d_report, [html, md], lambda: build_report(run_dir, examples=run.recipe.eval.examples)
    )
    return html, md
