"""Model weights: which weights to use (:func:`load_model`), reading weight files safely, the
official weights converted in the Hugging Face cache (:func:`official_model`, with the files
that :mod:`semanticodec.hub` fetches) and this package's own safetensors format.

Weights come from a ``.safetensors`` file of this package, from the official release (found and
checked by :mod:`semanticodec.official`), or from the small model bundled with the package.
Every file is read without executing pickled code: ``torch.load(weights_only=True)``,
``numpy.load(allow_pickle=False)`` or safetensors.

A safetensors file written by :func:`save_safetensors` holds the model's own state dict
(``audiomae.*``, ``acoustic.*``, ``unet.*``, ``schedule.*``, ``vae.*``, ``vocoder.*``) plus
``semantic.codebook`` ``[V, D]``, and its configuration as JSON in the metadata; it may also
hold the model's entropy tables (``entropy.*``, see :mod:`semanticodec.entropy_tables`). It holds
only what inference needs: no MAE decoder, VAE encoder, EMA copy or quantizer EMA state.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from torch.overrides import TorchFunctionMode

from semanticodec import hub
from semanticodec.config import ModelConfig
from semanticodec.kmeans.codebook import load_codebook
from semanticodec.model import SemantiCodecModel
from semanticodec.official import ENV_VAR, OFFICIAL_VOCAB_SIZES, CheckpointError, find_official_root, official_files
from semanticodec.released import DEFAULT_MODEL
from semanticodec.samplers import OFFICIAL_SAMPLING

FORMAT_NAME = "semanticodec"
BUNDLED_SAMPLING = ("unipc", 3)
"""(sampler, steps) the bundled default model decodes with unless told otherwise: the cheapest
setting within 0.1 ViSQOL and 0.1 DNSMOS OVRL of 50-step DDIM in the quality-versus-steps table
of ``benchmarks/RESULTS.md`` (``python -m benchmarks.bench_samplers``; re-run it when the model
is retrained)."""
BUNDLED_PRECISION = "mixed"
"""Decoder precision of the bundled default model where bfloat16 is native
(:func:`semanticodec.codec.native_bfloat16`): the VAE decoder and vocoder in bfloat16 move
ViSQOL by at most 0.01 and speech DNSMOS OVRL by -0.07 against float32 and decode 1.6x faster
(``python -m benchmarks.bench_precision``, ``benchmarks/RESULTS.md``, "Measured in one run")."""
CODEBOOK_KEY = "semantic.codebook"
ENCODER_PARTS = ("audiomae.", "acoustic.")
"""State-dict prefixes of the parts that encoding needs."""
DECODER_PARTS = ("unet.", "schedule.", "vae.", "vocoder.")
"""State-dict prefixes of the parts that only decoding needs."""
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


_SAFETENSORS_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "BOOL": torch.bool,
    "U64": torch.uint64, "U32": torch.uint32, "U16": torch.uint16, "U8": torch.uint8,  # unsigned: the entropy tables
}


class SafetensorsReader(Mapping[str, torch.Tensor]):
    """The tensors of a ``.safetensors`` file, each read from disk when it is looked up.

    Plain file reads, no memory map: a caller that takes the tensors one at a time holds one
    in memory at a time (loading a model then needs little more than the model). Malformed
    files raise :class:`CheckpointError`.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        try:
            with open(self.path, "rb") as file:
                size = int.from_bytes(file.read(8), "little")
                if not 2 <= size <= self.path.stat().st_size - 8:
                    raise ValueError(f"header size {size} does not fit the file")
                header = json.loads(file.read(size))
        except (OSError, ValueError, UnicodeDecodeError) as err:
            raise CheckpointError(f"{self.path}: not a readable safetensors file ({err})") from None
        self.metadata: dict[str, str] = header.pop("__metadata__", None) or {}
        self._start = 8 + size
        data_size = self.path.stat().st_size - self._start
        self._entries: dict[str, tuple[torch.dtype, tuple[int, ...], int, int]] = {}
        for key, entry in header.items():
            try:
                dtype = _SAFETENSORS_DTYPES[entry["dtype"]]
                shape = tuple(int(n) for n in entry["shape"])
                begin, end = (int(n) for n in entry["data_offsets"])
            except (KeyError, TypeError, ValueError):
                raise CheckpointError(f"{self.path}: bad or unsupported header entry for {key!r}") from None
            if not 0 <= begin <= end <= data_size or end - begin != math.prod(shape) * dtype.itemsize:
                raise CheckpointError(f"{self.path}: the data of {key!r} does not fit its shape or the file")
            self._entries[key] = (dtype, shape, begin, end)

    def shape(self, key: str) -> tuple[int, ...]:
        """The shape of the tensor ``key`` as the file's header gives it (nothing is read)."""
        return self._entries[key][1]

    def __getitem__(self, key: str) -> torch.Tensor:
        dtype, shape, begin, end = self._entries[key]
        buffer = bytearray(end - begin)
        with open(self.path, "rb") as file:
            file.seek(self._start + begin)
            if file.readinto(buffer) != len(buffer):
                raise CheckpointError(f"{self.path}: truncated data for {key!r}")
        if not buffer:
            return torch.empty(shape, dtype=dtype)
        return torch.frombuffer(buffer, dtype=dtype).reshape(shape)

    def __iter__(self):
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)


