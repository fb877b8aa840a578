"""The latent-diffusion UNet: official state-dict layout, parity with the official forward, batching."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from benchmarks.fill import fill_module
from parity import assert_parity, reference, rel_l2, shared_path
from semanticodec.nn.attention import CrossAttention, SpatialTransformer, cached_context
from semanticodec.nn.unet import UNetConfig, UNetModel, context_dim_for_token_rate, timestep_embedding

PREFIX = "model.diffusion_model."


def build_unet(token_rate: int) -> UNetModel:
    """The official-size UNet for ``token_rate`` with the reference run's deterministic weights."""
    unet = UNetModel(UNetConfig.for_token_rate(token_rate)).eval()
    fill_module(unet, PREFIX)
    return unet


def official_unet_schema(token_rate: int) -> list[tuple[str, list[int]]]:
    """(key without prefix, shape) of the official UNet entries, in state-dict order."""
    with open(shared_path("reference", f"schema_tr{token_rate}.json")) as f:
        entries = json.load(f)["decoder"]["entries"]
    return [(key[len(PREFIX) :], shape) for key, shape, _ in entries if key.startswith(PREFIX)]


def our_schema(unet: UNetModel) -> list[tuple[str, list[int]]]:
    return [(key, list(value.shape)) for key, value in unet.state_dict().items()]


