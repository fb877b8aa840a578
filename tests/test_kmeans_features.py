"""Feature-extraction pipeline (audio folder → shards + manifest), resume, and the CLI end to end.

The model's AudioMAE extractor is replaced by framed log-spectra with the same interface.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from semanticodec.audio import load_audio
from semanticodec.kmeans.cli import main
from semanticodec.kmeans.features import MANIFEST, extract_features, list_audio, read_manifest

FILES = [
    "speech/sense_and_sensibility_01_austen_64kb-0880.wav",
    "speech/sense_and_sensibility_01_austen_64kb-0930.wav",
    "music/freedoom1_D_E1M4_44k_stereo_10s.wav",
    "sound/elec_blip2.flac",
    "sound/perc_bell.flac",
]


def log_spectrum(waveform: np.ndarray) -> np.ndarray:
    """[N] → [T, 32]: log power of 32 bands of 25 ms Hann frames every 20 ms (50 vectors/s)."""
    frames = np.lib.stride_tricks.sliding_window_view(waveform, 400)[::320]
    power = np.abs(np.fft.rfft(frames * np.hanning(400), axis=1)) ** 2
    return np.log(power[:, 1:193].reshape(len(frames), 32, 6).sum(-1) + 1e-6).astype(np.float32)


def log_spectrum_factory(token_rate: int, checkpoint: str | None, device: str):
    """The ``--extractor`` factory interface: ``(token_rate, checkpoint, device) -> extract``."""
    assert token_rate == 50 and checkpoint is None and device == "cpu"
    return log_spectrum


@pytest.fixture(scope="module")
def audio_dir(shared_dir, tmp_path_factory):
    """Five clips (16 kHz and 44.1 kHz stereo wav, flac) and one unreadable file."""
    root = tmp_path_factory.mktemp("audio")
    for name in FILES:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(shared_dir / "audio" / name, root / name)
    (root / "sound" / "broken.wav").write_bytes(b"RIFF....not audio")
    (root / "notes.txt").write_text("not audio")
    return root


@pytest.fixture(scope="module")
def expected(audio_dir) -> dict[str, np.ndarray]:
    return {name: log_spectrum(load_audio(audio_dir / name)) for name in FILES}


def check_output(out_dir, expected: dict[str, np.ndarray]) -> list[dict]:
    """Every file's rows are where the manifest says; the shards hold nothing else."""
    entries = read_manifest(out_dir)
    files = [e for e in entries if "count" in e]
    assert sorted(e["file"] for e in files) == sorted(expected)
    for entry in files:
        shard = np.load(out_dir / entry["shard"])
        rows = shard[entry["offset"] : entry["offset"] + entry["count"]]
        np.testing.assert_array_equal(rows, expected[entry["file"]])
    for commit in (e for e in entries if e.get("commit")):
        assert len(np.load(out_dir / commit["commit"])) == commit["rows"]
    total = sum(len(np.load(p)) for p in out_dir.glob("features_*.npy"))
    assert total == sum(len(v) for v in expected.values())
    return entries


def test_extract_features(audio_dir, expected, tmp_path):
    assert [p.relative_to(audio_dir).as_posix() for p in list_audio(audio_dir)] == sorted(FILES + ["sound/broken.wav"])
    summary = extract_features(audio_dir, log_spectrum, tmp_path, shard_rows=600, progress=False)
    assert (summary.files, summary.skipped, summary.failed) == (5, 0, 1)
    assert summary.vectors == sum(len(v) for v in expected.values())
    assert len(summary.shards) >= 2 and all(np.load(p).dtype == np.float32 for p in summary.shards)
    entries = check_output(tmp_path, expected)
    errors = [e for e in entries if "error" in e]
    assert [e["file"] for e in errors] == ["sound/broken.wav"] and "cannot read audio" in errors[0]["error"]
    again = extract_features(audio_dir, log_spectrum, tmp_path, shard_rows=600, progress=False)
    assert (again.files, again.skipped, again.shards) == (0, 6, ())


