"""Inference convolution shortcuts: equal to the direct convolutions within float tolerance."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from semanticodec.nn import fastconv
from semanticodec.nn.hifigan import HiFiGAN, HiFiGANConfig
from semanticodec.nn.vae import AutoencoderKL, VAEConfig, upsample_conv


def rel_l2(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return float((actual.double() - expected).norm() / expected.norm())


@pytest.mark.parametrize("taps,dilation,length", [(11, 1, 37), (11, 5, 40), (7, 3, 23), (3, 1, 9), (5, 2, 1)])
@torch.inference_mode()
def test_toom_cook_conv1d_equals_conv1d(taps: int, dilation: int, length: int) -> None:
    gen = torch.Generator().manual_seed(taps * 10 + dilation)
    x = torch.randn(2, 6, length, generator=gen)
    w = torch.randn(5, 6, taps, generator=gen) / (6 * taps) ** 0.5
    b = torch.randn(5, generator=gen)
    pad = dilation * (taps - 1) // 2
    expected = F.conv1d(x.double(), w.double(), b.double(), padding=pad, dilation=dilation)
    actual = fastconv.toom_cook_conv1d(x, w, b, dilation)
    assert actual.shape == expected.shape
    # float32 rounding of the direct convolution itself is ~2e-7 here
    assert rel_l2(actual, expected) < 2e-6


@pytest.mark.parametrize("height,width", [(8, 5), (13, 1), (1, 3)])
@torch.inference_mode()
def test_toom_cook_conv2d_equals_conv2d(height: int, width: int) -> None:
    gen = torch.Generator().manual_seed(height)
    x = torch.randn(2, 4, height, width, generator=gen)
    w = torch.randn(3, 4, 3, 3, generator=gen) / 6
    b = torch.randn(3, generator=gen)
    expected = F.conv2d(x.double(), w.double(), b.double(), padding=1)
    assert rel_l2(fastconv.toom_cook_conv2d(x, w, b), expected) < 2e-6


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
@torch.inference_mode()
def test_upsample_conv_equals_nearest_upsample_then_conv(layout: torch.memory_format) -> None:
    """Equal to upsampling then convolving, in the input's layout."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 5, 3, generator=gen)
    w = torch.randn(6, 4, 3, 3, generator=gen) / 6
    b = torch.randn(6, generator=gen)
    expected = F.conv2d(F.interpolate(x.double(), scale_factor=2.0, mode="nearest"), w.double(), b.double(), padding=1)
    actual = upsample_conv(x.contiguous(memory_format=layout), w, b)
    assert rel_l2(actual, expected) < 2e-6 and actual.is_contiguous(memory_format=layout)


def test_errors_and_switches() -> None:
    with pytest.raises(ValueError, match="odd kernel"):
        fastconv.toom_cook_conv1d(torch.zeros(1, 1, 4), torch.zeros(1, 1, 4), None)
    with pytest.raises(ValueError, match="3x3"):
        fastconv.toom_cook_conv2d(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 5, 5), None)
    w = torch.zeros(512, 512, 3)
    with torch.inference_mode():
        assert fastconv.worth_it(torch.zeros(1, 512, 8), w)
        with fastconv.direct():
            assert not fastconv.worth_it(torch.zeros(1, 512, 8), w)
        assert not fastconv.worth_it(torch.zeros(1, 256, 8), w[:256, :256])
        with torch.autocast("cpu", dtype=torch.bfloat16):  # --precision bfloat16: direct bfloat16 products
            assert not fastconv.worth_it(torch.zeros(1, 512, 8), w)
    assert not fastconv.worth_it(torch.zeros(1, 512, 8), w)  # autograd: the direct path


def _wide(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) / (p[0].numel() ** 0.5 if p.ndim > 1 else 50))
    return module.eval()


@torch.inference_mode()
def test_vae_decoder_fast_equals_direct() -> None:
    """A decoder at the official 512-channel width (fewer levels and blocks), so that the
    Toom-Cook and upsample shortcuts all run."""
    vae = _wide(AutoencoderKL(VAEConfig(channels=512, channel_mult=(1, 1), num_res_blocks=1), with_encoder=False), 1)
    z = torch.randn(1, 8, 12, 4, generator=torch.Generator().manual_seed(2))
    with fastconv.direct():
        expected = vae.decode(z)
    actual = vae.decode(z)
    assert not torch.equal(actual, expected)  # the shortcuts ran
    assert rel_l2(actual, expected) < 1e-5


@torch.inference_mode()
def test_hifigan_fast_equals_direct() -> None:
    """The official first stage's width (512 after the first upsampling) with 7- and 11-tap
    dilated resblocks, so that the Toom-Cook convolutions run."""
    config = HiFiGANConfig(upsample_rates=(5, 4), upsample_kernel_sizes=(16, 8), resblock_kernel_sizes=(7, 11),
                           resblock_dilation_sizes=((1, 3, 5), (1, 3, 5)))
    vocoder = _wide(HiFiGAN(config), 3)
    mel = torch.randn(1, 64, 9, generator=torch.Generator().manual_seed(4))
    with fastconv.direct():
        expected = vocoder(mel)
    actual = vocoder(mel)
    assert not torch.equal(actual, expected)  # the shortcuts ran
    assert rel_l2(actual, expected) < 1e-5


