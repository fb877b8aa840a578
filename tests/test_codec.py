"""The codec API and the compress/decompress/convert commands, on a tiny model.

Numerical parity at full size is in ``test_codec_parity.py``; here a model of the same
architecture with tiny sizes checks windowing, batching, determinism, lengths, weights
files and error handling quickly.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch

from semanticodec.audio import AudioError
from semanticodec.checkpoint import CheckpointError, open_state_dict
from semanticodec.cli import main
from semanticodec.codec import WINDOW_SAMPLES, EncodedAudio, SemantiCodec, join_windows, window_generator
from semanticodec.conditioning import split_windows
from semanticodec.samplers import SAMPLERS
from semanticodec.weights import load_safetensors, save_safetensors
from tiny import tiny_model


@pytest.fixture(scope="module")
def codec() -> SemantiCodec:
    return SemantiCodec.from_model(tiny_model(), device="cpu", steps=2, seed=0)


def _noise(seconds: float, seed: int = 0, rate: int = 16000) -> np.ndarray:
    return (0.1 * np.random.RandomState(seed).randn(int(seconds * rate))).astype(np.float32)


@pytest.mark.parametrize("token_rate", [100, 50, 25])
def test_token_counts_and_vocabularies(token_rate: int) -> None:
    c = SemantiCodec.from_model(tiny_model(token_rate), device="cpu", steps=1, seed=0)
    out = c.encode(_noise(3.0), 16000)
    expected = {100: 152, 50: 76, 25: 40}[token_rate]  # 3 s = 18.75 columns of 0.16 s
    assert out.tokens.shape == (expected, 2) and out.tokens.dtype == np.int64
    assert out.tokens[:, 0].max() < 100 and out.tokens[:, 1].max() < 64 and out.tokens.min() >= 0
    audio = c.decode(out)
    assert audio.shape == (48000,) and audio.dtype == np.float32 and np.isfinite(audio).all()


def test_batched_encode_equals_single(codec: SemantiCodec) -> None:
    a, b = _noise(12.5, 1), _noise(4.0, 2)
    batch = codec.encode([a, b], sample_rate=16000)
    for item, single in zip(batch, (a, b)):
        np.testing.assert_array_equal(item.tokens, codec.encode(single, 16000).tokens)


def test_seeded_decode_is_deterministic_and_batch_independent(codec: SemantiCodec) -> None:
    a, b = codec.encode([_noise(11.0, 3), _noise(2.0, 4)], sample_rate=16000)
    first = codec.decode([a, b])
    np.testing.assert_array_equal(first[1], codec.decode([a, b])[1])
    np.testing.assert_allclose(first[0], codec.decode(a), rtol=0, atol=1e-6)  # batched BLAS rounding only
    assert first[0].shape == (176000,) and first[1].shape == (32000,)
    other = SemantiCodec.from_model(codec.model, device="cpu", steps=2, seed=1).decode(b)
    assert not np.array_equal(other, first[1])


@torch.inference_mode()
def test_decode_skips_vocoder_work_past_the_valid_tokens(codec: SemantiCodec) -> None:
    """The last, partial window's vocoder pass covers its valid tokens only; the audio equals
    that of the whole window's pass."""
    tokens = codec.encode(_noise(12.0, 7), 16000)
    windows, valid = split_windows(torch.from_numpy(tokens.tokens)[None], window=codec.config.tokens_per_window)
    assert valid.tolist() == [512, 120]
    gens = [window_generator(0, w) for w in range(2)]
    args = (windows[0], valid, 2, 2.0, 1.0)
    whole = codec.model.decode_windows(*args, generators=gens)
    gens = [window_generator(0, w) for w in range(2)]
    trimmed = codec.model.decode_windows(*args, generators=gens, valid_only=True)
    assert not trimmed[1, 120 * 320 :].any()
    torch.testing.assert_close(trimmed[0], whole[0], rtol=0, atol=1e-6)  # one window per vocoder call: BLAS rounding
    torch.testing.assert_close(trimmed[1, : 120 * 320], whole[1, : 120 * 320], rtol=0, atol=1e-6)
    expected = join_windows(list(whole), tokens.tokens.shape[0], 100, num_samples=tokens.num_samples_16k)
    np.testing.assert_allclose(codec.decode(tokens), expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_samplers_and_precision_options(codec: SemantiCodec, sampler: str) -> None:
    tokens = codec.encode(_noise(3.0, 8), 16000)
    fast = SemantiCodec.from_model(codec.model, device="cpu", sampler=sampler, steps=4, seed=0)
    assert (fast.sampler, fast.steps) == (sampler, 4)
    first = fast.decode(tokens)
    np.testing.assert_array_equal(first, fast.decode(tokens))
    assert not np.array_equal(first, SemantiCodec.from_model(codec.model, device="cpu", sampler=sampler, steps=4, seed=1).decode(tokens))
    half = SemantiCodec.from_model(codec.model, device="cpu", sampler=sampler, steps=4, seed=0, precision="bfloat16")
    reduced = half.decode(tokens)
    assert reduced.dtype == np.float32 and not np.array_equal(reduced, first)
    assert np.abs(reduced - first).max() < 0.1 * np.abs(first).max()


def test_default_sampling_and_bad_options(codec: SemantiCodec) -> None:
    plain = SemantiCodec.from_model(codec.model, device="cpu")
    assert (plain.sampler, plain.steps, plain.precision) == ("ddim", 50, "float32")
    for options, message in (
        ({"sampler": "euler"}, "sampler must be one of ddim, dpmpp-2m, unipc"),
        ({"steps": 0}, "steps must be an int >= 1"),
        ({"precision": "int8"}, "precision must be one of float32, bfloat16, float16"),
    ):
        with pytest.raises(ValueError, match=message):
            SemantiCodec.from_model(codec.model, device="cpu", **options)


def test_encoder_only_model_loads_and_encodes_without_the_decoder(codec: SemantiCodec, tmp_path) -> None:
    path = tmp_path / "tiny.safetensors"
    save_safetensors(codec.model, path)
    full = load_safetensors(path)
    encoder = load_safetensors(path, with_decoder=False)
    assert not hasattr(encoder, "unet") and not hasattr(encoder, "vocoder")
    assert {k.split(".")[0] for k in encoder.state_dict()} == {"audiomae", "acoustic"}
    for key, value in encoder.state_dict().items():
        assert torch.equal(value, full.state_dict()[key]), key
    x = _noise(4.0, 11)
    tokens = SemantiCodec.from_model(encoder, device="cpu").encode(x, 16000)
    np.testing.assert_array_equal(tokens.tokens, codec.encode(x, 16000).tokens)
    with pytest.raises(ValueError, match="without its decoder"):
        SemantiCodec.from_model(encoder, device="cpu").decode(tokens)
    with pytest.raises(ValueError, match="without its decoder"):
        save_safetensors(encoder, tmp_path / "partial.safetensors")


def test_load_weights_takes_memory_mapped_tensors_without_copying(codec: SemantiCodec, tmp_path) -> None:
    state = {k: v.clone() for k, v in codec.model.state_dict().items() if k.startswith("acoustic.")}
    torch.save(state, tmp_path / "acoustic.ckpt")
    mapped = open_state_dict(tmp_path / "acoustic.ckpt")
    model = tiny_model()
    with torch.no_grad():
        model.acoustic.encoder_output_linear.weight.zero_()
    model.load_weights(mapped, ("acoustic.",), take=True)
    weight = model.acoustic.encoder_output_linear.weight
    assert isinstance(weight, torch.nn.Parameter) and torch.equal(weight, state["acoustic.encoder_output_linear.weight"])
    assert weight.data_ptr() == mapped["acoustic.encoder_output_linear.weight"].data_ptr()
    copied = tiny_model()
    copied.load_weights(mapped, ("acoustic.",))
    assert copied.acoustic.encoder_output_linear.weight.data_ptr() != mapped["acoustic.encoder_output_linear.weight"].data_ptr()


def test_exact_window_multiple_and_compat(codec: SemantiCodec) -> None:
    x = _noise(WINDOW_SAMPLES / 16000)
    assert codec.encode(x, 16000).tokens.shape == (512, 2)
    official = SemantiCodec.from_model(codec.model, device="cpu", steps=1, compat="official")
    assert official.encode(x, 16000).tokens.shape[0] > 512


def test_resampled_and_stereo_input(codec: SemantiCodec, tmp_path) -> None:
    stereo = np.stack([_noise(2.0, 5, 44100), _noise(2.0, 6, 44100)])
    path = tmp_path / "stereo.flac"
    sf.write(path, stereo.T, 44100)
    from_file = codec.encode(str(path))
    assert from_file.sample_rate == 44100 and from_file.num_samples == 88200
    assert codec.decode(from_file).shape == (32000,)
    from_array = codec.encode(torch.from_numpy(stereo), sample_rate=44100)
    assert from_array.tokens.shape == from_file.tokens.shape


def test_bad_inputs_are_clear_errors(codec: SemantiCodec) -> None:
    with pytest.raises(AudioError, match="NaN"):
        codec.encode(np.array([0.0, np.nan], np.float32), 16000)
    with pytest.raises(AudioError, match="empty"):
        codec.encode(np.zeros(0, np.float32), 16000)
    with pytest.raises(ValueError, match="sample_rate is required"):
        codec.encode(np.zeros(100, np.float32))
    with pytest.raises(ValueError, match=r"semantic token ids must lie in \[0, 100\)"):
        codec.decode(np.array([[100, 0]]))
    with pytest.raises(ValueError, match=r"acoustic token ids must lie in \[0, 64\)"):
        codec.decode(np.array([[0, -1]]))
    with pytest.raises(ValueError, match=r"\[T, 2\]"):
        codec.decode(np.zeros((0, 2), np.int64))
    foreign = EncodedAudio(np.zeros((8, 2), np.int64), 100, 100, 64, b"\x01" * 16, 2560, 16000)
    with pytest.raises(ValueError, match="another model"):
        codec.decode(foreign)


def test_safetensors_round_trip(codec: SemantiCodec, tmp_path) -> None:
    path = tmp_path / "tiny.safetensors"
    save_safetensors(codec.model, path)
    loaded = load_safetensors(path)
    assert loaded.config == codec.config
    for key, value in codec.model.state_dict().items():
        if not key.startswith(("vae.encoder.", "vae.quant_conv.")):
            torch.testing.assert_close(loaded.state_dict()[key], value, rtol=0, atol=0)
    with pytest.raises(FileExistsError):
        save_safetensors(codec.model, path)
    half = tmp_path / "tiny16.safetensors"
    save_safetensors(codec.model, half, dtype="float16")
    assert half.stat().st_size < 0.6 * path.stat().st_size
    x = _noise(1.0)
    np.testing.assert_array_equal(
        SemantiCodec.from_model(loaded, device="cpu").encode(x, 16000).tokens, codec.encode(x, 16000).tokens
    )
    with pytest.raises(CheckpointError, match="requested 50 tok/s"):
        SemantiCodec(50, 100, checkpoint=path)
    other = tmp_path / "other.safetensors"
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(1)}, str(other))
    with pytest.raises(CheckpointError, match="not a semanticodec weights file"):
        load_safetensors(other)


