"""Token-semantics probe: linear classifiers on pooled token embeddings (a Table II like the paper's).

    python -m benchmarks.probe                                  # the package's default model, train corpus
    python -m benchmarks.probe --checkpoint model.safetensors   # another model
    python -m benchmarks.probe --max-per-class 4 --results /tmp/x.md   # a smoke run

How much does a token sequence say about what was said or played? For every clip of a
class-balanced, deterministic subsample of a corpus (``benchmarks.data`` manifest), the clip
(cut to at most 10.24 s, one encoder window) is encoded to tokens ``[T, 2]`` and pooled into
fixed-size vectors:

- ``semantic``: mean and standard deviation over the T rows of the semantic codebook vectors
  of the semantic ids (``model.semantic.lookup``);
- ``acoustic``: the same for the acoustic ids (``model.acoustic.lookup``);
- ``semantic+acoustic``: both concatenated;
- ``bag of ids``: square root of the normalised histogram of the semantic ids (a bag of tokens,
  no codebook vectors: what a language model sees before it learns embeddings);
- ``log-mel``: mean and standard deviation over frames of the 64-bin log-mel
  (``semanticodec.features.mel64``): a baseline without tokens.

Tasks: ``domain`` (speech / music / sound), ``speech source`` (which Asterisk language voice
or Fish Fillets NG language: 7 speech sources, a language / speaker ID probe) and
``Sonic Pi family`` (the sample name prefix, ``ambi_``, ``drum_``, ``loop_`` ...; families with
fewer than ``min_family_clips`` clips are left out). Classifier: ``StandardScaler`` +
``LogisticRegression``, stratified k-fold cross-validation grouped by source file (the
``_partNN`` pieces of one file never straddle a fold); accuracy is the mean ± std over
folds, chance the majority-class share. The ``## Token-semantics probe`` section of
``benchmarks/RESULTS.md`` is rewritten.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import re
import shlex
import sys
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from benchmarks import data
from benchmarks.report import cpu_model, replace_section

HERE = Path(__file__).resolve().parent
SECTION = "## Token-semantics probe"
FEATURE_SETS = ("semantic", "acoustic", "semantic+acoustic", "bag of ids", "log-mel")


@dataclass(frozen=True)
class ProbeConfig:
    """Subsampling and classifier settings: clips per class, longest clip (s), folds, seed,
    fewest clips for a Sonic Pi family to be a class, and logistic-regression iterations."""

    max_per_class: int = 60
    max_seconds: float = 10.24
    folds: int = 5
    seed: int = 0
    min_family_clips: int = 6
    max_iter: int = 2000

    def __post_init__(self) -> None:
        if self.max_per_class < 2:
            raise ValueError(f"max_per_class must be >= 2, got {self.max_per_class}")
        if self.max_seconds <= 0:
            raise ValueError(f"max_seconds must be > 0, got {self.max_seconds}")
        if self.folds < 2:
            raise ValueError(f"folds must be >= 2, got {self.folds}")
        if self.min_family_clips < 2:
            raise ValueError(f"min_family_clips must be >= 2, got {self.min_family_clips}")


@dataclass(frozen=True)
class Task:
    """A labelled classification task: ``clips[i]`` has label ``labels[i]``."""

    name: str
    clips: list[data.Clip]
    labels: list[str]


@dataclass(frozen=True)
class Score:
    """Cross-validated accuracy (fractions) of one probe."""

    mean: float
    std: float
    chance: float
    folds: int


def file_group(clip: data.Clip) -> str:
    """The source file a clip comes from: its source and file path without ``_partNN``."""
    stem = re.sub(r"_part\d\d$", "", Path(clip.file).with_suffix("").as_posix())
    return f"{clip.source}:{stem}"


def speech_source_label(clip: data.Clip) -> str | None:
    """``asterisk-<lang>`` or ``fillets-<lang>`` for a speech clip of those sources, else None
    (English Asterisk prompts have source ``asterisk``)."""
    if clip.domain != "speech":
        return None
    if clip.source in data.ASTERISK_LANGUAGES:
        return f"asterisk-{data.ASTERISK_LANGUAGES[clip.source]}"
    return clip.source if clip.source.startswith("fillets-") else None


def sonic_pi_family(clip: data.Clip) -> str | None:
    """The Sonic Pi sample family (name prefix before the first ``_``: ``ambi``, ``drum``,
    ``loop`` ...) of a clip of source ``sound``, else None. Corpus files are named
    ``sound_<sample name>.wav``."""
    if clip.source != "sound":
        return None
    stem = Path(clip.file).stem.removeprefix("sound_")
    family = stem.split("_", 1)[0]
    return family if family and family != stem else None


def balanced_subsample(clips: Sequence[data.Clip], labels: Sequence[str], max_per_class: int, seed: int) -> list[int]:
    """Indices of at most ``max_per_class`` clips per label, deterministic for ``seed``.

    Within a label, sources take turns, and within a source the source files take turns
    (seeded order), so that the picks spread over as many sources and files as possible.
    Returned in index order.
    """
    if len(clips) != len(labels):
        raise ValueError(f"{len(clips)} clips but {len(labels)} labels")
    if max_per_class < 1:
        raise ValueError(f"max_per_class must be >= 1, got {max_per_class}")
    chosen: list[int] = []
    for label in sorted(set(labels)):
        rng = np.random.default_rng([seed, zlib.crc32(label.encode())])
        by_source: dict[str, dict[str, list[int]]] = {}
        for i in sorted((i for i, lab in enumerate(labels) if lab == label), key=lambda i: clips[i].file):
            by_source.setdefault(clips[i].source, {}).setdefault(file_group(clips[i]), []).append(i)
        queues = []
        for source in sorted(by_source):
            files = [by_source[source][g] for g in sorted(by_source[source])]
            groups = []
            for k in rng.permutation(len(files)):
                groups.append([files[k][j] for j in rng.permutation(len(files[k]))])
            depth = max(len(g) for g in groups)
            queues.append([g[d] for d in range(depth) for g in groups if d < len(g)])
        order = [q[r] for r in range(max(len(q) for q in queues)) for q in queues if r < len(q)]
        chosen += order[:max_per_class]
    return sorted(chosen)


def build_tasks(clips: Sequence[data.Clip], config: ProbeConfig) -> tuple[list[Task], list[str]]:
    """The subsampled tasks of a corpus, and notes on what was left out and why."""
    notes: list[str] = []
    candidates = [
        ("domain", [c.domain if c.domain in data.DOMAINS else None for c in clips]),
        ("speech source", [speech_source_label(c) for c in clips]),
    ]
    families = [sonic_pi_family(c) for c in clips]
    counts = {f: families.count(f) for f in set(families) if f is not None}
    small = sorted(f for f, n in counts.items() if n < config.min_family_clips)
    if small:
        notes.append(
            f"Sonic Pi families with fewer than {config.min_family_clips} clips left out: "
            + ", ".join(f"{f} ({counts[f]})" for f in small)
        )
    candidates.append(("Sonic Pi family", [f if f is not None and counts[f] >= config.min_family_clips else None for f in families]))
    tasks = []
    for name, labels in candidates:
        keep = [i for i, lab in enumerate(labels) if lab is not None]
        classes = sorted({labels[i] for i in keep})
        if len(classes) < 2:
            notes.append(f"task {name!r} left out: {len(classes)} class(es) in this corpus")
            continue
        task_clips = [clips[i] for i in keep]
        task_labels = [labels[i] for i in keep]
        picked = balanced_subsample(task_clips, task_labels, config.max_per_class, config.seed)
        tasks.append(Task(name, [task_clips[i] for i in picked], [task_labels[i] for i in picked]))
    return tasks, notes


def token_embeddings(model, tokens: np.ndarray) -> dict[str, np.ndarray]:
    """Pooled features of one clip's tokens ``[T, 2]`` (semantic, acoustic ids) under a
    ``SemantiCodecModel``: ``semantic`` and ``acoustic`` ``[2D]`` (mean then std over T of
    the code vectors), ``semantic+acoustic`` (both) and ``bag of ids`` ``[V]`` (square root
    of the normalised semantic-id histogram). float32."""
    tokens = np.asarray(tokens)
    if tokens.ndim != 2 or tokens.shape[1] != 2 or tokens.shape[0] == 0:
        raise ValueError(f"tokens must have shape [T, 2] with T > 0, got {tokens.shape}")
    ids = torch.from_numpy(tokens.astype(np.int64))
    with torch.no_grad():
        semantic = model.semantic.lookup(ids[None, :, 0].to(model.semantic.codebook.device))[0].float().cpu()
        acoustic = model.acoustic.lookup(ids[None, :, 1].to(model.acoustic.codebook.device))[0].float().cpu()

    def stats(vectors: torch.Tensor) -> np.ndarray:
        return torch.cat([vectors.mean(0), vectors.std(0, unbiased=False)]).numpy().astype(np.float32)

    vocab = model.config.semantic_vocab_size
    bag = np.sqrt(np.bincount(tokens[:, 0], minlength=vocab) / tokens.shape[0]).astype(np.float32)
    sem, aco = stats(semantic), stats(acoustic)
    return {"semantic": sem, "acoustic": aco, "semantic+acoustic": np.concatenate([sem, aco]), "bag of ids": bag}


def mel_statistics(audio: np.ndarray) -> np.ndarray:
    """Mean then std over frames of the 64-bin log-mel of 16 kHz mono audio ``[N]`` (N > 512):
    ``[128]`` float32."""
    from semanticodec.features import mel64

    mel = mel64(torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))[None])[0]
    return torch.cat([mel.mean(1), mel.std(1, unbiased=False)]).numpy().astype(np.float32)


def clip_features(codec, clips: Sequence[data.Clip], corpus: Path, max_seconds: float, batch: int = 8) -> dict[str, dict[str, np.ndarray]]:
    """``{clip file: {feature set: vector}}`` for every clip (cut to its first ``max_seconds``)
    under ``codec`` (a ``SemantiCodec``), encoded ``batch`` clips at a time."""
    from semanticodec.audio import load_audio

    out: dict[str, dict[str, np.ndarray]] = {}
    files = sorted({c.file for c in clips})
    limit = int(round(max_seconds * data.SAMPLE_RATE))
    started = time.perf_counter()
    for start in range(0, len(files), batch):
        names = files[start : start + batch]
        audios = [load_audio(corpus / name)[:limit] for name in names]
        for name, audio in zip(names, audios):
            if audio.size <= 512:
                raise ValueError(f"{corpus / name}: {audio.size} samples, too short to probe (needs > 512)")
        encoded = codec.encode(audios, sample_rate=data.SAMPLE_RATE)
        for name, audio, enc in zip(names, audios, encoded):
            out[name] = token_embeddings(codec.model, enc.tokens) | {"log-mel": mel_statistics(audio)}
        done = start + len(names)
        if done % 100 < batch or done == len(files):
            print(f"probe: encoded {done}/{len(files)} clips ({time.perf_counter() - started:.0f} s)", file=sys.stderr)
    return out


def probe_accuracy(features: np.ndarray, labels: Sequence[str], groups: Sequence[str], folds: int = 5, seed: int = 0, max_iter: int = 2000) -> Score:
    """Accuracy of ``StandardScaler`` + ``LogisticRegression`` on ``features`` ``[N, F]``,
    stratified ``folds``-fold cross-validation grouped by ``groups`` (fewer folds when a class
    has fewer groups; at least 2)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedGroupKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    features = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels)
    g = np.asarray(groups)
    if features.ndim != 2 or features.shape[0] != y.size or g.size != y.size:
        raise ValueError(f"features [N, F] with N labels and groups expected, got {features.shape}, {y.size} labels, {g.size} groups")
    classes = np.unique(y)
    if classes.size < 2:
        raise ValueError(f"need at least 2 classes, got {classes.tolist()}")
    splits = min(folds, min(np.unique(g[y == c]).size for c in classes))
    if splits < 2:
        raise ValueError("every class needs clips from at least 2 source files for cross-validation")
    accuracies = []
    for train, test in StratifiedGroupKFold(splits, shuffle=True, random_state=seed).split(features, y, g):
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=max_iter))
        model.fit(features[train], y[train])
        accuracies.append(float((model.predict(features[test]) == y[test]).mean()))
    chance = max(float((y == c).mean()) for c in classes)
    return Score(float(np.mean(accuracies)), float(np.std(accuracies)), chance, splits)


