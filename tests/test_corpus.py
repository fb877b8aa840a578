"""Corpus tokenization on a tiny model: round trip, resume, corrupt files, manifests, the
tokenize/detokenize commands and a 2-process torchrun run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from semanticodec.cli import main
from semanticodec.codec import SemantiCodec
from semanticodec.corpus import CorpusFile, finalize, list_corpus, read_failures, tokenize_corpus
from semanticodec.dataset import TokenDataset, read_index
from semanticodec.tokens import flatten, load_token_file
from semanticodec.weights import save_safetensors
from tiny import tiny_model

# name, seconds, sample rate, channels
CLIPS = [
    ("a.wav", 1.0, 16000, 1),
    ("b.flac", 12.0, 16000, 1),
    ("c.wav", 0.5, 44100, 2),
    ("sub/d.flac", 3.3, 22050, 1),
    ("sub/e.ogg", 2.0, 16000, 1),
]


def _write_clip(path: Path, seconds: float, rate: int, channels: int, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = 0.1 * np.random.default_rng(seed).standard_normal((int(seconds * rate), channels))
    sf.write(path, data.astype(np.float32), rate)


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("corpus")
    corpus = root / "audio"
    for seed, (name, seconds, rate, channels) in enumerate(CLIPS):
        _write_clip(corpus / name, seconds, rate, channels, seed)
    (corpus / "notes.txt").write_text("not audio")
    weights = root / "tiny.safetensors"
    model = tiny_model()
    save_safetensors(model, weights)
    codec = SemantiCodec(model, device="cpu", steps=1, seed=0, batch_size=2)
    direct = {name: codec.encode(str(corpus / name)).tokens for name, *_ in CLIPS}
    reference = root / "reference"
    report = tokenize_corpus(codec, corpus, reference, shard_rows=400, batch_windows=3, progress=False)
    assert report.encoded == len(CLIPS) and not report.failures
    return {"root": root, "corpus": corpus, "weights": str(weights), "codec": codec, "direct": direct, "reference": reference}


def _tokens(dataset_dir: Path) -> dict[str, np.ndarray]:
    data = TokenDataset(dataset_dir)
    return {e["file"]: data.tokens(i) for i, e in enumerate(data.entries)}


def _assert_same(dataset_dir: Path, expected: dict[str, np.ndarray]) -> None:
    got = _tokens(dataset_dir)
    assert sorted(got) == sorted(expected)
    for name, tokens in expected.items():
        np.testing.assert_array_equal(got[name], tokens, err_msg=name)


def test_round_trip_is_bit_identical_to_direct_encoding(setup) -> None:
    ref = setup["reference"]
    _assert_same(ref, setup["direct"])
    meta = json.loads((ref / "meta.json").read_text())
    assert meta["token_rate"] == 100 and meta["semantic_vocab_size"] == 100 and meta["acoustic_vocab_size"] == 64
    assert meta["dtype"] == "uint16" and meta["model_id"] == setup["codec"].model_id.hex()
    shards = sorted(p.name for p in ref.glob("shard_*.npy"))
    assert len(shards) >= 2 and np.load(ref / shards[0]).dtype == np.uint16
    entries = {e["file"]: e for e in read_index(ref)}
    assert list(entries) == sorted(entries)
    c = entries["c.wav"]
    assert c["sample_rate"] == 44100 and c["sample_count"] == 22050 and c["duration"] == 0.5
    assert entries["b.flac"]["length"] == 600  # 12 s = 75 columns of 8
    assert not (ref / "failures.tsv").exists()
    assert not list(ref.glob(".*"))


def test_manifests(setup, tmp_path) -> None:
    corpus = setup["corpus"]
    names = [name for name, *_ in CLIPS]
    folder = list_corpus(corpus)
    assert [f.name for f in folder] == sorted(names)
    tsv = corpus / "list.tsv"
    tsv.write_text("path\tspeaker\n" + "".join(f"{n}\tx\n" for n in reversed(names)))
    assert [f.path for f in list_corpus(tsv)] == [f.path for f in folder]
    csv_file = tmp_path / "list.csv"
    csv_file.write_text("file,text\n" + "".join(f"{corpus / n},hello\n" for n in names))
    assert [f.path for f in list_corpus(csv_file)] == [corpus / n for n in sorted(names)]
    jsonl = corpus / "list.jsonl"
    jsonl.write_text("".join(json.dumps({"file": n}) + "\n" for n in names[:2]))
    assert [f.name for f in list_corpus(jsonl)] == sorted(names[:2])
    tsv.unlink()
    jsonl.unlink()
    bad = tmp_path / "bad.tsv"
    bad.write_text("name\na.wav\n")
    with pytest.raises(ValueError, match="no 'file' or 'path' column"):
        list_corpus(bad)
    bad.write_text("file\na.wav\na.wav\n")
    with pytest.raises(ValueError, match="lists a.wav twice"):
        list_corpus(bad)
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(ValueError, match="unknown type"):
        list_corpus(tmp_path / "bad.json")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no audio files"):
        list_corpus(tmp_path / "empty")
    with pytest.raises(FileNotFoundError):
        list_corpus(tmp_path / "missing")


def _runner(folder: Path) -> Path:
    """A script running the command line with one torch thread."""
    script = folder / "run.py"
    script.write_text(
        "import sys, torch\ntorch.set_num_threads(1)\n"
        "from semanticodec.cli import main\nsys.exit(main(sys.argv[1:]))\n"
    )
    return script


class _Killed(BaseException):
    """Stands for SIGKILL: not an Exception, so nothing in the tokenizer handles it."""


class _DyingCodec:
    """Forwards to a codec and dies at the ``calls``-th encode call."""

    def __init__(self, codec: SemantiCodec, calls: int) -> None:
        self.codec, self.calls = codec, calls
        self.compat, self.batch_size, self.config = codec.compat, codec.batch_size, codec.config

    def encode(self, audio, sample_rate=None):
        self.calls -= 1
        if self.calls == 0:
            raise _Killed
        return self.codec.encode(audio, sample_rate)


def test_resume_after_killed_run(setup, tmp_path) -> None:
    out = tmp_path / "ds"
    with pytest.raises(_Killed):
        tokenize_corpus(_DyingCodec(setup["codec"], 3), setup["corpus"], out, shard_rows=1, batch_windows=1, progress=False)
    done = read_index_parts(out)
    assert 0 < len(done) < len(CLIPS) and not (out / "index.jsonl").exists()
    # what a kill during writing can leave: a shard without index lines, a torn index line, a temp file
    np.save(out / "shard_000_00077.npy", np.zeros((5, 2), np.uint16))
    with open(out / "index_000.jsonl", "a") as file:
        file.write('{"file": "sub/e.ogg", "shard": "shard_000_00')
    (out / ".shard_000_00078.npy.123.tmp").write_bytes(b"partial")

    calls = []
    codec = setup["codec"]

    class Counting:
        compat, batch_size, config = codec.compat, codec.batch_size, codec.config

        def encode(self, audio, sample_rate=None):
            calls.append(len(audio))
            return codec.encode(audio, sample_rate)

    report = tokenize_corpus(Counting(), setup["corpus"], out, shard_rows=1, batch_windows=1, progress=False)
    assert report.skipped == len(done) and report.encoded == len(CLIPS) - len(done) == sum(calls)
    _assert_same(out, setup["direct"])
    assert not (out / "shard_000_00077.npy").exists() and not list(out.glob(".*"))
    assert tokenize_corpus(codec, setup["corpus"], out, progress=False).encoded == 0


def test_resume_after_sigkill(setup, tmp_path) -> None:
    corpus = tmp_path / "audio"
    for i in range(8):
        _write_clip(corpus / f"f{i:02d}.wav", 1.0, 16000, 1, 100 + i)
    out = tmp_path / "ds"
    script = _runner(tmp_path)
    args = ["tokenize", str(corpus), "--output", str(out), "--semantic-vocab-size", "100", "--checkpoint", setup["weights"], "--no-progress",
            "--device", "cpu", "--shard-rows", "1", "--batch-windows", "1"]
    process = subprocess.Popen([sys.executable, str(script), *args], stderr=subprocess.DEVNULL)
    part = out / "index_000.jsonl"
    deadline = time.monotonic() + 300
    while process.poll() is None and time.monotonic() < deadline:
        if part.exists() and part.read_text().count("\n") >= 2:
            process.send_signal(signal.SIGKILL)
            break
        time.sleep(0.01)
    process.wait(30)
    assert process.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    done = read_index_parts(out)
    assert 2 <= len(done) < 8 and not (out / "index.jsonl").exists()
    codec = setup["codec"]
    report = tokenize_corpus(codec, corpus, out, progress=False)
    assert report.skipped == len(done) and report.encoded == 8 - len(done)
    files = list_corpus(corpus)
    _assert_same(out, {f.name: e.tokens for f, e in zip(files, codec.encode([str(f.path) for f in files]))})


def read_index_parts(out: Path) -> set[str]:
    return {json.loads(line)["file"] for line in (out / "index_000.jsonl").read_text().splitlines()}


def test_corrupt_files_are_reported_and_skipped(setup, tmp_path, capsys) -> None:
    corpus = tmp_path / "audio"
    for seed, (name, seconds, rate, channels) in enumerate(CLIPS[:2]):
        _write_clip(corpus / name, seconds, rate, channels, seed)
    (corpus / "broken.wav").write_bytes(b"RIFF\x00\x00garbage" * 10)
    sf.write(corpus / "empty.flac", np.zeros((0, 1), np.float32), 16000)
    out = tmp_path / "ds"
    args = ["tokenize", str(corpus), "--output", str(out), "--semantic-vocab-size", "100", "--checkpoint", setup["weights"], "--no-progress", "--device", "cpu"]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "2 files encoded" in err and "2 failed" in err and "failed: broken.wav" in err and "empty" in err
    failures = dict(read_failures(out))
    assert sorted(failures) == ["broken.wav", "empty.flac"] and "cannot read audio" in failures["broken.wav"]
    _assert_same(out, {name: setup["direct"][name] for name, *_ in CLIPS[:2]})
    # fix the broken file: the next run encodes only it and the failure list shrinks
    _write_clip(corpus / "broken.wav", 1.0, 16000, 1, 0)
    assert main(args) == 1
    assert "1 files encoded" in capsys.readouterr().err
    assert [name for name, _ in read_failures(out)] == ["empty.flac"]
    np.testing.assert_array_equal(_tokens(out)["broken.wav"], setup["direct"]["a.wav"])
    (corpus / "empty.flac").unlink()
    assert main(args) == 0 and not (out / "failures.tsv").exists()


def test_tokenize_command_matches_api_and_bad_options(setup, tmp_path) -> None:
    out = tmp_path / "ds"
    common = ["--checkpoint", setup["weights"], "--no-progress", "--device", "cpu"]
    assert main(["tokenize", str(setup["corpus"]), "--output", str(out), "--semantic-vocab-size", "100", "--batch-size", "3", *common]) == 0
    _assert_same(out, setup["direct"])
    assert main(["tokenize", str(setup["corpus"]), "--output", str(out), "--semantic-vocab-size", "100", "--token-rate", "50", *common]) == 2
    assert main(["tokenize", str(setup["corpus"]), "--output", str(out), "--semantic-vocab-size", "100", "--shard-rows", "0", *common]) == 2
    assert main(["tokenize", str(tmp_path / "none"), "--output", str(out), *common]) == 2
    (tmp_path / "file").write_text("x")
    assert main(["tokenize", str(setup["corpus"]), "--output", str(tmp_path / "file"), "--semantic-vocab-size", "100", *common]) == 2


def test_detokenize_dataset_and_token_files(setup, tmp_path) -> None:
    codec, ref = setup["codec"], setup["reference"]
    out = tmp_path / "wav"
    common = ["--checkpoint", setup["weights"], "--no-progress", "--device", "cpu", "--steps", "1"]
    assert main(["detokenize", str(ref), "--output", str(out), "--files", "c.wav", "sub/d.flac", *common]) == 0
    c, rate = sf.read(out / "c.wav")
    assert rate == 16000 and c.shape == (8000,)  # the original 0.5 s
    assert sf.read(out / "sub" / "d.wav")[0].shape == (52800,)
    assert main(["detokenize", str(ref), "--output", str(out), "--files", "c.wav", *common]) == 2  # exists
    assert main(["detokenize", str(ref), "--output", str(out), "--files", "zzz.wav", *common]) == 2
    pairs = setup["direct"]["a.wav"]
    np.save(tmp_path / "flat.npy", flatten(pairs, 100, 64, bos=True, eos=True))
    assert main(["detokenize", str(tmp_path / "flat.npy"), "--output", str(out), "--semantic-vocab-size", "100", *common]) == 0
    expected = np.clip(codec.decode(pairs), -1, 1)
    np.testing.assert_allclose(sf.read(out / "flat.wav", dtype="float32")[0], expected, atol=1 / 32768)
    np.save(tmp_path / "bad.npy", np.array([1, 2, 3]))
    assert main(["detokenize", str(tmp_path / "bad.npy"), "--output", str(out), "--semantic-vocab-size", "100", *common]) == 2


def test_load_token_file(tmp_path) -> None:
    pairs = np.array([[1, 2], [3, 4]], np.int64)
    for name, array, fmt in [
        ("p.npy", pairs.astype(np.uint16), "auto"),
        ("b.npy", pairs[None], "pairs"),
        ("f.npy", flatten(pairs, 10, 8, eos=True), "auto"),
        ("g.npy", flatten(pairs, 10, 8), "flat"),
    ]:
        np.save(tmp_path / name, array)
        np.testing.assert_array_equal(load_token_file(tmp_path / name, fmt, 10, 8), pairs)
    with pytest.raises(ValueError, match=r"p.npy: acoustic ids must lie in \[0, 3\)"):
        load_token_file(tmp_path / "p.npy", "auto", 10, 3)
    np.save(tmp_path / "x.npy", np.zeros((2, 2)))
    with pytest.raises(ValueError, match="must be integers"):
        load_token_file(tmp_path / "x.npy", "auto", 10, 8)
    (tmp_path / "t.npy").write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(ValueError, match="not a readable .npy"):
        load_token_file(tmp_path / "t.npy", "auto", 10, 8)


def test_finalize_without_torch_distributed(setup, tmp_path) -> None:
    """The documented alternative to torchrun: n independent processes, then finalize."""
    out = tmp_path / "ds"
    for rank in (1, 0):
        report = tokenize_corpus(setup["codec"], setup["corpus"], out, progress=False, rank=rank, world_size=2)
        assert report.encoded == len(CLIPS[rank::2])
    assert not (out / "index.jsonl").exists()
    assert finalize(out) == (len(CLIPS), 0)
    _assert_same(out, setup["direct"])
    with pytest.raises(ValueError, match="rank 2 is not in"):
        tokenize_corpus(setup["codec"], [CorpusFile("a", Path("a"))], out, rank=2, world_size=2)


def test_two_process_torchrun_equals_one_process(setup, tmp_path) -> None:
    script = _runner(tmp_path)
    out = tmp_path / "ds"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script),
        "tokenize", str(setup["corpus"]), "--output", str(out), "--semantic-vocab-size", "100", "--checkpoint", setup["weights"],
        "--no-progress", "--device", "cpu", "--shard-rows", "300",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=240, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "rank 0/2" in result.stderr and "rank 1/2" in result.stderr
    ranks = {p.name[6:9] for p in out.glob("shard_*.npy")}
    assert ranks == {"000", "001"}
    _assert_same(out, _tokens(setup["reference"]))
    assert [e["file"] for e in read_index(out)] == [e["file"] for e in read_index(setup["reference"])]
