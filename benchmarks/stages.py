"""Stage report: where a SemantiCodec decoder loses quality, stage by stage, on held-out clips.

    python -m benchmarks.stages --quick                       # the bundled model on the quick corpus
    python -m benchmarks.stages --quick --vocoder run/vocoder/checkpoint.pt --vocoder-config cfg.json
    python -m benchmarks.stages --quick --vae run/vae/vae.safetensors --steps 25

Rows (each clip's reference is the input at 16 kHz):

- ``Griffin-Lim, true mel``: the input's decoder-domain mel (64 bins) inverted by 64 iterations
  of fast Griffin-Lim after a non-negative least-squares mel inversion: a fixed phase-retrieval
  reference with no training at all;
- ``vocoder, true mel``: the model's vocoder on the input's mel;
- ``VAE → vocoder`` / ``VAE → Griffin-Lim``: the mel through a VAE (posterior mean; ``--vae``,
  the VAE of a ``semanticodec train vae`` run, since inference weights hold no encoder) and
  then the vocoder or Griffin-Lim;
- ``decoder`` / ``decoder → Griffin-Lim``: the whole codec, tokens → diffusion → VAE →
  vocoder, and the same decoded mel inverted with Griffin-Lim;
- ``decoder, semantic only``: the semantic ids alone decoded (half the bitrate), for models
  trained for it (``config.semantic_only_decoding``).

Metrics: ViSQOL speech mode at 16 kHz (the paper's) and the DAC mel distance on every domain;
for speech also DNSMOS P.835 OVRL (with its SIG and BAK parts) and P.808 (no reference: they
hear phase artefacts that ViSQOL misses), PESQ-wb and STOI. The ``## Stage report`` section of ``benchmarks/RESULTS.md``
is rewritten; per-clip figures go to ``benchmarks/results/stages_<size>.json`` and, for the
first ``--plots`` clips of each domain, the mel spectrograms of the input and of every row to
``benchmarks/results/stages/<clip>.png``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import shlex
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from benchmarks import data, metrics
from benchmarks.report import cpu_model, replace_section
from semanticodec.commands import deprecated_alias
from semanticodec.features import MEL_HOP, MEL_N_FFT, mel64
from semanticodec.model import SemantiCodecModel

HERE = Path(__file__).resolve().parent
SECTION = "## Stage report"
GRIFFIN_LIM_ITERATIONS = 64

ROWS = (
    "Griffin-Lim, true mel",
    "vocoder, true mel",
    "VAE → vocoder",
    "VAE → Griffin-Lim",
    "decoder",
    "decoder → Griffin-Lim",
    "decoder, semantic only",
)


def griffin_lim(mel: np.ndarray, iterations: int = GRIFFIN_LIM_ITERATIONS) -> np.ndarray:
    """Audio ``[160 F]`` of a decoder-domain log-mel ``[64, F]`` (``mel64``, audioldm_train
    framing): NNLS inversion of the Slaney mel to an STFT magnitude, then fast Griffin-Lim
    (momentum 0.99, librosa) with the mel's STFT (n_fft 1024, hop 160, Hann). The mel's frame
    ``i`` is centred on sample ``160 i + 80`` and librosa's on ``160 i``: the output is shifted
    by 80 samples to line up with the audio the mel came from."""
    import librosa

    magnitude = librosa.feature.inverse.mel_to_stft(
        np.exp(mel.astype(np.float64)), sr=metrics.SAMPLE_RATE, n_fft=MEL_N_FFT, power=1.0, fmax=8000.0
    )
    audio = librosa.griffinlim(
        magnitude, n_iter=iterations, hop_length=MEL_HOP, win_length=MEL_N_FFT, n_fft=MEL_N_FFT, random_state=0
    )  # [160 (F - 1)]
    shift = MEL_HOP // 2
    return np.concatenate([np.zeros(shift), audio, np.zeros(MEL_HOP - shift)]).astype(np.float32)


def true_mel(audio: np.ndarray) -> torch.Tensor:
    """The decoder-domain mel ``[1, 64, N // 160]`` of 16 kHz audio ``[N]``."""
    return mel64(torch.from_numpy(audio)[None], framing="audioldm_train")


class MelRecorder(torch.nn.Module):
    """Wraps a model's vocoder and keeps every mel it is given (``[W, 1, frames, 64]``, as float32
    whatever precision the decoder runs in), so the decoded mel can also be inverted another way."""

    def __init__(self, vocoder: torch.nn.Module) -> None:
        super().__init__()
        self.vocoder = vocoder
        self.config = vocoder.config
        self.mels: list[torch.Tensor] = []

    def mel_to_waveform(self, mel: torch.Tensor, samples: int | None = None) -> torch.Tensor:
        self.mels.append(mel.detach().float().cpu())
        return self.vocoder.mel_to_waveform(mel, samples)


def load_vocoder(model: SemantiCodecModel, path: Path, config_json: Path | None) -> SemantiCodecModel:
    """``model`` with its vocoder replaced by the generator in ``path``: a training checkpoint
    (``checkpoint.pt`` of ``semanticodec train vocoder``) or exported ``vocoder.*`` weights
    (``.safetensors``); ``config_json`` (a ModelConfig JSON) gives its sizes when they differ
    from the model's."""
    from semanticodec.config import ModelConfig
    from semanticodec.nn.vocoder import build_vocoder
    from semanticodec.train.vocoder import checkpoint_weights
    from semanticodec.weights import load_state_dict

    vocoder_config = ModelConfig.from_json(config_json.read_text()).vocoder if config_json else model.config.vocoder
    if path.suffix == ".pt":
        state = checkpoint_weights(torch.load(path, map_location="cpu", weights_only=True, mmap=True), vocoder_config)
        if state is None:
            raise SystemExit(f"{path}: not the checkpoint.pt of a vocoder run")
    else:
        state = load_state_dict(path)
    vocoder = build_vocoder(vocoder_config)
    vocoder.load_state_dict({k[len("vocoder."):]: v.float() for k, v in state.items() if k.startswith("vocoder.")})
    model.vocoder = vocoder.eval()
    model.config = replace(model.config, vocoder=vocoder_config)
    return model


def load_vae(model: SemantiCodecModel, path: Path) -> torch.nn.Module:
    """The VAE (encoder and decoder) of ``path``: ``vae.safetensors`` or ``checkpoint.pt`` of
    ``semanticodec train vae``, with the model's VAE sizes."""
    from semanticodec.nn.vae import AutoencoderKL
    from semanticodec.weights import load_state_dict

    vae = AutoencoderKL(model.config.vae, with_encoder=True)
    if path.suffix == ".pt":
        vae.load_state_dict(torch.load(path, map_location="cpu", weights_only=True)["modules"]["vae"])
    else:
        state = load_state_dict(path)
        vae.load_state_dict({k[len("vae."):]: v.float() for k, v in state.items() if k.startswith("vae.")})
    return vae.eval()


def vae_round_trip(vae: torch.nn.Module, mel: torch.Tensor) -> torch.Tensor:
    """``mel`` ``[1, 64, F]`` through the VAE (posterior mean), ``[1, 64, F]``; frames are
    padded to the VAE's downsampling factor with the mel floor and cut again."""
    factor = vae.config.downsample_factor
    frames = mel.shape[2]
    padded = torch.nn.functional.pad(mel, (0, -frames % factor), value=float(mel.min()))
    image = padded.transpose(1, 2)[:, None]
    mean, _ = vae.encode(image)
    out = vae.decode(mean)
    return out[:, 0, :frames].transpose(1, 2)


def score(clip: data.Clip, reference: np.ndarray, decoded: np.ndarray, visqol: metrics.Visqol, dnsmos) -> dict:
    """Metrics of ``decoded`` (already sample-aligned with ``reference``; cut to the shorter)."""
    n = min(reference.size, decoded.size)
    ref, deg = reference[:n], decoded[:n].astype(np.float32)
    out = {"visqol": visqol(ref, deg), "mel": metrics.mel_distance(ref, deg)}
    if clip.domain == "speech":
        quality = dnsmos(np.clip(deg, -1, 1))
        out.update(quality, pesq=metrics.pesq_wb(ref, deg), stoi=metrics.stoi(ref, deg))
    return out


def stage_outputs(
    audio: np.ndarray,
    model: SemantiCodecModel,
    vae: torch.nn.Module | None,
    codec=None,
) -> dict[str, np.ndarray]:
    """Every row's audio for one clip ``[N]``; the decoder rows only with a ``codec``
    (:class:`~semanticodec.codec.SemantiCodec` around ``model``)."""
    from semanticodec.codec import join_windows

    mel = true_mel(audio)
    outputs: dict[str, np.ndarray] = {"Griffin-Lim, true mel": griffin_lim(mel[0].numpy())}
    with torch.inference_mode():
        outputs["vocoder, true mel"] = model.vocoder(mel)[0, 0].numpy()
        if vae is not None:
            through = vae_round_trip(vae, mel)
            outputs["VAE → vocoder"] = model.vocoder(through)[0, 0].numpy()
            outputs["VAE → Griffin-Lim"] = griffin_lim(through[0].numpy())
        if codec is None:
            return outputs
        recorder = MelRecorder(model.vocoder)
        model.vocoder = recorder
        try:
            encoded = codec.encode(audio, sample_rate=metrics.SAMPLE_RATE)
            outputs["decoder"] = codec.decode(encoded)
        finally:
            model.vocoder = recorder.vocoder
        if model.config.semantic_only_decoding:
            outputs["decoder, semantic only"] = codec.decode(encoded, semantic_only=True)
    windows = [torch.from_numpy(griffin_lim(m[0, 0].T.numpy())) for batch in recorder.mels for m in batch.split(1)]
    outputs["decoder → Griffin-Lim"] = join_windows(
        windows, encoded.tokens.shape[0], codec.config.token_rate, codec.compat, encoded.sample_count_16k
    )
    return outputs


def render(results: dict, clips: list[data.Clip], command: str, elapsed: float, notes: list[str], heading: str) -> str:
    """The Markdown of the stage report."""
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        heading,
        "",
        f"Produced by `{command}` on {now}; machine: {platform.system()} {cpu_model()}, Python "
        f"{platform.python_version()}; {elapsed / 60:.1f} min in all. Tables are the command's output, unedited.",
        "",
        *notes,
        "",
    ]
    for domain in data.DOMAINS:
        names = [c.file for c in clips if c.domain == domain]
        if not names:
            continue
        speech = domain == "speech"
        seconds = sum(c.duration for c in clips if c.domain == domain)
        lines += [f"### {domain.capitalize()} ({len(names)} clips, {seconds:.0f} s)", ""]
        head = "| stage | ViSQOL ↑ | MEL ↓ |" + (" DNSMOS OVRL ↑ | SIG ↑ | BAK ↑ | P.808 ↑ | PESQ-wb ↑ | STOI ↑ |" if speech else "")
        lines += [head, "|---|" + "---:|" * (8 if speech else 2)]
        keys = ("visqol", "mel", "ovrl", "sig", "bak", "p808", "pesq", "stoi") if speech else ("visqol", "mel")
        if speech:
            original = [results["original"][n] for n in names]
            lines.append("| original | 5.00 | 0.00 | " + " | ".join(
                f"{np.nanmean([o[k] for o in original]):.2f}" for k in ("ovrl", "sig", "bak", "p808")) + " | – | 1.00 |")
        for row in ROWS:
            figures = [results[row][n] for n in names if n in results.get(row, {})]
            if not figures:
                continue
            lines.append(f"| {row} | " + " | ".join(f"{np.nanmean([f[k] for f in figures]):.{3 if k == 'stoi' else 2}f}" for k in keys) + " |")
        lines.append("")
    return "\n".join(lines)


