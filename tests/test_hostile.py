"""Hostile files and careless users (issue 14): every case ends in one line naming the problem
(exit status 2), or in output confined to what the user named; no traceback, no partial output,
no overwritten input, no unbounded work. Runs the tiny model (1 DDIM step) where a model is needed."""

from __future__ import annotations

import io
import json
import os
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from semanticodec.bitstream import Header, encode
from semanticodec.bitstream.packet import packet_size
from semanticodec.cli import main
from semanticodec.wavstream import wav_stream_header
from semanticodec.weights import save_safetensors
from tiny import tiny_config, tiny_model

torch.set_num_threads(1)
CONFIG = tiny_config()


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("weights") / "tiny.safetensors"
    save_safetensors(tiny_model(), path)
    return str(path)


def _model(weights: str) -> list[str]:
    return ["--checkpoint", weights, "--no-progress", "--device", "cpu"]


def _one_line_error(err: str, message: str) -> None:
    assert err.startswith("semanticodec: error: ") and err.count("\n") == 1, err
    assert message in err and "Traceback" not in err, err


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def dataset(weights: str, tmp_path_factory) -> Path:
    """A token dataset of one 0.3 s clip, tokenized by the command line."""
    folder = tmp_path_factory.mktemp("dataset")
    corpus = folder / "audio"
    corpus.mkdir()
    sf.write(corpus / "a.wav", 0.1 * np.random.default_rng(0).standard_normal(4800), 16000)
    assert main(["tokenize", str(corpus), "--output", str(folder / "ds"), "--semantic-vocab-size", "100", *_model(weights)]) == 0
    return folder / "ds"


def _copy_dataset(source: Path, target: Path, rewrite) -> Path:
    target.mkdir()
    for path in source.iterdir():
        (target / path.name).write_bytes(path.read_bytes())
    lines = [json.loads(line) for line in (target / "index.jsonl").read_text().splitlines()]
    (target / "index.jsonl").write_text("".join(json.dumps(e) + "\n" for e in rewrite(lines)))
    return target


# 1. paths from a dataset index stay inside --output


def test_dataset_names_cannot_escape_out(weights: str, dataset: Path, tmp_path: Path, capsys) -> None:
    victim = tmp_path / "music" / "victim.wav"
    victim.parent.mkdir()
    victim.write_bytes(b"original audio")
    hostile = [str(victim), "../../escape.wav", "./sub/../x.wav"]
    data = _copy_dataset(dataset, tmp_path / "ds", lambda lines: [{**lines[0], "file": n} for n in hostile])
    out = tmp_path / "out"
    assert main(["detokenize", str(data), "--output", str(out), "--steps", "1", "--force", *_model(weights)]) == 0
    assert victim.read_bytes() == b"original audio"
    assert not (tmp_path.parent / "escape.wav").exists() and not (tmp_path / "escape.wav").exists()
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*.wav"))
    assert written == sorted([str(victim.relative_to("/").with_suffix(".wav")), "escape.wav", "sub/x.wav"])
    assert "\x1b" not in capsys.readouterr().err


# 2. tokenize --output refuses a folder that is not a dataset


def test_tokenize_refuses_a_folder_that_is_not_a_dataset(weights: str, dataset: Path, tmp_path: Path, capsys) -> None:
    corpus = dataset.parent / "audio"
    out = tmp_path / "mine"
    out.mkdir()
    for name in ("notes.txt", "index.jsonl", "shard_000_00000.npy", ".draft.tmp"):
        (out / name).write_bytes(b"precious " + name.encode())
    before = _tree(out)
    assert main(["tokenize", str(corpus), "--output", str(out), "--semantic-vocab-size", "100", *_model(weights)]) == 2
    _one_line_error(capsys.readouterr().err, "not a token dataset")
    assert _tree(out) == before
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["tokenize", str(corpus), "--output", str(empty), "--semantic-vocab-size", "100", *_model(weights)]) == 0


# 3. a header's claims do not drive unbounded work


