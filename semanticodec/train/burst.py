"""A burst of the LDM stage: a machine lent for minutes (a GPU) trains from a travel pack
(:mod:`semanticodec.train.pack`) for a fixed wall time and writes files small enough to come back.

In order: decode the pack's audio; run the frozen parts (AudioMAE, semantic quantizer, VAE
encoder) once over each of its 10.24 s windows (:func:`~semanticodec.train.ldm.encode_windows`,
kept on the device); train :class:`~semanticodec.train.ldm.LDMStage` with the pack's training
configuration and the burst's batch size, learning rate and a fresh warm-up (the optimizer
starts anew), from the pack's LDM weights and codebook statistics when it has them, until
``minutes`` after the burst began (:func:`~semanticodec.train.loop.train` with ``max_seconds``);
then write to the output folder

- ``ldm.safetensors``: the weight average of ``acoustic.*`` and ``unet.*`` (float16) and
  ``schedule.*``, as the ldm stage exports (for ``train assemble`` or ``train ldm --init``);
- ``checkpoint.pt``: the run's compact checkpoint
  (:func:`~semanticodec.train.loop.compact_checkpoint`; ``train ldm -o RUN`` resumes from it
  in ``RUN/checkpoint.pt``);
- ``log.csv`` (the loop's log) and ``burst.json`` (what ran, times, steps, file sizes and
  SHA-256 hashes).

A file larger than ``max_file_bytes`` is written as ``NAME.000``, ``NAME.001``, … (join them
with ``cat NAME.0* > NAME``; ``burst.json`` gives the whole file's SHA-256). On CUDA, matrix
products use TF32, and ``autocast="bf16"`` runs the networks under bfloat16 autocast (the
codebook stays float32). A non-finite loss ends the training early; the outputs are then those
of the last checkpoint before it (``checkpoint_every`` steps).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from semanticodec.atomic import atomic_path, atomic_write, sha256_file
from semanticodec.constants import WINDOW_SAMPLES
from semanticodec.model import SemantiCodecModel
from semanticodec.train.data import Batch
from semanticodec.train.ldm import CachedWindows, LDMStage, WindowBatch, encode_windows
from semanticodec.train.loop import Distributed, compact_checkpoint, compact_tensor, load_checkpoint, train
from semanticodec.train.pack import VAE_ENCODER_PARTS, TravelPack, read_pack
from semanticodec.train.runconfig import train_config_json

MIB = 1 << 20
BURST_STEPS = 1_000_000_000
"""The burst's step count: it stops on time, and its cosine learning-rate decay is flat."""
OUTPUTS = ("ldm.safetensors", "checkpoint.pt", "log.csv", "burst.json")
AUTOCAST = {"bf16": torch.bfloat16, "none": None}


@dataclass(frozen=True)
class BurstConfig:
    """``minutes`` of wall time from the burst's start to the end of training (decoding and
    encoding the windows count; writing the outputs after it does not). ``batch_size``,
    ``learning_rate`` (None: the pack's), ``warmup_steps`` replace the pack's training
    configuration; the pack's first ``windows`` windows are encoded (None: all), ``encode_batch``
    at a time. ``autocast``: ``bf16`` or ``none`` (CUDA only).
    Output files above ``max_file_bytes`` are split."""

    minutes: float = 8.0
    batch_size: int = 64
    learning_rate: float | None = None
    warmup_steps: int = 200
    windows: int | None = None
    encode_batch: int = 32
    autocast: str = "bf16"
    log_every: int = 50
    checkpoint_every: int = 500
    max_file_bytes: int = 15 * MIB

    def __post_init__(self) -> None:
        counts = (self.batch_size, self.warmup_steps, self.encode_batch, self.log_every, self.checkpoint_every, self.max_file_bytes)
        if not self.minutes > 0 or min(counts) < 1 or (self.windows is not None and self.windows < 1):
            raise ValueError(f"minutes must be > 0 and the counts and sizes >= 1: {self}")
        if self.learning_rate is not None and not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0: {self}")
        if self.autocast not in AUTOCAST:
            raise ValueError(f"autocast must be one of {sorted(AUTOCAST)}, got {self.autocast!r}")


class NonFiniteLoss(ArithmeticError):
    """A training step gave a non-finite loss."""


