"""Decoded quality against sampling steps for every sampler: the choice of the default sampler.

    python -m benchmarks.bench_samplers                      # quick corpus, bundled model; writes RESULTS.md
    python -m benchmarks.bench_samplers --checkpoint FILE    # other weights (re-run when the model changes)
    python -m benchmarks.bench_samplers --per-domain 2       # the first 2 clips of each domain (a busy machine)
    python -m benchmarks.bench_samplers --jobs 3             # 3 settings at once, one thread each

Every clip of the corpus (held-out speech, music and sound) is encoded once and its tokens
are decoded with every sampler at every step count. Per clip: ViSQOL (speech mode, 16 kHz,
the paper's) and the multi-scale mel distance against the original, and DNSMOS P.835 OVRL
of the decoded audio. The reference is the official setting, 50-step DDIM (η = 1) of the
same tokens; a second DDIM 50 decode with another noise seed shows how much two samples of
the same tokens differ anyway. The chosen default is the cheapest setting (fewest model
evaluations per window) whose mean ViSQOL and mean DNSMOS OVRL over all clips are each
within 0.1 of DDIM 50's. ``--precision bfloat16`` adds a row for the chosen setting decoded
under bfloat16 autocast (the decoder's reduced-precision mode); ``--precision mixed``, with
only the VAE decoder and vocoder so (the default decoding where bfloat16 is native).

The section "Sampler quality versus steps" of ``benchmarks/RESULTS.md`` is rewritten and
per-clip figures go to ``benchmarks/results/samplers_<corpus>.json``, row by row as they are
measured: an interrupted run started again with the same weights and corpus reuses the rows
it finished (``--fresh`` measures everything again).
"""

from __future__ import annotations

import argparse
import datetime
import json
import multiprocessing
import platform
import shlex
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from benchmarks import data, metrics
from benchmarks.report import cpu_model, replace_section
from semanticodec.codec import SemantiCodec
from semanticodec.commands import deprecated_alias
from semanticodec.diffusion import ddim_timesteps
from semanticodec.encoded import EncodedAudio
from semanticodec.model import SemantiCodecModel
from semanticodec.samplers import SAMPLERS, solver_grid

HERE = Path(__file__).resolve().parent
SECTION = "## Sampler quality versus steps"
STEPS = (3, 5, 8, 10, 15, 25, 50)
REFERENCE = ("ddim", 50)
TOLERANCE = 0.1
"""The default may lose at most this much mean ViSQOL and mean DNSMOS OVRL against DDIM 50."""


@dataclass(frozen=True)
class Setting:
    """One way to decode: sampler, steps, noise seed and decoder precision."""

    sampler: str
    steps: int
    seed: int = 0
    precision: str = "float32"

    @property
    def label(self) -> str:
        extra = ("" if self.seed == 0 else f", seed {self.seed}") + ("" if self.precision == "float32" else f", {self.precision}")
        return f"{self.sampler} {self.steps}{extra}"


def evaluations(model: SemantiCodecModel, sampler: str, steps: int) -> int | None:
    """Model evaluations per window (DDIM's uniform spacing can make one more), None where
    the sampler cannot run ``steps`` (the official DDIM spacing fails at some counts)."""
    try:
        if sampler == "ddim":
            return len(ddim_timesteps(steps, model.schedule.num_timesteps))
        return len(solver_grid(model.schedule, steps).timesteps)
    except ValueError:
        return None


@dataclass
class Row:
    setting: Setting
    evaluations: int
    seconds_per_window: float
    clips: dict[str, dict[str, float]]
    measured_by: str = ""
    """The command, date and machine that measured the row (rows of a resumed run keep theirs)."""


def provenance(rows: list[Row]) -> str:
    """Which command measured which rows: the one command, or each with its rows (the largest
    group as "the other rows")."""
    groups: dict[str, list[str]] = {}
    for row in rows:
        groups.setdefault(row.measured_by, []).append(row.setting.label)
    if len(groups) == 1:
        return next(iter(groups))
    largest = max(groups, key=lambda key: len(groups[key]))
    return "; ".join(f"{key}: {'the other rows' if key == largest else ', '.join(groups[key])}" for key in groups)


def _table_order(row: Row) -> tuple[int, int]:
    return SAMPLERS.index(row.setting.sampler), row.setting.steps


