"""Acoustic branch: BiLSTM over [AudioMAE feature ‖ semantic centroid] and a single VQ.

Per 10.24 s window of N = 512 / K tokens of width D (768 / 1536 / 3072 at 100 / 50 / 25
tokens/s):

1. LSTM input ``cat([features, semantic_vectors], -1)`` ``[B, N, 2D]``, rows from the
   window's valid length on set to -1 (the official ``mark_out_padding``);
2. bidirectional ``nn.LSTM(2D -> 2D, L layers)`` (L = 4 / 3 / 2), state zero per window;
3. ``Linear(4D -> D, bias=False)`` gives the pre-VQ vectors ``[B, N, D]``;
4. nearest row of the 8192-entry codebook (Euclidean, as vector-quantize-pytorch) gives the
   acoustic ids ``[B, N]`` and their code vectors.

With ``AcousticConfig.code_dim = d`` (not official; for small models) the lookup is factorised
as in ViT-VQGAN and DAC: ``Linear(D -> d)``, l2-normalised, nearest of the unit-norm codes
(cosine), and the code's vector is ``Linear(d -> D)`` of the unit code, which keeps codebook
usage high where a wide Euclidean codebook collapses onto few codes.

The state-dict keys are the official ``encoder.ckpt`` keys of these parts (``encoder.*``,
``encoder_output_linear.weight``, ``quantizer._codebook.embed``); the checkpoint's AudioMAE
weights (``audiomae.model.*``) and the EMA training state of the quantizer
(:data:`UNUSED_OFFICIAL_KEYS`) are not part of this module, see :func:`acoustic_state_dict`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from semanticodec.conditioning import check_vector_pair, describe, mark_padding
from semanticodec.constants import stack_factor
from semanticodec.serialise import added_field

AUDIOMAE_PREFIX = "audiomae.model."
"""Prefix of the AudioMAE weights in the official ``encoder.ckpt`` (not in this module)."""

UNUSED_OFFICIAL_KEYS = (
    "quantizer._codebook.initted",
    "quantizer._codebook.cluster_size",
    "quantizer._codebook.embed_avg",
)
"""Official ``encoder.ckpt`` keys of the quantizer's EMA training state, unused at inference."""


QUANTIZE_CHUNK = 512
"""Rows per distance block of :meth:`AcousticEncoder.nearest` (two ``[512, 8192]`` float32
buffers, 32 MB, at 100 tokens/s)."""


