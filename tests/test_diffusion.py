"""Noise schedule, v-prediction conversions and the DDIM sampler (parity with the official sampler)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmarks.fill import fill_module
from parity import assert_parity, reference, shared_path
from semanticodec.diffusion import (
    SCHEDULE_BUFFERS,
    DDIMSampler,
    NoiseSchedule,
    ScheduleConfig,
    ddim_steps_at_least,
    ddim_timesteps,
)
from semanticodec.nn.unet import UNetConfig, UNetModel


@pytest.fixture(scope="module")
def schedule() -> NoiseSchedule:
    return NoiseSchedule()


@pytest.fixture(scope="module")
def unet() -> UNetModel:
    model = UNetModel(UNetConfig.for_token_rate(100)).eval()
    fill_module(model, "model.diffusion_model.")
    return model


def reference_contexts() -> tuple[torch.Tensor, torch.Tensor]:
    """(cond, uncond) of window 0: [decode_feature[0] | pe] and [0 | pe]."""
    feature = torch.from_numpy(reference("tr100_encode")["decode_feature"][0:1])
    pe = torch.from_numpy(reference("tr100_decode")["pe"])
    return torch.cat([feature, pe], -1), torch.cat([torch.zeros_like(feature), pe], -1)


def toy_model(x: torch.Tensor, t: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
    """A cheap deterministic stand-in for the UNet that depends on x, t and the context."""
    return 0.5 * x + 1e-3 * t[:, None, None, None] + context.mean(dim=(1, 2))[:, None, None, None]


def test_schedule_buffers_equal_official(schedule: NoiseSchedule) -> None:
    kept = np.load(shared_path("reference", "kept_tr100.npz"))
    state = schedule.state_dict()
    assert list(state) == [*SCHEDULE_BUFFERS, "logvar", "scale_factor"]
    for name, value in state.items():
        official = kept[f"decoder/{name}"]
        assert value.dtype == torch.float32 and value.shape == official.shape, name
        assert np.array_equal(value.numpy(), official), f"{name} differs from the official buffer"
    loaded = NoiseSchedule()
    loaded.load_state_dict({name: torch.from_numpy(kept[f"decoder/{name}"]) for name in state})
    assert float(loaded.scale_factor) == 1.0


def test_schedule_scale_factor_and_bad_config() -> None:
    assert float(NoiseSchedule(ScheduleConfig(scale_factor=0.5)).scale_factor) == 0.5
    with pytest.raises(ValueError, match="num_timesteps"):
        ScheduleConfig(num_timesteps=1)
    with pytest.raises(ValueError, match="linear_start"):
        ScheduleConfig(linear_start=0.02, linear_end=0.01)
    with pytest.raises(ValueError, match="scale_factor"):
        ScheduleConfig(scale_factor=0.0)


def test_v_conversions_round_trip(schedule: NoiseSchedule) -> None:
    gen = torch.Generator().manual_seed(1)
    x0 = torch.randn(3, 8, 16, 4, generator=gen)
    noise = torch.randn(3, 8, 16, 4, generator=gen)
    t = torch.tensor([0, 500, 999])
    x_t = schedule.q_sample(x0, t, noise)
    v = schedule.v_target(x0, noise, t)
    torch.testing.assert_close(schedule.predict_start_from_v(x_t, t, v), x0, rtol=0, atol=2e-5)
    torch.testing.assert_close(schedule.predict_eps_from_v(x_t, t, v), noise, rtol=0, atol=2e-5)
    abar = schedule.alphas_cumprod[999].double()
    expected = abar.sqrt() * x0[2].double() + (1 - abar).sqrt() * noise[2].double()
    torch.testing.assert_close(x_t[2].double(), expected, rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="timesteps"):
        schedule.q_sample(x0, torch.tensor([0, 1, 1000]), noise)
    with pytest.raises(ValueError, match="shape"):
        schedule.q_sample(x0, torch.tensor([0, 1]), noise)


def test_ddim_timesteps_uniform_with_official_quirks() -> None:
    ref = reference("tr100_decode")
    assert torch.equal(ddim_timesteps(5), torch.from_numpy(ref["ddim_timesteps"]))
    fifty = ddim_timesteps(50)
    assert len(fifty) == 50 and fifty[0] == 1 and fifty[-1] == 981
    assert len(ddim_timesteps(7)) == 8
    for steps in (3, 9, 27, 37):
        with pytest.raises(ValueError, match="reaches timestep 1000"):
            ddim_timesteps(steps)
    for steps in (0, 1001):
        with pytest.raises(ValueError, match="steps"):
            ddim_timesteps(steps)
    assert [ddim_steps_at_least(s) for s in (1, 3, 8, 9, 27, 37, 500)] == [1, 4, 8, 10, 28, 38, 500]
    for steps in range(1, 501):
        assert len(ddim_timesteps(ddim_steps_at_least(steps))) >= steps
    with pytest.raises(ValueError, match="no DDIM step count >= 501"):
        ddim_steps_at_least(501)


def test_ddim_parameters_equal_official(schedule: NoiseSchedule) -> None:
    ref = reference("tr100_decode")
    params = schedule.ddim_parameters(5, 1.0)
    assert np.array_equal(params.alphas.numpy(), ref["ddim_alphas"])
    assert np.array_equal(params.alphas_prev.numpy(), ref["ddim_alphas_prev"])
    assert np.array_equal(params.sigmas.numpy(), ref["ddim_sigmas_eta1"])
    assert torch.count_nonzero(schedule.ddim_parameters(5, 0.0).sigmas) == 0
    torch.testing.assert_close(schedule.ddim_parameters(5, 0.5).sigmas, 0.5 * params.sigmas)
    with pytest.raises(ValueError, match="eta"):
        schedule.ddim_parameters(5, -0.1)


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_ddim_parity(schedule: NoiseSchedule, unet: UNetModel, eta: float) -> None:
    ref = reference("tr100_decode")
    name = "ddim0" if eta == 0.0 else "ddim1"
    cond, uncond = reference_contexts()
    noise = torch.from_numpy(ref["ddim1_noise"]) if eta else None
    latent, trace = DDIMSampler(schedule).sample_with_trace(
        unet, torch.from_numpy(ref[f"{name}_x_T"]), cond, uncond, steps=5, eta=eta, guidance_scale=2.0, noise=noise
    )
    assert torch.equal(trace.timesteps, torch.from_numpy(ref["ddim0_step_t"]))
    assert torch.equal(trace.indices, torch.from_numpy(ref["ddim0_step_index"]))
    if eta == 0.0:
        assert_parity(trace.model_out_uncond, ref["ddim0_model_out_uncond"], "ddim0 model_out_uncond (all steps)")
        assert_parity(trace.model_out_cond, ref["ddim0_model_out_cond"], "ddim0 model_out_cond (all steps)")
    for step in range(5):
        assert_parity(trace.x_prev[step], ref[f"{name}_step_x_prev"][step], f"{name} step {step} x_prev")
        assert_parity(trace.pred_x0[step], ref[f"{name}_step_pred_x0"][step], f"{name} step {step} pred_x0")
    assert_parity(latent, ref[f"{name}_latent"], f"{name} latent")
    assert torch.equal(latent, trace.x_prev[-1])


def test_guidance_scale_one_is_a_single_pass(schedule: NoiseSchedule) -> None:
    calls: list[int] = []

    def counting_model(x: torch.Tensor, t: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        calls.append(x.shape[0])
        return toy_model(x, t, context)

    sampler = DDIMSampler(schedule)
    gen = torch.Generator().manual_seed(2)
    x_T = torch.randn(2, 8, 8, 4, generator=gen)
    cond = torch.randn(2, 6, 10, generator=gen)
    plain = sampler.sample(counting_model, x_T, cond, None, steps=10, eta=0.0, guidance_scale=1.0)
    assert calls == [2] * 10
    calls.clear()
    guided = sampler.sample(counting_model, x_T, cond, cond.clone(), steps=10, eta=0.0, guidance_scale=3.0)
    assert calls == [4] * 10
    torch.testing.assert_close(guided, plain, rtol=0, atol=1e-6)
    _, trace = sampler.sample_with_trace(toy_model, x_T, cond, None, steps=10, eta=0.0, guidance_scale=1.0)
    assert trace.model_out_uncond is None and trace.x_prev.shape == (10, 2, 8, 8, 4)


def test_guidance_combines_v_predictions(schedule: NoiseSchedule) -> None:
    """One step by hand: v = v_u + s (v_c - v_u), x_prev = sqrt(a_prev) x0 + sqrt(1 - a_prev) eps (eta 0)."""
    gen = torch.Generator().manual_seed(3)
    x_T = torch.randn(1, 8, 8, 4, generator=gen)
    cond, uncond = torch.randn(2, 1, 6, 10, generator=gen)
    sampler = DDIMSampler(schedule)
    _, trace = sampler.sample_with_trace(toy_model, x_T, cond, uncond, steps=1, eta=0.0, guidance_scale=2.5)
    t = torch.tensor([1])
    v_u, v_c = toy_model(x_T, t, uncond), toy_model(x_T, t, cond)
    v = v_u + 2.5 * (v_c - v_u)
    abar, abar_prev = schedule.alphas_cumprod[1].double(), schedule.alphas_cumprod[0].double()
    x0 = abar.sqrt() * x_T.double() - (1 - abar).sqrt() * v.double()
    eps = abar.sqrt() * v.double() + (1 - abar).sqrt() * x_T.double()
    torch.testing.assert_close(trace.pred_x0[0].double(), x0, rtol=0, atol=1e-5)
    x_prev = abar_prev.sqrt() * x0 + (1 - abar_prev).sqrt() * eps
    torch.testing.assert_close(trace.x_prev[0].double(), x_prev, rtol=0, atol=1e-5)


def test_per_item_generators_make_batched_equal_per_item(schedule: NoiseSchedule) -> None:
    sampler = DDIMSampler(schedule)
    gen = torch.Generator().manual_seed(4)
    x_T = torch.randn(3, 8, 8, 4, generator=gen)
    cond = torch.randn(3, 5, 10, generator=gen)
    uncond = torch.zeros_like(cond)
    seeds = [10, 11, 12]
    batched = sampler.sample(
        toy_model, x_T, cond, uncond, steps=4, eta=1.0,
        generator=[torch.Generator().manual_seed(s) for s in seeds],
    )
    for i, seed in enumerate(seeds):
        single = sampler.sample(
            toy_model, x_T[i : i + 1], cond[i : i + 1], uncond[i : i + 1], steps=4, eta=1.0,
            generator=torch.Generator().manual_seed(seed),
        )
        torch.testing.assert_close(batched[i : i + 1], single, rtol=0, atol=1e-6)
    replay_gen = torch.Generator().manual_seed(20)
    noise = [torch.randn(x_T.shape, generator=replay_gen) for _ in range(4)]
    replayed = sampler.sample(toy_model, x_T, cond, uncond, steps=4, eta=1.0, noise=noise)
    drawn = sampler.sample(toy_model, x_T, cond, uncond, steps=4, eta=1.0, generator=torch.Generator().manual_seed(20))
    assert torch.equal(replayed, drawn)
    deterministic = sampler.sample(toy_model, x_T, cond, uncond, steps=4, eta=0.0)
    assert not torch.allclose(deterministic, drawn)


def test_sampler_bad_inputs_raise(schedule: NoiseSchedule) -> None:
    sampler = DDIMSampler(schedule)
    x_T = torch.zeros(2, 8, 8, 4)
    cond = torch.zeros(2, 5, 10)
    cases = [
        ({"x_T": torch.zeros(8, 8, 4)}, "x_T"),
        ({"cond": torch.zeros(1, 5, 10)}, "cond"),
        ({"uncond": None}, "uncond is required"),
        ({"uncond": torch.zeros(2, 4, 10)}, "uncond shape"),
        ({"noise": [torch.zeros(2, 8, 8, 4)] * 3}, "one tensor per DDIM step"),
        ({"noise": [torch.zeros(1, 8, 8, 4)] * 4}, "shape of x_T"),
        ({"generator": [torch.Generator()]}, "one per batch item"),
        ({"noise": [x_T] * 4, "generator": torch.Generator()}, "either noise or generator"),
        ({"eta": -1.0}, "eta"),
        ({"steps": 3}, "steps=3"),
    ]
    for overrides, message in cases:
        kwargs = {"x_T": x_T, "cond": cond, "uncond": cond, "steps": 4, "eta": 1.0, **overrides}
        with pytest.raises(ValueError, match=message):
            sampler.sample(toy_model, **kwargs)


def test_inpainting_holds_the_known_cells_and_fills_the_rest_to_fit(schedule: NoiseSchedule) -> None:
    """A denoiser whose clean estimate is the mean over H (data constant along H): the unknown
    half must come out near the known half's value, which plain sampling does not give."""
    sqrt_ac, sqrt_1m_ac = schedule.sqrt_alphas_cumprod, schedule.sqrt_one_minus_alphas_cumprod

    def smoothing_model(x: torch.Tensor, t: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        a, b = sqrt_ac[t][:, None, None, None], sqrt_1m_ac[t][:, None, None, None]
        x0 = x.mean(dim=2, keepdim=True).expand_as(x) / a
        return (a * x - x0) / b

    sampler = DDIMSampler(schedule)
    x_T = torch.randn(1, 2, 16, 4, generator=torch.Generator().manual_seed(5))
    cond = torch.zeros(1, 3, 6)
    known_x0 = torch.full_like(x_T, 1.5)
    mask = (torch.arange(16) < 8)[None, None, :, None]
    gen = torch.Generator().manual_seed(6)
    filled = sampler.sample(
        smoothing_model, x_T, cond, None, steps=20, eta=1.0, guidance_scale=1.0, generator=gen, known=(known_x0, mask)
    )
    assert torch.equal(filled[:, :, :8], known_x0[:, :, :8])
    assert (filled[:, :, 8:] - 1.5).abs().mean() < 0.3
    plain = sampler.sample(smoothing_model, x_T, cond, None, steps=20, eta=1.0, guidance_scale=1.0, generator=torch.Generator().manual_seed(6))
    assert (plain[:, :, 8:] - 1.5).abs().mean() > 1.0
    with pytest.raises(ValueError, match="known latent"):
        sampler.sample(smoothing_model, x_T, cond, None, steps=2, guidance_scale=1.0, known=(known_x0[:, :1], mask))
