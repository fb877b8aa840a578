"""A tiny model of the real architecture with random weights, for fast tests of the codec,
the corpus tokenizer and the command line (numerical parity is tested at full size)."""

from __future__ import annotations

import torch

from semanticodec.acoustic import AcousticConfig
from semanticodec.config import ModelConfig
from semanticodec.model import SemantiCodecModel
from semanticodec.nn.hifigan import HiFiGANConfig
from semanticodec.nn.unet import UNetConfig
from semanticodec.nn.vae import VAEConfig
from semanticodec.nn.vit import AudioMAEConfig


def tiny_config(token_rate: int = 100, vocab: int = 100) -> ModelConfig:
    """Configuration of the tiny model at ``token_rate`` with a semantic vocabulary of ``vocab``."""
    dim = 32 * {100: 1, 50: 2, 25: 4}[token_rate]
    return ModelConfig(
        token_rate=token_rate,
        semantic_vocab_size=vocab,
        name=f"tiny-test-tr{token_rate}",
        audiomae=AudioMAEConfig(embed_dim=32, depth=2, num_heads=2, contextual_depth=0),
        acoustic=AcousticConfig(feature_dim=dim, lstm_layers=1, codebook_size=64),
        unet=UNetConfig(
            model_channels=16, channel_mult=(1, 2, 2), attention_resolutions=(4,), num_head_channels=8,
            context_dim=2 * dim + 192, norm_groups=8,
        ),
        vae=VAEConfig(channels=16, num_res_blocks=1, num_groups=8),
        vocoder=HiFiGANConfig(upsample_initial_channel=64, resblock_kernel_sizes=(3,), resblock_dilation_sizes=((1,),)),
    )


def tiny_model(token_rate: int = 100, vocab: int = 100) -> SemantiCodecModel:
    """The tiny model with weights seeded by ``token_rate`` (same weights on every call).

    Parameters initialised to zero (the UNet's zero-initialised output projections) get small
    random values, so that the decoder output depends on its token context.
    """
    torch.manual_seed(token_rate)
    config = tiny_config(token_rate, vocab)
    model = SemantiCodecModel(config, torch.randn(config.semantic_vocab_size, config.feature_dim)).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            if not parameter.any():
                parameter.normal_(0.0, 0.05)
    return model
