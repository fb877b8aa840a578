"""Benchmark corpus builder: parsers, deterministic selection, the fixture corpus, the
Debian package layouts (on synthetic trees), G.722/GSM/MP3 decoding and the training split."""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from benchmarks import data
from parity import shared_path


def test_parse_librivox_transcription():
    text = "<s> he was not an ill disposed young man </s> (sense-0880)\n<s> go </s> (x-1)\n\ngarbage\n"
    assert data.parse_librivox_transcription(text) == {"sense-0880": "he was not an ill disposed young man", "x-1": "go"}


def test_parse_asterisk_text():
    text = "; Core Asterisk Sounds in English\n\nadded: Added.\ndigits/1: One.\nempty:\nvm-intro: Please leave your message: after the tone.\n"
    assert data.parse_asterisk_text(text) == {
        "added": "Added.",
        "digits/1": "One.",
        "vm-intro": "Please leave your message: after the tone.",
    }


def _candidates(n: int) -> list[data.Candidate]:
    return [data.Candidate(Path(f"/x/{i:02d}.wav"), "sound", "sound", 1.0) for i in range(n)]


def test_select_is_deterministic_and_seeded():
    pool = _candidates(20)
    first = data.select(pool, 5, seed=0)
    assert first == data.select(list(reversed(pool)), 5, seed=0)
    assert len(set(first)) == 5
    assert first != data.select(pool, 5, seed=1)
    assert sorted(data.select(pool, 50, seed=0), key=lambda c: c.path) == pool
    with pytest.raises(ValueError, match="count"):
        data.select(pool, -1, seed=0)


@pytest.fixture(scope="module")
def fixture_corpus(tmp_path_factory):
    root = shared_path("audio")
    folder = tmp_path_factory.mktemp("corpus")
    clips = data.build_from_fixture(root, folder, seed=0, clip_seconds=6.0)
    return folder, clips


def test_fixture_corpus_manifest(fixture_corpus):
    folder, clips = fixture_corpus
    assert data.read_manifest(folder) == clips
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["size"] == "fixture" and manifest["seed"] == 0
    by_domain = {d: [c for c in clips if c.domain == d] for d in data.DOMAINS}
    assert [len(by_domain[d]) for d in data.DOMAINS] == [17, 3, 12]
    for clip in clips:
        audio, rate = sf.read(folder / clip.file, dtype="float32", always_2d=True)
        assert rate == 16000 and audio.shape[1] == 1
        assert clip.duration == pytest.approx(audio.shape[0] / 16000, abs=1e-3)
        assert 0 < clip.duration <= 6.0
        assert clip.license
    assert all(c.transcript for c in by_domain["speech"])
    assert all(c.transcript is None for c in by_domain["music"] + by_domain["sound"])
    assert {c.source for c in by_domain["speech"]} == {"librivox", "asterisk"}
    stereo = next(c for c in by_domain["music"] if "44k_stereo" in c.file)
    assert stereo.duration == pytest.approx(6.0)


def test_fixture_corpus_is_reproducible(fixture_corpus, tmp_path):
    folder, clips = fixture_corpus
    again = data.build_from_fixture(shared_path("audio"), tmp_path, seed=0, per_domain=2, clip_seconds=6.0)
    assert len(again) == 6
    for clip in again:
        np.testing.assert_array_equal(sf.read(tmp_path / clip.file)[0], sf.read(folder / clip.file)[0])


def test_bad_folders_raise(tmp_path):
    with pytest.raises(ValueError, match="manifest.json"):
        data.read_manifest(tmp_path)
    with pytest.raises(ValueError, match="fixture"):
        data.fixture_candidates(tmp_path)
    with pytest.raises(ValueError, match="size"):
        data.build_corpus(tmp_path, size="huge")


def _tone(path: Path, seconds: float, rate: int = 16000, fmt: str | None = None) -> None:
    t = np.arange(int(seconds * rate)) / rate
    sf.write(path, 0.3 * np.sin(2 * np.pi * 440 * t), rate, format=fmt)


