"""Stage report: Griffin-Lim reference, VAE round trip, the recorded decoder mel, the table."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import soundfile as sf
import torch

from benchmarks import data, metrics, stages
from parity import shared_path
from semanticodec.codec import SemantiCodec
from semanticodec.nn.vae import AutoencoderKL
from tiny import tiny_model

CLIP = "sense_and_sensibility_01_austen_64kb-0880.wav"  # 2.6 s LibriVox utterance


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    return sf.read(shared_path("audio", "speech", CLIP), dtype="float32")[0]


def test_griffin_lim_reconstructs_the_magnitudes_in_place(speech):
    """Same length as the input's whole frames and lined up with it: its mel is far closer
    to the input's than that of the same output shifted by 4 frames."""
    out = stages.griffin_lim(stages.true_mel(speech)[0].numpy())
    n = speech.size // 160 * 160
    assert out.shape == (n,) and np.isfinite(out).all()
    aligned = metrics.mel_distance(speech[:n], out)
    shifted = metrics.mel_distance(speech[:n], np.roll(out, 640))
    assert aligned < 1.0 < shifted


def test_vae_round_trip_and_recorder_shapes(speech):
    torch.manual_seed(0)
    model = tiny_model()
    vae = AutoencoderKL(model.config.vae, with_encoder=True).eval()
    mel = stages.true_mel(speech[:16_150])  # 100 frames: not a multiple of the VAE's factor
    with torch.inference_mode():
        out = stages.vae_round_trip(vae, mel)
    assert out.shape == mel.shape and torch.isfinite(out).all()
    recorder = stages.MelRecorder(model.vocoder)
    image = mel.transpose(1, 2)[:, None]
    with torch.inference_mode():
        wave = recorder.mel_to_waveform(image)
    assert torch.equal(recorder.mels[0], image) and torch.equal(wave, model.vocoder.mel_to_waveform(image))
    mixed = stages.MelRecorder(model.vocoder.bfloat16())  # a decoder in mixed precision: bfloat16 mels
    with torch.inference_mode():
        mixed.mel_to_waveform(image.bfloat16())
    assert mixed.mels[0].dtype == torch.float32 and torch.equal(mixed.mels[0], image.bfloat16().float())


def test_stage_outputs_with_the_tiny_model(speech):
    model = tiny_model()
    codec = SemantiCodec(model, steps=2, seed=0)
    outputs = stages.stage_outputs(speech, model, None, codec)
    assert list(outputs) == ["Griffin-Lim, true mel", "vocoder, true mel", "decoder", "decoder → Griffin-Lim"]
    assert outputs["decoder"].shape == outputs["decoder → Griffin-Lim"].shape == speech.shape
    assert model.vocoder.__class__.__name__ == "HiFiGAN"  # the recorder was taken out again
    assert set(stages.stage_outputs(speech, model, None)) == {"Griffin-Lim, true mel", "vocoder, true mel"}


def test_stage_outputs_decode_the_semantic_layer_alone_where_the_model_can(speech):
    model = tiny_model()
    model.config = replace(model.config, semantic_only_decoding=True)
    outputs = stages.stage_outputs(speech, model, None, SemantiCodec(model, steps=2, seed=0))
    assert set(outputs) == set(stages.ROWS) - {"VAE → vocoder", "VAE → Griffin-Lim"}
    assert outputs["decoder, semantic only"].shape == speech.shape
    assert not np.array_equal(outputs["decoder, semantic only"], outputs["decoder"])


def test_render_averages_per_domain():
    clips = [data.Clip("speech/a.wav", "speech", 2.0, None, "x", "y"), data.Clip("music/b.wav", "music", 3.0, None, "x", "y")]
    speech_row = {"visqol": 3.0, "mel": 1.0, "ovrl": 2.5, "sig": 2.9, "bak": 3.4, "p808": 3.0, "pesq": 1.5, "stoi": 0.8}
    results = {
        "original": {"speech/a.wav": {"ovrl": 3.1, "sig": 3.5, "bak": 3.8, "p808": 3.9}},
        "vocoder, true mel": {"speech/a.wav": speech_row, "music/b.wav": {"visqol": 2.0, "mel": 2.0}},
    }
    text = stages.render(results, clips, "cmd", 60.0, ["- note"], "## Stage report")
    assert "| vocoder, true mel | 3.00 | 1.00 | 2.50 | 2.90 | 3.40 | 3.00 | 1.50 | 0.800 |" in text
    assert "| vocoder, true mel | 2.00 | 2.00 |" in text
    assert "| original | 5.00 | 0.00 | 3.10 | 3.50 | 3.80 | 3.90 | – | 1.00 |" in text
