"""Reading token datasets: random access, column-aligned crops, LM formats, DataLoader
workers, packed streams. The datasets are written by the corpus tokenizer with a stand-in
codec (deterministic tokens from the audio length), so no model is involved."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf
import torch
from torch.utils.data import DataLoader

from semanticodec.corpus import tokenize_corpus
from semanticodec.dataset import TokenDataset, TokenStream
from semanticodec.tokens import TokenFormat

V, A = 1000, 8192
SECONDS = {"a.wav": 0.3, "b.wav": 2.0, "c.wav": 5.0, "d.wav": 1.2, "e.wav": 3.2}


def _tokens(sample_count: int, token_rate: int) -> np.ndarray:
    rows = -(-sample_count // 2560) * {100: 8, 50: 4, 25: 2}[token_rate]
    r = np.arange(rows) + sample_count
    return np.stack([r * 7 % V, r * 13 % A], axis=-1)


class FakeCodec:
    """Stands in for SemantiCodec: tokens are a function of the input length."""

    compat, batch_size = "default", 2

    def __init__(self, token_rate: int) -> None:
        self.config = SimpleNamespace(
            token_rate=token_rate, semantic_vocab_size=V, acoustic_vocab_size=A, model_id=b"\x07" * 16, name="fake"
        )

    def encode(self, audio, sample_rate=None):
        return [SimpleNamespace(tokens=_tokens(len(a), self.config.token_rate)) for a in audio]


def _make(root: Path, token_rate: int = 100) -> dict[str, np.ndarray]:
    corpus = root / "audio"
    corpus.mkdir(parents=True, exist_ok=True)
    expected = {}
    for name, seconds in SECONDS.items():
        n = int(seconds * 16000)
        sf.write(corpus / name, np.zeros(n, np.float32), 16000)
        expected[name] = _tokens(n, token_rate)
    tokenize_corpus(FakeCodec(token_rate), corpus, root / "ds", shard_rows=300, progress=False)
    return expected


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> tuple[Path, dict[str, np.ndarray]]:
    root = tmp_path_factory.mktemp("dataset")
    return root / "ds", _make(root)


def test_random_access(made) -> None:
    root, expected = made
    data = TokenDataset(root)
    assert len(data) == 5 and [e["file"] for e in data.entries] == sorted(SECONDS)
    assert len({e["shard"] for e in data.entries}) >= 2
    for name, tokens in expected.items():
        i = data.index_of(name)
        item = data[i]
        assert item.dtype == torch.int64 and item.shape == (len(tokens), 2)
        np.testing.assert_array_equal(item.numpy(), tokens)
    np.testing.assert_array_equal(data[-1].numpy(), expected["e.wav"])
    flat = TokenDataset(root, "flat", bos=True, eos=True)[data.index_of("b.wav")]
    np.testing.assert_array_equal(flat.numpy(), TokenFormat("flat", V, A).encode(expected["b.wav"], True, True))
    sem = TokenDataset(root, "semantic")[0]
    np.testing.assert_array_equal(sem.numpy(), expected["a.wav"][:, 0])
    with pytest.raises(IndexError):
        data[5]
    with pytest.raises(ValueError, match="zzz is not in"):
        data.index_of("zzz")


def test_crops_are_column_aligned_random_and_reproducible(made) -> None:
    root, expected = made
    crop = 64
    data = TokenDataset(root, crop=crop, seed=3)
    assert [e["file"] for e in data.entries] == ["b.wav", "c.wav", "d.wav", "e.wav"]  # a.wav: 16 rows < 64
    starts = {i: set() for i in range(len(data))}
    for epoch in range(40):
        data.set_epoch(epoch)
        for i in range(len(data)):
            item = data[i].numpy()
            start = data.crop_start(i)
            assert item.shape == (crop, 2) and start % 8 == 0
            np.testing.assert_array_equal(item, expected[data.entries[i]["file"]][start : start + crop])
            starts[i].add(start)
        assert torch.equal(data[-1], data[len(data) - 1])
    c = data.index_of("c.wav")  # 5 s: 32 columns, 25 possible crop starts
    assert len(starts[c]) > 15 and max(starts[c]) <= 256 - crop
    d = data.index_of("d.wav")  # 1.2 s: 8 columns = 64 rows, a single crop
    assert starts[d] == {0}
    data.set_epoch(5)
    again = TokenDataset(root, crop=crop, seed=3)
    again.set_epoch(5)
    assert all(torch.equal(data[i], again[i]) for i in range(len(data)))
    other = TokenDataset(root, crop=crop, seed=4)
    assert any(not torch.equal(data[i], other[i]) for i in range(len(data)))


def test_crops_at_other_rates_and_special_tokens(tmp_path) -> None:
    expected = _make(tmp_path, token_rate=25)
    with pytest.raises(ValueError, match="multiple of 4 rows"):
        TokenDataset(tmp_path / "ds", crop=6)
    data = TokenDataset(tmp_path / "ds", "flat", crop=8, bos=True, eos=True)
    fmt = data.format
    for epoch in range(10):
        data.set_epoch(epoch)
        for i in range(len(data)):
            item, start = data[i].numpy(), data.crop_start(i)
            length = data.entries[i]["length"]
            assert start % 4 == 0
            body = item[1:] if start == 0 else item
            body = body[:-1] if start + 8 == length else body
            assert (item[0] == fmt.bos) == (start == 0) and (item[-1] == fmt.eos) == (start + 8 == length)
            np.testing.assert_array_equal(fmt.decode(body), expected[data.entries[i]["file"]][start : start + 8])


def test_dataloader_workers_and_collate(made) -> None:
    root, expected = made
    data = TokenDataset(root, "flat", bos=True, eos=True)
    loader = DataLoader(data, batch_size=2, num_workers=2, collate_fn=data.collate)
    seen = []
    for ids, lengths in loader:
        assert ids.shape[0] == lengths.shape[0] and ids.shape[1] == lengths.max()
        for row, n in zip(ids, lengths):
            assert (row[n:] == data.format.pad).all()
            seen.append(data.format.decode(row))
    for name, tokens in zip(sorted(SECONDS), seen):
        np.testing.assert_array_equal(tokens.numpy(), expected[name])
    crops = DataLoader(TokenDataset(root, crop=16), batch_size=4)
    assert next(iter(crops)).shape == (4, 16, 2)
    spawned = DataLoader(data, batch_size=None, num_workers=1, multiprocessing_context="spawn")
    assert torch.equal(next(iter(spawned)), data[0])


def test_token_stream_packs_every_file_once(made) -> None:
    root, expected = made
    fmt = TokenFormat("semantic", V, A)
    stream_of = {name: fmt.encode(tokens, True, True) for name, tokens in expected.items()}
    total = sum(s.size for s in stream_of.values())
    seq_len = 50
    stream = TokenStream(root, seq_len, "semantic", seed=1)
    chunks = list(stream)
    assert len(chunks) == total // seq_len and all(c.shape == (seq_len,) for c in chunks)
    order = [stream.dataset.entries[i]["file"] for i in stream.files()]
    packed = np.concatenate([stream_of[name] for name in order])
    np.testing.assert_array_equal(torch.cat(chunks).numpy(), packed[: len(chunks) * seq_len])
    stream.set_epoch(1)
    assert stream.files() != TokenStream(root, seq_len, "semantic", seed=1).files()
    ranks = [TokenStream(root, 10, rank=r, world_size=2, seed=1) for r in range(2)]
    shares = [set(r.files()) for r in ranks]
    assert shares[0].isdisjoint(shares[1]) and shares[0] | shares[1] == set(range(5))
    workers = list(DataLoader(TokenStream(root, 10, "flat", shuffle=False), num_workers=2, batch_size=None))
    flat = TokenFormat("flat", V, A)
    sizes = [flat.encode(expected[name], True, True).size for name in sorted(SECONDS)]
    per_worker = [sum(sizes[0::2]) // 10, sum(sizes[1::2]) // 10]  # worker w reads files w, w + 2, ...
    assert len(workers) == sum(per_worker)
    with pytest.raises(ValueError, match="format 'flat' or 'semantic'"):
        TokenStream(root, 10, "pairs")
    with pytest.raises(ValueError, match="seq_len must be >= 1"):
        TokenStream(root, 0)


def test_bad_datasets(tmp_path, made) -> None:
    with pytest.raises(ValueError, match="not a token dataset"):
        TokenDataset(tmp_path)
    (tmp_path / "meta.json").write_text('{"format": "other"}')
    with pytest.raises(ValueError, match="not a semanticodec-tokens version 1 dataset"):
        TokenDataset(tmp_path)
    (tmp_path / "meta.json").write_text((made[0] / "meta.json").read_text())
    with pytest.raises(ValueError, match="did not finish"):
        TokenDataset(tmp_path)
    with pytest.raises(ValueError, match="no BOS/EOS"):
        TokenDataset(made[0], bos=True)


def test_a_dataset_of_the_previous_release_still_loads(made, tmp_path: Path) -> None:
    """``meta.json`` and ``index.jsonl`` written before the keys were renamed (semantic_vocab,
    acoustic_vocab; num_samples) read as the new keys."""
    import json
    import shutil

    root, expected = made
    old = tmp_path / "old"
    shutil.copytree(root, old)
    meta = json.loads((old / "meta.json").read_text())
    meta["semantic_vocab"], meta["acoustic_vocab"] = meta.pop("semantic_vocab_size"), meta.pop("acoustic_vocab_size")
    (old / "meta.json").write_text(json.dumps(meta))
    lines = [json.loads(line) for line in (old / "index.jsonl").read_text().splitlines()]
    for line in lines:
        line["num_samples"] = line.pop("sample_count")
    (old / "index.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    data = TokenDataset(old, format="flat")
    assert (data.meta["semantic_vocab_size"], data.meta["acoustic_vocab_size"]) == (V, A)
    assert data.format == TokenFormat("flat", V, A)
    np.testing.assert_array_equal(data[data.index_of("b.wav")].numpy(), data.format.encode(expected["b.wav"]))
    assert data.entries[data.index_of("b.wav")]["sample_count"] == 32000