def test_debian_candidates_on_the_package_layout(tmp_path):
    libri = tmp_path / "usr/share/pocketsphinx/test/data/librivox"
    libri.mkdir(parents=True)
    _tone(libri / "utt-1.wav", 1.5)
    (libri / "transcription").write_text("<s> hello there </s> (utt-1)\n")
    sounds = tmp_path / "usr/share/asterisk/sounds/en_US_f_Allison"
    (sounds / "digits").mkdir(parents=True)
    (sounds / "long-prompt.g722").write_bytes(bytes(8000 * 3))
    (sounds / "digits/1.g722").write_bytes(bytes(8000))
    (sounds / "no-text.g722").write_bytes(bytes(8000 * 3))
    doc = tmp_path / "usr/share/doc/asterisk-core-sounds-en"
    doc.mkdir(parents=True)
    (doc / "core-sounds-en.txt.gz").write_bytes(gzip.compress(b"; x\nlong-prompt: A long prompt.\ndigits/1: One.\n"))
    music = tmp_path / "usr/share/games/wesnoth/1.16/data/core/music"
    music.mkdir(parents=True)
    _tone(music / "theme.ogg", 30.0, 44100, "OGG")
    samples = tmp_path / "usr/share/sonic-pi/samples"
    samples.mkdir(parents=True)
    _tone(samples / "long.flac", 1.5, 44100)
    _tone(samples / "short.flac", 0.2, 44100)

    found = {(c.source, c.path.name): c for c in data.debian_candidates(tmp_path)}
    assert set(found) == {("librivox", "utt-1.wav"), ("asterisk", "long-prompt.g722"), ("music", "theme.ogg"), ("sound", "long.flac")}
    assert found["librivox", "utt-1.wav"].transcript == "hello there"
    prompt = found["asterisk", "long-prompt.g722"]
    assert prompt.stream == "g722" and prompt.transcript == "A long prompt." and prompt.duration == 3.0

    clips = data.write_corpus([found["music", "theme.ogg"], found["sound", "long.flac"]], tmp_path / "out", "t", 0, 10.0)
    excerpt, short = clips
    assert excerpt.duration == 10.0 and excerpt.file.startswith("music/music_theme_")
    assert short.duration == 1.5 and short.file == "sound/sound_long.wav"


def _encode(tmp_path: Path, stream: str, seconds: float = 2.0) -> Path:
    """A 440 Hz tone encoded by ffmpeg as a raw ``stream`` (g722, gsm or mp3 as in the packages)."""
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not installed (apt-get install -y ffmpeg)")
    _tone(tmp_path / "tone.wav", seconds)
    codec = {
        "g722": ["-acodec", "g722"],
        "gsm": ["-acodec", "libgsm", "-ar", "8000"],
        "mp3": ["-acodec", "libmp3lame", "-ar", "11025", "-b:a", "16k", "-id3v2_version", "0", "-write_xing", "0"],
    }[stream]
    out = tmp_path / f"prompt.{stream}"
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-i", str(tmp_path / "tone.wav"), *codec, "-f", stream, str(out)], check=True)
    return out


def _assert_tone(audio: np.ndarray, seconds: float) -> None:
    assert audio.size / 16000 == pytest.approx(seconds, abs=0.2)  # MP3 keeps its encoder delay and padding
    spectrum = np.abs(np.fft.rfft(audio))
    assert np.argmax(spectrum) * 16000 / audio.size == pytest.approx(440, abs=2)


@pytest.mark.parametrize("stream", ["g722", "gsm"])
def test_raw_prompt_is_decoded(tmp_path, stream):
    raw = _encode(tmp_path, stream)
    seconds = raw.stat().st_size / data.STREAM_BYTES_PER_SECOND[stream]
    assert seconds == pytest.approx(2.0, abs=0.03)
    candidate = data.Candidate(raw, "asterisk", "speech", seconds, "A tone.", stream=stream)
    (clip,) = data.write_corpus([candidate], tmp_path / "out", "t", 0, 10.0)
    audio, rate = sf.read(tmp_path / "out" / clip.file)
    assert rate == 16000 and clip.transcript == "A tone."
    _assert_tone(audio, 2.0)


