"""A training run's configuration: what ``OUT/run.json`` holds, where presets come from, and
the check that a resumed run continues the run it resumes.

``run.json`` (written at the start of every ``semanticodec train`` run) is a JSON object::

    {"stage": "vae",
     "model_config": {...},   # ModelConfig, as in weight files
     "train_config": {...},   # every field of the stage's preset, after the overrides
     "inputs": {"data": "/abs/manifest.json", "domain_weights": null, "init": null, ...}}

A preset (``--preset``) is a name of the stage's ``PRESETS``, or a file: such a ``run.json``
(or any JSON object with a ``train_config``), a JSON object of preset fields alone (written by
hand; fields left out take the dataclass defaults), or the exported ``.safetensors`` of a
stage (its ``train_config`` metadata). Overrides (``FIELD=VALUE``, VALUE in JSON; dotted
fields for nested configs, e.g. ``discriminator.width``) apply to every field.
"""

from __future__ import annotations

import ast
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from semanticodec.atomic import atomic_write
from semanticodec.config import ModelConfig
from semanticodec.serialise import config_dict, config_from_dict

RUN_FILE = "run.json"
"""The run's configuration file in its output folder."""
RESUMABLE_CHANGES = ("train_config.steps", "train_config.log_every", "train_config.checkpoint_every")
"""Fields a resumed run may change: how long it runs and how often it logs and saves."""


def run_document(stage: str, model_config: ModelConfig, train_config: Any, inputs: Mapping[str, Any]) -> dict[str, Any]:
    """The content of ``run.json``; ``train_config`` is the stage's preset dataclass."""
    return {
        "stage": stage,
        "model_config": config_dict(model_config),
        "train_config": config_dict(train_config),
        "inputs": dict(inputs),
    }


def train_config_json(train_config: Any) -> str:
    """``train_config`` (a preset dataclass) as the JSON string of exported weights' metadata."""
    return json.dumps(config_dict(train_config), separators=(",", ":"))


def exported_train_config(metadata: Mapping[str, str]) -> dict[str, Any] | None:
    """The ``train_config`` of exported stage weights' safetensors ``metadata`` as a dict: JSON,
    or the Python literal that files written before JSON hold (read with ``ast.literal_eval``,
    no code runs); None when there is none."""
    text = metadata.get("train_config")
    if text is None:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            raise ValueError(f"train_config metadata is neither JSON nor a literal: {text[:80]!r}") from None
    if not isinstance(value, dict):
        raise ValueError(f"train_config metadata is not an object: {text[:80]!r}")
    return value


def read_preset(spec: str, stage: str, presets: Mapping[str, Any]) -> tuple[Any, ModelConfig | None]:
    """The preset named or stored by ``spec`` (see the module docstring) for ``stage``, and the
    model config the file records (None for a name or a file of preset fields alone)."""
    if spec in presets:
        return presets[spec], None
    path = Path(spec)
    if not path.is_file():
        raise ValueError(f"--preset must be one of {sorted(presets)} or a preset file, got {spec!r}")
    cls = type(next(iter(presets.values())))
    if path.suffix == ".safetensors":
        from semanticodec.weights import SafetensorsReader

        metadata = SafetensorsReader(path).metadata
        document = {"stage": metadata.get("stage"), "train_config": exported_train_config(metadata)}
        if document["train_config"] is None:
            raise ValueError(f"{path}: holds no train_config (not weights exported by a training stage)")
        if "model_config" in metadata:
            document["model_config"] = json.loads(metadata["model_config"])
    else:
        try:
            document = json.loads(path.read_text())
        except (ValueError, UnicodeDecodeError) as err:
            raise ValueError(f"{path}: not a JSON preset file ({err})") from None
        if not isinstance(document, dict):
            raise ValueError(f"{path}: not a JSON object")
        if "train_config" not in document:
            document = {"train_config": document}
    if document.get("stage", stage) != stage:
        raise ValueError(f"{path}: a preset of the {document['stage']} stage, not of {stage}")
    try:
        preset = config_from_dict(cls, document["train_config"])
        model = document.get("model_config")
        return preset, None if model is None else ModelConfig.from_json(json.dumps(model))
    except (ValueError, TypeError) as err:
        raise ValueError(f"{path}: {err}") from None


def override(preset: Any, settings: Mapping[str, Any]) -> Any:
    """``preset`` with the fields ``settings`` names (dotted into nested configs) set to their
    JSON values; ValueError for an unknown field or a value of the wrong type."""
    data = config_dict(preset)
    for key, value in settings.items():
        node = data
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if not isinstance(node, dict) or leaf not in node:
            raise ValueError(f"no training-config field {key!r} (fields: {', '.join(_flatten(data))})")
        node[leaf] = value
    return config_from_dict(type(preset), data)


def parse_setting(text: str) -> tuple[str, Any]:
    """``FIELD=VALUE`` -> ``(FIELD, VALUE)``, VALUE read as JSON (else kept as a string)."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"a setting must look like FIELD=VALUE (VALUE in JSON), got {text!r}")
    try:
        return key.strip(), json.loads(value)
    except ValueError:
        return key.strip(), value


def check_resume(out: Path, document: Mapping[str, Any]) -> None:
    """When ``out/run.json`` exists (a resumed run), check that it agrees with ``document``
    except for :data:`RESUMABLE_CHANGES`; ValueError naming what differs otherwise."""
    path = out / RUN_FILE
    if not path.is_file():
        return
    try:
        recorded = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not a run configuration ({err})") from None
    theirs, ours = _flatten(recorded), _flatten(json.loads(json.dumps(document)))
    changed = [k for k in sorted(set(theirs) | set(ours)) if theirs.get(k, _ABSENT) != ours.get(k, _ABSENT)]
    changed = [k for k in changed if k not in RESUMABLE_CHANGES]
    if changed:
        shown = "; ".join(f"{k} {_show(theirs.get(k, _ABSENT))} (run) vs {_show(ours.get(k, _ABSENT))} (now)" for k in changed[:4])
        more = f" and {len(changed) - 4} more" if len(changed) > 4 else ""
        raise ValueError(
            f"{path}: this run was started with other settings: {shown}{more} "
            "(resume with the run's settings, or use another output folder)"
        )


def write_run(out: Path, document: Mapping[str, Any]) -> None:
    """Record ``document`` in ``out/run.json`` (after :func:`check_resume`; replaces the file)."""
    out.mkdir(parents=True, exist_ok=True)
    with atomic_write(out / RUN_FILE, overwrite=True) as file:
        file.write((json.dumps(document, indent=2) + "\n").encode())


_ABSENT = object()


def _show(value: Any) -> str:
    return "(absent)" if value is _ABSENT else json.dumps(value)


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts as ``{"a.b": leaf}`` (lists are leaves)."""
    if not isinstance(value, dict):
        return {prefix: value}
    out: dict[str, Any] = {}
    for key, item in value.items():
        out.update(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
    return out


def input_path(path: str | os.PathLike | None) -> str | None:
    """An input file as ``run.json`` records it: absolute (None stays None)."""
    return None if path is None else str(Path(path).resolve())
