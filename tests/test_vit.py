"""AudioMAE ViT encoder: official keys and shapes, sin-cos table, parity, batching, configs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from benchmarks.fill import fill_module
from parity import assert_parity, reference, shared_path
from semanticodec.nn.vit import AudioMAEConfig, AudioMAEEncoder, audiomae_pos_embed, mae_decoder_keys

PREFIX = "audiomae.model."


def _kept_pos_embed() -> np.ndarray:
    return reference("kept_tr100")["encoder/audiomae.model.pos_embed"]


@pytest.fixture(scope="module")
def encoder() -> AudioMAEEncoder:
    model = AudioMAEEncoder().eval()
    fill_module(model, PREFIX, skip=("pos_embed",))
    with torch.no_grad():
        model.pos_embed.copy_(torch.from_numpy(_kept_pos_embed()))
    return model


@pytest.fixture(scope="module")
def two_windows(encoder: AudioMAEEncoder) -> torch.Tensor:
    fbank = torch.from_numpy(reference("tr100_encode")["fbank"])
    with torch.inference_mode():
        return encoder(torch.cat([fbank[:, :1024], fbank[:, 1024:]]))


def test_keys_and_shapes_match_official_schema() -> None:
    with open(shared_path("reference", "schema_tr100.json"), encoding="utf-8") as f:
        entries = json.load(f)["encoder"]["entries"]
    official = {key[len(PREFIX) :]: tuple(shape) for key, shape, _ in entries if key.startswith(PREFIX)}
    with torch.device("meta"):
        model = AudioMAEEncoder()
    ours = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    dropped = set(mae_decoder_keys())
    assert len(ours) + len(dropped) == len(official) == 254
    assert dropped.isdisjoint(ours)
    assert set(ours) | dropped == set(official)
    assert ours == {key: official[key] for key in ours}
    assert [k for k in official if k in ours] == list(ours), "state-dict order differs from the official one"


def test_pos_embed_table_matches_official() -> None:
    table = audiomae_pos_embed()
    assert table.shape == (1, 513, 768) and table.dtype == torch.float32
    np.testing.assert_array_equal(table.numpy(), _kept_pos_embed())
    with torch.device("meta"):
        model = AudioMAEEncoder()
    torch.testing.assert_close(model.pos_embed.data, table, rtol=0, atol=0)


def test_pos_embed_grid_quirk_small() -> None:
    table = audiomae_pos_embed(embed_dim=8, time_patches=4, freq_patches=2)[0]
    assert torch.all(table[0] == 0)
    p = 6  # t = 3, f = 0: the first half sees p mod 4 = 2, the second half p // 4 = 1
    omega = torch.tensor([1.0, 0.01], dtype=torch.float64)
    expected = torch.cat([torch.sin(2 * omega), torch.cos(2 * omega), torch.sin(1 * omega), torch.cos(1 * omega)])
    torch.testing.assert_close(table[1 + p].double(), expected, rtol=0, atol=1e-7)


def test_audiomae_parity(two_windows: torch.Tensor) -> None:
    ref = reference("tr100_encode")
    assert two_windows.shape == (2, 513, 768)
    assert_parity(two_windows[:1], ref["audiomae_repr_w0"], "audiomae_repr_w0", tol=2e-5)
    assert_parity(two_windows[1:], ref["audiomae_repr_w1"], "audiomae_repr_w1", tol=2e-5)


def test_batch_equals_single(encoder: AudioMAEEncoder, two_windows: torch.Tensor) -> None:
    fbank = torch.from_numpy(reference("tr100_encode")["fbank"])
    with torch.inference_mode():
        single = encoder(fbank[:, 1024:])
    torch.testing.assert_close(single, two_windows[1:], rtol=1e-5, atol=1e-5)


def test_small_config_runs_and_averages_last_blocks() -> None:
    config = AudioMAEConfig(
        num_frames=64, num_mels=32, patch_size=16, embed_dim=32, depth=3, num_heads=4, contextual_depth=0
    )
    model = AudioMAEEncoder(config).eval()
    fill_module(model, PREFIX, skip=("pos_embed",))
    x = torch.randn(2, 64, 32, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        out = model(x)
        assert out.shape == (2, 1 + 8, 32)
        h = model.patch_embed(x.unsqueeze(1)) + model.pos_embed[:, 1:]
        h = torch.cat([(model.cls_token + model.pos_embed[:, :1]).expand(2, -1, -1), h], dim=1)
        h1 = model.blocks[1](model.blocks[0](h))
        h2 = model.blocks[2](h1)
        torch.testing.assert_close(out, (model.norm(h1) + model.norm(h2)) / 2, rtol=1e-5, atol=1e-6)


def test_mae_decoder_keys_count() -> None:
    keys = mae_decoder_keys()
    assert len(keys) == len(set(keys)) == 4 + 8 * 12 + 4
    assert mae_decoder_keys(0) == (
        "mask_token",
        "decoder_pos_embed",
        "decoder_embed.weight",
        "decoder_embed.bias",
        "decoder_norm.weight",
        "decoder_norm.bias",
        "decoder_pred.weight",
        "decoder_pred.bias",
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_frames": 1000}, "multiple of patch_size"),
        ({"num_heads": 7}, "num_heads"),
        ({"contextual_depth": 11}, "contextual_depth"),
        ({"depth": 0}, "depth"),
    ],
)
def test_bad_config_raises(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        AudioMAEConfig(**kwargs)


def test_bad_input_raises() -> None:
    config = AudioMAEConfig(num_frames=32, num_mels=16, embed_dim=16, depth=2, num_heads=2, contextual_depth=0)
    model = AudioMAEEncoder(config)
    with pytest.raises(ValueError, match=r"\[B, 32, 16\]"):
        model(torch.zeros(1, 16, 32))
    with pytest.raises(ValueError, match="dtype"):
        model(torch.zeros(1, 32, 16, dtype=torch.float64))
    with pytest.raises(ValueError, match="embed_dim"):
        audiomae_pos_embed(embed_dim=6)