def test_asterisk_voices_are_found_by_their_folder(tmp_path):
    sounds = tmp_path / "usr/share/asterisk/sounds"
    for folder in ("it_IT_m_Carlo", "it_IT_f_Menardi/digits", "es"):
        (sounds / folder).mkdir(parents=True)
    (sounds / "it_IT_m_Carlo/saluti.g722").write_bytes(bytes(8000 * 2))
    _tone(sounds / "it_IT_f_Menardi/digits/1.wav", 1.5, 8000)
    (sounds / "it_IT_f_Menardi/ignored.gsm").write_bytes(bytes(1650 * 2))
    (sounds / "es/auth-thankyou.gsm").write_bytes(bytes(1650 * 2))
    (sounds / "es/beep.gsm").write_bytes(bytes(330))  # 0.2 s
    doc = tmp_path / "usr/share/doc/asterisk-core-sounds-it"
    doc.mkdir(parents=True)
    (doc / "core-sounds-it.txt.gz").write_bytes(gzip.compress(b"saluti: Saluti.\n"))

    (carlo,) = data.asterisk_candidates(tmp_path, "asterisk-it", 0.5, require_text=False)  # Menardi is not Carlo
    assert carlo.path.name == "saluti.g722" and carlo.transcript == "Saluti." and carlo.stream == "g722"
    (menardi,) = data.asterisk_candidates(tmp_path, "asterisk-it-menardi", 0.5, require_text=False)
    assert menardi.path.name == "1.wav" and menardi.stream is None and menardi.transcript is None
    assert menardi.duration == pytest.approx(1.5)
    (colombia,) = data.asterisk_candidates(tmp_path, "asterisk-es-co", 0.5, require_text=False)
    assert colombia.path.name == "auth-thankyou.gsm" and colombia.stream == "gsm" and colombia.duration == 2.0
    assert data.asterisk_candidates(tmp_path, "asterisk-fr-armelle", 0.5, require_text=False) == []


def _queen(path: Path, entries: dict[str, bytes], compression: int = 1) -> None:
    """A Queen resource file with its table: QTBL, version, 2 bytes, compression, count, entries."""
    header = b"QTBL" + b"CEM10\0" + bytes(2) + bytes([compression]) + len(entries).to_bytes(2, "big")
    offset, table = len(header) + 21 * len(entries), b""
    for name, payload in entries.items():
        table += name.encode().ljust(12, b"\0") + b"\1" + offset.to_bytes(4, "big") + len(payload).to_bytes(4, "big")
        offset += len(payload)
    path.write_bytes(header + table + b"".join(entries.values()))


def test_queen_entries(tmp_path):
    _queen(tmp_path / "queen.1c", {"JOE0001.SB": b"abc", "ROOM1.PCX": b"de"})
    entries = data.queen_entries(tmp_path / "queen.1c")
    assert entries == {"JOE0001.SB": (57, 3), "ROOM1.PCX": (60, 2)}
    (tmp_path / "bad.1c").write_bytes(b"QUEEN" + bytes(20))
    with pytest.raises(ValueError, match="QTBL"):
        data.queen_entries(tmp_path / "bad.1c")
    _queen(tmp_path / "plain.1c", {"A.SB": b"x"}, compression=0)
    with pytest.raises(ValueError, match="compression 0"):
        data.queen_entries(tmp_path / "plain.1c")
    raw = (tmp_path / "queen.1c").read_bytes()
    (tmp_path / "cut.1c").write_bytes(raw[:-1])
    with pytest.raises(ValueError, match="outside"):
        data.queen_entries(tmp_path / "cut.1c")


def test_queen_speech_is_decoded(tmp_path):
    mp3 = _encode(tmp_path, "mp3", seconds=3.0).read_bytes()
    tree = tmp_path / "tree"
    game = tree / "usr/share/scummvm/flight-of-the-amazon-queen"
    game.mkdir(parents=True)
    _queen(game / "queen.1c", {"JOE0001.SB": mp3, "JOE0002.SB": mp3[:400], "ROOM1.PCX": bytes(9000)})
    (speech,) = data.train_only_candidates(tree)  # the 0.2 s entry and the picture are left out
    assert (speech.source, speech.domain, speech.lump, speech.stream) == ("fotaq", "speech", "JOE0001.SB", "mp3")
    assert speech.duration == pytest.approx(3.0, abs=0.2)  # size / 2000 B/s, with the encoder's padding frames
    (clip,) = data.write_train_file(speech, "fotaq_queen_JOE0001.SB", tmp_path / "out")
    assert clip.file == "speech/fotaq_queen_JOE0001.SB.wav" and clip.license.startswith("Flight of the Amazon Queen")
    audio, rate = sf.read(tmp_path / "out" / clip.file)
    assert rate == 16000
    _assert_tone(audio, 3.0)


