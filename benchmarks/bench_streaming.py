"""Streaming measurements: token agreement, decode speed, window-join discontinuity, peak memory.

    python benchmarks/bench_streaming.py agreement   # full-size deterministic weights (../shared/reference)
    python benchmarks/bench_streaming.py decode      # full-size decoder: seconds per window, real-time factor
    python benchmarks/bench_streaming.py seam        # tiny model: discontinuity at window joins
    python benchmarks/bench_streaming.py memory      # tiny model, CLI in pipes: peak RSS for long inputs
    python benchmarks/bench_streaming.py quality     # trained model: low-latency tokens and ViSQOL vs offline
    python benchmarks/bench_streaming.py loss        # trained model: ViSQOL under 1/5/10 % packet loss
    python benchmarks/bench_streaming.py speed       # trained model: streaming decode real-time factor

Every section prints a Markdown table. The full-size model gets the deterministic ``fill``
weights of the reference set (no official checkpoint is available here), so its token
agreement is a mechanical figure; ``quality``, ``loss`` and ``speed`` use trained weights
(``--checkpoint``, default: the model :func:`semanticodec.weights.load_model` picks — the
bundled one here) on the held-out quick benchmark corpus, each domain's clips joined into
one signal.
"""

from __future__ import annotations

import argparse
import functools
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from semanticodec.audio import load_audio  # noqa: E402
from semanticodec.codec import SemantiCodec  # noqa: E402
from semanticodec.constants import HOP_SAMPLES, OVERLAP_SAMPLES  # noqa: E402
from semanticodec.streaming import LowLatencyConfig, StreamingDecoder, StreamingEncoder  # noqa: E402
from semanticodec.windows import split_windows  # noqa: E402

SHARED = ROOT.parent / "shared"
CLIPS = (
    "speech/sense_and_sensibility_01_austen_64kb-0870.wav",
    "speech/asterisk_demo-congrats.wav",
    "music/freedoom1_D_E1M1_12s.wav",
    "music/freedoom1_D_E1M4_44k_stereo_10s.wav",
    "sound/loop_amen.flac",
)


class _Filled(Mapping):
    """Official state dict made on access by the deterministic fill (kept entries from the reference)."""

    def __init__(self, part: str, kept: dict[str, np.ndarray]) -> None:
        from semanticodec.official import official_schema

        self.entries = {k: s for k, s, _ in official_schema(100)[part]}
        self.kept = kept

    def __getitem__(self, key: str) -> torch.Tensor:
        from benchmarks.fill import fill

        return torch.from_numpy(np.array(self.kept[key]) if key in self.kept else fill(key, self.entries[key]))

    def __iter__(self) -> Iterator[str]:
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)


def full_model(decoder: bool):
    from benchmarks.fill import fill
    from semanticodec.config import ModelConfig
    from semanticodec.model import SemantiCodecModel

    kept = np.load(SHARED / "reference" / "kept_tr100.npz", allow_pickle=False)
    parts = {p: {k.split("/", 1)[1]: kept[k] for k in kept.files if k.startswith(p + "/")} for p in ("encoder", "decoder")}
    model = SemantiCodecModel(ModelConfig.official(100, 4096), fill("semantic_codebook", (4096, 768)))
    model.load_official(_Filled("encoder", parts["encoder"]), _Filled("decoder", parts["decoder"]) if decoder else None)
    return model.eval()


def _clips() -> list[tuple[str, np.ndarray]]:
    return [(Path(name).name, load_audio(SHARED / "audio" / name)) for name in CLIPS]


def _stream_bytes(codec: SemantiCodec, audio: np.ndarray, **options) -> bytes:
    """``audio`` (16 kHz) pushed in 0.25 s chunks through a :class:`StreamingEncoder`."""
    encoder = StreamingEncoder(codec, 16000, **options)
    return b"".join(encoder.push(audio[i : i + 4000]) for i in range(0, len(audio), 4000)) + encoder.finish()


def _stream_tokens(codec: SemantiCodec, audio: np.ndarray, **options) -> np.ndarray:
    from semanticodec import bitstream

    return bitstream.decode(_stream_bytes(codec, audio, **options))[1]