def open_state_dict(path: str | os.PathLike) -> Mapping[str, torch.Tensor]:
    """The tensors of a checkpoint file without reading them all: a :class:`SafetensorsReader`
    for ``.safetensors``, else the memory-mapped weights of a ``.ckpt``/``.pt``/``.pth``
    (weights only)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint file not found: {path}")
    if path.suffix == ".safetensors":
        return SafetensorsReader(path)
    try:
        data = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
    except Exception as err:  # torch raises many types for corrupt or non-weight files
        raise CheckpointError(f"{path}: cannot load as a weights-only checkpoint ({type(err).__name__}: {err})") from None
    if isinstance(data, dict) and isinstance(data.get("state_dict"), dict):
        data = data["state_dict"]
    if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise CheckpointError(f"{path}: does not hold a state dict of tensors")
    return data


class NoRandomInit(TorchFunctionMode):
    """Inside, random initialisers (``torch.nn.init`` and ``Tensor.uniform_``/``normal_``) leave
    their tensor as it is: for building a model whose every state-dict entry is loaded right
    after (``load_weights`` refuses a missing one). Building the official model at 100 tok/s
    takes 1.3 s instead of 16.6 s on 2 CPU cores. Thread-local, like every torch function mode."""

    SKIPPED = frozenset({"uniform_", "normal_", "trunc_normal_", "kaiming_uniform_", "kaiming_normal_",
                         "xavier_uniform_", "xavier_normal_", "orthogonal_"})

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if getattr(func, "__name__", "") in self.SKIPPED:
            return args[0] if args else kwargs["tensor"]
        return func(*args, **kwargs)


class _Selection(Mapping[str, torch.Tensor]):
    def __init__(self, state: Mapping[str, torch.Tensor], prefixes: tuple[str, ...]) -> None:
        self._state = state
        self._keys = [key for key in state if key.startswith(prefixes)]
        self._key_set = set(self._keys)

    def __getitem__(self, key: str) -> torch.Tensor:
        if key not in self._key_set:
            raise KeyError(key)
        return self._state[key]

    def __iter__(self):
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)


def select(state: Mapping[str, torch.Tensor], prefixes: tuple[str, ...]) -> Mapping[str, torch.Tensor]:
    """The entries of ``state`` whose keys start with ``prefixes``, as a view (nothing is read)."""
    return _Selection(state, prefixes)


def load_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Tensors of a ``.ckpt``/``.pt``/``.pth`` (weights only, memory-mapped) or ``.safetensors`` file."""
    return dict(open_state_dict(path))


def load_official(
    root: str | os.PathLike, token_rate: int, semantic_vocab_size: int, with_decoder: bool = True
) -> SemantiCodecModel:
    """Build the official model of (token rate, vocabulary) from an official checkpoint folder
    (``with_decoder=False``: the encoding parts only; ``decoder.ckpt`` is not read). The
    memory-mapped checkpoint tensors become the model's weights (no copies)."""
    files = official_files(root, token_rate, semantic_vocab_size)
    config = ModelConfig.official(token_rate, semantic_vocab_size)
    codebook = load_codebook(files.codebook)
    with NoRandomInit():
        model = SemantiCodecModel(config, codebook, with_decoder=with_decoder)
    decoder = open_state_dict(files.decoder) if with_decoder else None
    model.load_official(open_state_dict(files.encoder), decoder, take=True)
    return model


