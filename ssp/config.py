"""Typed config tree: dataclasses with help text, loaded from YAML, overridden by `key.sub=value`.

Each room owns one dataclass (e.g. `ModelConfig` here, `SchedulerConfig` in cluster/scheduler.py);
`load_config` fills any of them from YAML + CLI overrides and checks every key and type,
naming the full key (`rl.lr`) on any error.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A config key is unknown or has the wrong type. The message names the full key."""


def cfg(default: Any = dataclasses.MISSING, help: str = "", *, ge: float | None = None,  # noqa: A002
        gt: float | None = None, le: float | None = None, lt: float | None = None, **kw: Any) -> Any:
    """A dataclass field with help text and an optional range (checked at load; a bounded float must also be
    finite). Mutable defaults are wrapped in a factory."""
    if isinstance(default, list | dict) or dataclasses.is_dataclass(default):
        value = default
        kw["default_factory"] = lambda: _copy(value)
    elif default is not dataclasses.MISSING:
        kw["default"] = default
    bounds = {k: v for k, v in (("ge", ge), ("gt", gt), ("le", le), ("lt", lt)) if v is not None}
    return dataclasses.field(metadata={"help": help, "range": bounds}, **kw)


_OPS = {"ge": (">=", lambda a, b: a >= b), "gt": (">", lambda a, b: a > b),
        "le": ("<=", lambda a, b: a <= b), "lt": ("<", lambda a, b: a < b)}


