"""Codecs under test, behind one interface: 16 kHz mono float32 in, bytes, 16 kHz mono out.

- :class:`SemantiCodecSystem`: this package, one system per token rate x vocabulary; bytes
  are the ``.scdc`` file. Official weights are fetched on first use (or ``checkpoint``).
- :class:`Codec2`: Debian ``codec2`` (``c2enc``/``c2dec``) at 8 kHz; bytes are the ``.c2``
  file (with its header).
- :class:`Opus`: Debian ``opus-tools`` (``opusenc``/``opusdec``); bytes are the Ogg Opus file.
- :class:`Encodec`, :class:`DAC`: their PyPI packages, imported only when used, with the weights
  their own loaders fetch on first use (or local files: ``$ENCODEC_WEIGHTS``, ``$DAC_WEIGHTS``);
  offline and not yet fetched they are "not available offline".

A system that cannot run says why in :meth:`System.unavailable`; :data:`PAPER_TABLE` holds
the figures of the paper's Table I, shown (marked as quoted) when a baseline cannot run.
"""

from __future__ import annotations

import io
import os
import resource
import shutil
import subprocess
import tempfile
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from semanticodec.audio import resample
from semanticodec.bitstream import Header
from semanticodec.constants import SAMPLE_RATE, TOKEN_RATES


class System(ABC):
    """One codec at one setting. Subclasses set ``name``, ``family``, ``nominal_kbps``,
    ``tokens_per_s`` (None for non-token codecs) and implement ``encode``/``decode``."""

    name: str
    family: str
    nominal_kbps: float
    tokens_per_s: float | None = None
    weights: str = ""

    def unavailable(self) -> str | None:
        """None when the system can run here, else the reason it cannot."""
        return None

    @abstractmethod
    def encode(self, audio: np.ndarray) -> bytes:
        """Compressed bytes (container included) of 16 kHz mono float32 audio ``[N]``."""

    @abstractmethod
    def decode(self, data: bytes, sample_count: int) -> np.ndarray:
        """16 kHz mono float32 audio ``[sample_count]`` of :meth:`encode`'s bytes."""

    def child_peak_rss_mb(self) -> float | None:
        """Peak resident memory in MiB of the last external process run (None: in-process)."""
        return None


def _check_audio(audio: np.ndarray) -> np.ndarray:
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim != 1 or audio.size == 0:
        raise ValueError(f"expected non-empty mono [N] audio at 16 kHz, got shape {audio.shape}")
    if not np.isfinite(audio).all():
        raise ValueError("audio contains NaN or infinite samples")
    return audio


def _fit(audio: np.ndarray, sample_count: int) -> np.ndarray:
    """Trim or zero-pad ``audio`` to ``sample_count``."""
    out = np.zeros(sample_count, np.float32)
    n = min(sample_count, audio.size)
    out[:n] = audio[:n]
    return out


