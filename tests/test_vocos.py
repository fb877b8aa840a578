"""Vocos vocoder: inverse STFT exactness and frame alignment with the decoder mel, shapes,
configuration errors, and the vocoder choice in model configurations."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch

from semanticodec.config import ModelConfig
from semanticodec.features import MEL_HOP, mel64
from semanticodec.model import SemantiCodecModel
from semanticodec.nn.hifigan import HiFiGAN, HiFiGANConfig
from semanticodec.nn.vocoder import VocoderConfig, build_vocoder, vocoder_config_from_dict
from semanticodec.nn.vocos import InverseSTFT, Vocos, VocosConfig
from tiny import tiny_config

SMALL = VocosConfig(dim=32, intermediate_dim=64, num_layers=2)


@pytest.mark.parametrize("n_fft", [640, 1024, 320])
def test_inverse_stft_inverts_its_analysis_exactly(n_fft: int) -> None:
    torch.manual_seed(0)
    istft = InverseSTFT(n_fft, MEL_HOP)
    audio = torch.randn(2, 40 * MEL_HOP, dtype=torch.float64)
    spec = istft.analysis(audio)
    assert spec.shape == (2, n_fft // 2 + 1, 40)
    torch.testing.assert_close(istft(spec), audio, rtol=0, atol=1e-12)


def test_synthesis_frames_are_centred_like_the_decoder_mel() -> None:
    """Frame i of mel64 (audioldm_train framing) and of the inverse STFT are centred on
    sample 160 i + 80: an impulse there is real with alternating sign in frame i."""
    istft = InverseSTFT(640, MEL_HOP)
    audio = torch.zeros(1, 30 * MEL_HOP, dtype=torch.float64)
    audio[0, 10 * MEL_HOP + MEL_HOP // 2] = 1.0
    frame = istft.analysis(audio)[0, :, 10]
    signs = torch.tensor([(-1.0) ** k for k in range(321)], dtype=torch.float64)
    torch.testing.assert_close(frame, istft.window[320].double() * signs + 0j, rtol=0, atol=1e-12)
    # mel64 peaks at the same frame for the same impulse
    mel = mel64(audio.float(), framing="audioldm_train")[0]
    energy = mel.exp().sum(0)
    assert int(energy.argmax()) == 10 and energy[10] > energy[9] and energy[10] > energy[11]


def test_vocos_shapes_and_errors() -> None:
    torch.manual_seed(0)
    vocos = Vocos(SMALL)
    mel = torch.randn(3, 64, 17)
    out = vocos(mel)
    assert out.shape == (3, 1, 17 * MEL_HOP) == (3, 1, SMALL.sample_count(17))
    with pytest.warns(DeprecationWarning, match=r"VocosConfig.num_samples is deprecated, use sample_count"):
        assert SMALL.num_samples(17) == 17 * MEL_HOP
    assert torch.allclose(vocos.mel_to_waveform(mel.transpose(1, 2)[:, None]), out)
    # each output sample depends on nearby frames only (no global op)
    later = mel.clone()
    later[:, :, 16] += 1.0
    changed = (vocos(later) - out).abs()[0, 0] > 0
    assert not changed[: 4 * MEL_HOP].any() and changed[-MEL_HOP:].any()  # 9 frames each side, +2 of ISTFT overlap
    with pytest.raises(ValueError, match="shape"):
        vocos(torch.randn(3, 80, 17))
    with pytest.raises(ValueError, match="floating-point"):
        vocos(torch.zeros(3, 64, 17, dtype=torch.int64))
    with pytest.raises(ValueError, match="shape"):
        vocos.mel_to_waveform(mel)


@torch.inference_mode()
@pytest.mark.parametrize(
    "config, slack",
    [
        (HiFiGANConfig(num_mels=8, upsample_initial_channel=16, upsample_rates=(3, 2), upsample_kernel_sizes=(8, 4),
                       resblock_kernel_sizes=(3, 5), resblock_dilation_sizes=((1, 3), (1, 2))), 6),
        (HiFiGANConfig(upsample_initial_channel=32), 6),
        (SMALL, 1),
        (VocosConfig(dim=32, intermediate_dim=64, num_layers=3, kernel_size=5), 2),
    ],
    ids=["hifigan-small", "hifigan-official-kernels", "vocos-small", "vocos-3-layers"],
)
def test_leading_samples_skip_the_frames_they_do_not_need(config: VocoderConfig, slack: int) -> None:
    """frames_for bounds the dependency cone of either vocoder: the first ``n`` samples computed
    from the first ``frames_for(n)`` frames equal those of the whole mel, and (float64, so that
    every contribution shows; the float32 spectrum of Vocos hides the weakest paths) the last
    ``slack`` frames before the bound still change them."""
    torch.manual_seed(1)
    model = build_vocoder(config).eval().double()
    mel = 0.1 * torch.randn(1, 1, 120, config.num_mels, dtype=torch.float64)
    full = model.mel_to_waveform(mel)
    for n in (1, 500, 2 * config.hop_length + 7, 40 * config.hop_length):
        frames = config.frames_for(n)
        part = model.mel_to_waveform(mel, n)
        assert part.shape == full.shape and not part[..., n:].any()
        torch.testing.assert_close(part[..., :n], full[..., :n], rtol=0, atol=1e-12)
        changed = mel.clone()
        changed[:, :, frames - slack : frames] += 1.0
        assert not torch.equal(model.mel_to_waveform(changed)[..., :n], full[..., :n])
    assert torch.equal(model.mel_to_waveform(mel, config.sample_count(120)), full)
    assert HiFiGANConfig().frames_for(163840) == 1047  # a full window needs all its 1024 frames


@pytest.mark.parametrize(
    "changes, message",
    [({"kernel_size": 4}, "kernel_size"), ({"n_fft": 200}, "n_fft"), ({"dim": 0}, "dim"), ({"n_fft": 641}, "n_fft")],
)
def test_vocos_config_errors(changes: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        replace(SMALL, **changes)


def test_model_configs_choose_and_serialise_their_vocoder() -> None:
    config = replace(tiny_config(), vocoder=SMALL)
    again = ModelConfig.from_json(config.to_json())
    assert again == config and isinstance(again.vocoder, VocosConfig)
    assert isinstance(SemantiCodecModel(again).vocoder, Vocos)
    hifigan = ModelConfig.from_json(tiny_config().to_json())
    assert isinstance(hifigan.vocoder, HiFiGANConfig) and isinstance(build_vocoder(hifigan.vocoder), HiFiGAN)
    assert config.model_id != tiny_config().model_id
    with pytest.raises(ValueError, match="unknown VocosConfig fields"):
        vocoder_config_from_dict({**json.loads(config.to_json())["vocoder"], "width": 3})
    with pytest.raises(TypeError, match="not a vocoder"):
        build_vocoder(SMALL.__dict__)


def test_official_model_ids_are_stable() -> None:
    """The ids written into .scdc headers of official models (a change would orphan files)."""
    ids = {rate: ModelConfig.official(rate).model_id.hex() for rate in (100, 50, 25)}
    assert ids == {
        100: "6e25d0940ea3cad2d7c996b8c5cbf846",
        50: "6ef0f7da1667a595550aea8f254a4a0f",
        25: "2723e9a97167743905d0536819447ba8",
    }