def plot(path: Path, reference: np.ndarray, outputs: dict[str, np.ndarray], title: str) -> None:
    """Log-mel spectrograms of the input and of every row, stacked, on one colour scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("input", reference), *outputs.items()]
    fig, axes = plt.subplots(len(panels), 1, figsize=(10, 1.6 * len(panels)), sharex=True)
    first = true_mel(reference)[0].numpy()
    low, high = float(first.max()) - 11.0, float(first.max())
    for ax, (name, audio) in zip(axes, panels):
        ax.imshow(true_mel(audio.astype(np.float32))[0].numpy(), origin="lower", aspect="auto", vmin=low, vmax=high, cmap="magma")
        ax.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=8)
        ax.set_yticks([])
    axes[0].set_title(title, fontsize=9)
    axes[-1].set_xlabel("frame (10 ms)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.stages", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the quick corpus (11 clips) instead of the full one")
    parser.add_argument("--corpus", type=Path, help="a corpus folder with manifest.json (default: built on demand)")
    parser.add_argument("--domains", nargs="+", choices=data.DOMAINS, default=list(data.DOMAINS))
    parser.add_argument("--model", type=Path, help="model weights (.safetensors; default: the bundled model)")
    parser.add_argument("--vocoder", type=Path, help="replace the model's vocoder: checkpoint.pt of `train vocoder` or .safetensors")
    parser.add_argument("--vocoder-config", type=Path, help="ModelConfig JSON whose vocoder describes --vocoder")
    parser.add_argument("--vae", type=Path, help="VAE with its encoder: vae.safetensors or checkpoint.pt of `train vae`")
    parser.add_argument("--sampler", help="sampler of the decoder rows (default: the model's default)")
    parser.add_argument("--steps", type=int, help="diffusion steps of the decoder rows (default: the model's default)")
    parser.add_argument("--guidance-scale", type=float, default=2.0, help="classifier-free guidance of the decoder rows (default %(default)g, official)")
    parser.add_argument("--no-decoder", action="store_true", help="skip the decoder rows (the costly part)")
    parser.add_argument("--plots", type=int, default=2, help="spectrogram PNGs for the first N clips of each domain")
    parser.add_argument("--results", type=Path, default=HERE / "RESULTS.md")
    output = parser.add_argument("-o", "--output", dest="out", type=Path, default=HERE / "results", help="folder for the JSON and the PNGs")
    deprecated_alias(parser, "--out", output)
    parser.add_argument("--section", default=SECTION[3:], help="title of the RESULTS.md section to write")
    raw_args = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(raw_args)
    began = time.perf_counter()

    from semanticodec.codec import SemantiCodec
    from semanticodec.weights import load_model, load_safetensors

    size = "quick" if args.quick else "full"
    corpus = args.corpus or data.default_corpus_dir(size)
    if args.corpus is None and not (corpus / "manifest.json").is_file():
        data.build_corpus(corpus, size)
    clips = [c for c in data.read_manifest(corpus) if c.domain in args.domains]
    model = load_safetensors(args.model) if args.model else load_model()
    if args.vocoder:
        model = load_vocoder(model, args.vocoder, args.vocoder_config)
    model.eval()
    vae = load_vae(model, args.vae) if args.vae else None
    codec = SemantiCodec(model, sampler=args.sampler, steps=args.steps, guidance_scale=args.guidance_scale, seed=0)

    visqol, dnsmos = metrics.Visqol("speech"), metrics.DNSMOS()
    results: dict[str, dict[str, dict]] = {"original": {}}
    plotted: dict[str, int] = {}
    for clip in clips:
        audio = sf.read(corpus / clip.file, dtype="float32")[0]
        if clip.domain == "speech":
            results["original"][clip.file] = dnsmos(audio)
        outputs = stage_outputs(audio, model, vae, None if args.no_decoder else codec)
        for row, decoded in outputs.items():
            results.setdefault(row, {})[clip.file] = score(clip, audio, decoded, visqol, dnsmos)
        summary = ", ".join(f"{row} {results[row][clip.file]['visqol']:.2f}" for row in outputs)
        print(f"{clip.file}: ViSQOL {summary}", file=sys.stderr)
        if plotted.get(clip.domain, 0) < args.plots:
            plotted[clip.domain] = plotted.get(clip.domain, 0) + 1
            name = Path(clip.file).stem
            plot(args.out / "stages" / f"{name}.png", audio, outputs, f"{clip.file} ({clip.domain})")

    shown = ["…" if previous in ("--model", "--vocoder", "--vae", "--vocoder-config", "--corpus") else a
             for previous, a in zip(["", *raw_args], raw_args)]
    command = shlex.join(["python", "-m", "benchmarks.stages", *shown])
    notes = [
        f"- Model: {model.config.name} ({'vocoder replaced: ' + args.vocoder.name if args.vocoder else 'as shipped'}); "
        f"decoder rows: sampler {codec.sampler}, {codec.steps} steps, guidance {codec.guidance_scale:g}, seed 0; "
        f"Griffin-Lim: {GRIFFIN_LIM_ITERATIONS} iterations.",
        "- ViSQOL: v3 speech mode, 16 kHz, polynomial mapping (identical audio 5.00); MEL: DAC multi-scale mel distance; "
        "DNSMOS: P.835 OVRL (non-personalised) and P.808, no reference; PESQ-wb and STOI against the input.",
    ]
    section = render(results, clips, command, time.perf_counter() - began, notes, f"## {args.section}")
    document = args.results.read_text() if args.results.is_file() else "# Benchmark results\n"
    args.results.write_text(replace_section(document, section))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"stages_{size}.json").write_text(json.dumps(results, indent=1) + "\n")
    print(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
