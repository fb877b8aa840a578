"""HiFi-GAN vocoder: official key layout, parity with the reference, lengths, weight norm, errors."""

from __future__ import annotations

import json

import pytest
import torch

from benchmarks.fill import fill_module
from parity import assert_parity, reference, shared_path
from semanticodec.nn.hifigan import HiFiGAN, HiFiGANConfig

PREFIX = "first_stage_model.vocoder."
SMALL = HiFiGANConfig(
    num_mels=8,
    upsample_initial_channel=16,
    upsample_rates=(3, 2),
    upsample_kernel_sizes=(8, 4),
    resblock_kernel_sizes=(3, 5),
    resblock_dilation_sizes=((1, 3), (1, 2)),
)


@pytest.fixture(scope="module")
def vocoder() -> HiFiGAN:
    """Full-size vocoder with the reference fill weights."""
    model = HiFiGAN().eval()
    fill_module(model, PREFIX)
    return model


def test_state_dict_matches_official_schema() -> None:
    schema = json.loads(shared_path("reference", "schema_tr100.json").read_text())
    official = {
        key[len(PREFIX) :]: tuple(shape) for key, shape, _ in schema["decoder"]["entries"] if key.startswith(PREFIX)
    }
    ours = {k: tuple(v.shape) for k, v in HiFiGAN().state_dict().items()}
    assert ours == official
    assert sum(p.numel() for p in HiFiGAN().parameters()) == 55_264_897


def test_output_length() -> None:
    config = HiFiGANConfig()
    assert config.hop_length == 160
    assert [config.sample_count(n) for n in (1, 7, 1024)] == [192, 1152, 163872]
    with pytest.warns(DeprecationWarning, match=r"HiFiGANConfig.num_samples is deprecated, use sample_count"):
        assert config.num_samples(7) == 1152


@torch.inference_mode()
def test_parity_ddim0(vocoder: HiFiGAN) -> None:
    ref = reference("tr100_decode")
    mel = torch.from_numpy(ref["ddim0_vae_mel"])
    waveform = vocoder(mel[:, 0].permute(0, 2, 1))
    assert waveform.shape == (1, 1, 163872)
    assert_parity(waveform, ref["ddim0_waveform"], "hifigan ddim0", tol=1e-4)


@torch.inference_mode()
def test_parity_two_windows_in_one_batch(vocoder: HiFiGAN) -> None:
    ref = reference("tr100_decode")
    waveform = vocoder.mel_to_waveform(torch.from_numpy(ref["full_window_vae_mel"][:, 0]))
    expected = ref["full_window_waveform"][:, 0]
    for window in range(2):
        assert_parity(waveform[window], expected[window], f"hifigan full window {window} (batch 2)", tol=1e-4)


@torch.inference_mode()
def test_small_model_shapes_layouts_and_batch_independence() -> None:
    torch.manual_seed(0)
    model = HiFiGAN(SMALL).eval()
    mel = torch.randn(3, 10, 8)
    waveform = model.mel_to_waveform(mel[:, None])
    assert waveform.shape == (3, 1, SMALL.sample_count(10)) == (3, 1, 62)
    assert waveform.abs().max() <= 1.0
    torch.testing.assert_close(model(mel.transpose(1, 2)), waveform)
    torch.testing.assert_close(model(mel[1:2].transpose(1, 2)), waveform[1:2], rtol=1e-5, atol=1e-6)


def test_weight_norm_round_trip_keeps_plain_keys() -> None:
    torch.manual_seed(0)
    model = HiFiGAN(SMALL)
    keys = list(model.state_dict())
    mel = torch.randn(2, 8, 6)
    before = model(mel).detach()
    model.apply_weight_norm()
    assert "conv_pre.parametrizations.weight.original0" in model.state_dict()
    assert "ups.1.parametrizations.weight.original1" in model.state_dict()
    torch.testing.assert_close(model(mel), before, rtol=1e-5, atol=1e-6)
    with pytest.raises(RuntimeError, match="already applied"):
        model.apply_weight_norm()
    with torch.no_grad():
        model.conv_post.parametrizations.weight.original0.mul_(2.0)
    trained = model(mel).detach()
    assert not torch.allclose(trained, before)
    model.remove_weight_norm()
    assert sorted(model.state_dict()) == sorted(keys)
    torch.testing.assert_close(model(mel), trained, rtol=1e-5, atol=1e-6)
    with pytest.raises(RuntimeError, match="not applied"):
        model.remove_weight_norm()


@pytest.mark.parametrize(
    ("call", "shape", "dtype", "message"),
    [
        ("forward", (1, 7, 10), torch.float32, r"shape \[B, 8, frames\]"),
        ("forward", (8, 10), torch.float32, r"shape \[B, 8, frames\]"),
        ("forward", (1, 8, 0), torch.float32, "frames >= 1"),
        ("forward", (1, 8, 10), torch.int64, "floating-point"),
        ("mel_to_waveform", (1, 10, 8), torch.float32, r"shape \[B, 1, frames, 8\]"),
        ("mel_to_waveform", (1, 2, 10, 8), torch.float32, r"shape \[B, 1, frames, 8\]"),
    ],
)
def test_bad_input_raises(call: str, shape: tuple[int, ...], dtype: torch.dtype, message: str) -> None:
    model = HiFiGAN(SMALL)
    with pytest.raises(ValueError, match=message):
        getattr(model, call)(torch.zeros(shape, dtype=dtype))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_mels": 0}, "num_mels"),
        ({"upsample_rates": (5, 4)}, "equal length"),
        ({"upsample_kernel_sizes": (16, 16, 8, 4, 1)}, "must be >= rate"),
        ({"upsample_initial_channel": 1000}, "divisible"),
        ({"resblock_kernel_sizes": (3, 8, 11)}, "odd"),
        ({"resblock_dilation_sizes": ((1, 3, 5),)}, "equal length"),
        ({"resblock_dilation_sizes": ((1, 3, 5), (), (1,))}, "positive"),
    ],
)
def test_bad_config_raises(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        HiFiGANConfig(**kwargs)