def test_train_only_candidates_on_the_package_layouts(tmp_path):
    files = {
        "usr/share/games/fillets-ng/sound/city/cs/line.ogg": ("fillets-cs", "speech"),
        "usr/share/games/hedgewars/Data/Sounds/voices/Pirate/Ooops.ogg": ("hedgewars-voices", "speech"),
        "usr/share/games/hedgewars/Data/Music/City.ogg": ("hedgewars-music", "music"),
        "usr/share/games/hedgewars/Data/Sounds/explosion.ogg": ("hedgewars-sfx", "sound"),
        "usr/share/tuxpaint/stamps/animals/cat_desc_fr.ogg": ("tuxpaint", "speech"),
        "usr/share/tuxpaint/stamps/animals/cat_desc.ogg": ("tuxpaint", "speech"),
        "usr/share/tuxpaint/stamps/animals/cat.ogg": ("tuxpaint-sfx", "sound"),
        "usr/share/tuxpaint/stamps/symbols/math/7.ogg": None,  # a spoken digit: neither
        "usr/share/klettres/en/alpha/a.ogg": ("klettres", "speech"),
        "usr/share/hydrogen/data/drumkits/Kit/kick.flac": ("hydrogen", "sound"),
    }
    for name in files:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        _tone(tmp_path / name, 0.6, 22050, "FLAC" if name.endswith(".flac") else "OGG")
    _tone(tmp_path / "usr/share/klettres/en/alpha/b.ogg", 0.3, 22050, "OGG")  # under the 0.5 s minimum
    found = {c.path.relative_to(tmp_path).as_posix(): (c.source, c.domain) for c in data.train_only_candidates(tmp_path)}
    assert found == {name: kind for name, kind in files.items() if kind}
    assert set(found.values()) <= {(s, d) for s in data.TRAIN_ONLY_SOURCES for d in data.DOMAINS}
    assert {s for s, _ in found.values()} <= set(data.PACKAGES) & set(data.LICENSES)


def _midi_note() -> bytes:
    """A format-0 MIDI file: middle C for one second (96 ticks per beat, 120 bpm)."""
    track = bytes([0x00, 0x90, 60, 100, 0x81, 0x40, 0x80, 60, 0, 0x00, 0xFF, 0x2F, 0x00])
    return b"MThd" + (6).to_bytes(4, "big") + bytes([0, 0, 0, 1, 0, 96]) + b"MTrk" + len(track).to_bytes(4, "big") + track


def _wad(path: Path, lumps: dict[str, bytes]) -> None:
    body, directory = b"", b""
    for name, payload in lumps.items():
        directory += np.array([12 + len(body), len(payload)], "<i4").tobytes() + name.encode().ljust(8, b"\0")
        body += payload
    path.write_bytes(b"IWAD" + np.array([len(lumps), 12 + len(body)], "<i4").tobytes() + body + directory)


def test_wad_midi_lumps(tmp_path):
    midi = _midi_note()
    _wad(tmp_path / "t.wad", {"PLAYPAL": bytes(10), "D_RUNNIN": midi, "D_MUSFMT": b"MUS\x1a" + bytes(8)})
    assert data.wad_midi_lumps(tmp_path / "t.wad") == {"D_RUNNIN": midi}
    (tmp_path / "bad.wad").write_bytes(b"PK\x03\x04" + bytes(20))
    with pytest.raises(ValueError, match="not a WAD"):
        data.wad_midi_lumps(tmp_path / "bad.wad")
    (tmp_path / "cut.wad").write_bytes(b"IWAD" + np.array([5, 400], "<i4").tobytes())
    with pytest.raises(ValueError, match="corrupt"):
        data.wad_midi_lumps(tmp_path / "cut.wad")


def test_midi_lump_is_rendered(tmp_path):
    soundfont = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")
    if shutil.which("fluidsynth") is None or not soundfont.is_file():
        pytest.skip("fluidsynth or its FluidR3_GM soundfont is not installed (apt-get install -y fluidsynth fluid-soundfont-gm)")
    _wad(tmp_path / "freedoom1.wad", {"D_E1M1": _midi_note()})
    candidate = data.Candidate(tmp_path / "freedoom1.wad", "freedoom", "music", 0.0, lump="D_E1M1", soundfont=soundfont)
    (clip,) = data.write_corpus([candidate], tmp_path / "out", "t", 0, 10.0)
    assert clip.file == "music/freedoom_freedoom1_D_E1M1.wav" and clip.license.startswith("BSD-3")
    audio, rate = sf.read(tmp_path / "out" / clip.file)
    assert rate == 16000 and 1.0 <= clip.duration <= 4.0
    assert np.sqrt(np.mean(audio[:rate] ** 2)) > 1e-3
    spectrum = np.abs(np.fft.rfft(audio[:rate]))
    peak_hz = np.argmax(spectrum)  # 1 Hz bins
    harmonic = peak_hz / 261.63
    assert round(harmonic) >= 1 and abs(harmonic - round(harmonic)) < 0.03, peak_hz


