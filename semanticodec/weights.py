"""Loading and saving model weights: official checkpoints and this package's safetensors files.

A safetensors file written by :func:`save_safetensors` holds the model's own state dict
(``audiomae.*``, ``acoustic.*``, ``unet.*``, ``schedule.*``, ``vae.*``, ``vocoder.*``) plus
``semantic.codebook`` ``[V, D]``, and its configuration as JSON in the metadata. It holds
only what inference needs: no MAE decoder, VAE encoder, EMA copy or quantizer EMA state.
"""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path

import torch

from semanticodec.checkpoint import (
    OFFICIAL_VOCAB_SIZES,
    CheckpointError,
    find_official_root,
    load_codebook,
    load_state_dict,
    official_files,
)
from semanticodec.config import ModelConfig
from semanticodec.model import SemantiCodecModel

FORMAT_NAME = "semanticodec"
DEFAULT_MODEL = Path(__file__).with_name("data") / "default_model.safetensors"
"""The small model trained by this project and shipped in the package (see data/MODEL_CARD.md):
used when no official checkpoint is configured."""
CODEBOOK_KEY = "semantic.codebook"
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def load_official(root: str | os.PathLike, token_rate: int, semantic_vocab_size: int) -> SemantiCodecModel:
    """Build the official model of (token rate, vocabulary) from an official checkpoint folder."""
    files = official_files(root, token_rate, semantic_vocab_size)
    config = ModelConfig.official(token_rate, semantic_vocab_size)
    codebook = load_codebook(files.codebook)
    model = SemantiCodecModel(config, codebook)
    model.load_official(load_state_dict(files.encoder), load_state_dict(files.decoder))
    return model


def save_safetensors(
    model: SemantiCodecModel, path: str | os.PathLike, dtype: str = "float32", overwrite: bool = False
) -> None:
    """Write the inference weights, codebook and config of ``model`` to a safetensors file
    (atomically: a temporary file beside ``path`` is renamed when complete)."""
    from safetensors.torch import save_file

    from semanticodec.atomic import check_output

    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    state = {
        key: value.detach().to(DTYPES[dtype] if value.is_floating_point() else value.dtype).contiguous()
        for key, value in model.state_dict().items()
        if not key.startswith(("vae.encoder.", "vae.quant_conv."))
    }
    state[CODEBOOK_KEY] = model.semantic.codebook.detach().to(DTYPES[dtype]).contiguous()
    check_output(path, overwrite=overwrite)
    target = Path(path)
    temp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        save_file(state, str(temp), metadata={"format": FORMAT_NAME, "config": model.config.to_json(), "dtype": dtype})
        os.replace(temp, target)
    finally:
        temp.unlink(missing_ok=True)


def load_safetensors(path: str | os.PathLike) -> SemantiCodecModel:
    """A model from a file written by :func:`save_safetensors` (computed in float32)."""
    if not Path(path).is_file():
        raise CheckpointError(f"checkpoint file not found: {path}")
    config = _file_config(Path(path))
    _check_shapes(Path(path), config)
    state = load_state_dict(path)
    if CODEBOOK_KEY not in state:
        raise CheckpointError(f"{path}: missing key {CODEBOOK_KEY}")
    model = SemantiCodecModel(config, state.pop(CODEBOOK_KEY).float())
    try:
        model.load_weights(state)
    except CheckpointError as err:
        raise CheckpointError(f"{path}: {err}") from None
    return model


def default_model_config() -> ModelConfig | None:
    """Configuration of the bundled default model (None when the package has none)."""
    if not DEFAULT_MODEL.is_file():
        return None
    return _file_config(DEFAULT_MODEL)


def checkpoint_for(model_id: bytes) -> Path | None:
    """The bundled default model's file when ``model_id`` is its id (so that its tokens decode
    with it even where official checkpoints take precedence), else None."""
    default = default_model_config()
    return DEFAULT_MODEL if default is not None and model_id == default.model_id else None


def _file_config(path: Path) -> ModelConfig:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
    except (SafetensorError, OSError) as err:
        raise CheckpointError(f"{path}: not a readable safetensors file ({err})") from None
    if metadata.get("format") != FORMAT_NAME or "config" not in metadata:
        raise CheckpointError(f"{path}: not a semanticodec weights file (no semanticodec config in its metadata)")
    try:
        config = ModelConfig.from_json(metadata["config"])
        _check_sizes(config)
    except (ValueError, TypeError, AttributeError, KeyError) as err:
        raise CheckpointError(f"{path}: invalid model configuration in its metadata ({type(err).__name__}: {err})"[:300]) from None
    return config


MAX_CONFIG_INT = 1 << 20
"""Largest integer a weights file's configuration may hold (widths, vocabularies, steps)."""
MAX_CONFIG_REPEATS = 256
"""Largest layer count (``*depth``, ``*layers``, ``num_res_blocks``, ``num_heads``) or list length."""


