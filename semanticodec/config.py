"""Model configurations: the official sizes per token rate, composed from each part's config."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

from semanticodec.acoustic import AcousticConfig
from semanticodec.bitstream.header import bits_for
from semanticodec.conditioning import PE_DIM
from semanticodec.constants import TOKEN_RATES, stack_factor
from semanticodec.diffusion import ScheduleConfig
from semanticodec.nn.hifigan import HiFiGANConfig
from semanticodec.nn.unet import UNetConfig
from semanticodec.nn.vae import VAEConfig
from semanticodec.nn.vit import AudioMAEConfig
from semanticodec.nn.vocoder import VocoderConfig, vocoder_config_from_dict
from semanticodec.nn.vocos import VocosConfig
from semanticodec.serialise import added_field, config_dict

_LSTM_LAYERS = {100: 4, 50: 3, 25: 2}

SMALL_NAME = "semanticodec-small-tr100-v4096"
"""Name of the small configuration (the default model trained by this project)."""


@dataclass(frozen=True)
class ModelConfig:
    """Everything that defines a SemantiCodec model.

    ``token_rate`` counts both streams (100 tok/s = 50 semantic + 50 acoustic ids per
    second); ``name`` identifies the weights (it enters the model fingerprint written into
    ``.scdc`` headers, so tokens of one model are refused by another).
    ``semantic_only_decoding``: the decoder was trained with the acoustic stream dropped alone
    (``acoustic_drop_prob`` of the LDM stage), so it can decode the semantic ids by themselves
    (the half-bitrate layer of a ``.scdc`` stream); official models were not.
    """

    token_rate: int
    semantic_vocab_size: int
    name: str
    audiomae: AudioMAEConfig = field(default_factory=AudioMAEConfig)
    acoustic: AcousticConfig = field(default_factory=AcousticConfig)
    unet: UNetConfig = field(default_factory=UNetConfig)
    vae: VAEConfig = field(default_factory=VAEConfig)
    vocoder: VocoderConfig = field(default_factory=HiFiGANConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    pe_dim: int = PE_DIM
    semantic_only_decoding: bool = added_field(False)

    def __post_init__(self) -> None:
        if not isinstance(self.semantic_only_decoding, bool):
            raise ValueError(f"semantic_only_decoding must be a bool, got {self.semantic_only_decoding!r}")
        if self.token_rate not in TOKEN_RATES:
            raise ValueError(f"token_rate must be one of {TOKEN_RATES}, got {self.token_rate}")
        if self.semantic_vocab_size < 2:
            raise ValueError(f"semantic_vocab_size must be >= 2, got {self.semantic_vocab_size}")
        dim = self.audiomae.embed_dim * self.stack_factor
        if self.acoustic.feature_dim != dim:
            raise ValueError(f"acoustic.feature_dim {self.acoustic.feature_dim} != stacked AudioMAE width {dim}")
        if self.unet.context_dim != 2 * dim + self.pe_dim:
            raise ValueError(f"unet.context_dim {self.unet.context_dim} != 2 x {dim} + {self.pe_dim}")

    @property
    def stack_factor(self) -> int:
        """AudioMAE patches per token: 1, 2 or 4 for 100, 50, 25 tok/s."""
        return stack_factor(self.token_rate)

    @property
    def feature_dim(self) -> int:
        """Width D of a semantic or acoustic vector."""
        return self.acoustic.feature_dim

    @property
    def tokens_per_window(self) -> int:
        """Token pairs per 10.24 s window (512 / stack factor)."""
        return self.audiomae.num_frames // self.audiomae.patch_size * (self.audiomae.num_mels // self.audiomae.patch_size) // self.stack_factor

    @property
    def acoustic_vocab_size(self) -> int:
        return self.acoustic.codebook_size

    @property
    def bitrate(self) -> float:
        """Nominal bitrate in bit/s: token_rate / 2 x (bits per semantic + acoustic id)."""
        return self.token_rate / 2 * (bits_for(self.semantic_vocab_size) + bits_for(self.acoustic_vocab_size))

    @property
    def model_id(self) -> bytes:
        """16-byte fingerprint of the model (name and sizes), stored in ``.scdc`` headers."""
        return hashlib.sha256(self.to_json().encode()).digest()[:16]

    def to_json(self) -> str:
        """The configuration as canonical JSON (for safetensors metadata); fields added after
        the first release are left out while they hold their default (see :mod:`semanticodec.serialise`)."""
        return json.dumps(config_dict(self), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> ModelConfig:
        data = json.loads(text)
        parts = {
            "audiomae": AudioMAEConfig,
            "acoustic": AcousticConfig,
            "unet": UNetConfig,
            "vae": VAEConfig,
            "schedule": ScheduleConfig,
        }
        kwargs = {}
        for key, value in data.items():
            if key in parts:
                value = parts[key](**{k: tuple(map(_tuplify, v)) if isinstance(v, list) else v for k, v in value.items()})
            elif key == "vocoder":
                value = vocoder_config_from_dict(value)
            kwargs[key] = value
        return cls(**kwargs)

    @classmethod
    def official(cls, token_rate: int = 100, semantic_vocab_size: int = 16384) -> ModelConfig:
        """The configuration of the released SemantiCodec checkpoints."""
        if token_rate not in TOKEN_RATES:
            raise ValueError(f"token_rate must be one of {TOKEN_RATES}, got {token_rate}")
        dim = 768 * stack_factor(token_rate)
        return cls(
            token_rate=token_rate,
            semantic_vocab_size=semantic_vocab_size,
            name=f"official-semanticodec-tr{token_rate}-v{semantic_vocab_size}",
            acoustic=AcousticConfig(feature_dim=dim, lstm_layers=_LSTM_LAYERS[token_rate]),
            unet=UNetConfig(context_dim=2 * dim + PE_DIM),
        )

    @classmethod
    def small(cls, name: str = SMALL_NAME) -> ModelConfig:
        """The small model (100 tok/s, 4096 + 4096 ids, 1.2 kbps) that trains on 2 CPU cores.

        Same architecture and 10.24 s windows as the official model; narrower parts:
        AudioMAE 128 wide x 6 blocks, a 1-layer LSTM, a UNet of 3 levels (32-64-128 channels)
        with attention at the coarsest level and the time-aligned context path (8 tokens per
        0.16 s column), a 32-channel VAE and a Vocos vocoder (8 ConvNeXt blocks 384 wide at 100
        frames/s, inverse-STFT head), which beats a HiFi-GAN of the same CPU budget by far
        (``benchmarks/RESULTS.md``, "Stage report").
        """
        dim = 128
        return cls(
            token_rate=100,
            semantic_vocab_size=4096,
            name=name,
            audiomae=AudioMAEConfig(embed_dim=dim, depth=6, num_heads=4, contextual_depth=3),
            acoustic=AcousticConfig(feature_dim=dim, lstm_layers=1, codebook_size=4096),
            unet=UNetConfig(
                model_channels=32, channel_mult=(1, 2, 4), num_res_blocks=1, attention_resolutions=(4,),
                num_head_channels=32, context_dim=2 * dim + PE_DIM, norm_groups=16,
                aligned_context_groups=8,
            ),
            vae=VAEConfig(channels=32, channel_mult=(1, 2, 4), num_res_blocks=1, num_groups=16),
            vocoder=VocosConfig(dim=384, intermediate_dim=1152, num_layers=8),
        )


def _tuplify(value):
    return tuple(value) if isinstance(value, list) else value