def save_safetensors(
    model: SemantiCodecModel, path: str | os.PathLike, dtype: str = "float32", overwrite: bool = False
) -> None:
    """Write the inference weights, codebook and config of ``model`` to a safetensors file
    (atomically: a temporary file beside ``path`` is renamed when complete)."""
    from safetensors.torch import save_file

    from semanticodec.atomic import atomic_path

    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    if not model.with_decoder:
        raise ValueError("a model built without its decoder cannot be saved as a weights file")
    state = {
        key: value.detach().to(DTYPES[dtype] if value.is_floating_point() else value.dtype).contiguous()
        for key, value in model.state_dict().items()
        if not key.startswith(("vae.encoder.", "vae.quant_conv."))
    }
    state[CODEBOOK_KEY] = model.semantic.codebook.detach().to(DTYPES[dtype]).contiguous()
    with atomic_path(path, overwrite=overwrite) as temp:
        save_file(state, str(temp), metadata={"format": FORMAT_NAME, "config": model.config.to_json(), "dtype": dtype})


def load_safetensors(path: str | os.PathLike, with_decoder: bool = True, staged: bool = False) -> SemantiCodecModel:
    """A model from a file written by :func:`save_safetensors` (computed in float32), read one
    tensor at a time (``with_decoder=False``: the encoding parts only; ``staged`` as well: the
    acoustic encoder is read when first used, see :meth:`SemantiCodecModel.stage_weights`)."""
    if not Path(path).is_file():
        raise CheckpointError(f"checkpoint file not found: {path}")
    config = file_config(Path(path))
    state = open_state_dict(path)
    _check_shapes(Path(path), config, state, with_decoder)
    if CODEBOOK_KEY not in state:
        raise CheckpointError(f"{path}: missing key {CODEBOOK_KEY}")
    with NoRandomInit():
        model = SemantiCodecModel(config, state[CODEBOOK_KEY].float(), with_decoder=with_decoder)
    model.weights_source = _reread(Path(path))
    parts = ENCODER_PARTS + (DECODER_PARTS if with_decoder else ())
    if staged and not with_decoder:
        model.stage_weights()
        parts = ("audiomae.",)
    try:
        model.load_weights(select(state, parts), parts)
    except CheckpointError as err:
        raise CheckpointError(f"{path}: {err}") from None
    return model


def _reread(path: Path) -> Callable[[str], Mapping[str, torch.Tensor]]:
    """The weights under a prefix of the safetensors file ``path``, read again (for
    :meth:`SemantiCodecModel.stage_weights`); refuses a file changed since it was loaded."""
    loaded = path.stat()

    def weights(prefix: str) -> Mapping[str, torch.Tensor]:
        now = path.stat()
        if (now.st_size, now.st_mtime_ns, now.st_ino) != (loaded.st_size, loaded.st_mtime_ns, loaded.st_ino):
            raise CheckpointError(f"{path}: the weights file changed while in use; run again")
        return select(SafetensorsReader(path), (prefix,))

    return weights


def default_model_config() -> ModelConfig | None:
    """Configuration of the bundled default model (None when the package has none)."""
    if not DEFAULT_MODEL.is_file():
        return None
    return file_config(DEFAULT_MODEL)


def _bundled_defaults(config: ModelConfig, compat: str) -> bool:
    """Whether ``config`` decodes with the bundled default model's measured defaults: it is that
    model, outside ``compat="official"``."""
    bundled = default_model_config()
    return compat == "default" and bundled is not None and config.model_id == bundled.model_id


def default_sampling(config: ModelConfig, compat: str = "default") -> tuple[str, int]:
    """``(sampler, steps)`` of a model unless the user chooses: :data:`BUNDLED_SAMPLING` for
    the bundled default model, else (official checkpoints, ``compat="official"``) the
    official DDIM with 50 steps."""
    return BUNDLED_SAMPLING if _bundled_defaults(config, compat) else OFFICIAL_SAMPLING


def default_precision(config: ModelConfig, compat: str = "default") -> str:
    """Decoder precision of a model unless the user chooses, where bfloat16 is native:
    :data:`BUNDLED_PRECISION` for the bundled default model, else (official checkpoints,
    ``compat="official"``) float32 as in the official code."""
    return BUNDLED_PRECISION if _bundled_defaults(config, compat) else "float32"


def checkpoint_for(model_id: bytes) -> Path | None:
    """The bundled default model's file when ``model_id`` is its id (so that its tokens decode
    with it even where official checkpoints take precedence), else None."""
    default = default_model_config()
    return DEFAULT_MODEL if default is not None and model_id == default.model_id else None


def file_config(path: Path) -> ModelConfig:
    """The model configuration stored in a semanticodec safetensors file's metadata."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
    except (SafetensorError, OSError) as err:
        raise CheckpointError(f"{path}: not a readable safetensors file ({err})") from None
    if metadata.get("format") != FORMAT_NAME or "config" not in metadata:
        raise CheckpointError(f"{path}: not a semanticodec weights file (no semanticodec config in its metadata)")
    try:
        config = ModelConfig.from_json(metadata["config"])
        _check_sizes(config)
    except (ValueError, TypeError, AttributeError, KeyError) as err:
        raise CheckpointError(f"{path}: invalid model configuration in its metadata ({type(err).__name__}: {err})"[:300]) from None
    return config


MAX_CONFIG_INT = 1 << 20
"""Largest integer a weights file's configuration may hold (widths, vocabularies, steps)."""
MAX_CONFIG_REPEATS = 256
"""Largest layer count (``*depth``, ``*layers``, ``num_res_blocks``, ``num_heads``) or list length."""