class _BurstStep:
    """The LDM stage under autocast (float32 if the first step fails under it), checking every
    step's losses and printing a line every ``print_every`` steps."""

    def __init__(self, stage: LDMStage, dtype: torch.dtype | None, print_every: int) -> None:
        self.stage, self.dtype, self.print_every = stage, dtype, print_every
        self.name = stage.name
        self.device = stage.distributed.device
        self.began = time.monotonic()

    def modules(self) -> dict[str, nn.Module]:
        return self.stage.modules()

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return self.stage.optimizers()

    def export(self) -> dict[str, Tensor]:
        return self.stage.export()

    def train_step(self, batch: WindowBatch, step: int) -> dict[str, float]:
        try:
            with torch.autocast(self.device.type, dtype=self.dtype or torch.float32, enabled=self.dtype is not None):
                losses = self.stage.train_step(batch, step)
        except RuntimeError as err:  # an operation without a kernel for the autocast type: go on in float32
            if self.dtype is None or step > 0:
                raise
            print(f"burst: the first step failed under {self.dtype} autocast ({err}); training in float32", flush=True)
            self.dtype = None
            losses = self.stage.train_step(batch, step)
        bad = sorted(k for k, v in losses.items() if not math.isfinite(v))
        if bad:
            raise NonFiniteLoss(f"non-finite {', '.join(bad)} at step {step}")
        if (step + 1) % self.print_every == 0:
            seconds = time.monotonic() - self.began
            print(f"burst step {step + 1}: v_mse {losses['v_mse']:.4f}, {seconds:.0f} s", flush=True)
        return losses


