"""Loading and saving model weights: official checkpoints and this package's safetensors files.

A safetensors file written by :func:`save_safetensors` holds the model's own state dict
(``audiomae.*``, ``acoustic.*``, ``unet.*``, ``schedule.*``, ``vae.*``, ``vocoder.*``) plus
``semantic.codebook`` ``[V, D]``, and its configuration as JSON in the metadata. It holds
only what inference needs: no MAE decoder, VAE encoder, EMA copy or quantizer EMA state.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from semanticodec.checkpoint import (
    OFFICIAL_VOCAB_SIZES,
    CheckpointError,
    find_official_root,
    load_codebook,
    official_files,
    open_state_dict,
    select,
)
from semanticodec.config import ModelConfig
from semanticodec.model import SemantiCodecModel
from semanticodec.samplers import OFFICIAL_SAMPLING

FORMAT_NAME = "semanticodec"
DEFAULT_MODEL = Path(__file__).with_name("data") / "default_model.safetensors"
"""The small model trained by this project and shipped in the package (see data/MODEL_CARD.md):
used when no official checkpoint is configured."""
BUNDLED_SAMPLING = ("dpmpp-2m", 3)
"""(sampler, steps) the bundled default model decodes with unless told otherwise: the cheapest
setting within 0.1 ViSQOL and 0.1 DNSMOS OVRL of 50-step DDIM in the quality-versus-steps table
of ``benchmarks/RESULTS.md`` (``python -m benchmarks.bench_samplers``; re-run it when the model
is retrained)."""
CODEBOOK_KEY = "semantic.codebook"
ENCODER_PARTS = ("audiomae.", "acoustic.")
"""State-dict prefixes of the parts that encoding needs."""
DECODER_PARTS = ("unet.", "schedule.", "vae.", "vocoder.")
"""State-dict prefixes of the parts that only decoding needs."""
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def load_official(
    root: str | os.PathLike, token_rate: int, semantic_vocab_size: int, with_decoder: bool = True
) -> SemantiCodecModel:
    """Build the official model of (token rate, vocabulary) from an official checkpoint folder
    (``with_decoder=False``: the encoding parts only; ``decoder.ckpt`` is not read). The
    memory-mapped checkpoint tensors become the model's weights (no copies)."""
    files = official_files(root, token_rate, semantic_vocab_size)
    config = ModelConfig.official(token_rate, semantic_vocab_size)
    codebook = load_codebook(files.codebook)
    model = SemantiCodecModel(config, codebook, with_decoder=with_decoder)
    decoder = open_state_dict(files.decoder) if with_decoder else None
    model.load_official(open_state_dict(files.encoder), decoder, take=True)
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
    if not model.with_decoder:
        raise ValueError("a model built without its decoder cannot be saved as a weights file")
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


def load_safetensors(path: str | os.PathLike, with_decoder: bool = True) -> SemantiCodecModel:
    """A model from a file written by :func:`save_safetensors` (computed in float32), read one
    tensor at a time (``with_decoder=False``: the encoding parts only)."""
    if not Path(path).is_file():
        raise CheckpointError(f"checkpoint file not found: {path}")
    config = _file_config(Path(path))
    state = open_state_dict(path)
    if CODEBOOK_KEY not in state:
        raise CheckpointError(f"{path}: missing key {CODEBOOK_KEY}")
    model = SemantiCodecModel(config, state[CODEBOOK_KEY].float(), with_decoder=with_decoder)
    parts = ENCODER_PARTS + (DECODER_PARTS if with_decoder else ())
    try:
        model.load_weights(select(state, parts), parts)
    except CheckpointError as err:
        raise CheckpointError(f"{path}: {err}") from None
    return model


def default_model_config() -> ModelConfig | None:
    """Configuration of the bundled default model (None when the package has none)."""
    if not DEFAULT_MODEL.is_file():
        return None
    return _file_config(DEFAULT_MODEL)


def default_sampling(config: ModelConfig, compat: str = "default") -> tuple[str, int]:
    """``(sampler, steps)`` of a model unless the user chooses: :data:`BUNDLED_SAMPLING` for
    the bundled default model, else (official checkpoints, ``compat="official"``) the
    official DDIM with 50 steps."""
    bundled = default_model_config()
    if compat == "default" and bundled is not None and config.model_id == bundled.model_id:
        return BUNDLED_SAMPLING
    return OFFICIAL_SAMPLING


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
    return ModelConfig.from_json(metadata["config"])


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
    with_decoder: bool = True,
) -> SemantiCodecModel:
    """The model to use.

    1. ``checkpoint``: a safetensors file or an official checkpoint folder;
    2. the official checkpoints found by :func:`~semanticodec.checkpoint.find_official_root`
       (``semantic_vocab_size=None``: 16384 if present, else any vocabulary present);
    3. the bundled default model (``semantic_vocab_size`` None or its vocabulary).

    ``with_decoder=False`` builds and reads the encoding parts only (for compress, tokenize
    and k-means features).
    """
    if checkpoint is not None and Path(checkpoint).suffix == ".safetensors":
        model = load_safetensors(checkpoint, with_decoder)
        _check_rate_vocab(model, token_rate, semantic_vocab_size, str(checkpoint))
        return model
    default = default_model_config()
    root = find_official_root(checkpoint)
    if root is None:
        if checkpoint is None and default is not None:
            if (token_rate, semantic_vocab_size) in ((default.token_rate, None), (default.token_rate, default.semantic_vocab_size)):
                return load_safetensors(DEFAULT_MODEL, with_decoder)
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
    return load_official(root, token_rate, semantic_vocab_size, with_decoder)
