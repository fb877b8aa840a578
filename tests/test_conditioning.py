"""Padding detector, positional encoding, decoder context, decode windows, token length."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmarks.fill import fill
from parity import assert_parity, reference
from semanticodec.conditioning import (
    decoder_context,
    mark_padding,
    padding_cutoff,
    positional_encoding,
    unconditional_context,
    valid_tokens,
)
from semanticodec.constants import WINDOW_SAMPLES, stack_factor
from semanticodec.windows import join_windows, split_windows, target_token_length


def _codebooks(dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(acoustic [8192, D], semantic [4096, D]) filled as in the reference run."""
    acoustic = torch.from_numpy(fill("quantizer._codebook.embed", (1, 8192, dim))[0])
    semantic = torch.from_numpy(fill("semantic_codebook", (4096, dim)))
    return acoustic, semantic


# --- padding detector -----------------------------------------------------------------


def test_padding_cutoff_matches_reference_windows() -> None:
    ref = reference("tr100_encode")
    windows = torch.from_numpy(ref["fbank"]).reshape(2, 1024, 128)
    cutoff = padding_cutoff(windows)
    assert cutoff.dtype == torch.float64
    np.testing.assert_array_equal(cutoff.numpy(), ref["padding_cutoff"])
    assert cutoff.tolist() == [1.0, 0.26953125]
    assert valid_tokens(cutoff, 512).tolist() == [512, 138]


def test_padding_cutoff_rules() -> None:
    g = torch.Generator().manual_seed(0)
    audio = torch.randn(4, 64, 128, generator=g)
    audio[1, 40:] = 0.4670  # trailing constant (zero-padded) frames
    audio[2, 10:20] = -1.2776  # silence inside the audio does not move the cutoff
    audio[2, 50:] = -1.2776
    audio[3] = 0.4670  # padding only
    assert padding_cutoff(audio).tolist() == [1.0, 40 / 64, 50 / 64, 0.0]
    # per item: a batch gives what single windows give
    assert [padding_cutoff(audio[i : i + 1]).item() for i in range(4)] == padding_cutoff(audio).tolist()


def test_padding_cutoff_threshold_is_unbiased_std_at_1e_7() -> None:
    frame = torch.zeros(1, 1, 128, dtype=torch.float64)
    frame[0, 0, 0] = 1.0
    unit = frame / torch.std(frame)  # unbiased std 1, biased std sqrt(127/128) = 0.9961
    assert padding_cutoff(unit * 0.998e-7).item() == 0.0
    # unbiased std 1.002e-7 > 1e-7 >= biased std 0.998e-7: the unbiased one decides
    assert padding_cutoff(unit * 1.002e-7).item() == 1.0


def test_padding_cutoff_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match=r"\[B, T, M\]"):
        padding_cutoff(torch.zeros(1024, 128))
    with pytest.raises(ValueError, match="floating point"):
        padding_cutoff(torch.zeros(1, 1024, 128, dtype=torch.int64))


def test_valid_tokens() -> None:
    assert valid_tokens(torch.tensor([1.0, 0.26953125, 0.0], dtype=torch.float64), 512).tolist() == [512, 138, 0]
    assert valid_tokens(276 / 1024, 256).tolist() == [69]
    assert valid_tokens([277 / 1024], 128).tolist() == [35]  # 34.625 -> 35
    assert valid_tokens(torch.tensor([1 / 1024]), 512).dtype == torch.int64
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        valid_tokens([1.5], 512)
    with pytest.raises(ValueError, match="n_tokens"):
        valid_tokens([0.5], 0)


# --- padding marker -------------------------------------------------------------------


def test_mark_padding() -> None:
    x = torch.arange(2 * 4 * 3, dtype=torch.float32).reshape(2, 4, 3)
    out = mark_padding(x, torch.tensor([4, 1]))
    assert torch.equal(out[0], x[0])
    assert torch.equal(out[1, :1], x[1, :1])
    assert bool((out[1, 1:] == -1).all())
    assert x[1, 3, 0] == 21  # input untouched
    assert mark_padding(x, None) is x
    with pytest.raises(ValueError, match=r"shape \[2\]"):
        mark_padding(x, torch.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match=r"\[0, 4\]"):
        mark_padding(x, [5, 0])
    with pytest.raises(ValueError, match="integers"):
        mark_padding(x, torch.tensor([1.0, 2.0]))


# --- positional encoding ----------------------------------------------------------------


PE_CPU_TOLERANCE = 3e-5
"""The reference tables were made on an AMD EPYC; torch's vectorised float32 sin/cos differ
between CPUs for the large angles of the table (up to 511 rad: 1.5e-5 on an Intel Xeon with
AMX), as the official code's would on the same CPU. Bit-exact where the CPU kind matches."""


