"""The training loop shared by every stage: resumable checkpoints, a CSV log, progress, and
data parallelism with ``torch.distributed`` (gloo on CPU, NCCL on GPU) under ``torchrun``.

A stage (see :class:`Stage`) owns its networks, optimizers and losses; :func:`train` calls
``stage.train_step(batch, step)`` for ``config.steps`` steps, saves ``checkpoint.pt`` every
``config.checkpoint_every`` steps and at the end, and writes the stage's exported weights to
``<out>/<stage.name>.safetensors``. Checkpoints are read with ``torch.load(weights_only=True)``.
In a distributed run every checkpoint first checks that all processes hold the same weights.
"""

from __future__ import annotations

import csv
import math
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from semanticodec.atomic import atomic_path, atomic_write
from semanticodec.constants import SAMPLE_RATE
from semanticodec.distributed import join_torchrun
from semanticodec.train.data import Batch, CropSampler
from semanticodec.train.runconfig import train_config_json


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters common to every stage.

    ``steps`` optimizer steps of ``batch_size`` crops of ``crop_seconds`` per process;
    ``learning_rate`` for AdamW; gradients clipped to ``grad_clip`` (0: off).
    """

    steps: int
    batch_size: int
    crop_seconds: float
    learning_rate: float
    log_every: int = 10
    checkpoint_every: int = 200
    seed: int = 0
    grad_clip: float = 1.0

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1 or self.log_every < 1 or self.checkpoint_every < 1:
            raise ValueError(f"steps, batch_size, log_every and checkpoint_every must be >= 1: {self}")
        if not self.crop_seconds > 0 or not self.learning_rate > 0 or self.grad_clip < 0:
            raise ValueError(f"crop_seconds and learning_rate must be > 0 and grad_clip >= 0: {self}")

    @property
    def crop_samples(self) -> int:
        return round(self.crop_seconds * SAMPLE_RATE)


@dataclass(frozen=True)
class Distributed:
    """This process's place in a (possibly single-process) run."""

    rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def wrap(self, module: nn.Module) -> nn.Module:
        """``module`` wrapped in DistributedDataParallel when the run has several processes."""
        if not self.enabled:
            return module
        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(module, device_ids=ids)

    def mean(self, value: float) -> float:
        """Average of a per-process number over all processes."""
        if not self.enabled:
            return value
        t = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return float(t.item()) / self.world_size

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def check_synchronised(self, modules: Mapping[str, nn.Module]) -> None:
        """Raise RuntimeError unless every process holds the same weights (a checksum per module)."""
        if not self.enabled:
            return
        sums = torch.tensor(
            [float(sum(p.detach().double().sum() for p in m.parameters())) for m in modules.values()],
            dtype=torch.float64, device=self.device,
        )
        low, high = sums.clone(), sums.clone()
        dist.all_reduce(low, op=dist.ReduceOp.MIN)
        dist.all_reduce(high, op=dist.ReduceOp.MAX)
        if not torch.allclose(low, high, rtol=1e-9, atol=1e-9):
            raise RuntimeError(f"processes diverged: weight checksums {low.tolist()} to {high.tolist()}")


