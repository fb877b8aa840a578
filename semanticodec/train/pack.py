"""Travel packs: what a GPU burst of the LDM stage (:mod:`semanticodec.train.burst`) needs, in
one folder small enough to travel to a machine that is lent for minutes.

Such a machine gets a copy of the repository and a few carried folders, tens of MiB in all:
neither the corpus nor the LDM stage's cached windows (260 kB each) can go. A pack holds

- ``audio/NNNNNN.opus``: 10.24 s windows of the training corpus (shorter clips whole) drawn as
  the LDM stage draws its windows (:class:`~semanticodec.train.data.CropSampler`, the same
  domain weights), 16 kHz mono Ogg Opus at ``bitrate_kbps``. At 24 kbit/s (3 kB/s, against 32 kB/s for 16-bit PCM) the log-mel64
  of the decoded audio lies within 0.17-0.27 nat (mean absolute) of the original's on speech,
  music and sound, about what the small VAE's own round trip loses (0.14-0.22);
- ``weights.safetensors`` (floating tensors of >= 1024 elements in float16): the VAE encoder
  (``vae.encoder.*``, ``vae.quant_conv.*``); optionally LDM weights to continue from
  (``acoustic.*``, ``unet.*``, ``schedule.*``) with the acoustic codebook's EMA statistics
  (``codebook_ema.*``); AudioMAE (``audiomae.*``) and the semantic codebook
  (``semantic.codebook``) unless they come from the bundled model, which travels with the
  package (the pack then records its SHA-256, and the burst checks it);
- ``manifest.json``: stage, model and training configuration, preset, domain weights, the
  sources, sizes and SHA-256 hashes.

A pack fills up to ``max_bytes``: the weights first, then audio crops while they fit. It is
written to a temporary folder beside the output and renamed into place when complete.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import secrets
import shutil
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from torch import Tensor

from semanticodec.atomic import sha256_file
from semanticodec.audio import AudioError, load_audio
from semanticodec.config import ModelConfig
from semanticodec.constants import SAMPLE_RATE
from semanticodec.model import SemantiCodecModel
from semanticodec.train.data import Clip, CropSampler
from semanticodec.train.ldm import LDMTrainConfig
from semanticodec.train.loop import compact_tensor
from semanticodec.weights import CODEBOOK_KEY, DEFAULT_MODEL, open_state_dict, select

PACK_FORMAT = "semanticodec-travel-pack"
PACK_VERSION = 1
MANIFEST = "manifest.json"
WEIGHTS = "weights.safetensors"
CODEBOOK_EMA = "codebook_ema."
"""Key prefix of the acoustic codebook's EMA statistics (``cluster_size``, ``embed_sum``)."""
LDM_PARTS = ("acoustic.", "unet.", "schedule.")
VAE_ENCODER_PARTS = ("vae.encoder.", "vae.quant_conv.")
MIB = 1 << 20
_MANIFEST_RESERVE = 16 * 1024
"""Bytes kept free for the manifest besides its per-clip entries."""


@dataclass(frozen=True)
class PackConfig:
    """``max_bytes``: the whole pack; audio at ``bitrate_kbps`` kbit/s (Opus: 6 to 256);
    ``seed`` of the window draw."""

    max_bytes: int = 20 * MIB
    bitrate_kbps: float = 24.0
    seed: int = 1

    def __post_init__(self) -> None:
        if self.max_bytes < 1 or not 6 <= self.bitrate_kbps <= 256:
            raise ValueError(f"max_bytes must be >= 1 and bitrate_kbps within 6..256: {self}")


def encode_opus(audio: np.ndarray, bitrate_kbps: float) -> bytes:
    """16 kHz mono float32 ``audio`` ``[N]`` as an Ogg Opus file of about ``bitrate_kbps``.

    libsndfile sets the Opus bitrate from its compression level, linearly from 256 kbit/s
    (level 0) to 6 kbit/s (level 1) per channel.
    """
    level = min(1.0, max(0.0, 1.0 - (bitrate_kbps - 6.0) / 250.0))
    buffer = io.BytesIO()
    sf.write(buffer, audio, SAMPLE_RATE, format="OGG", subtype="OPUS", compression_level=level)
    return buffer.getvalue()