def assert_pe_equal(actual: np.ndarray, desired: np.ndarray) -> None:
    np.testing.assert_allclose(actual, desired, rtol=0, atol=PE_CPU_TOLERANCE)


def test_positional_encoding_bit_exact() -> None:
    pe = positional_encoding(512, 192)
    assert pe.shape == (512, 192) and pe.dtype == torch.float32
    kept = reference("kept_tr100")["derived/positional_encoding_512x192"]
    assert_pe_equal(pe.numpy(), kept)
    assert_pe_equal(pe.numpy(), reference("tr100_decode")["pe"][0])
    assert torch.equal(positional_encoding(128), pe[:128])


def test_positional_encoding_rejects_bad_sizes() -> None:
    with pytest.raises(ValueError, match="even"):
        positional_encoding(512, 191)
    with pytest.raises(ValueError, match="seq_len"):
        positional_encoding(-1)


# --- decoder context ----------------------------------------------------------------------


def test_decoder_context_tr100_matches_decode_feature() -> None:
    enc = reference("tr100_encode")
    acoustic, semantic = _codebooks(768)
    windows, valid_len = split_windows(torch.from_numpy(enc["tokens"]), 512)
    assert valid_len.tolist() == [512, 176]
    windows = windows[0]  # [2 windows, 512, 2]
    ctx = decoder_context(acoustic[windows[..., 1]], semantic[windows[..., 0]], valid_len)
    assert ctx.shape == (2, 512, 1536 + 192)
    assert_parity(ctx[..., :1536], enc["decode_feature"], "decode_feature tr100", tol=0.0)
    np.testing.assert_array_equal(ctx[..., :1536].numpy(), enc["decode_feature"])
    pe = reference("tr100_decode")["pe"][0]
    assert_pe_equal(ctx[0, :, 1536:].numpy(), pe)
    assert torch.equal(ctx[1, :, 1536:], ctx[0, :, 1536:])  # PE is never marked


@pytest.mark.parametrize("name, dim", [("tr50", 1536), ("tr25", 3072)])
def test_decoder_context_tr50_tr25_match_decode_feature(name: str, dim: int) -> None:
    ref = reference(name)
    acoustic, semantic = _codebooks(dim)
    tokens = torch.from_numpy(ref["given_tokens"])
    n = tokens.shape[1]
    ctx = decoder_context(acoustic[tokens[..., 1]], semantic[tokens[..., 0]], torch.tensor([n]))
    assert ctx.shape == (1, n, 2 * dim + 192)
    assert_parity(ctx[..., : 2 * dim], ref["decode_feature"], f"decode_feature {name}", tol=0.0)
    assert_pe_equal(ctx[0, :, 2 * dim :].numpy(), reference("tr100_decode")["pe"][0, :n])


def test_decoder_context_batch_and_errors() -> None:
    g = torch.Generator().manual_seed(1)
    a, s = torch.randn(3, 16, 8, generator=g), torch.randn(3, 16, 8, generator=g)
    ctx = decoder_context(a, s, torch.tensor([16, 5, 0]))
    for i, n in enumerate([16, 5, 0]):
        single = decoder_context(a[i : i + 1], s[i : i + 1], [n])
        assert torch.equal(ctx[i : i + 1], single)
    assert bool((ctx[1, 5:, :16] == -1).all()) and torch.equal(ctx[1, :5, :8], a[1, :5])
    assert torch.equal(ctx[1, :, 16:], positional_encoding(16))
    assert torch.equal(decoder_context(a, s, None)[..., :16], torch.cat([a, s], -1))
    with pytest.raises(ValueError, match="same shape"):
        decoder_context(a, s[:, :8], None)
    with pytest.raises(ValueError, match=r"\[B, N, D\]"):
        decoder_context(a[0], s[0], None)


def test_unconditional_context() -> None:
    u = unconditional_context(2, 512, 768)
    assert u.shape == (2, 512, 1728)
    assert bool((u[..., :1536] == 0).all())
    assert_pe_equal(u[1, :, 1536:].numpy(), reference("tr100_decode")["pe"][0])
    assert unconditional_context(1, 128, 3072, dtype=torch.float64).dtype == torch.float64
    with pytest.raises(ValueError, match="batch"):
        unconditional_context(0, 512, 768)


# --- decode windows -----------------------------------------------------------------------


def test_split_windows_matches_reference() -> None:
    enc = reference("tr100_encode")
    windows, valid_len = split_windows(torch.from_numpy(enc["tokens"]), 512, 0.0625)
    assert windows.shape == (1, 2, 512, 2) and windows.dtype == torch.int64
    np.testing.assert_array_equal(windows[:, 0].numpy(), enc["decode_window_tokens_w0"])
    np.testing.assert_array_equal(windows[:, 1, :176].numpy(), enc["decode_window_tokens_w1"])
    assert bool((windows[:, 1, 176:] == 0).all())
    assert valid_len.tolist() == [512, 176]