def show(value: Any, limit: int = 80) -> str:
    """repr() cut to `limit` characters, for error messages."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} chars)"


def check_range(key: str, value: Any, bounds: dict[str, float]) -> None:
    """Raise ConfigError naming `key` when `value` is outside `bounds` (or a bounded float is not finite)."""
    if bounds and isinstance(value, list):  # a list's bounds hold for each of its numbers
        for i, v in enumerate(value):
            check_range(f"{key}[{i}]", v, bounds)
        return
    if not bounds or not isinstance(value, int | float) or isinstance(value, bool):
        return
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"config key '{key}': must be a finite number, got {value!r}")
    for op, bound in bounds.items():
        sym, ok = _OPS[op]
        if not ok(value, bound):
            rule = " and ".join(f"{_OPS[o][0]} {b}" for o, b in bounds.items())
            raise ConfigError(f"config key '{key}': must be {rule}, got {value!r}")


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
        raise ConfigError(f"config key '{key}': expected {_tname(typ)}, got {show(value)}")
    if typing.get_origin(typ) is typing.Literal:
        if value not in args:
            raise ConfigError(f"config key '{key}': must be one of {list(args)}, got {show(value)}")
        return value
    if dataclasses.is_dataclass(typ):
        if isinstance(value, typ):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"config key '{key}': expected a mapping for {typ.__name__}, got {show(value)}")
        return _build(typ, value, key)
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"config key '{key}': expected a list, got {show(value)}")
        (inner,) = args or (Any,)
        return [_check(inner, v, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"config key '{key}': expected a mapping, got {show(value)}")
        kt, vt = args or (Any, Any)
        return {_check(kt, k, key): _check(vt, v, f"{key}.{k}") for k, v in value.items()}
    if typ is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if typ is float and isinstance(value, str):  # YAML 1.1 reads "1e-3" as a string
        try:
            return float(value)
        except ValueError:
            raise ConfigError(f"config key '{key}': expected float, got {show(value)}") from None
    if typ is bool and not isinstance(value, bool):
        raise ConfigError(f"config key '{key}': expected bool, got {show(value)}")
    if typ is int and isinstance(value, bool):
        raise ConfigError(f"config key '{key}': expected int, got {show(value)}")
    if isinstance(typ, type) and not isinstance(value, typ):
        raise ConfigError(f"config key '{key}': expected {typ.__name__}, got {type(value).__name__} {show(value)}")
    return value


def _tname(typ: Any) -> str:
    return getattr(typ, "__name__", None) or str(typ).replace("typing.", "")


def _build(cls: type[T], data: dict[str, Any], prefix: str = "") -> T:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for k in data:
        if k not in names:
            full = f"{prefix}.{k}" if prefix else k
            raise ConfigError(f"unknown config key {show(full)} (known under '{prefix or '<root>'}': {sorted(names)})")
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name in data:
            full = f"{prefix}.{f.name}" if prefix else f.name
            kwargs[f.name] = _check(hints[f.name], data[f.name], full)
            check_range(full, kwargs[f.name], f.metadata.get("range") or {})
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


class _NoAliasLoader(yaml.SafeLoader):
    """safe_load without anchors/aliases: a few hundred bytes of nested aliases expand to gigabytes."""

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        seen: set = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                hash(key)
            except TypeError:
                continue  # an unhashable key: SafeLoader's own error names it
            if key in seen:
                raise ConfigError(f"line {key_node.start_mark.line + 1}: key {show(key)} is given twice (YAML would "
                                  "keep only the last)")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark
            raise ConfigError(f"line {mark.line + 1}: YAML aliases/anchors are not allowed in config files")
        return super().compose_node(parent, index)


def yaml_load(text: str, where: str) -> Any:
    """Parse YAML (no aliases); errors are ConfigErrors naming `where` and the line."""
    try:
        return yaml.load(text, Loader=_NoAliasLoader)  # noqa: S506 (a SafeLoader subclass)
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{where}:{line} not valid YAML: {getattr(e, 'problem', None) or e}") from None


def parse_override(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise ConfigError(f"config override {show(text)} must look like key.sub=value")
    key, raw = text.split("=", 1)
    return key.strip(), yaml_load(raw, f"config override {show(text)}") if raw != "" else ""


def _wants_text(cls: type, dotted: str) -> bool:
    """Whether the config key `dotted` of `cls` is a string field (str, or str | None)."""
    typ: Any = cls
    for part in dotted.split("."):
        if not dataclasses.is_dataclass(typ):
            return False
        hints = typing.get_type_hints(typ)
        if part not in hints:
            return False
        typ = hints[part]
    args = [a for a in typing.get_args(typ) if a is not type(None)] if typing.get_origin(typ) in (
        typing.Union, types.UnionType) else [typ]
    return args == [str]


def load_config(cls: type[T], path: str | Path | None = None, overrides: list[str] | None = None,
                section: str | None = None) -> T:
    """Build `cls` from defaults, then the YAML file at `path`, then `key.sub=value` overrides. With `section`
    (e.g. "verifier"), `cls` is that section of the whole tree: a whole-tree file gives its `section:` mapping, and
    overrides may be written `section.key=value` or `key=value`."""
    tree: dict[str, Any] = {}
    if path is not None:
        from ssp.io import DataError, regular_file

        try:
            p = regular_file(path, "a YAML config file")
        except DataError as e:
            raise ConfigError(str(e).replace("no such file", "no such config file")) from None
        try:
            text = p.read_text()
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"{path}: cannot read: {e}") from None
        loaded = yaml_load(text, str(path)) or {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: top level must be a mapping")
        tree = loaded
        if section and isinstance(tree.get(section), dict):  # a whole config tree: its section
            tree = tree[section]
    for o in overrides or []:
        k, v = parse_override(o)
        if section and k.startswith(section + "."):
            k = k[len(section) + 1:]
        raw = o.split("=", 1)[1]
        if _wants_text(cls, k) and not isinstance(v, str) and isinstance(v, int | float | bool) and raw.strip():
            v = raw  # a path or name that YAML reads as a number or a boolean (run_dir=2024, model.path=007)
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


def int_at_least(low: int):
    """argparse type: an integer >= `low`."""
    from argparse import ArgumentTypeError

    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if v < low:
            raise ArgumentTypeError(f"must be >= {low}, got {v}")
        return v
    return parse


positive_int = int_at_least(1)
