"""Join the stage outputs into one inference file (the format :func:`~semanticodec.weights.load_safetensors` reads)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import replace

from semanticodec.bitstream.tables import TABLE_PREFIX
from semanticodec.config import ModelConfig
from semanticodec.kmeans.codebook import load_codebook
from semanticodec.model import SemantiCodecModel
from semanticodec.official import CheckpointError
from semanticodec.weights import CODEBOOK_KEY, load_state_dict, save_safetensors

REQUIRED = ("audiomae.", "acoustic.", "unet.", "schedule.", "vae.decoder.", "vae.post_quant_conv.", "vocoder.")
"""Key prefixes the stage files must cover between them."""


def assemble(
    model_config: ModelConfig,
    stage_files: Sequence[str | os.PathLike],
    codebook: str | os.PathLike | None,
    out: str | os.PathLike,
    dtype: str = "float16",
    overwrite: bool = False,
    base: str | os.PathLike | None = None,
) -> SemantiCodecModel:
    """Merge the ``*.safetensors`` written by the stages (mae, vae, vocoder, ldm; for the ldm
    and vocoder stages also the ``checkpoint.pt`` of a run still training) and the semantic ``codebook``
    ``.npy`` into ``out``; the latent scale the LDM stage measured
    becomes ``config.schedule.scale_factor``. Returns the assembled model.

    ``base``: an assembled model file (e.g. the bundled model) that gives every module no
    stage file gives (modules are the first component of the keys: ``audiomae``, ``acoustic``,
    ``unet``, ``schedule``, ``vae``, ``vocoder``), and the semantic codebook when ``codebook``
    is None; so one retrained stage replaces its module and keeps the rest. The base's entropy
    tables are left out: they belong to the base's model id (learn new ones with
    ``semanticodec learn-tables``)."""
    state = {}
    for path in stage_files:
        part = _stage_weights(path, model_config)
        clash = sorted(set(part) & set(state))
        if clash:
            raise CheckpointError(f"{path}: keys also given by another stage file, e.g. {clash[:3]}")
        state.update(part)
    semantic = None
    if base is not None:
        given = {key.split(".", 1)[0] for key in state}
        base_state = {k: v for k, v in load_state_dict(base).items() if not k.startswith(TABLE_PREFIX)}
        semantic = base_state.pop(CODEBOOK_KEY, None)
        state.update({k: v for k, v in base_state.items() if k.split(".", 1)[0] not in given})
    if codebook is not None:
        semantic = load_codebook(codebook)
    elif semantic is None:
        raise CheckpointError("no semantic codebook: pass --codebook, or a --base model that holds one")
    else:
        semantic = semantic.float().numpy()
    state = {k: v for k, v in state.items() if not k.startswith(("vae.encoder.", "vae.quant_conv."))}
    missing = [p for p in REQUIRED if not any(k.startswith(p) for k in state)]
    if missing:
        raise CheckpointError(f"the stage files give no {missing} weights: pass the outputs of every stage")
    scale = float(state["schedule.scale_factor"].reshape(()))
    config = replace(model_config, schedule=replace(model_config.schedule, scale_factor=scale))
    model = SemantiCodecModel(config, semantic)
    model.load_weights(state)
    save_safetensors(model, out, dtype=dtype, overwrite=overwrite)
    return model


def _stage_weights(path: str | os.PathLike, model_config: ModelConfig) -> dict:
    """A stage file's weights: exported ``.safetensors``, or the ``checkpoint.pt`` of an ldm run
    (its weight average) or of a vocoder run (its generator), as those stages export them."""
    if str(path).endswith(".pt"):
        import torch

        from semanticodec.train import ldm, vocoder

        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        weights = ldm.checkpoint_weights(state)
        if weights is None:
            weights = vocoder.checkpoint_weights(state, model_config.vocoder)
        if weights is None:
            raise CheckpointError(
                f"{path}: not the checkpoint.pt of an ldm or vocoder run (pass other stages' exported .safetensors)"
            )
        return weights
    return load_state_dict(path)
