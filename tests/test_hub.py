"""Official weights fetched on first use (:mod:`semanticodec.hub`), against a stand-in hub on 127.0.0.1.

The stand-in serves an official-layout repository (``semanticodec_tokenrate_{R}/{encoder,decoder}.ckpt``,
``codebook_idx/...``) written from the tiny test model under the official key names; the official
configuration and key schema are swapped for the tiny ones, so that download, verification,
conversion and loading run for real in seconds. ``HF_HOME`` is a fresh folder per test.
"""

from __future__ import annotations

from pathlib import Path

import huggingface_hub.constants
import numpy as np
import pytest
import torch

import semanticodec.model
from benchmarks.standin_hub import StandInHub
from semanticodec import hub, released, weights
from semanticodec.bitstream import read_file
from semanticodec.cli import main
from semanticodec.codec import SemantiCodec
from semanticodec.config import ModelConfig
from semanticodec.constants import OFFICIAL_VOCAB_SIZES, TOKEN_RATES
from semanticodec.entropy_tables import find_tables
from semanticodec.official import CheckpointError, official_paths
from tiny import tiny_config, tiny_model

CLIP = Path(weights.__file__).with_name("data") / "example.flac"
NEEDED = official_paths(100, 16384)


def official_state(model: semanticodec.model.SemantiCodecModel) -> tuple[dict, dict]:
    """The encoder and decoder state dicts of ``model`` under the official key names
    (the inverse of :meth:`SemantiCodecModel.load_official`)."""
    encoder, decoder = {}, {}
    for key, value in model.state_dict().items():
        part, rest = key.split(".", 1)
        if part == "audiomae":
            encoder["audiomae.model." + rest] = value
        elif part == "acoustic":
            encoder[rest] = value
        elif part == "unet":
            decoder["model.diffusion_model." + rest] = value
        elif part == "vocoder":
            decoder["first_stage_model.vocoder." + rest] = value
        elif part == "vae":
            decoder["first_stage_model." + rest] = value
        elif part == "schedule":
            decoder[rest] = value
    return encoder, decoder


@pytest.fixture
def repo(tmp_path, monkeypatch) -> Path:
    """An official-layout folder of the tiny model at 100 tok/s, vocabulary 16384 (plus files of
    other configurations that must never be fetched); the official config and schema are the tiny ones."""
    model = tiny_model(100, 16384)
    encoder, decoder = official_state(model)
    root = tmp_path / "repo"
    paths = [root / p for p in NEEDED]
    paths[0].parent.mkdir(parents=True)
    torch.save(encoder, paths[0])
    torch.save(decoder, paths[1])
    paths[2].parent.mkdir(parents=True)
    np.save(paths[2], model.semantic.codebook.numpy())
    for other in (*official_paths(50, 16384), official_paths(100, 4096)[2]):
        (root / other).parent.mkdir(parents=True, exist_ok=True)
        (root / other).write_bytes(b"not needed")
    schema = {part: [(k, tuple(v.shape), str(v.dtype)) for k, v in state.items()] for part, state in (("encoder", encoder), ("decoder", decoder))}
    monkeypatch.setattr(semanticodec.model, "official_schema", lambda token_rate: schema)
    monkeypatch.setattr(ModelConfig, "official", classmethod(lambda cls, token_rate=100, vocab=16384: tiny_config(token_rate, vocab)))
    monkeypatch.setattr(released, "OFFICIAL_MODEL_IDS", {(100, 16384): tiny_config(100, 16384).model_id.hex()})
    return root


@pytest.fixture
def server(repo, tmp_path, monkeypatch):
    """The stand-in hub serving ``repo`` at the pinned revision, online, with an empty cache."""
    with StandInHub(repo, released.REPO_ID, released.REVISION) as standin:
        monkeypatch.setenv("HF_ENDPOINT", standin.url)
        monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
        monkeypatch.delenv("HF_HUB_OFFLINE")
        monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
        yield standin


def fetched(server: StandInHub) -> list[tuple[str, str]]:
    return [(r.method, r.path) for r in server.requests]


def test_first_use_fetches_three_files_converts_once_and_reuses_them_offline(server, repo, tmp_path, monkeypatch, capsys):
    loads = []
    official = weights.load_official
    monkeypatch.setattr(weights, "load_official", lambda *a: loads.append(a) or official(*a))
    codec = SemantiCodec.from_pretrained(token_rate=100, semantic_vocab_size=16384, device="cpu")
    assert sorted(fetched(server)) == sorted([("HEAD", p) for p in NEEDED] + [("GET", p) for p in NEEDED])
    converted = list((hub.cache_dir() / "models--haoheliu--SemantiCodec" / hub.CONVERTED_DIR).glob("tr100-v16384-*.safetensors"))
    assert len(converted) == 1 and len(loads) == 1
    direct = SemantiCodec.from_pretrained(repo, token_rate=100, semantic_vocab_size=16384, device="cpu")
    np.testing.assert_array_equal(codec.encode(CLIP).tokens, direct.encode(CLIP).tokens)

    server.requests.clear()
    again = SemantiCodec.from_pretrained(token_rate=100, semantic_vocab_size=16384, device="cpu")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    offline = SemantiCodec.from_pretrained(token_rate=100, semantic_vocab_size=16384, device="cpu")
    assert server.requests == [] and len(loads) == 2  # the direct load above; the hub loads read the converted file
    assert again.model_id == offline.model_id == direct.model_id
    np.testing.assert_array_equal(offline.encode(CLIP).tokens, direct.encode(CLIP).tokens)
    assert "bundled small model" not in capsys.readouterr().err


