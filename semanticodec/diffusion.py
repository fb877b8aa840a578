"""Diffusion process of SemantiCodec's decoder: noise schedule, v-prediction and DDIM sampling.

The official model (``LatentDiffusion`` with ``parameterization="v"``) uses 1000 timesteps
with ``betas = linspace(sqrt(0.0015), sqrt(0.0195), 1000) ** 2`` in float64, stored as float32
buffers. Sampling is DDIM (``models/ddim.py``) with classifier-free guidance applied to v:
``v = v_uncond + s * (v_cond - v_uncond)``. Here the unconditional and conditional passes run
as one batched model call.

Latents are ``[B, C, H, W]`` (``[B, 8, 256, 16]`` for SemantiCodec); timesteps are integer
indices ``0 <= t < num_timesteps``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

SCHEDULE_BUFFERS: tuple[str, ...] = (
    "betas",
    "alphas_cumprod",
    "alphas_cumprod_prev",
    "sqrt_alphas_cumprod",
    "sqrt_one_minus_alphas_cumprod",
    "log_one_minus_alphas_cumprod",
    "sqrt_recip_alphas_cumprod",
    "sqrt_recipm1_alphas_cumprod",
    "posterior_variance",
    "posterior_log_variance_clipped",
    "posterior_mean_coef1",
    "posterior_mean_coef2",
)
"""Names of the float32 schedule buffers, as stored at the top level of the official decoder.ckpt."""

ModelFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
"""``model_fn(x [B, C, H, W], t [B] int64, context [B, N, D]) -> v [B, C, H, W]``."""


@dataclass(frozen=True)
class ScheduleConfig:
    """The diffusion schedule: ``num_timesteps`` betas from ``linear_start`` to ``linear_end``
    (interpolated linearly in sqrt(beta), the LDM "linear" schedule); ``scale_factor`` is the
    latent scale (the sampler works on ``z * scale_factor``; decoding divides by it)."""

    num_timesteps: int = 1000
    linear_start: float = 0.0015
    linear_end: float = 0.0195
    scale_factor: float = 1.0

    def __post_init__(self) -> None:
        if self.num_timesteps < 2:
            raise ValueError(f"ScheduleConfig.num_timesteps must be >= 2, got {self.num_timesteps}")
        if not 0.0 < self.linear_start <= self.linear_end < 1.0:
            raise ValueError(
                "ScheduleConfig needs 0 < linear_start <= linear_end < 1, got "
                f"{self.linear_start} and {self.linear_end}"
            )
        if not self.scale_factor > 0.0:
            raise ValueError(f"ScheduleConfig.scale_factor must be > 0, got {self.scale_factor}")


def _schedule_arrays(config: ScheduleConfig) -> dict[str, np.ndarray]:
    """The official ``DDPM.register_schedule`` quantities in float64 (v_posterior = 0)."""
    betas = (
        torch.linspace(
            config.linear_start**0.5, config.linear_end**0.5, config.num_timesteps, dtype=torch.float64, device="cpu"
        )
        ** 2
    ).numpy()
    alphas = 1.0 - betas
    alphas_cumprod = np.cumprod(alphas, axis=0)
    alphas_cumprod_prev = np.append(1.0, alphas_cumprod[:-1])
    posterior_variance = betas * (1.0 - alphas_cumprod_prev) / (1.0 - alphas_cumprod)
    return {
        "betas": betas,
        "alphas_cumprod": alphas_cumprod,
        "alphas_cumprod_prev": alphas_cumprod_prev,
        "sqrt_alphas_cumprod": np.sqrt(alphas_cumprod),
        "sqrt_one_minus_alphas_cumprod": np.sqrt(1.0 - alphas_cumprod),
        "log_one_minus_alphas_cumprod": np.log(1.0 - alphas_cumprod),
        "sqrt_recip_alphas_cumprod": np.sqrt(1.0 / alphas_cumprod),
        "sqrt_recipm1_alphas_cumprod": np.sqrt(1.0 / alphas_cumprod - 1),
        "posterior_variance": posterior_variance,
        "posterior_log_variance_clipped": np.log(np.maximum(posterior_variance, 1e-20)),
        "posterior_mean_coef1": betas * np.sqrt(alphas_cumprod_prev) / (1.0 - alphas_cumprod),
        "posterior_mean_coef2": (1.0 - alphas_cumprod_prev) * np.sqrt(alphas) / (1.0 - alphas_cumprod),
    }


def ddim_timesteps(steps: int, num_timesteps: int = 1000) -> torch.Tensor:
    """The official "uniform" DDIM timesteps, ascending: ``range(0, T, T // steps) + 1`` (int64).

    As in the official code the count can differ from ``steps`` (e.g. 3 steps of 1000 give
    ``c = 333`` and four timesteps); steps whose last timestep would be ``T`` (an IndexError
    in the official code) raise ValueError.
    """
    if not 1 <= steps <= num_timesteps:
        raise ValueError(f"DDIM steps must be in [1, {num_timesteps}], got {steps}")
    stride = num_timesteps // steps
    timesteps = torch.arange(0, num_timesteps, stride, dtype=torch.int64) + 1
    if int(timesteps[-1]) >= num_timesteps:
        raise ValueError(
            f"DDIM steps={steps}: the uniform spacing {stride} reaches timestep {int(timesteps[-1])}, "
            f"outside the {num_timesteps}-step schedule (the official code fails here); choose another count"
        )
    return timesteps


def ddim_steps_at_least(steps: int, num_timesteps: int = 1000) -> int:
    """The smallest step count ``>= steps`` that :func:`ddim_timesteps` accepts."""
    for count in range(max(steps, 1), num_timesteps + 1):
        stride = num_timesteps // count
        if (num_timesteps - 1) // stride * stride + 1 < num_timesteps:
            return count
    raise ValueError(f"no DDIM step count >= {steps} fits a {num_timesteps}-step schedule")


@dataclass(frozen=True)
class DDIMParameters:
    """Per-index DDIM quantities (index 0 = smallest timestep), as ``make_ddim_sampling_parameters``.

    ``timesteps`` int64 ``[S]``; ``alphas`` = alphas_cumprod[timesteps], ``alphas_prev``
    (alphas_cumprod[0] for index 0) and ``sigmas`` = eta * sqrt((1 - a_prev) / (1 - a) * (1 - a / a_prev)),
    all float64 ``[S]`` computed from the float32 alphas_cumprod (bit-identical to the official values).
    """

    timesteps: torch.Tensor
    alphas: torch.Tensor
    alphas_prev: torch.Tensor
    sigmas: torch.Tensor


@dataclass(frozen=True)
class DDIMTrace:
    """Per-step record of a DDIM run in sampling order (index ``S-1`` down to 0).

    ``timesteps``/``indices``: int64 ``[S]``; ``x_prev`` and ``pred_x0``: ``[S, B, C, H, W]``;
    ``model_out_uncond``/``model_out_cond``: the v predictions ``[S, B, C, H, W]``
    (``model_out_uncond`` is None when sampling without guidance).
    """

    timesteps: torch.Tensor
    indices: torch.Tensor
    model_out_uncond: torch.Tensor | None
    model_out_cond: torch.Tensor
    x_prev: torch.Tensor
    pred_x0: torch.Tensor


class NoiseSchedule(nn.Module):
    """The schedule buffers of the official ``DDPM`` (float32), plus ``logvar`` and ``scale_factor``.

    The state dict holds exactly the official top-level decoder.ckpt names
    (:data:`SCHEDULE_BUFFERS`, ``logvar``, ``scale_factor``), so a checkpoint's values can be
    compared with, or loaded into, this module. Conversions take ``t`` ``[B]`` int64.
    """

    betas: torch.Tensor
    alphas_cumprod: torch.Tensor
    sqrt_alphas_cumprod: torch.Tensor
    sqrt_one_minus_alphas_cumprod: torch.Tensor
    scale_factor: torch.Tensor

    def __init__(self, config: ScheduleConfig = ScheduleConfig()) -> None:
        super().__init__()
        self.config = config
        for name, value in _schedule_arrays(config).items():
            self.register_buffer(name, torch.tensor(value, dtype=torch.float32))
        self.register_buffer("logvar", torch.zeros(config.num_timesteps))
        self.register_buffer("scale_factor", torch.tensor(config.scale_factor, dtype=torch.float32))

    @property
    def num_timesteps(self) -> int:
        return self.config.num_timesteps

    def _coef(self, buffer: torch.Tensor, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if t.ndim != 1 or t.shape[0] != x.shape[0] or t.is_floating_point():
            raise ValueError(f"t must be integer timesteps of shape [{x.shape[0]}], got {t.dtype} {tuple(t.shape)}")
        if int(t.min()) < 0 or int(t.max()) >= self.num_timesteps:
            raise ValueError(f"timesteps must lie in [0, {self.num_timesteps}), got {t.tolist()}")
        return buffer[t.to(buffer.device)].to(x.device, x.dtype).reshape(-1, *([1] * (x.ndim - 1)))

    def predict_start_from_v(self, x_t: torch.Tensor, t: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """x0 = sqrt(abar_t) x_t - sqrt(1 - abar_t) v."""
        return (
            self._coef(self.sqrt_alphas_cumprod, t, x_t) * x_t
            - self._coef(self.sqrt_one_minus_alphas_cumprod, t, x_t) * v
        )

    def predict_eps_from_v(self, x_t: torch.Tensor, t: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """eps = sqrt(abar_t) v + sqrt(1 - abar_t) x_t."""
        return (
            self._coef(self.sqrt_alphas_cumprod, t, x_t) * v
            + self._coef(self.sqrt_one_minus_alphas_cumprod, t, x_t) * x_t
        )

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Noised latent x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) noise."""
        return (
            self._coef(self.sqrt_alphas_cumprod, t, x0) * x0
            + self._coef(self.sqrt_one_minus_alphas_cumprod, t, x0) * noise
        )

    def v_target(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Training target v = sqrt(abar_t) noise - sqrt(1 - abar_t) x0."""
        return (
            self._coef(self.sqrt_alphas_cumprod, t, x0) * noise
            - self._coef(self.sqrt_one_minus_alphas_cumprod, t, x0) * x0
        )

    def ddim_parameters(self, steps: int, eta: float) -> DDIMParameters:
        """DDIM timesteps and alphas/sigmas for ``steps`` uniform steps and noise level ``eta`` >= 0."""
        if not eta >= 0.0:
            raise ValueError(f"DDIM eta must be >= 0, got {eta}")
        timesteps = ddim_timesteps(steps, self.num_timesteps)
        alphacums = self.alphas_cumprod.detach().cpu()
        alphas32 = alphacums[timesteps]
        alphas = alphas32.double()
        alphas_prev = torch.cat([alphacums[:1], alphacums[timesteps[:-1]]]).double()
        # The official code divides a float64 array by the float32 tensor 1 - alphas, which torch
        # evaluates as a float32 reciprocal times float64; reproduced for bit-identical sigmas.
        ratio = (1.0 - alphas_prev) * (1.0 - alphas32).reciprocal().double()
        sigmas = eta * torch.sqrt(ratio * (1.0 - alphas / alphas_prev))
        return DDIMParameters(timesteps, alphas, alphas_prev, sigmas)


class DDIMSampler:
    """DDIM sampling with classifier-free guidance on the v-prediction (official ``p_sample_ddim``).

    One step at timestep ``t`` and index ``i``: ``v = v_u + s (v_c - v_u)``,
    ``eps = sqrt(abar_t) v + sqrt(1-abar_t) x``, ``x0 = sqrt(abar_t) x - sqrt(1-abar_t) v``,
    ``x <- sqrt(a_prev_i) x0 + sqrt(1 - a_prev_i - sigma_i^2) eps + sigma_i z`` with the
    per-index scalars rounded to float32 as in the official code. The unconditional and
    conditional passes run as one model call on the concatenated batch ``[uncond; cond]``.
    """

    def __init__(self, schedule: NoiseSchedule) -> None:
        self.schedule = schedule

    def sample(
        self,
        model_fn: ModelFn,
        x_T: torch.Tensor,
        cond: torch.Tensor,
        uncond: torch.Tensor | None,
        steps: int,
        eta: float = 1.0,
        guidance_scale: float = 2.0,
        noise: Sequence[torch.Tensor] | torch.Tensor | None = None,
        generator: torch.Generator | Sequence[torch.Generator] | None = None,
        known: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Sample a latent ``[B, C, H, W]`` from ``x_T`` conditioned on ``cond`` ``[B, N, D]``.

        ``uncond`` (same shape as ``cond``) is required unless ``guidance_scale == 1``, in
        which case one model pass per step is made. For ``eta > 0`` the per-step standard
        normal noise comes from ``noise`` (one ``[B, C, H, W]`` tensor per step, in sampling
        order), else from ``generator`` (a list of ``B`` generators draws each batch item
        separately, so batched sampling equals per-item sampling), else from torch's global RNG.

        ``known = (x0, mask)`` inpaints: ``x0`` ``[B, C, H, W]`` and a bool ``mask`` broadcastable
        to it mark cells whose clean latent is known. After every step those cells are replaced
        by ``x0`` noised to the step's level (fresh noise from ``generator``), so the model
        generates the other cells to fit them (the replacement method; RePaint without
        resampling); the result holds ``x0`` exactly on the mask.
        """
        return self._run(model_fn, x_T, cond, uncond, steps, eta, guidance_scale, noise, generator, None, known)

    def sample_with_trace(
        self,
        model_fn: ModelFn,
        x_T: torch.Tensor,
        cond: torch.Tensor,
        uncond: torch.Tensor | None,
        steps: int,
        eta: float = 1.0,
        guidance_scale: float = 2.0,
        noise: Sequence[torch.Tensor] | torch.Tensor | None = None,
        generator: torch.Generator | Sequence[torch.Generator] | None = None,
    ) -> tuple[torch.Tensor, DDIMTrace]:
        """As :meth:`sample`, also returning every step's model outputs, ``x_prev`` and ``pred_x0``."""
        record: dict[str, list[torch.Tensor]] = {
            key: [] for key in ("model_out_uncond", "model_out_cond", "x_prev", "pred_x0")
        }
        latent = self._run(model_fn, x_T, cond, uncond, steps, eta, guidance_scale, noise, generator, record, None)
        params = self.schedule.ddim_parameters(steps, eta)
        indices = torch.arange(len(params.timesteps) - 1, -1, -1)
        trace = DDIMTrace(
            timesteps=params.timesteps[indices],
            indices=indices,
            model_out_uncond=torch.stack(record["model_out_uncond"]) if record["model_out_uncond"] else None,
            model_out_cond=torch.stack(record["model_out_cond"]),
            x_prev=torch.stack(record["x_prev"]),
            pred_x0=torch.stack(record["pred_x0"]),
        )
        return latent, trace

    def _run(
        self,
        model_fn: ModelFn,
        x_T: torch.Tensor,
        cond: torch.Tensor,
        uncond: torch.Tensor | None,
        steps: int,
        eta: float,
        guidance_scale: float,
        noise: Sequence[torch.Tensor] | torch.Tensor | None,
        generator: torch.Generator | Sequence[torch.Generator] | None,
        record: dict[str, list[torch.Tensor]] | None,
        known: tuple[torch.Tensor, torch.Tensor] | None,
    ) -> torch.Tensor:
        params = self.schedule.ddim_parameters(steps, eta)
        if known is not None:
            known_x0, known_mask = known[0].to(x_T.device, x_T.dtype), known[1].to(x_T.device).bool()
            if known_x0.shape != x_T.shape:
                raise ValueError(f"known latent {tuple(known_x0.shape)} must have the shape of x_T {tuple(x_T.shape)}")
        num_steps = len(params.timesteps)
        guided = guidance_scale != 1.0
        check_sampler_inputs(x_T, cond, uncond, guided, noise, num_steps, generator)
        sqrt_ac = self.schedule.sqrt_alphas_cumprod
        sqrt_1m_ac = self.schedule.sqrt_one_minus_alphas_cumprod
        with torch.inference_mode():
            x = x_T
            context = torch.cat([uncond, cond]) if guided else cond
            for step, index in enumerate(range(num_steps - 1, -1, -1)):
                timestep = int(params.timesteps[index])
                v, v_uncond, v_cond = guided_v(model_fn, x, timestep, context, guidance_scale)
                a = sqrt_ac[timestep].to(x.device, x.dtype)
                b = sqrt_1m_ac[timestep].to(x.device, x.dtype)
                eps = a * v + b * x
                pred_x0 = a * x - b * v
                a_prev = torch.tensor(float(params.alphas_prev[index]), dtype=torch.float32)
                sigma = torch.tensor(float(params.sigmas[index]), dtype=torch.float32)
                dir_coef = (1.0 - a_prev - sigma**2).sqrt().to(x.device, x.dtype)
                sqrt_a_prev = a_prev.sqrt().to(x.device, x.dtype)
                x_prev = sqrt_a_prev * pred_x0 + dir_coef * eps
                if eta > 0.0:
                    z = step_noise(noise, step, generator, x)
                    x_prev = x_prev + sigma.to(x.device, x.dtype) * z
                if record is not None:
                    if v_uncond is not None:
                        record["model_out_uncond"].append(v_uncond)
                    record["model_out_cond"].append(v_cond)
                    record["x_prev"].append(x_prev)
                    record["pred_x0"].append(pred_x0)
                if known is not None:
                    z_known = step_noise(None, step, generator, x)
                    noised = sqrt_a_prev * known_x0 + (1.0 - a_prev).sqrt().to(x.device, x.dtype) * z_known
                    x_prev = torch.where(known_mask, noised, x_prev)
                x = x_prev
        return x if known is None else torch.where(known_mask, known_x0, x)


def guided_v(
    model_fn: ModelFn, x: torch.Tensor, timestep: int, context: torch.Tensor, guidance_scale: float
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """The guided v prediction at integer ``timestep`` for the latent ``x`` ``[B, C, H, W]``.

    ``context`` is ``[2B, N, D]`` (unconditional rows first, then conditional) when
    ``guidance_scale != 1``: both passes run as one model call on ``[x; x]`` and
    ``v = v_uncond + s (v_cond - v_uncond)``. Otherwise ``context`` is the ``[B, N, D]``
    condition and one pass is made. Returns ``(v, v_uncond or None, v_cond)``.
    """
    guided = guidance_scale != 1.0
    t = torch.full((x.shape[0] * (2 if guided else 1),), timestep, dtype=torch.int64, device=x.device)
    model_out = model_fn(torch.cat([x, x]) if guided else x, t, context).to(x.dtype)
    if not guided:
        return model_out, None, model_out
    v_uncond, v_cond = model_out.chunk(2)
    return v_uncond + guidance_scale * (v_cond - v_uncond), v_uncond, v_cond


def step_noise(
    noise: Sequence[torch.Tensor] | torch.Tensor | None,
    step: int,
    generator: torch.Generator | Sequence[torch.Generator] | None,
    x: torch.Tensor,
) -> torch.Tensor:
    """Standard normal noise like ``x`` for one step (given, per-item generators, one generator or global)."""
    if noise is not None:
        return noise[step].to(x.device, x.dtype)
    if generator is None:
        return torch.randn(x.shape, device=x.device, dtype=x.dtype)
    if isinstance(generator, torch.Generator):
        return torch.randn(x.shape, generator=generator, device=generator.device).to(x.device, x.dtype)
    items = [torch.randn(x.shape[1:], generator=g, device=g.device).to(x.device, x.dtype) for g in generator]
    return torch.stack(items)


def check_sampler_inputs(
    x_T: torch.Tensor,
    cond: torch.Tensor,
    uncond: torch.Tensor | None,
    guided: bool,
    noise: Sequence[torch.Tensor] | torch.Tensor | None,
    num_steps: int,
    generator: torch.Generator | Sequence[torch.Generator] | None,
) -> None:
    if x_T.ndim != 4:
        raise ValueError(f"x_T must be a latent [B, C, H, W], got shape {tuple(x_T.shape)}")
    batch = x_T.shape[0]
    if cond.ndim != 3 or cond.shape[0] != batch:
        raise ValueError(f"cond must be [{batch}, N, D] to match x_T, got {tuple(cond.shape)}")
    if guided:
        if uncond is None:
            raise ValueError("uncond is required when guidance_scale != 1")
        if uncond.shape != cond.shape:
            raise ValueError(f"uncond shape {tuple(uncond.shape)} differs from cond shape {tuple(cond.shape)}")
    if noise is not None:
        if generator is not None:
            raise ValueError("give either noise or generator, not both")
        if len(noise) != num_steps:
            raise ValueError(f"noise must hold one tensor per DDIM step ({num_steps}), got {len(noise)}")
        for z in noise:
            if tuple(z.shape) != tuple(x_T.shape):
                raise ValueError(
                    f"each noise tensor must have the shape of x_T {tuple(x_T.shape)}, got {tuple(z.shape)}"
                )
    if generator is not None and not isinstance(generator, torch.Generator) and len(generator) != batch:
        raise ValueError(f"a list of generators needs one per batch item ({batch}), got {len(generator)}")