def _check_sizes(config: object, where: str = "config") -> None:
    """ValueError for a configuration field beyond the bounds above or of a type no field has:
    a file cannot make the loader build a network of unbounded size (even on the meta device)."""
    for field in dataclasses.fields(config):
        value, name = getattr(config, field.name), f"{where}.{field.name}"
        if dataclasses.is_dataclass(value):
            _check_sizes(value, name)
        else:
            repeats = field.name.endswith(("depth", "layers", "num_res_blocks", "num_heads"))
            _check_value(value, name, MAX_CONFIG_REPEATS if repeats else MAX_CONFIG_INT)


def _check_value(value: object, name: str, bound: int) -> None:
    if isinstance(value, (tuple, list)):
        if len(value) > MAX_CONFIG_REPEATS:
            raise ValueError(f"{name} has {len(value)} entries (at most {MAX_CONFIG_REPEATS})")
        for item in value:
            _check_value(item, name, bound)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        if not -bound <= value <= bound:
            raise ValueError(f"{name} = {value} is out of range (at most {bound})")
    elif not isinstance(value, (str, bool)) and value is not None:
        raise ValueError(f"{name} must be a number or text, got {type(value).__name__}")


def _check_shapes(path: Path, config: ModelConfig, state: SafetensorsReader, with_decoder: bool) -> None:
    """CheckpointError unless the file's tensors have the shapes ``config`` gives them; the model
    is built on the meta device for this (nothing is allocated), the tensors are not read."""
    try:
        with torch.device("meta"):
            model = SemantiCodecModel(config, torch.empty(config.semantic_vocab_size, config.feature_dim), with_decoder=with_decoder)
    except Exception as err:  # any failure of the constructors on untrusted sizes
        raise CheckpointError(f"{path}: its configuration builds no model ({type(err).__name__}: {err})"[:300]) from None
    expected = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    expected[CODEBOOK_KEY] = (config.semantic_vocab_size, config.feature_dim)
    for key in state:
        shape, want = state.shape(key), expected.get(key)
        if want is not None and shape != want and not (math.prod(shape) == math.prod(want) == 1):
            raise CheckpointError(f"{path}: {key} has shape {shape}, its configuration says {want}")


def _check_rate_vocab(model: SemantiCodecModel, token_rate: int, semantic_vocab_size: int | None, source: str) -> None:
    vocab = model.config.semantic_vocab_size if semantic_vocab_size is None else semantic_vocab_size
    if (model.config.token_rate, model.config.semantic_vocab_size) != (token_rate, vocab):
        raise CheckpointError(
            f"{source} holds a {model.config.token_rate} tok/s, vocabulary {model.config.semantic_vocab_size} "
            f"model, not the requested {token_rate} tok/s, vocabulary {vocab}"
        )