def _stream(pairs: int, sample_count: int, keep_packets: int | None = None) -> bytes:
    """A tiny-model stream of ``pairs`` pairs (8 per packet) whose header claims ``sample_count``
    samples; only the header and the first ``keep_packets`` packets when given."""
    header = Header(100, 100, CONFIG.acoustic_vocab_size, sample_count=0, packet_columns=1)
    tokens = np.zeros((pairs, 2), np.int64)
    data = encode(tokens, header)
    claimed = Header(100, 100, CONFIG.acoustic_vocab_size, sample_count=sample_count, packet_columns=1)
    body = data[header.size :]
    if keep_packets is not None:
        body = body[: keep_packets * packet_size(header, 8, False)]
    return claimed.to_bytes() + body


@pytest.mark.parametrize("samples", [3600 * 16000, 2**53 - 1])
def test_header_alone_claiming_hours(weights: str, tmp_path: Path, capsys, samples: int) -> None:
    path = tmp_path / "claim.scdc"
    path.write_bytes(_stream(8, samples, keep_packets=0))
    out = tmp_path / "out.wav"
    started = time.monotonic()
    assert main(["decompress", str(path), str(out), "--steps", "1", *_model(weights)]) == 2
    assert time.monotonic() - started < 60
    err = capsys.readouterr().err
    assert "holds no tokens" in err.splitlines()[-1] and "Traceback" not in err and not out.exists()


def test_missing_tokens_beyond_the_budget_are_not_concealed(weights: str, tmp_path: Path, capsys) -> None:
    """Packet 0, then packet 500 (about 80 s later): far more missing than received."""
    header = Header(100, 100, CONFIG.acoustic_vocab_size, packet_columns=1)
    data = encode(np.zeros((501 * 8 + 3, 2), np.int64), header)
    size = packet_size(header, 8, False)
    packets = data[header.size :]
    path = tmp_path / "gap.scdc"
    path.write_bytes(header.to_bytes() + packets[:size] + packets[500 * size :])
    out = tmp_path / "out.wav"
    assert main(["decompress", str(path), str(out), "--steps", "1", *_model(weights)]) == 2
    err = capsys.readouterr().err
    assert "not concealed" in err.splitlines()[-1] and "Traceback" not in err and not out.exists()


def test_truncated_stream_conceals_at_most_two_packets(weights: str, tmp_path: Path, capsys) -> None:
    path = tmp_path / "cut.scdc"
    path.write_bytes(_stream(16, 3600 * 16000, keep_packets=2))  # 16 pairs received, an hour claimed
    out = tmp_path / "out.wav"
    assert main(["decompress", str(path), str(out), "--steps", "1", *_model(weights)]) == 1
    assert len(sf.read(out)[0]) == 32 * 320  # 16 pairs received + 16 concealed, 320 samples per pair


# 4. WAV on standard output with 2**31 samples or more


def test_wav_stream_header_for_huge_lengths() -> None:
    assert struct.unpack("<4sI", wav_stream_header(16000, 2**31)[:8]) == (b"RIFF", 0xFFFFFFFF)
    assert wav_stream_header(16000, 2**31)[-4:] == b"\xff\xff\xff\xff"
    assert wav_stream_header(16000, 100)[-4:] == struct.pack("<I", 200)


def test_decompress_to_stdout_with_a_huge_sample_count(weights: str, tmp_path: Path, monkeypatch, capsys) -> None:
    stdout = io.BytesIO()
    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(stdout))
    path = tmp_path / "huge.scdc"
    path.write_bytes(_stream(16, 2**40, keep_packets=2))
    assert main(["decompress", str(path), "-", "--steps", "1", *_model(weights)]) == 1
    sys.stdout.flush()
    data = stdout.getvalue()
    assert data[4:8] == b"\xff\xff\xff\xff" and len(data) == 44 + 2 * 32 * 320
    assert "Traceback" not in capsys.readouterr().err


# 5. signals: temporary files removed, exit 130/143 with one line