def agreement(latencies: list[float]) -> None:
    torch.set_num_threads(2)
    codec = SemantiCodec(full_model(decoder=False), device="cpu", batch_size=1)
    print("| clip | seconds | tokens | exact-mode agreement (semantic / acoustic) |")
    print("|---|---:|---:|---:|")
    clips = _clips()
    for name, audio in clips:
        offline = codec.encode(audio, 16000).tokens
        streamed = _stream_tokens(codec, audio)
        same = (offline == streamed).mean(axis=0)
        print(f"| {name} | {len(audio) / 16000:.2f} | {len(offline)} | {same[0]:.2%} / {same[1]:.2%} |")
    name, audio = clips[2]
    offline = codec.encode(audio, 16000).tokens
    print(f"\nLow-latency mode on {name} (look-ahead 0.32 s, context min(8 s, 10.24 s - block - look-ahead)):\n")
    print("| block (s) | algorithmic latency (s) | semantic agreement | acoustic agreement | encoder windows per second of audio | encode time / audio time |")
    print("|---:|---:|---:|---:|---:|---:|")
    for latency in latencies:
        start = time.perf_counter()
        tokens = _stream_tokens(codec, audio, mode="low_latency", low_latency=LowLatencyConfig.fitted(latency))
        elapsed = time.perf_counter() - start
        same = (tokens == offline).mean(axis=0)
        seconds = len(audio) / 16000
        print(f"| {latency:.2f} | {latency + 0.32:.2f} | {same[0]:.2%} | {same[1]:.2%} | {1 / latency:.2f} | {elapsed / seconds:.2f} |")


def decode(steps: list[int]) -> None:
    from semanticodec import bitstream

    torch.set_num_threads(2)
    model = full_model(decoder=True)
    tokens = np.random.default_rng(0).integers(0, 4096, (512, 2))
    tokens[:, 1] %= 8192
    print("| DDIM steps | seconds per 10.24 s window | real-time factor (window time / 9.6 s of new audio) |")
    print("|---:|---:|---:|")
    for s in steps:
        codec = SemantiCodec(model, device="cpu", sampler="ddim", steps=s, seed=0)
        decoder = StreamingDecoder(codec)
        header = bitstream.Header(100, 4096, 8192, codec.model_id, 0, 16000)
        data = bitstream.encode(tokens, header)
        start = time.perf_counter()
        decoder.push(data)
        decoder.finish()
        elapsed = time.perf_counter() - start
        print(f"| {s} | {elapsed:.1f} | {elapsed / (HOP_SAMPLES / 16000):.2f} |")


@torch.inference_mode()
def seam() -> None:
    from semanticodec import bitstream
    from tiny import tiny_model

    torch.set_num_threads(2)
    codec = SemantiCodec(tiny_model(), device="cpu", steps=2, seed=0)
    audio = (0.1 * np.random.default_rng(0).standard_normal(3 * 163840)).astype(np.float32)
    encoder = StreamingEncoder(codec, 16000)
    data = encoder.push(audio) + encoder.finish()
    decoder = StreamingDecoder(codec)
    out = np.concatenate([decoder.push(data), decoder.finish()])
    tokens = bitstream.decode(data)[1]
    windows = [codec.model.decode_windows(torch.from_numpy(tokens[s : s + 512])[None], torch.tensor([512]), 2, 2.0, 1.0) for s in (0, 512)]
    hard = np.concatenate([w[0].numpy()[:163840] for w in windows])
    step = np.abs(np.diff(out))
    typical = np.percentile(step, 99)
    print("| signal | join | max abs step within ±16 samples of the join | 99th percentile of abs step overall |")
    print("|---|---:|---:|---:|")
    for join in (HOP_SAMPLES, HOP_SAMPLES + 10240, 2 * HOP_SAMPLES, 2 * HOP_SAMPLES + 10240):
        print(f"| streaming (cross-faded) | {join / 16000:.2f} s | {step[join - 16 : join + 16].max():.4f} | {typical:.4f} |")
    hard_step = np.abs(np.diff(hard))
    print(f"| windows butted without cross-fade | 10.24 s | {hard_step[163840 - 16 : 163840 + 16].max():.4f} | {np.percentile(hard_step, 99):.4f} |")


def _peak_rss(command: list[str], stdin_bytes_seconds: float | None, stdin_path: Path | None) -> tuple[float, float]:
    """Peak resident memory (MB) and wall time of a command fed raw s16le noise or a file on stdin."""
    start = time.perf_counter()
    with open(stdin_path, "rb") if stdin_path else open(os.devnull, "rb") as source:
        if stdin_bytes_seconds is not None:
            proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
            rng = np.random.default_rng(0)
            for _ in range(int(stdin_bytes_seconds)):
                proc.stdin.write((rng.standard_normal(16000) * 3000).astype("<i2").tobytes())
            proc.stdin.close()
        else:
            proc = subprocess.Popen(command, stdin=source, stdout=subprocess.DEVNULL)
        _, status, usage = os.wait4(proc.pid, 0)
    if status:
        raise RuntimeError(f"{command} failed with status {status}")
    return usage.ru_maxrss / 1024, time.perf_counter() - start


