"""Streaming encode/decode on the tiny model: equality with offline coding, latency, loss concealment."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from semanticodec import bitstream
from semanticodec.audio import StreamResampler, resample
from semanticodec.bitstream.packet import packet_size
from semanticodec.bitstream.tables import LayerModel
from semanticodec.codec import EncodedAudio, SemantiCodec
from semanticodec.concealment import latent_gap
from semanticodec.constants import HOP_SAMPLES, WINDOW_SAMPLES
from semanticodec.streaming import LowLatencyConfig, StreamingDecoder, StreamingEncoder
from semanticodec.windows import window_generator
from tiny import tiny_model

torch.set_num_threads(2)


@pytest.fixture(scope="module")
def codec() -> SemantiCodec:
    return SemantiCodec(tiny_model(), device="cpu", steps=1, guidance_scale=1.0, seed=3, batch_size=1)


def _noise(samples: int, seed: int = 0) -> np.ndarray:
    return (0.1 * np.random.default_rng(seed).standard_normal(samples)).astype(np.float32)


def _chunks(data, seed: int, largest: int):
    rng = np.random.default_rng(seed)
    i = 0
    while i < len(data):
        n = int(rng.integers(1, largest))
        yield data[i : i + n]
        i += n


def _encode_stream(codec: SemantiCodec, audio: np.ndarray, rate: int, **options) -> bytes:
    encoder = StreamingEncoder(codec, rate, **options)
    data = b"".join(encoder.push(chunk) for chunk in _chunks(audio, 1, 30000))
    return data + encoder.finish()


def _decode_stream(codec: SemantiCodec, data: bytes, seed: int = 2) -> tuple[np.ndarray, StreamingDecoder]:
    decoder = StreamingDecoder(codec)
    parts = [decoder.push(chunk) for chunk in _chunks(data, seed, 400)]
    parts.append(decoder.finish())
    return np.concatenate(parts), decoder


def _offline_decode(codec: SemantiCodec, data: bytes) -> np.ndarray:
    header, tokens = bitstream.decode(data)
    count = header.sample_count or len(tokens) * 2 * 16000 // header.token_rate
    rate = header.sample_rate if header.sample_count else 16000
    item = EncodedAudio(tokens, header.token_rate, header.semantic_vocab_size, header.acoustic_vocab_size, header.model_id, count, rate)
    return codec.decode(item)


@pytest.mark.parametrize("rate", [44100, 22050, 8000, 48000, 16000])
def test_resampler_equals_offline_resampling(rate: int) -> None:
    x = _noise(50000, rate)
    resampler = StreamResampler(rate)
    out = [resampler.push(chunk) for chunk in _chunks(x, rate, 9000)]
    out.append(resampler.push(np.zeros(0), final=True))
    np.testing.assert_array_equal(np.concatenate(out), resample(x, rate))


@pytest.mark.parametrize(
    ("samples", "rate"), [(30000, 16000), (WINDOW_SAMPLES, 16000), (WINDOW_SAMPLES + 100, 16000), (360000, 22050)]
)
def test_exact_mode_equals_offline_encoding(codec: SemantiCodec, samples: int, rate: int) -> None:
    audio = _noise(samples, samples)
    data = _encode_stream(codec, audio, rate, sample_count=samples)
    header, tokens = bitstream.decode(data)
    assert header.sample_count == samples and header.sample_rate == rate
    np.testing.assert_array_equal(tokens, codec.encode(audio, rate).tokens)


def test_exact_mode_batches_windows_with_the_same_bytes(codec: SemantiCodec) -> None:
    audio = _noise(3 * WINDOW_SAMPLES + 5000, 6)  # four windows: a batch of 3 and the last alone
    single = _encode_stream(codec, audio, 16000, sample_count=len(audio))
    encoder = StreamingEncoder(codec, 16000, sample_count=len(audio), batch_windows=3, tables=None)
    assert encoder.latency_seconds == pytest.approx(3 * 10.24 + 0.015)
    early = encoder.push(audio[: 2 * WINDOW_SAMPLES + 240])
    assert len(early) == encoder.header.size  # two windows are final, but wait for the third
    rest = encoder.push(audio[2 * WINDOW_SAMPLES + 240 :]) + encoder.finish()
    assert bitstream.decode(early + rest)[1].tolist() == bitstream.decode(single)[1].tolist()
    assert _encode_stream(codec, audio, 16000, sample_count=len(audio), batch_windows=3) == single
    with pytest.raises(ValueError, match="batch_windows"):
        StreamingEncoder(codec, 16000, batch_windows=0)
    with pytest.raises(ValueError, match="batch_windows"):
        StreamingEncoder(codec, 16000, mode="low_latency", batch_windows=2)


def test_exact_mode_stereo_int16_and_bounded_buffer(codec: SemantiCodec) -> None:
    stereo = np.stack([_noise(200000, 1), _noise(200000, 2)])
    pcm = (stereo * 32767).astype(np.int16)
    encoder = StreamingEncoder(codec, 16000)
    data = b""
    for i in range(0, pcm.shape[1], 5000):
        data += encoder.push(pcm[:, i : i + 5000])
        assert encoder.buffered_samples <= WINDOW_SAMPLES + 5000 + 240
    data += encoder.finish()
    np.testing.assert_array_equal(bitstream.decode(data)[1], codec.encode(pcm, 16000).tokens)
    assert encoder.latency_seconds == pytest.approx(10.255)


def test_exact_mode_emits_packets_once_a_window_is_final(codec: SemantiCodec) -> None:
    encoder = StreamingEncoder(codec, 16000, packet_columns=1)
    audio = _noise(2 * WINDOW_SAMPLES, 5)
    header_bytes = encoder.push(audio[: WINDOW_SAMPLES + 239])
    assert len(header_bytes) == encoder.header.size
    packets = encoder.push(audio[WINDOW_SAMPLES + 239 : WINDOW_SAMPLES + 240])
    assert len(packets) == 64 * packet_size(encoder.header, 8, False)


def test_low_latency_mode(codec: SemantiCodec) -> None:
    short = _noise(20000, 6)
    single = StreamingEncoder(codec, 16000, mode="low_latency", low_latency=LowLatencyConfig(1.28, 0.0, 8.0))
    tokens = bitstream.decode(single.push(short) + single.finish())[1]
    np.testing.assert_array_equal(tokens, codec.encode(short, 16000).tokens)

    config = LowLatencyConfig(latency=0.32, lookahead=0.16, context=4.0)
    encoder = StreamingEncoder(codec, 16000, mode="low_latency", low_latency=config, packet_columns=1)
    assert encoder.latency_seconds == pytest.approx(0.48)
    audio = _noise(60000, 7)
    data = encoder.push(audio[:7680])
    assert len(data) == encoder.header.size + 2 * packet_size(encoder.header, 8, False)
    data += encoder.push(audio[7680:]) + encoder.finish()
    streamed = bitstream.decode(data)[1]
    offline = codec.encode(audio, 16000).tokens
    assert streamed.shape == offline.shape
    assert 0 < (streamed == offline).mean() < 1
    assert encoder.buffered_samples <= 4 * 16000 + 0.48 * 16000


def test_encoder_rejects_bad_input(codec: SemantiCodec) -> None:
    with pytest.raises(ValueError, match="mode must be"):
        StreamingEncoder(codec, 16000, mode="fast")
    with pytest.raises(ValueError, match="latency must be a positive multiple of 0.16"):
        StreamingEncoder(codec, 16000, mode="low_latency", low_latency=LowLatencyConfig(latency=0.1))
    with pytest.raises(ValueError, match="must not exceed 10.24 s"):
        StreamingEncoder(codec, 16000, mode="low_latency", low_latency=LowLatencyConfig(1.28, 1.0, 9.0))
    with pytest.raises(ValueError, match="sample rate"):
        StreamingEncoder(codec, 0)
    with pytest.raises(ValueError, match="compat='default'"):
        StreamingEncoder(SemantiCodec(codec.model, device="cpu", compat="official"), 16000)
    encoder = StreamingEncoder(codec, 16000, sample_count=100)
    with pytest.raises(ValueError, match="NaN"):
        encoder.push(np.array([0.0, np.nan], np.float32))
    with pytest.raises(ValueError, match=r"\[samples\] or \[channels, samples\]"):
        encoder.push(np.zeros((2, 2, 2), np.float32))
    encoder.push(np.zeros(50, np.float32))
    with pytest.raises(ValueError, match="sample_count 100 given, 50 samples pushed"):
        encoder.finish()
    with pytest.raises(ValueError, match="no audio"):
        StreamingEncoder(codec, 16000).finish()


@pytest.fixture(scope="module")
def two_windows(codec: SemantiCodec) -> tuple[bytes, np.ndarray]:
    """A 2-window stream (520 pairs, 8 pairs per packet) at 22.05 kHz and its offline decoding."""
    samples = (WINDOW_SAMPLES + 100) * 22050 // 16000
    data = _encode_stream(codec, _noise(samples, 9), 22050, sample_count=samples, packet_columns=1)
    return data, _offline_decode(codec, data)


def test_streaming_decode_equals_offline_decode(codec: SemantiCodec, two_windows) -> None:
    data, offline = two_windows
    decoder = StreamingDecoder(codec)
    cut = _packet_offset(data, 64)
    assert len(decoder.push(data[: cut - 1])) == 0
    first = decoder.push(data[cut - 1 : cut])
    assert len(first) == HOP_SAMPLES and decoder.buffered_pairs == 32
    audio = np.concatenate([first, decoder.push(data[cut:]), decoder.finish()])
    np.testing.assert_array_equal(audio, offline)
    assert len(audio) == (WINDOW_SAMPLES + 100) and decoder.damage == [] and decoder.lost_pairs == 0


def test_streaming_decode_without_sample_count(codec: SemantiCodec) -> None:
    data = _encode_stream(codec, _noise(9000, 4), 16000)
    audio, _ = _decode_stream(codec, data)
    np.testing.assert_array_equal(audio, _offline_decode(codec, data))
    assert len(audio) == 4 * 2560


def test_window_generator_matches_codec(codec: SemantiCodec) -> None:
    for window in range(3):
        expected = torch.randn(4, generator=codec._generators(0, 3)[window])
        torch.testing.assert_close(torch.randn(4, generator=window_generator(3, window)), expected, rtol=0, atol=0)


def _packet_offset(data: bytes, index: int) -> int:
    header = bitstream.decode(data)[0]
    return header.size + index * packet_size(header, header.packet_pairs, False)


def test_dropped_packet_is_concealed_in_its_window_only(codec: SemantiCodec, two_windows) -> None:
    data, offline = two_windows
    start = _packet_offset(data, 10)
    lossy = data[:start] + data[_packet_offset(data, 11) :]
    audio, decoder = _decode_stream(codec, lossy)
    assert decoder.lost_pairs == 8 and [d.first_packet for d in decoder.damage] == [10]
    assert len(audio) == len(offline) and np.isfinite(audio).all()
    np.testing.assert_array_equal(audio[WINDOW_SAMPLES:], offline[WINDOW_SAMPLES:])
    assert not np.array_equal(audio[:HOP_SAMPLES], offline[:HOP_SAMPLES])


def test_corrupt_packet_and_lost_final_packet(codec: SemantiCodec, two_windows) -> None:
    data, offline = two_windows
    damaged = bytearray(data[: _packet_offset(data, 65)])
    damaged[_packet_offset(data, 64) + 7] ^= 0x10
    audio, decoder = _decode_stream(codec, bytes(damaged), seed=5)
    assert [(d.first_packet, d.lost_packets) for d in decoder.damage] == [(64, None)]
    assert decoder.lost_pairs == 8 and len(audio) == len(offline)
    np.testing.assert_array_equal(audio[:HOP_SAMPLES], offline[:HOP_SAMPLES])
    assert not np.array_equal(audio[HOP_SAMPLES:], offline[HOP_SAMPLES:])


def test_decoder_rejects_bad_input(codec: SemantiCodec, two_windows) -> None:
    with pytest.raises(ValueError, match="needs a codec with a seed"):
        StreamingDecoder(SemantiCodec(codec.model, device="cpu"))
    other = SemantiCodec(tiny_model(50), device="cpu", seed=0)
    with pytest.raises(ValueError, match="50 tok/s"):
        StreamingDecoder(other).push(two_windows[0][:200])
    with pytest.raises(ValueError, match="magic"):
        StreamingDecoder(codec).push(b"RIFF" + bytes(100))
    decoder = StreamingDecoder(codec)
    decoder.push(two_windows[0][:20])
    with pytest.raises(ValueError, match="truncated header"):
        decoder.finish()


def test_inpainting_concealment_differs_from_padding_only_in_the_damaged_window(codec: SemantiCodec, two_windows) -> None:
    data, offline = two_windows
    lossy = data[: _packet_offset(data, 20)] + data[_packet_offset(data, 22) :]
    decoded = {}
    for mode in ("padding", "inpaint"):
        decoder = StreamingDecoder(codec, concealment=mode)
        decoded[mode] = np.concatenate([decoder.push(lossy), decoder.finish()])
        assert decoder.lost_pairs == 16 and len(decoded[mode]) == len(offline)
        np.testing.assert_array_equal(decoded[mode][WINDOW_SAMPLES:], offline[WINDOW_SAMPLES:])
    assert not np.array_equal(decoded["inpaint"][:HOP_SAMPLES], decoded["padding"][:HOP_SAMPLES])
    again = StreamingDecoder(codec, concealment="inpaint")
    np.testing.assert_array_equal(np.concatenate([again.push(lossy), again.finish()]), decoded["inpaint"])
    with pytest.raises(ValueError, match="concealment must be"):
        StreamingDecoder(codec, concealment="silence")


def test_solver_sampler_streams_like_offline_and_conceals_with_ddim(codec: SemantiCodec, two_windows) -> None:
    """A codec sampling with UniPC: streaming equals offline decoding, and a lost packet is
    inpainted (by stochastic DDIM, at 4 steps: the nearest count >= 3 that DDIM's spacing allows)."""
    fast = SemantiCodec(codec.model, device="cpu", sampler="unipc", steps=3, guidance_scale=1.0, seed=3, batch_size=1)
    data, _ = two_windows
    offline = _offline_decode(fast, data)
    audio, _ = _decode_stream(fast, data)
    np.testing.assert_array_equal(audio, offline)
    lossy = data[: _packet_offset(data, 20)] + data[_packet_offset(data, 22) :]
    decoded = {}
    for mode in ("padding", "inpaint"):
        decoder = StreamingDecoder(fast, concealment=mode)
        decoded[mode] = np.concatenate([decoder.push(lossy), decoder.finish()])
        np.testing.assert_array_equal(decoded[mode][WINDOW_SAMPLES:], offline[WINDOW_SAMPLES:])
    assert np.isfinite(decoded["inpaint"]).all()
    assert not np.array_equal(decoded["inpaint"][:HOP_SAMPLES], decoded["padding"][:HOP_SAMPLES])


# Entropy-coded streams ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def coded_windows(codec: SemantiCodec) -> tuple[bytes, np.ndarray, bitstream.EntropyTables, list[int]]:
    """The audio of ``two_windows`` streamed with entropy tables learned from its own tokens
    (16 pairs per packet), its offline decoding, the tables and the packet offsets."""
    samples = (WINDOW_SAMPLES + 100) * 22050 // 16000
    audio = _noise(samples, 9)
    tokens = codec.encode(audio, 22050).tokens
    config = codec.config
    tables = bitstream.learn_tables([tokens], 100, config.semantic_vocab_size, config.acoustic_vocab_size, codec.model_id)
    data = _encode_stream(codec, audio, 22050, sample_count=samples, packet_columns=2, tables=tables)
    header, decoded = bitstream.decode(data, tables=tables)
    np.testing.assert_array_equal(decoded, tokens)
    assert header.version == 2 and scan_coded(data, tables) > 20
    count = header.sample_count
    item = EncodedAudio(decoded, 100, header.semantic_vocab_size, header.acoustic_vocab_size, header.model_id, count, 22050)
    return data, codec.decode(item), tables, bitstream.packet_offsets(data, tables)


def scan_coded(data: bytes, tables: bitstream.EntropyTables) -> int:
    return bitstream.scan(io.BytesIO(data), tables).coded_packets


def test_coded_stream_decodes_as_it_arrives(codec: SemantiCodec, coded_windows) -> None:
    data, offline, tables, _ = coded_windows
    decoder = StreamingDecoder(codec, tables=tables)
    parts = [decoder.push(chunk) for chunk in _chunks(data, 3, 50)]
    audio = np.concatenate(parts + [decoder.finish()])
    np.testing.assert_array_equal(audio, offline)
    assert decoder.damage == [] and decoder.buffered_pairs <= 512 + 16
    with pytest.raises(ValueError, match="which are not available"):
        StreamingDecoder(codec, tables=lambda table_id: None).push(data)


def _last_id_tables(vocab: int) -> LayerModel:
    """A layer model that gives its last id nearly all the probability: any other id costs
    about 16 bits, more than fixed width."""
    base = np.zeros((1, vocab), np.uint32)
    base[0, -1] = 1
    return LayerModel(base, 1 << 16, 0, 0)


def test_encoder_header_waits_for_the_first_packets(codec: SemantiCodec) -> None:
    """With entropy tables the header comes with the first packets and names the tables only
    when one of them is coded; tables that code none give the stream written without tables."""
    audio = _noise(WINDOW_SAMPLES + 4000, 10)
    tokens = codec.encode(audio, 16000).tokens
    vocabs = (codec.config.semantic_vocab_size, codec.config.acoustic_vocab_size)
    plain = StreamingEncoder(codec, 16000, packet_columns=2, tables=None)
    head = plain.push(audio[: WINDOW_SAMPLES + 239])
    assert len(head) == plain.header.size
    plain_data = head + plain.push(audio[WINDOW_SAMPLES + 239 :]) + plain.finish()
    own = bitstream.learn_tables([tokens], 100, *vocabs, codec.model_id)
    peaked = bitstream.EntropyTables(100, *vocabs, codec.model_id, *(_last_id_tables(vocab) for vocab in vocabs))
    for tables, version in ((own, 2), (peaked, 1)):
        encoder = StreamingEncoder(codec, 16000, packet_columns=2, tables=tables)
        assert encoder.push(audio[: WINDOW_SAMPLES + 239]) == b""  # no packet yet: the header waits
        data = encoder.push(audio[WINDOW_SAMPLES + 239 :])
        assert data.startswith(encoder.header.to_bytes()) and encoder.header.version == version
        data += encoder.finish()
        header, decoded = bitstream.decode(data, tables=tables)
        np.testing.assert_array_equal(decoded, tokens)
        assert (scan_coded(data, tables) > 0) == (version == 2)
        if version == 1:
            assert data == plain_data


def test_lost_and_corrupt_coded_packets_are_concealed(codec: SemantiCodec, coded_windows) -> None:
    data, offline, tables, offsets = coded_windows
    lossy = data[: offsets[5]] + data[offsets[6] :]
    decoder = StreamingDecoder(codec, tables=tables)
    audio = np.concatenate([decoder.push(lossy), decoder.finish()])
    assert decoder.lost_pairs == 16 and [d.first_packet for d in decoder.damage] == [5]
    assert len(audio) == len(offline)
    np.testing.assert_array_equal(audio[WINDOW_SAMPLES:], offline[WINDOW_SAMPLES:])
    assert not np.array_equal(audio[:HOP_SAMPLES], offline[:HOP_SAMPLES])
    damaged = bytearray(data)
    damaged[offsets[32] + 7] ^= 0x10  # the final packet: pairs 512-519, in the second window only
    decoder = StreamingDecoder(codec, tables=tables, concealment="padding")
    audio = np.concatenate([decoder.push(bytes(damaged)), decoder.finish()])
    assert [(d.first_packet, d.lost_packets) for d in decoder.damage] == [(32, None)]
    assert decoder.lost_pairs == 8 and len(audio) == len(offline)
    np.testing.assert_array_equal(audio[:HOP_SAMPLES], offline[:HOP_SAMPLES])


def test_latent_gap_follows_the_token_steps(codec: SemantiCodec) -> None:
    missing = torch.zeros(512, dtype=torch.bool)
    missing[160:176] = True
    gap = latent_gap(missing, 256, codec.token_rate)
    assert gap.shape == (256,) and torch.nonzero(gap).flatten().tolist() == list(range(80, 88))


def test_fitted_low_latency_context() -> None:
    assert LowLatencyConfig.fitted(0.32) == LowLatencyConfig(0.32, 0.32, 8.0)
    assert LowLatencyConfig.fitted(2.56).context == pytest.approx(10.24 - 2.56 - 0.32)
    assert LowLatencyConfig.fitted(10.24, 0.32).context == 0.0
