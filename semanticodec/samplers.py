"""Samplers of the decoder's diffusion model: the official DDIM and two fast multistep ODE solvers.

``ddim`` is :class:`~semanticodec.diffusion.DDIMSampler` (the official sampler, stochastic
for η > 0). ``dpmpp-2m`` is DPM-Solver++(2M) (Lu et al. 2022, multistep, second order) and
``unipc`` is UniPC-2 (Zhao et al. 2023: the same predictor with the B(h) = e^h - 1 corrector,
which raises the order by one at no extra model call). Both solve the probability-flow ODE of
the v-prediction model and are deterministic given the start noise ``x_T``.

With ``alpha = sqrt(abar)``, ``sigma = sqrt(1 - abar)``, ``lambda = log(alpha / sigma)`` and the
model's clean-latent estimate ``x0(x, t) = alpha x - sigma v`` the ODE has the exact solution

    x_t = (sigma_t / sigma_s) x_s + sigma_t * integral_{lambda_s}^{lambda_t} e^lambda x0 dlambda,

and the solvers integrate a polynomial (in lambda) through the latest estimates. One step from
``s`` to ``t`` with ``h = lambda_t - lambda_s`` and ``phi = expm1(-h)``:

- first order (DDIM with η = 0): ``x_t = (sigma_t / sigma_s) x_s - alpha_t phi m0``;
- second order: ``m0`` becomes ``m0 + (m0 - m1) h / (2 h_prev)`` (``m1``: the estimate one
  step back, ``h_prev`` that step's length);
- UniC corrector, once the model has been evaluated at the new point (estimate ``m_t``): the
  step is redone from ``x_s`` with ``rho_1 (m1 - m0) / r1 + rho_t (m_t - m0)`` in place of the
  second-order term (``r1 = -h_prev / h``; ``rho`` solves ``R rho = b`` for the B(h) variant;
  with no ``m1`` yet, ``rho_t = 1/2``). The corrected point is where the next step starts.

The solvers evaluate the model at ``steps`` integer timesteps spaced uniformly in lambda from
``T - 1`` (rounded to the nearest timestep) and end at the noise level of timestep 0, as the
official DDIM does; the last step is first order (more stable with guidance at few steps).
Classifier-free guidance combines the v predictions of one batched model call.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from semanticodec.diffusion import DDIMSampler, ModelFn, NoiseSchedule, check_sampler_inputs, guided_v

SAMPLERS: tuple[str, ...] = ("ddim", "dpmpp-2m", "unipc")
"""Sampler names accepted by :func:`sample_latent` (``SemantiCodec(sampler=...)``, ``--sampler``)."""

OFFICIAL_SAMPLING = ("ddim", 50)
"""(sampler, steps) of the official code: DDIM with 50 steps."""

SOLVERS: tuple[str, ...] = ("dpmpp-2m", "unipc")
"""The multistep ODE solvers among :data:`SAMPLERS`."""


@dataclass(frozen=True)
class SolverGrid:
    """Where a solver evaluates the model and the noise levels it steps between.

    ``timesteps``: int64 ``[M]``, descending, the model's integer timesteps; ``alphas``,
    ``sigmas``, ``lambdas``: float64 ``[M + 1]`` at those timesteps and, last, at the end
    level (timestep 0's ``abar``).
    """

    timesteps: torch.Tensor
    alphas: torch.Tensor
    sigmas: torch.Tensor
    lambdas: torch.Tensor


def solver_grid(schedule: NoiseSchedule, steps: int) -> SolverGrid:
    """The ``steps`` evaluation timesteps of a solver: uniform in lambda from ``T - 1`` down to
    the level of timestep 0 (``steps + 1`` points; the last is where sampling ends), each
    evaluation point rounded to the integer timestep nearest in lambda and moved, where the
    discrete schedule's wide lambda gaps near t = 0 would merge points, to keep them at least
    one timestep apart."""
    num = schedule.num_timesteps
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps < num:
        raise ValueError(f"solver steps must be an int in [1, {num - 1}], got {steps!r}")
    abar = schedule.alphas_cumprod.detach().cpu().double()
    lambdas = 0.5 * (torch.log(abar) - torch.log1p(-abar))
    targets = torch.linspace(float(lambdas[-1]), float(lambdas[0]), steps + 1, dtype=torch.float64)[:-1]
    # lambda decreases with t: search on the ascending reversed table for the nearest timestep
    ascending = lambdas.flip(0)
    right = torch.searchsorted(ascending, targets).clamp(1, num - 1)
    nearer_left = (targets - ascending[right - 1]).abs() <= (ascending[right] - targets).abs()
    nearest = (num - 1) - torch.where(nearer_left, right - 1, right)
    # near t = 0 the discrete schedule's lambda gaps are wide: keep the points one timestep apart
    index = torch.arange(steps)
    timesteps = torch.minimum(torch.maximum(nearest, steps - index), num - 1 - index).tolist()
    for k in range(steps - 2, -1, -1):
        timesteps[k] = max(timesteps[k], timesteps[k + 1] + 1)
    timesteps = torch.tensor(timesteps, dtype=torch.int64)
    levels = torch.cat([abar[timesteps], abar[:1]])
    return SolverGrid(
        timesteps=timesteps.to(torch.int64),
        alphas=levels.sqrt(),
        sigmas=(1.0 - levels).sqrt(),
        lambdas=0.5 * (torch.log(levels) - torch.log1p(-levels)),
    )


def _unic_weights(h: float, r1: float | None) -> tuple[float, float]:
    """UniC coefficients ``(rho_1, rho_t)`` of the B(h) = e^h - 1 variant for a step of length
    ``h`` (data prediction, ``hh = -h``); ``r1``: the previous point's offset in units of ``h``
    (None: no earlier estimate, first order, ``rho_t = 1/2``)."""
    if r1 is None:
        return 0.0, 0.5
    hh = -h
    b_h = math.expm1(hh)
    g1 = math.expm1(hh) / hh - 1.0  # (e^hh - 1 - hh) / hh
    g2 = g1 / hh - 0.5  # (e^hh - 1 - hh - hh^2 / 2) / hh^2
    rhs = np.array([g1 / b_h, 2.0 * g2 / b_h])
    rho = np.linalg.solve(np.array([[1.0, 1.0], [r1, 1.0]]), rhs)
    return float(rho[0]), float(rho[1])


class MultistepSolver:
    """DPM-Solver++(2M) (``method="dpmpp-2m"``) or UniPC-2 (``method="unipc"``) with
    classifier-free guidance on the v-prediction (see the module docstring for the update)."""

    def __init__(self, schedule: NoiseSchedule, method: str) -> None:
        if method not in SOLVERS:
            raise ValueError(f"solver method must be one of {SOLVERS}, got {method!r}")
        self.schedule = schedule
        self.method = method

    def sample(
        self,
        model_fn: ModelFn,
        x_T: torch.Tensor,
        cond: torch.Tensor,
        uncond: torch.Tensor | None,
        steps: int,
        guidance_scale: float = 2.0,
    ) -> torch.Tensor:
        """Latent ``[B, C, H, W]`` at timestep 0's noise level from ``x_T`` (standard normal),
        conditioned on ``cond`` ``[B, N, D]``; ``uncond`` (same shape) is required unless
        ``guidance_scale == 1``. ``steps`` model calls (of batch 2B when guided); no noise is
        drawn. (Inpainting by replacement needs fresh noise to blend the known cells in; it is
        left to the stochastic :class:`DDIMSampler`.)
        """
        guided = guidance_scale != 1.0
        check_sampler_inputs(x_T, cond, uncond, guided, None, steps, None)
        grid = solver_grid(self.schedule, steps)
        alphas, sigmas, lambdas = grid.alphas.tolist(), grid.sigmas.tolist(), grid.lambdas.tolist()
        context = torch.cat([uncond, cond]) if guided else cond
        with torch.inference_mode():
            x = x_T
            last: _Step | None = None
            for i in range(steps):
                v, _, _ = guided_v(model_fn, x, int(grid.timesteps[i]), context, guidance_scale)
                m0 = alphas[i] * x - sigmas[i] * v
                if self.method == "unipc" and last is not None:
                    x = _unic(last, m0, lambdas, alphas, sigmas)
                h = lambdas[i + 1] - lambdas[i]
                m1 = last.m0 if last is not None and i < steps - 1 else None
                estimate = m0 if m1 is None else m0 + (h / (2.0 * (lambdas[i] - lambdas[i - 1]))) * (m0 - m1)
                last = _Step(i, x, m0, m1)
                x = (sigmas[i + 1] / sigmas[i]) * x - (alphas[i + 1] * math.expm1(-h)) * estimate
        return x


@dataclass(frozen=True)
class _Step:
    """A solver step from point ``index``: its start ``x``, estimate ``m0`` there and, for a
    second-order step, the estimate ``m1`` at the point before (else None)."""

    index: int
    x: torch.Tensor
    m0: torch.Tensor
    m1: torch.Tensor | None


def _unic(step: _Step, m_t: torch.Tensor, lambdas: list[float], alphas: list[float], sigmas: list[float]) -> torch.Tensor:
    """UniC: redo ``step`` (which ended at point ``step.index + 1``) with the estimate ``m_t`` there."""
    s, t = step.index, step.index + 1
    h = lambdas[t] - lambdas[s]
    r1 = None if step.m1 is None else (lambdas[s - 1] - lambdas[s]) / h
    rho_1, rho_t = _unic_weights(h, r1)
    correction = rho_t * (m_t - step.m0)
    if step.m1 is not None:
        correction = correction + (rho_1 / r1) * (step.m1 - step.m0)
    return (sigmas[t] / sigmas[s]) * step.x - (alphas[t] * math.expm1(-h)) * (step.m0 + correction)


def sample_latent(
    sampler: str,
    schedule: NoiseSchedule,
    model_fn: ModelFn,
    x_T: torch.Tensor,
    cond: torch.Tensor,
    uncond: torch.Tensor | None,
    steps: int,
    guidance_scale: float,
    eta: float,
    generator: torch.Generator | Sequence[torch.Generator] | None = None,
) -> torch.Tensor:
    """Sample a latent ``[B, C, H, W]`` with the named sampler (:data:`SAMPLERS`) from ``x_T``;
    ``eta`` and ``generator`` (the per-step noise) apply to ``ddim`` only."""
    check_sampler(sampler)
    if sampler == "ddim":
        return DDIMSampler(schedule).sample(
            model_fn, x_T, cond, uncond, steps, eta=eta, guidance_scale=guidance_scale, generator=generator
        )
    return MultistepSolver(schedule, sampler).sample(model_fn, x_T, cond, uncond, steps, guidance_scale)


def check_sampler(sampler: str) -> None:
    """Raise ValueError unless ``sampler`` names one of :data:`SAMPLERS`."""
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler must be one of {', '.join(SAMPLERS)}; got {sampler!r}")
