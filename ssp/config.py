"""Typed config tree: dataclasses with help text, loaded from YAML, overridden by `key.sub=value`.

Each room owns one dataclass (e.g. `ModelConfig` here, `SchedulerConfig` in cluster/scheduler.py);
`load_config` fills any of them from YAML + CLI overrides and checks every key and type,
naming the full key (`rl.lr`) on any error.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A config key is unknown or has the wrong type. The message names the full key."""


def cfg(default: Any = dataclasses.MISSING, help: str = "", **kw: Any) -> Any:  # noqa: A002
    """A dataclass field with help text. Mutable defaults are wrapped in a factory."""
    if isinstance(default, list | dict) or dataclasses.is_dataclass(default):
        value = default
        kw["default_factory"] = lambda: _copy(value)
    elif default is not dataclasses.MISSING:
        kw["default"] = default
    return dataclasses.field(metadata={"help": help}, **kw)


def _copy(v: Any) -> Any:
    import copy

    return copy.deepcopy(v)


def _check(typ: Any, value: Any, key: str) -> Any:
    """Return `value` converted to `typ`, or raise ConfigError naming `key`."""
    origin = typing.get_origin(typ)
    args = typing.get_args(typ)
    if typ is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _check(a, value, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(f"config key '{key}': expected {_tname(typ)}, got {value!r}")
    if typing.get_origin(typ) is typing.Literal:
        if value not in args:
            raise ConfigError(f"config key '{key}': must be one of {list(args)}, got {value!r}")
        return value
    if dataclasses.is_dataclass(typ):
        if isinstance(value, typ):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"config key '{key}': expected a mapping for {typ.__name__}, got {value!r}")
        return _build(typ, value, key)
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"config key '{key}': expected a list, got {value!r}")
        (inner,) = args or (Any,)
        return [_check(inner, v, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"config key '{key}': expected a mapping, got {value!r}")
        kt, vt = args or (Any, Any)
        return {_check(kt, k, key): _check(vt, v, f"{key}.{k}") for k, v in value.items()}
    if typ is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if typ is float and isinstance(value, str):  # YAML 1.1 reads "1e-3" as a string
        try:
            return float(value)
        except ValueError:
            raise ConfigError(f"config key '{key}': expected float, got {value!r}") from None
    if typ is bool and not isinstance(value, bool):
        raise ConfigError(f"config key '{key}': expected bool, got {value!r}")
    if typ is int and isinstance(value, bool):
        raise ConfigError(f"config key '{key}': expected int, got {value!r}")
    if isinstance(typ, type) and not isinstance(value, typ):
        raise ConfigError(f"config key '{key}': expected {typ.__name__}, got {type(value).__name__} {value!r}")
    return value


def _tname(typ: Any) -> str:
    return getattr(typ, "__name__", None) or str(typ).replace("typing.", "")


def _build(cls: type[T], data: dict[str, Any], prefix: str = "") -> T:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for k in data:
        if k not in names:
            full = f"{prefix}.{k}" if prefix else k
            raise ConfigError(f"unknown config key '{full}' (known under '{prefix or '<root>'}': {sorted(names)})")
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name in data:
            full = f"{prefix}.{f.name}" if prefix else f.name
            kwargs[f.name] = _check(hints[f.name], data[f.name], full)
    return cls(**kwargs)


def to_dict(obj: Any) -> dict[str, Any]:
    return dataclasses.asdict(obj)


def _set_path(tree: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = tree
    for p in parts[:-1]:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ConfigError(f"config override '{dotted}': '{p}' is not a section")
    node[parts[-1]] = value


def parse_override(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise ConfigError(f"config override '{text}' must look like key.sub=value")
    key, raw = text.split("=", 1)
    return key.strip(), yaml.safe_load(raw) if raw != "" else ""


def load_config(cls: type[T], path: str | Path | None = None, overrides: list[str] | None = None) -> T:
    """Build `cls` from defaults, then the YAML file at `path`, then `key.sub=value` overrides."""
    tree: dict[str, Any] = {}
    if path is not None:
        try:
            loaded = yaml.safe_load(Path(path).read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not valid YAML: {e}") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: top level must be a mapping")
        tree = loaded
    for o in overrides or []:
        k, v = parse_override(o)
        _set_path(tree, k, v)
    try:
        return _build(cls, tree)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}" if path else str(e)) from None


def describe(cls: type, prefix: str = "") -> list[tuple[str, str, str]]:
    """(key, default, help) for every leaf of a config tree, for `ssp config --help`-style listings."""
    rows = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        key = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(hints[f.name]):
            rows += describe(hints[f.name], key + ".")
        else:
            default = f.default if f.default is not dataclasses.MISSING else (
                f.default_factory() if f.default_factory is not dataclasses.MISSING else "")
            rows.append((key, repr(default), f.metadata.get("help", "")))
    return rows
