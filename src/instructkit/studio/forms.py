"""The train page's forms, built from the typed config schemas, and the check a job's config passes first.

``form(kind)`` is the schema of what ``instructkit run | train | continual | generate NAME`` reads, as a tree
of fields (dotted name, type, default, the documentation under the field, choices, nested sections), from
the same dataclasses ``instructkit config show`` prints. A run recipe's ``train`` (a training YAML or
mapping) is shown as the training config's section, less the keys the recipe sets itself; so is a continual
recipe's ``train``.

:func:`check_job_config` loads a submitted config with the loaders the CLI itself calls, in a child process
whose working directory is ``--runs`` (where the job will run: the relative paths in a recipe, its model
folder and data files, mean there what they will mean to the job), so a config error is the CLI's message
naming the dotted key, and nothing has started or been written when it is one.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import subprocess
import sys
import types
import typing
from pathlib import Path
from typing import Any, Literal

from instructkit.config import ConfigError, describe_rules, field_docs, parse_value, read_yaml, type_name
from instructkit.studio.errors import StudioError
from instructkit.studio.paths import RunsRoot

KINDS = ("run", "train", "continual", "generate")
COMMANDS = {"run": "run", "train": "train", "continual": "continual", "generate": "generate"}
CHECK_TIMEOUT_S = 120.0
"""How long the config check may take (it imports the loaders and may probe the hub for a hub model id)."""
RECIPE_FIXED_TRAIN = ("name", "output_dir", "data.train", "data.val")
"""Training keys a run recipe sets itself (its train stage's folder and curated splits)."""


# ------------------------------------------------------------------------------------------ the schemas
def generators() -> list[str]:
    import instructkit.generate  # noqa: F401  (importing the package registers every generator)
    from instructkit.generate.runner import GENERATORS

    return sorted(GENERATORS)


def _schema(kind: str, generator: str | None) -> tuple[type, dict[str, tuple[type, tuple[str, ...]]]]:
    """(the dataclass, {field: (dataclass shown in its place, dotted keys left out)})."""
    from instructkit.train.config import TrainConfig

    if kind == "run":
        from instructkit.recipe.schema import Recipe

        return Recipe, {"train": (TrainConfig, RECIPE_FIXED_TRAIN)}
    if kind == "train":
        return TrainConfig, {}
    if kind == "continual":
        from instructkit.continual.recipe import FIXED_TRAIN_KEYS, ContinualRecipe

        return ContinualRecipe, {"train": (TrainConfig, (*FIXED_TRAIN_KEYS, "data.train"))}
    if kind == "generate":
        from instructkit.generate.runner import generator_class

        names = generators()
        try:
            return generator_class(generator or names[0]).config, {}
        except ConfigError as e:
            raise StudioError(400, str(e), field="generator") from None
    raise StudioError(404, f"kind: {kind!r} is not one of {', '.join(KINDS)}", field="kind", code="not_found")


def _json_value(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return _json_value(f.default)
    if f.default_factory is not dataclasses.MISSING:
        value = f.default_factory()
        return None if dataclasses.is_dataclass(value) else _json_value(value)
    return None


def _input(hint: Any, rules: dict[str, Any]) -> tuple[str, list[Any] | None, bool]:
    """(input kind: checkbox | number | text | select | yaml, choices, nullable) for an annotation."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    arms = list(args) if origin in (typing.Union, types.UnionType) else [hint]
    nullable = type(None) in arms
    arms = [a for a in arms if a is not type(None)]
    if "choices" in rules:
        return "select", list(rules["choices"]), nullable
    if len(arms) == 1 and typing.get_origin(arms[0]) is Literal:
        return "select", list(typing.get_args(arms[0])), nullable
    if arms == [bool]:
        return "checkbox", None, nullable
    if arms and all(a in (int, float) for a in arms):
        return "number", None, nullable
    if arms == [str] or set(arms) == {str, bool}:
        return "text", None, nullable
    return "yaml", None, nullable


def fields(cls: type, prefix: str = "", skip: tuple[str, ...] = (),
           expand: dict[str, tuple[type, tuple[str, ...]]] | None = None) -> list[dict[str, Any]]:  # fmt: skip
    """The form's field tree of dataclass ``cls``: one node per field, a nested dataclass (or a field
    ``expand`` shows as one) a section node holding its own."""
    hints, docs = typing.get_type_hints(cls), field_docs(cls)
    out: list[dict[str, Any]] = []
    for f in dataclasses.fields(cls):
        if not f.init or f.name in skip:
            continue
        name = f"{prefix}{f.name}"
        hint, rules = hints[f.name], f.metadata.get("rules", {})
        node: dict[str, Any] = {
            "name": name,
            "key": f.name,
            "type": type_name(hint),
            "doc": docs.get(f.name, ""),
        }
        inner = (expand or {}).get(f.name)
        if inner is None and dataclasses.is_dataclass(hint):
            inner = (hint, ())
        if inner is not None:
            sub, sub_skip = inner
            own = tuple(s for s in sub_skip if "." not in s)
            nested: dict[str, tuple[str, ...]] = {}
            for s in sub_skip:
                if "." in s:
                    head, rest = s.split(".", 1)
                    nested[head] = (*nested.get(head, ()), rest)
            node.update(section=True, fields=_section(sub, f"{name}.", own, nested))
            out.append(node)
            continue
        kind, choices, nullable = _input(hint, rules)
        node.update(input=kind, default=_default(f), nullable=nullable, rules=describe_rules(rules),
                    required=f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING)  # fmt: skip
        if choices is not None:
            node["choices"] = choices
        out.append(node)
    return out


def _section(cls: type, prefix: str, skip: tuple[str, ...], nested: dict[str, tuple[str, ...]]) -> list[dict[str, Any]]:  # fmt: skip
    hints = typing.get_type_hints(cls)
    expand = {n: (hints[n], s) for n, s in nested.items() if dataclasses.is_dataclass(hints.get(n))}
    return fields(cls, prefix, skip, expand)


def form(kind: str, generator: str | None = None) -> dict[str, Any]:
    """``GET /api/forms/{kind}``'s answer, less the prefilled values."""
    cls, expand = _schema(kind, generator)
    out: dict[str, Any] = {"kind": kind, "command": COMMANDS[kind], "fields": fields(cls, expand=expand)}
    if kind == "generate":
        out["generators"] = generators()
        out["generator"] = (generator or out["generators"][0]).strip().lower()
    return out


# ------------------------------------------------------------------------------------------ prefilling
def yaml_sources(root: RunsRoot, depth: int = 4) -> list[str]:
    """The YAML files under ``--runs`` a form can start from (hidden folders and weights skipped)."""
    from instructkit.studio.runs import SKIP

    found: list[str] = []

    def walk(folder: Path, level: int) -> None:
        try:
            entries = sorted(folder.iterdir())
        except OSError:
            return
        for p in entries:
            if p.name.startswith(".") or p.is_symlink():
                continue
            if p.is_file() and p.suffix in (".yaml", ".yml"):
                found.append(root.rel(p))
            elif p.is_dir() and level < depth and p.name not in SKIP:
                walk(p, level + 1)

    walk(root.root, 0)
    return found


def prefill(kind: str, root: RunsRoot, rel: str) -> dict[str, Any]:
    """The values of the YAML ``rel`` (under ``--runs``) for the form. A run recipe whose ``train`` names
    a training YAML gets that file's mapping in its place (found as the runner finds it: under the runs
    folder, else beside the recipe), so its section shows what will be trained."""
    path = root.resolve(rel, field="from")
    try:
        data = read_yaml(path)
    except ConfigError as e:
        raise StudioError(400, str(e), field="from") from None
    if kind == "run" and isinstance(data.get("train"), str) and data["train"]:
        train = _train_file(root, path, data["train"])
        if train is not None:
            try:
                data["train"] = read_yaml(train)
            except ConfigError as e:
                raise StudioError(400, str(e), field="train") from None
    try:
        check_nesting(data)  # YAML aliases could make the answer huge
    except StudioError as e:
        raise StudioError(400, f"from: {rel!r}: {e.message}", field="from") from None
    return data


def _train_file(root: RunsRoot, recipe: Path, given: str) -> Path | None:
    """A recipe's training YAML as the runner finds it (under the runs folder, else beside the recipe), or
    None when it is neither or not under the runs folder (the form then shows the defaults)."""
    for rel in (given, f"{root.rel(recipe.parent)}/{given}".lstrip("/")):
        try:
            path = root.resolve(rel, field="train", must_exist=False)
        except StudioError:
            continue
        if path.is_file():
            return path
    return None


# ------------------------------------------------------------------------------------------ submitting
def parse_yaml_fields(config: dict[str, Any], keys: list[str]) -> dict[str, Any]:
    """``config`` with the values at the dotted ``keys`` (the form's YAML/JSON text fields) read as YAML,
    as ``--set`` reads a value; bad YAML is a 400 naming the key."""
    check_nesting(config)
    out = copy.deepcopy(config)
    for dotted in keys:
        node, parts = out, dotted.split(".")
        for p in parts[:-1]:
            node = node.get(p) if isinstance(node, dict) else None
        if not isinstance(node, dict) or not isinstance(node.get(parts[-1]), str):
            continue
        text = node[parts[-1]]
        try:
            node[parts[-1]] = parse_value(text, dotted) if text.strip() else None
        except ConfigError as e:
            raise StudioError(400, str(e), field=dotted) from None
        except RecursionError:
            raise StudioError(
                400, f"{dotted}: nested deeper than {MAX_NESTING} levels", field=dotted
            ) from None
    check_nesting(out)
    return out


MAX_NESTING = 32
"""The deepest a job's config nests (no config of the schemas comes near): deeper is refused before anything
walks it."""


MAX_VALUES = 100_000
"""The most values (mappings, lists and leaves) a job's config holds: YAML aliases (a "billion laughs") make a
small text a huge config."""


def check_nesting(config: Any) -> None:
    """400 for a config nested deeper than :data:`MAX_NESTING` or holding more than :data:`MAX_VALUES`
    values (each alias counted as often as it is used), found without recursion."""
    todo: list[tuple[Any, str, int]] = [(config, "config", 0)]
    seen = 0
    while todo:
        value, key, depth = todo.pop()
        seen += 1
        if seen > MAX_VALUES:
            raise StudioError(400, f"config: more than {MAX_VALUES} values", field=None)
        if depth > MAX_NESTING:
            raise StudioError(400, f"{key}: nested deeper than {MAX_NESTING} levels", field=key.split("[")[0])
        if isinstance(value, dict):
            todo += [(v, k if key == "config" else f"{key}.{k}", depth + 1) for k, v in value.items()]
        elif isinstance(value, list):
            todo += [(v, f"{key}[{i}]", depth + 1) for i, v in enumerate(value)]


def check_job_config(
    kind: str, config: dict[str, Any], root: RunsRoot, generator: str | None = None
) -> dict[str, Any]:
    """Load ``config`` as the CLI would (a child process, working directory ``--runs``). A refused config
    is a 400 with the loader's message and ``field`` = the dotted key it names; else ``{"run_dir"}`` (the run
    folder as the config gives it, relative to ``--runs`` unless absolute)."""
    request = json.dumps({"kind": kind, "config": config, "generator": generator})
    code = "from instructkit.studio.forms import check_main; check_main()"
    try:
        done = subprocess.run(
            [sys.executable, "-c", code], input=request, capture_output=True, text=True,
            cwd=root.root, timeout=CHECK_TIMEOUT_S,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        raise StudioError(
            504, f"checking the config took over {CHECK_TIMEOUT_S:.0f} s", code="timeout"
        ) from None
    lines = done.stdout.strip().splitlines()
    try:
        answer = json.loads(lines[-1])
    except (IndexError, ValueError):
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        raise StudioError(500, f"the config check failed: {tail[0]}", code="internal") from None
    if not answer.get("ok"):
        raise StudioError(400, answer["message"], field=answer.get("field"), code="invalid_config")
    return answer


MODEL_KEY = {"run": "train.model", "train": "model", "continual": "model", "generate": "backend.model"}


def check(kind: str, config: dict[str, Any], generator: str | None = None) -> dict[str, Any]:
    """The child's side of :func:`check_job_config`: ``{"ok": True, "run_dir"}`` or ``{"ok": False,
    "message", "field"}``. Each kind runs the checks its command runs before it writes anything."""
    from instructkit.models import ModelNotFoundError
    from instructkit.records import RecordError

    try:
        run_dir = CHECKS[kind](copy.deepcopy(config), generator)
    except ConfigError as e:
        field = e.key if e.key is not None else ("name" if "output_dir/name" in e.template else None)
        return {"ok": False, "message": str(e), "field": field}
    except ModelNotFoundError as e:
        return {"ok": False, "message": str(e), "field": MODEL_KEY[kind]}
    except (RecordError, FileNotFoundError, ValueError) as e:
        return {"ok": False, "message": str(e), "field": None}
    return {"ok": True, "run_dir": str(run_dir)}


def _check_run(data: dict[str, Any], _: str | None) -> Path:
    """What ``instructkit run`` checks: ``Recipe.from_yaml``'s load, then ``run_recipe``'s folder and
    ``check_recipe`` (inputs, curate, train config and method, metrics, the model)."""
    from instructkit.config import load
    from instructkit.recipe.plan import check_recipe
    from instructkit.recipe.schema import Recipe, RecipeError
    from instructkit.train.rundir import RECIPE_MARKERS, check_run_folder

    recipe = load(Recipe, data, error=RecipeError)
    problem = check_run_folder(recipe.run_dir, RECIPE_MARKERS)
    if problem:
        raise RecipeError(f"output_dir/name: {problem}")
    check_recipe(recipe)
    return recipe.run_dir


def _check_train(data: dict[str, Any], _: str | None) -> Path:
    """What ``instructkit train`` checks before it writes: the config, the run folder, the model."""
    from instructkit.models.registry import check_model
    from instructkit.train.config import TrainConfig
    from instructkit.train.rundir import TRAIN_MARKERS, check_run_folder

    cfg = TrainConfig.from_dict(data)
    problem = check_run_folder(cfg.run_dir, TRAIN_MARKERS)
    if problem:
        raise ConfigError(f"output_dir/name: {problem}")
    check_model(cfg.model)
    return cfg.run_dir


def _check_continual(data: dict[str, Any], _: str | None) -> Path:
    """What ``instructkit continual`` checks before its first round: the recipe, the folder, the plan."""
    from instructkit.continual.plan import check_continual
    from instructkit.continual.recipe import ContinualRecipeError, load_recipe
    from instructkit.continual.runner import MARKERS
    from instructkit.train.rundir import check_run_folder

    recipe = load_recipe(data)
    problem = check_run_folder(recipe.run_dir, MARKERS)
    if problem:
        raise ContinualRecipeError(f"output_dir/name: {problem}")
    check_continual(recipe, None)
    return recipe.run_dir


def _check_generate(data: dict[str, Any], generator: str | None) -> Path:
    """What ``instructkit generate NAME --config`` checks: the generator's typed config and its backend."""
    from instructkit.generate.runner import load_generate_config

    load_generate_config(generator or "", data)
    return Path(".")  # the output folder is the job's, not the config's


CHECKS = {
    "run": _check_run,
    "train": _check_train,
    "continual": _check_continual,
    "generate": _check_generate,
}


def check_main() -> None:
    """The child process: the request as JSON on stdin, the answer as the last line of stdout."""
    request = json.loads(sys.stdin.read())
    answer = check(request["kind"], request["config"], request.get("generator"))
    sys.stdout.write("\n" + json.dumps(answer) + "\n")