def _pool() -> list[data.Candidate]:
    """Synthetic candidates of every benchmark source (more than the full corpus takes) and
    one training-only source."""
    out = []
    for source, domain, count in (("librivox", "speech", 8), ("asterisk", "speech", 40), ("music", "music", 20), ("sound", "sound", 30)):
        out += [data.Candidate(Path(f"/t/{source}/{i:02d}.wav"), source, domain, 5.0 + i) for i in range(count)]
    for wad in ("freedoom1.wad", "freedoom2.wad"):
        out += [data.Candidate(Path(f"/t/{wad}"), "freedoom", "music", 0.0, lump=f"D_M{i:02d}", soundfont=Path("/t/gm.sf2")) for i in range(20)]
    out += [data.Candidate(Path(f"/t/fillets/{i:03d}.ogg"), "fillets-cs", "speech", 3.0) for i in range(100)]
    return out


def test_train_split_holds_out_the_benchmark_files():
    pool = _pool()
    test = data.held_out(pool, seed=0)
    for plan in data.SIZES.values():
        for source in data.BENCHMARK_SOURCES:
            chosen = data.select([c for c in pool if c.source == source], getattr(plan, source), 0)
            assert {data._key(c) for c in chosen} <= test
    assert len(test) == sum(getattr(data.SIZES["full"], s) for s in data.BENCHMARK_SOURCES)  # quick ⊂ full

    plan = data.TrainPlan(hours=100.0, midi_lumps=5)
    train = data.train_selection(pool, pool, seed=0, plan=plan)
    keys = [data._key(c) for c in train]
    assert len(keys) == len(set(keys)) and not set(keys) & test
    freedoom = [c for c in train if c.source == "freedoom"]
    assert len(freedoom) == 5
    rest = [c for c in pool if c.source != "freedoom" and data._key(c) not in test]
    assert {data._key(c) for c in train if c.source != "freedoom"} == {data._key(c) for c in rest}
    assert data.train_selection(list(reversed(pool)), pool, 0, plan) == train
    assert not {data._key(c) for c in data.train_selection(pool, pool, 1, plan)} & data.held_out(pool, 1)


def test_water_fill_and_the_hours_cap():
    assert data.water_fill({"a": 1.0, "b": 10.0, "c": 10.0}, 9.0) == {"a": 1.0, "b": 4.0, "c": 4.0}
    assert data.water_fill({"a": 1.0, "b": 2.0}, 10.0) == {"a": 1.0, "b": 2.0}
    with pytest.raises(ValueError, match="cap"):
        data.water_fill({"a": 1.0}, -1.0)
    pool = _pool()
    plan = data.TrainPlan(hours=0.1, midi_lumps=4, midi_seconds=30.0)
    train = data.train_selection(pool, pool, 0, plan)
    seconds = {d: sum(30.0 if c.soundfont else c.duration for c in train if c.domain == d) for d in data.DOMAINS}
    assert sum(seconds.values()) <= 360 + 6 * 45  # each of 6 sources overshoots by at most one file
    assert min(seconds.values()) > 60  # every domain gets a share
    assert {c.source for c in train if c.domain == "speech"} == {"librivox", "asterisk", "fillets-cs"}


def test_archive_entries_count_by_their_duration():
    """Queen entries share one file like Freedoom lumps but are budgeted by their own length."""
    pool = [data.Candidate(Path("/q/queen.1c"), "fotaq", "speech", 3.0, stream="mp3", lump=f"J{i:04d}.SB") for i in range(100)]
    pool += [data.Candidate(Path(f"/m/{i}.ogg"), "music", "music", 600.0) for i in range(20)]
    train = data.train_selection([], pool, 0, data.TrainPlan(hours=2 * 60 / 3600))  # 60 s per domain
    assert sum(c.source == "fotaq" for c in train) == 20
    assert sum(c.source == "music" for c in train) == 1


def test_hours_must_be_positive(capsys):
    with pytest.raises(SystemExit) as exit_info:
        data.main(["--split", "train", "--hours", "0"])
    assert exit_info.value.code == 2 and "--hours must be > 0" in capsys.readouterr().err