def run_burst(
    pack_path: str | os.PathLike,
    out: str | os.PathLike,
    config: BurstConfig = BurstConfig(),
    device: str | torch.device | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> dict[str, object]:
    """Train the LDM stage from the pack ``pack_path`` and write the outputs to the folder
    ``out`` (created; outputs already there need ``overwrite``). Returns ``burst.json``'s content."""
    began = time.monotonic()
    deadline = began + 60.0 * config.minutes
    out = Path(out)
    _check_out(out, overwrite)
    pack = read_pack(pack_path)
    target = torch.device(device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu"))
    if target.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("burst: --device cuda, but torch sees no CUDA device")
    if target.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    codebook, mae = pack.frozen_parts()
    times = {}
    audio = pack.audio(workers=min(16, os.cpu_count() or 1))
    times["read"] = time.monotonic() - began
    count = min(config.windows or len(audio), len(audio))
    windows = _encode(pack, audio[:count], codebook, mae, config.encode_batch, target, progress)
    times["encode"] = time.monotonic() - began - times["read"]
    del audio

    train_config = replace(
        pack.train_config, steps=BURST_STEPS, batch_size=config.batch_size, warmup_steps=config.warmup_steps,
        learning_rate=config.learning_rate or pack.train_config.learning_rate, decay_steps=None, windows=count,
        log_every=config.log_every, checkpoint_every=config.checkpoint_every,
    )
    distributed = Distributed(device=target)
    start, stats = pack.start_weights()
    torch.manual_seed(train_config.seed)  # the initial weights when the pack has none
    stage = LDMStage(pack.model_config, train_config, distributed, start, codebook=codebook, windows=windows)
    if stats is not None:
        stage.stats.cluster_size.copy_(stats["cluster_size"])
        stage.stats.embed_sum.copy_(stats["embed_sum"])
    step = _BurstStep(stage, AUTOCAST[config.autocast] if target.type == "cuda" else None, config.checkpoint_every)
    meta = {
        "stage": "ldm", "model_config": pack.model_config.to_json(), "train_config": train_config_json(train_config),
        "data": f"travel pack {pack.manifest['audio_sha256'][:16]}",
    }
    with tempfile.TemporaryDirectory(prefix="semanticodec-burst-") as work:
        checkpoint = Path(work) / "checkpoint.pt"
        stopped = "time"
        trained = time.monotonic()
        try:
            train(step, CachedWindows(windows, train_config.batch_size, train_config.seed), train_config, work,
                  distributed, progress=False, metadata=meta, max_seconds=deadline - trained)
        except NonFiniteLoss as err:
            if not checkpoint.is_file():
                raise ValueError(f"burst: {err}, before the first checkpoint; nothing to write") from None
            stopped = str(err)
        times["train"] = time.monotonic() - trained
        steps = load_checkpoint(stage, checkpoint)
        compact = Path(work) / "compact.pt"
        compact_checkpoint(checkpoint, compact)
        out.mkdir(exist_ok=True)
        exported = Path(work) / "export.safetensors"
        _save_half(stage.export(), exported, meta | {"steps": str(steps)})
        files = _write_split(exported, out / "ldm.safetensors", config.max_file_bytes)
        files.update(_write_split(compact, out / "checkpoint.pt", config.max_file_bytes))
        if (Path(work) / "log.csv").is_file():  # absent when a non-finite loss came before the first row
            files.update(_write_split(Path(work) / "log.csv", out / "log.csv", config.max_file_bytes))
    summary = {
        "pack": {k: pack.manifest[k] for k in ("audio_seconds", "audio_sha256", "bytes")},
        "device": torch.cuda.get_device_name(target) if target.type == "cuda" else str(target),
        "torch": torch.__version__,
        "autocast": config.autocast if step.dtype is not None else "none",
        "burst_config": asdict(config),
        "train_config": asdict(train_config),
        "windows": count,
        "steps": steps,
        "stopped": stopped,
        "steps_per_second": round(steps / max(times["train"], 1e-9), 3),
        "seconds": {k: round(v, 1) for k, v in times.items()} | {"total": round(time.monotonic() - began, 1)},
        "peak_gpu_gib": round(torch.cuda.max_memory_allocated(target) / 2**30, 2) if target.type == "cuda" else None,
        "files": files,
    }
    with atomic_write(out / "burst.json", overwrite=True) as file:
        file.write(json.dumps(summary, indent=1).encode())
    return summary


def _check_out(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise ValueError(f"output {out} is not a folder")
    if not out.parent.is_dir():
        raise FileNotFoundError(f"output directory {out.parent} does not exist")
    if out.is_dir() and not overwrite:
        taken = sorted(p.name for p in out.iterdir() if p.name.split(".0")[0] in OUTPUTS)
        if taken:
            raise FileExistsError(f"output {out / taken[0]} already exists")


class _InOrder:
    """Windows of audio in order, ``batch_size`` at a time, as :func:`encode_windows` draws them."""

    crop_samples = WINDOW_SAMPLES

    def __init__(self, audio: list[np.ndarray], batch_size: int) -> None:
        self.audio, self.batch_size = audio, batch_size

    def batch(self, step: int) -> Batch:
        pieces = self.audio[step * self.batch_size : (step + 1) * self.batch_size]
        out = np.zeros((len(pieces), WINDOW_SAMPLES), dtype=np.float32)
        for row, piece in enumerate(pieces):
            out[row, : len(piece)] = piece[:WINDOW_SAMPLES]
        length = np.array([min(len(p), WINDOW_SAMPLES) for p in pieces], dtype=np.int64)
        return Batch(torch.from_numpy(out), torch.from_numpy(length))


@torch.no_grad()
def _encode(
    pack: TravelPack, audio: list[np.ndarray], codebook: Tensor, mae: dict[str, Tensor], batch: int, device: torch.device, progress: bool
) -> WindowBatch:
    """The frozen parts' outputs for each of the windows ``audio`` of the pack, on ``device``."""
    model = SemantiCodecModel(pack.model_config, codebook, with_vae_encoder=True)
    model.load_weights(mae, ("audiomae.",))
    model.load_weights({k: v for k, v in pack.weights.items() if k.startswith(VAE_ENCODER_PARTS)}, VAE_ENCODER_PARTS)
    model.to(device).eval()
    return encode_windows(model, _InOrder(audio, batch), len(audio), progress=progress).to(device)


def _save_half(state: dict[str, Tensor], path: Path, metadata: dict[str, str]) -> None:
    """Exported weights as safetensors, large tensors in float16 (:func:`compact_tensor`)."""
    from safetensors.torch import save_file

    save_file({k: compact_tensor(v.detach().float().cpu()).contiguous() for k, v in state.items()}, str(path), metadata=metadata)


def _write_split(source: Path, target: Path, limit: int) -> dict[str, dict]:
    """Copy ``source`` to ``target``, or to ``target.000``, ``target.001``, … of at most ``limit``
    bytes each when it is larger (removing other parts of an earlier ``target``); returns
    ``{target name: {bytes, sha256, parts}}``."""
    size = source.stat().st_size
    names = [target.name] if size <= limit else [f"{target.name}.{i:03d}" for i in range(math.ceil(size / limit))]
    with open(source, "rb") as file:
        for name in names:
            with atomic_path(target.with_name(name), overwrite=True) as temp, open(temp, "wb") as part:
                shutil.copyfileobj(_Limited(file, limit), part)
    for stale in [target, *target.parent.glob(f"{target.name}.[0-9][0-9][0-9]")]:
        if stale.name not in names:
            stale.unlink(missing_ok=True)
    return {target.name: {"bytes": size, "sha256": sha256_file(source), "parts": names}}


class _Limited:
    """At most ``limit`` bytes of ``file`` from where it stands, as a readable file."""

    def __init__(self, file, limit: int) -> None:
        self.file, self.left = file, limit

    def read(self, size: int = -1) -> bytes:
        size = self.left if size < 0 else min(size, self.left)
        data = self.file.read(size)
        self.left -= len(data)
        return data