@pytest.mark.parametrize("signum, status", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_removes_temporary_files(weights: str, tmp_path: Path, signum: int, status: int) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "semanticodec", "compress", "-", "out.scdc", "--input-rate", "16000",
               "--semantic-vocab-size", "100", *_model(weights)]
    process = subprocess.Popen(command, cwd=tmp_path, env=env, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdin.write(bytes(3200))
    process.stdin.flush()
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(".out.scdc.*.tmp")) and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    assert list(tmp_path.glob(".out.scdc.*.tmp")), "the temporary output never appeared"
    process.send_signal(signum)
    _, err = process.communicate(timeout=60)
    err = err.decode()
    assert process.returncode == status, err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == []


# 6. --force replaces regular files only


def test_force_refuses_fifos(tmp_path: Path, capsys) -> None:
    tokens = tmp_path / "t.npy"
    np.save(tokens, np.zeros((8, 2), np.int64))
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    pack = ["--token-rate", "100", "--semantic-vocab-size", "100", "--force"]
    assert main(["pack", str(tokens), str(fifo), *pack]) == 2
    _one_line_error(capsys.readouterr().err, "is a FIFO")
    assert fifo.is_fifo() and not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    link = tmp_path / "link.scdc"
    (tmp_path / "real.scdc").write_bytes(b"old")
    link.symlink_to(tmp_path / "real.scdc")
    assert main(["pack", str(tokens), str(link), *pack]) == 0  # a symlink to a regular file may be replaced


def test_check_replaceable_names_devices() -> None:
    from semanticodec.safety import check_replaceable

    with pytest.raises(ValueError, match="is a device"):
        check_replaceable("/dev/null")
    check_replaceable("/nonexistent/file")


# 11. other tracebacks: token files claiming terabytes, datasets missing keys


def test_detokenize_token_file_claiming_terabytes(weights: str, tmp_path: Path, capsys) -> None:
    path = tmp_path / "huge.npy"
    header = {"descr": "<i8", "fortran_order": False, "shape": (1 << 40, 2)}
    with open(path, "wb") as file:
        np.lib.format.write_array_header_1_0(file, header)
        file.write(bytes(64))
    out = tmp_path / "out"
    assert main(["detokenize", str(path), "--output", str(out), "--semantic-vocab-size", "100", "--steps", "1", *_model(weights)]) == 2
    _one_line_error(capsys.readouterr().err, "is truncated")
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda meta, lines: (meta | {"token_rate": None}, lines), "'token_rate' must be"),
        (lambda meta, lines: ({k: v for k, v in meta.items() if k != "model_id"}, lines), "'model_id' must be"),
        (lambda meta, lines: (meta | {"model_id": "zz" * 16}, lines), "32 hexadecimal"),
        (lambda meta, lines: ([meta], lines), "not a semanticodec-tokens"),
        (lambda meta, lines: (meta, [{k: v for k, v in lines[0].items() if k != "shard"}]), "'shard' must be"),
        (lambda meta, lines: (meta, [lines[0] | {"length": -1}]), "'length' must be"),
        (lambda meta, lines: (meta, [lines[0] | {"shard": "../../secret.npy"}]), "shard must be a file name"),
        (lambda meta, lines: (meta, ["[1, 2]"]), "not a JSON object"),
    ],
)
def test_detokenize_dataset_with_broken_meta_or_index(weights, dataset, tmp_path, capsys, change, message) -> None:
    data = _copy_dataset(dataset, tmp_path / "ds", lambda lines: lines)
    meta = json.loads((data / "meta.json").read_text())
    lines = [json.loads(line) for line in (data / "index.jsonl").read_text().splitlines()]
    meta, lines = change(meta, lines)
    (data / "meta.json").write_text(json.dumps(meta))
    (data / "index.jsonl").write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))
    assert main(["detokenize", str(data), "--output", str(tmp_path / "out"), "--steps", "1", *_model(weights)]) == 2
    _one_line_error(capsys.readouterr().err, message)


# 12. terminal escapes


