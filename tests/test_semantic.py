"""Semantic tokens: patch stacking by token rate and the k-means codebook quantizer."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmarks.fill import fill
from parity import assert_parity, reference
from semanticodec.constants import stack_factor
from semanticodec.semantic import SemanticQuantizer, stack_patches

NEAR_TIE = 1e-3
"""Positions whose float64 semantic margin is below this may flip in float32 (reference README §7)."""


def _patches(window: int) -> torch.Tensor:
    return torch.from_numpy(reference("tr100_encode")[f"audiomae_repr_w{window}"][:, 1:])


def _assert_tokens(actual: torch.Tensor, expected: np.ndarray, margin_f64: np.ndarray, name: str) -> None:
    assert actual.shape == expected.shape and actual.dtype == torch.int64
    differ = actual.numpy().reshape(-1) != expected.reshape(-1)
    near_tie = margin_f64 < NEAR_TIE
    print(f"{name}: {int(differ.sum())} of {differ.size} tokens differ ({int(near_tie.sum())} near-tie positions)")
    assert not np.any(differ & ~near_tie), f"{name}: tokens differ away from near-ties at {np.flatnonzero(differ & ~near_tie)}"


def test_stack_factor() -> None:
    assert [stack_factor(rate) for rate in (100, 50, 25)] == [1, 2, 4]
    with pytest.raises(ValueError, match="token_rate"):
        stack_factor(75)


def test_stacking_order_on_labelled_grid() -> None:
    t, f = torch.meshgrid(torch.arange(64), torch.arange(8), indexing="ij")
    grid = torch.stack([t, f], dim=-1).reshape(1, 512, 2).float()
    assert torch.equal(stack_patches(grid, 100), grid)
    tr50 = stack_patches(grid, 50)
    assert tr50.shape == (1, 256, 4)
    assert tr50[0, 5 * 4 + 3].tolist() == [5, 6, 5, 7]
    tr25 = stack_patches(grid, 25)
    assert tr25.shape == (1, 128, 8)
    assert tr25[0, 7 * 4 + 2].tolist() == [14, 4, 14, 5, 15, 4, 15, 5]


@pytest.mark.parametrize("rate", [50, 25])
def test_stacking_parity(rate: int) -> None:
    expected = reference(f"tr{rate}")["stacked_feature_w0"]
    assert_parity(stack_patches(_patches(0), rate), expected, f"stacked_feature_w0 tr{rate}", tol=0.0)


def test_stacking_bad_input() -> None:
    with pytest.raises(ValueError, match="3-D"):
        stack_patches(torch.zeros(512, 768), 50)
    with pytest.raises(ValueError, match="multiple of freq_patches"):
        stack_patches(torch.zeros(1, 100, 4), 50)
    with pytest.raises(ValueError, match="odd"):
        stack_patches(torch.zeros(1, 21, 4), 50, freq_patches=3)
    with pytest.raises(ValueError, match="columns is odd"):
        stack_patches(torch.zeros(1, 24, 4), 25)


def test_tr100_tokens() -> None:
    ref = reference("tr100_encode")
    quantizer = SemanticQuantizer(fill("semantic_codebook", (4096, 768)))
    ids = quantizer.quantize(torch.cat([_patches(0), _patches(1)]))
    assert ids.shape == (2, 512)
    _assert_tokens(ids.reshape(1, 1024), ref["tokens_untrimmed"][..., 0], ref["semantic_margin_f64"], "tr100 semantic")


@pytest.mark.parametrize(("rate", "dim"), [(50, 1536), (25, 3072)])
def test_stacked_tokens(rate: int, dim: int) -> None:
    ref = reference(f"tr{rate}")
    quantizer = SemanticQuantizer(fill("semantic_codebook", (4096, dim)))
    ids = quantizer.quantize(stack_patches(_patches(0), rate))
    _assert_tokens(ids, ref["semantic_tokens_w0"], ref["semantic_margin_f64"], f"tr{rate} semantic")


def test_quantize_lookup_round_trip_and_batch() -> None:
    codebook = torch.randn(64, 12, generator=torch.Generator().manual_seed(0))
    quantizer = SemanticQuantizer(codebook)
    assert (quantizer.vocab_size, quantizer.dim) == (64, 12)
    ids = torch.randint(0, 64, (3, 10), generator=torch.Generator().manual_seed(1))
    vectors = quantizer.lookup(ids)
    assert vectors.shape == (3, 10, 12) and torch.equal(vectors, codebook[ids])
    noisy = vectors + 1e-3 * torch.randn(vectors.shape, generator=torch.Generator().manual_seed(2))
    assert torch.equal(quantizer.quantize(noisy), ids)
    assert torch.equal(quantizer.quantize(noisy[1:2]), ids[1:2])
    assert quantizer.quantize(torch.zeros(2, 0, 12)).shape == (2, 0)


def test_codebook_is_a_non_persistent_buffer() -> None:
    quantizer = SemanticQuantizer(np.ones((4, 3), dtype=np.float64))
    assert quantizer.codebook.dtype == torch.float32
    assert "codebook" in dict(quantizer.named_buffers())
    assert quantizer.state_dict() == {}


def test_from_npy(tmp_path) -> None:
    codebook = fill("semantic_codebook", (16, 8))
    path = tmp_path / "codebook_8_0.npy"
    np.save(path, codebook)
    quantizer = SemanticQuantizer.from_npy(path, dim=8)
    assert torch.equal(quantizer.codebook, torch.from_numpy(codebook))
    with pytest.raises(ValueError, match="dimension 8 != expected 768"):
        SemanticQuantizer.from_npy(path, dim=768)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (np.zeros(5, dtype=np.float32), "2-D"),
        (np.zeros((4, 3), dtype=np.int32), "floating point"),
        (np.array([{"a": 1}], dtype=object), "not a readable"),
    ],
)
def test_from_npy_rejects_bad_files(tmp_path, content: np.ndarray, message: str) -> None:
    path = tmp_path / "bad.npy"
    np.save(path, content, allow_pickle=True)
    with pytest.raises(ValueError, match=message):
        SemanticQuantizer.from_npy(path)


def test_bad_input_raises() -> None:
    with pytest.raises(ValueError, match="no such codebook"):
        SemanticQuantizer.from_npy("/nonexistent/codebook.npy")
    with pytest.raises(ValueError, match="NaN"):
        SemanticQuantizer(torch.tensor([[0.0, float("nan")]]))
    with pytest.raises(ValueError, match="2-D"):
        SemanticQuantizer(torch.zeros(3))
    quantizer = SemanticQuantizer(torch.eye(4))
    with pytest.raises(ValueError, match=r"\[B, N, 4\]"):
        quantizer.quantize(torch.zeros(2, 5, 3))
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        quantizer.lookup(torch.tensor([[0, 4]]))
    with pytest.raises(ValueError, match="integer"):
        quantizer.lookup(torch.zeros(1, 2))