def decode_all(
    model: SemantiCodecModel, setting: Setting, encoded: dict[str, EncodedAudio], batch_size: int
) -> tuple[dict[str, np.ndarray], float]:
    """Decoded audio of every clip with ``setting`` and the wall time per window."""
    codec = SemantiCodec(
        model, device="cpu", sampler=setting.sampler, steps=setting.steps, seed=setting.seed,
        precision=setting.precision, batch_size=batch_size,
    )
    names = list(encoded)
    start = time.perf_counter()
    audio = codec.decode([encoded[n] for n in names])
    seconds = time.perf_counter() - start
    windows = sum(-(-e.tokens.shape[0] // model.tokens_per_window) for e in encoded.values())
    return dict(zip(names, audio)), seconds / windows


def score(original: np.ndarray, decoded: np.ndarray, visqol: metrics.Visqol, dnsmos: metrics.DNSMOS) -> dict[str, float]:
    decoded = decoded[: original.size]
    if decoded.size < original.size:
        decoded = np.pad(decoded, (0, original.size - decoded.size))
    ref, deg = metrics.align(original, decoded)
    return {"visqol": visqol(ref, deg), "mel": metrics.mel_distance(ref, deg), "dnsmos": dnsmos(decoded)["ovrl"]}


def measure(
    model: SemantiCodecModel, setting: Setting, encoded: dict[str, EncodedAudio], audio: dict[str, np.ndarray],
    batch_size: int, visqol: metrics.Visqol, dnsmos: metrics.DNSMOS,
) -> tuple[float, dict[str, dict[str, float]]]:
    """Decode every clip with ``setting``: (wall seconds per window, scores per clip)."""
    decoded, per_window = decode_all(model, setting, encoded, batch_size)
    return per_window, {name: score(audio[name], decoded[name], visqol, dnsmos) for name in decoded}


_WORKER: dict[str, object] = {}
"""A worker process's model and metrics (``--jobs``)."""


def _start_worker(checkpoint: str | None) -> None:
    from semanticodec.weights import load_model

    torch.set_num_threads(1)
    _WORKER.update(model=load_model(checkpoint=checkpoint).eval(), visqol=metrics.Visqol("speech"), dnsmos=metrics.DNSMOS())


def _measure_in_worker(
    setting: Setting, encoded: dict[str, EncodedAudio], audio: dict[str, np.ndarray], batch_size: int
) -> tuple[float, dict[str, dict[str, float]]]:
    return measure(_WORKER["model"], setting, encoded, audio, batch_size, _WORKER["visqol"], _WORKER["dnsmos"])


def means(clips: dict[str, dict[str, float]], names: list[str]) -> dict[str, float]:
    return {key: float(np.mean([clips[n][key] for n in names])) for key in ("visqol", "dnsmos", "mel")}


def choose(rows: list[Row], reference: Row) -> Row:
    """The cheapest float32 seed-0 row within TOLERANCE of the reference in mean ViSQOL and DNSMOS
    (ties: the higher ViSQOL)."""
    names = list(reference.clips)
    ref = means(reference.clips, names)
    passing = []
    for row in rows:
        if row.setting.seed != 0 or row.setting.precision != "float32":
            continue
        m = means(row.clips, names)
        if m["visqol"] >= ref["visqol"] - TOLERANCE and m["dnsmos"] >= ref["dnsmos"] - TOLERANCE:
            passing.append((row.evaluations, -m["visqol"], row))
    return min(passing, key=lambda p: p[:2])[2]


def render(
    rows: list[Row], reference: Row, chosen: Row, domains: dict[str, list[str]], command: str, header: str,
    missing: dict[Setting, int] | None = None,
) -> str:
    """The RESULTS.md section; ``missing``: settings not measured (``--report-only`` before the
    run finished) and their model evaluations per window, named under the table; the choice is
    marked provisional when one of them costs no more than it."""
    names = list(reference.clips)
    ref = means(reference.clips, names)
    lines = [
        SECTION,
        "",
        f"Command: {command}",
        header,
        "",
        f"Each row decodes the same tokens of {len(names)} held-out clips ("
        + ", ".join(f"{len(v)} {k}" for k, v in domains.items())
        + "). ViSQOL (speech mode, 16 kHz) and MEL (multi-scale mel distance, lower is better) "
        "are against the original; DNSMOS is P.835 OVRL of the decoded audio. Δ: difference "
        f"of the all-clip mean from {REFERENCE[0]} {REFERENCE[1]} (seed 0). evals: model "
        "evaluations per window (each one UNet call on the guided batch); s/window: decode wall "
        "time per 10.24 s window on this machine (VAE and vocoder included).",
        "",
        "| setting | evals | s/window | ViSQOL | Δ ViSQOL | DNSMOS | Δ DNSMOS | MEL | "
        + " | ".join(f"ViSQOL {d}" for d in domains) + " | " + " | ".join(f"DNSMOS {d}" for d in domains) + " |",
        "|---|---:|---:|---:|---:|---:|---:|---:|" + "---:|" * (2 * len(domains)),
    ]
    for row in rows:
        m = means(row.clips, names)
        per = [means(row.clips, domains[d]) for d in domains]
        mark = "**" if row is chosen else ""
        lines.append(
            f"| {mark}{row.setting.label}{mark} | {row.evaluations} | {row.seconds_per_window:.1f} | {m['visqol']:.3f} | "
            f"{m['visqol'] - ref['visqol']:+.3f} | {m['dnsmos']:.3f} | {m['dnsmos'] - ref['dnsmos']:+.3f} | {m['mel']:.3f} | "
            + " | ".join(f"{p['visqol']:.2f}" for p in per) + " | " + " | ".join(f"{p['dnsmos']:.2f}" for p in per) + " |"
        )
    lines += [
        "",
        f"Rule: the cheapest setting whose mean ViSQOL and mean DNSMOS OVRL are each within {TOLERANCE} of "
        f"{REFERENCE[0]} {REFERENCE[1]}: **{chosen.setting.label}** ({chosen.evaluations} model evaluations per window "
        f"instead of {reference.evaluations}).",
        "",
    ]
    if missing:
        cheaper = [s for s, n in missing.items() if s.seed == 0 and s.precision == "float32" and n <= chosen.evaluations]
        lines += [
            "Not measured (the run was stopped before it finished): " + ", ".join(s.label for s in missing) + ".",
            "",
        ]
        if cheaper:
            lines += [
                "The choice is provisional: " + ", ".join(s.label for s in cheaper)
                + " cost no more and were not measured.",
                "",
            ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_samplers", description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, help="corpus folder with manifest.json (default: the quick corpus)")
    parser.add_argument("--checkpoint", help="weights (default: the bundled default model)")
    parser.add_argument("--per-domain", type=int, metavar="N", help="only the first N clips of each domain (default: all)")
    parser.add_argument("--samplers", nargs="+", choices=SAMPLERS, default=list(SAMPLERS))
    parser.add_argument("--steps", type=int, nargs="+", default=list(STEPS))
    parser.add_argument("--precision", choices=("bfloat16", "float16", "mixed"), help="also decode the chosen setting so")
    parser.add_argument("--batch-size", type=int, default=4, help="windows per forward pass")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch threads")
    parser.add_argument(
        "--jobs", type=int, default=1,
        help="settings decoded at once, each in a worker process with one thread (faster than threads on a busy machine)",
    )
    parser.add_argument("--results", type=Path, default=HERE / "RESULTS.md")
    output = parser.add_argument("-o", "--output", dest="out", type=Path, default=HERE / "results", help="folder for the per-clip JSON")
    deprecated_alias(parser, "--out", output)
    parser.add_argument("--fresh", action="store_true", help="do not reuse the rows of an earlier run")
    parser.add_argument(
        "--report-only", action="store_true", help="measure nothing: write the table of the rows measured so far"
    )
    raw_args = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(raw_args)
    torch.set_num_threads(args.threads)
    began = time.perf_counter()

    from semanticodec.weights import load_model

    corpus = args.corpus or data.default_corpus_dir("quick")
    if args.corpus is None and not (corpus / "manifest.json").is_file():
        data.build_corpus(corpus, "quick")
    clips = data.read_manifest(corpus)
    if args.per_domain is not None:
        clips = [kept for d in data.DOMAINS for kept in [c for c in clips if c.domain == d][: args.per_domain]]
    audio = {c.file: sf.read(corpus / c.file, dtype="float32")[0] for c in clips}
    model = load_model(checkpoint=args.checkpoint).eval()
    shown = ["…" if previous == "--checkpoint" else a for previous, a in zip(["", *raw_args], raw_args)]
    command = shlex.join(["python", "-m", "benchmarks.bench_samplers", *shown])
    this_run = f"`{command}` ({datetime.date.today().isoformat()}, {cpu_model()})"
    encoded, visqol, dnsmos = {}, None, None
    if not args.report_only:
        encoder = SemantiCodec(model, device="cpu", batch_size=args.batch_size)
        encoded = dict(zip(audio, encoder.encode([audio[c.file] for c in clips], sample_rate=metrics.SAMPLE_RATE)))
        visqol, dnsmos = metrics.Visqol("speech"), metrics.DNSMOS()
    args.out.mkdir(parents=True, exist_ok=True)
    record = args.out / f"samplers_{corpus.name}.json"
    identity = {"model": model.config.name, "model_id": model.config.model_id.hex(), "clips": sorted(audio)}
    finished: dict[Setting, Row] = {}
    measured_by = command
    if record.is_file() and not args.fresh:
        earlier = json.loads(record.read_text())
        if earlier.get("identity") == identity:
            measured_by = command if not args.report_only else earlier.get("command", "an earlier run")
            for item in earlier["rows"]:
                setting = Setting(item["sampler"], item["steps"], item["seed"], item["precision"])
                by = item.get("measured_by", f"`{earlier.get('command', 'an earlier run')}`")
                finished[setting] = Row(setting, item["evaluations"], item["seconds_per_window"], item["clips"], by)

    def save(chosen: Setting | None = None) -> None:
        rows = [{**asdict(r.setting), "evaluations": r.evaluations, "seconds_per_window": r.seconds_per_window,
                 "clips": r.clips, "measured_by": r.measured_by} for r in finished.values()]
        chosen_json = None if chosen is None else asdict(chosen)
        document = {"identity": identity, "command": measured_by, "chosen": chosen_json, "rows": rows}
        record.write_text(json.dumps(document, indent=1) + "\n")

    def record_row(setting: Setting, per_window: float, scores: dict[str, dict[str, float]]) -> None:
        count = evaluations(model, setting.sampler, setting.steps)
        finished[setting] = Row(setting, count, per_window, scores, this_run)
        save()
        m = means(scores, list(scores))
        print(f"{setting.label:28s} evals {count:3d}  {per_window:6.1f} s/window  ViSQOL {m['visqol']:.3f}  "
              f"DNSMOS {m['dnsmos']:.3f}  MEL {m['mel']:.3f}", file=sys.stderr, flush=True)

    def run_all(settings: list[Setting]) -> None:
        """Measure the settings not finished yet, in this order (``--jobs`` of them at once)."""
        todo = [s for s in settings if s not in finished]
        if args.jobs == 1:
            for setting in todo:
                record_row(setting, *measure(model, setting, encoded, audio, args.batch_size, visqol, dnsmos))
            return
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(args.jobs, context, initializer=_start_worker, initargs=(args.checkpoint,)) as pool:
            futures = {pool.submit(_measure_in_worker, s, encoded, audio, args.batch_size): s for s in todo}
            for future in as_completed(futures):
                record_row(futures[future], *future.result())

    # cheapest settings first (the default is known as soon as one passes), the spread between
    # two DDIM 50 samples last; rows are reused when resumed
    candidates = [Setting(sampler, steps) for sampler in args.samplers for steps in args.steps if (sampler, steps) != REFERENCE]
    for setting in [c for c in candidates if evaluations(model, c.sampler, c.steps) is None]:
        print(f"{setting.label}: not possible with this sampler", file=sys.stderr)
        candidates.remove(setting)
    candidates.sort(key=lambda c: (evaluations(model, c.sampler, c.steps), c.sampler == "ddim", c.sampler))
    spread = Setting(*REFERENCE, seed=1)
    wanted = [Setting(*REFERENCE), *candidates, spread]
    if not args.report_only:
        run_all(wanted)
    if Setting(*REFERENCE) not in finished:
        print(f"no {Setting(*REFERENCE).label} row measured yet: nothing to report", file=sys.stderr)
        return 2
    reference = finished[Setting(*REFERENCE)]
    rows = [reference, *(finished[s] for s in [spread] if s in finished)]
    rows += sorted((finished[c] for c in candidates if c in finished), key=_table_order)
    chosen = choose(rows, reference)
    if args.precision:
        reduced = Setting(chosen.setting.sampler, chosen.setting.steps, precision=args.precision)
        if not args.report_only:
            run_all([reduced])
        wanted.append(reduced)
    # the chosen setting in every reduced precision measured so far, this run's or a resumed one's
    rows += [row for s, row in finished.items() if s.precision != "float32" and s == replace(chosen.setting, precision=s.precision)]
    missing = {s: evaluations(model, s.sampler, s.steps) for s in wanted if s not in finished}

    domains = {d: [c.file for c in clips if c.domain == d] for d in data.DOMAINS if any(c.domain == d for c in clips)}
    command = provenance(rows) if measured_by == command else f"{provenance(rows)} (the rows), `{command}` (this table)"
    header = (
        f"({datetime.date.today().isoformat()}, {cpu_model()}, {platform.python_version()}, torch {torch.__version__}, "
        + (f"{args.threads} threads" if args.jobs == 1 else f"{args.jobs} worker processes of 1 thread")
        + f", weights: {args.checkpoint or 'bundled default model ' + model.config.name}, "
        f"corpus {corpus.name}; "
        + ("" if args.report_only else f"{time.perf_counter() - began:.0f} s in all; ")
        + "the machine was shared, so s/window is indicative.)"
    )
    section = render(rows, reference, chosen, domains, command, header, missing)
    document = args.results.read_text() if args.results.is_file() else "# Benchmark results\n"
    args.results.write_text(replace_section(document, section))
    save(chosen.setting)
    print(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