def test_info_escapes_control_characters(tmp_path: Path, capsys) -> None:
    path = tmp_path / "evil.scdc"
    hostile = {"title": "\x1b[2J\rintegrity     ok", "bidi": "\u202eevil"}
    path.write_bytes(encode(np.zeros((8, 2), np.int64), Header(100, 100, metadata=hostile)))
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\r" not in out and "\u202e" not in out
    assert "title=\\x1b[2J\\x0dintegrity" in out and "bidi=\\u202eevil" in out
    assert main(["info", str(tmp_path / "\x1b[31mred.scdc")]) == 2
    assert "\x1b" not in capsys.readouterr().err


def test_pack_meta_rejects_control_characters(tmp_path: Path, capsys) -> None:
    tokens = tmp_path / "t.npy"
    np.save(tokens, np.zeros((8, 2), np.int64))
    out = tmp_path / "x.scdc"
    code = main(["pack", str(tokens), str(out), "--token-rate", "100", "--semantic-vocab-size", "100", "--meta", "t=a\x1bb"])
    assert code == 2 and "control character" in capsys.readouterr().err and not out.exists()


# 8. weights metadata is validated before anything is built


def _weights_with_config(source: str, target: Path, config) -> str:
    from safetensors.torch import load_file, save_file

    metadata = {"format": "semanticodec", "dtype": "float32"}
    if config is not None:
        metadata["config"] = config if isinstance(config, str) else json.dumps(config)
    save_file(load_file(source), str(target), metadata=metadata)
    return str(target)


def _tiny_config_dict() -> dict:
    return json.loads(CONFIG.to_json())


@pytest.mark.parametrize(
    "config, message",
    [
        ("", "invalid model configuration"),
        ("not json", "invalid model configuration"),
        ("[1, 2]", "invalid model configuration"),
        (_tiny_config_dict() | {"audiomae": "wide"}, "invalid model configuration"),
        (_tiny_config_dict() | {"token_rate": "100"}, "invalid model configuration"),
        (_tiny_config_dict() | {"audiomae": _tiny_config_dict()["audiomae"] | {"embed_dim": 1 << 40}}, "invalid model"),
        (_tiny_config_dict() | {"audiomae": _tiny_config_dict()["audiomae"] | {"depth": 100_000}}, "out of range"),
        (_tiny_config_dict() | {"acoustic": _tiny_config_dict()["acoustic"] | {"codebook_size": 4096}}, "has shape"),
        (_tiny_config_dict() | {"unet": _tiny_config_dict()["unet"] | {"num_head_channels": None}}, "invalid model"),
    ],
)
def test_weights_config_is_checked_before_building(weights: str, tmp_path: Path, capsys, config, message) -> None:
    from semanticodec.official import CheckpointError
    from semanticodec.weights import load_safetensors

    path = _weights_with_config(weights, tmp_path / "evil.safetensors", config)
    with pytest.raises(CheckpointError, match=message):
        load_safetensors(path)
    wav = tmp_path / "in.wav"
    sf.write(wav, np.zeros(1600), 16000)
    assert main(["compress", str(wav), str(tmp_path / "x.scdc"), "--checkpoint", path, "--no-progress"]) == 2
    _one_line_error(capsys.readouterr().err, message)


def test_decoder_shapes_are_checked_when_the_decoder_is_built(weights: str, tmp_path: Path) -> None:
    from semanticodec.official import CheckpointError
    from semanticodec.weights import load_safetensors

    config = _tiny_config_dict() | {"vae": _tiny_config_dict()["vae"] | {"channels": 1 << 20}}
    path = _weights_with_config(weights, tmp_path / "evil.safetensors", config)
    with pytest.raises(CheckpointError, match="vae.* has shape"):
        load_safetensors(path)
    assert not load_safetensors(path, with_decoder=False).with_decoder  # encoding reads no decoder tensor


def test_tokenize_report_escapes_file_names() -> None:
    from semanticodec.corpus import TokenizeReport, print_report

    out = io.StringIO()
    print_report(TokenizeReport(0, 0, (("\x1b[2Jx.wav", "bad\rline"),), 0.0, 1.0), out)
    assert "\x1b" not in out.getvalue() and "\r" not in out.getvalue() and "\\x1b[2Jx.wav" in out.getvalue()