def run_probe(codec, corpus: Path, config: ProbeConfig = ProbeConfig()) -> tuple[list[Task], dict[str, dict[str, Score]], list[str]]:
    """Build the tasks of ``corpus``, encode their clips with ``codec`` and score every
    feature set: ``(tasks, {task: {feature set: Score}}, notes)``."""
    tasks, notes = build_tasks(data.read_manifest(corpus), config)
    if not tasks:
        raise ValueError(f"{corpus}: no task with at least 2 classes")
    features = clip_features(codec, [c for t in tasks for c in t.clips], corpus, config.max_seconds)
    scores: dict[str, dict[str, Score]] = {}
    for task in tasks:
        groups = [file_group(c) for c in task.clips]
        scores[task.name] = {
            name: probe_accuracy(np.stack([features[c.file][name] for c in task.clips]), task.labels, groups, config.folds, config.seed, config.max_iter)
            for name in FEATURE_SETS
        }
    return tasks, scores, notes


def table(tasks: Sequence[Task], scores: dict[str, dict[str, Score]]) -> str:
    """Markdown table: one row per task, accuracy (%) mean ± std over folds per feature set."""
    head = "| task | classes | clips | folds | chance | " + " | ".join(FEATURE_SETS) + " |"
    lines = [head, "|" + "---|" * 5 + "---:|" * len(FEATURE_SETS)]
    for task in tasks:
        row = scores[task.name]
        first = row[FEATURE_SETS[0]]
        cells = [f"{100 * row[f].mean:.1f} ± {100 * row[f].std:.1f}" for f in FEATURE_SETS]
        lines.append(
            f"| {task.name} | {len(set(task.labels))} | {len(task.clips)} | {first.folds} | {100 * first.chance:.1f} | " + " | ".join(cells) + " |"
        )
    return "\n".join(lines)




