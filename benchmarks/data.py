"""Benchmark corpus: real speech, music and general sound from Debian packages, 16 kHz mono.

Packages are fetched with ``apt-get download`` and unpacked with ``dpkg-deb -x`` (no
install, no root scripts, no maintainer scripts run):

| domain | package | content | license |
|---|---|---|---|
| speech | ``pocketsphinx-testdata`` | 5 LibriVox utterances with transcripts | public domain (LibriVox), BSD-2 (CMU) |
| speech | ``asterisk-core-sounds-en-g722`` + ``asterisk-core-sounds-en`` | Asterisk prompts (G.722, decoded with ffmpeg) with text | CC-BY-SA-3.0 |
| music | ``wesnoth-1.16-music`` | soundtrack (Vorbis), one excerpt per track | GPL-2+ |
| music | ``freedoom`` + ``fluid-soundfont-gm`` | MIDI lumps of the WADs, rendered with fluidsynth | BSD-3 + MIT |
| sound | ``sonic-pi-samples`` | CC0 samples (FLAC) of at least 1 s | CC0 |

G.722 needs ``ffmpeg`` and MIDI needs ``fluidsynth`` (``apt-get install -y ffmpeg fluidsynth``);
without them those sources are left out with a note. Selection is deterministic for a seed. Clips are at most ``clip_seconds`` long. The corpus
folder holds ``speech/``, ``music/``, ``sound/`` (16-bit 16 kHz mono wav) and
``manifest.json``: ``{"size", "seed", "clips": [{"file", "domain", "duration", "transcript",
"license", "source"}]}`` with paths relative to the folder.

``python -m benchmarks.data --size quick`` builds the quick corpus;
``--fixture ../shared/audio`` builds one from the small test fixture without network.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from semanticodec.audio import load_audio

SAMPLE_RATE = 16000
DOMAINS = ("speech", "music", "sound")


@dataclass(frozen=True)
class CorpusSize:
    """Clips per source and the longest clip in seconds."""

    librivox: int
    asterisk: int
    music: int
    freedoom: int
    sound: int
    clip_seconds: float = 10.0


SIZES = {
    "quick": CorpusSize(librivox=2, asterisk=3, music=2, freedoom=1, sound=3),
    "full": CorpusSize(librivox=5, asterisk=25, music=12, freedoom=8, sound=20),
}

PACKAGES = {
    "librivox": ("pocketsphinx-testdata",),
    "asterisk": ("asterisk-core-sounds-en-g722", "asterisk-core-sounds-en"),
    "music": ("wesnoth-1.16-music",),
    "freedoom": ("freedoom", "fluid-soundfont-gm"),
    "sound": ("sonic-pi-samples",),
}

LICENSES = {
    "librivox": "public domain (LibriVox); packaging BSD-2 (CMU pocketsphinx-testdata)",
    "asterisk": "CC-BY-SA-3.0 (Digium Asterisk core sounds, voice Allison Smith)",
    "music": "GPL-2+ (Battle for Wesnoth soundtrack)",
    "freedoom": "BSD-3 (Freedoom) + MIT (FluidR3_GM soundfont)",
    "sound": "CC0 (Sonic Pi samples, freesound)",
}


@dataclass(frozen=True)
class Clip:
    """One manifest entry; ``file`` is relative to the corpus folder."""

    file: str
    domain: str
    duration: float
    transcript: str | None
    license: str
    source: str


@dataclass(frozen=True)
class Candidate:
    """A source file that may be selected: ``path`` (any format, G.722 with ``g722``, or a
    Doom WAD whose MIDI lump ``lump`` is rendered with ``soundfont``); duration in seconds
    (0: unknown before rendering)."""

    path: Path
    source: str
    domain: str
    duration: float
    transcript: str | None = None
    g722: bool = False
    lump: str | None = None
    soundfont: Path | None = None


def default_corpus_dir(size: str) -> Path:
    """``$SEMANTICODEC_BENCH_DATA/<size>``, else ``~/.cache/semanticodec-bench/corpus-<size>``."""
    base = os.environ.get("SEMANTICODEC_BENCH_DATA")
    return Path(base) / size if base else Path.home() / ".cache" / "semanticodec-bench" / f"corpus-{size}"


def parse_librivox_transcription(text: str) -> dict[str, str]:
    """``<s> words </s> (utterance-id)`` lines (CMU format) → {utterance id: words}."""
    out = {}
    for line in text.splitlines():
        match = re.fullmatch(r"\s*(?:<s>)?\s*(.*?)\s*(?:</s>)?\s*\(([^()]+)\)\s*", line)
        if match:
            out[match[2]] = match[1]
    return out


def parse_asterisk_text(text: str) -> dict[str, str]:
    """``name: text`` lines of ``core-sounds-en.txt`` (``;`` comments) → {name: text}."""
    out = {}
    for line in text.splitlines():
        if line.startswith(";") or ":" not in line:
            continue
        name, words = line.split(":", 1)
        if name.strip() and words.strip():
            out[name.strip()] = words.strip()
    return out


def _duration(path: Path) -> float:
    info = sf.info(str(path))
    return info.frames / info.samplerate


def select(candidates: list[Candidate], count: int, seed: int) -> list[Candidate]:
    """``count`` candidates drawn without replacement by a seeded permutation of the
    path-sorted list (the same files for the same seed and inputs)."""
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    ordered = sorted(candidates, key=lambda c: (str(c.path), c.lump or ""))
    order = np.random.default_rng(seed).permutation(len(ordered))
    return [ordered[i] for i in order[:count]]


def _excerpt_start(duration: float, clip_seconds: float, key: str, seed: int) -> float:
    """A deterministic start between 10 % and 90 % of a long file (``key`` names the file)."""
    if duration <= clip_seconds:
        return 0.0
    lo, hi = 0.1 * duration, max(0.1 * duration, 0.9 * duration - clip_seconds)
    digest = int.from_bytes(key.encode(), "little") % 1_000_003
    fraction = np.random.default_rng([seed, digest]).random()
    return lo + fraction * (hi - lo)


def _decode_g722(path: Path, out: Path) -> None:
    if shutil.which("ffmpeg") is None:
        raise RuntimeError("ffmpeg is needed to decode G.722 (apt-get install -y ffmpeg)")
    subprocess.run(
        ["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-f", "g722", "-i", str(path), "-ar", "16000", "-ac", "1", str(out)],
        check=True,
    )


def wad_midi_lumps(path: str | os.PathLike) -> dict[str, bytes]:
    """The music lumps (``D_*``) of a Doom WAD that are standard MIDI files: {name: bytes}.

    WAD layout: ``IWAD``/``PWAD``, lump count and directory offset (int32 LE); directory
    entries of file offset, size (int32 LE) and an 8-byte NUL-padded name.
    """
    raw = Path(path).read_bytes()
    if len(raw) < 12 or raw[:4] not in (b"IWAD", b"PWAD"):
        raise ValueError(f"{path}: not a WAD file")
    count, directory = np.frombuffer(raw[4:12], dtype="<i4")
    if count < 0 or directory < 12 or directory + 16 * count > len(raw):
        raise ValueError(f"{path}: corrupt WAD directory")
    out = {}
    for i in range(int(count)):
        entry = raw[directory + 16 * i : directory + 16 * (i + 1)]
        offset, size = (int(v) for v in np.frombuffer(entry[:8], dtype="<i4"))
        name = entry[8:].rstrip(b"\0").decode("ascii", errors="replace")
        data = raw[offset : offset + size]
        if name.startswith("D_") and data[:4] == b"MThd":
            out[name] = data
    return out


def _render_midi(candidate: Candidate, out: Path) -> None:
    if shutil.which("fluidsynth") is None:
        raise RuntimeError("fluidsynth is needed to render MIDI (apt-get install -y fluidsynth)")
    midi = out.with_suffix(".mid")
    midi.write_bytes(wad_midi_lumps(candidate.path)[candidate.lump])
    subprocess.run(
        ["fluidsynth", "-ni", "-q", "-g", "0.4", "-r", str(SAMPLE_RATE), "-F", str(out), str(candidate.soundfont), str(midi)],
        check=True,
        stdout=subprocess.DEVNULL,
    )


def _write_clip(candidate: Candidate, folder: Path, clip_seconds: float, seed: int) -> Clip:
    key = candidate.path.name + (candidate.lump or "")
    with tempfile.TemporaryDirectory() as tmp:
        source = candidate.path
        if candidate.g722:
            source = Path(tmp, "decoded.wav")
            _decode_g722(candidate.path, source)
        elif candidate.lump:
            source = Path(tmp, "rendered.wav")
            _render_midi(candidate, source)
        audio = load_audio(source)
    start = _excerpt_start(audio.size / SAMPLE_RATE, clip_seconds, key, seed)
    first = int(round(start * SAMPLE_RATE))
    audio = audio[first : first + int(clip_seconds * SAMPLE_RATE)]
    peak = float(np.abs(audio).max(initial=0.0))
    if peak > 1.0:
        audio = audio / peak
    stem = candidate.path.stem + (f"_{candidate.lump}" if candidate.lump else "")
    stem = stem if first == 0 else f"{stem}_{start:.0f}s"
    relative = Path(candidate.domain) / f"{candidate.source}_{stem}.wav"
    (folder / candidate.domain).mkdir(parents=True, exist_ok=True)
    sf.write(folder / relative, audio, SAMPLE_RATE, subtype="PCM_16")
    return Clip(
        file=relative.as_posix(),
        domain=candidate.domain,
        duration=round(audio.size / SAMPLE_RATE, 4),
        transcript=candidate.transcript,
        license=LICENSES[candidate.source],
        source=candidate.source,
    )


def write_corpus(
    selected: list[Candidate], folder: str | os.PathLike, size: str, seed: int, clip_seconds: float
) -> list[Clip]:
    """Convert ``selected`` to 16 kHz mono wav clips under ``folder`` and write ``manifest.json``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    clips = [_write_clip(c, folder, clip_seconds, seed) for c in selected]
    manifest = {"size": size, "seed": seed, "clips": [asdict(c) for c in clips]}
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return clips