def test_cli_compress_fetches_on_first_use_and_runs_offline_after(server, repo, tmp_path, capsys):
    first, second = tmp_path / "first.scdc", tmp_path / "second.scdc"
    assert main(["compress", str(CLIP), str(first), "--token-rate", "100", "--semantic-vocab-size", "16384", "--device", "cpu"]) == 0
    assert sorted(fetched(server)) == sorted([("HEAD", p) for p in NEEDED] + [("GET", p) for p in NEEDED])
    assert "weights: official haoheliu/SemantiCodec@3b6e740 100 tok/s, vocabulary 16384" in capsys.readouterr().err
    server.requests.clear()
    assert main(["compress", str(CLIP), str(second), "--token-rate", "100", "--semantic-vocab-size", "16384", "--offline", "--no-progress"]) == 0
    assert server.requests == []
    direct = SemantiCodec.from_pretrained(repo, token_rate=100, semantic_vocab_size=16384, device="cpu").encode(CLIP).tokens
    np.testing.assert_array_equal(read_file(first)[1], direct)
    np.testing.assert_array_equal(read_file(second)[1], direct)


def test_download_command_fetches_ahead_and_prints_the_files(server, capsys):
    assert main(["download", "--token-rate", "100", "--semantic-vocab-size", "16384"]) == 0
    out = capsys.readouterr().out
    assert all(str(hub.cache_dir() / "models--haoheliu--SemantiCodec" / "snapshots" / released.REVISION / p) in out for p in NEEDED)
    assert sorted(fetched(server)) == sorted([("HEAD", p) for p in NEEDED] + [("GET", p) for p in NEEDED])
    server.requests.clear()
    weights.official_model(100, 16384, offline=True)
    assert server.requests == []
    assert main(["download"]) == 2
    assert main(["download", "--all", "--semantic-vocab-size", "4096"]) == 2
    assert "either --token-rate and --semantic-vocab-size, or --all" in capsys.readouterr().err


def test_download_resumes_after_a_cut_connection(server, repo, monkeypatch):
    # huggingface_hub keeps what it has received in whole chunks (10 MB); the files here are smaller
    chunk = 1 << 14
    monkeypatch.setattr(huggingface_hub.constants, "DOWNLOAD_CHUNK_SIZE", chunk)
    size = (repo / NEEDED[0]).stat().st_size
    cut = size // 3 // chunk * chunk
    assert cut > 0
    server.cut(NEEDED[0], cut)
    files = hub.fetch(100, 16384)
    gets = [r for r in server.requests if r.method == "GET" and r.path == NEEDED[0]]
    assert [g.range for g in gets] == [None, f"bytes={cut}-"]
    assert files.encoder.read_bytes() == (repo / NEEDED[0]).read_bytes() and hub.is_intact(files.encoder)


def test_corrupted_file_is_detected_and_fetched_again(server, repo, monkeypatch):
    files = hub.fetch(100, 16384)
    blob = Path(files.codebook).resolve()
    data = bytearray(blob.read_bytes())
    data[-1] ^= 0xFF
    blob.write_bytes(bytes(data))
    assert not hub.is_intact(files.codebook)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CheckpointError, match=r"is corrupted .*semanticodec download --token-rate 100 --semantic-vocab-size 16384"):
        weights.official_model(100, 16384)
    monkeypatch.delenv("HF_HUB_OFFLINE")
    server.requests.clear()
    model = weights.official_model(100, 16384)
    assert fetched(server) == [("HEAD", NEEDED[2]), ("GET", NEEDED[2])]
    assert hub.is_intact(files.codebook)
    torch.testing.assert_close(model.semantic.codebook, torch.from_numpy(np.load(repo / NEEDED[2])))


def test_damaged_converted_file_is_rebuilt(server, repo):
    weights.official_model(100, 16384)
    (converted,) = (hub.cache_dir() / "models--haoheliu--SemantiCodec" / hub.CONVERTED_DIR).iterdir()
    converted.write_bytes(converted.read_bytes()[:1000])
    server.requests.clear()
    model = weights.official_model(100, 16384, offline=True)
    assert server.requests == [] and model.config == tiny_config(100, 16384)
    assert weights.load_safetensors(converted).config == model.config