def memory(minutes: list[float], decode_minutes: list[float]) -> None:
    from semanticodec.weights import save_safetensors
    from tiny import tiny_model

    tool = [sys.executable, "-m", "semanticodec"]
    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(tmp) / "tiny.safetensors"
        save_safetensors(tiny_model(), weights)
        common = ["--checkpoint", str(weights), "--no-progress", "--device", "cpu"]
        print("| command (tiny model, CPU) | audio | peak RSS (MB) | wall time (s) |")
        print("|---|---:|---:|---:|")
        for m in minutes:
            command = [*tool, "compress", "-", "-", "--input-rate", "16000", "--semantic-vocab-size", "100", *common]
            rss, wall = _peak_rss(command, 60 * m, None)
            print(f"| `compress - -` (raw s16le on stdin) | {m:g} min | {rss:.0f} | {wall:.0f} |")
        for m in decode_minutes:
            scdc = Path(tmp) / f"{m}.scdc"
            with open(scdc, "wb") as out:
                command = [*tool, "compress", "-", "-", "--input-rate", "16000", "--semantic-vocab-size", "100", *common]
                proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=out)
                rng = np.random.default_rng(1)
                for _ in range(int(60 * m)):
                    proc.stdin.write((rng.standard_normal(16000) * 3000).astype("<i2").tobytes())
                proc.stdin.close()
                proc.wait()
            command = [*tool, "decompress", "-", "-", "--steps", "1", *common]
            rss, wall = _peak_rss(command, None, scdc)
            print(f"| `decompress - -` (WAV to stdout), 1 DDIM step | {m:g} min | {rss:.0f} | {wall:.0f} |")


LOSS_PACKET_COLUMNS = 1
"""Packets of one token column (0.16 s) in the loss benchmark, as a real-time sender would use."""


def _trained_codec(checkpoint: str | None, steps: int) -> SemantiCodec:
    from semanticodec.weights import load_model

    return SemantiCodec(load_model(checkpoint=checkpoint), device="cpu", sampler="ddim", steps=steps, seed=0, batch_size=1)


def _domain_signals(corpus: Path) -> list[tuple[str, np.ndarray]]:
    """Each domain's held-out clips of the quick corpus, joined with 0.5 s of silence (16 kHz)."""
    import json

    manifest = json.loads((corpus / "manifest.json").read_text())
    gap = np.zeros(8000, np.float32)
    out = []
    for domain in ("speech", "music", "sound"):
        clips = [load_audio(corpus / c["file"]) for c in manifest["clips"] if c["domain"] == domain]
        out.append((domain, np.concatenate([part for clip in clips for part in (clip, gap)])[:-8000]))
    return out


def _decode_bytes(codec: SemantiCodec, data: bytes, concealment: str = "inpaint") -> tuple[np.ndarray, int]:
    decoder = StreamingDecoder(codec, concealment=concealment)
    audio = np.concatenate([decoder.push(data), decoder.finish()])
    return audio, decoder.lost_pairs


@functools.cache
def _speech_visqol():
    from benchmarks.metrics import Visqol

    return Visqol("speech")


def _visqol(reference: np.ndarray, degraded: np.ndarray) -> float:
    n = min(len(reference), len(degraded))
    return _speech_visqol()(reference[:n], degraded[:n])