def render(
    tasks: Sequence[Task], scores: dict[str, dict[str, Score]], notes: Sequence[str], command: str, model: str, corpus: Path,
    config: ProbeConfig, elapsed: float,
) -> str:
    """The Markdown of the section."""
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        SECTION,
        "",
        f"Produced by `{command}` on {now}; machine: {platform.system()} {cpu_model()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}; {elapsed / 60:.1f} min in all. The table is the command's output, unedited.",
        "",
        f"- Model: {model}.",
        f"- Corpus: `{_home_relative(corpus)}`; at most {config.max_per_class} clips per class (seed {config.seed}, sources and source files "
        f"taking turns), each cut to its first {config.max_seconds:g} s.",
        "- Features per clip: mean and std over time of the codebook vectors of the semantic / acoustic ids, both "
        "concatenated, the square root of the normalised semantic-id histogram (bag of ids), and mean and std of the "
        "64-bin log-mel (no tokens).",
        f"- Probe: StandardScaler + LogisticRegression (scikit-learn, max_iter {config.max_iter}), stratified "
        "cross-validation grouped by source file; accuracy % mean ± std over folds; chance = majority-class share.",
        "- Tasks: domain (speech / music / sound); speech source (Asterisk en/es/fr/it/ru voices and Fish Fillets NG "
        "cs/nl dialogue: language and speaker); Sonic Pi family (sample-name prefix).",
        *[f"- {note}." for note in notes],
        "",
        table(tasks, scores),
        "",
    ]
    return "\n".join(lines)