def test_encoder_only_loads_read_no_decoder_tensors_of_the_converted_file(server, monkeypatch):
    first = weights.official_model(100, 16384, with_decoder=False)  # first use: converts the whole model
    read = []
    getitem = weights.SafetensorsReader.__getitem__
    monkeypatch.setattr(weights.SafetensorsReader, "__getitem__", lambda self, key: read.append(key) or getitem(self, key))
    server.requests.clear()
    again = weights.official_model(100, 16384, offline=True, with_decoder=False)
    assert server.requests == [] and not first.with_decoder and not again.with_decoder
    assert read and not any(key.startswith(weights.DECODER_PARTS) for key in read)
    full = weights.official_model(100, 16384, offline=True)
    assert full.with_decoder and any(key.startswith(weights.DECODER_PARTS) for key in read)
    for model in (first, again):
        assert model.state_dict().keys() <= full.state_dict().keys()
        for key, value in model.state_dict().items():
            assert torch.equal(value, full.state_dict()[key]), key


def test_no_weights_and_no_network_is_one_line_and_exit_2(repo, tmp_path, capsys):
    out = tmp_path / "out.scdc"
    assert main(["compress", str(CLIP), str(out), "--token-rate", "100", "--semantic-vocab-size", "16384"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and not out.exists()
    assert "100 tok/s, vocabulary 16384" in err and "`semanticodec download --token-rate 100 --semantic-vocab-size 16384`" in err


def test_offline_flag_never_touches_the_network(server, tmp_path, capsys):
    assert main(["compress", str(CLIP), str(tmp_path / "o.scdc"), "--semantic-vocab-size", "16384", "--offline"]) == 2
    assert server.requests == [] and "offline mode is on" in capsys.readouterr().err


def test_unreachable_hub_with_nothing_named_falls_back_to_the_bundled_model(monkeypatch, capsys):
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens on the discard port
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    model = weights.load_model()
    assert model.config == weights.default_model_config()
    ours = [line for line in capsys.readouterr().err.splitlines() if line.startswith("semanticodec:")]  # not huggingface_hub's retries
    assert len(ours) == 1 and ours[0].startswith("semanticodec: using the bundled small model (100 tok/s, vocabulary 4096")
    err = ours[0]
    assert "semanticodec download --token-rate 100 --semantic-vocab-size 16384" in err
    with pytest.raises(hub.WeightsUnavailable, match="hub cannot be reached"):
        weights.load_model(100, 16384)
    with pytest.raises(hub.WeightsUnavailable):
        weights.load_model(model="official")


def test_the_bundled_model_by_name(tmp_path, capsys):
    model = weights.load_model(model="small")
    assert model.config == weights.default_model_config()
    assert capsys.readouterr().err.count("using the bundled small model") == 1
    assert main(["compress", str(CLIP), str(tmp_path / "small.scdc"), "--model", "small", "--device", "cpu"]) == 0
    assert read_file(tmp_path / "small.scdc", tables=find_tables)[0].model_id == model.config.model_id
    err = capsys.readouterr().err
    assert err.count("using the bundled small model") == 1 and "weights: bundled small model" in err
    with pytest.raises(CheckpointError, match="bundled small model is 100 tok/s, vocabulary 4096"):
        weights.load_model(50, model="small")
    with pytest.raises(ValueError, match="model must be one of small, official"):
        weights.load_model(model="large")


def test_the_official_model_id_table_matches_the_official_configurations():
    assert released.OFFICIAL_MODEL_IDS == {
        (rate, vocab): ModelConfig.official(rate, vocab).model_id.hex() for rate in TOKEN_RATES for vocab in OFFICIAL_VOCAB_SIZES
    }


def test_weights_are_named_by_model_id():
    assert released.weights_name(ModelConfig.official(50, 8192).model_id) == "official haoheliu/SemantiCodec@3b6e740 50 tok/s, vocabulary 8192"
    assert released.weights_name(weights.default_model_config().model_id).startswith("bundled small model")
    assert released.weights_name(bytes(16)) == "unspecified"
    assert released.weights_name(b"\x01" * 16) == "other (not a released model)"


def test_models_built_for_loading_hold_exactly_the_loaded_weights(repo, tmp_path):
    """Loads build the model without random initialisation (NoRandomInit): every entry is loaded."""
    model = tiny_model(100, 16384)
    path = tmp_path / "tiny.safetensors"
    weights.save_safetensors(model, path)
    for loaded in (weights.load_safetensors(path), weights.load_official(repo, 100, 16384)):
        assert loaded.state_dict().keys() == model.state_dict().keys()
        for key, value in model.state_dict().items():
            assert torch.equal(loaded.state_dict()[key], value), key
        assert torch.equal(loaded.semantic.codebook, model.semantic.codebook)
