"""``compress``/``decompress`` with pipes (``-``) and in streaming mode, on the tiny model."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch

import semanticodec.commands.codec as commands
from semanticodec import bitstream
from semanticodec.cli import main
from semanticodec.codec import SemantiCodec
from semanticodec.weights import save_safetensors
from tiny import tiny_model

torch.set_num_threads(2)


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("weights") / "tiny.safetensors"
    save_safetensors(tiny_model(), path)
    return str(path)


@pytest.fixture(scope="module")
def codec(weights: str) -> SemantiCodec:
    return SemantiCodec.from_pretrained(weights, token_rate=100, semantic_vocab_size=100, device="cpu", steps=1, seed=0)


def _pcm(seconds: float, rate: int, channels: int, seed: int = 0) -> np.ndarray:
    noise = 0.2 * np.random.default_rng(seed).standard_normal((int(seconds * rate), channels))
    return (noise * 32767).astype("<i2")


def _run_pipe(weights: str, folder, feed: str, compress_options: str, decode_to: str) -> None:
    """``feed | compress - - | tee pipe.scdc | decompress - DECODE_TO`` in ``folder`` (the tiny model, 1 DDIM step)."""
    common = f"--checkpoint {weights} --no-progress"
    tool = f"{sys.executable} -m semanticodec"
    pipeline = (
        f"{feed} | {tool} compress - - --semantic-vocab-size 100 {compress_options} {common} | tee pipe.scdc "
        f"| {tool} decompress - {decode_to} --steps 1 {common}"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # The timeout only guards against a hang: two fresh processes import torch, which takes minutes on a busy machine.
    subprocess.run(["bash", "-o", "pipefail", "-c", pipeline], cwd=folder, env=env, check=True, timeout=600)


def test_pipe_compress_decompress(weights: str, codec: SemantiCodec, tmp_path) -> None:
    pcm = _pcm(2.0, 22050, 2)
    (tmp_path / "in.raw").write_bytes(pcm.tobytes())
    _run_pipe(weights, tmp_path, "cat in.raw", "--input-rate 22050 --channels 2", "- > out.wav")
    audio, rate = sf.read(tmp_path / "out.wav", dtype="float32")
    assert rate == 16000 and len(audio) == 13 * 2560
    header, tokens = bitstream.read_file(tmp_path / "pipe.scdc")
    assert header.sample_count == 0 and header.sample_rate == 22050
    np.testing.assert_array_equal(tokens, codec.encode(pcm.T.copy(), 22050).tokens)


@pytest.mark.skipif(shutil.which("sox") is None, reason="sox not installed")
def test_sox_wav_pipe(weights: str, codec: SemantiCodec, tmp_path) -> None:
    """The issue's pipeline: sox writes a WAV stream of unknown length into compress - -."""
    sf.write(tmp_path / "in.flac", _pcm(1.5, 44100, 2), 44100)
    _run_pipe(weights, tmp_path, "sox in.flac -t wav -", "", "out.wav")
    header, tokens = bitstream.read_file(tmp_path / "pipe.scdc")
    assert header.sample_rate == 44100
    audio, rate = sf.read(tmp_path / "in.flac", dtype="float32")
    np.testing.assert_array_equal(tokens, codec.encode(audio.T.copy(), rate).tokens)
    assert header.sample_count == 66150 and sf.info(tmp_path / "out.wav").frames == 24000


def test_streaming_file_paths_equal_offline(weights: str, tmp_path, monkeypatch, capsys) -> None:
    wav = tmp_path / "in.wav"
    sf.write(wav, _pcm(3.0, 16000, 1)[:, 0], 16000)
    common = ["--checkpoint", weights, "--no-progress", "--semantic-vocab-size", "100"]
    offline_scdc, stream_scdc = tmp_path / "offline.scdc", tmp_path / "stream.scdc"
    assert main(["compress", str(wav), str(offline_scdc), *common]) == 0
    decode = ["--checkpoint", weights, "--no-progress", "--steps", "1", "--original-rate"]
    assert main(["decompress", str(offline_scdc), str(tmp_path / "offline.flac"), *decode]) == 0
    monkeypatch.setattr(commands, "STREAM_SECONDS", 1.0)
    assert main(["compress", str(wav), str(stream_scdc), *common]) == 0
    assert stream_scdc.read_bytes() == offline_scdc.read_bytes()
    assert main(["decompress", str(stream_scdc), str(tmp_path / "stream.flac"), *decode]) == 0
    assert (tmp_path / "stream.flac").read_bytes() == (tmp_path / "offline.flac").read_bytes()
    assert main(["compress", str(wav), str(stream_scdc), *common]) == 2
    assert "--force" in capsys.readouterr().err


