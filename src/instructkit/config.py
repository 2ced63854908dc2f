"""One typed loader for every YAML a user writes: the train config, the curate config and each data step's
parameters, the run recipe and each method's parameters.

A schema is a dataclass: each field's annotation is its type, its default is the default, the string right
under it is its documentation (``instructkit config show KIND`` prints them), and a range or a set of
choices is declared beside it with :func:`checked`. :func:`load` turns a YAML mapping into the dataclass
and refuses, naming the key by its dotted path (``optim.lr``, ``steps[2].threshold``):

* an unknown key, at any nesting level, listing the known ones;
* a wrong type (``list[str]``, ``dict``, ``Optional``, ``Literal`` and unions checked; a string is not a
  list, and ``true`` is not a number). Numbers written as strings are accepted: YAML 1.1 reads ``5e-4``
  as a string, and ``--set`` values arrive as strings;
* a value outside its declared range, and whatever the schema's own ``validate()`` refuses.

Hand-written rather than pydantic: pydantic's lax mode turns ``1`` and ``"yes"`` into ``True``, its
messages do not list the known keys, and ranges there live in ``Annotated`` types that the schema docs
would have to unwrap; what is needed here is about 200 lines over ``typing.get_type_hints``.
"""

from __future__ import annotations

import ast
import copy
import dataclasses
import inspect
import math
import textwrap
import types
import typing
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml

T = TypeVar("T")
_MISSING = dataclasses.MISSING


class ConfigError(ValueError):
    """A config the user wrote is invalid. The message names the file (when there is one) and the key by
    its dotted path; ``key`` holds that path, so a caller that nests one config in another (a recipe's
    ``train:`` mapping) can re-home the error with :meth:`under`."""

    def __init__(self, message: str, *, key: str | None = None, where: tuple[str, ...] = ()):
        self.template = message  # "{key}" in it is replaced with the quoted dotted key
        self.key = key
        self.where = where
        super().__init__(str(self))

    def __str__(self) -> str:
        text = self.template.replace("{key}", f"'{self.key}'") if self.key is not None else self.template
        return ": ".join([*self.where, text])

    def under(self, prefix: str) -> ConfigError:
        """The same error for a config nested at ``prefix`` (``"curate."``): the key gains the prefix."""
        if self.key is None:
            return self
        return type(self)(self.template, key=_join(prefix, self.key), where=self.where)

    def within(self, source: str | Path) -> ConfigError:
        """The same error, said to be in ``source`` (a file name, ``--set``)."""
        return type(self)(self.template, key=self.key, where=(str(source), *self.where))


def _join(prefix: str, key: str) -> str:
    prefix = prefix.rstrip(".")
    if not prefix:
        return key
    return f"{prefix}{key}" if key.startswith("[") else f"{prefix}.{key}"


# --------------------------------------------------------------------------------------------- ranges
def checked(
    default: Any = _MISSING,
    *,
    default_factory: Callable[[], Any] | Any = _MISSING,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    choices: tuple[Any, ...] | None = None,
    finite: bool = False,
) -> Any:
    """A dataclass field with its range beside it: ``lr: float = checked(5e-5, gt=0, finite=True)``.
    The range applies to a given value (never to null) and to each item of a list."""
    rules = {
        k: v
        for k, v in (("ge", ge), ("gt", gt), ("le", le), ("lt", lt), ("choices", choices))
        if v is not None
    }
    if finite:
        rules["finite"] = True
    kw: dict[str, Any] = {"metadata": {"rules": rules}}
    if default_factory is not _MISSING:
        kw["default_factory"] = default_factory
    elif default is not _MISSING:
        kw["default"] = default
    return dataclasses.field(**kw)


