"""The ``semanticodec`` command line (info, pack, unpack), its error handling, and atomic output."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from semanticodec import cli
from semanticodec.atomic import atomic_write, check_output
from semanticodec.bitstream import Header, decode, encode

EXAMPLE_TOKENS = Path(cli.__file__).parent / "data" / "example_tokens.npy"


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_user_error(code: int, err: str, message: str) -> None:
    assert code == 2
    assert err.startswith("semanticodec: error: ") and err.count("\n") == 1, err
    assert message in err and "Traceback" not in err


@pytest.fixture()
def tokens_file(tmp_path: Path) -> tuple[Path, np.ndarray]:
    rng = np.random.default_rng(0)
    tokens = np.stack([rng.integers(0, 16384, 504), rng.integers(0, 8192, 504)], axis=1)
    path = tmp_path / "tokens.npy"
    np.save(path, tokens)
    return path, tokens


def test_bundled_example_tokens() -> None:
    tokens = np.load(EXAMPLE_TOKENS, allow_pickle=False)
    assert tokens.shape == (504, 2) and tokens.dtype == np.int64
    assert 0 <= tokens[:, 0].min() and tokens[:, 0].max() < 16384
    assert 0 <= tokens[:, 1].min() and tokens[:, 1].max() < 8192
    assert EXAMPLE_TOKENS.stat().st_size < 10_000
    decode(encode(tokens, Header(100, 16384, sample_count=160000)))


def test_pack_info_unpack(capsys, tmp_path: Path, tokens_file) -> None:
    source, tokens = tokens_file
    packed = tmp_path / "a.scdc"
    code, out, _ = run(capsys, "pack", str(source), str(packed), "--token-rate", "100", "--semantic-vocab-size", "16384",
                       "--model-id", "00112233445566778899aabbccddeeff", "--sample-count", "160000",
                       "--meta", "title=x")
    assert code == 0 and "504 token pairs" in out
    code, out, _ = run(capsys, "info", str(packed), "--json")
    record = json.loads(out)
    assert code == 0 and record["integrity"] == {"ok": True, "damage": []}
    size = packed.stat().st_size
    assert record["size_bytes"] == size and record["token_pairs"] == 504 and record["packets"] == 2
    assert record["nominal_bitrate_bps"] == 1350 and record["actual_bitrate_bps"] == pytest.approx(size * 8 / 10)
    assert record["model_id"] == "00112233445566778899aabbccddeeff" and record["metadata"] == {"title": "x"}
    assert record["duration_seconds"] == 10 and record["token_seconds"] == pytest.approx(10.08)
    assert record["semantic_vocab_size"] == 16384 and record["acoustic_vocab_size"] == 8192
    assert (record["semantic_vocab"], record["acoustic_vocab"]) == (16384, 8192)  # the previous release's keys
    code, out, _ = run(capsys, "info", str(packed))
    assert code == 0
    assert "integrity     ok" in out and "nominal 1350.0 bps" in out and "semantic 16384 (14 bit)" in out
    restored = tmp_path / "b.npy"
    assert run(capsys, "unpack", str(packed), str(restored))[0] == 0
    got = np.load(restored)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, tokens)
    semantic = tmp_path / "s.npy"
    assert run(capsys, "unpack", str(packed), str(semantic), "--semantic-only")[0] == 0
    np.testing.assert_array_equal(np.load(semantic), tokens[:, 0])


def test_pack_accepts_the_official_batch_layout(capsys, tmp_path: Path) -> None:
    tokens = np.array([[[1, 2], [3, 4], [5, 6]]], dtype=np.int32)
    np.save(tmp_path / "t.npy", tokens)
    args = ("pack", str(tmp_path / "t.npy"), str(tmp_path / "t.scdc"), "--token-rate", "25", "--semantic-vocab-size", "8")
    assert run(capsys, *args, "--acoustic-vocab-size", "7")[0] == 0
    header, got = decode((tmp_path / "t.scdc").read_bytes())
    np.testing.assert_array_equal(got, tokens[0])
    assert header.sample_count == 3 * 16000 * 2 // 25 and header.acoustic_vocab_size == 7


def test_info_reports_damage_and_reads_stdin(capsys, monkeypatch, tmp_path: Path) -> None:
    data = bytearray(encode(np.zeros((600, 2), dtype=np.int64), Header(100, 4096)))
    data[200] ^= 0xFF
    path = tmp_path / "d.scdc"
    path.write_bytes(data)
    code, out, _ = run(capsys, "info", str(path))
    assert code == 1 and "DAMAGED" in out and "packet 0 lost" in out
    code, out, _ = run(capsys, "info", "--json", str(path))
    damage = json.loads(out)["integrity"]["damage"]
    assert code == 1 and [(d["first_packet"], d["lost_packets"]) for d in damage] == [(0, 1)]
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(bytes(data[:-1]))))
    code, out, _ = run(capsys, "info", "-", "--json")
    record = json.loads(out)
    assert code == 1 and record["token_pairs"] is None and record["size_bytes"] == len(data) - 1


def test_existing_output_needs_force(capsys, tmp_path: Path, tokens_file) -> None:
    source, _ = tokens_file
    target = tmp_path / "out.scdc"
    target.write_bytes(b"precious")
    args = ["pack", str(source), str(target), "--token-rate", "100", "--semantic-vocab-size", "16384"]
    code, _, err = run(capsys, *args)
    assert_user_error(code, err, "already exists (use --force to replace it)")
    assert target.read_bytes() == b"precious"
    assert run(capsys, *args, "--force")[0] == 0
    assert target.read_bytes()[:4] == b"SCDC"
    code, _, err = run(capsys, "unpack", str(target), str(source))
    assert_user_error(code, err, "already exists")


def test_input_is_never_overwritten(capsys, tmp_path: Path, tokens_file) -> None:
    source, _ = tokens_file
    code, _, err = run(capsys, "pack", str(source), str(source), "--token-rate", "100", "--semantic-vocab-size", "16384",
                       "--force")
    assert_user_error(code, err, "is the input file")
    packed = tmp_path / "a.scdc"
    cli.main(["pack", str(source), str(packed), "--token-rate", "100", "--semantic-vocab-size", "16384"])
    link = tmp_path / "link.npy"
    link.symlink_to(packed)
    before = packed.read_bytes()
    code, _, err = run(capsys, "unpack", str(packed), str(link), "--force")
    assert_user_error(code, err, "is the input file")
    assert packed.read_bytes() == before


def write(path: Path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


def test_user_errors_are_one_line(capsys, tmp_path: Path, tokens_file) -> None:
    source, _ = tokens_file
    out = str(tmp_path / "o.scdc")
    pack = ["--token-rate", "100", "--semantic-vocab-size", "16384"]
    float_tokens = tmp_path / "f.npy"
    np.save(float_tokens, np.zeros((4, 2)))
    wide = tmp_path / "w.npy"
    np.save(wide, np.zeros((4, 3), dtype=np.int64))
    truncated = tmp_path / "t.npy"
    truncated.write_bytes(source.read_bytes()[:-8])
    cases = [
        (["info", str(tmp_path / "missing.scdc")], "No such file or directory"),
        (["info", write(tmp_path / "empty.scdc", b"")], "empty stream"),
        (["info", write(tmp_path / "x.scdc", b"RIFF\x00\x00")], "not an .scdc stream"),
        (["unpack", write(tmp_path / "v.scdc", b"SCDC\x07" + bytes(50)), str(tmp_path / "v.npy")],
         "unsupported format version 7"),
        (["pack", write(tmp_path / "n.npy", b"not numpy"), out, *pack], "not a readable .npy file"),
        (["pack", str(float_tokens), out, *pack], "tokens must be integers"),
        (["pack", str(wide), out, *pack], "shape [T, 2] or [1, T, 2]"),
        (["pack", str(truncated), out, *pack], "is truncated"),
        (["pack", str(source), out, "--token-rate", "100", "--semantic-vocab-size", "1000"], "outside [0, 1000)"),
        (["pack", str(source), out, *pack, "--semantic-vocab-size", "1"], "semantic_vocab_size must be in 2"),
        (["pack", str(source), out, *pack, "--sample-rate", "0"], "sample_rate must be in"),
        (["pack", str(source), out, *pack, "--sample-count", "99999999"], "does not match 504 token pairs"),
        (["pack", str(source), out, *pack, "--meta", "bad key=1"], "metadata key"),
        (["pack", str(source), str(tmp_path / "no" / "dir.scdc"), *pack], "does not exist"),
        (["pack", str(source), str(tmp_path), *pack], "is a directory"),
    ]
    for argv, message in cases:
        code, _, err = run(capsys, *argv)
        assert_user_error(code, err, message)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_model_id_checks(capsys, tmp_path: Path, tokens_file) -> None:
    source, _ = tokens_file
    packed = tmp_path / "a.scdc"
    model = "ab" * 16
    cli.main(["pack", str(source), str(packed), "--token-rate", "100", "--semantic-vocab-size", "16384",
              "--model-id", model])
    code, _, err = run(capsys, "unpack", str(packed), str(tmp_path / "a.npy"), "--model-id", "cd" * 16)
    assert_user_error(code, err, f"tokens come from model {model}")
    assert run(capsys, "unpack", str(packed), str(tmp_path / "a.npy"), "--model-id", model)[0] == 0
    code, _, err = run(capsys, "unpack", str(packed), str(tmp_path / "b.npy"), "--model-id", "xyz")
    assert code == 2 and "model id must be 32 hexadecimal digits" in err


def test_usage_errors_help_and_version(capsys) -> None:
    assert run(capsys, "--help")[0] == 0
    code, out, _ = run(capsys, "--version")
    assert code == 0 and out.startswith("semanticodec ")
    code, _, err = run(capsys)
    assert code == 2 and "required" in err
    code, _, err = run(capsys, "pack", "a.npy", "b.scdc", "--token-rate", "30", "--semantic-vocab-size", "4096")
    assert code == 2 and "invalid choice" in err


def test_command_table(capsys, monkeypatch, tmp_path: Path) -> None:
    names = [command.name for command in cli.COMMANDS]
    assert len(set(names)) == len(names)
    listed = cli.build_parser().format_help()
    for command in cli.COMMANDS:
        assert command.name in listed
        assert run(capsys, command.name, "--help")[0] == 0  # each module configures its command
    seen = []
    module = types.ModuleType("echo_command")
    module.configure_echo = lambda parser: parser.add_argument("value")

    def run_echo(args) -> int:
        seen.append(args.value)
        raise ValueError(f"bad value {args.value}")

    module.run_echo = run_echo
    monkeypatch.setitem(sys.modules, "echo_command", module)
    monkeypatch.setattr(cli, "COMMANDS", (*cli.COMMANDS, cli.Command("echo", "test command", "echo_command")))
    code, _, err = run(capsys, "echo", "42")
    assert seen == ["42"]
    assert_user_error(code, err, "bad value 42")


def test_old_option_spellings_still_work_with_a_warning(capsys, tmp_path: Path) -> None:
    packed, unpacked = tmp_path / "e.scdc", tmp_path / "e.npy"
    code, _, err = run(capsys, "pack", str(EXAMPLE_TOKENS), str(packed), "--token-rate", "100", "--semantic-vocab", "16384",
                       "--acoustic-vocab", "8192")
    assert code == 0
    assert "--semantic-vocab is deprecated" in err and "use --semantic-vocab-size" in err and "--acoustic-vocab is deprecated" in err
    assert decode(packed.read_bytes())[0].semantic_vocab_size == 16384
    assert run(capsys, "unpack", str(packed), str(unpacked))[0] == 0
    code, _, err = run(capsys, "pack", str(EXAMPLE_TOKENS), str(packed), "--token-rate", "100", "--force")
    assert_user_error(code, err, "pack needs --semantic-vocab-size")


@pytest.mark.parametrize(
    ("command", "old", "new", "value"),
    [
        (["compress", "in.wav", "out.scdc"], "--vocab", "--semantic-vocab-size", "100"),
        (["compress", "in.wav", "out.scdc"], "--quiet", "--no-progress", None),
        (["decompress", "in.scdc", "out.wav"], "--cfg-scale", "--guidance-scale", "1.5"),
        (["download"], "--vocab", "--semantic-vocab-size", "8192"),
        (["kmeans", "train", "shards"], "--k", "--semantic-vocab-size", "64"),
        (["kmeans", "train", "shards"], "--checkpoint", "--state-file", "state.npz"),
        (["kmeans", "features", "audio"], "--quiet", "--no-progress", None),
        (["train", "vae"], "--steps", "--train-steps", "3"),
    ],
)
def test_every_old_option_spelling_sets_the_new_option(capsys, command: list[str], old: str, new: str, value: str | None) -> None:
    required = {"kmeans": ["-o", "out"], "train": ["--data", "d.json", "-o", "out"]}.get(command[0], [])
    tail = [value] if value is not None else []
    parsed = [cli.build_parser(argv).parse_args(argv) for argv in ([*command, *required, flag, *tail] for flag in (new, old))]
    values = [{k: v for k, v in vars(args).items() if not callable(v)} for args in parsed]  # handlers are built per parser
    assert values[0] == values[1]
    err = capsys.readouterr().err
    assert f"{old} is deprecated" in err and f"use {new}" in err and err.count("deprecated") == 1


def test_python_dash_m_and_closed_stdout(tmp_path: Path) -> None:
    packed = tmp_path / "e.scdc"
    command = [sys.executable, "-m", "semanticodec"]
    done = subprocess.run([*command, "pack", str(EXAMPLE_TOKENS), str(packed), "--token-rate", "100",
                           "--semantic-vocab-size", "16384"], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    process = subprocess.Popen([*command, "info", "--json", str(packed)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdout.close()
    _, err = process.communicate(timeout=60)
    assert process.returncode == 141 and b"Traceback" not in err and err == b""


def test_atomic_write_leaves_nothing_behind_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "f.bin"
    target.write_bytes(b"old")
    target.chmod(0o640)
    with pytest.raises(RuntimeError), atomic_write(target, overwrite=True) as file:
        file.write(b"half")
        raise RuntimeError("disk on fire")
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["f.bin"]
    with atomic_write(target, overwrite=True) as file:
        file.write(b"new")
        assert target.read_bytes() == b"old"
    assert target.read_bytes() == b"new" and (target.stat().st_mode & 0o777) == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]
    with pytest.raises(FileExistsError, match="already exists"):
        with atomic_write(target) as file:
            file.write(b"x")
    fresh = tmp_path / "g.bin"
    with atomic_write(fresh) as file:
        file.write(b"g")
    umask = os.umask(0)
    os.umask(umask)
    assert fresh.read_bytes() == b"g" and (fresh.stat().st_mode & 0o777) == 0o666 & ~umask


def test_check_output(tmp_path: Path) -> None:
    source = tmp_path / "in.bin"
    source.write_bytes(b"")
    hard = tmp_path / "hard.bin"
    os.link(source, hard)
    with pytest.raises(ValueError, match="is the input file"):
        check_output(hard, [source], overwrite=True)
    with pytest.raises(ValueError, match="is the input file"):
        check_output(tmp_path / "." / "in.bin", [source], overwrite=True)
    with pytest.raises(IsADirectoryError):
        check_output(tmp_path, [])
    with pytest.raises(FileNotFoundError, match="does not exist"):
        check_output(tmp_path / "missing" / "x", [])
    check_output(tmp_path / "new.bin", [source])


def test_convert_without_any_official_checkpoint(capsys, monkeypatch, tmp_path: Path) -> None:
    """An empty checkpoint argument with nothing configured or cached is a user error, not a crash."""
    monkeypatch.delenv("SEMANTICODEC_CHECKPOINT", raising=False)
    for name in ("HF_HOME", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        monkeypatch.setenv(name, str(tmp_path / "hf"))
    out = tmp_path / "model.safetensors"
    code, _, err = run(capsys, "convert", "", str(out))
    assert_user_error(code, err, "no official checkpoint given")
    assert not out.exists()
