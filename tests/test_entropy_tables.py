"""Entropy tables of models: ``semanticodec learn-tables`` (into a weights file or a file of
its own), their lookup through the bundled model and ``$SEMANTICODEC_TABLES``, and entropy
coding on by default in ``pack`` / ``unpack`` / ``info``."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf
import torch
from safetensors import safe_open
from toy_tables import structured_tokens

from semanticodec import cli, entropy_tables, weights
from semanticodec.bitstream import Header, decode, encode
from semanticodec.corpus import tokenize_corpus
from tiny import tiny_config, tiny_model


class StructuredCodec:
    """Stands in for SemantiCodec in ``tokenize_corpus``: structured tokens seeded by the input length."""

    compat, batch_size = "default", 2

    def __init__(self, config) -> None:
        self.config = config

    def encode(self, audio, sample_rate=None):
        config = self.config
        return [
            SimpleNamespace(tokens=structured_tokens(
                np.random.default_rng(len(a)), len(a) // 320, config.semantic_vocab_size, config.acoustic_vocab_size,
            ))
            for a in audio
        ]


def make_dataset(root: Path, config, files: int = 6) -> Path:
    audio = root / "audio"
    audio.mkdir(parents=True)
    for i in range(files):
        sf.write(audio / f"{i}.wav", np.zeros(16000 * 3 + 3200 * i, np.float32), 16000)
    tokenize_corpus(StructuredCodec(config), audio, root / "tokens", progress=False)
    return root / "tokens"


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("tables"), tiny_config())


def test_learn_tables_into_a_weights_file_keeps_its_weights(capsys, tmp_path: Path, dataset: Path) -> None:
    path = tmp_path / "model.safetensors"
    weights.save_safetensors(tiny_model(), path)
    before = path.read_bytes()
    code, _, err = run(capsys, "learn-tables", str(dataset), "--into", str(path))
    assert code == 0 and "entropy tables" in err
    with safe_open(str(path), framework="pt") as file:
        keys = set(file.keys())
        tensors = {key: file.get_tensor(key) for key in keys if not key.startswith("entropy.")}
        metadata = file.metadata()
    original = tmp_path / "original.safetensors"
    original.write_bytes(before)
    with safe_open(str(original), framework="pt") as file:
        assert set(file.keys()) == set(tensors) and file.metadata() == metadata
        for key in file.keys():
            assert torch.equal(file.get_tensor(key).view(-1).view(torch.uint8), tensors[key].view(-1).view(torch.uint8)), key
    tables = entropy_tables.read_tables(path)
    assert tables.model_id == tiny_config().model_id and tables.source == str(path)
    assert weights.load_safetensors(path).config == tiny_config()
    assert run(capsys, "learn-tables", str(dataset), "--into", str(path))[0] == 0  # learning again replaces them
    assert entropy_tables.read_tables(path).table_id == tables.table_id
    other = tmp_path / "other.safetensors"
    weights.save_safetensors(tiny_model(100, 64), other)
    code, _, err = run(capsys, "learn-tables", str(dataset), "--into", str(other))
    assert code == 2 and "the tables are for model" in err and entropy_tables.read_tables(other) is None


def test_tables_file_installed_through_the_environment(capsys, tmp_path: Path, dataset: Path, monkeypatch) -> None:
    tables_file = tmp_path / "tables.safetensors"
    assert run(capsys, "learn-tables", str(dataset), "-o", str(tables_file))[0] == 0
    code, _, err = run(capsys, "learn-tables", str(dataset), "-o", str(tables_file))
    assert code == 2 and "already exists" in err
    tables = entropy_tables.read_tables(tables_file)
    config = tiny_config()
    tokens = structured_tokens(np.random.default_rng(0), 1200, config.semantic_vocab_size, config.acoustic_vocab_size)
    np.save(tmp_path / "tokens.npy", tokens)
    pack = ["pack", str(tmp_path / "tokens.npy"), "--token-rate", "100", "--semantic-vocab-size", "100",
            "--acoustic-vocab-size", "64", "--model-id", config.model_id.hex()]

    monkeypatch.setenv("SEMANTICODEC_TABLES", str(tmp_path / "absent.safetensors"))
    code, _, err = run(capsys, *pack, str(tmp_path / "a.scdc"))
    assert code == 2 and "absent.safetensors" in err

    monkeypatch.setenv("SEMANTICODEC_TABLES", str(tmp_path))  # a folder: its .safetensors files
    assert entropy_tables.find_tables(tables.table_id).table_id == tables.table_id
    assert entropy_tables.tables_for_model(config.model_id, 100, 100, 64).table_id == tables.table_id
    assert entropy_tables.tables_for_model(bytes(16), 100, 100, 64) is None
    assert run(capsys, *pack, str(tmp_path / "coded.scdc"))[0] == 0
    assert run(capsys, *pack, str(tmp_path / "fixed.scdc"), "--no-entropy")[0] == 0
    coded, fixed = (tmp_path / "coded.scdc").read_bytes(), (tmp_path / "fixed.scdc").read_bytes()
    assert coded[4] == 2 and fixed[4] == 1 and len(coded) < 0.8 * len(fixed)
    code, out, _ = run(capsys, "info", str(tmp_path / "coded.scdc"), "--json")
    record = json.loads(out)
    assert code == 0 and record["format_version"] == 2 and record["entropy_tables"] == tables.table_id.hex()
    assert record["coded_packets"] == record["packets"] == 5 and record["actual_bitrate_bps"] < 0.8 * record["nominal_bitrate_bps"]
    code, out, _ = run(capsys, "info", str(tmp_path / "coded.scdc"))
    assert "5 of 5 packets range coded with tables " + tables.table_id.hex() in out and "below nominal" in out
    assert "none: every packet fixed width" in run(capsys, "info", str(tmp_path / "fixed.scdc"))[1]
    for name in ("coded", "fixed"):
        assert run(capsys, "unpack", str(tmp_path / f"{name}.scdc"), str(tmp_path / f"{name}.npy"))[0] == 0
        np.testing.assert_array_equal(np.load(tmp_path / f"{name}.npy"), tokens)

    monkeypatch.delenv("SEMANTICODEC_TABLES")
    code, _, err = run(capsys, "unpack", str(tmp_path / "coded.scdc"), str(tmp_path / "again.npy"))
    assert code == 2 and f"tables {tables.table_id.hex()}, which are not available" in err
    assert not (tmp_path / "again.npy").exists()
    code, _, err = run(capsys, "info", str(tmp_path / "coded.scdc"))
    assert code == 2 and "not available" in err


def test_learning_needs_one_model(capsys, tmp_path: Path, dataset: Path) -> None:
    other = make_dataset(tmp_path, tiny_config(100, 64), files=2)
    code, _, err = run(capsys, "learn-tables", str(dataset), str(other), "-o", str(tmp_path / "t.safetensors"))
    assert code == 2 and "learn from one model's tokens" in err
    code, _, err = run(capsys, "learn-tables", str(dataset), "-o", str(tmp_path / "t.npz"))
    assert code == 2 and "must end in .safetensors" in err
    code, _, err = run(capsys, "learn-tables", str(dataset), "-o", str(tmp_path / "t.safetensors"), "--contexts", "band,echo")
    assert code == 2 and "unknown contexts ['echo']" in err


def test_the_bundled_model_ships_its_tables() -> None:
    config = weights.default_model_config()
    tables = entropy_tables.tables_for_model(config.model_id, config.token_rate, config.semantic_vocab_size, config.acoustic_vocab_size)
    assert tables is not None and tables.source == str(weights.DEFAULT_MODEL)
    assert entropy_tables.find_tables(tables.table_id) is tables
    rng = np.random.default_rng(0)
    random = np.stack([rng.integers(0, 4096, 3000), rng.integers(0, 4096, 3000)], axis=1)
    header = Header(100, 4096, 4096, model_id=config.model_id)
    assert encode(random, header, tables) == encode(random, header)  # incompressible: fixed width, version 1
    repeated = np.tile(random[:8], (375, 1))  # one column, held for 60 s
    data = encode(repeated, header, tables)
    assert len(data) < 0.5 * len(encode(repeated, header))
    np.testing.assert_array_equal(decode(data, tables=entropy_tables.find_tables)[1], repeated)