def _check_rules(value: Any, rules: dict[str, Any], key: str, error: type[ConfigError]) -> None:
    if value is None or not rules:
        return
    if isinstance(value, list):
        for i, item in enumerate(value):
            _check_rules(item, rules, f"{key}[{i}]", error)
        return
    if "choices" in rules and value not in rules["choices"]:
        raise error(f"{{key}} must be one of {', '.join(map(str, rules['choices']))}, not {value!r}", key=key)
    if not isinstance(value, int | float) or isinstance(value, bool):
        return
    if rules.get("finite") and not math.isfinite(value):
        raise error(f"{{key}} must be a finite number, not {value!r}", key=key)
    for name, ok, words in (
        ("gt", lambda v, b: v > b, "greater than"),
        ("ge", lambda v, b: v >= b, "at least"),
        ("lt", lambda v, b: v < b, "less than"),
        ("le", lambda v, b: v <= b, "at most"),
    ):
        if name in rules and not (value == value and ok(value, rules[name])):  # NaN fails every range
            raise error(f"{{key}} must be {words} {rules[name]}, not {value!r}", key=key)


def describe_rules(rules: dict[str, Any]) -> str:
    """A range as a reader writes it: ``> 0, finite`` or ``one of: a, b``."""
    parts = []
    for name, sign in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<=")):
        if name in rules:
            parts.append(f"{sign} {rules[name]}")
    if rules.get("finite"):
        parts.append("finite")
    if "choices" in rules:
        parts.append("one of: " + ", ".join(map(str, rules["choices"])))
    return ", ".join(parts)


# ---------------------------------------------------------------------------------------------- types
_SCALARS = (bool, int, float, str)


