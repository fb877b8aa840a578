"""The codec API and the compress/decompress/convert commands, on a tiny model.

Numerical parity at full size is in ``test_codec_parity.py``; here a model of the same
architecture with tiny sizes checks windowing, batching, determinism, lengths, weights
files and error handling quickly.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import soundfile as sf
import torch

from semanticodec.audio import AudioError
from semanticodec.cli import main
from semanticodec.codec import EncodedAudio, SemantiCodec
from semanticodec.constants import WINDOW_SAMPLES
from semanticodec.model import SemantiCodecModel
from semanticodec.official import CheckpointError
from semanticodec.samplers import SAMPLERS
from semanticodec.weights import load_safetensors, open_state_dict, save_safetensors
from semanticodec.windows import join_windows, split_windows, window_generator
from tiny import tiny_config, tiny_model


@pytest.fixture(scope="module")
def codec() -> SemantiCodec:
    return SemantiCodec(tiny_model(), device="cpu", steps=2, seed=0)


def _noise(seconds: float, seed: int = 0, rate: int = 16000) -> np.ndarray:
    return (0.1 * np.random.RandomState(seed).randn(int(seconds * rate))).astype(np.float32)


@pytest.mark.parametrize("token_rate", [100, 50, 25])
def test_token_counts_and_vocabularies(token_rate: int) -> None:
    c = SemantiCodec(tiny_model(token_rate), device="cpu", steps=1, seed=0)
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
    other = SemantiCodec(codec.model, device="cpu", steps=2, seed=1).decode(b)
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
    expected = join_windows(list(whole), tokens.tokens.shape[0], 100, sample_count=tokens.sample_count_16k)
    np.testing.assert_allclose(codec.decode(tokens), expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_samplers_and_precision_options(codec: SemantiCodec, sampler: str) -> None:
    tokens = codec.encode(_noise(3.0, 8), 16000)
    fast = SemantiCodec(codec.model, device="cpu", sampler=sampler, steps=4, seed=0)
    assert (fast.sampler, fast.steps) == (sampler, 4)
    first = fast.decode(tokens)
    np.testing.assert_array_equal(first, fast.decode(tokens))
    assert not np.array_equal(first, SemantiCodec(codec.model, device="cpu", sampler=sampler, steps=4, seed=1).decode(tokens))
    half = SemantiCodec(codec.model, device="cpu", sampler=sampler, steps=4, seed=0, precision="bfloat16")
    reduced = half.decode(tokens)
    assert reduced.dtype == np.float32 and not np.array_equal(reduced, first)
    assert np.abs(reduced - first).max() < 0.1 * np.abs(first).max()
    mixed = SemantiCodec(codec.model, device="cpu", sampler=sampler, steps=4, seed=0, precision="mixed")
    latents = []
    original = codec.model.latent_to_waveform
    codec.model.latent_to_waveform = lambda latent, *args: latents.append(latent) or original(latent, *args)
    try:
        partly = mixed.decode(tokens)
        fast.decode(tokens)
    finally:
        codec.model.latent_to_waveform = original
    torch.testing.assert_close(latents[0], latents[1], rtol=0, atol=0)  # the UNet stays float32
    assert partly.dtype == np.float32 and not np.array_equal(partly, first)
    assert np.abs(partly - first).max() < 0.1 * np.abs(first).max()


def test_default_sampling_and_bad_options(codec: SemantiCodec) -> None:
    plain = SemantiCodec(codec.model, device="cpu")
    assert (plain.sampler, plain.steps, plain.precision) == ("ddim", 50, "float32")
    for options, message in (
        ({"sampler": "euler"}, "sampler must be one of ddim, dpmpp-2m, unipc"),
        ({"steps": 0}, "steps must be an int >= 1"),
        ({"precision": "int8"}, "precision must be one of float32, bfloat16, float16"),
    ):
        with pytest.raises(ValueError, match=message):
            SemantiCodec(codec.model, device="cpu", **options)


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
    tokens = SemantiCodec(encoder, device="cpu").encode(x, 16000)
    np.testing.assert_array_equal(tokens.tokens, codec.encode(x, 16000).tokens)
    with pytest.raises(ValueError, match="without its decoder"):
        SemantiCodec(encoder, device="cpu").decode(tokens)
    with pytest.raises(ValueError, match="without its decoder"):
        save_safetensors(encoder, tmp_path / "partial.safetensors")


def test_staged_weights_hold_one_encoder_part_and_give_the_same_tokens(codec: SemantiCodec, tmp_path) -> None:
    path = tmp_path / "tiny.safetensors"
    save_safetensors(codec.model, path)
    encoder = load_safetensors(path, with_decoder=False)
    assert encoder.stage_weights()

    def resident(part: str) -> int:
        return sum(v.numel() for k, v in encoder.state_dict().items() if k.startswith(part))

    assert resident("acoustic.") == 0 and resident("audiomae.") > 0  # AudioMAE runs first
    staged = SemantiCodec(encoder, device="cpu", batch_size=1)
    x = _noise(12.0, 12)  # two windows in two batches: AudioMAE over both, then the acoustic encoder
    expected = codec.encode(x, 16000).tokens
    for _ in range(2):
        np.testing.assert_array_equal(staged.encode(x, 16000).tokens, expected)
        assert resident("audiomae.") == 0 and resident("acoustic.") > 0
    for key, value in encoder.state_dict().items():
        if key.startswith("acoustic."):
            assert torch.equal(value, codec.model.state_dict()[key]), key
    path.write_bytes(path.read_bytes())  # the file changes under the process: refused, not misread
    with pytest.raises(CheckpointError, match="changed while in use"):
        staged.encode(x, 16000)
    assert not tiny_model().stage_weights()  # built in memory: nothing to read again


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
    official = SemantiCodec(codec.model, device="cpu", steps=1, compat="official")
    assert official.encode(x, 16000).tokens.shape[0] > 512


def test_resampled_and_stereo_input(codec: SemantiCodec, tmp_path) -> None:
    stereo = np.stack([_noise(2.0, 5, 44100), _noise(2.0, 6, 44100)])
    path = tmp_path / "stereo.flac"
    sf.write(path, stereo.T, 44100)
    from_file = codec.encode(str(path))
    assert from_file.sample_rate == 44100 and from_file.sample_count == 88200
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
        SemantiCodec(loaded, device="cpu").encode(x, 16000).tokens, codec.encode(x, 16000).tokens
    )
    with pytest.raises(CheckpointError, match="requested 50 tok/s"):
        SemantiCodec.from_pretrained(path, token_rate=50, semantic_vocab_size=100)
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
    common = ["--checkpoint", weights, "--no-progress"]
    assert main(["compress", str(wav), str(scdc), "--semantic-vocab-size", "100", *common]) == 0
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
    assert main(["compress", str(wav), str(wav), "--checkpoint", weights, "--semantic-vocab-size", "100", "--force"]) == 2
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
    assert main(["kmeans", "features", str(audio_dir), "--output", str(out), "--checkpoint", weights, "--no-progress"]) == 0
    np.testing.assert_allclose(np.load(next(out.glob("*.npy"))), features, rtol=0, atol=1e-6)


def test_field_conventions(codec: SemantiCodec, weights: str, tmp_path) -> None:
    pretrained = SemantiCodec.from_pretrained(weights, token_rate=100, semantic_vocab_size=100, device="cpu", steps=2, seed=0)
    assert pretrained.config == codec.config and (pretrained.steps, pretrained.guidance_scale, pretrained.seed) == (2, 2.0, 0)
    assert (codec.sample_rate, codec.token_rate, codec.frame_rate) == (16000, 100, 50.0)
    assert codec.bitrate == 50 * (7 + 6)  # 100 semantic ids: 7 bits, 64 acoustic ids: 6 bits
    encoded = codec.encode(_noise(3.0, 9, 22050), 22050)
    path = tmp_path / "x.scdc"
    assert encoded.save(path) == path.stat().st_size
    loaded = EncodedAudio.load(path)
    np.testing.assert_array_equal(loaded.tokens, encoded.tokens)
    assert (loaded.token_rate, loaded.semantic_vocab_size, loaded.acoustic_vocab_size, loaded.model_id) == (100, 100, 64, codec.model_id)
    assert (loaded.sample_count, loaded.sample_rate) == (66150, 22050)
    np.testing.assert_array_equal(codec.decode(loaded), codec.decode(encoded))
    with pytest.raises(FileExistsError):
        encoded.save(path, overwrite=False)


def test_old_spellings_still_work_with_a_deprecation_warning(codec: SemantiCodec, weights: str) -> None:
    x = _noise(2.0, 10)
    with pytest.warns(DeprecationWarning, match="from_pretrained"):
        old = SemantiCodec(100, 100, checkpoint=weights, device="cpu", seed=0)
    with pytest.warns(DeprecationWarning, match="steps="):
        assert SemantiCodec(codec.model, device="cpu", ddim_steps=3).steps == 3
    with pytest.warns(DeprecationWarning, match="guidance_scale="):
        assert SemantiCodec(codec.model, device="cpu", cfg_scale=1.5).guidance_scale == 1.5
    with pytest.warns(DeprecationWarning, match=r"SemantiCodec\(model"):
        wrapped = SemantiCodec.from_model(codec.model, device="cpu", steps=2, seed=0)
    encoded = old.encode(x, 16000)
    np.testing.assert_array_equal(encoded.tokens, codec.encode(x, 16000).tokens)
    np.testing.assert_array_equal(wrapped.decode(encoded), codec.decode(encoded))
    with pytest.warns(DeprecationWarning, match="sample_count"):
        assert encoded.num_samples == encoded.sample_count == 32000
    with pytest.raises(TypeError, match="unexpected keyword"):
        SemantiCodec(codec.model, sampling_steps=2)


def test_pe_dim_sets_the_width_of_the_decoder_context() -> None:
    base = tiny_config()
    config = dataclasses.replace(base, pe_dim=64, unet=dataclasses.replace(base.unet, context_dim=2 * base.feature_dim + 64))
    model = SemantiCodecModel(config, torch.randn(config.semantic_vocab_size, config.feature_dim))
    cond, uncond = model.context(torch.zeros(1, 512, 2, dtype=torch.int64), torch.tensor([512]))
    assert cond.shape[-1] == uncond.shape[-1] == 2 * base.feature_dim + 64
    assert np.isfinite(SemantiCodec(model, device="cpu", steps=1, seed=0).decode(np.zeros((8, 2), np.int64))).all()