def _home_relative(path: Path) -> str:
    try:
        return "~/" + Path(path).resolve().relative_to(Path.home().resolve()).as_posix()
    except ValueError:
        return str(path)




def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.probe", description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, default=data.default_corpus_dir("train"), help="corpus folder with manifest.json")
    parser.add_argument("--checkpoint", type=Path, help="model weights (default: the package's default model)")
    parser.add_argument("--max-per-class", type=int, default=ProbeConfig.max_per_class)
    parser.add_argument("--folds", type=int, default=ProbeConfig.folds)
    parser.add_argument("--seed", type=int, default=ProbeConfig.seed)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: fastest on a busy shared machine)")
    parser.add_argument("--results", type=Path, default=HERE / "RESULTS.md", help="Markdown file whose probe section is rewritten")
    args = parser.parse_args(argv)
    from semanticodec import SemantiCodec

    if args.threads < 1:
        print(f"error: --threads must be >= 1, got {args.threads}", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    try:
        config = ProbeConfig(max_per_class=args.max_per_class, folds=args.folds, seed=args.seed)
        codec = SemantiCodec.from_pretrained(args.checkpoint, device="cpu")
    except (ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    cfg = codec.config
    model = (
        f"`{cfg.name}` ({cfg.token_rate} tok/s, {cfg.semantic_vocab_size} semantic + {cfg.acoustic_vocab_size} acoustic ids), "
        + (f"checkpoint `{args.checkpoint}`" if args.checkpoint else "the package's default model")
    )
    started = time.perf_counter()
    try:
        tasks, scores, notes = run_probe(codec, args.corpus, config)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    command = "python -m benchmarks.probe " + shlex.join(argv if argv is not None else sys.argv[1:])
    section = render(tasks, scores, notes, command.strip(), model, args.corpus, config, time.perf_counter() - started)
    print(section)
    document = args.results.read_text() if args.results.is_file() else ""
    args.results.write_text(replace_section(document, section).lstrip("\n"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