def read_manifest(folder: str | os.PathLike) -> list[Clip]:
    """The clips of a corpus folder's ``manifest.json``."""
    path = Path(folder) / "manifest.json"
    if not path.is_file():
        raise ValueError(f"{folder}: no manifest.json (build the corpus with `python -m benchmarks.data`)")
    return [Clip(**entry) for entry in json.loads(path.read_text())["clips"]]


def fixture_candidates(root: str | os.PathLike) -> list[Candidate]:
    """Every clip of the small test fixture (``../shared/audio``: speech/ with
    transcripts.tsv, music/, sound/)."""
    root = Path(root)
    if not (root / "speech" / "transcripts.tsv").is_file():
        raise ValueError(f"{root}: not the audio fixture (no speech/transcripts.tsv)")
    lines = (root / "speech" / "transcripts.tsv").read_text().splitlines()[1:]
    texts = dict(line.split("\t", 1) for line in lines if "\t" in line)
    out = []
    for domain in DOMAINS:
        for path in sorted((root / domain).glob("*")):
            if path.suffix not in (".wav", ".flac", ".ogg"):
                continue
            if domain == "speech":
                source = "librivox" if path.name.startswith("sense_and_sensibility") else "asterisk"
            else:
                source = "freedoom" if domain == "music" else "sound"
            out.append(Candidate(path, source, domain, _duration(path), texts.get(path.name)))
    return out