@pytest.fixture(scope="module")
def weights(codec: SemantiCodec, tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("weights") / "tiny.safetensors"
    save_safetensors(codec.model, path)
    return str(path)


def test_cli_compress_info_decompress(weights: str, tmp_path, capsys) -> None:
    wav = tmp_path / "in.wav"
    sf.write(wav, _noise(3.0, 7, 22050), 22050)
    scdc, out = tmp_path / "x.scdc", tmp_path / "out.wav"
    common = ["--checkpoint", weights, "--quiet"]
    assert main(["compress", str(wav), str(scdc), "--vocab", "100", *common]) == 0
    assert main(["info", str(scdc), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["token_rate"] == 100 and info["sample_rate"] == 22050
    assert main(["decompress", str(scdc), str(out), "--steps", "2", *common]) == 0
    audio, rate = sf.read(out)
    assert rate == 16000 and len(audio) == 48000
    assert main(["decompress", str(scdc), str(out), "--steps", "2", *common]) == 2
    assert "--force" in capsys.readouterr().err
    resampled = tmp_path / "orig.flac"
    assert main(["decompress", str(scdc), str(resampled), "--steps", "1", "--original-rate", *common]) == 0
    audio, rate = sf.read(resampled)
    assert rate == 22050 and len(audio) == 3 * 22050


def test_cli_refuses_bad_input_without_leaving_files(weights: str, tmp_path, capsys) -> None:
    wav = tmp_path / "in.wav"
    sf.write(wav, _noise(1.0), 16000)
    before = wav.read_bytes()
    assert main(["compress", str(wav), str(wav), "--checkpoint", weights, "--vocab", "100", "--force"]) == 2
    assert wav.read_bytes() == before
    broken = tmp_path / "broken.scdc"
    broken.write_bytes(b"SCDC" + bytes(30))
    out = tmp_path / "out.wav"
    assert main(["decompress", str(broken), str(out), "--checkpoint", weights]) == 2
    assert not out.exists()
    assert main(["compress", str(tmp_path / "missing.wav"), str(tmp_path / "m.scdc"), "--checkpoint", weights]) == 2
    assert main(["compress", str(wav), str(tmp_path / "w.scdc"), "--checkpoint", str(tmp_path / "none.safetensors")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "no such audio file" in err and "not found" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.scdc", "in.wav"]


def test_semantic_features_give_the_semantic_tokens(codec: SemantiCodec, weights: str, tmp_path) -> None:
    x = _noise(12.0, 8)
    features = codec.semantic_features(x, 16000)
    tokens = codec.encode(x, 16000).tokens
    assert features.shape == (tokens.shape[0], codec.config.feature_dim) and features.dtype == np.float32
    ids = codec.model.semantic.quantize(torch.from_numpy(features)[None])[0].numpy()
    np.testing.assert_array_equal(ids, tokens[:, 0])
    audio_dir = tmp_path / "audio"
    audio_dir.mkdir()
    sf.write(audio_dir / "a.wav", x, 16000, subtype="FLOAT")
    out = tmp_path / "shards"
    assert main(["kmeans", "features", str(audio_dir), "--out", str(out), "--checkpoint", weights, "--quiet"]) == 0
    np.testing.assert_allclose(np.load(next(out.glob("*.npy"))), features, rtol=0, atol=1e-6)