def warmup_cosine(step: int, learning_rate: float, warmup_steps: int, decay_steps: int, floor: float = 0.0) -> float:
    """Learning rate of step ``step`` (0-based): linear warm-up to ``learning_rate`` over
    ``warmup_steps``, then a cosine down to ``floor`` at step ``decay_steps``, ``floor`` after it."""
    if step < warmup_steps:
        return learning_rate * (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, decay_steps - warmup_steps))
    return floor + (learning_rate - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def setup_distributed(device: str | None = None) -> Distributed:
    """Join the process group that ``torchrun`` describes in the environment (``WORLD_SIZE``,
    ``RANK``, ``LOCAL_RANK``), or run alone. NCCL when CUDA is used, else gloo."""
    target, _ = join_torchrun(device)
    return Distributed(rank=int(os.environ.get("RANK", "0")), world_size=int(os.environ.get("WORLD_SIZE", "1")), device=target)


class Stage(Protocol):
    """What :func:`train` needs from a stage."""

    name: str

    def modules(self) -> dict[str, nn.Module]:
        """The networks whose weights a checkpoint holds (unwrapped)."""

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """The optimizers whose state a checkpoint holds."""

    def train_step(self, batch: Batch, step: int) -> dict[str, float]:
        """One optimization step on ``batch``; returns the losses to log."""

    def export(self) -> dict[str, Tensor]:
        """The trained weights under :class:`~semanticodec.model.SemantiCodecModel` keys."""


def clip_and_step(
    loss: Tensor, module: nn.Module, optimizer: torch.optim.Optimizer, grad_clip: float
) -> None:
    """Backward, optional gradient-norm clipping, optimizer step."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(module.parameters(), grad_clip)
    optimizer.step()


def save_checkpoint(stage: Stage, step: int, path: Path) -> None:
    """Write the stage's weights and optimizer states after ``step`` steps (atomically)."""
    state = {
        "step": step,
        "modules": {name: m.state_dict() for name, m in stage.modules().items()},
        "optimizers": {name: o.state_dict() for name, o in stage.optimizers().items()},
    }
    with atomic_write(path, overwrite=True) as file:
        torch.save(state, file)


def load_checkpoint(stage: Stage, path: Path) -> int:
    """Restore a checkpoint written by :func:`save_checkpoint` or :func:`compact_checkpoint`;
    returns its step."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if state.get("compact"):
            state = _expand(state)
        for name, module in stage.modules().items():
            module.load_state_dict(state["modules"][name])
        for name, optimizer in stage.optimizers().items():
            optimizer.load_state_dict(state["optimizers"][name])
        return int(state["step"])
    except (RuntimeError, KeyError, EOFError, AttributeError) as err:
        raise ValueError(f"{path}: not a checkpoint of stage {stage.name!r} with this configuration ({err})") from None


COMPACT_MIN_ELEMENTS = 1024
"""Floating-point tensors of at least this many elements are stored in float16 by
:func:`compact_checkpoint` (smaller ones, such as the latent scale and norms, stay float32)."""


def compact_checkpoint(source: Path, target: Path) -> None:
    """Write the checkpoint ``source`` (of :func:`save_checkpoint`) to ``target`` in about a third
    of its size, for resuming on another machine (:func:`load_checkpoint` reads both forms).

    Weights (trained and averaged) of >= ``COMPACT_MIN_ELEMENTS`` elements become float16 (kept
    float32 where float16 would overflow); Adam's second moment is stored as its log2 quantised
    to 8 bits per tensor (255 levels between the tensor's extremes, zero kept exactly; about
    ±3 % on the step size at a 40-octave spread); Adam's first moment is left out (it restarts
    at zero: it averages the last ~10 gradients, so the run catches up within a few dozen steps).
    A resumed run is then close to, not equal to, an uninterrupted one.
    """
    state = torch.load(source, map_location="cpu", weights_only=True)
    if state.get("compact"):
        raise ValueError(f"{source}: already a compact checkpoint")
    modules = {name: {k: compact_tensor(v) for k, v in module.items()} for name, module in state["modules"].items()}
    optimizers = {}
    for name, optimizer in state["optimizers"].items():
        per_param = {}
        for index, entry in optimizer["state"].items():
            entry = {k: v for k, v in entry.items() if k != "exp_avg"}
            if "exp_avg_sq" in entry:
                entry["exp_avg_sq_log2"], entry["exp_avg_sq_range"] = _log_quantize(entry.pop("exp_avg_sq"))
            per_param[index] = entry
        optimizers[name] = {**optimizer, "state": per_param}
    with atomic_path(target, overwrite=True) as temp:
        torch.save({"step": state["step"], "compact": True, "modules": modules, "optimizers": optimizers}, temp)


def compact_tensor(value: Tensor) -> Tensor:
    """``value`` in float16 if it is floating point, of >= ``COMPACT_MIN_ELEMENTS`` elements
    and finite in float16; else ``value`` itself."""
    if not value.is_floating_point() or value.numel() < COMPACT_MIN_ELEMENTS:
        return value
    half = value.half()
    return half if bool(torch.isfinite(half).all()) else value


def _log_quantize(value: Tensor) -> tuple[Tensor, Tensor]:
    """``value`` (>= 0) as uint8 codes (0: zero; 1..255: log2 from low to high) and ``[low, high]``."""
    positive = value > 0
    logs = value[positive].double().log2()
    bounds = torch.stack([logs.min(), logs.max()]) if logs.numel() else torch.zeros(2, dtype=torch.float64)
    codes = torch.zeros(value.shape, dtype=torch.uint8)
    span = float(bounds[1] - bounds[0]) or 1.0
    codes[positive] = (1 + ((logs - bounds[0]) / span * 254).round()).to(torch.uint8)
    return codes, bounds


def _log_dequantize(codes: Tensor, bounds: Tensor) -> Tensor:
    span = float(bounds[1] - bounds[0]) or 1.0
    values = torch.exp2(bounds[0] + (codes.double() - 1) / 254 * span).float()
    return torch.where(codes > 0, values, torch.zeros_like(values))


def _expand(state: dict) -> dict:
    """A compact checkpoint's optimizer state in the form ``Optimizer.load_state_dict`` takes
    (module weights are cast on loading)."""
    optimizers = {}
    for name, optimizer in state["optimizers"].items():
        per_param = {}
        for index, entry in optimizer["state"].items():
            entry = dict(entry)
            if "exp_avg_sq_log2" in entry:
                entry["exp_avg_sq"] = _log_dequantize(entry.pop("exp_avg_sq_log2"), entry.pop("exp_avg_sq_range"))
                entry["exp_avg"] = torch.zeros_like(entry["exp_avg_sq"])
            per_param[index] = entry
        optimizers[name] = {**optimizer, "state": per_param}
    return {**state, "optimizers": optimizers}


def export_weights(weights: Mapping[str, Tensor], path: Path, metadata: Mapping[str, str]) -> None:
    """Save exported weights as safetensors (atomically)."""
    from safetensors.torch import save_file

    with atomic_path(path, overwrite=True) as temp:
        save_file({k: v.detach().float().cpu().contiguous() for k, v in weights.items()}, str(temp), metadata=dict(metadata))


def train(
    stage: Stage,
    sampler: CropSampler,
    config: TrainConfig,
    out: str | os.PathLike,
    distributed: Distributed = Distributed(),
    progress: bool = True,
    metadata: Mapping[str, str] | None = None,
    max_seconds: float | None = None,
) -> Path:
    """Run ``stage`` to ``config.steps`` steps (resuming from ``out/checkpoint.pt`` if present),
    or until ``max_seconds`` of wall time have passed (then the step under way is the last:
    it is logged, checkpointed and exported like the last of ``config.steps``).

    Returns the exported weights ``out/<stage.name>.safetensors``; their metadata hold
    ``stage``, ``steps`` (the steps reached), ``train_config`` (``config`` as JSON) and
    ``metadata``. The log ``out/log.csv`` has one row per ``config.log_every`` steps: step,
    wall seconds of the run, then the losses averaged over the logged steps and processes.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    checkpoint = out / "checkpoint.pt"
    start = load_checkpoint(stage, checkpoint) if checkpoint.is_file() else 0
    log_path = out / "log.csv"
    bar = None
    if progress and distributed.is_main:
        from tqdm import tqdm

        bar = tqdm(total=config.steps, initial=start, desc=stage.name, unit="step", dynamic_ncols=True)
    sums: dict[str, float] = {}
    count = 0
    began = time.monotonic()
    done = start
    for step in range(start, config.steps):
        torch.manual_seed(config.seed * 1_000_003 + step * distributed.world_size + distributed.rank)
        losses = stage.train_step(sampler.batch(step).to(distributed.device), step)
        for key, value in losses.items():
            sums[key] = sums.get(key, 0.0) + float(value)
        count += 1
        done = step + 1
        last = done == config.steps or (max_seconds is not None and _out_of_time(began + max_seconds, distributed))
        if done % config.log_every == 0 or last:
            means = {k: distributed.mean(v / count) for k, v in sums.items()}
            if distributed.is_main:
                _append_log(log_path, done, time.monotonic() - began, means)
                if bar is not None:
                    bar.set_postfix({k: f"{v:.4g}" for k, v in means.items()}, refresh=False)
            sums, count = {}, 0
        if bar is not None:
            bar.update(1)
        if done % config.checkpoint_every == 0 or last:
            distributed.check_synchronised(stage.modules())
            if distributed.is_main:
                save_checkpoint(stage, done, checkpoint)
            distributed.barrier()
        if last:
            break
    if bar is not None:
        bar.close()
    exported = out / f"{stage.name}.safetensors"
    if distributed.is_main:
        meta = {"stage": stage.name, "steps": str(done), "train_config": train_config_json(config)}
        export_weights(stage.export(), exported, {**meta, **(metadata or {})})
    distributed.barrier()
    return exported


def _out_of_time(deadline: float, distributed: Distributed) -> bool:
    """Whether any process has passed ``deadline`` (``time.monotonic()``), the same answer on all."""
    return distributed.mean(float(time.monotonic() >= deadline)) > 0


def _append_log(path: Path, step: int, seconds: float, losses: Mapping[str, float]) -> None:
    new = not path.is_file()
    with path.open("a", newline="") as f:
        writer = csv.writer(f)
        if new:
            writer.writerow(["step", "seconds", *losses])
        writer.writerow([step, f"{seconds:.1f}", *(f"{v:.6g}" for v in losses.values())])
