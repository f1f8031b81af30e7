"""Typed configs from plain data: dataclasses filled from YAML dicts, with overrides.

Unknown keys, wrong types and bad values are errors that name the full key (``generation.levels``).
Configs are data: YAML is read with ``safe_load``, nothing is evaluated.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_origin

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A config value is wrong; the message names the key. ``problems``: one message per problem when
    several were found at once (:func:`from_dict` reports every section's), else just this one."""

    def __init__(self, message: str = "", problems: list[str] | None = None):
        super().__init__(message)
        self.problems = list(problems) if problems else [message]


def several(problems: list[str]) -> ConfigError:
    """One error for every problem found: the message alone, or ``N problems:`` and one line each."""
    if len(problems) == 1:
        return ConfigError(problems[0])
    return ConfigError(f"{len(problems)} problems:\n  - " + "\n  - ".join(problems), problems)


_YAML12_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")  # 1e-4, 3E5, -2.5e-3

def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str) -> Any:
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(f"{key}: {value!r} is not a valid {_type_name(tp)}")
    if origin is Literal:
        choices = get_args(tp)
        if value not in choices:
            raise ConfigError(f"{key}: {value!r} is not one of {', '.join(map(repr, choices))}")
        return value
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return from_dict(tp, value, prefix=key)
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        (item_tp, *_) = get_args(tp) or (Any,)
        items = [_coerce(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
        return items if origin is list else tuple(items)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        ktp, vtp = get_args(tp) or (Any, Any)
        out: dict[Any, Any] = {}
        for k, v in value.items():
            if v is None and isinstance(k, str) and ":" in k and ktp is not str:
                a, _, b = k.partition(":")  # YAML reads {0.5:50} (no space after the colon) as the one key "0.5:50"
                raise ConfigError(f"{key}: YAML reads {{{k}}} as the single key {k!r} with no value: put a space "
                                  f"after the colon, {{{a.strip()}: {b.strip()}}}")
            ck = _coerce(k, ktp, f"{key}")
            if ck in out:  # 0.3 and "0.3" (or 0.30) are one key once read: the later would silently win
                raise ConfigError(f"{key}: {k!r} names the key {ck!r} a second time")
            out[ck] = _coerce(v, vtp, f"{key}.{k}")
        return out
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str) and _YAML12_FLOAT.fullmatch(value.strip()):
            value = float(value)  # PyYAML (YAML 1.1) reads 1e-4 (no dot) as a string; YAML 1.2 reads a number
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        if not math.isfinite(float(value)):
            raise ConfigError(f"{key}: {value!r} is not a finite number")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{key}: unsupported config type {_type_name(tp)}")


def from_dict(cls: type[T], data: dict[str, Any] | None, prefix: str = "") -> T:
    """Build dataclass ``cls`` from ``data``; errors name the dotted key."""
    data = dict(data or {})
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        where = f"{prefix}." if prefix else ""
        raise ConfigError(
            f"unknown config key {where}{unknown[0]!s} (known keys{' in ' + prefix if prefix else ''}: "
            f"{', '.join(sorted(fields))})"
        )
    kwargs, problems = {}, []
    for name, value in data.items():  # every key's (and section's) problem, not only the first one's
        key = f"{prefix}.{name}" if prefix else name
        try:
            kwargs[name] = _coerce(value, hints[name], key)
        except ConfigError as e:
            problems += e.problems
    if problems:
        raise several(problems) from None
    try:
        obj = cls(**kwargs)
    except ConfigError as e:
        msg = str(e)
        raise ConfigError(f"{prefix}.{msg}" if prefix and not msg.startswith(prefix) else msg) from None
    return obj


def unknown_keys(cls: type, data: dict[str, Any] | None, prefix: str = "") -> list[tuple[str, list[str]]]:
    """Every key of ``data`` that ``cls`` (a config dataclass, nested sections included) does not
    have, with the keys its section does have, in file order (pure): so one run reports every typo."""
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    hints = typing.get_type_hints(cls)

    def section(tp: Any) -> type | None:  # the dataclass a value of type tp holds (Optional unwrapped)
        if dataclasses.is_dataclass(tp):
            return tp
        if get_origin(tp) in (typing.Union, types.UnionType):
            found = [a for a in get_args(tp) if dataclasses.is_dataclass(a)]
            return found[0] if len(found) == 1 else None
        return None

    out = []
    for name, value in (data or {}).items():
        key = f"{prefix}.{name}" if prefix else name
        if name not in fields:
            out.append((key, sorted(fields)))
            continue
        tp = hints.get(name)
        if (sub := section(tp)) is not None and isinstance(value, dict):
            out += unknown_keys(sub, value, key)
        elif get_origin(tp) in (list, tuple) and isinstance(value, list | tuple):
            item = section(next(iter(get_args(tp)), None))
            for i, v in enumerate(value):
                if item is not None and isinstance(v, dict):
                    out += unknown_keys(item, v, f"{key}[{i}]")
    return out


def to_dict(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, list | tuple):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def parse_override(text: str) -> tuple[list[str], Any]:
    """``a.b.c=value`` -> (["a", "b", "c"], value parsed as YAML)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like key.sub=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"override {text!r} has an empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as e:
        raise ConfigError(f"override {key}: cannot parse value {raw!r}: {e}") from None
    return key.split("."), value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    data = _deepcopy(data)
    for text in overrides:
        path, value = parse_override(text)
        if any(p.isdigit() for p in path[1:-1]) and path[-1].isdigit():  # a.b.0.3=20: a number split at its dot
            raise ConfigError(f"override {text!r}: a numeric key cannot be written with dots; set the whole mapping, "
                              f"e.g. {'.'.join(p for p in path if not p.isdigit())}={{{'.'.join(p for p in path if p.isdigit())}: ...}}")
        node = data
        for part in path[:-1]:
            nxt = node.setdefault(part, {})
            if not isinstance(nxt, dict):
                raise ConfigError(f"override {text!r}: {part} is not a section")
            node = nxt
        node[path[-1]] = value
    return data


def _deepcopy(d: Any) -> Any:
    if isinstance(d, dict):
        return {k: _deepcopy(v) for k, v in d.items()}
    if isinstance(d, list):
        return [_deepcopy(v) for v in d]
    return d


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections")
    return data


def config_changes(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[tuple[str, Any, Any]]:
    """Pure: the dotted keys whose values differ between two config dicts, as (key, old, new), in
    ``new``'s order then keys only ``old`` has; a key missing on one side has ``None`` there."""
    out: list[tuple[str, Any, Any]] = []
    for key in list(new) + [k for k in old if k not in new]:
        a, b, name = old.get(key), new.get(key), f"{prefix}{key}"
        if isinstance(a, dict) and isinstance(b, dict):
            out += config_changes(a, b, f"{name}.")
        elif a != b:
            out.append((name, a, b))
    return out


def check(cond: bool, key: str, message: str) -> None:
    """Raise ConfigError naming ``key`` unless ``cond``; used in ``__post_init__`` validators."""
    if not cond:
        raise ConfigError(f"{key}: {message}")
