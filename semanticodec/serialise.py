"""The JSON form of configuration dataclasses, stable across releases.

A model's id is a hash of its configuration's JSON (:attr:`~semanticodec.config.ModelConfig.model_id`,
written into every ``.scdc`` header), so the JSON of an existing configuration must never
change. A field added to a configuration dataclass after the first release is declared with
:func:`added_field`; :func:`config_dict` leaves it out while it holds its default, so a
configuration that does not use it keeps its JSON and its id, and JSON without it reads back
as the default. :func:`config_from_dict` reads such JSON back into the dataclass, checking
every value against the field's type.
"""

from __future__ import annotations

import types
from collections.abc import Mapping
from dataclasses import MISSING, field, fields, is_dataclass
from typing import Any, Union, get_args, get_origin, get_type_hints

ADDED = "added_after_release"
"""Field metadata key of :func:`added_field`."""


def added_field(default: Any) -> Any:
    """A dataclass field (immutable ``default``) that :func:`config_dict` omits while it equals its default."""
    return field(default=default, metadata={ADDED: True})


def config_dict(config: Any) -> dict[str, Any]:
    """``config`` (a dataclass) as JSON-ready values: nested dataclasses as dicts, tuples as
    lists, fields declared with :func:`added_field` left out while they hold their default."""
    if not is_dataclass(config) or isinstance(config, type):
        raise TypeError(f"not a dataclass instance: {type(config).__name__}")
    out = {}
    for f in fields(config):
        value = getattr(config, f.name)
        if f.metadata.get(ADDED) and value == f.default:
            continue
        out[f.name] = _plain(value)
    return out


def _plain(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return config_dict(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def config_from_dict(cls: type, data: Any, where: str = "") -> Any:
    """The dataclass ``cls`` from its :func:`config_dict` form (JSON values): lists become
    tuples, dicts nested dataclasses; fields left out take their defaults. Raises ValueError
    naming the field (dotted from ``where``) for an unknown field, a missing required one or a
    value not of the field's type (an int is accepted for a float)."""
    name = where or cls.__name__
    if not isinstance(data, Mapping):
        raise ValueError(f"{name}: expected a JSON object, got {data!r}")
    hints = get_type_hints(cls)
    known = [f.name for f in fields(cls) if f.init]
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ValueError(f"{name}: no field {unknown[0]!r} (fields: {', '.join(known)})")
    kwargs = {key: _typed(hints[key], value, f"{where}.{key}" if where else key) for key, value in data.items()}
    missing = [
        f.name for f in fields(cls)
        if f.init and f.name not in kwargs and f.default is MISSING and f.default_factory is MISSING
    ]
    if missing:
        raise ValueError(f"{name}: missing field {missing[0]!r}")
    return cls(**kwargs)


def _typed(hint: Any, value: Any, where: str) -> Any:
    """``value`` (JSON) as an instance of the type ``hint``, or ValueError."""
    origin, args = get_origin(hint), get_args(hint)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for option in (a for a in args if a is not type(None)):
            try:
                return _typed(option, value, where)
            except ValueError:
                pass
    elif isinstance(hint, type) and is_dataclass(hint):
        return config_from_dict(hint, value, where)
    elif origin is tuple and isinstance(value, (list, tuple)):
        items = args[:1] * len(value) if len(args) == 2 and args[1] is Ellipsis else args
        if len(items) == len(value):
            return tuple(_typed(item, v, f"{where}[{i}]") for i, (item, v) in enumerate(zip(items, value)))
    elif hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    elif hint is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    elif hint in (bool, str) and isinstance(value, hint):
        return value
    elif hint is Any:
        return value
    kind = getattr(hint, "__name__", None) if origin is None else None
    raise ValueError(f"{where}: expected {kind or hint}, got {value!r}")