def type_name(hint: Any) -> str:
    """An annotation as a config reader would write it: ``list[str] | null``, ``mapping``."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is type(None):
        return "null"
    if hint is Any:
        return "any"
    if origin is Literal:
        return " | ".join(repr(a) if isinstance(a, str) else str(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(type_name(a) for a in args)
    if origin in (list, tuple):  # YAML has no tuples: a tuple field is written as a list
        return f"list[{type_name(args[0])}]" if args else "list"
    if origin is dict:
        return "mapping"
    if dataclasses.is_dataclass(hint):
        return "mapping"
    return getattr(hint, "__name__", str(hint))


def _exact(value: Any, hint: Any) -> bool:
    """``value`` is already of type ``hint`` (the first pass over a union's arms)."""
    origin = typing.get_origin(hint)
    if hint is Any:
        return True
    if hint is type(None):
        return value is None
    if origin is Literal:
        return any(value == a and type(value) is type(a) for a in typing.get_args(hint))
    if origin in (list, dict):
        return isinstance(value, origin)
    if origin is tuple:
        return isinstance(value, list | tuple)
    if dataclasses.is_dataclass(hint):
        return isinstance(value, dict)
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    return isinstance(hint, type) and isinstance(value, hint)


def _from_string(value: str, hint: Any) -> Any:
    """A number written as a string (``"5e-4"``, ``"2"``), else ``_MISSING``."""
    if hint in (int, float):
        try:
            return hint(value.strip())
        except ValueError:
            return _MISSING
    if typing.get_origin(hint) is Literal:
        for a in typing.get_args(hint):
            if isinstance(a, int | float) and not isinstance(a, bool) and _from_string(value, type(a)) == a:
                return a
    return _MISSING


def coerce(value: Any, hint: Any, key: str, error: type[ConfigError] = ConfigError) -> Any:
    """``value`` checked against the annotation ``hint``; nested dataclasses built, numbers given as strings
    turned into numbers. A mismatch is ``error`` naming ``key``."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    arms = args if origin in (typing.Union, types.UnionType) else (hint,)
    if value is None:
        if type(None) in arms or hint is Any:
            return None
        dataclass_arm = next((a for a in arms if dataclasses.is_dataclass(a)), None)
        if dataclass_arm is not None:  # ``data:`` left empty in YAML: the defaults
            return load(dataclass_arm, {}, prefix=key, error=error)
        raise error("{key} may not be null" + f" (it is {type_name(hint)})", key=key)
    for arm in arms:
        if _exact(value, arm):
            return _coerce_arm(value, arm, key, error)
    if isinstance(value, str):
        for arm in arms:
            got = _from_string(value, arm)
            if got is not _MISSING:
                return float(got) if arm is float else got
    got_text = f"a {type(value).__name__}" if isinstance(value, list | dict) else repr(value)
    raise error(f"{{key}} must be {type_name(hint)}, got {got_text}", key=key)


def _coerce_arm(value: Any, arm: Any, key: str, error: type[ConfigError]) -> Any:
    origin, args = typing.get_origin(arm), typing.get_args(arm)
    if dataclasses.is_dataclass(arm):
        return load(arm, value, prefix=key, error=error)
    if origin is list:
        item = args[0] if args else Any
        return [coerce(v, item, f"{key}[{i}]", error) for i, v in enumerate(value)]
    if origin is tuple:  # only the homogeneous tuple[X, ...] is used in configs
        item = args[0] if args else Any
        return tuple(coerce(v, item, f"{key}[{i}]", error) for i, v in enumerate(value))
    if origin is dict:
        kt, vt = args if args else (Any, Any)
        out = {}
        for k, v in value.items():
            if kt is str and not isinstance(k, str):
                raise error(f"{{key}} has a key {k!r} that is not a string", key=key)
            out[k] = coerce(v, vt, _join(key, str(k)), error)
        return out
    if arm is float:
        return float(value)
    return value


# --------------------------------------------------------------------------------------------- loading
def load(
    cls: type[T],
    data: Any,
    *,
    prefix: str = "",
    error: type[ConfigError] = ConfigError,
    noun: str = "key",
    ignore: tuple[str, ...] = (),
) -> T:
    """Build the dataclass ``cls`` from the mapping ``data``, every value checked (see the module
    docstring); then ``cls.validate()`` when it has one. ``prefix`` is where ``data`` sits in the file
    (``"optim"``), so each key is named by its full dotted path; ``ignore`` lists keys the caller
    handles (a method's ``name``)."""
    if not isinstance(data, dict):
        raise error(f"{{key}} must be a mapping, got {data!r}", key=prefix or "config")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = [k for k in data if k not in fields and k not in ignore]
    if unknown:
        known = ", ".join(sorted([*fields, *ignore])) or "none"
        raise error(f"unknown {noun} {{key}} (known: {known})", key=_join(prefix, str(unknown[0])))
    kwargs = {}
    for name, value in data.items():
        if name in ignore:
            continue
        kwargs[name] = coerce(value, hints[name], _join(prefix, name), error)
    required = [
        n
        for n, f in fields.items()
        if n not in kwargs and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if required:  # else the dataclass's own TypeError, which names no file and no dotted key
        raise error(f"missing required {noun} {{key}}", key=_join(prefix, required[0]))
    try:
        obj = cls(**kwargs)
        check_ranges(obj, error=error)
        validate = getattr(obj, "validate", None)
        if callable(validate):
            validate()
    except ConfigError as e:
        raise e.under(prefix) from None
    return obj


def check_ranges(obj: Any, prefix: str = "", error: type[ConfigError] = ConfigError) -> None:
    """Every field of the dataclass ``obj`` (nested ones too) inside the range declared with
    :func:`checked`; for a config built in code as much as for one loaded from YAML."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        key = _join(prefix, f.name)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            check_ranges(value, key, error)
        else:
            _check_rules(value, f.metadata.get("rules", {}), key, error)


def read_yaml(path: str | Path, error: type[ConfigError] = ConfigError) -> dict[str, Any]:
    """A YAML file that holds a mapping (an empty file is ``{}``); errors as :func:`read_yaml_value`."""
    data = read_yaml_value(path, error)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise error(f"{path}: the file must hold a mapping of keys to values, not a {type(data).__name__}")
    return data


def read_yaml_value(path: str | Path, error: type[ConfigError] = ConfigError) -> Any:
    """Whatever a YAML file holds (a mapping, a list, None when empty). A missing or unreadable file, a
    syntax error, or a tag such as ``!!python/object`` (which safe loading refuses) is ``error`` naming the
    file, line and column."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise error(f"{path}: cannot be read as a YAML text file ({e})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise error(f"{where}: YAML syntax error: {e.problem or e.context}") from None
    except yaml.YAMLError as e:
        raise error(f"{path}: YAML syntax error: {e}") from None
    return data


def parse_value(text: str, key: str, error: type[ConfigError] = ConfigError) -> Any:
    """A value given on the command line (``--set optim.lr=5e-4``), read as YAML; bad YAML or an unsafe tag
    is ``error`` naming the key."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        if "constructor" in str(problem) and "!" in text:
            problem = "YAML tags such as !!python/... are not allowed in a config"
        raise error(f"{{key}}: the value {text!r} is not valid YAML ({problem})", key=key) from None


def set_dotted(
    data: dict[str, Any],
    dotted: str,
    value: Any,
    error: type[ConfigError] = ConfigError,
    *,
    parse: bool = True,
) -> None:
    """Set ``a.b.c`` in nested mappings (creating the mappings on the way); with ``parse``, a string value
    is read as YAML, as on the command line."""
    keys = dotted.split(".")
    if not all(keys):
        raise error("{key} is not a dotted key (like optim.lr)", key=dotted)
    node = data
    for i, k in enumerate(keys[:-1]):
        if node.get(k) is None:  # absent, or ``optim:`` left empty in the file
            node[k] = {}
        node = node[k]
        if not isinstance(node, dict):
            raise error(f"cannot set {{key}}: '{'.'.join(keys[: i + 1])}' is not a mapping", key=dotted)
    node[keys[-1]] = (
        parse_value(value, dotted, error) if parse and isinstance(value, str) else copy.deepcopy(value)
    )


def parse_overrides(items: list[str], error: type[ConfigError] = ConfigError) -> dict[str, Any]:
    """``["optim.lr=5e-4", "method.r=16"]`` (``--set``) as ``{dotted: value}``, each value read as YAML;
    an error names ``--set`` and the key."""
    out = {}
    for item in items:
        if "=" not in item:
            raise error(f"--set {item!r} is not KEY=VALUE (e.g. --set optim.lr=1e-4)")
        key, value = item.split("=", 1)
        try:
            out[key.strip()] = parse_value(value, key.strip(), error)
        except ConfigError as e:
            raise e.within("--set") from None
    return out


# ------------------------------------------------------------------------------------------ describing
@dataclasses.dataclass
class FieldDoc:
    """One row of ``instructkit config show``."""

    key: str
    type: str
    default: str
    doc: str
    rules: str = ""


def field_docs(cls: type) -> dict[str, str]:
    """The string right under each field of a dataclass (and of its dataclass bases), by field name, read
    from the source, so the docs users see are the ones in the code."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass) or klass is object:
            continue
        try:
            source = textwrap.dedent(inspect.getsource(klass))
        except (OSError, TypeError):
            continue
        body = ast.parse(source).body[0].body  # type: ignore[attr-defined]
        for node, nxt in zip(body, [*body[1:], None], strict=True):
            if (
                isinstance(node, ast.AnnAssign)
                and isinstance(node.target, ast.Name)
                and isinstance(nxt, ast.Expr)
                and isinstance(nxt.value, ast.Constant)
                and isinstance(nxt.value.value, str)
            ):
                docs[node.target.id] = " ".join(inspect.cleandoc(nxt.value.value).split())
    return docs


def _default_text(f: dataclasses.Field) -> str:
    if f.default is not _MISSING:
        value = f.default
    elif f.default_factory is not _MISSING:
        value = f.default_factory()
    else:
        return "(required)"
    if dataclasses.is_dataclass(value):
        return ""
    return yaml.safe_dump(value, default_flow_style=True, width=10_000).strip().removesuffix("\n...").strip()


def describe(cls: type, prefix: str = "", skip: tuple[str, ...] = ()) -> Iterator[FieldDoc]:
    """Every field of a schema, nested schemas flattened to dotted keys, with type, default, doc, range."""
    hints = typing.get_type_hints(cls)
    docs = field_docs(cls)
    for f in dataclasses.fields(cls):
        if not f.init or f.name in skip:
            continue
        key = _join(prefix, f.name)
        hint = hints[f.name]
        rules = describe_rules(f.metadata.get("rules", {}))
        yield FieldDoc(key, type_name(hint), _default_text(f), docs.get(f.name, ""), rules)
        if dataclasses.is_dataclass(hint):
            yield from describe(hint, key)