class _ExternalTool(System):
    """A codec driven through command-line tools; each call's peak memory is recorded."""

    tools: tuple[str, ...] = ()
    package: str = ""

    def __init__(self) -> None:
        self._peak_mb: float | None = None

    def unavailable(self) -> str | None:
        missing = [t for t in self.tools if shutil.which(t) is None]
        if missing:
            return f"{', '.join(missing)} not found (apt-get install -y {self.package})"
        return None

    def _run(self, args: list[str]) -> None:
        """Run a tool; its peak RSS comes from GNU time (``/usr/bin/time``) when installed
        (a child's own rusage would include the benchmark's memory inherited at fork)."""
        with tempfile.NamedTemporaryFile(suffix=".rss") as rss:
            timer = ["/usr/bin/time", "-f", "%M", "-o", rss.name] if Path("/usr/bin/time").is_file() else []
            proc = subprocess.run(timer + args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
            text = Path(rss.name).read_text().strip().splitlines()
        if proc.returncode != 0:
            err = proc.stderr.decode(errors="replace").strip()[-500:]
            raise RuntimeError(f"{' '.join(args)} failed with status {proc.returncode}: {err}")
        self._peak_mb = int(text[-1]) / 1024 if text and text[-1].isdigit() else None

    def child_peak_rss_mb(self) -> float | None:
        return self._peak_mb


CODEC2_MODES = {"3200": 3.2, "1600": 1.6, "1200": 1.2, "700C": 0.7}


class Codec2(_ExternalTool):
    """Codec 2 (8 kHz speech codec) at one mode; audio is resampled 16 → 8 → 16 kHz."""

    family = "Codec2"
    tools = ("c2enc", "c2dec")
    package = "codec2"

    def __init__(self, mode: str) -> None:
        super().__init__()
        if mode not in CODEC2_MODES:
            raise ValueError(f"codec2 mode must be one of {sorted(CODEC2_MODES)}, got {mode!r}")
        self.mode = mode
        self.name = f"Codec2 {mode}"
        self.nominal_kbps = CODEC2_MODES[mode]

    def encode(self, audio: np.ndarray) -> bytes:
        pcm = np.clip(resample(_check_audio(audio), SAMPLE_RATE, 8000), -1, 1)
        with tempfile.TemporaryDirectory() as tmp:
            raw, coded = Path(tmp, "in.raw"), Path(tmp, "out.c2")
            raw.write_bytes((pcm * 32767).astype("<i2").tobytes())
            self._run(["c2enc", self.mode, str(raw), str(coded)])
            return coded.read_bytes()

    def decode(self, data: bytes, sample_count: int) -> np.ndarray:
        with tempfile.TemporaryDirectory() as tmp:
            coded, raw = Path(tmp, "in.c2"), Path(tmp, "out.raw")
            coded.write_bytes(data)
            self._run(["c2dec", self.mode, str(coded), str(raw)])
            pcm = np.frombuffer(raw.read_bytes(), dtype="<i2").astype(np.float32) / 32768
        return _fit(resample(pcm, 8000, SAMPLE_RATE), sample_count)


class Opus(_ExternalTool):
    """Opus (libopus through opus-tools) at a target bitrate, Ogg container, decoded at 16 kHz."""

    family = "Opus"
    tools = ("opusenc", "opusdec")
    package = "opus-tools"

    def __init__(self, kbps: int) -> None:
        super().__init__()
        if not 6 <= kbps <= 256:
            raise ValueError(f"opus bitrate must be 6..256 kbps, got {kbps}")
        self.nominal_kbps = float(kbps)
        self.name = f"Opus {kbps}k"

    def encode(self, audio: np.ndarray) -> bytes:
        audio = _check_audio(audio)
        with tempfile.TemporaryDirectory() as tmp:
            wav, coded = Path(tmp, "in.wav"), Path(tmp, "out.opus")
            sf.write(wav, np.clip(audio, -1, 1), SAMPLE_RATE, subtype="PCM_16")
            self._run(["opusenc", "--quiet", "--bitrate", str(self.nominal_kbps), str(wav), str(coded)])
            return coded.read_bytes()

    def decode(self, data: bytes, sample_count: int) -> np.ndarray:
        with tempfile.TemporaryDirectory() as tmp:
            coded, wav = Path(tmp, "in.opus"), Path(tmp, "out.wav")
            coded.write_bytes(data)
            self._run(["opusdec", "--quiet", "--rate", str(SAMPLE_RATE), str(coded), str(wav)])
            audio, rate = sf.read(wav, dtype="float32")
        if rate != SAMPLE_RATE:
            raise RuntimeError(f"opusdec wrote {rate} Hz, expected {SAMPLE_RATE}")
        return _fit(audio if audio.ndim == 1 else audio.mean(axis=1), sample_count)


SEMANTICODEC_VOCABS = (32768, 16384, 8192, 4096)


class SemantiCodecSystem(System):
    """This package at one token rate and semantic vocabulary; bytes are the ``.scdc`` file.

    ``checkpoint``: an official checkpoint folder or a converted ``.safetensors`` file
    (default ``$SEMANTICODEC_CHECKPOINT``, else the official weights: cached, else fetched). The
    model is loaded on first use; without weights :meth:`unavailable` gives the reason.
    """

    family = "SemantiCodec"

    def __init__(
        self,
        token_rate: int,
        vocab: int,
        checkpoint: str | os.PathLike | None = None,
        sampler: str | None = None,
        steps: int | None = None,
        seed: int = 0,
    ) -> None:
        if token_rate not in TOKEN_RATES:
            raise ValueError(f"token_rate must be one of {TOKEN_RATES}, got {token_rate}")
        if vocab not in SEMANTICODEC_VOCABS:
            raise ValueError(f"vocab must be one of {SEMANTICODEC_VOCABS}, got {vocab}")
        self.token_rate, self.vocab = token_rate, vocab
        self.checkpoint = checkpoint
        self.sampler, self.steps, self.seed = sampler, steps, seed
        self.name = f"SemantiCodec {token_rate} tok/s V={vocab}"
        self.tokens_per_s = float(token_rate)
        self.nominal_kbps = Header(token_rate, vocab).nominal_bitrate / 1000
        self.weights = str(checkpoint or os.environ.get("SEMANTICODEC_CHECKPOINT") or "official (HF cache)")
        self._codec = None
        self._error: str | None = None

    @classmethod
    def bundled(cls, sampler: str | None = None, steps: int | None = None, seed: int = 0) -> SemantiCodecSystem:
        """The default model shipped in the package (``semanticodec/data/default_model.safetensors``)."""
        from semanticodec.weights import DEFAULT_MODEL, default_model_config

        config = default_model_config()
        if config is None:
            raise ValueError(f"the package has no bundled default model ({DEFAULT_MODEL} is missing)")
        system = cls(config.token_rate, config.semantic_vocab_size, DEFAULT_MODEL, sampler, steps, seed)
        system.name = f"SemantiCodec small (bundled) {config.token_rate} tok/s V={config.semantic_vocab_size}"
        system.nominal_kbps = config.bitrate / 1000
        system.weights = f"bundled default model {config.name}"
        return system

    def _load(self):
        if self._codec is None and self._error is None:
            from semanticodec import SemantiCodec
            from semanticodec.hub import download_command
            from semanticodec.official import CheckpointError

            try:
                self._codec = SemantiCodec.from_pretrained(
                    self.checkpoint, token_rate=self.token_rate, semantic_vocab_size=self.vocab, sampler=self.sampler,
                    steps=self.steps, seed=self.seed,
                )
            except (CheckpointError, FileNotFoundError) as err:
                hint = f"pass --checkpoint or run `{download_command(self.token_rate, self.vocab)}`" if self.checkpoint is None else str(err)
                self._error = f"no weights available ({hint})"
        return self._codec

    def unavailable(self) -> str | None:
        self._load()
        return self._error

    def encode(self, audio: np.ndarray) -> bytes:
        from semanticodec import bitstream

        codec = self._load()
        if codec is None:
            raise RuntimeError(f"{self.name}: {self._error}")
        encoded = codec.encode(_check_audio(audio), sample_rate=SAMPLE_RATE)
        return bitstream.encode(encoded.tokens, encoded.header())

    def decode(self, data: bytes, sample_count: int) -> np.ndarray:
        from semanticodec import bitstream

        codec = self._load()
        if codec is None:
            raise RuntimeError(f"{self.name}: {self._error}")
        _, tokens = bitstream.decode(data)
        return _fit(np.asarray(codec.decode(tokens), dtype=np.float32), sample_count)


def _weights_path(variable: str) -> Path | None:
    value = os.environ.get(variable)
    return Path(value) if value else None


class Encodec(System):
    """Encodec 24 kHz (``pip install encodec``) at 1.5/3/6 kbps with the weights its own loader
    fetches (``EncodecModel.encodec_model_24khz(pretrained=True)``, torch hub cache), or those of
    ``$ENCODEC_WEIGHTS`` (the ``encodec_24khz-d7cc33bc.th`` state dict); audio is resampled 16 → 24 → 16 kHz.

    Bytes: an 8-byte header (codebooks, frames) and the codes packed at 10 bits each, the
    payload of Encodec's own format without its entropy-coding LM.
    """

    family = "Encodec"

    def __init__(self, kbps: float, weights: str | os.PathLike | None = None) -> None:
        if kbps not in (1.5, 3.0, 6.0, 12.0, 24.0):
            raise ValueError(f"encodec bandwidth must be 1.5, 3, 6, 12 or 24 kbps, got {kbps}")
        self.nominal_kbps = float(kbps)
        self.tokens_per_s = 100.0 * kbps
        self.name = f"Encodec {kbps:g} kbps"
        self.path = Path(weights) if weights else _weights_path("ENCODEC_WEIGHTS")
        self._model = None

    def unavailable(self) -> str | None:
        return _baseline_unavailable(self, "encodec", "ENCODEC_WEIGHTS")

    def _load(self):
        if self._model is None:
            import torch
            from encodec import EncodecModel

            if self.path is None:
                model = EncodecModel.encodec_model_24khz(pretrained=True)
                self.weights = "encodec_24khz (fetched by encodec)"
            else:
                model = EncodecModel.encodec_model_24khz(pretrained=False)
                model.load_state_dict(torch.load(self.path, map_location="cpu", weights_only=True))
                self.weights = str(self.path)
            self._model = model.eval()
        self._model.set_target_bandwidth(self.nominal_kbps)
        return self._model

    def encode(self, audio: np.ndarray) -> bytes:
        import torch

        from semanticodec.bitstream import pack_bits

        model = self._load()
        wav = torch.from_numpy(resample(_check_audio(audio), SAMPLE_RATE, 24000))[None, None]
        with torch.inference_mode():
            (codes, _), = model.encode(wav)
        codes = codes[0].numpy()
        header = np.array(codes.shape, dtype="<u4").tobytes()
        return header + pack_bits(codes.reshape(-1), 10)

    def decode(self, data: bytes, sample_count: int) -> np.ndarray:
        import torch

        from semanticodec.bitstream import unpack_bits

        model = self._load()
        num_codebooks, frames = (int(v) for v in np.frombuffer(data[:8], dtype="<u4"))
        codes = unpack_bits(data[8:], 10, num_codebooks * frames).reshape(1, num_codebooks, frames)
        with torch.inference_mode():
            wav = model.decode([(torch.from_numpy(codes), None)])[0, 0].numpy()
        return _fit(resample(wav, 24000, SAMPLE_RATE), sample_count)


class DAC(System):
    """Descript Audio Codec 16 kHz (``pip install descript-audio-codec``, in its own venv) with the
    weights its own loader fetches (``dac.utils.download(model_type="16khz")``) or those of
    ``$DAC_WEIGHTS``; bytes are the ``.dac`` file of ``DAC.compress``."""

    family = "DAC"

    def __init__(self, n_codebooks: int = 12, weights: str | os.PathLike | None = None) -> None:
        if not 1 <= n_codebooks <= 12:
            raise ValueError(f"DAC 16 kHz has 1..12 codebooks, got {n_codebooks}")
        self.n_codebooks = n_codebooks
        self.nominal_kbps = n_codebooks * 50 * 10 / 1000
        self.tokens_per_s = n_codebooks * 50.0
        self.name = f"DAC 16k {self.nominal_kbps:g} kbps"
        self.path = Path(weights) if weights else _weights_path("DAC_WEIGHTS")
        self._model = None

    def unavailable(self) -> str | None:
        return _baseline_unavailable(self, "dac", "DAC_WEIGHTS")

    def _load(self):
        if self._model is None:
            import dac
            import torch

            path = self.path if self.path is not None else Path(dac.utils.download(model_type="16khz"))
            # The released .pth holds {"state_dict", "metadata": {"kwargs"}}: read without unpickling code.
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
            model = dac.DAC(**checkpoint["metadata"]["kwargs"])
            model.load_state_dict(checkpoint["state_dict"])
            self._model = model.eval()
            self.weights = str(path)
        return self._model

    def encode(self, audio: np.ndarray) -> bytes:
        from audiotools import AudioSignal

        model = self._load()
        compressed = model.compress(AudioSignal(_check_audio(audio)[None, None], SAMPLE_RATE), n_quantizers=self.n_codebooks)
        fields = {name: getattr(compressed, name) for name in DAC_FILE_FIELDS}
        return pack_dac_file(compressed.codes.numpy(), compressed.input_db.numpy(), fields)

    def decode(self, data: bytes, sample_count: int) -> np.ndarray:
        import torch
        from dac.model.base import SUPPORTED_VERSIONS, DACFile

        model = self._load()
        codes, input_db, fields = unpack_dac_file(data)
        compressed = DACFile(
            codes=torch.from_numpy(codes.astype(np.int64)), input_db=torch.from_numpy(input_db),
            dac_version=SUPPORTED_VERSIONS[-1], **fields,
        )
        signal = model.decompress(compressed)
        return _fit(signal.audio_data[0, 0].cpu().numpy().astype(np.float32), sample_count)


def _baseline_unavailable(system: Encodec | DAC, module: str, variable: str) -> str | None:
    """Why a baseline cannot run: its package is missing, ``$variable`` names no file, or its
    own loader cannot fetch the weights (offline); None once its model is loaded."""
    import importlib

    try:
        importlib.import_module(module)
    except ImportError as err:
        return f"{module} not installed ({err})"
    if system.path is not None and not system.path.is_file():
        return f"weights not available ({variable}={system.path} is not a file)"
    try:
        system._load()
    except OSError as err:  # urllib's URLError, requests' ConnectionError: no network
        return f"not available offline ({module} could not fetch its weights: {str(err).splitlines()[0] if str(err) else type(err).__name__})"
    return None


DAC_FILE_FIELDS = ("chunk_length", "original_length", "channels", "sample_rate", "padding")
"""Scalar fields of DAC's ``DACFile`` besides its codes and loudness."""


def pack_dac_file(codes: np.ndarray, input_db: np.ndarray, fields: dict) -> bytes:
    """A DAC compressed file as plain ``.npz`` bytes: ``codes`` as uint16, ``input_db`` as
    float32 and the :data:`DAC_FILE_FIELDS` as scalars (DAC's own ``.dac`` format is a pickle,
    which this benchmark does not load)."""
    buffer = io.BytesIO()
    scalars = {name: np.asarray(fields[name]) for name in DAC_FILE_FIELDS}
    np.savez(buffer, codes=np.asarray(codes).astype(np.uint16), input_db=np.asarray(input_db, dtype=np.float32), **scalars)
    return buffer.getvalue()


def unpack_dac_file(data: bytes) -> tuple[np.ndarray, np.ndarray, dict]:
    """Inverse of :func:`pack_dac_file` (read with ``allow_pickle=False``)."""
    with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
        fields = {name: arrays[name].item() for name in DAC_FILE_FIELDS}
        return arrays["codes"], arrays["input_db"], fields


@dataclass(frozen=True)
class QuotedRow:
    """One row of the paper's Table I: per domain (MEL, STFT, ViSQOL), speech WER in %."""

    system: str
    kbps: float
    tokens_per_s: float
    sound: tuple[float, float, float]
    music: tuple[float, float, float]
    speech: tuple[float, float, float]
    wer: float


PAPER_TABLE = (
    QuotedRow("DAC", 6.00, 600, (2.91, 3.03, 4.36), (2.83, 2.90, 4.54), (2.79, 2.92, 4.71), 3.0),
    QuotedRow("Encodec", 6.00, 600, (4.38, 4.10, 4.00), (4.17, 2.90, 4.14), (4.54, 3.19, 4.35), 3.3),
    QuotedRow("Encodec", 3.00, 300, (4.84, 4.26, 3.58), (4.67, 3.11, 3.78), (5.06, 3.40, 4.10), 3.7),
    QuotedRow("Encodec", 1.50, 150, (5.39, 4.47, 3.04), (5.30, 3.33, 3.27), (5.83, 3.67, 3.67), 5.0),
    QuotedRow("HiFi-Codec", 2.00, 200, (4.35, 3.61, 3.11), (4.37, 3.11, 3.42), (3.93, 2.99, 4.18), 3.6),
    QuotedRow("DAC", 0.47, 47, (7.56, 4.58, 2.12), (7.80, 4.24, 2.33), (8.62, 4.70, 2.73), 28.2),
    QuotedRow("DAC", 0.78, 78, (6.73, 4.41, 2.47), (6.44, 3.88, 2.80), (6.76, 4.13, 3.19), 11.6),
    QuotedRow("DAC", 1.41, 141, (6.56, 4.78, 2.85), (6.30, 3.72, 3.10), (6.71, 3.91, 3.44), 5.0),
    QuotedRow("SemantiCodec", 0.36, 25, (5.06, 4.02, 2.84), (5.22, 3.76, 3.18), (5.77, 3.72, 3.49), 19.6),
    QuotedRow("SemantiCodec", 0.71, 50, (4.67, 3.97, 3.20), (4.74, 3.62, 3.54), (4.95, 3.49, 3.92), 5.1),
    QuotedRow("SemantiCodec", 1.43, 100, (4.39, 3.79, 3.48), (4.44, 3.56, 3.80), (4.54, 3.38, 4.17), 3.4),
)


def default_systems(checkpoint: str | os.PathLike | None = None, quick: bool = False) -> list[System]:
    """Every system of the benchmark: the bundled default SemantiCodec model, SemantiCodec with
    official weights (all token rates x vocabularies, only the 16384 vocabulary with ``quick``), Codec2 (4 modes), Opus 6/8 kbps, Encodec
    1.5/3/6 kbps and DAC 16 kHz at 6 kbps."""
    from semanticodec.weights import default_model_config

    vocabs = (16384,) if quick else SEMANTICODEC_VOCABS
    systems: list[System] = [SemantiCodecSystem.bundled()] if default_model_config() is not None else []
    systems += [SemantiCodecSystem(rate, vocab, checkpoint) for rate in TOKEN_RATES for vocab in vocabs]
    systems += [Codec2(mode) for mode in CODEC2_MODES]
    systems += [Opus(6), Opus(8)]
    systems += [Encodec(kbps) for kbps in (6.0, 3.0, 1.5)]
    systems.append(DAC(12))
    return systems


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
