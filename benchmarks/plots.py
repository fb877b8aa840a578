"""PNG figures of the quality benchmark (needs matplotlib, in the ``bench`` extra)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from benchmarks.systems import PAPER_TABLE, System
from semanticodec.constants import SAMPLE_RATE
from semanticodec.features import slaney_mel_basis

TICKS_KBPS = (0.25, 0.5, 1, 2, 4, 8, 16)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def visqol_vs_bitrate(summaries: dict[str, dict[str, dict]], systems: list[System], path: str | Path) -> None:
    """ViSQOL (speech mode, 16 kHz) against actual kbps, one panel per domain; measured
    systems as filled markers joined per family, the paper's Table I as hollow markers.

    ``summaries[system name][domain]`` holds ``kbps`` and ``visqol``.
    """
    plt = _pyplot()
    domains = list(next(iter(summaries.values())))
    fig, axes = plt.subplots(1, len(domains), figsize=(5 * len(domains), 4), squeeze=False)
    families = sorted({s.family for s in systems if s.name in summaries} | {q.system for q in PAPER_TABLE})
    colours = {f: plt.cm.tab10(i % 10) for i, f in enumerate(families)}
    for ax, domain in zip(axes[0], domains):
        for family in families:
            measured = sorted(
                (summaries[s.name][domain]["kbps"], summaries[s.name][domain]["visqol"])
                for s in systems
                if s.family == family and s.name in summaries
            )
            if measured:
                ax.plot(*zip(*measured), "o-", color=colours[family], label=f"{family} (measured)")
            quoted = sorted((q.kbps, getattr(q, domain)[2]) for q in PAPER_TABLE if q.system == family)
            if quoted:
                ax.plot(*zip(*quoted), "o--", mfc="none", color=colours[family], label=f"{family} (paper)")
        ax.set_xscale("log")
        ax.set_xticks(TICKS_KBPS, [f"{t:g}" for t in TICKS_KBPS])
        ax.xaxis.set_minor_formatter(plt.NullFormatter())
        ax.set_xlabel("bitrate (kbps, log scale)")
        ax.set_ylabel("ViSQOL (speech mode, 16 kHz)")
        ax.set_title(domain)
        ax.grid(True, which="both", alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=8, loc="center right")
    fig.tight_layout(rect=(0, 0, 0.87, 1))
    fig.savefig(path, dpi=100)
    plt.close(fig)


def log_mel(audio: np.ndarray, n_fft: int = 1024, hop: int = 160, n_mels: int = 80) -> np.ndarray:
    """log10 mel power spectrogram ``[n_mels, frames]`` of 16 kHz audio ``[N]``."""
    x = torch.from_numpy(np.asarray(audio, dtype=np.float32))
    spec = torch.stft(x, n_fft, hop, window=torch.hann_window(n_fft), return_complex=True).abs() ** 2
    mel = slaney_mel_basis(n_fft, n_mels, SAMPLE_RATE, 0.0, SAMPLE_RATE / 2) @ spec
    return torch.log10(mel.clamp(min=1e-8)).numpy()


def spectrograms(
    examples: dict[str, str], originals: dict[str, np.ndarray], decoded: dict[str, dict[str, np.ndarray]], path: str | Path
) -> None:
    """Mel spectrograms of one clip per domain (rows): the original, then each system's decoding.

    ``examples``: domain → clip file; ``originals``: clip file → audio; ``decoded``:
    system name → clip file → audio.
    """
    plt = _pyplot()
    columns = ["original", *decoded]
    fig, axes = plt.subplots(len(examples), len(columns), figsize=(2.6 * len(columns), 2.4 * len(examples)), squeeze=False)
    for row, (domain, clip) in enumerate(examples.items()):
        reference = log_mel(originals[clip])
        low, high = reference.max() - 8, reference.max()
        for col, name in enumerate(columns):
            audio = originals[clip] if name == "original" else decoded[name][clip]
            ax = axes[row][col]
            ax.imshow(log_mel(audio), origin="lower", aspect="auto", vmin=low, vmax=high, cmap="magma")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(name if row == 0 else "", fontsize=8)
            if col == 0:
                ax.set_ylabel(f"{domain}\n{Path(clip).stem[:24]}", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=72)
    plt.close(fig)
