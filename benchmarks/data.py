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

The training split (``--split train``) holds every candidate file of these packages except the
files the ``quick`` and ``full`` corpora select with the same seed (held out by source file),
plus packages used only for training:

| domain | source | package | content | license |
|---|---|---|---|---|
| speech | ``asterisk-{fr,es,it,ru}`` | ``asterisk-core-sounds-{fr,es,it,ru}-g722`` + ``asterisk-core-sounds-{fr,es,it,ru}`` | Asterisk prompts in four more voices (G.722, 7 kHz band), with text | CC-BY-SA-3.0 |
| speech | ``asterisk-es-co`` | ``asterisk-prompt-es-co`` | Colombian Spanish prompts, voice July E. Jiménez (raw GSM 6.10, 8 kHz telephone band) | GPL-2 |
| speech | ``asterisk-fr-armelle`` | ``asterisk-prompt-fr-armelle`` | French prompts, voice Armelle Desjardins (raw GSM 6.10, 8 kHz) | BSD-style (Michel Gutierrez) |
| speech | ``asterisk-it-menardi`` | ``asterisk-prompt-it-menardi-wav`` | Italian prompts, voice Paola Dal Zot (8 kHz wav) | CC-BY-SA-3.0 Italy (Marco Menardi, Paola Dal Zot) |
| speech | ``fillets-{cs,nl}`` | ``fillets-ng-data-cs``, ``fillets-ng-data-nl`` | Fish Fillets NG dialogue (Vorbis 22 kHz), several actors | GPL-2+ |
| speech | ``fotaq`` | ``flight-of-the-amazon-queen`` | Flight of the Amazon Queen talkie, English, many actors: the ``*.SB`` entries of ``queen.1c`` (MP3 16 kbit/s, 11 kHz, about 4 kHz band) | FOTAQ freeware license (modification and redistribution allowed) |
| speech | ``hedgewars-voices`` | ``hedgewars-data`` | 15 acted voice packs of short game lines (Vorbis 44 kHz), mostly English | GFDL-1.3 |
| speech | ``tuxpaint`` | ``tuxpaint-stamps-default`` | spoken stamp descriptions (``*_desc*.ogg``) by volunteers in about 12 languages, home recordings | GPL-2+ |
| speech | ``klettres`` | ``klettres-data`` | letters and syllables spoken by native speakers of about 20 languages | GPL-2+ |
| music | ``hedgewars-music`` | ``hedgewars-data`` | soundtrack (Vorbis 44 kHz) | GPL-2 |
| sound | ``hydrogen`` | ``hydrogen-drumkits`` | drum kit samples (FLAC/wav) of at least 0.5 s | GPL-2+, CC-BY(-SA)-3.0, CC0 per kit |
| sound | ``hedgewars-sfx`` | ``hedgewars-data`` | game sound effects (``Data/Sounds/*.ogg``) | GFDL-1.3 (one CC-BY-SA-3.0) |
| sound | ``tuxpaint-sfx`` | ``tuxpaint-stamps-default`` | stamp sound effects (animals, tools, vehicles; not ``symbols/``) | GPL-2+ |

Training-only speech files are kept from 0.5 s. Training clips are whole files (Freedoom
songs cut to ``midi_seconds``) split into equal consecutive pieces of at most
``piece_seconds`` (``_partNN``); the total is capped at ``hours`` (10 by default,
``--hours``) by giving each domain, then each source within it, an equal share of what is
left (sources smaller than their share are taken whole).

G.722, GSM and MP3 need ``ffmpeg`` and MIDI needs ``fluidsynth`` (``apt-get install -y ffmpeg fluidsynth``);
without them those sources are left out with a note. Selection is deterministic for a seed. Clips are at most ``clip_seconds`` long. The corpus
folder holds ``speech/``, ``music/``, ``sound/`` (16-bit 16 kHz mono wav) and
``manifest.json``: ``{"size", "seed", "clips": [{"file", "domain", "duration", "transcript",
"license", "source"}]}`` with paths relative to the folder.

``python -m benchmarks.data --size quick`` builds the quick corpus, ``--split train`` the
training corpus (resumable: finished files are listed in ``.progress.jsonl``);
``--fixture ../shared/audio`` builds one from the small test fixture without network.
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from semanticodec.audio import load_audio
from semanticodec.commands import deprecated_alias
from semanticodec.constants import SAMPLE_RATE

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
    "asterisk-fr": ("asterisk-core-sounds-fr-g722", "asterisk-core-sounds-fr"),
    "asterisk-es": ("asterisk-core-sounds-es-g722", "asterisk-core-sounds-es"),
    "asterisk-it": ("asterisk-core-sounds-it-g722", "asterisk-core-sounds-it"),
    "asterisk-ru": ("asterisk-core-sounds-ru-g722", "asterisk-core-sounds-ru"),
    "fillets-cs": ("fillets-ng-data-cs",),
    "fillets-nl": ("fillets-ng-data-nl",),
    "hydrogen": ("hydrogen-drumkits",),
    "asterisk-es-co": ("asterisk-prompt-es-co",),
    "asterisk-fr-armelle": ("asterisk-prompt-fr-armelle",),
    "asterisk-it-menardi": ("asterisk-prompt-it-menardi-wav",),
    "fotaq": ("flight-of-the-amazon-queen",),
    "hedgewars-voices": ("hedgewars-data",),
    "hedgewars-music": ("hedgewars-data",),
    "hedgewars-sfx": ("hedgewars-data",),
    "tuxpaint": ("tuxpaint-stamps-default",),
    "tuxpaint-sfx": ("tuxpaint-stamps-default",),
    "klettres": ("klettres-data",),
}
BENCHMARK_SOURCES = ("librivox", "asterisk", "music", "freedoom", "sound")
TRAIN_ONLY_SOURCES = (
    "asterisk-fr",
    "asterisk-es",
    "asterisk-it",
    "asterisk-ru",
    "asterisk-es-co",
    "asterisk-fr-armelle",
    "asterisk-it-menardi",
    "fillets-cs",
    "fillets-nl",
    "fotaq",
    "hedgewars-voices",
    "tuxpaint",
    "klettres",
    "hedgewars-music",
    "hydrogen",
    "hedgewars-sfx",
    "tuxpaint-sfx",
)
# The language of each Asterisk core-sounds voice (its text is core-sounds-<lang>.txt.gz).
ASTERISK_LANGUAGES = {"asterisk": "en", "asterisk-fr": "fr", "asterisk-es": "es", "asterisk-it": "it", "asterisk-ru": "ru"}
# Each Asterisk voice: its folder under usr/share/asterisk/sounds and the format of its files.
ASTERISK_VOICES = {
    "asterisk": ("en_US_f_Allison", "g722"),
    "asterisk-fr": ("fr_CA_f_June", "g722"),
    "asterisk-es": ("es_MX_f_Allison", "g722"),
    "asterisk-it": ("it_IT_m_Carlo", "g722"),
    "asterisk-ru": ("ru_RU_f_IvrvoiceRU", "g722"),
    "asterisk-es-co": ("es", "gsm"),
    "asterisk-fr-armelle": ("fr", "gsm"),
    "asterisk-it-menardi": ("it_IT_f_Menardi", "wav"),
}
# Bytes per second of the raw streams whose duration is read from their size.
STREAM_BYTES_PER_SECOND = {"g722": 8000, "gsm": 1650, "mp3": 2000}  # 64 kbit/s; 33 B per 20 ms; 16 kbit/s (Queen speech)

LICENSES = {
    "librivox": "public domain (LibriVox); packaging BSD-2 (CMU pocketsphinx-testdata)",
    "asterisk": "CC-BY-SA-3.0 (Digium Asterisk core sounds, voice Allison Smith)",
    "music": "GPL-2+ (Battle for Wesnoth soundtrack)",
    "freedoom": "BSD-3 (Freedoom) + MIT (FluidR3_GM soundfont)",
    "sound": "CC0 (Sonic Pi samples, freesound)",
    "asterisk-fr": "CC-BY-SA-3.0 (Digium Asterisk core sounds, French, voice fr_CA_f_June)",
    "asterisk-es": "CC-BY-SA-3.0 (Digium Asterisk core sounds, Spanish, voice es_MX_f_Allison)",
    "asterisk-it": "CC-BY-SA-3.0 (Digium Asterisk core sounds, Italian, voice it_IT_m_Carlo)",
    "asterisk-ru": "CC-BY-SA-3.0 (Digium Asterisk core sounds, Russian, voice ru_RU_f_IvrvoiceRU)",
    "fillets-cs": "GPL-2+ (Fish Fillets NG, Czech dialogue)",
    "fillets-nl": "GPL-2+ (Fish Fillets NG, Dutch dialogue)",
    "hydrogen": "GPL-2+, CC-BY-3.0, CC-BY-SA-3.0 or CC0 by kit (Hydrogen drumkits, see its debian/copyright)",
    "asterisk-es-co": "GPL-2 (Avatar Ltda., Colombian Spanish Asterisk prompts, voice July E. Jiménez)",
    "asterisk-fr-armelle": "BSD-style, (C) 2006 Michel Gutierrez (French Asterisk prompts, voice Armelle Desjardins)",
    "asterisk-it-menardi": "CC-BY-SA-3.0 Italy, (C) Marco Menardi and Paola Dal Zot, http://www.voip.ammdomus.it (Italian Asterisk prompts)",
    "fotaq": "Flight of the Amazon Queen freeware license, (C) John Passfield and Steven Stamatiadis (modified: extracted speech)",
    "hedgewars-voices": "GFDL-1.3 (Hedgewars voice packs, (C) Andrey Korotaev)",
    "hedgewars-music": "GPL-2 (Hedgewars soundtrack, Hedgewars Project)",
    "hedgewars-sfx": "GFDL-1.3, Droplet sounds CC-BY-SA-3.0 (Hedgewars sound effects)",
    "tuxpaint": "GPL-2+ (Tux Paint stamp descriptions, volunteer voices)",
    "tuxpaint-sfx": "GPL-2+ (Tux Paint stamp sound effects)",
    "klettres": "GPL-2+ (KLettres letter and syllable recordings)",
}


@dataclass(frozen=True)
class TrainPlan:
    """The training split: total cap in hours, longest piece in seconds, how many Freedoom
    MIDI lumps are rendered and how much of each (seconds) is kept, and the peak level (dBFS)
    below which a file counts as silent and is left out (the Asterisk ``silence/`` prompts)."""

    hours: float = 10.0
    piece_seconds: float = 60.0
    midi_lumps: int = 24
    midi_seconds: float = 90.0
    silence_dbfs: float = -60.0


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
    """A source file that may be selected: ``path`` (any format libsndfile reads, a raw
    ``stream`` of ``STREAM_BYTES_PER_SECOND``'s formats decoded with ffmpeg, a Doom WAD whose
    MIDI lump ``lump`` is rendered with ``soundfont``, or a Flight of the Amazon Queen resource
    file whose entry ``lump`` is such a stream); duration in seconds (0: unknown before
    rendering)."""

    path: Path
    source: str
    domain: str
    duration: float
    transcript: str | None = None
    stream: str | None = None
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


def _decode_stream(path: Path, stream: str, out: Path) -> None:
    """Decode the raw ``stream`` (ffmpeg format name: ``g722``, ``gsm``, ``mp3``) in ``path`` to a 16 kHz mono wav."""
    if shutil.which("ffmpeg") is None:
        raise RuntimeError(f"ffmpeg is needed to decode {stream} (apt-get install -y ffmpeg)")
    subprocess.run(
        ["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-f", stream, "-i", str(path), "-ar", "16000", "-ac", "1", str(out)],
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


def queen_entries(path: str | os.PathLike) -> dict[str, tuple[int, int]]:
    """The entries of a Flight of the Amazon Queen resource file (``queen.1c`` with its table
    built in, as ScummVM's ``compress_queen`` writes it): {name: (byte offset, size)}.

    Layout: ``QTBL``, a 6-byte version string, 2 bytes, a compression byte (0 none, 1 MP3,
    2 Vorbis, 3 FLAC), the entry count (uint16 BE), then per entry a 12-byte NUL-padded name,
    a bundle byte, offset and size (uint32 BE). Only MP3-compressed files are accepted.
    """
    with open(path, "rb") as f:
        head = f.read(15)
        if len(head) < 15 or head[:4] != b"QTBL":
            raise ValueError(f"{path}: not a Queen resource file with a table (QTBL)")
        if head[12] != 1:
            raise ValueError(f"{path}: Queen sound compression {head[12]}, expected 1 (MP3)")
        count = int.from_bytes(head[13:15], "big")
        table = f.read(21 * count)
        end = f.seek(0, os.SEEK_END)
    if len(table) < 21 * count:
        raise ValueError(f"{path}: Queen resource table cut short")
    out = {}
    for i in range(count):
        entry = table[21 * i : 21 * (i + 1)]
        offset, size = int.from_bytes(entry[13:17], "big"), int.from_bytes(entry[17:21], "big")
        if offset + size > end:
            raise ValueError(f"{path}: Queen resource entry {i} lies outside the file")
        out[entry[:12].rstrip(b"\0").decode("ascii", errors="replace")] = (offset, size)
    return out


def _member_bytes(candidate: Candidate) -> bytes:
    """The bytes of ``candidate.lump`` inside ``candidate.path`` (a WAD lump or a Queen entry)."""
    if candidate.soundfont is not None:
        return wad_midi_lumps(candidate.path)[candidate.lump]
    offset, size = queen_entries(candidate.path)[candidate.lump]
    with open(candidate.path, "rb") as f:
        f.seek(offset)
        return f.read(size)


def _render_midi(candidate: Candidate, out: Path) -> None:
    if shutil.which("fluidsynth") is None:
        raise RuntimeError("fluidsynth is needed to render MIDI (apt-get install -y fluidsynth)")
    midi = out.with_suffix(".mid")
    midi.write_bytes(_member_bytes(candidate))
    subprocess.run(
        ["fluidsynth", "-ni", "-q", "-g", "0.4", "-r", str(SAMPLE_RATE), "-F", str(out), str(candidate.soundfont), str(midi)],
        check=True,
        stdout=subprocess.DEVNULL,
    )


def _load_candidate(candidate: Candidate) -> np.ndarray:
    """The whole source file as 16 kHz mono float32 ``[N]`` (streams decoded, MIDI rendered)."""
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp, "decoded.wav")
        if candidate.soundfont is not None:
            _render_midi(candidate, source)
        elif candidate.stream and candidate.lump:
            member = Path(tmp, "member")
            member.write_bytes(_member_bytes(candidate))
            _decode_stream(member, candidate.stream, source)
        elif candidate.stream:
            _decode_stream(candidate.path, candidate.stream, source)
        else:
            source = candidate.path
        return load_audio(source)


def _write_clip(candidate: Candidate, folder: Path, clip_seconds: float, seed: int) -> Clip:
    key = candidate.path.name + (candidate.lump or "")
    audio = _load_candidate(candidate)
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
    out += asterisk_candidates(tree, "asterisk", min_speech_seconds, require_text=True)
    out += _audio_files((tree / "usr/share/games/wesnoth/1.16/data/core/music").glob("*.ogg"), "music", "music")
    soundfont = tree / "usr/share/sounds/sf2/FluidR3_GM.sf2"
    if soundfont.is_file():
        for path in sorted((tree / "usr/share/games/doom").glob("freedoom*.wad")):
            for lump in sorted(wad_midi_lumps(path)):
                out.append(Candidate(path, "freedoom", "music", 0.0, lump=lump, soundfont=soundfont))
    out += _audio_files((tree / "usr/share/sonic-pi/samples").glob("*.flac"), "sound", "sound", min_sound_seconds)
    return out


def asterisk_candidates(tree: Path, source: str, min_seconds: float, require_text: bool) -> list[Candidate]:
    """The prompts of an Asterisk voice (``source`` in ``ASTERISK_VOICES``: its folder under
    ``usr/share/asterisk/sounds`` and file format) of at least ``min_seconds``, with the text
    of ``core-sounds-<lang>.txt.gz`` for the core-sounds voices (``ASTERISK_LANGUAGES``)."""
    folder, fmt = ASTERISK_VOICES[source]
    voice = tree / "usr/share/asterisk/sounds" / folder
    texts = {}
    if source in ASTERISK_LANGUAGES:
        lang = ASTERISK_LANGUAGES[source]
        text_file = tree / f"usr/share/doc/asterisk-core-sounds-{lang}/core-sounds-{lang}.txt.gz"
        if not text_file.is_file():
            return []
        texts = parse_asterisk_text(gzip.decompress(text_file.read_bytes()).decode("utf-8-sig", errors="replace"))
    out = []
    for path in sorted(voice.rglob(f"*.{fmt}")):
        name = path.relative_to(voice).with_suffix("").as_posix()
        stream = fmt if fmt in STREAM_BYTES_PER_SECOND else None
        seconds = path.stat().st_size / STREAM_BYTES_PER_SECOND[fmt] if stream else _duration(path)
        if seconds >= min_seconds and (name in texts or not require_text):
            out.append(Candidate(path, source, "speech", seconds, texts.get(name), stream=stream))
    return out


def _audio_files(paths: Iterable[Path], source: str, domain: str, min_seconds: float = 0.0) -> list[Candidate]:
    """The audio files ``paths`` (any libsndfile format) of at least ``min_seconds`` as
    candidates of ``source``, in path order."""
    out = []
    for path in sorted(paths):
        seconds = _duration(path)
        if seconds >= min_seconds:
            out.append(Candidate(path, source, domain, seconds))
    return out


def train_only_candidates(tree: Path, min_sound_seconds: float = 0.5, min_speech_seconds: float = 0.5) -> list[Candidate]:
    """Candidates of ``TRAIN_ONLY_SOURCES`` under ``tree`` (see the module table): the other
    Asterisk voices, Fish Fillets NG dialogue (``usr/share/games/fillets-ng/sound/<level>/<cs|nl>/*.ogg``),
    the speech entries of Flight of the Amazon Queen, Hedgewars voices, music and sounds
    (``usr/share/games/hedgewars/Data/{Sounds/voices/*,Music,Sounds}/*.ogg``), Tux Paint stamp
    descriptions and sound effects, KLettres recordings and Hydrogen drum samples."""
    out = []
    for source in (s for s in TRAIN_ONLY_SOURCES if s in ASTERISK_VOICES):
        out += asterisk_candidates(tree, source, min_speech_seconds, require_text=False)
    for lang in ("cs", "nl"):
        dialogue = (tree / "usr/share/games/fillets-ng/sound").glob(f"*/{lang}/*.ogg")
        out += _audio_files(dialogue, f"fillets-{lang}", "speech", min_speech_seconds)
    queen = tree / "usr/share/scummvm/flight-of-the-amazon-queen/queen.1c"
    if queen.is_file():
        for name, (_, size) in sorted(queen_entries(queen).items()):
            seconds = size / STREAM_BYTES_PER_SECOND["mp3"]
            if name.endswith(".SB") and seconds >= min_speech_seconds:
                out.append(Candidate(queen, "fotaq", "speech", seconds, stream="mp3", lump=name))
    hedgewars = tree / "usr/share/games/hedgewars/Data"
    out += _audio_files((hedgewars / "Sounds/voices").glob("*/*.ogg"), "hedgewars-voices", "speech", min_speech_seconds)
    stamps = tree / "usr/share/tuxpaint/stamps"
    out += _audio_files(stamps.glob("**/*_desc*.ogg"), "tuxpaint", "speech", min_speech_seconds)
    out += _audio_files((tree / "usr/share/klettres").glob("*/*/*.ogg"), "klettres", "speech", min_speech_seconds)
    out += _audio_files((hedgewars / "Music").glob("*.ogg"), "hedgewars-music", "music", min_sound_seconds)
    kits = tree / "usr/share/hydrogen/data/drumkits"
    out += _audio_files((p for p in kits.rglob("*") if p.suffix.lower() in (".flac", ".wav")), "hydrogen", "sound", min_sound_seconds)
    out += _audio_files((hedgewars / "Sounds").glob("*.ogg"), "hedgewars-sfx", "sound", min_sound_seconds)
    effects = (  # symbols/ holds spoken letters and digits, *_desc* the spoken descriptions
        p for p in stamps.glob("**/*.ogg") if "_desc" not in p.name and p.relative_to(stamps).parts[0] != "symbols"
    )
    out += _audio_files(effects, "tuxpaint-sfx", "sound", min_sound_seconds)
    return out


def _key(candidate: Candidate) -> str:
    return f"{candidate.path}#{candidate.lump or ''}"


def held_out(candidates: list[Candidate], seed: int) -> set[str]:
    """Keys (``path#lump``) of the files that the ``SIZES`` corpora select from
    ``candidates`` with ``seed``: the test split, never used for training."""
    out = set()
    for plan in SIZES.values():
        for source in BENCHMARK_SOURCES:
            pool = [c for c in candidates if c.source == source]
            out.update(_key(c) for c in select(pool, getattr(plan, source), seed))
    return out


def water_fill(totals: dict[str, float], cap: float) -> dict[str, float]:
    """Budgets (same unit as ``totals``) summing to at most ``cap``: the smallest entries are
    taken whole while they fit under an equal share of what is left, the rest get that share."""
    if cap < 0:
        raise ValueError(f"cap must be >= 0, got {cap}")
    out, remaining = {}, cap
    names = sorted(totals, key=lambda n: (totals[n], n))
    for i, name in enumerate(names):
        out[name] = min(totals[name], remaining / (len(names) - i))
        remaining -= out[name]
    return out


def train_selection(
    benchmark: list[Candidate], pool: list[Candidate], seed: int, plan: TrainPlan = TrainPlan()
) -> list[Candidate]:
    """The training files: ``pool`` without the files ``held_out(benchmark, seed)``, at most
    ``plan.midi_lumps`` Freedoom lumps (counted as ``plan.midi_seconds`` each), capped at
    ``plan.hours`` by ``water_fill`` over domains and then over the sources of each domain;
    each source keeps a seeded prefix of its files. Returns source-grouped candidates."""
    test = held_out(benchmark, seed)
    by_source: dict[str, list[Candidate]] = {}
    for candidate in pool:
        if _key(candidate) not in test:
            by_source.setdefault(candidate.source, []).append(candidate)
    for source, files in by_source.items():
        count = plan.midi_lumps if source == "freedoom" else len(files)
        by_source[source] = select(files, count, seed)
    seconds = {s: [plan.midi_seconds if c.soundfont else c.duration for c in files] for s, files in by_source.items()}
    domain_of = {s: files[0].domain for s, files in by_source.items()}
    domain_totals = {d: sum(sum(seconds[s]) for s in seconds if domain_of[s] == d) for d in set(domain_of.values())}
    out = []
    for domain, budget in water_fill(domain_totals, plan.hours * 3600).items():
        sources = {s: sum(seconds[s]) for s in seconds if domain_of[s] == domain}
        for source, share in sorted(water_fill(sources, budget).items()):
            total = 0.0
            for candidate, length in zip(by_source[source], seconds[source]):
                if total >= share - 1e-6:
                    break
                out.append(candidate)
                total += length
    return out


def split_pieces(audio: np.ndarray, piece_seconds: float, sample_rate: int = SAMPLE_RATE) -> list[np.ndarray]:
    """``audio [N]`` cut into the fewest equal consecutive pieces of at most ``piece_seconds``
    (none for empty audio)."""
    if piece_seconds <= 0:
        raise ValueError(f"piece_seconds must be > 0, got {piece_seconds}")
    count = math.ceil(audio.size / int(piece_seconds * sample_rate))
    bounds = np.linspace(0, audio.size, count + 1).round().astype(int)
    return [audio[a:b] for a, b in zip(bounds[:-1], bounds[1:])]


def _train_names(selected: list[Candidate]) -> dict[str, str]:
    """A unique file stem per candidate: source, then as many trailing path parts as needed."""
    depth = {_key(c): 1 for c in selected}

    def stem(c: Candidate) -> str:
        parts = c.path.with_suffix("").parts[-depth[_key(c)] :]
        text = "_".join(parts) + (f"_{c.lump}" if c.lump else "")
        return f"{c.source}_" + re.sub(r"[^A-Za-z0-9._-]+", "-", text)

    while True:
        names: dict[str, list[Candidate]] = {}
        for c in selected:
            names.setdefault(f"{c.domain}/{stem(c)}", []).append(c)
        clashes = [c for group in names.values() if len(group) > 1 for c in group]
        if not clashes:
            return {_key(c): stem(c) for c in selected}
        for c in clashes:
            depth[_key(c)] += 1


def write_train_file(candidate: Candidate, stem: str, folder: Path, plan: TrainPlan = TrainPlan()) -> list[Clip]:
    """One training file as ``<domain>/<stem>[_partNN].wav`` pieces (16 kHz mono PCM-16) under
    ``folder``; the transcript is kept only for a file written whole. A silent file (peak
    below ``plan.silence_dbfs``) gives no pieces."""
    audio = _load_candidate(candidate)
    if candidate.soundfont:
        audio = audio[: int(plan.midi_seconds * SAMPLE_RATE)]
    peak = float(np.abs(audio).max(initial=0.0))
    if peak < 10 ** (plan.silence_dbfs / 20):
        return []
    if peak > 1.0:
        audio = audio / peak
    pieces = split_pieces(audio, plan.piece_seconds)
    (folder / candidate.domain).mkdir(parents=True, exist_ok=True)
    clips = []
    for i, piece in enumerate(pieces):
        name = stem if len(pieces) == 1 else f"{stem}_part{i:02d}"
        relative = Path(candidate.domain) / f"{name}.wav"
        partial = folder / relative.with_suffix(".part.wav")
        sf.write(partial, piece, SAMPLE_RATE, subtype="PCM_16")
        partial.replace(folder / relative)
        transcript = candidate.transcript if len(pieces) == 1 else None
        duration = round(piece.size / SAMPLE_RATE, 4)
        clips.append(Clip(relative.as_posix(), candidate.domain, duration, transcript, LICENSES[candidate.source], candidate.source))
    return clips


def _resume(progress: Path, folder: Path, names: dict[str, str]) -> dict[str, list[Clip]]:
    """The files of ``.progress.jsonl`` that are still wanted under the same name and whose
    pieces all exist."""
    done = {}
    if progress.is_file():
        for line in progress.read_text().splitlines():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by an interrupted run
            clips = [Clip(**c) for c in entry["clips"]]
            stem = re.escape(names.get(entry["key"], "/"))
            if all(re.fullmatch(rf"{stem}(_part\d\d)?", Path(c.file).stem) and (folder / c.file).is_file() for c in clips):
                done[entry["key"]] = clips
    return done


def build_train(
    folder: str | os.PathLike,
    seed: int = 0,
    cache: str | os.PathLike | None = None,
    plan: TrainPlan = TrainPlan(),
    workers: int = 2,
) -> list[Clip]:
    """Fetch the packages, select the training files (``train_selection``) and write them to
    ``folder`` with ``manifest.json`` (``"size": "train"``). Files finished by an earlier run
    with the same selection are reused; wav files not in the new manifest are removed."""
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    for tool in ("ffmpeg", "fluidsynth"):
        if shutil.which(tool) is None:
            raise RuntimeError(f"{tool} is needed for the training split (apt-get install -y {tool})")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cache = Path(cache) if cache else Path.home() / ".cache" / "semanticodec-bench"
    tree = fetch_packages(tuple(p for s in BENCHMARK_SOURCES + TRAIN_ONLY_SOURCES for p in PACKAGES[s]), cache)
    benchmark = debian_candidates(tree)
    pool = debian_candidates(tree, min_sound_seconds=0.5, min_speech_seconds=1.0) + train_only_candidates(tree)
    selected = train_selection(benchmark, pool, seed, plan)
    names = _train_names(selected)
    progress = folder / ".progress.jsonl"
    done = _resume(progress, folder, names)
    todo = [c for c in selected if _key(c) not in done]
    print(f"train: {len(selected)} files, {len(selected) - len(todo)} already written", file=sys.stderr)
    with progress.open("a") as log, ProcessPoolExecutor(workers) as pool_exec:
        jobs = {pool_exec.submit(write_train_file, c, names[_key(c)], folder, plan): c for c in todo}
        for n, job in enumerate(as_completed(jobs), 1):
            key = _key(jobs[job])
            done[key] = job.result()
            log.write(json.dumps({"key": key, "clips": [asdict(c) for c in done[key]]}) + "\n")
            log.flush()
            if n % 200 == 0:
                print(f"train: {n}/{len(todo)} files written", file=sys.stderr)
    clips = [clip for c in selected for clip in done[_key(c)]]
    keep = {c.file for c in clips}
    for path in folder.glob("*/*.wav"):
        if path.relative_to(folder).as_posix() not in keep:
            path.unlink()
    manifest = {"size": "train", "seed": seed, "clips": [asdict(c) for c in clips]}
    partial = folder / "manifest.json.part"
    partial.write_text(json.dumps(manifest, indent=1) + "\n")
    partial.replace(folder / "manifest.json")
    return clips


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
    sources = list(BENCHMARK_SOURCES)
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
    parser.add_argument("--split", choices=("benchmark", "train"), default="benchmark", help="train: everything but the benchmark files")
    parser.add_argument("--size", choices=sorted(SIZES), default="quick", help="benchmark corpus size")
    parser.add_argument("--workers", type=int, default=2, help="processes for the train split")
    parser.add_argument("--hours", type=float, default=TrainPlan.hours, help="cap of the train split in hours")
    parser.add_argument("--seed", type=int, default=0)
    output = parser.add_argument("-o", "--output", dest="out", type=Path, help="corpus folder (default: $SEMANTICODEC_BENCH_DATA/<size> or ~/.cache)")
    deprecated_alias(parser, "--out", output)
    parser.add_argument("--fixture", type=Path, help="build from this audio fixture instead (no network)")
    args = parser.parse_args(argv)
    if args.hours <= 0:
        parser.error(f"--hours must be > 0, got {args.hours}")
    if args.fixture:
        out = args.out or default_corpus_dir("fixture")
        clips = build_from_fixture(args.fixture, out, args.seed)
    elif args.split == "train":
        out = args.out or default_corpus_dir("train")
        clips = build_train(out, args.seed, plan=TrainPlan(hours=args.hours), workers=args.workers)
    else:
        out = args.out or default_corpus_dir(args.size)
        clips = build_corpus(out, args.size, args.seed)
    for domain in DOMAINS:
        chosen = [c for c in clips if c.domain == domain]
        print(f"{domain}: {len(chosen)} clips, {sum(c.duration for c in chosen):.1f} s")
        for source in sorted({c.source for c in chosen}):
            mine = [c for c in chosen if c.source == source]
            print(f"  {source}: {len(mine)} clips, {sum(c.duration for c in mine) / 60:.1f} min")
    print(f"total: {sum(c.duration for c in clips) / 3600:.2f} h")
    print(f"manifest: {Path(out) / 'manifest.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