def build_from_fixture(
    root: str | os.PathLike, folder: str | os.PathLike, seed: int = 0, per_domain: int | None = None, clip_seconds: float = 10.0
) -> list[Clip]:
    """A corpus from the test fixture (no network): ``per_domain`` clips of each domain
    (all when None), selected with ``seed``."""
    candidates = fixture_candidates(root)
    selected = []
    for domain in DOMAINS:
        pool = [c for c in candidates if c.domain == domain]
        selected += select(pool, len(pool) if per_domain is None else per_domain, seed)
    return write_corpus(selected, folder, "fixture", seed, clip_seconds)


def fetch_packages(names: tuple[str, ...], cache: Path) -> Path:
    """``apt-get download`` each package into ``cache/debs`` (once) and ``dpkg-deb -x`` it
    into ``cache/tree``; returns the tree."""
    debs, tree = cache / "debs", cache / "tree"
    debs.mkdir(parents=True, exist_ok=True)
    tree.mkdir(parents=True, exist_ok=True)
    for name in names:
        if (tree / f".{name}.done").exists():
            continue
        if not list(debs.glob(f"{name}_*.deb")):
            if shutil.which("apt-get") is None:
                raise RuntimeError("apt-get is needed to fetch the corpus (a Debian or Ubuntu machine)")
            subprocess.run(["apt-get", "download", "-q", name], cwd=debs, check=True, stdout=subprocess.DEVNULL)
        (deb,) = debs.glob(f"{name}_*.deb")
        subprocess.run(["dpkg-deb", "-x", str(deb), str(tree)], check=True)
        (tree / f".{name}.done").touch()
    return tree