def _official_windows(length: int, window: int, ratio: float) -> list[tuple[int, int]]:
    """(start, stop) of the windows of long_token_split_window, written out independently."""
    overlap = int(window * ratio)
    out, start = [], 0
    while start + window < length:
        out.append((start, start + window))
        start += window - overlap
    out.append((start, length))
    return out


@pytest.mark.parametrize(
    "length, window",
    [(1, 512), (512, 512), (513, 512), (656, 512), (1000, 512), (992, 512), (993, 512), (700, 256), (300, 128)],
)
def test_split_windows_layout(length: int, window: int) -> None:
    tokens = torch.stack([torch.arange(length), 10_000 + torch.arange(length)], -1)[None].repeat(2, 1, 1)
    tokens[1] += 7
    windows, valid_len = split_windows(tokens, window)
    spans = _official_windows(length, window, 0.0625)
    assert windows.shape == (2, len(spans), window, 2)
    assert valid_len.tolist() == [stop - start for start, stop in spans]
    for w, (start, stop) in enumerate(spans):
        assert torch.equal(windows[:, w, : stop - start], tokens[:, start:stop])
    if length == 1000:
        assert spans == [(0, 512), (480, 992), (960, 1000)]


def test_split_windows_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match=r"\[B, T, 2\]"):
        split_windows(torch.zeros(1, 10, dtype=torch.int64))
    with pytest.raises(ValueError, match="empty"):
        split_windows(torch.zeros(1, 0, 2, dtype=torch.int64))
    with pytest.raises(ValueError, match="integers"):
        split_windows(torch.zeros(1, 10, 2))
    with pytest.raises(ValueError, match="overlap"):
        split_windows(torch.zeros(1, 10, 2, dtype=torch.int64), 16, 1.0)


# --- target token length -------------------------------------------------------------------


@pytest.mark.parametrize("compat", [True, False])
@pytest.mark.parametrize("samples, rate, expected", [(208000, 100, 656), (320000, 100, 1000), (320000, 50, 500), (208000, 25, 164)])
def test_target_token_length_common_cases(samples: int, rate: int, expected: int, compat: bool) -> None:
    assert target_token_length(samples, rate, compat=compat) == expected


@pytest.mark.parametrize(
    "samples, rate, official, fixed",
    [
        (163840, 100, 520, 512),  # exactly 10.24 s: the official adds a column
        (2560, 100, 16, 8),  # exactly 0.16 s
        (1, 100, 8, 8),
        (2561, 50, 8, 8),
        (160000, 25, 126, 128),  # 10 s: official 63 columns = 31.5 steps of 0.32 s
        (320000, 25, 250, 252),  # 20 s = 62.5 steps: fixed rounds up to 63 steps
        (5120, 25, 6, 4),
    ],
)
def test_target_token_length_official_vs_fixed(samples: int, rate: int, official: int, fixed: int) -> None:
    assert target_token_length(samples, rate, compat=True) == official
    assert target_token_length(samples, rate) == fixed


def test_target_token_length_fixed_is_whole_columns() -> None:
    for rate in (100, 50, 25):
        k = stack_factor(rate)
        step_samples, step_tokens = (5120, 4) if k == 4 else (2560, 8 // k)
        for samples in (1, 2559, 2560, 2561, 5119, 5120, 5121, 163839, 163840, 163841):
            tokens = target_token_length(samples, rate)
            assert tokens % step_tokens == 0
            assert (tokens // step_tokens - 1) * step_samples < samples <= tokens // step_tokens * step_samples


def test_target_token_length_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="token_rate"):
        target_token_length(16000, 75)
    with pytest.raises(ValueError, match="sample_count"):
        target_token_length(0, 100)
    with pytest.raises(ValueError, match="sample_count"):
        target_token_length(1.5, 100)  # type: ignore[arg-type]


def test_window_functions_take_the_old_num_samples_keyword_with_a_warning() -> None:
    with pytest.warns(DeprecationWarning, match=r"target_token_length\(num_samples=\.\.\.\) is deprecated, use sample_count"):
        assert target_token_length(num_samples=208000, token_rate=100) == target_token_length(sample_count=208000, token_rate=100) == 656
    waves = [torch.ones(WINDOW_SAMPLES)]
    with pytest.warns(DeprecationWarning, match=r"join_windows\(num_samples=\.\.\.\) is deprecated, use sample_count"):
        old = join_windows(waves, 512, 100, num_samples=1000)
    assert old.shape == join_windows(waves, 512, 100, sample_count=1000).shape == (1000,)
    with pytest.raises(TypeError, match="both"):
        join_windows(waves, 512, 100, num_samples=1000, sample_count=1000)