@dataclass(frozen=True)
class AcousticConfig:
    """Sizes of the acoustic branch; the defaults are the official 100 tokens/s model.

    Attributes:
        feature_dim: D, width of a (stacked) AudioMAE feature and of a code vector.
        lstm_layers: L, layers of the bidirectional LSTM (hidden size 2D per direction).
        codebook_size: entries of the acoustic codebook (13 bits).
        code_dim: None (official): codes of width D, nearest by Euclidean distance; d:
            factorised codes, looked up as l2-normalised d-dimensional vectors (d < D).
    """

    feature_dim: int = 768
    lstm_layers: int = 4
    codebook_size: int = 8192
    code_dim: int | None = added_field(None)

    def __post_init__(self) -> None:
        for name in ("feature_dim", "lstm_layers", "codebook_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"AcousticConfig.{name} must be a positive int, got {value!r}")
        d = self.code_dim
        if d is not None and (isinstance(d, bool) or not isinstance(d, int) or not 2 <= d < self.feature_dim):
            raise ValueError(f"AcousticConfig.code_dim must be None or an int in [2, feature_dim), got {d!r}")

    @property
    def lookup_dim(self) -> int:
        """Width of the vectors compared with the codebook: ``code_dim``, or D."""
        return self.code_dim if self.code_dim is not None else self.feature_dim

    @classmethod
    def for_token_rate(cls, token_rate: int) -> AcousticConfig:
        """The official sizes: D = 768 / 1536 / 3072 and L = 4 / 3 / 2 for 100 / 50 / 25 tokens/s."""
        k = stack_factor(token_rate)
        return cls(feature_dim=768 * k, lstm_layers={1: 4, 2: 3, 4: 2}[k])


class AcousticTokens(NamedTuple):
    """Output of :class:`AcousticEncoder`."""

    ids: Tensor
    """``[B, N]`` int64 acoustic token ids."""
    vectors: Tensor
    """``[B, N, D]`` codebook rows of ``ids`` (the quantized acoustic feature)."""
    pre_vq: Tensor
    """``[B, N, D]`` continuous vectors before quantization."""


class _Codebook(nn.Module):
    """Holds ``embed [1, codebook_size, lookup_dim]`` under the official key ``_codebook.embed``."""

    def __init__(self, codebook_size: int, dim: int) -> None:
        super().__init__()
        embed = torch.empty(1, codebook_size, dim)
        nn.init.kaiming_uniform_(embed)
        self.register_buffer("embed", embed)


class _Quantizer(nn.Module):
    """The codebook under the official key ``quantizer._codebook.embed``; with factorised codes
    also ``in_proj`` (D -> d) and ``out_proj`` (d -> D)."""

    def __init__(self, config: AcousticConfig) -> None:
        super().__init__()
        self._codebook = _Codebook(config.codebook_size, config.lookup_dim)
        if config.code_dim is not None:
            self.in_proj = nn.Linear(config.feature_dim, config.code_dim)
            self.out_proj = nn.Linear(config.code_dim, config.feature_dim)
            with torch.no_grad():
                self._codebook.embed.copy_(F.normalize(self._codebook.embed, dim=-1))


class AcousticEncoder(nn.Module):
    """BiLSTM + linear + VQ of the official ``AudioMAEConditionQuantResEncoder``.

    Windows are independent: a batch of B windows gives per item what B runs of one window
    give (up to float32 rounding of the batched matrix products).

    Speed: on CPU without grad the recurrence is :func:`lstm_direction`, the two directions of
    a layer on two threads at once (:meth:`_bilstm`); elsewhere ``nn.LSTM`` (cuDNN on GPU). At
    B = 1 it is memory-bound, since every time step reads each layer's hidden-to-hidden
    matrices (2 x 38 MB per layer at 100 tokens/s). Put all windows of an input, or of several
    inputs, in one batch so that those reads are shared.
    """

    def __init__(self, config: AcousticConfig | None = None, *, quantize_chunk: int = QUANTIZE_CHUNK) -> None:
        super().__init__()
        self.config = config if config is not None else AcousticConfig()
        if isinstance(quantize_chunk, bool) or not isinstance(quantize_chunk, int) or quantize_chunk < 1:
            raise ValueError(f"quantize_chunk must be a positive int, got {quantize_chunk!r}")
        self.quantize_chunk = quantize_chunk
        d = self.config.feature_dim
        self.encoder = nn.LSTM(
            input_size=2 * d,
            hidden_size=2 * d,
            num_layers=self.config.lstm_layers,
            bias=True,
            batch_first=True,
            bidirectional=True,
        )
        for layer in range(self.config.lstm_layers):  # column-major from the start: weights load into it
            for suffix in ("", "_reverse"):
                self._recurrent_weights(layer, suffix)
        self.encoder_output_linear = nn.Linear(4 * d, d, bias=False)
        self.quantizer = _Quantizer(self.config)

    @property
    def codes(self) -> Tensor:
        """``[codebook_size, lookup_dim]`` codes as compared with :meth:`code_space` vectors:
        ``quantizer._codebook.embed[0]``, l2-normalised when factorised."""
        embed = self.quantizer._codebook.embed[0]
        return embed if self.config.code_dim is None else F.normalize(embed, dim=-1)

    @property
    def codebook(self) -> Tensor:
        """``[codebook_size, D]`` acoustic code vectors (the decoder's conditioning):
        :meth:`from_code_space` of :attr:`codes`."""
        return self.from_code_space(self.codes)

    def code_space(self, pre_vq: Tensor) -> Tensor:
        """Pre-VQ vectors ``[..., D]`` as compared with the codes: themselves, or
        ``l2norm(in_proj(pre_vq))`` ``[..., d]`` when factorised."""
        if self.config.code_dim is None:
            return pre_vq
        return F.normalize(self.quantizer.in_proj(pre_vq), dim=-1)

    def from_code_space(self, codes: Tensor) -> Tensor:
        """Code-space vectors ``[..., lookup_dim]`` -> conditioning vectors ``[..., D]``
        (identity, or ``out_proj`` when factorised)."""
        return codes if self.config.code_dim is None else self.quantizer.out_proj(codes)

    def lstm_input(
        self, features: Tensor, semantic_vectors: Tensor, valid_len: Tensor | Sequence[int] | None = None
    ) -> Tensor:
        """``[B, N, 2D]`` = [features ‖ semantic_vectors], rows ``>= valid_len`` set to -1.

        Args:
            features: ``[B, N, D]`` continuous (stacked) AudioMAE features of a window.
            semantic_vectors: ``[B, N, D]`` k-means centroids of the window's semantic ids.
            valid_len: ``[B]`` int tokens holding audio (``valid_tokens(padding_cutoff)``);
                None: all N.
        """
        check_vector_pair(features, semantic_vectors, "features", "semantic_vectors")
        if features.shape[-1] != self.config.feature_dim:
            raise ValueError(f"feature width {features.shape[-1]} != config.feature_dim {self.config.feature_dim}")
        return mark_padding(torch.cat([features, semantic_vectors], dim=-1), valid_len)

    def project(self, lstm_in: Tensor) -> Tensor:
        """BiLSTM then ``Linear(4D -> D)``: ``[B, N, 2D]`` -> pre-VQ vectors ``[B, N, D]``."""
        if not isinstance(lstm_in, Tensor) or lstm_in.ndim != 3 or lstm_in.shape[-1] != 2 * self.config.feature_dim:
            raise ValueError(f"lstm_in must be [B, N, {2 * self.config.feature_dim}], got {describe(lstm_in)}")
        return self.encoder_output_linear(self._bilstm(lstm_in))

    def _bilstm(self, x: Tensor) -> Tensor:
        """The BiLSTM, ``[B, N, 2D] -> [B, N, 4D]``.

        With grad, or off the CPU, this is ``nn.LSTM`` itself. Without grad on a CPU it is
        :func:`lstm_direction` per direction, the two directions of each layer at once on two
        threads (one intra-op thread each) when two or more threads are allowed: the 2 x 512
        steps of a layer then need no synchronisation of the threads (on a busy 2-core machine
        per-step barriers, 4096 per window, stall whenever either thread is descheduled). Unlike
        ``torch.lstm`` on CPU (oneDNN), which copies every weight into its own layout at every
        call (+0.2 GB at 100 tokens/s with two directions at once), it reads the weights where
        they are, each hidden-to-hidden matrix laid out column-major (:meth:`_recurrent_weights`). Its
        buffers are allocated here, in the calling thread, so that the allocator reuses the
        memory the caller freed (a worker thread allocates from an arena of its own).
        """
        if x.device.type != "cpu" or torch.is_grad_enabled():
            return self.encoder(x)[0]
        lstm = self.encoder
        hidden = lstm.hidden_size
        weights = {}
        for layer in range(lstm.num_layers):
            for suffix in ("", "_reverse"):
                bias = getattr(lstm, f"bias_ih_l{layer}{suffix}") + getattr(lstm, f"bias_hh_l{layer}{suffix}")
                weights[layer, suffix] = (getattr(lstm, f"weight_ih_l{layer}{suffix}"), self._recurrent_weights(layer, suffix), bias)
        scratch = {suffix: x.new_empty(x.shape[0], RECURRENCE_CHUNK, 4 * hidden) for suffix in ("", "_reverse")}
        inference = torch.is_inference_mode_enabled()  # grad modes are per thread: the workers take the caller's

        def direction(h: Tensor, out: Tensor, layer: int, suffix: str) -> None:
            with torch.inference_mode(inference), torch.no_grad():
                half = out[..., hidden:] if suffix else out[..., :hidden]
                lstm_direction(h, *weights[layer, suffix], bool(suffix), out=half, scratch=scratch[suffix])

        threads = torch.get_num_threads()
        pool = ThreadPoolExecutor(max_workers=2) if threads >= 2 else None
        if pool is not None:
            torch.set_num_threads(1)
        try:
            h = x
            for layer in range(lstm.num_layers):
                out = x.new_empty(x.shape[0], x.shape[1], 2 * hidden)
                if pool is None:
                    direction(h, out, layer, "")
                    direction(h, out, layer, "_reverse")
                else:
                    for run in [pool.submit(direction, h, out, layer, suffix) for suffix in ("", "_reverse")]:
                        run.result()
                h = out
        finally:
            if pool is not None:
                pool.shutdown()
                torch.set_num_threads(threads)
        return h

    def _recurrent_weights(self, layer: int, suffix: str) -> Tensor:
        """``weight_hh_l{layer}{suffix}`` transposed, ``[H, 4H]`` contiguous (a view).

        The parameter's storage is laid out column-major (``[4H, H]`` with strides ``(1, 4H)``;
        same values, same shape), because the per-step product ``h @ W_hh^T`` of
        :func:`lstm_direction` streams such a matrix about 1.4x faster than a row-major one
        (MKL, 1 thread, 38 MB matrix: 19.5 against 13.9 GB/s). ``__init__`` does this, so that
        loading (``copy_`` into the parameter, as ``load_state_dict`` does) writes the weights
        straight into that layout; a parameter since replaced by a row-major tensor is laid
        out again here, once.
        """
        weight = getattr(self.encoder, f"weight_hh_l{layer}{suffix}")
        if not weight.t().is_contiguous():
            with torch.inference_mode(False):  # a parameter must stay a normal tensor (training may follow)
                weight.data = weight.data.t().contiguous().t()
        return weight.t()

    def quantize(self, pre_vq: Tensor) -> Tensor:
        """Nearest code of each vector: ``[B, N, D]`` -> ids ``[B, N]`` int64 (:meth:`nearest`
        of :meth:`code_space`)."""
        d = self.config.feature_dim
        if not isinstance(pre_vq, Tensor) or pre_vq.ndim != 3 or pre_vq.shape[-1] != d:
            raise ValueError(f"pre_vq must be [B, N, {d}], got {describe(pre_vq)}")
        return self.nearest(self.code_space(pre_vq))

    def nearest(self, vectors: Tensor) -> Tensor:
        """Nearest of :attr:`codes` for code-space vectors ``[B, N, lookup_dim]`` -> ids ``[B, N]``.

        The distance is vector-quantize-pytorch's ``sqrt(clamp(|x|² + |e|² - 2 x·e, 1e-8))``
        in float32 (first index on ties), which reproduces the official ids bit for bit
        wherever the float32 products agree.
        """
        d = self.config.lookup_dim
        if not isinstance(vectors, Tensor) or vectors.ndim != 3 or vectors.shape[-1] != d:
            raise ValueError(f"code-space vectors must be [B, N, {d}], got {describe(vectors)}")
        ids = []
        with torch.no_grad():  # ids have no gradient; in place, two [chunk, codebook_size] buffers
            codebook = self.codes.to(vectors.dtype)
            codebook_sq = codebook.pow(2).sum(dim=-1)
            for rows in vectors.reshape(-1, d).split(self.quantize_chunk):
                distance = rows.pow(2).sum(dim=-1, keepdim=True) + codebook_sq
                distance.add_((rows @ codebook.T).mul_(-2))  # (|x|² + |e|²) + (x·e × -2), as the official
                ids.append(distance.clamp_(min=1e-8).sqrt_().argmin(dim=-1))
        return torch.cat(ids).reshape(vectors.shape[:2])

    def lookup(self, ids: Tensor) -> Tensor:
        """Code vectors of acoustic ids: ``[B, N]`` int -> ``[B, N, D]``."""
        if not isinstance(ids, Tensor) or ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool:
            raise ValueError(f"ids must be an integer tensor, got {ids.dtype if isinstance(ids, Tensor) else type(ids).__name__}")
        if ids.numel() and bool(((ids < 0) | (ids >= self.config.codebook_size)).any()):
            raise ValueError(f"acoustic ids must lie in [0, {self.config.codebook_size}), got min {int(ids.min())} max {int(ids.max())}")
        return self.from_code_space(self.codes[ids])

    def forward(
        self, features: Tensor, semantic_vectors: Tensor, valid_len: Tensor | Sequence[int] | None = None
    ) -> AcousticTokens:
        """Acoustic tokens of B windows.

        Args:
            features: ``[B, N, D]`` continuous (stacked) AudioMAE features.
            semantic_vectors: ``[B, N, D]`` centroids of the semantic ids.
            valid_len: ``[B]`` int tokens holding audio per window (None: all N).

        Returns:
            :class:`AcousticTokens` ``(ids [B, N], vectors [B, N, D], pre_vq [B, N, D])``.
        """
        pre_vq = self.project(self.lstm_input(features, semantic_vectors, valid_len))
        ids = self.quantize(pre_vq)
        return AcousticTokens(ids=ids, vectors=self.lookup(ids), pre_vq=pre_vq)


RECURRENCE_CHUNK = 128
"""Time steps whose input products :func:`lstm_direction` computes in one matrix product
(bounds its working memory to ``B x 128 x 4H`` floats, 3 MB per window at 100 tokens/s)."""


def lstm_direction(
    x: Tensor,
    weight_ih: Tensor,
    weight_hh_t: Tensor,
    bias: Tensor,
    reverse: bool = False,
    *,
    out: Tensor | None = None,
    scratch: Tensor | None = None,
) -> Tensor:
    """One direction of one ``nn.LSTM`` layer (zero initial state, gate order i, f, g, o).

    Args:
        x: ``[B, T, I]`` input.
        weight_ih: ``[4H, I]`` input-to-hidden weights.
        weight_hh_t: ``[H, 4H]`` transposed hidden-to-hidden weights (contiguous: streamed
            once per time step, the cost at small B).
        bias: ``[4H]``, ``bias_ih + bias_hh``.
        reverse: run from the last step to the first (the backward direction).
        out: ``[B, T, H]`` where to write the result (may be a view with any row strides, such
            as one half of a ``[B, T, 2H]`` buffer); None: a new tensor.
        scratch: ``[B, RECURRENCE_CHUNK, 4H]`` buffer for the input products; None: a new one.

    Returns:
        ``out``: the ``[B, T, H]`` hidden states, in input order. Equal to ``nn.LSTM`` up to
        float32 rounding.
    """
    batch, steps, _ = x.shape
    hidden = weight_hh_t.shape[0]
    out = x.new_empty(batch, steps, hidden) if out is None else out
    scratch = x.new_empty(batch, RECURRENCE_CHUNK, 4 * hidden) if scratch is None else scratch
    h = x.new_zeros(batch, hidden)
    c = x.new_zeros(batch, hidden)
    gates = x.new_empty(batch, 4 * hidden)
    acts = x.new_empty(batch, 4 * hidden)
    cell = x.new_empty(batch, hidden)
    chunks = range(0, steps, RECURRENCE_CHUNK)
    for start in reversed(chunks) if reverse else chunks:
        stop = min(start + RECURRENCE_CHUNK, steps)
        for b in range(batch):  # per item: x[b] rows are contiguous, no copy of the input
            torch.addmm(bias, x[b, start:stop], weight_ih.t(), out=scratch[b, : stop - start])
        for t in range(stop - 1, start - 1, -1) if reverse else range(start, stop):
            torch.addmm(scratch[:, t - start], h, weight_hh_t, out=gates)
            torch.sigmoid(gates, out=acts)  # i, f, o (and g, overwritten)
            torch.tanh(gates[:, 2 * hidden : 3 * hidden], out=acts[:, 2 * hidden : 3 * hidden])
            c.mul_(acts[:, hidden : 2 * hidden]).addcmul_(acts[:, :hidden], acts[:, 2 * hidden : 3 * hidden])
            h = torch.mul(acts[:, 3 * hidden :], torch.tanh(c, out=cell), out=out[:, t])
    return out


def acoustic_state_dict(official: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The entries of an official ``encoder.ckpt`` state dict that :class:`AcousticEncoder` loads.

    Drops ``audiomae.model.*`` (the AudioMAE, loaded elsewhere) and
    :data:`UNUSED_OFFICIAL_KEYS`; the result loads with ``load_state_dict(strict=True)``.
    """
    if not isinstance(official, Mapping):
        raise ValueError(f"official must be a state-dict mapping, got {type(official).__name__}")
    return {
        key: value
        for key, value in official.items()
        if not key.startswith(AUDIOMAE_PREFIX) and key not in UNUSED_OFFICIAL_KEYS
    }
