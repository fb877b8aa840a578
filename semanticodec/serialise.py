"""The JSON form of configuration dataclasses, stable across releases.

A model's id is a hash of its configuration's JSON (:attr:`~semanticodec.config.ModelConfig.model_id`,
written into every ``.scdc`` header), so the JSON of an existing configuration must never
change. A field added to a configuration dataclass after the first release is declared with
:func:`added_field`; :func:`config_dict` leaves it out while it holds its default, so a
configuration that does not use it keeps its JSON and its id, and JSON without it reads back
as the default.
"""

from __future__ import annotations

from dataclasses import field, fields, is_dataclass
from typing import Any

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