def test_resume_after_interruption(audio_dir, expected, tmp_path):
    """A crash at the 4th file keeps the committed shard; the rerun extracts only the rest."""
    calls = []

    def crashing(waveform):
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return log_spectrum(waveform)

    with pytest.raises(KeyboardInterrupt):
        extract_features(audio_dir, crashing, tmp_path, shard_rows=600, progress=False)
    committed = read_manifest(tmp_path)
    assert committed and sum(1 for e in committed if "count" in e) < 4
    with open(tmp_path / MANIFEST, "a") as f:
        f.write(json.dumps({"file": "music/x.wav", "shard": "features_000009.npy", "offset": 0, "count": 3}) + "\n{\"fi")
    seen = []

    def counting(waveform):
        seen.append(1)
        return log_spectrum(waveform)

    summary = extract_features(audio_dir, counting, tmp_path, shard_rows=600, progress=False)
    assert len(seen) == summary.files == 5 - sum(1 for e in committed if "count" in e)
    check_output(tmp_path, expected)
    assert (tmp_path / MANIFEST).read_text().endswith("\n")


def test_bad_extractor_output(audio_dir, tmp_path):
    with pytest.raises(ValueError, match="2-D float array"):
        extract_features(audio_dir, lambda w: w, tmp_path / "a", progress=False)
    with pytest.raises(ValueError, match="NaN"):
        extract_features(audio_dir, lambda w: np.full((3, 4), np.nan, dtype=np.float32), tmp_path / "b", progress=False)
    widths = iter([4, 4, 5, 5, 5, 5])
    with pytest.raises(ValueError, match="earlier features have D=4"):
        extract_features(audio_dir, lambda w: np.zeros((3, next(widths)), dtype=np.float32), tmp_path / "c", progress=False)
    with pytest.raises(ValueError, match="not a directory"):
        extract_features(tmp_path / "missing", log_spectrum, tmp_path / "d", progress=False)
    with pytest.raises(ValueError, match="shard_rows"):
        extract_features(audio_dir, log_spectrum, tmp_path / "e", shard_rows=0, progress=False)


def test_cli_features_then_train(audio_dir, expected, tmp_path, capsys):
    """``features`` with a pluggable extractor, then ``train`` on its shards → official codebook file."""
    shards = tmp_path / "shards"
    status = main(
        ["features", str(audio_dir), "--output", str(shards), "--token-rate", "50", "--shard-rows", "500"]
        + ["--extractor", "test_kmeans_features:log_spectrum_factory", "--no-progress"]
    )
    assert status == 0 and "5 files extracted" in capsys.readouterr().out
    check_output(shards, expected)
    assert main(["train", str(shards), "--semantic-vocab-size", "16", "--output", str(tmp_path / "codebook"), "--niter", "5", "--no-progress"]) == 0
    codebook = np.load(tmp_path / "codebook" / "codebook_8_0.npy")
    assert codebook.shape == (16, 32) and codebook.dtype == np.float32
    assert "codebook_8_0.npy: 16 x 32 float32" in capsys.readouterr().out
    assert (tmp_path / "codebook.ckpt.npz").exists()


def test_cli_errors(audio_dir, tmp_path, capsys):
    assert main(["features", str(audio_dir), "--output", str(tmp_path), "--extractor", "semanticodec.no_such_module:f"]) == 2
    assert "feature extractor 'semanticodec.no_such_module:f' is not available" in capsys.readouterr().err
    assert main(["features", str(audio_dir), "--output", str(tmp_path), "--extractor", "semanticodec.audio:no_such_factory"]) == 2
    assert "has no 'no_such_factory'" in capsys.readouterr().err
    assert main(["features", str(audio_dir), "--output", str(tmp_path), "--extractor", "nocolon"]) == 2
    assert "MODULE:FACTORY" in capsys.readouterr().err
    np.save(tmp_path / "few.npy", np.zeros((5, 4), dtype=np.float32))
    assert main(["train", str(tmp_path / "few.npy"), "--semantic-vocab-size", "8", "--output", str(tmp_path / "c.npy"), "--no-progress"]) == 2
    assert "k=8 exceeds the number of vectors N=5" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", str(tmp_path / "few.npy"), "--semantic-vocab-size", "0", "--output", str(tmp_path / "c.npy")])