@torch.inference_mode()
def test_vae_decoder_bfloat16_autocast_close_to_float32() -> None:
    """``--precision bfloat16``: the decoder runs under autocast (upsample shortcut included,
    Toom-Cook off) and stays within bfloat16 rounding of float32."""
    vae = _wide(AutoencoderKL(VAEConfig(channels=512, channel_mult=(1, 1), num_res_blocks=1), with_encoder=False), 1)
    z = torch.randn(1, 8, 12, 4, generator=torch.Generator().manual_seed(2))
    expected = vae.decode(z)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        actual = vae.decode(z).float()
    assert 1e-4 < rel_l2(actual, expected) < 3e-2  # bfloat16 ran, with 8-bit-mantissa error only


@pytest.mark.parametrize(("stride", "dilation", "padding", "transposed"), [(1, 1, 3, False), (1, 5, 15, False), (2, 1, 0, False), (4, 1, 2, True)])
def test_channels_last_bfloat16_convolutions_equal_conv1d_under_autocast(
    stride: int, dilation: int, padding: int, transposed: bool
) -> None:
    """Under bfloat16 autocast the 1-D convolutions run as channels-last 2-D ones: the same
    bfloat16 products as ``conv1d`` under autocast, an output with the channels innermost, and
    cached bfloat16 weights that follow changes of the parameters."""
    generator = torch.Generator().manual_seed(5)
    if transposed:
        conv: torch.nn.Module = fastconv.ConvTranspose1d(16, 8, 8, stride, padding=padding)
    else:
        conv = fastconv.Conv1d(16, 8, 7, stride, padding=padding, dilation=dilation)
    x = torch.randn(2, 16, 50, generator=generator)
    reference = F.conv_transpose1d if transposed else F.conv1d
    with torch.inference_mode():
        _check_channels_last(conv, x, reference, transposed, stride, dilation, padding)


def _check_channels_last(conv, x, reference, transposed, stride, dilation, padding) -> None:
    options = {"stride": stride, "padding": padding} | ({} if transposed else {"dilation": dilation})
    for _ in range(2):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            actual = conv(x)
            expected = reference(x, conv.weight, conv.bias, **options)
        assert actual.dtype == torch.bfloat16 and actual.stride(1) == 1  # channels innermost
        assert rel_l2(actual.float(), expected.float()) < 1e-2
        innermost = x.transpose(1, 2).contiguous().transpose(1, 2)  # [B, C, L] with the channels innermost
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert torch.equal(conv(innermost), actual)
        with torch.no_grad():
            conv.weight.mul_(2.0)  # the cached bfloat16 weights follow
    with fastconv.direct(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert conv(x).stride(2) == 1  # direct(): plain conv1d


@pytest.mark.parametrize(("kernel", "stride", "padding"), [(3, 1, 1), (1, 1, 0), (3, 2, 0)])
def test_channels_last_bfloat16_conv2d_equals_conv2d_under_autocast(kernel: int, stride: int, padding: int) -> None:
    """The VAE's 2-D convolutions under bfloat16 autocast: channels-last output, the products of
    ``conv2d`` under autocast, cached weights that follow the parameters; direct() runs plain."""
    conv = fastconv.Conv2d(16, 8, kernel, stride, padding=padding)
    x = torch.randn(2, 16, 12, 6, generator=torch.Generator().manual_seed(6))
    with torch.inference_mode():
        for _ in range(2):
            with torch.autocast("cpu", dtype=torch.bfloat16):
                actual = conv(x)
                expected = F.conv2d(x, conv.weight, conv.bias, stride, padding)
            assert actual.dtype == torch.bfloat16 and actual.is_contiguous(memory_format=torch.channels_last)
            assert not actual.is_contiguous() and rel_l2(actual.float(), expected.float()) < 1e-2
            with torch.no_grad():
                conv.weight.mul_(2.0)
        with fastconv.direct(), torch.autocast("cpu", dtype=torch.bfloat16):
            assert conv(x).is_contiguous()


@pytest.mark.parametrize(("batch", "taps", "dilation", "length"), [(1, 7, 1, 70), (2, 11, 5, 50), (1, 3, 3, 33), (2, 7, 1, 16)])
@torch.inference_mode()
def test_long_channels_last_convolutions_run_in_pieces(
    monkeypatch: pytest.MonkeyPatch, batch: int, taps: int, dilation: int, length: int
) -> None:
    """A 1-D convolution longer than MAX_POSITIONS runs as a batch of overlapping pieces (made
    16 here so that the pieces, and a last one of padding, are exercised): the same values as in
    one piece, in the same layout."""
    conv = fastconv.Conv1d(8, 8, taps, padding=dilation * (taps - 1) // 2, dilation=dilation)
    x = torch.randn(batch, 8, length, generator=torch.Generator().manual_seed(7))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        whole = conv(x)
        monkeypatch.setattr(fastconv, "MAX_POSITIONS", 16)
        pieces = conv(x)
    assert pieces.shape == whole.shape == (batch, 8, length) and pieces.stride(1) == 1
    assert torch.allclose(pieces.float(), whole.float(), rtol=1e-2, atol=1e-2)
    assert rel_l2(pieces.float(), whole.float()) < 3e-3
