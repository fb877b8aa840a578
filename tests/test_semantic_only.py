"""Semantic-only decoding (the half-bitrate semantic layer of a stream): the decoder context has a
zero acoustic part, the acoustic ids do not matter, and models not trained for it (official
ones) refuse it, in the API, the streaming decoder and ``semanticodec decompress --semantic-only``."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import soundfile as sf
import torch

from semanticodec.bitstream import read_file
from semanticodec.cli import main
from semanticodec.codec import EncodedAudio, SemantiCodec
from semanticodec.model import SemantiCodecModel
from semanticodec.streaming import StreamingDecoder
from semanticodec.weights import save_safetensors
from tiny import tiny_model


def _semantic_only_model() -> SemantiCodecModel:
    base = tiny_model()
    model = SemantiCodecModel(replace(base.config, semantic_only_decoding=True), base.semantic.codebook).eval()
    model.load_state_dict(base.state_dict())
    return model


@pytest.fixture(scope="module")
def codec() -> SemantiCodec:
    return SemantiCodec(_semantic_only_model(), device="cpu", steps=2, seed=0)


@pytest.fixture(scope="module")
def encoded(codec: SemantiCodec) -> EncodedAudio:
    audio = (0.1 * np.random.RandomState(3).randn(40000)).astype(np.float32)
    return codec.encode(audio, 16000)


def test_context_has_a_zero_acoustic_part(codec: SemantiCodec, encoded: EncodedAudio) -> None:
    model = codec.model
    tokens = torch.from_numpy(encoded.tokens[:64])[None]
    valid = torch.tensor([60])
    cond, uncond = model.context(tokens, valid, semantic_only=True)
    full, _ = model.context(tokens, valid)
    d = model.config.feature_dim
    assert torch.count_nonzero(cond[0, :60, :d]) == 0 and torch.count_nonzero(full[0, :60, :d]) > 0
    assert torch.equal(cond[..., d:], full[..., d:])  # semantic part, padding marks, positions
    assert bool((cond[0, 60:, :d] == -1).all())


def test_decode_ignores_the_acoustic_ids(codec: SemantiCodec, encoded: EncodedAudio) -> None:
    semantic = encoded.tokens[:, 0]
    alone = codec.decode(semantic, semantic_only=True)
    shuffled = encoded.tokens.copy()
    shuffled[:, 1] = np.random.RandomState(0).randint(0, codec.config.acoustic_vocab_size, len(shuffled))
    np.testing.assert_array_equal(codec.decode(shuffled, semantic_only=True), alone)
    full = codec.decode(encoded.tokens)
    assert full.shape == alone.shape and not np.array_equal(full, alone)
    with pytest.raises(ValueError, match=r"\[T, 2\]"):
        codec.decode(semantic)


def test_models_not_trained_for_it_refuse(encoded: EncodedAudio) -> None:
    official_like = SemantiCodec(tiny_model(), device="cpu", steps=1, seed=0)
    with pytest.raises(ValueError, match="cannot decode semantic tokens alone"):
        official_like.decode(encoded.tokens[:, 0], semantic_only=True)
    with pytest.raises(ValueError, match="cannot decode semantic tokens alone"):
        StreamingDecoder(official_like, semantic_only=True)


def test_streaming_decoder_reads_the_semantic_layer(codec: SemantiCodec, encoded: EncodedAudio) -> None:
    from semanticodec.bitstream import encode

    data = encode(encoded.tokens, encoded.header())
    decoder = StreamingDecoder(codec, semantic_only=True)
    out = np.concatenate([decoder.push(data[i : i + 40]) for i in range(0, len(data), 40)] + [decoder.finish()])
    np.testing.assert_allclose(out, codec.decode(encoded, semantic_only=True), rtol=0, atol=1e-6)


def test_cli_decompress_semantic_only(codec: SemantiCodec, tmp_path, capsys) -> None:
    weights = tmp_path / "semantic.safetensors"
    save_safetensors(codec.model, weights)
    wav, scdc, out = tmp_path / "in.wav", tmp_path / "x.scdc", tmp_path / "out.wav"
    sf.write(wav, (0.1 * np.random.RandomState(4).randn(32000)).astype(np.float32), 16000)
    common = ["--checkpoint", str(weights), "--no-progress"]
    assert main(["compress", str(wav), str(scdc), "--semantic-vocab-size", "100", *common]) == 0
    assert main(["decompress", str(scdc), str(out), "--steps", "2", "--semantic-only", *common]) == 0
    header, semantic = read_file(scdc, layers="semantic")
    decoded, rate = sf.read(out, dtype="float32")
    expected = SemantiCodec(codec.model, device="cpu", steps=2, seed=0).decode(semantic, semantic_only=True)
    assert rate == 16000 and len(decoded) == header.sample_count == 32000
    np.testing.assert_allclose(decoded, np.clip(expected[:32000], -1, 1), atol=1e-4)

    plain = tmp_path / "plain.safetensors"
    save_safetensors(tiny_model(), plain)
    assert main(["compress", str(wav), str(tmp_path / "p.scdc"), "--semantic-vocab-size", "100", "--checkpoint", str(plain), "--no-progress"]) == 0
    refused = tmp_path / "refused.wav"
    capsys.readouterr()
    code = main(["decompress", str(tmp_path / "p.scdc"), str(refused), "--semantic-only", "--checkpoint", str(plain), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "cannot decode semantic tokens alone" in err and "Traceback" not in err
    assert not refused.exists()