def is_bundled(path: str | os.PathLike) -> bool:
    """Whether ``path`` is the model file bundled with the package."""
    try:
        return os.path.samefile(path, DEFAULT_MODEL)
    except OSError:
        return False


def ldm_start_weights(path: str | os.PathLike) -> dict[str, Tensor]:
    """LDM weights to continue from: the trained (not averaged) ``acoustic.*``/``unet.*``/
    ``schedule.*`` weights and the codebook EMA statistics (``codebook_ema.*``) of a training
    checkpoint of the ldm stage (``checkpoint.pt``, full or compact), or the exported weights
    of a ``.safetensors`` file (the weight average; no statistics)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"initial LDM weights not found: {path}")
    if path.suffix == ".safetensors":
        state = {k: v for k, v in open_state_dict(path).items() if k.startswith(LDM_PARTS)}
        if not state:
            raise ValueError(f"{path}: holds no LDM weights (acoustic.*, unet.*, schedule.*)")
        return state
    try:
        modules = torch.load(path, map_location="cpu", weights_only=True)["modules"]
        state = {k: v for k, v in modules["trained"].items() if k.startswith(("acoustic.", "unet."))}
        state.update({f"schedule.{k}": v for k, v in modules["schedule"].items()})
        state.update({f"{CODEBOOK_EMA}{k}": modules["codebook"][k] for k in ("cluster_size", "embed_sum")})
    except (RuntimeError, KeyError, TypeError, EOFError, pickle.UnpicklingError) as err:
        reason = (str(err).splitlines() or [""])[0][:120]
        raise ValueError(f"{path}: not a checkpoint of the ldm stage ({type(err).__name__}: {reason})") from None
    return state


def pack_weights(
    model_config: ModelConfig,
    vae: Mapping[str, Tensor],
    mae: Mapping[str, Tensor],
    codebook: Tensor,
    start: Mapping[str, Tensor] | None,
    bundled: tuple[str, ...] = (),
) -> dict[str, Tensor]:
    """The pack's weights, checked against a model of ``model_config``: the VAE encoder of
    ``vae`` (``vae.*``), AudioMAE ``mae`` (``audiomae.*``) and the semantic ``codebook``
    ``[V, D]`` unless ``bundled`` names them (``"audiomae"``, ``"codebook"``), and the LDM
    ``start`` weights (or None), as :func:`~semanticodec.train.loop.compact_tensor` stores them."""
    model = SemantiCodecModel(model_config, codebook, with_vae_encoder=True)
    state = {k: v for k, v in vae.items() if k.startswith(VAE_ENCODER_PARTS)}
    model.load_weights(state, VAE_ENCODER_PARTS)
    model.load_weights(mae, ("audiomae.",))
    if "audiomae" not in bundled:
        state.update(mae)
    if "codebook" not in bundled:
        state[CODEBOOK_KEY] = codebook
    if start is not None:
        model.load_weights({k: v for k, v in start.items() if not k.startswith(CODEBOOK_EMA)}, LDM_PARTS)
        state.update(start)
    return {k: compact_tensor(v.detach().cpu()).contiguous() for k, v in state.items()}


def write_pack(
    out: str | os.PathLike,
    sampler: CropSampler,
    weights: Mapping[str, Tensor],
    model_config: ModelConfig,
    train_config: LDMTrainConfig,
    info: Mapping[str, object],
    config: PackConfig = PackConfig(),
    overwrite: bool = False,
    progress: bool = True,
) -> dict[str, object]:
    """Write a pack of ``weights`` (from :func:`pack_weights`) and the crops that ``sampler``
    draws (10.24 s windows), step after step, to the folder ``out``; returns a summary (bytes,
    seconds of audio, windows). ``info`` (preset name, domain weights, sources, hashes of the bundled parts) goes
    into the manifest. ``overwrite`` replaces an existing pack (never another folder)."""
    from safetensors.torch import save_file

    out = Path(out)
    check_pack_target(out, overwrite)
    temp = out.with_name(f".{out.name}.{secrets.token_hex(6)}.tmp")
    (temp / "audio").mkdir(parents=True)
    try:
        save_file(dict(weights), str(temp / WEIGHTS), metadata={"format": PACK_FORMAT})
        used = (temp / WEIGHTS).stat().st_size + _MANIFEST_RESERVE
        if used > config.max_bytes:
            raise ValueError(f"the weights alone take {used / MIB:.1f} MiB of the pack's {config.max_bytes / MIB:.1f} MiB")
        clips = _write_crops(temp / "audio", sampler, config, config.max_bytes - used, progress)
        if not clips:
            raise ValueError(f"no audio fits in a pack of {config.max_bytes / MIB:.1f} MiB beside the weights")
        manifest = {
            "format": PACK_FORMAT,
            "version": PACK_VERSION,
            "stage": "ldm",
            **info,
            "model_config": json.loads(model_config.to_json()),
            "train_config": asdict(train_config),
            "pack_config": asdict(config),
            "weights": {"file": WEIGHTS, "sha256": sha256_file(temp / WEIGHTS), "keys": len(weights)},
            "audio_seconds": round(sum(c["samples"] for c in clips) / SAMPLE_RATE, 2),
            "audio_sha256": _audio_digest(temp, clips),
            "clips": clips,
        }
        while True:
            text = _with_total(manifest, sum(f.stat().st_size for f in temp.rglob("*") if f.is_file()))
            if manifest["bytes"] <= config.max_bytes or len(manifest["clips"]) == 1:
                break
            (temp / manifest["clips"].pop()["file"]).unlink()
            manifest["audio_sha256"] = _audio_digest(temp, manifest["clips"])
            manifest["audio_seconds"] = round(sum(c["samples"] for c in manifest["clips"]) / SAMPLE_RATE, 2)
        (temp / MANIFEST).write_text(text)
        _replace(temp, out)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    return {"output": str(out), **{k: manifest[k] for k in ("bytes", "audio_seconds")}, "clips": len(manifest["clips"])}


def _with_total(manifest: dict, files: int) -> str:
    """The manifest's text once its ``bytes`` (``files`` plus the text's own size) is set."""
    manifest["bytes"] = files
    while True:
        text = json.dumps(manifest, indent=1)
        if manifest["bytes"] == files + len(text.encode()):
            return text
        manifest["bytes"] = files + len(text.encode())


def check_pack_target(out: Path, overwrite: bool) -> None:
    """Refuse ``out`` as a pack's folder before any work: its parent must exist, and an
    existing ``out`` must be a pack and ``overwrite`` given."""
    if not out.parent.is_dir():
        raise FileNotFoundError(f"output directory {out.parent} does not exist")
    if not (out.exists() or out.is_symlink()):
        return
    if not overwrite:
        raise FileExistsError(f"output {out} already exists")
    if not (out.is_dir() and _is_pack(out / MANIFEST)):
        raise ValueError(f"{out} exists and is not a travel pack; refusing to replace it")


def _is_pack(manifest: Path) -> bool:
    try:
        return json.loads(manifest.read_text()).get("format") == PACK_FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def _replace(temp: Path, out: Path) -> None:
    """Move the finished pack ``temp`` to ``out``, removing an older pack there."""
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.{secrets.token_hex(6)}.old")
        os.replace(out, old)
    os.replace(temp, out)
    if old is not None:
        shutil.rmtree(old)


def _write_crops(folder: Path, sampler: CropSampler, config: PackConfig, budget: int, progress: bool) -> list[dict]:
    """Encode the sampler's crops, step after step, into ``folder`` while they (and their
    manifest entries) fit in ``budget`` bytes; returns the manifest entries."""
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=budget, desc="pack audio", unit="B", unit_scale=True, dynamic_ncols=True)
    clips: list[dict] = []
    for index, start in _draws(sampler):
        piece = sampler.audio[index][start : start + sampler.crop_samples]
        data = encode_opus(piece, config.bitrate_kbps)
        entry = {"file": f"audio/{len(clips):06d}.opus", "domain": sampler.clips[index].domain, "samples": len(piece)}
        entry["bytes"] = len(data)
        cost = len(data) + len(json.dumps(entry)) + 8
        if cost > budget:
            break
        (folder / Path(entry["file"]).name).write_bytes(data)
        clips.append(entry)
        budget -= cost
        if bar is not None:
            bar.update(cost)
    if bar is not None:
        bar.close()
    return clips


def _draws(sampler: CropSampler) -> Iterator[tuple[int, int]]:
    step = 0
    while True:
        yield from sampler.draw(step)
        step += 1


def _audio_digest(root: Path, clips: list[dict]) -> str:
    digest = hashlib.sha256()
    for clip in clips:
        digest.update((root / clip["file"]).read_bytes())
    return digest.hexdigest()


@dataclass(frozen=True)
class TravelPack:
    """A pack read back: its folder, ``manifest``, configurations, ``clips`` (the audio files
    of the windows, with their domains) and ``weights``."""

    root: Path
    manifest: dict
    model_config: ModelConfig
    train_config: LDMTrainConfig
    clips: list[Clip]
    weights: dict[str, Tensor]

    def audio(self, workers: int = 8) -> list[np.ndarray]:
        """The windows' audio decoded to 16 kHz float32 ``[N]`` each (``workers`` threads)."""
        lengths = [int(c["samples"]) for c in self.manifest["clips"]]

        def decode(index: int) -> np.ndarray:
            try:
                audio = load_audio(self.clips[index].path)
            except AudioError as err:
                raise ValueError(f"travel pack: {err}") from None
            return np.pad(audio[: lengths[index]], (0, max(0, lengths[index] - len(audio))))

        with ThreadPoolExecutor(max(1, workers)) as pool:
            return list(pool.map(decode, range(len(self.clips))))

    def frozen_parts(self) -> tuple[Tensor, dict[str, Tensor]]:
        """The semantic codebook ``[V, D]`` and the AudioMAE weights (``audiomae.*``): the
        pack's, or the bundled model's after checking its SHA-256 against the manifest's."""
        sources = self.manifest["frozen"]
        bundled = None
        if "bundled" in sources.values():
            found = sha256_file(DEFAULT_MODEL) if DEFAULT_MODEL.is_file() else "missing"
            if found != self.manifest["bundled_sha256"]:
                raise ValueError(
                    f"the bundled model {DEFAULT_MODEL} is not the one this pack was made with "
                    f"(SHA-256 {found[:12]}, pack {self.manifest['bundled_sha256'][:12]}); make the pack again"
                )
            bundled = open_state_dict(DEFAULT_MODEL)
        codebook = (bundled if sources["codebook"] == "bundled" else self.weights)[CODEBOOK_KEY].float()
        mae = select(bundled if sources["audiomae"] == "bundled" else self.weights, ("audiomae.",))
        return codebook, dict(mae)

    def start_weights(self) -> tuple[dict[str, Tensor] | None, dict[str, Tensor] | None]:
        """The LDM weights to continue from (``acoustic.*``/``unet.*``/``schedule.*``) and the
        codebook EMA statistics (without their prefix), each None when the pack has none."""
        ldm = {k: v for k, v in self.weights.items() if k.startswith(LDM_PARTS)}
        stats = {k[len(CODEBOOK_EMA) :]: v for k, v in self.weights.items() if k.startswith(CODEBOOK_EMA)}
        return ldm or None, stats or None


def read_pack(path: str | os.PathLike) -> TravelPack:
    """Read and check a pack written by :func:`write_pack` (format, version, hashes)."""
    from safetensors.torch import load_file

    root = Path(path)
    manifest_path = root / MANIFEST
    if not manifest_path.is_file():
        raise ValueError(f"{root}: not a travel pack (no {MANIFEST})")
    try:
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("format") != PACK_FORMAT or manifest.get("version") != PACK_VERSION:
            raise ValueError(f"format {manifest.get('format')!r} version {manifest.get('version')!r}")
        if sha256_file(root / WEIGHTS) != manifest["weights"]["sha256"]:
            raise ValueError(f"{WEIGHTS} does not match its SHA-256")
        if _audio_digest(root, manifest["clips"]) != manifest["audio_sha256"]:
            raise ValueError("the audio files do not match their SHA-256")
        model_config = ModelConfig.from_json(json.dumps(manifest["model_config"]))
        train_config = LDMTrainConfig(**manifest["train_config"])
        clips = [Clip(root / c["file"], c["domain"]) for c in manifest["clips"]]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{root}: not a usable travel pack ({err})") from None
    return TravelPack(root, manifest, model_config, train_config, clips, load_file(str(root / WEIGHTS)))