def test_split_pieces():
    audio = np.arange(150 * 16000, dtype=np.float32)
    pieces = data.split_pieces(audio, 60.0)
    assert [p.size for p in pieces] == [50 * 16000] * 3
    np.testing.assert_array_equal(np.concatenate(pieces), audio)
    assert [p.size for p in data.split_pieces(audio[: 60 * 16000], 60.0)] == [60 * 16000]
    assert all(p.size <= 60 * 16000 for p in data.split_pieces(audio[:-7], 60.0))
    assert data.split_pieces(audio[:0], 60.0) == []
    with pytest.raises(ValueError, match="piece_seconds"):
        data.split_pieces(audio, 0.0)


def test_write_train_file_splits_long_files(tmp_path):
    _tone(tmp_path / "long.wav", 130.0, 22050)
    _tone(tmp_path / "short.wav", 3.0)
    long = data.Candidate(tmp_path / "long.wav", "fillets-cs", "speech", 130.0, "text")
    clips = data.write_train_file(long, "fillets-cs_long", tmp_path / "out")
    assert [c.file for c in clips] == [f"speech/fillets-cs_long_part{i:02d}.wav" for i in range(3)]
    assert all(c.transcript is None and c.duration == pytest.approx(130 / 3, abs=1e-3) for c in clips)
    for clip in clips:
        info = sf.info(tmp_path / "out" / clip.file)
        assert info.samplerate == 16000 and info.channels == 1
    short = data.Candidate(tmp_path / "short.wav", "asterisk-fr", "speech", 3.0, "Bonjour.")
    (clip,) = data.write_train_file(short, "asterisk-fr_short", tmp_path / "out")
    assert clip.file == "speech/asterisk-fr_short.wav" and clip.transcript == "Bonjour." and clip.duration == 3.0
    sf.write(tmp_path / "silence.wav", np.full(16000, 5e-4), 16000)  # -66 dBFS, like the Asterisk silence/ prompts
    silence = data.Candidate(tmp_path / "silence.wav", "asterisk-fr", "speech", 1.0)
    assert data.write_train_file(silence, "asterisk-fr_silence", tmp_path / "out") == []
    assert not (tmp_path / "out/speech/asterisk-fr_silence.wav").exists()


def test_train_names_are_unique():
    pool = [
        data.Candidate(Path("/k/KitA/kick.wav"), "hydrogen", "sound", 1.0),
        data.Candidate(Path("/k/Kit B/kick.wav"), "hydrogen", "sound", 1.0),
        data.Candidate(Path("/k/KitA/snare.flac"), "hydrogen", "sound", 1.0),
        data.Candidate(Path("/d/freedoom1.wad"), "freedoom", "music", 0.0, lump="D_E1M1"),
    ]
    names = data._train_names(pool)
    assert sorted(names.values()) == ["freedoom_freedoom1_D_E1M1", "hydrogen_Kit-B_kick", "hydrogen_KitA_kick", "hydrogen_snare"]


def test_build_train_is_resumable(tmp_path, monkeypatch):
    if shutil.which("ffmpeg") is None or shutil.which("fluidsynth") is None:
        pytest.skip("ffmpeg and fluidsynth are needed by build_train")
    tree = tmp_path / "cache/tree"
    tree.mkdir(parents=True)
    for source in data.BENCHMARK_SOURCES + data.TRAIN_ONLY_SOURCES:
        for package in data.PACKAGES[source]:
            (tree / f".{package}.done").touch()  # fetch_packages skips them: no network
    level = tree / "usr/share/games/fillets-ng/sound/city/cs"
    level.mkdir(parents=True)
    _tone(level / "long.ogg", 70.0, 22050, "OGG")
    kit = tree / "usr/share/hydrogen/data/drumkits/Kit"
    kit.mkdir(parents=True)
    _tone(kit / "kick.wav", 0.7, 44100)
    _tone(kit / "click.wav", 0.2, 44100)
    out = tmp_path / "train"
    clips = data.build_train(out, seed=0, cache=tmp_path / "cache", workers=1)
    assert sorted(c.file for c in clips) == ["sound/hydrogen_kick.wav", "speech/fillets-cs_long_part00.wav", "speech/fillets-cs_long_part01.wav"]
    assert data.read_manifest(out) == clips
    assert json.loads((out / "manifest.json").read_text())["size"] == "train"
    (out / "sound/stale.wav").write_bytes(b"")
    before = (out / "sound/hydrogen_kick.wav").stat().st_mtime_ns
    assert data.build_train(out, seed=0, cache=tmp_path / "cache", workers=1) == clips
    assert (out / "sound/hydrogen_kick.wav").stat().st_mtime_ns == before  # reused
    assert not (out / "sound/stale.wav").exists()