def contexts(token_rate: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(cond, uncond) contexts of the reference UNet runs: [decode_feature | pe] and [0 | pe]."""
    if token_rate == 100:
        feature = reference("tr100_encode")["decode_feature"][0:1]
    else:
        feature = reference(f"tr{token_rate}")["decode_feature"]
    feature = torch.from_numpy(feature)
    pe = torch.from_numpy(reference("tr100_decode")["pe"][:, : feature.shape[1]])
    return torch.cat([feature, pe], -1), torch.cat([torch.zeros_like(feature), pe], -1)


@pytest.fixture(scope="module")
def unet100() -> UNetModel:
    return build_unet(100)


def test_state_dict_matches_official_schema(unet100: UNetModel) -> None:
    assert our_schema(unet100) == official_unet_schema(100)
    assert sum(p.numel() for p in unet100.parameters()) == 75_040_584


def test_context_dim_per_token_rate() -> None:
    assert [context_dim_for_token_rate(r) for r in (100, 50, 25)] == [1728, 3264, 6336]
    for rate in (50, 25):
        schema = dict(official_unet_schema(rate))
        assert schema["input_blocks.4.2.transformer_blocks.0.attn2.to_k.weight"][1] == context_dim_for_token_rate(rate)
    with pytest.raises(ValueError, match="token_rate"):
        context_dim_for_token_rate(75)


def test_parity_tr100_cond_uncond_and_batched(unet100: UNetModel) -> None:
    ref = reference("tr100_decode")
    x = torch.from_numpy(ref["unet_x_t"])
    t = torch.from_numpy(ref["unet_t"])
    cond, uncond = contexts(100)
    with torch.inference_mode():
        out_cond = unet100(x, t, cond)
        out_uncond = unet100(x, t, uncond)
        batched = unet100(torch.cat([x, x]), torch.cat([t, t]), torch.cat([uncond, cond]))
    assert_parity(out_cond, ref["unet_out_cond"], "unet tr100 cond")
    assert_parity(out_uncond, ref["unet_out_uncond"], "unet tr100 uncond")
    assert rel_l2(out_cond - out_uncond, ref["unet_out_cond"] - ref["unet_out_uncond"]) < 1e-3
    assert rel_l2(batched[0:1], out_uncond) < 1e-5
    assert rel_l2(batched[1:2], out_cond) < 1e-5


@pytest.mark.parametrize("token_rate", [50, 25])
def test_parity_tr50_tr25(token_rate: int) -> None:
    ref = reference(f"tr{token_rate}")
    unet = build_unet(token_rate)
    assert our_schema(unet) == official_unet_schema(token_rate)
    x = torch.from_numpy(ref["unet_x_t"])
    t = torch.from_numpy(ref["unet_t"])
    cond, uncond = contexts(token_rate)
    with torch.inference_mode():
        out = unet(torch.cat([x, x]), torch.cat([t, t]), torch.cat([uncond, cond]))
    assert_parity(out[1:2], ref["unet_out_cond"], f"unet tr{token_rate} cond")
    assert_parity(out[0:1], ref["unet_out_uncond"], f"unet tr{token_rate} uncond")


def test_timestep_embedding_cos_then_sin() -> None:
    t = torch.tensor([0, 1, 500, 999])
    emb = timestep_embedding(t, 64)
    assert emb.shape == (4, 64) and emb.dtype == torch.float32
    freqs = np.exp(-math.log(10000.0) * np.arange(32) / 32)
    args = t.numpy()[:, None].astype(np.float64) * freqs[None]
    expected = np.concatenate([np.cos(args), np.sin(args)], axis=1)
    np.testing.assert_allclose(emb.numpy(), expected, atol=1e-4)
    assert torch.equal(emb[0], torch.cat([torch.ones(32), torch.zeros(32)]))
    odd = timestep_embedding(t, 7)
    assert odd.shape == (4, 7) and torch.all(odd[:, -1] == 0)


SMALL = UNetConfig(model_channels=32, channel_mult=(1, 2), attention_resolutions=(2,), context_dim=48)


@pytest.fixture(scope="module")
def small_unet() -> UNetModel:
    unet = UNetModel(SMALL).eval()
    fill_module(unet, PREFIX)
    return unet


def test_fresh_model_outputs_zero() -> None:
    """The output conv is zero-initialised as in the official code."""
    unet = UNetModel(SMALL).eval()
    with torch.inference_mode():
        out = unet(torch.randn(2, 8, 16, 8), torch.tensor([3, 700]), torch.randn(2, 5, 48))
    assert out.shape == (2, 8, 16, 8)
    assert torch.count_nonzero(out) == 0


def test_small_model_batch_items_independent(small_unet: UNetModel) -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(3, 8, 32, 4, generator=gen)
    t = torch.tensor([1, 400, 999])
    ctx = torch.randn(3, 7, 48, generator=gen)
    with torch.inference_mode():
        batched = small_unet(x, t, ctx)
        single = torch.cat([small_unet(x[i : i + 1], t[i : i + 1], ctx[i : i + 1]) for i in range(3)])
        other_ctx = small_unet(x, t, ctx.flip(0))
    assert batched.shape == x.shape
    torch.testing.assert_close(batched, single, rtol=1e-5, atol=1e-5)
    assert rel_l2(other_ctx, batched) > 1e-3


def test_cached_context_gives_the_same_outputs(small_unet: UNetModel) -> None:
    """Cross-attention keys and values of a context are computed once per cached_context block
    and reused for the same unchanged tensor; results are bit-identical to uncached calls."""
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(2, 8, 32, 4, generator=gen)
    ctx = torch.randn(2, 7, 48, generator=gen)
    other = torch.randn(2, 7, 48, generator=gen)
    t = torch.tensor([5, 600])
    calls: list[int] = []
    to_k = [m.to_k for m in small_unet.modules() if isinstance(m, CrossAttention) and m.to_k.in_features == 48]
    hooks = [layer.register_forward_hook(lambda *_: calls.append(1)) for layer in to_k]
    try:
        with torch.inference_mode():
            plain = [small_unet(x, t, c) for c in (ctx, ctx, other)]
            calls.clear()
            with cached_context(small_unet):
                cached = [small_unet(x, t, c) for c in (ctx, ctx, other, ctx)]
                assert len(calls) == 3 * len(to_k)  # ctx, other, ctx again: the second call reused the first's
                ctx.mul_(2.0)  # changed in place: recomputed
                changed = small_unet(x, t, ctx)
            calls.clear()
            after = small_unet(x, t, ctx)
            assert len(calls) == len(to_k)  # the cache is gone after the block
    finally:
        for hook in hooks:
            hook.remove()
    for got, want in zip(cached, [*plain, plain[0]]):
        assert torch.equal(got, want)
    assert torch.equal(changed, after) and not torch.equal(changed, plain[0])


def test_bad_inputs_raise(small_unet: UNetModel) -> None:
    x = torch.zeros(2, 8, 16, 8)
    t = torch.tensor([1, 2])
    ctx = torch.zeros(2, 5, 48)
    with pytest.raises(ValueError, match="input x"):
        small_unet(torch.zeros(2, 4, 16, 8), t, ctx)
    with pytest.raises(ValueError, match="multiples of 2"):
        small_unet(torch.zeros(2, 8, 15, 8), t, ctx)
    with pytest.raises(ValueError, match="timesteps"):
        small_unet(x, torch.tensor([1.0, 2.0]), ctx)
    with pytest.raises(ValueError, match="timesteps"):
        small_unet(x, torch.tensor([1]), ctx)
    with pytest.raises(ValueError, match="context"):
        small_unet(x, t, torch.zeros(2, 5, 40))
    with pytest.raises(ValueError, match="context"):
        small_unet(x, t, torch.zeros(1, 5, 48))
    block = SpatialTransformer(32, 1, 32, context_dim=None)
    with pytest.raises(ValueError, match="context"):
        block(torch.zeros(1, 32, 4, 4), torch.zeros(1, 3, 32))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"model_channels": 48}, "norm_groups"),
        ({"model_channels": 0}, "model_channels"),
        ({"channel_mult": ()}, "channel_mult"),
        ({"num_head_channels": 40, "model_channels": 32, "channel_mult": (1, 2)}, "num_head_channels"),
        ({"dropout": 1.0}, "dropout"),
        ({"aligned_context_groups": -1}, "aligned_context_groups"),
        ({"aligned_context_groups": 8, "context_dim": 192}, "aligned context needs"),
    ],
)
def test_bad_config_raises(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        UNetConfig(**kwargs)


def test_aligned_context_reaches_its_own_cells() -> None:
    """Row n of the context lands on time step n // G, frequency patch n % G of the latent grid."""
    config = UNetConfig(
        model_channels=32, channel_mult=(1, 2), num_res_blocks=1, attention_resolutions=(2,), context_dim=200,
        aligned_context_groups=4,
    )
    unet = UNetModel(config).eval()
    with torch.no_grad():
        for name, parameter in unet.named_parameters():
            if not name.startswith("context_in.") and not parameter.any():
                parameter.normal_(0.0, 0.05)
    base = UNetModel(replace(config, aligned_context_groups=0)).eval()
    base.load_state_dict({k: v for k, v in unet.state_dict().items() if not k.startswith("context_in.")})
    x, t = torch.randn(1, 8, 16, 8), torch.tensor([500])
    context = torch.zeros(1, 16, 200)
    with torch.inference_mode():
        random_context = torch.randn(1, 16, 200)
        torch.testing.assert_close(unet(x, t, random_context), base(x, t, random_context), rtol=0, atol=0)
        torch.nn.init.normal_(unet.context_in.weight)
        context[0, 6, :8] = 1.0
        grid = unet._aligned_context(context, torch.Size((16, 8))).abs().sum(dim=1)[0]
    hot = torch.nonzero(grid > 0).tolist()
    assert hot == [[h, w] for h in range(4, 8) for w in range(4, 6)]
    with pytest.raises(ValueError, match="multiple of aligned_context_groups"):
        unet(x, t, torch.zeros(1, 15, 200))
