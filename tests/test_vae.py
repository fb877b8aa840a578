"""Mel VAE (AudioLDM AutoencoderKL): official key layout, parity with the reference, shapes, errors."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from benchmarks.fill import fill_module
from parity import assert_parity, reference, shared_path
from semanticodec.nn.vae import AttnBlock, AutoencoderKL, VAEConfig

PREFIX = "first_stage_model."
SMALL = VAEConfig(channels=16, channel_mult=(1, 2), num_res_blocks=1, z_channels=4, embed_dim=4, num_groups=4)


def official_vae_entries() -> list[tuple[str, tuple[int, ...]]]:
    """(key without prefix, shape) of the official VAE entries, in state-dict order."""
    schema = json.loads(shared_path("reference", "schema_tr100.json").read_text())
    return [
        (key[len(PREFIX) :], tuple(shape))
        for key, shape, _ in schema["decoder"]["entries"]
        if key.startswith(PREFIX) and not key.startswith(PREFIX + "vocoder.")
    ]


@pytest.fixture(scope="module")
def vae() -> AutoencoderKL:
    """Full-size VAE with the reference fill weights."""
    model = AutoencoderKL().eval()
    fill_module(model, PREFIX)
    return model


@pytest.fixture(scope="module")
def scale_factor() -> float:
    with np.load(shared_path("reference", "kept_tr100.npz")) as kept:
        return float(kept["decoder/scale_factor"])


def test_state_dict_matches_official_schema() -> None:
    ours = [(k, tuple(v.shape)) for k, v in AutoencoderKL().state_dict().items()]
    assert ours == official_vae_entries()


def test_decoder_only_model_loads_official_layout(vae: AutoencoderKL) -> None:
    decoder_only = AutoencoderKL(with_encoder=False)
    expected = [(k, s) for k, s in official_vae_entries() if not k.startswith(("encoder.", "quant_conv."))]
    assert [(k, tuple(v.shape)) for k, v in decoder_only.state_dict().items()] == expected
    kept = {k: v for k, v in vae.state_dict().items() if not k.startswith(("encoder.", "quant_conv."))}
    decoder_only.load_state_dict(kept, strict=True)
    with pytest.raises(RuntimeError, match="with_encoder=False"):
        decoder_only.encode(torch.zeros(1, 1, 16, 16))


@torch.inference_mode()
def test_decode_parity_ddim0(vae: AutoencoderKL, scale_factor: float) -> None:
    ref = reference("tr100_decode")
    mel = vae.decode(torch.from_numpy(ref["ddim0_latent"]) / scale_factor)
    assert mel.shape == (1, 1, 1024, 64)
    assert_parity(mel, ref["ddim0_vae_mel"], "vae decode ddim0", tol=1e-4)


@torch.inference_mode()
def test_decode_parity_two_windows_in_one_batch(vae: AutoencoderKL, scale_factor: float) -> None:
    ref = reference("tr100_decode")
    latents = torch.from_numpy(ref["full_window_latent"][:, 0]) / scale_factor
    mel = vae.decode(latents)
    expected = ref["full_window_vae_mel"][:, 0]
    for window in range(2):
        assert_parity(mel[window], expected[window], f"vae decode full window {window} (batch 2)", tol=1e-4)


@torch.inference_mode()
def test_encode_parity(vae: AutoencoderKL) -> None:
    ref = reference("tr100_train")
    mean, logvar = vae.encode(torch.from_numpy(ref["train_vae_in"]))
    assert mean.shape == logvar.shape == (1, 8, 256, 16)
    assert_parity(mean, ref["train_vae_posterior_mean"], "vae posterior mean", tol=1e-4)
    assert_parity(logvar, ref["train_vae_posterior_logvar"], "vae posterior logvar", tol=1e-4)


def test_attention_is_single_head_over_all_positions() -> None:
    torch.manual_seed(0)
    block = AttnBlock(16, SMALL).eval()
    x = torch.randn(2, 16, 5, 3)
    h = block.norm(x)
    q, k, v = (conv(h).flatten(2) for conv in (block.q, block.k, block.v))
    weights = torch.softmax(torch.einsum("bci,bcj->bij", q, k) / math.sqrt(16), dim=-1)
    attended = torch.einsum("bij,bcj->bci", weights, v).reshape(x.shape)
    torch.testing.assert_close(block(x), x + block.proj_out(attended), rtol=1e-5, atol=1e-5)


def test_small_model_shapes_and_batch_independence() -> None:
    torch.manual_seed(0)
    model = AutoencoderKL(SMALL).eval()
    mel = torch.randn(3, 1, 12, 8)
    mean, logvar = model.encode(mel)
    assert mean.shape == logvar.shape == (3, 4, 6, 4)
    out = model.decode(mean)
    assert out.shape == (3, 1, 12, 8)
    torch.testing.assert_close(model.decode(mean[1:2]), out[1:2], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(model.encode(mel[2:])[0], mean[2:], rtol=1e-5, atol=1e-5)


def test_encoder_downsample_pads_at_the_end() -> None:
    torch.manual_seed(0)
    model = AutoencoderKL(SMALL)
    down = model.encoder.down[0].downsample
    x = torch.randn(1, 16, 6, 4)
    expected = F.conv2d(F.pad(x, (0, 1, 0, 1)), down.conv.weight, down.conv.bias, stride=2)
    torch.testing.assert_close(down(x), expected)


@torch.no_grad()
def test_logvar_is_clamped() -> None:
    model = AutoencoderKL(SMALL)
    mel = torch.randn(1, 1, 8, 8)
    model.quant_conv.bias[SMALL.embed_dim :] = 1e4
    assert torch.all(model.encode(mel)[1] == 20.0)
    model.quant_conv.bias[SMALL.embed_dim :] = -1e4
    assert torch.all(model.encode(mel)[1] == -30.0)


@pytest.mark.parametrize(
    ("method", "shape", "dtype", "message"),
    [
        ("decode", (8, 256, 16), torch.float32, r"shape \[B, 4, H, W\]"),
        ("decode", (1, 3, 4, 4), torch.float32, r"shape \[B, 4, H, W\]"),
        ("decode", (1, 4, 4, 4), torch.int64, "floating-point"),
        ("decode", (0, 4, 4, 4), torch.float32, "non-empty"),
        ("encode", (1, 2, 8, 8), torch.float32, r"shape \[B, 1, H, W\]"),
        ("encode", (1, 1, 9, 8), torch.float32, "multiples of 2"),
    ],
)
def test_bad_input_raises(method: str, shape: tuple[int, ...], dtype: torch.dtype, message: str) -> None:
    model = AutoencoderKL(SMALL)
    with pytest.raises(ValueError, match=message):
        getattr(model, method)(torch.zeros(shape, dtype=dtype))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"channels": 0}, "channels must be >= 1"),
        ({"channel_mult": ()}, "channel_mult"),
        ({"channels": 48}, "not divisible by num_groups"),
        ({"norm_eps": 0.0}, "norm_eps"),
    ],
)
def test_bad_config_raises(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        VAEConfig(**kwargs)
