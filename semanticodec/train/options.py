"""What the training commands share (``semanticodec train <stage>``, ``train pack``, ``train
burst``): the model-config and preset options, the data sampler, and loading the weights and
the codebook that a stage starts from."""

from __future__ import annotations

import argparse
from pathlib import Path

CONFIGS = ("small", "official")
"""The named model configurations of ``--config``."""


def model_config(spec: str):
    """``small``, ``official`` (100 tok/s, 16384) or a JSON file of a ModelConfig."""
    from semanticodec.config import ModelConfig

    if spec == "small":
        return ModelConfig.small()
    if spec == "official":
        return ModelConfig.official()
    path = Path(spec)
    if not path.is_file():
        raise ValueError(f"--config must be one of {CONFIGS} or a ModelConfig JSON file, got {spec!r}")
    try:
        return ModelConfig.from_json(path.read_text())
    except (ValueError, TypeError, KeyError) as err:
        raise ValueError(f"{path}: not a ModelConfig JSON file ({err})") from None


def domain_weights(text: str) -> dict[str, float]:
    """``--domain-weights``: ``speech=0.5,music=0.3`` -> {domain: weight}."""
    try:
        pairs = [item.split("=") for item in text.split(",")]
        return {name.strip(): float(value) for name, value in pairs}
    except ValueError:
        raise argparse.ArgumentTypeError(f"domain weights must look like speech=0.5,music=0.3,sound=0.2, got {text!r}") from None


def setting(text: str) -> tuple[str, object]:
    """``--set FIELD=VALUE`` -> (field, value parsed as JSON)."""
    from semanticodec.train.runconfig import parse_setting

    try:
        return parse_setting(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def add_preset_options(parser: argparse.ArgumentParser, preset_help: str) -> None:
    """``--config``, ``--preset`` (described by ``preset_help``) and ``--set``: what
    :func:`resolve` reads."""
    parser.add_argument(
        "--config", default=None,
        help="model sizes: small, official, or a ModelConfig JSON file (default: the --preset file's, else small)",
    )
    parser.add_argument("--preset", default=None, help=preset_help)
    parser.add_argument(
        "--set", dest="settings", metavar="FIELD=VALUE", type=setting, action="append", default=[],
        help="set any preset field, VALUE in JSON (e.g. --set betas=[0.9,0.95] --set discriminator.width=0.5); repeatable",
    )


SHORTCUTS = {
    "steps": "steps", "batch_size": "batch_size", "crop_seconds": "crop_seconds", "lr": "learning_rate", "seed": "seed",
    "decay_steps": "decay_steps", "windows": "windows", "niter": "niter",
}
"""Options that set one preset field each (option dest -> field); ``--set`` sets any field."""


def resolve(stage: str, module, args: argparse.Namespace):
    """The run's model config and preset: ``--preset`` (name or file), then the shortcut
    options and ``--set`` (a field given twice is an error); ``--config`` wins over a preset
    file's model config."""
    from semanticodec.train.runconfig import override, read_preset

    name = args.preset or (args.config if args.config in CONFIGS else "small")
    preset, recorded = read_preset(name, stage, module.PRESETS)
    settings = {field: getattr(args, dest) for dest, field in SHORTCUTS.items() if getattr(args, dest, None) is not None}
    for key, value in args.settings:
        if key in settings:
            raise ValueError(f"the training-config field {key} is set twice")
        settings[key] = value
    config = model_config(args.config) if args.config else recorded or model_config("small")
    return config, override(preset, settings)


def crop_sampler(args: argparse.Namespace, crop_samples: int, batch_size: int, seed: int, rank: int):
    """Batches of ``batch_size`` crops of ``crop_samples`` samples (16 kHz) from ``--data``,
    weighted by ``--domain-weights``, for process ``rank``."""
    from semanticodec.train.data import CropSampler, read_clips

    return CropSampler(read_clips(args.data), crop_samples, batch_size, seed=seed, rank=rank, domain_weights=args.domain_weights)


def load_weights(path: Path, what: str, prefix: str | None = None):
    """Weights of ``path``; with ``prefix`` (e.g. ``"vae"``) its ``prefix.*`` entries alone, from
    exported stage weights, a model file, or the training ``checkpoint.pt`` of the stage whose
    module ``prefix`` holds them."""
    import torch

    from semanticodec.weights import load_state_dict

    if not path.is_file():
        raise ValueError(f"{what} weights not found: {path}")
    if prefix is None:
        return load_state_dict(path)
    if path.suffix == ".pt":
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        if isinstance(state, dict) and isinstance(state.get("modules"), dict) and prefix in state["modules"]:
            return {f"{prefix}.{k}": v for k, v in state["modules"][prefix].items()}
    state = {k: v for k, v in load_state_dict(path).items() if k.startswith(f"{prefix}.")}
    if not state:
        raise ValueError(f"{path}: holds no {what} weights ({prefix}.*)")
    return state


def codebook_tensor(path: Path):
    """The semantic codebook ``[V, D]`` of a ``.npy`` file or of a model ``.safetensors``."""
    import torch

    from semanticodec.kmeans.codebook import load_codebook

    if path.suffix == ".safetensors" and path.is_file():
        return load_weights(path, "semantic codebook", "semantic")["semantic.codebook"].float()
    return torch.from_numpy(load_codebook(path))
