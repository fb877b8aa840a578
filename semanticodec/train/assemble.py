"""Join the stage outputs into one inference file (the format :func:`~semanticodec.weights.load_safetensors` reads)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import replace

from semanticodec.config import ModelConfig
from semanticodec.kmeans.codebook import load_codebook
from semanticodec.model import SemantiCodecModel
from semanticodec.official import CheckpointError
from semanticodec.weights import load_state_dict, save_safetensors

REQUIRED = ("audiomae.", "acoustic.", "unet.", "schedule.", "vae.decoder.", "vae.post_quant_conv.", "vocoder.")
"""Key prefixes the stage files must cover between them."""


def assemble(
    model_config: ModelConfig,
    stage_files: Sequence[str | os.PathLike],
    codebook: str | os.PathLike,
    out: str | os.PathLike,
    dtype: str = "float16",
    overwrite: bool = False,
) -> SemantiCodecModel:
    """Merge the ``*.safetensors`` written by the stages (mae, vae, vocoder, ldm) and the
    semantic ``codebook`` ``.npy`` into ``out``; the latent scale the LDM stage measured
    becomes ``config.schedule.scale_factor``. Returns the assembled model."""
    state = {}
    for path in stage_files:
        part = load_state_dict(path)
        clash = sorted(set(part) & set(state))
        if clash:
            raise CheckpointError(f"{path}: keys also given by another stage file, e.g. {clash[:3]}")
        state.update(part)
    state = {k: v for k, v in state.items() if not k.startswith(("vae.encoder.", "vae.quant_conv."))}
    missing = [p for p in REQUIRED if not any(k.startswith(p) for k in state)]
    if missing:
        raise CheckpointError(f"the stage files give no {missing} weights: pass the outputs of every stage")
    scale = float(state["schedule.scale_factor"].reshape(()))
    config = replace(model_config, schedule=replace(model_config.schedule, scale_factor=scale))
    model = SemantiCodecModel(config, load_codebook(codebook))
    model.load_weights(state)
    save_safetensors(model, out, dtype=dtype, overwrite=overwrite)
    return model
