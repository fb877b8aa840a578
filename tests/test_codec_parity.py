"""End-to-end parity with the official implementation at full size (token rate 100).

The model is loaded through the official-checkpoint path (``load_official`` with the strict
key-schema check) from state dicts whose every entry is ``fill(official_key, shape)`` or
the kept value of ``kept_tr100.npz``, exactly as the reference tensors were made. The
state dicts are lazy mappings, so the official checkpoints are never held in memory at once.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import numpy as np
import pytest
import torch

from benchmarks.fill import fill
from parity import assert_parity, reference, shared_path
from semanticodec.codec import SemantiCodec
from semanticodec.config import ModelConfig
from semanticodec.model import SemantiCodecModel
from semanticodec.official import CheckpointError, official_schema
from semanticodec.windows import join_windows, split_windows


class FilledCheckpoint(Mapping):
    """An official state dict whose values are made on access: ``fill(key)`` or the kept value."""

    def __init__(self, part: str, token_rate: int = 100, kept: dict[str, np.ndarray] | None = None) -> None:
        self.entries = {k: s for k, s, _ in official_schema(token_rate)[part]}
        self.kept = kept or {}

    def __getitem__(self, key: str) -> torch.Tensor:
        if key in self.kept:
            return torch.from_numpy(np.array(self.kept[key]))
        shape = self.entries[key]
        return torch.from_numpy(fill(key, shape))

    def __iter__(self) -> Iterator[str]:
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)


def _kept(part: str) -> dict[str, np.ndarray]:
    data = reference("kept_tr100")
    return {k.split("/", 1)[1]: v for k, v in data.items() if k.startswith(part + "/")}


@pytest.fixture(scope="module")
def model() -> SemantiCodecModel:
    shared_path("reference")
    config = ModelConfig.official(100, 4096)
    m = SemantiCodecModel(config, fill("semantic_codebook", (4096, 768)))
    m.load_official(FilledCheckpoint("encoder", kept=_kept("encoder")), FilledCheckpoint("decoder", kept=_kept("decoder")))
    return m.eval()


def test_official_encode_tokens(model: SemantiCodecModel) -> None:
    enc = reference("tr100_encode")
    codec = SemantiCodec(model, device="cpu", compat="official")
    out = codec.encode(enc["waveform"], sample_rate=16000)
    ref = enc["tokens"][0]
    assert out.tokens.shape == ref.shape == (656, 2)
    semantic_ties = enc["semantic_margin_f64"][:656] < 1e-3
    differ = out.tokens[:, 0] != ref[:, 0]
    print(f"semantic: {differ.sum()} of 656 differ, {semantic_ties.sum()} near-ties")
    assert not (differ & ~semantic_ties).any()
    if not differ.any():
        acoustic_ties = enc["acoustic_margin_f64"][:656] < 1e-5
        differ_ac = out.tokens[:, 1] != ref[:, 1]
        print(f"acoustic: {differ_ac.sum()} of 656 differ, {acoustic_ties.sum()} near-ties")
        assert not (differ_ac & ~acoustic_ties).any()
    default = SemantiCodec(model, device="cpu").encode(enc["waveform"], sample_rate=16000)
    np.testing.assert_array_equal(default.tokens, out.tokens)


def test_official_full_decode(model: SemantiCodecModel) -> None:
    enc, dec = reference("tr100_encode"), reference("tr100_decode")
    tokens = torch.from_numpy(enc["tokens"][0])
    windows, valid = split_windows(tokens[None], window=model.tokens_per_window)
    np.testing.assert_array_equal(windows[0, 0], enc["decode_window_tokens_w0"][0])
    np.testing.assert_array_equal(windows[0, 1, :176], enc["decode_window_tokens_w1"][0])
    cond, _ = model.context(windows[0], valid)
    assert_parity(cond[..., :1536], enc["decode_feature"], "decode_feature")
    with torch.inference_mode():
        waves = model.decode_windows(windows[0], valid, steps=5, guidance_scale=2.0, eta=0.0, x_T=torch.from_numpy(dec["full_x_T"][:, 0]))
    assert_parity(waves, dec["full_window_waveform"][:, 0, 0], "full_window_waveform")
    audio = join_windows(list(waves), tokens.shape[0], 100, compat="official")
    assert audio.shape == (209920,)
    assert_parity(audio, dec["full_output"][0, 0], "full_output")


def test_default_join_has_no_drift() -> None:
    ramp = [torch.ones(163872), torch.ones(163872)]
    out = join_windows(ramp, 656, 100)
    assert out.shape == (209920,)
    np.testing.assert_allclose(out, 1.0, atol=1e-6)
    official = join_windows(ramp, 656, 100, compat="official")
    np.testing.assert_allclose(official[153600:153632], 1.0, atol=1e-3)


def test_strict_key_check_names_keys(model: SemantiCodecModel) -> None:
    class Without(FilledCheckpoint):
        def __iter__(self):
            return (k for k in self.entries if k != "encoder_output_linear.weight")

        def __len__(self):
            return len(self.entries) - 1

    with pytest.raises(CheckpointError, match="encoder_output_linear.weight"):
        model.load_official(Without("encoder"), None)


@pytest.mark.slow
def test_convert_official_checkpoint(tmp_path) -> None:
    """Write the filled official files in the official layout, convert them, load the result."""
    from semanticodec.cli import main
    from semanticodec.weights import load_safetensors

    rate_dir = tmp_path / "semanticodec_tokenrate_100"
    rate_dir.mkdir()
    torch.save(dict(FilledCheckpoint("encoder", kept=_kept("encoder"))), rate_dir / "encoder.ckpt")
    torch.save(dict(FilledCheckpoint("decoder", kept=_kept("decoder"))), rate_dir / "decoder.ckpt")
    codebooks = tmp_path / "codebook_idx" / "combine_512_audioset_dominate"
    codebooks.mkdir(parents=True)
    np.save(codebooks / "codebook_2048_0.npy", fill("semantic_codebook", (4096, 768)))
    out = tmp_path / "tr100_v4096.safetensors"
    assert main(["convert", str(tmp_path), str(out), "--token-rate", "100", "--semantic-vocab-size", "4096", "--dtype", "float16"]) == 0
    official_bytes = sum(p.stat().st_size for p in tmp_path.rglob("*") if p.suffix in (".ckpt", ".npy"))
    print(f"convert: {out.stat().st_size / 1e6:.0f} MB from {official_bytes / 1e6:.0f} MB")
    assert out.stat().st_size < 0.4 * official_bytes
    converted = load_safetensors(out)
    enc = reference("tr100_encode")
    tokens = SemantiCodec(converted, device="cpu", compat="official").encode(enc["waveform"], 16000).tokens
    agree = (tokens == enc["tokens"][0]).mean()
    print(f"float16 weights: {agree:.1%} of the official tokens")
    assert agree > 0.9
