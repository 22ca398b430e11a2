"""Declared plugin options: one place that checks a plugin's section of the config file.

A plugin returns a dataclass from ``admission_host_options``; each field is an option, its
config key the field's name in camelCase (``virtual_node_labels`` -> ``virtualNodeLabels``), its
type the field's annotation, its help ``field(metadata={"help": ...})``. The host rejects unknown
keys, wrong types and missing required options before any plugin starts, naming the plugin, and
passes the plugin an instance of its dataclass as ``options``.
"""

from __future__ import annotations

import dataclasses
import datetime
import typing
from typing import Any, Dict, Iterable, List, Optional

NoneType = type(None)


class OptionsError(ValueError):
    pass


def config_key(field_name: str) -> str:
    head, *rest = field_name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _folded(name: str) -> str:
    return name.replace("-", "").replace("_", "").lower()


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` when ``name`` is a known name in another case or with ``-``/``_``
    elsewhere (``virtual_node_labels``, ``eci-profile``), else ``""``: a key copied from another
    convention (Python, Helm values, a distribution's name) is the likeliest mistake."""
    matches = [k for k in known if k != name and _folded(k) == _folded(name)]
    return f" (did you mean {matches[0]!r}?)" if len(matches) == 1 else ""


def _fields(cls) -> List[tuple]:
    """(field, config key, type) of a declared options dataclass."""
    if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
        raise OptionsError(f"admission_host_options must return a dataclass (the class), got {cls!r}")
    hints = typing.get_type_hints(cls)
    return [(f, config_key(f.name), hints.get(f.name, Any)) for f in dataclasses.fields(cls) if f.init]


def _required(field) -> bool:
    return field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING


def parse(cls, values: Optional[Dict[str, Any]]) -> Any:
    """An instance of ``cls`` from a plugin's config section; :class:`OptionsError` says what is wrong."""
    values = values or {}
    fields = _fields(cls)
    known = {key: (f, tp) for f, key, tp in fields}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise OptionsError(f"unknown option(s) {', '.join(k + did_you_mean(k, known) for k in unknown)}; "
                           f"known: {', '.join(sorted(known)) or 'none'}")
    missing = [key for f, key, _ in fields if _required(f) and key not in values]
    if missing:
        raise OptionsError(f"missing required option(s) {', '.join(missing)}")
    kwargs = {}
    for key, value in values.items():
        field, tp = known[key]
        problem = _type_problem(value, tp, key)
        if problem:
            raise OptionsError(problem)
        kwargs[field.name] = value
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:  # the dataclass's own __post_init__ checks
        raise OptionsError(str(exc)) from None


def as_mapping(options: Any) -> Dict[str, Any]:
    """A declared options instance as the config file would spell it (a dict passes through)."""
    if dataclasses.is_dataclass(options) and not isinstance(options, type):
        return {config_key(f.name): getattr(options, f.name) for f in dataclasses.fields(options)}
    return dict(options or {})


def describe(cls) -> List[Dict[str, Any]]:
    """Each option with its type, default and help: for ``admission-host plugins``."""
    out = []
    for field, key, tp in _fields(cls):
        entry: Dict[str, Any] = {"name": key, "type": _type_name(tp), "required": _required(field)}
        if field.default is not dataclasses.MISSING:
            entry["default"] = field.default
        elif field.default_factory is not dataclasses.MISSING:
            entry["default"] = field.default_factory()
        if field.metadata.get("help"):
            entry["help"] = field.metadata["help"]
        out.append(entry)
    return out


def check(cls) -> List[str]:
    """What is wrong with a declared options class itself, whatever a config file gives it (for
    ``admission-host plugins --check``): not a dataclass, annotations that do not resolve, an
    option of a type no config file can hold, a default its own type refuses."""
    try:
        fields = _fields(cls)
    except OptionsError as exc:
        return [str(exc)]
    except Exception as exc:  # get_type_hints: a name the annotations use is not defined
        return [f"the options' annotations do not resolve: {exc!r}"]
    problems = []
    for field, key, tp in fields:
        unsupported = _unsupported(tp)
        if unsupported is not None:
            problems.append(f"option {key}: {unsupported}")
            continue
        try:
            default = (field.default if field.default is not dataclasses.MISSING else
                       field.default_factory() if field.default_factory is not dataclasses.MISSING else
                       dataclasses.MISSING)
        except Exception as exc:
            problems.append(f"option {key}: its default_factory failed: {exc!r}")
            continue
        if default is not dataclasses.MISSING and _type_problem(default, tp, key):
            problems.append(f"option {key}: its default {default!r} is not {_article(_type_name(tp))}")
    return problems


# What yaml.safe_load makes of a document: the types an option can be checked against.
_YAML_SCALARS = (str, int, float, bool, NoneType, datetime.date, datetime.datetime, bytes)


def _unsupported(tp) -> Optional[str]:
    """Why a config file's values can never be of type ``tp`` (then parse refuses every value), or None."""
    if tp is Any or tp is object or tp in _YAML_SCALARS:
        return None
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Union:
        return next((u for u in map(_unsupported, args) if u is not None), None)
    if origin in (list, tuple, typing.Sequence) or tp in (list, tuple):
        return next((u for u in map(_unsupported, args[:1]) if u is not None), None)
    if origin in (dict, typing.Mapping) or tp is dict:
        return next((u for u in map(_unsupported, args[1:2]) if u is not None), None)
    return (f"{_spelled(tp)} cannot be given in a config file (YAML gives strings, numbers, booleans, null, "
            f"lists and maps)")


def _spelled(tp) -> str:
    return tp.__name__ if isinstance(tp, type) else repr(tp).replace("typing.", "")


def _type_name(tp) -> str:
    if tp is Any:
        return "any"
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Union:
        return " or ".join(_type_name(a) for a in args if a is not NoneType) + (
            " or null" if NoneType in args else "")
    if origin in (list, tuple, typing.Sequence) or tp in (list, tuple):
        return f"list of {_type_name(args[0])}" if args else "list"
    if origin in (dict, typing.Mapping) or tp is dict:
        return f"map of {_type_name(args[1])}" if args else "map"
    return {str: "string", int: "integer", float: "number", bool: "boolean"}.get(tp, getattr(tp, "__name__", str(tp)))


def _type_problem(value: Any, tp, where: str) -> Optional[str]:
    """Why ``value`` (from YAML) does not fit ``tp``, or None."""
    if tp is Any:
        return None
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Union:
        if any(_type_problem(value, a, where) is None for a in args):
            return None
        others = [a for a in args if a is not NoneType]
        if len(others) == 1:  # Optional[X]: say what is wrong inside X
            return _type_problem(value, others[0], where)
    elif origin in (list, tuple, typing.Sequence) or tp in (list, tuple):
        if isinstance(value, list):
            inner = args[0] if args else Any
            return next((p for i, v in enumerate(value) if (p := _type_problem(v, inner, f"{where}[{i}]"))), None)
    elif origin in (dict, typing.Mapping) or tp is dict:
        if isinstance(value, dict):
            inner = args[1] if len(args) == 2 else Any
            return next((p for k, v in value.items() if (p := _type_problem(v, inner, f"{where}.{k}"))), None)
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return None
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return None
    elif tp is NoneType:
        if value is None:
            return None
    elif isinstance(tp, type) and isinstance(value, tp):
        return None
    return f"option {where} must be {_article(_type_name(tp))}, got {value!r}"


def _article(name: str) -> str:
    return ("an " if name[:1] in "aeiou" else "a ") + name