def quality(checkpoint: str | None, corpus: Path, latencies: list[float], steps: int, threads: int) -> None:
    from semanticodec import bitstream

    torch.set_num_threads(threads)
    codec = _trained_codec(checkpoint, steps)
    print("| domain | encoder | algorithmic latency (s) | semantic agreement | acoustic agreement | ViSQOL vs original | ViSQOL vs offline decode |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for domain, audio in _domain_signals(corpus):
        encoder = StreamingEncoder(codec, 16000, sample_count=len(audio))
        offline_data = encoder.push(audio) + encoder.finish()
        offline_tokens = bitstream.decode(offline_data)[1]
        offline_audio = _decode_bytes(codec, offline_data)[0]
        print(f"| {domain} | exact (= offline) | 10.26 | 100.00% | 100.00% | {_visqol(audio, offline_audio):.2f} | – |")
        for latency in latencies:
            config = LowLatencyConfig.fitted(latency)
            data = _stream_bytes(codec, audio, mode="low_latency", low_latency=config, sample_count=len(audio))
            tokens = bitstream.decode(data)[1]
            same = (tokens == offline_tokens).mean(axis=0)
            decoded = _decode_bytes(codec, data)[0]
            print(
                f"| {domain} | low latency, block {latency:.2f} s | {latency + 0.32:.2f} | {same[0]:.2%} | {same[1]:.2%} "
                f"| {_visqol(audio, decoded):.2f} | {_visqol(offline_audio, decoded):.2f} |",
                flush=True,
            )


def _drop_packets(data: bytes, rate: float, seed: int) -> tuple[bytes, int, int]:
    """``data`` without round(rate x packets) packets chosen at random (at least one); returns
    the damaged stream, the packets dropped and the packet count."""
    from semanticodec import bitstream
    from semanticodec.bitstream.stream import packet_size

    header, tokens = bitstream.decode(data)
    size = packet_size(header, header.packet_pairs, False)
    full = len(tokens) // header.packet_pairs
    drop = max(1, round(rate * (full + 1)))
    lost = set(np.random.default_rng(seed).choice(full, drop, replace=False).tolist())
    body = b"".join(data[header.size + i * size : header.size + (i + 1) * size] for i in range(full) if i not in lost)
    return data[: header.size] + body + data[header.size + full * size :], drop, full + 1


def loss(checkpoint: str | None, corpus: Path, rates: list[float], steps: int, threads: int) -> None:
    torch.set_num_threads(threads)
    codec = _trained_codec(checkpoint, steps)
    print("| domain | packet loss | packets lost / sent | ViSQOL, no loss | ViSQOL, padding | ViSQOL, inpainting | vs lossless decode: padding | inpainting |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for domain, audio in _domain_signals(corpus):
        encoder = StreamingEncoder(codec, 16000, sample_count=len(audio), packet_columns=LOSS_PACKET_COLUMNS)
        data = encoder.push(audio) + encoder.finish()
        clean = _decode_bytes(codec, data)[0]
        base = _visqol(audio, clean)
        for i, rate in enumerate(rates):
            lossy, dropped, count = _drop_packets(data, rate, seed=i)
            padded = _decode_bytes(codec, lossy, "padding")[0]
            inpainted = _decode_bytes(codec, lossy, "inpaint")[0]
            print(
                f"| {domain} | {rate:.0%} | {dropped} / {count} | {base:.2f} | {_visqol(audio, padded):.2f} "
                f"| {_visqol(audio, inpainted):.2f} | {_visqol(clean, padded):.2f} | {_visqol(clean, inpainted):.2f} |",
                flush=True,
            )


def speed(checkpoint: str | None, steps: list[int], threads: int) -> None:
    from semanticodec import bitstream

    torch.set_num_threads(threads)
    audio = load_audio(SHARED / "audio" / CLIPS[1])[: 2 * HOP_SAMPLES + OVERLAP_SAMPLES]
    print("| DDIM steps | windows | seconds per window | real-time factor (decode time / audio time) |")
    print("|---:|---:|---:|---:|")
    for s in steps:
        codec = _trained_codec(checkpoint, s)
        encoder = StreamingEncoder(codec, 16000, sample_count=len(audio))
        data = encoder.push(audio) + encoder.finish()
        tokens = torch.from_numpy(bitstream.decode(data)[1])[None]
        windows = len(split_windows(tokens, codec.config.tokens_per_window)[1])
        start = time.perf_counter()
        _decode_bytes(codec, data)
        elapsed = time.perf_counter() - start
        print(f"| {s} | {windows} | {elapsed / windows:.2f} | {elapsed / (len(audio) / 16000):.3f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("section", choices=("agreement", "decode", "seam", "memory", "quality", "loss", "speed"))
    parser.add_argument("--latencies", type=float, nargs="+", default=[0.32, 0.64, 1.28, 2.56])
    parser.add_argument("--steps", type=int, nargs="+", default=[1, 3], help="DDIM steps (decode, speed; first: quality, loss)")
    parser.add_argument("--checkpoint", help="trained weights for quality/loss/speed (default: as the codec picks)")
    parser.add_argument("--corpus", type=Path, default=Path.home() / ".cache/semanticodec-bench/corpus-quick")
    parser.add_argument("--loss-rates", type=float, nargs="+", default=[0.01, 0.05, 0.10])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--minutes", type=float, nargs="+", default=[10, 60])
    parser.add_argument("--decode-minutes", type=float, nargs="+", default=[1, 10])
    args = parser.parse_args()
    if args.section == "agreement":
        agreement(args.latencies)
    elif args.section == "decode":
        decode(args.steps)
    elif args.section == "seam":
        seam()
    elif args.section == "quality":
        quality(args.checkpoint, args.corpus, args.latencies, args.steps[0], args.threads)
    elif args.section == "loss":
        loss(args.checkpoint, args.corpus, args.loss_rates, args.steps[0], args.threads)
    elif args.section == "speed":
        speed(args.checkpoint, args.steps, args.threads)
    else:
        memory(args.minutes, args.decode_minutes)


if __name__ == "__main__":
    main()