def load_model(
    token_rate: int = 100,
    semantic_vocab_size: int | None = None,
    checkpoint: str | os.PathLike | None = None,
    model: str | None = None,
    offline: bool | None = None,
    with_decoder: bool = True,
    staged: bool = False,
) -> SemantiCodecModel:
    """The model to use.

    1. ``model="small"``: the bundled small model;
    2. ``checkpoint`` (a safetensors file or an official checkpoint folder), else
       ``$SEMANTICODEC_CHECKPOINT`` (``semantic_vocab_size=None``: 16384 if present, else any);
    3. the official weights of (``token_rate``, ``semantic_vocab_size`` or 16384): from the
       Hugging Face cache, else downloaded (:func:`official_model`; never with
       ``offline=True`` or ``HF_HUB_OFFLINE=1``);
    4. when nothing is named (``model`` and ``semantic_vocab_size`` None, the bundled model's
       token rate) and 3. is neither cached nor reachable: the bundled small model.

    The bundled model's use is stated in one line on stderr. ``with_decoder=False`` builds and
    reads the encoding parts only (for compress, tokenize and k-means features); with
    ``staged`` as well, weights read from a safetensors file are staged
    (:meth:`SemantiCodecModel.stage_weights`; memory-mapped official folders are not).
    """
    if model not in MODEL_NAMES:
        raise ValueError(f"model must be one of {', '.join(n for n in MODEL_NAMES if n)} or None, got {model!r}")
    if model == "small":
        if checkpoint is not None:
            raise ValueError("model='small' (the bundled model) and a checkpoint exclude each other")
        return _bundled(token_rate, semantic_vocab_size, "", with_decoder, staged)
    if checkpoint is not None and Path(checkpoint).suffix == ".safetensors":
        loaded = load_safetensors(checkpoint, with_decoder, staged)
        _check_rate_vocab(loaded, token_rate, semantic_vocab_size, str(checkpoint))
        if Path(checkpoint) == DEFAULT_MODEL:
            _say_bundled(loaded.config, "")
        return loaded
    if checkpoint is not None or os.environ.get(ENV_VAR):
        return _load_official_root(find_official_root(checkpoint), token_rate, semantic_vocab_size, with_decoder)
    try:
        return official_model(token_rate, semantic_vocab_size or hub.DEFAULT_VOCAB, offline, with_decoder, staged)
    except hub.WeightsUnavailable:
        default = default_model_config()
        if model is None and semantic_vocab_size is None and default is not None and token_rate == default.token_rate:
            reason = f"; no official weights cached or reachable (`{hub.download_command(token_rate, hub.DEFAULT_VOCAB)}`)"
            return _bundled(token_rate, None, reason, with_decoder, staged)
        raise


def official_model(
    token_rate: int,
    semantic_vocab_size: int = hub.DEFAULT_VOCAB,
    offline: bool | None = None,
    with_decoder: bool = True,
    staged: bool = False,
) -> SemantiCodecModel:
    """The official model of (token rate, vocabulary): from its converted file in the cache, else
    from the official files (cached or fetched, then verified), converted for the next time.

    ``with_decoder=False``: the encoding parts only, read from the converted file alone (its
    decoder tensors are not read); the first conversion still builds the whole model.
    ``staged``: as :func:`load_safetensors`.
    """
    files = hub.fetch(token_rate, semantic_vocab_size, offline)
    target = hub.converted_path(token_rate, semantic_vocab_size, files)
    if target.is_file():
        try:
            return load_safetensors(target, with_decoder, staged)
        except CheckpointError:
            target.unlink(missing_ok=True)  # damaged: converted again below
    hub.verify(token_rate, semantic_vocab_size, files, offline)
    model = load_official(files.encoder.parents[1], token_rate, semantic_vocab_size)
    target.parent.mkdir(parents=True, exist_ok=True)
    save_safetensors(model, target, overwrite=True)
    if with_decoder:
        return model
    del model
    return load_safetensors(target, with_decoder, staged)


MODEL_NAMES = (None, "small", "official")
"""Values of ``model``: None (official weights when available, else the bundled model),
``"small"`` (the bundled model), ``"official"`` (official weights, never the bundled model)."""


def _load_official_root(
    root: Path, token_rate: int, semantic_vocab_size: int | None, with_decoder: bool
) -> SemantiCodecModel:
    if semantic_vocab_size is None:
        for vocab in (16384, *OFFICIAL_VOCAB_SIZES):
            try:
                official_files(root, token_rate, vocab)
            except CheckpointError:
                continue
            semantic_vocab_size = vocab
            break
        else:
            raise CheckpointError(f"{root}: no complete official model for {token_rate} tok/s")
    return load_official(root, token_rate, semantic_vocab_size, with_decoder)


def _bundled(
    token_rate: int, semantic_vocab_size: int | None, reason: str, with_decoder: bool, staged: bool = False
) -> SemantiCodecModel:
    """The bundled small model, its use stated on stderr (``reason`` ends the line)."""
    default = default_model_config()
    if default is None:
        raise CheckpointError(f"the package has no bundled small model ({DEFAULT_MODEL} is missing)")
    if (token_rate, semantic_vocab_size or default.semantic_vocab_size) != (default.token_rate, default.semantic_vocab_size):
        raise CheckpointError(
            f"the bundled small model is {default.token_rate} tok/s, vocabulary {default.semantic_vocab_size}, "
            f"not {token_rate} tok/s, vocabulary {semantic_vocab_size}"
        )
    model = load_safetensors(DEFAULT_MODEL, with_decoder, staged)
    _say_bundled(model.config, reason)
    return model


def _say_bundled(config: ModelConfig, reason: str) -> None:
    print(
        f"semanticodec: using the bundled small model ({config.token_rate} tok/s, vocabulary "
        f"{config.semantic_vocab_size}, {config.bitrate / 1000:g} kbps), not the paper's weights{reason}",
        file=sys.stderr,
    )