def debian_candidates(tree: Path, min_sound_seconds: float = 1.0, min_speech_seconds: float = 2.0) -> list[Candidate]:
    """Candidates from the unpacked packages under ``tree`` (see the module table)."""
    out = []
    librivox = tree / "usr/share/pocketsphinx/test/data/librivox"
    if librivox.is_dir():
        texts = parse_librivox_transcription((librivox / "transcription").read_text())
        for path in sorted(librivox.glob("*.wav")):
            out.append(Candidate(path, "librivox", "speech", _duration(path), texts.get(path.stem)))
    sounds = tree / "usr/share/asterisk/sounds/en_US_f_Allison"
    text_file = tree / "usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz"
    if sounds.is_dir() and text_file.is_file():
        texts = parse_asterisk_text(gzip.decompress(text_file.read_bytes()).decode("utf-8", errors="replace"))
        for path in sorted(sounds.rglob("*.g722")):
            name = path.relative_to(sounds).with_suffix("").as_posix()
            seconds = path.stat().st_size / 8000  # G.722 is 64 kbit/s
            if name in texts and seconds >= min_speech_seconds:
                out.append(Candidate(path, "asterisk", "speech", seconds, texts[name], g722=True))
    for path in sorted((tree / "usr/share/games/wesnoth/1.16/data/core/music").glob("*.ogg")):
        out.append(Candidate(path, "music", "music", _duration(path)))
    soundfont = tree / "usr/share/sounds/sf2/FluidR3_GM.sf2"
    if soundfont.is_file():
        for path in sorted((tree / "usr/share/games/doom").glob("freedoom*.wad")):
            for lump in sorted(wad_midi_lumps(path)):
                out.append(Candidate(path, "freedoom", "music", 0.0, lump=lump, soundfont=soundfont))
    for path in sorted((tree / "usr/share/sonic-pi/samples").glob("*.flac")):
        seconds = _duration(path)
        if seconds >= min_sound_seconds:
            out.append(Candidate(path, "sound", "sound", seconds))
    return out


def build_corpus(
    folder: str | os.PathLike, size: str = "quick", seed: int = 0, cache: str | os.PathLike | None = None
) -> list[Clip]:
    """Fetch the packages, select ``SIZES[size]`` clips per source with ``seed`` and write the
    corpus to ``folder``. Without ffmpeg (fluidsynth) the Asterisk prompts (Freedoom music)
    are left out, with a note."""
    if size not in SIZES:
        raise ValueError(f"size must be one of {sorted(SIZES)}, got {size!r}")
    plan = SIZES[size]
    cache = Path(cache) if cache else Path.home() / ".cache" / "semanticodec-bench"
    sources = ["librivox", "asterisk", "music", "freedoom", "sound"]
    for source, tool in (("asterisk", "ffmpeg"), ("freedoom", "fluidsynth")):
        if shutil.which(tool) is None:
            sources.remove(source)
            print(f"note: {tool} not found, {source} left out (apt-get install -y {tool})", file=sys.stderr)
    tree = fetch_packages(tuple(p for s in sources for p in PACKAGES[s]), cache)
    candidates = debian_candidates(tree)
    selected = []
    for source in sources:
        pool = [c for c in candidates if c.source == source]
        count = getattr(plan, source)
        if len(pool) < count:
            raise RuntimeError(f"{source}: {len(pool)} candidate files, {count} wanted")
        selected += select(pool, count, seed)
    return write_corpus(selected, folder, size, seed, plan.clip_seconds)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.data", description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="quick")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="corpus folder (default: $SEMANTICODEC_BENCH_DATA/<size> or ~/.cache)")
    parser.add_argument("--fixture", type=Path, help="build from this audio fixture instead (no network)")
    args = parser.parse_args(argv)
    if args.fixture:
        out = args.out or default_corpus_dir("fixture")
        clips = build_from_fixture(args.fixture, out, args.seed)
    else:
        out = args.out or default_corpus_dir(args.size)
        clips = build_corpus(out, args.size, args.seed)
    for domain in DOMAINS:
        chosen = [c for c in clips if c.domain == domain]
        print(f"{domain}: {len(chosen)} clips, {sum(c.duration for c in chosen):.1f} s")
    print(f"manifest: {Path(out) / 'manifest.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
