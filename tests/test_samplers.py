"""Fast samplers (DPM-Solver++(2M), UniPC) and the sampler registry.

The known answer: for Gaussian data x0 ~ N(mu, s^2) (per element) the exact denoiser is
``E[x0 | x_t] = mu + alpha s^2 / (alpha^2 s^2 + sigma^2) (x_t - alpha mu)`` and the
probability-flow ODE maps the standardised value of x along the marginals N(alpha mu,
alpha^2 s^2 + sigma^2), so the sample of any start noise is known in closed form. With
conditional and unconditional means of equal variance, classifier-free guidance at scale w
is exactly sampling the Gaussian of mean ``mu_u + w (mu_c - mu_u)``.
"""

from __future__ import annotations

import pytest
import torch

from semanticodec.diffusion import DDIMSampler, NoiseSchedule, ddim_timesteps
from semanticodec.samplers import SAMPLERS, SOLVERS, MultistepSolver, check_sampler, sample_latent, solver_grid

DATA_STD = 0.5
GUIDANCE = 2.0


@pytest.fixture(scope="module")
def schedule() -> NoiseSchedule:
    return NoiseSchedule()


def gaussian_model(schedule: NoiseSchedule):
    """v-prediction of the exact denoiser of N(mu, DATA_STD^2); mu comes in the context ``[B, 1, C*H*W]``."""
    abar = schedule.alphas_cumprod.double()

    def model(x: torch.Tensor, t: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        a = abar[t].sqrt()[:, None, None, None]
        b = (1 - abar[t]).sqrt()[:, None, None, None]
        mu = context[:, 0].reshape(x.shape).double()
        x0 = mu + a * DATA_STD**2 / (a**2 * DATA_STD**2 + b**2) * (x.double() - a * mu)
        return ((a * x.double() - x0) / b).to(x.dtype)

    return model


def gaussian_case(seed: int = 0, batch: int = 2, dtype: torch.dtype = torch.float64):
    gen = torch.Generator().manual_seed(seed)
    shape = (batch, 2, 8, 4)
    x_T = torch.randn(shape, generator=gen, dtype=torch.float64)
    mu_c = torch.randn(shape, generator=gen, dtype=torch.float64)
    mu_u = torch.randn(shape, generator=gen, dtype=torch.float64)
    cond, uncond = mu_c.reshape(batch, 1, -1), mu_u.reshape(batch, 1, -1)
    return x_T.to(dtype), cond.to(dtype), uncond.to(dtype), mu_u + GUIDANCE * (mu_c - mu_u)


def exact_sample(schedule: NoiseSchedule, x_T: torch.Tensor, mu: torch.Tensor, t_start: int) -> torch.Tensor:
    """The ODE solution at timestep 0's noise level from ``x_T`` at ``t_start``."""
    abar = schedule.alphas_cumprod.double()
    a_s, a_e = abar[t_start], abar[0]
    z = (x_T.double() - a_s.sqrt() * mu) / (a_s * DATA_STD**2 + 1 - a_s).sqrt()
    return a_e.sqrt() * mu + (a_e * DATA_STD**2 + 1 - a_e).sqrt() * z


def sample_error(schedule: NoiseSchedule, sampler: str, steps: int, dtype: torch.dtype = torch.float64) -> float:
    x_T, cond, uncond, mu = gaussian_case(dtype=dtype)
    start = int(ddim_timesteps(steps)[-1]) if sampler == "ddim" else int(solver_grid(schedule, steps).timesteps[0])
    out = sample_latent(sampler, schedule, gaussian_model(schedule), x_T, cond, uncond, steps, GUIDANCE, eta=0.0)
    assert out.dtype == dtype
    return float((out.double() - exact_sample(schedule, x_T, mu, start)).abs().max())


@pytest.mark.parametrize("sampler", SOLVERS)
def test_solvers_converge_to_the_exact_gaussian_sample(schedule: NoiseSchedule, sampler: str) -> None:
    errors = {steps: sample_error(schedule, sampler, steps) for steps in (5, 10, 25, 100)}
    print(sampler, errors)
    assert errors[5] > errors[10] > errors[100]
    assert errors[5] / errors[10] > 4.0  # second order: halving the step length more than quarters the error
    assert errors[10] < 0.02 and errors[25] < 0.01 and errors[100] < 2e-3
    # far more accurate than DDIM at equal model calls
    assert errors[10] < 0.1 * sample_error(schedule, "ddim", 10)


def test_ddim_converges_to_the_exact_gaussian_sample(schedule: NoiseSchedule) -> None:
    errors = [sample_error(schedule, "ddim", steps) for steps in (5, 10, 50, 200)]
    print(errors)
    assert errors == sorted(errors, reverse=True) and errors[-1] < 0.05
    assert errors[0] / errors[1] > 1.4  # first order


@pytest.mark.parametrize("sampler", SOLVERS)
def test_solvers_in_float32(schedule: NoiseSchedule, sampler: str) -> None:
    assert abs(sample_error(schedule, sampler, 10, torch.float32) - sample_error(schedule, sampler, 10)) < 1e-4


def test_solver_grid(schedule: NoiseSchedule) -> None:
    for steps in (1, 2, 3, 5, 8, 10, 15, 25, 50, 100, 500, 999):
        grid = solver_grid(schedule, steps)
        t = grid.timesteps
        assert t.dtype == torch.int64 and len(t) == steps and int(t[0]) == 999 and int(t[-1]) >= 1
        assert bool((t[1:] < t[:-1]).all())
        assert bool((grid.lambdas[1:] > grid.lambdas[:-1]).all())
        abar = schedule.alphas_cumprod.double()
        torch.testing.assert_close(grid.alphas**2, torch.cat([abar[t], abar[:1]]), rtol=1e-12, atol=0)
        torch.testing.assert_close(grid.alphas**2 + grid.sigmas**2, torch.ones(steps + 1, dtype=torch.float64))
    # uniform in lambda away from t = 0, where the discrete schedule's gaps are wide
    gaps = solver_grid(schedule, 10).lambdas.diff()
    assert float(gaps[:8].max() - gaps[:8].min()) < 0.05
    assert solver_grid(schedule, 999).timesteps.tolist() == list(range(999, 0, -1))
    for steps in (0, 1000, 2.5):
        with pytest.raises(ValueError, match="steps"):
            solver_grid(schedule, steps)


@pytest.mark.parametrize("sampler", SOLVERS)
def test_guidance_is_one_batched_call_per_step(schedule: NoiseSchedule, sampler: str) -> None:
    calls: list[tuple[int, int]] = []
    model = gaussian_model(schedule)

    def counting(x: torch.Tensor, t: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        assert bool((t == t[0]).all()) and t.dtype == torch.int64
        calls.append((x.shape[0], int(t[0])))
        return model(x, t, context)

    x_T, cond, uncond, _ = gaussian_case()
    solver = MultistepSolver(schedule, sampler)
    guided = solver.sample(counting, x_T, cond, uncond, 6, GUIDANCE)
    assert [c[0] for c in calls] == [4] * 6
    assert [c[1] for c in calls] == solver_grid(schedule, 6).timesteps.tolist()
    calls.clear()
    plain = solver.sample(counting, x_T, cond, None, 6, guidance_scale=1.0)
    assert [c[0] for c in calls] == [2] * 6
    # scale 1 without uncond equals the guided formula with uncond == cond
    torch.testing.assert_close(plain, solver.sample(model, x_T, cond, cond.clone(), 6, 3.0), rtol=0, atol=1e-12)
    assert not torch.allclose(plain, guided)


@pytest.mark.parametrize("sampler", SOLVERS)
def test_solvers_are_deterministic_and_batch_independent(schedule: NoiseSchedule, sampler: str) -> None:
    model = gaussian_model(schedule)
    x_T, cond, uncond, _ = gaussian_case(dtype=torch.float32, batch=3)
    solver = MultistepSolver(schedule, sampler)
    first = solver.sample(model, x_T, cond, uncond, 8, GUIDANCE)
    assert torch.equal(first, solver.sample(model, x_T, cond, uncond, 8, GUIDANCE))
    for i in range(3):
        single = solver.sample(model, x_T[i : i + 1], cond[i : i + 1], uncond[i : i + 1], 8, GUIDANCE)
        torch.testing.assert_close(single, first[i : i + 1], rtol=0, atol=1e-6)


def test_unipc_differs_from_dpmpp_by_its_corrector(schedule: NoiseSchedule) -> None:
    """One step has no history: both are the first-order (DDIM) step; later they differ."""
    model = gaussian_model(schedule)
    x_T, cond, uncond, _ = gaussian_case()
    one = [MultistepSolver(schedule, m).sample(model, x_T, cond, uncond, 1, GUIDANCE) for m in SOLVERS]
    assert torch.equal(one[0], one[1])
    three = [MultistepSolver(schedule, m).sample(model, x_T, cond, uncond, 3, GUIDANCE) for m in SOLVERS]
    assert not torch.allclose(three[0], three[1])


def test_ddim_through_the_registry_is_the_official_sampler(schedule: NoiseSchedule) -> None:
    model = gaussian_model(schedule)
    x_T, cond, uncond, _ = gaussian_case(dtype=torch.float32)
    gens = [torch.Generator().manual_seed(s) for s in (1, 2)]
    via = sample_latent("ddim", schedule, model, x_T, cond, uncond, 10, GUIDANCE, 1.0, gens)
    gens = [torch.Generator().manual_seed(s) for s in (1, 2)]
    direct = DDIMSampler(schedule).sample(model, x_T, cond, uncond, 10, eta=1.0, guidance_scale=GUIDANCE, generator=gens)
    assert torch.equal(via, direct)


def test_unknown_sampler_and_bad_inputs(schedule: NoiseSchedule) -> None:
    assert SAMPLERS == ("ddim", "dpmpp-2m", "unipc")
    check_sampler("unipc")
    with pytest.raises(ValueError, match="sampler must be one of ddim, dpmpp-2m, unipc; got 'euler'"):
        check_sampler("euler")
    with pytest.raises(ValueError, match="solver method"):
        MultistepSolver(schedule, "ddim")
    x_T, cond, _, _ = gaussian_case()
    with pytest.raises(ValueError, match="uncond is required"):
        MultistepSolver(schedule, "unipc").sample(gaussian_model(schedule), x_T, cond, None, 4, GUIDANCE)
