"""What a recipe run needs, checked before any stage starts (:func:`check_recipe`: the curation config,
the training config, the generator and template configs, the inputs), and what its stages share
(:class:`RecipeRun`)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from instructkit.config import ConfigError, load, read_yaml, set_dotted
from instructkit.ledger import Stages
from instructkit.recipe.schema import Recipe, RecipeError


def load_curate(recipe: Recipe, base: Path) -> Any:
    from instructkit.data.curate_config import CurateConfig

    if recipe.curate is None:
        return CurateConfig()
    if isinstance(recipe.curate, str):
        path = resolve(recipe.curate, base)
        if not path.is_file():
            raise RecipeError(f"{{key}}: no such file {recipe.curate}", key="curate")
        return CurateConfig.from_yaml(path)
    return CurateConfig.from_dict(recipe.curate, prefix="curate")


def resolve(p: str, base: Path) -> Path:
    """A path in a recipe: as given when it exists (relative to the working directory), else relative to
    the recipe's folder."""
    path = Path(p)
    return path if path.exists() or path.is_absolute() else base / path


def train_config(recipe: Recipe, base: Path, data_dir: Path, suffix: str) -> Any:
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
        path = resolve(recipe.train, base)
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


def generate_config(recipe: Recipe, base: Path) -> tuple[str, Any] | None:
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
            path = resolve(data[f], base)
            if not path.is_file():
                raise RecipeError(f"{{key}}: no such file {data[f]}", key=f"generate.{f}")
            data[f] = str(path)
    return gen.name, load_generate_config(gen.name, data, prefix="generate")


def template_config(recipe: Recipe, base: Path) -> tuple[Any, Path] | None:
    """(the template stage's mixture config, the folder its relative paths are resolved against), or None.
    Every file it reads must exist; ``eval.split: held-out`` needs a source with ``test`` files."""
    from instructkit.tasks.mixture import MixtureConfig, load_mixture, mixture_inputs

    if recipe.held_out is not None:
        path = resolve(recipe.held_out, base)
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
        path = resolve(recipe.template, base)
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
        inputs = [resolve(p, base) for p in recipe.inputs]
        for i, (given, path) in enumerate(zip(recipe.inputs, inputs, strict=True)):
            if not path.is_file():
                raise RecipeError(f"{{key}}: no such file {given}", key=f"inputs[{i}]")
        generate_config(recipe, base)
        template_config(recipe, base)
        curate_cfg = load_curate(recipe, base)
        cfg = train_config(recipe, base, recipe.run_dir / "data", curate_cfg.output_suffix)
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
class RecipeRun:
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
                return resolve(self.recipe.held_out, self.base)
            return self.run_dir / "template" / "test.jsonl"
        return self.data_dir / f"{self.recipe.eval.split}{self.suffix}"

    def stage(self, name: str, digest: str, outputs: list[Path], work: Callable[[], None]) -> None:
        """Run ``work`` unless the stage is fresh (the ledger's rule); record its digest when done."""
        self.stages.run(name, digest, outputs, work, self.log)
