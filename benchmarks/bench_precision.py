"""Deviation of a bfloat16 VAE decoder and vocoder from float32, on real audio.

Encodes clips of ``../shared/audio`` (each domain, first 10.24 s) with the bundled model,
samples their latents once in float32 (the model's default sampler, seed 0), then turns each
latent into a waveform with the VAE decoder and the vocoder in float32 and under bfloat16
autocast (``--precision bfloat16``): both, the VAE alone, the vocoder alone. Prints, per clip
and variant, the waveform SNR against float32 and the multi-scale mel distance to float32. For
scale: the codec's own mel distance (float32 decode against the input), and the distance
between two float32 decodes of the same tokens with different seeds (the spread of the
generative decoder itself, row "seed 1"). Every row also gives ViSQOL (speech mode, against
the input) and, for speech, DNSMOS P.835 OVRL of its waveform, so that the quality cost of
bfloat16 reads on the metrics the sampler table uses (row "float32": the float32 decode).

The bundled model is a real trained one (VAE of width 32-128, Vocos vocoder); the official
HiFi-GAN has no trained weights here, so its bfloat16 deviation is only the numerical figure
of ``python -m benchmarks.bench_decode --stages`` (fill weights).

    python -m benchmarks.bench_precision --per-domain 2
"""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path

import numpy as np
import torch

from benchmarks import metrics
from semanticodec.audio import load_audio
from semanticodec.codec import SemantiCodec
from semanticodec.constants import SAMPLE_RATE
from semanticodec.released import DEFAULT_MODEL
from semanticodec.weights import load_safetensors

AUDIO = Path(__file__).resolve().parents[1].parent / "shared" / "audio"
VARIANTS = {"both": ("vae", "vocoder"), "vae only": ("vae",), "vocoder only": ("vocoder",)}
"""Which stages run under bfloat16 autocast in each variant."""


def snr_db(reference: np.ndarray, other: np.ndarray) -> float:
    """``10 log10(|reference|^2 / |reference - other|^2)``, in dB."""
    return float(10 * np.log10(np.sum(reference.astype(np.float64) ** 2) / np.sum((reference - other).astype(np.float64) ** 2)))


def waveform(model, latent: torch.Tensor, bf16_stages: tuple[str, ...]) -> np.ndarray:
    """Float32 waveform ``[N]`` of one latent ``[1, 8, 256, 16]``; ``bf16_stages`` under bfloat16 autocast."""

    def precision(stage: str) -> contextlib.AbstractContextManager:
        return torch.autocast("cpu", dtype=torch.bfloat16) if stage in bf16_stages else contextlib.nullcontext()

    with torch.inference_mode():
        with precision("vae"):
            mel = model.vae.decode(latent / model.schedule.scale_factor).float()
        with precision("vocoder"):
            return model.vocoder.mel_to_waveform(mel)[0, 0].float().numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-domain", type=int, default=2, help="clips per domain (speech, music, sound)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = load_safetensors(DEFAULT_MODEL).eval()
    codec = SemantiCodec(model, device="cpu", seed=0)
    other_seed = SemantiCodec(model, device="cpu", seed=1)
    latents: list[torch.Tensor] = []
    original = model.latent_to_waveform

    def capture(latent, valid_len=None, dtype=None):
        latents.append(latent.clone())
        return original(latent, valid_len, dtype)

    model.latent_to_waveform = capture
    print(f"bundled model, sampler {codec.sampler} {codec.steps}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    visqol, dnsmos = metrics.Visqol("speech"), metrics.DNSMOS()
    print("\n| clip | codec mel dist. (fp32 vs input) | variant | SNR vs fp32 dB | mel dist. vs fp32 | ViSQOL | DNSMOS OVRL |"
          "\n|---|---:|---|---:|---:|---:|---:|")
    for domain in ("speech", "music", "sound"):
        for path in sorted((AUDIO / domain).glob("*.*"))[: args.per_domain]:
            audio = load_audio(path)[: int(10.24 * SAMPLE_RATE)]
            latents.clear()
            tokens = codec.encode(audio, SAMPLE_RATE)
            decoded = codec.decode(tokens)
            other_seed.decode(tokens)
            model.latent_to_waveform = original
            reference = waveform(model, latents[0], ())
            others = {"float32": reference} | {variant: waveform(model, latents[0], stages) for variant, stages in VARIANTS.items()}
            others["seed 1"] = waveform(model, latents[1], ())
            model.latent_to_waveform = capture
            n = min(len(audio), len(decoded))
            own = metrics.mel_distance(audio[:n], decoded[:n])
            for variant, other in others.items():
                m = min(len(audio), len(other))
                quality = dnsmos(np.clip(other, -1, 1))["ovrl"] if domain == "speech" else float("nan")
                snr = snr_db(reference, other) if variant != "float32" else float("inf")
                print(f"| {domain}/{path.name} | {own:.3f} | {variant} | {snr:.1f} | {metrics.mel_distance(reference, other):.4f} "
                      f"| {visqol(audio[:m], other[:m]):.2f} | {quality:.2f} |", flush=True)


if __name__ == "__main__":
    main()