def test_decompress_conceals_damage(weights: str, tmp_path, monkeypatch, capsys) -> None:
    wav = tmp_path / "in.wav"
    sf.write(wav, _pcm(3.0, 16000, 1)[:, 0], 16000)
    scdc = tmp_path / "x.scdc"
    assert main(["compress", str(wav), str(scdc), "--checkpoint", weights, "--semantic-vocab-size", "100", "--no-progress", "--packet-columns", "1"]) == 0
    data = bytearray(scdc.read_bytes())
    data[bitstream.read_file(scdc)[0].size + 30] ^= 0xFF
    damaged = tmp_path / "damaged.scdc"
    damaged.write_bytes(bytes(data))
    out = tmp_path / "out.wav"
    decode = ["--checkpoint", weights, "--no-progress", "--steps", "1"]
    assert main(["decompress", str(damaged), str(out), *decode]) == 2
    assert "checksum" in capsys.readouterr().err and not out.exists()
    with open(damaged, "rb") as stdin:
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(stdin))
        assert main(["decompress", "-", str(out), *decode]) == 1
    err = capsys.readouterr().err
    assert "checksum mismatch" in err and "8 token pairs lost and concealed" in err
    assert len(sf.read(out)[0]) == 48000


def test_raw_input_errors(weights: str, tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"\x00\x01\x02")))
    out = tmp_path / "x.scdc"
    assert main(["compress", "-", str(out), "--checkpoint", weights, "--semantic-vocab-size", "100"]) == 2
    assert "needs --input-rate" in capsys.readouterr().err
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"\x00\x01\x02")))
    assert main(["compress", "-", str(out), "--checkpoint", weights, "--semantic-vocab-size", "100", "--input-rate", "16000"]) == 2
    assert "stray bytes" in capsys.readouterr().err and not out.exists()


def test_wav_stream_on_stdin_equals_the_file(weights: str, tmp_path, monkeypatch, capsys) -> None:
    wav = tmp_path / "in.wav"
    sf.write(wav, _pcm(2.0, 22050, 2), 22050, subtype="PCM_24")
    common = ["--checkpoint", weights, "--no-progress", "--semantic-vocab-size", "100"]
    from_file, from_pipe = tmp_path / "file.scdc", tmp_path / "pipe.scdc"
    assert main(["compress", str(wav), str(from_file), *common]) == 0
    with open(wav, "rb") as stdin:
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(stdin))
        assert main(["compress", "-", str(from_pipe), *common]) == 0
    header, tokens = bitstream.read_file(from_pipe)
    assert (header.sample_rate, header.sample_count) == (22050, 44100)
    np.testing.assert_array_equal(tokens, bitstream.read_file(from_file)[1])
    with open(wav, "rb") as stdin:
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(stdin))
        assert main(["compress", "-", str(tmp_path / "x.scdc"), *common, "--input-rate", "16000"]) == 2
    assert "contradicts the WAV header" in capsys.readouterr().err
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"fLaC" + bytes(100))))
    assert main(["compress", "-", str(tmp_path / "x.scdc"), *common]) == 2
    assert "FLAC/Ogg" in capsys.readouterr().err and not (tmp_path / "x.scdc").exists()


def test_compress_low_latency(weights: str, tmp_path) -> None:
    wav = tmp_path / "in.wav"
    sf.write(wav, _pcm(2.0, 16000, 1)[:, 0], 16000)
    out = tmp_path / "low.scdc"
    options = ["--checkpoint", weights, "--no-progress", "--semantic-vocab-size", "100", "--low-latency", "0.64", "--packet-columns", "1"]
    assert main(["compress", str(wav), str(out), *options]) == 0
    header, tokens = bitstream.read_file(out)
    assert header.packet_columns == 1 and header.sample_count == 32000 and tokens.shape == (13 * 8, 2)
    assert main(["compress", str(wav), str(tmp_path / "bad.scdc"), *options[:-4], "--low-latency", "0.1"]) == 2
