"""The official release: discovery, the shipped key schema, strict key checks; safe loading of weight and codebook files."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch

from parity import shared_path
from semanticodec.kmeans.codebook import load_codebook
from semanticodec.official import (
    ENV_VAR,
    HF_REPO_DIR,
    CheckpointError,
    check_keys,
    find_official_root,
    official_files,
    official_schema,
)
from semanticodec.weights import SafetensorsReader, load_state_dict, open_state_dict, select


@pytest.mark.parametrize("token_rate", [100, 50, 25])
def test_shipped_schema_equals_reference(token_rate: int) -> None:
    ref = json.loads(shared_path("reference", f"schema_tr{token_rate}.json").read_text())
    ours = official_schema(token_rate)
    for part in ("encoder", "decoder"):
        entries = [(k, tuple(s), d) for k, s, d in ref[part]["entries"]]
        assert ours[part] == entries
        assert len(entries) == ref[part]["num_keys"]


def _official_tree(root, token_rate=100, vocab=16384):
    rate = root / f"semanticodec_tokenrate_{token_rate}"
    rate.mkdir(parents=True)
    torch.save({"a": torch.zeros(1)}, rate / "encoder.ckpt")
    torch.save({"state_dict": {"b": torch.ones(2)}}, rate / "decoder.ckpt")
    cb = root / "codebook_idx" / "combine_512_audioset_dominate"
    cb.mkdir(parents=True)
    np.save(cb / f"codebook_{vocab // 2}_0.npy", np.zeros((vocab, 4), np.float32))
    return root


def test_discovery_by_path_env_and_hf_cache(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty_cache"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("HF_HOME", raising=False)
    assert find_official_root() is None

    root = _official_tree(tmp_path / "repo")
    assert find_official_root(root) == root
    assert find_official_root(root / "semanticodec_tokenrate_100") == root
    monkeypatch.setenv(ENV_VAR, str(root))
    assert find_official_root() == root
    monkeypatch.delenv(ENV_VAR)

    snap = tmp_path / "hub" / HF_REPO_DIR / "snapshots" / "0123abcd"
    _official_tree(snap)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    assert find_official_root() == snap
    assert find_official_root(tmp_path / "hub") == snap

    files = official_files(snap, 100, 16384)
    assert files.codebook.name == "codebook_8192_0.npy"
    assert load_state_dict(files.decoder)["b"].tolist() == [1.0, 1.0]


def test_missing_files_are_named(tmp_path) -> None:
    root = _official_tree(tmp_path / "repo")
    with pytest.raises(CheckpointError, match="does not exist"):
        find_official_root(tmp_path / "nowhere")
    with pytest.raises(CheckpointError, match=r"semantic codebook file not found: .*codebook_2048_0\.npy"):
        official_files(root, 100, 4096)
    with pytest.raises(CheckpointError, match="encoder file not found"):
        official_files(root, 50, 16384)
    with pytest.raises(CheckpointError, match="token rate"):
        official_files(root, 75, 16384)


class _Evil:
    def __reduce__(self):
        return (print, ("pickle code ran",))


def test_pickled_code_is_refused(tmp_path, capsys) -> None:
    path = tmp_path / "evil.ckpt"
    with open(path, "wb") as f:
        pickle.dump({"w": _Evil()}, f)
    with pytest.raises(CheckpointError, match="weights-only"):
        load_state_dict(path)
    assert "pickle code ran" not in capsys.readouterr().out
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x00" * 10)
    with pytest.raises(CheckpointError, match="safetensors"):
        load_state_dict(garbage)
    with pytest.raises(CheckpointError, match="not found"):
        load_state_dict(tmp_path / "none.ckpt")


def test_check_keys_names_problems() -> None:
    expected = [("a.weight", (2, 3), "float32"), ("b", (4,), "float32"), ("flag", (), "bool")]
    ok = {"a.weight": torch.zeros(2, 3), "b": torch.zeros(4), "flag": torch.zeros(1)}
    check_keys(ok, expected, "test")
    with pytest.raises(CheckpointError, match=r"missing key\(s\), e.g. b"):
        check_keys({k: v for k, v in ok.items() if k != "b"}, expected, "test")
    with pytest.raises(CheckpointError, match=r"unexpected key\(s\), e.g. extra"):
        check_keys({**ok, "extra": torch.zeros(1)}, expected, "test")
    with pytest.raises(CheckpointError, match=r"a.weight \(3, 2\) != \(2, 3\)"):
        check_keys({**ok, "a.weight": torch.zeros(3, 2)}, expected, "test")


def test_codebook_validation(tmp_path) -> None:
    good = tmp_path / "cb.npy"
    np.save(good, np.ones((8, 3), np.float64))
    cb = load_codebook(good)
    assert cb.dtype == np.float32 and cb.shape == (8, 3)
    bad = tmp_path / "bad.npy"
    np.save(bad, np.ones(5, np.float32))
    with pytest.raises(ValueError, match="2-D float"):
        load_codebook(bad)
    objects = tmp_path / "obj.npy"
    objects.write_bytes(pickle.dumps({"x": _Evil()}))
    with pytest.raises(ValueError, match="cannot read codebook"):
        load_codebook(objects)


def test_safetensors_reader_reads_each_tensor_on_lookup(tmp_path) -> None:
    from safetensors.torch import save_file

    tensors = {
        "a": torch.randn(3, 4), "b": torch.arange(5), "c": torch.randn(2).bfloat16(), "d": torch.randn(2, 2).half(),
        "empty": torch.zeros(0, 3), "flag": torch.tensor(True),
    }
    path = tmp_path / "w.safetensors"
    save_file(tensors, path, metadata={"format": "x"})
    reader = open_state_dict(path)
    assert isinstance(reader, SafetensorsReader) and reader.metadata == {"format": "x"}
    assert sorted(reader) == sorted(tensors) and len(reader) == 6 and "a" in reader and "z" not in reader
    for key, value in tensors.items():
        got = reader[key]
        assert got.dtype == value.dtype and got.shape == value.shape and torch.equal(got, value)
    assert load_state_dict(path).keys() == tensors.keys()
    view = select(reader, ("a", "b"))
    assert sorted(view) == ["a", "b"] and torch.equal(view["b"], tensors["b"])
    with pytest.raises(KeyError):
        view["c"]
    data = path.read_bytes()
    size = int.from_bytes(data[:8], "little")
    for bad, message in (
        (data[:-4], "does not fit"),  # truncated data
        ((10**9).to_bytes(8, "little") + data[8:], "header size"),
        (data[:8] + b"{" * size + data[8 + size :], "not a readable safetensors file"),
    ):
        path.write_bytes(bad)
        with pytest.raises(CheckpointError, match=message):
            SafetensorsReader(path)
