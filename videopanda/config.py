"""Typed configuration: dataclass trees loaded from YAML, strict, with dotted overrides.

Every config in videopanda (model, data, train, eval) is a tree of dataclasses. This module holds the one
loader they all share:

* ``include:`` (a path or a list of paths, relative to the including file) pulls in a base file; the including
  file's keys win. An ablation is therefore a tiny YAML: ``include: ../model/tiny.yaml`` plus the keys it changes.
* Unknown keys are errors that name the dotted key and the file, so a typo never silently does nothing.
* Values are checked against the field types (``int``, ``float``, ``bool``, ``str``, ``Literal``, ``list``,
  ``dict``, ``X | None`` and nested dataclasses).
* ``key.sub=value`` overrides (values parsed as YAML scalars) are applied after the files are merged.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

logger = logging.getLogger(__name__)

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration file or override is invalid; the message names the key and the source."""


def _deep_merge(base: dict, top: Mapping) -> dict:
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def load_yaml(path: str | Path, _seen: tuple[Path, ...] = ()) -> dict:
    """Read a YAML mapping, resolving ``include:`` recursively (the including file wins)."""
    path = Path(path).resolve()
    if path in _seen:
        chain = " -> ".join(str(p) for p in (*_seen, path))
        raise ConfigError(f"{path}: include cycle ({chain})")
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from err
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping, got {type(data).__name__}")
    includes = data.pop("include", None) or []
    if isinstance(includes, str):
        includes = [includes]
    merged: dict = {}
    for inc in includes:
        merged = _deep_merge(merged, load_yaml(path.parent / inc, (*_seen, path)))
    return _deep_merge(merged, data)


def apply_overrides(data: dict, overrides: Iterable[str]) -> dict:
    """Apply ``a.b.c=value`` overrides to a nested dict; the value is parsed as a YAML scalar or flow list."""
    data = dict(data)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r}: expected key.sub=value")
        key, raw = item.split("=", 1)
        try:
            value = _override_value(raw)
        except yaml.YAMLError as err:
            raise ConfigError(f"override {item!r}: value is not valid YAML: {err}") from err
        parts = key.strip().split(".")
        node = data
        for part in parts[:-1]:
            child = node.get(part)
            child = dict(child) if isinstance(child, Mapping) else {}
            node[part] = child
            node = child
        node[parts[-1]] = value
    return data


def _override_value(raw: str) -> Any:
    """An override's value: YAML, except where YAML would cut or nest a plain path (``runs/trial #2``, ``/data/a: b``).

    A value in flow style or quotes (``[a, b]``, ``{k: v}``, ``'...'``) is always YAML.
    """
    if raw == "":
        return ""
    value = yaml.safe_load(raw)
    text = raw.strip()
    if not text.startswith(("[", "{", "'", '"')) and (" #" in raw or text.startswith("#") or isinstance(value, dict)):
        return raw
    return value


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


_FLOAT_RE = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def _coerce(value: Any, tp: Any, key: str, source: str) -> Any:
    """Check ``value`` against the annotation ``tp`` and convert where lossless (int -> float, list -> tuple)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key, source)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(f"{source}: {key}: {value!r} does not match {_type_name(tp)}")
    if origin is typing.Literal:
        if isinstance(value, bool):  # YAML 1.1 reads no/off/yes/on as booleans: back to the option spelled so
            value = next((a for a in args if isinstance(a, str) and yaml.safe_load(a) is value), value)
        if value not in args:
            raise ConfigError(f"{source}: {key}: {value!r} is not one of {list(args)}")
        return value
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(f"{source}: {key}: expected a mapping for {tp.__name__}, got {value!r}")
        return from_dict(tp, value, source=source, prefix=key + ".")
    if origin in (list, tuple) or tp in (list, tuple):
        if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
            raise ConfigError(f"{source}: {key}: expected a list, got {value!r}")
        item_tp = args[0] if args else Any
        items = [_coerce(v, item_tp, f"{key}[{i}]", source) for i, v in enumerate(value)]
        return tuple(items) if (origin is tuple or tp is tuple) else items
    if origin is dict or tp is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{source}: {key}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{source}: {key}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{source}: {key}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str) and _FLOAT_RE.fullmatch(value.strip()):
            return float(value)  # PyYAML (YAML 1.1) reads "3e-4" as a string; researchers write it anyway
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{source}: {key}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{source}: {key}: expected a string, got {value!r}")
        return value
    if isinstance(tp, type) and not isinstance(value, tp):
        raise ConfigError(f"{source}: {key}: expected {tp.__name__}, got {value!r}")
    return value


def from_dict(cls: type[T], data: Mapping, source: str = "<dict>", prefix: str = "") -> T:
    """Build dataclass ``cls`` from a mapping, rejecting unknown keys and mistyped values."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        known = ", ".join(sorted(fields))
        raise ConfigError(f"{source}: unknown key(s) {', '.join(prefix + k for k in unknown)} (known: {known})")
    kwargs = {name: _coerce(value, hints[name], prefix + name, source) for name, value in data.items()}
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{source}: {prefix.rstrip('.') or cls.__name__}: {err}") from err


def load_config(cls: type[T], path: str | Path | None = None, overrides: Iterable[str] = ()) -> T:
    """Load ``cls`` from a YAML file (with includes) and dotted overrides; ``path=None`` starts from defaults."""
    data = load_yaml(path) if path is not None else {}
    overrides = list(overrides)
    data = apply_overrides(data, overrides)
    source = str(path) if path is not None else "<defaults>"
    if overrides:
        source += " + overrides"
    return from_dict(cls, data, source=source)


def to_dict(cfg: Any) -> dict:
    """A plain, YAML-serialisable dict of a config tree (tuples become lists)."""

    def clean(v: Any) -> Any:
        if isinstance(v, tuple):
            return [clean(x) for x in v]
        if isinstance(v, list):
            return [clean(x) for x in v]
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        return v

    return clean(dataclasses.asdict(cfg))


def save_config(cfg: Any, path: str | Path) -> None:
    """Write the resolved config as YAML (the run folder keeps it next to the checkpoints)."""
    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