def _check_sizes(config: object, where: str = "config") -> None:
    """ValueError for a configuration field beyond the bounds above or of a type no field has:
    a file cannot make the loader build a network of unbounded size (even on the meta device)."""
    for field in dataclasses.fields(config):
        value, name = getattr(config, field.name), f"{where}.{field.name}"
        if dataclasses.is_dataclass(value):
            _check_sizes(value, name)
        else:
            repeats = field.name.endswith(("depth", "layers", "num_res_blocks", "num_heads"))
            _check_value(value, name, MAX_CONFIG_REPEATS if repeats else MAX_CONFIG_INT)


def _check_value(value: object, name: str, bound: int) -> None:
    if isinstance(value, (tuple, list)):
        if len(value) > MAX_CONFIG_REPEATS:
            raise ValueError(f"{name} has {len(value)} entries (at most {MAX_CONFIG_REPEATS})")
        for item in value:
            _check_value(item, name, bound)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        if not -bound <= value <= bound:
            raise ValueError(f"{name} = {value} is out of range (at most {bound})")
    elif not isinstance(value, (str, bool)) and value is not None:
        raise ValueError(f"{name} must be a number or text, got {type(value).__name__}")


def _check_shapes(path: Path, config: ModelConfig) -> None:
    """CheckpointError unless the file's tensors have the shapes ``config`` gives them; the model
    is built on the meta device for this (nothing is allocated), the tensors are not read."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        shapes = {key: tuple(f.get_slice(key).get_shape()) for key in f.keys()}
    try:
        with torch.device("meta"):
            model = SemantiCodecModel(config, torch.empty(config.semantic_vocab_size, config.feature_dim))
    except Exception as err:  # any failure of the constructors on untrusted sizes
        raise CheckpointError(f"{path}: its configuration builds no model ({type(err).__name__}: {err})"[:300]) from None
    expected = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    expected[CODEBOOK_KEY] = (config.semantic_vocab_size, config.feature_dim)
    for key, shape in shapes.items():
        want = expected.get(key)
        if want is not None and shape != want and not (math.prod(shape) == math.prod(want) == 1):
            raise CheckpointError(f"{path}: {key} has shape {shape}, its configuration says {want}")


def _check_rate_vocab(model: SemantiCodecModel, token_rate: int, semantic_vocab_size: int | None, source: str) -> None:
    vocab = model.config.semantic_vocab_size if semantic_vocab_size is None else semantic_vocab_size
    if (model.config.token_rate, model.config.semantic_vocab_size) != (token_rate, vocab):
        raise CheckpointError(
            f"{source} holds a {model.config.token_rate} tok/s, vocabulary {model.config.semantic_vocab_size} "
            f"model, not the requested {token_rate} tok/s, vocabulary {vocab}"
        )


def load_model(
    token_rate: int = 100,
    semantic_vocab_size: int | None = None,
    checkpoint: str | os.PathLike | None = None,
) -> SemantiCodecModel:
    """The model to use.

    1. ``checkpoint``: a safetensors file or an official checkpoint folder;
    2. the official checkpoints found by :func:`~semanticodec.checkpoint.find_official_root`
       (``semantic_vocab_size=None``: 16384 if present, else any vocabulary present);
    3. the bundled default model (``semantic_vocab_size`` None or its vocabulary).
    """
    if checkpoint is not None and Path(checkpoint).suffix == ".safetensors":
        model = load_safetensors(checkpoint)
        _check_rate_vocab(model, token_rate, semantic_vocab_size, str(checkpoint))
        return model
    default = default_model_config()
    root = find_official_root(checkpoint)
    if root is None:
        if checkpoint is None and default is not None:
            if (token_rate, semantic_vocab_size) in ((default.token_rate, None), (default.token_rate, default.semantic_vocab_size)):
                return load_safetensors(DEFAULT_MODEL)
            raise CheckpointError(
                f"no official SemantiCodec checkpoint found for {token_rate} tok/s, vocabulary {semantic_vocab_size}; "
                f"the bundled default model is {default.token_rate} tok/s, vocabulary {default.semantic_vocab_size} "
                "(set SEMANTICODEC_CHECKPOINT or pass a checkpoint for the official models)"
            )
        raise CheckpointError(
            "no SemantiCodec weights found: pass a checkpoint (an official checkpoint folder or a .safetensors "
            "file made by `semanticodec convert`), or set SEMANTICODEC_CHECKPOINT, or place the official "
            "haoheliu/SemantiCodec files in the Hugging Face cache"
        )
    if semantic_vocab_size is None:
        for vocab in (16384, *OFFICIAL_VOCAB_SIZES):
            try:
                official_files(root, token_rate, vocab)
            except CheckpointError:
                continue
            semantic_vocab_size = vocab
            break
        else:
            raise CheckpointError(f"{root}: no complete official model for {token_rate} tok/s")
    return load_official(root, token_rate, semantic_vocab_size)
