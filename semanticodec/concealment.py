"""Decoding a token window whose pairs are partly missing (lost or corrupt packets of a stream).

``concealment`` says how the missing rows are decoded:

- ``"padding"``: their rows are marked as padding (-1) in the decoder context, the marker the
  model was trained with for rows without audio (the gap decodes as near silence);
- ``"inpaint"`` (default): the window is first sampled as with ``"padding"``; then the latent
  frames of the gap are sampled again by diffusion inpainting — the frames around the gap are
  held at the first pass's latent (noised to each step's level), the gap's context rows are
  left unknown (the classifier-free-guidance null rows) and the model fills the gap to fit
  the audio around it. Outside the gap the output equals ``"padding"``; a damaged window costs
  two samplings. The inpainting pass is stochastic DDIM (η = 1 and at least the codec's step
  count when the codec samples with a deterministic solver): replacement needs fresh noise at
  every step to blend the gap into the known frames.

A window without missing rows is decoded exactly as :meth:`SemantiCodec.decode` decodes it.

Concealment costs diffusion, so what a stream can make a decoder conceal is bounded
(:func:`check_concealment_budget`, :data:`CONCEALED_TAIL_PACKETS`): a header alone cannot buy hours.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import torch
from torch import Tensor

from semanticodec.constants import CONCEALMENTS, PAIRS_PER_COLUMN
from semanticodec.diffusion import DDIMSampler, ddim_steps_at_least
from semanticodec.nn.attention import cached_context
from semanticodec.samplers import sample_latent

if TYPE_CHECKING:
    from semanticodec.codec import SemantiCodec

Concealment = Literal["inpaint", "padding"]

MAX_CONCEALED_SECONDS = 60.0
"""Concealment budget of a stream: it may lack at most this many seconds of tokens more than it holds."""
CONCEALED_TAIL_PACKETS = 2
"""Packets concealed at most after the last one received when the final packet is missing (the
header's sample count may claim more; the rest is not synthesised)."""


def check_concealment_budget(missing: int, end: int, pairs_per_second: float) -> None:
    """ValueError when ``missing`` of the pairs ``[0, end)`` exceed those received by more than
    :data:`MAX_CONCEALED_SECONDS` of tokens (``pairs_per_second`` pairs a second)."""
    received = end - missing
    if missing > received + MAX_CONCEALED_SECONDS * pairs_per_second:
        raise ValueError(
            f"{missing / pairs_per_second:.1f} s of tokens are missing but only {received / pairs_per_second:.1f} s "
            f"received: more than {MAX_CONCEALED_SECONDS:g} s beyond that is not concealed"
        )


def decode_window(
    codec: SemantiCodec, tokens: Tensor, valid: int, missing: Tensor, generator: torch.Generator, concealment: Concealment = "inpaint",
    semantic_only: bool = False,
) -> Tensor:
    """Waveform ``[163872]`` of one decode window.

    Args:
        codec: the codec (model, device, sampler, steps, guidance scale, η, precision).
        tokens: ``[N, 2]`` int64 pairs of the window (rows ``>= valid`` are padding).
        valid: pairs of the window that hold audio.
        missing: ``[N]`` bool, pairs that were lost (their ids are ignored).
        generator: the window's noise generator (start noise and DDIM noise).
        concealment: ``"inpaint"`` or ``"padding"`` (see the module docstring).
        semantic_only: decode the semantic ids alone (see :meth:`SemantiCodecModel.context`).
    """
    if concealment not in CONCEALMENTS:
        raise ValueError(f"concealment must be one of {CONCEALMENTS}, got {concealment!r}")
    model, device = codec.model, codec.device
    tok = tokens[None].to(device)
    valid_len = torch.tensor([valid], device=device)
    with codec.decoder_precision(), cached_context(model.unet):
        if not bool(missing.any()):
            return model.decode_windows(
                tok, valid_len, codec.steps, codec.guidance_scale, codec.eta, generators=[generator],
                sampler=codec.sampler, valid_only=True, semantic_only=semantic_only, waveform_dtype=codec.waveform_dtype,
            )[0]
        cond, uncond = model.context(tok, valid_len, semantic_only)
        width = 2 * codec.config.feature_dim
        rows = missing.to(device)[None, :, None]
        padded = cond.clone()
        padded[..., :width] = cond[..., :width].masked_fill(rows, -1.0)
        shape = model.latent_shape(1)
        x_T = torch.randn((1, *shape[1:]), generator=generator, device=generator.device).to(device)
        latent = sample_latent(
            codec.sampler, model.schedule, model.unet, x_T, padded, uncond, codec.steps, codec.guidance_scale, codec.eta,
            [generator],
        )
        if concealment == "inpaint":
            unknown = cond.clone()
            unknown[..., :width] = cond[..., :width].masked_fill(rows, 0.0)
            known = ~latent_gap(missing, latent.shape[2], codec.config.token_rate).to(device)[None, None, :, None]
            steps, eta = codec.steps, codec.eta
            if codec.sampler != "ddim":  # replacement needs DDIM's fresh noise to blend the gap in
                steps, eta = ddim_steps_at_least(codec.steps), 1.0
            latent = DDIMSampler(model.schedule).sample(
                model.unet, x_T, unknown, uncond, steps, eta=eta, guidance_scale=codec.guidance_scale,
                generator=[generator], known=(latent, known),
            )
        return model.latent_to_waveform(latent, valid_len, codec.waveform_dtype)[0]


def latent_gap(missing: Tensor, frames: int, token_rate: int) -> Tensor:
    """``[frames]`` bool: latent frames whose token column holds a missing pair (``missing`` ``[N]``)."""
    columns = missing.reshape(-1, PAIRS_PER_COLUMN[token_rate]).any(dim=1)
    return columns.repeat_interleave(frames // len(columns))
