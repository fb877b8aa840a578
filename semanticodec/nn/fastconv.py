"""Inference convolutions with fewer multiplications: Toom-Cook (Winograd) minimal filtering
along time. (The VAE's nearest-upsample convolution has its own shortcut,
:func:`semanticodec.nn.vae.upsample_conv`; both switch off inside :func:`direct`.)

A correlation of ``m`` outputs with an ``r``-tap filter needs ``m * r`` products done directly
and ``m + r - 1`` done by evaluating both polynomials at ``m + r - 1`` points (here 0, ±1, ±2,
1/2 and infinity) and interpolating. Applied per tile of ``m`` outputs along the time axis,
with the channel sums of every point batched into one grouped convolution, a kernel of ``k``
taps costs ``(m + r - 1) * ceil(k / r) / m`` channel products per output instead of ``k``:
4.5 instead of 9 for the mel VAE's 3x3 convolutions (``m = 4, r = 3`` along time, the 3
frequency taps direct), 5.25 instead of 11 for the HiFi-GAN's 11-tap ones (``m = r = 4``,
the kernel in chunks of 4). The points are small, so the transforms lose little precision:
outputs match the direct convolution to a few 1e-7 relative (float32), about twice the
direct convolution's own rounding error. Dilated convolutions split the signal into their
``dilation`` interleaved phases first, each an ordinary convolution.

The input and output transforms are passes over memory, so the saving pays only where the
channel products dominate: measured on one core of this project's machine (float32, official
shapes), the 512-channel 3x3 convolutions of the VAE run 1.6x faster and the 512-channel 7- and
11-tap ones of the HiFi-GAN 1.3x and 1.5-1.7x, while 256 channels and fewer, and 3-tap 1-D
kernels, run slower; :func:`worth_it` and :data:`MIN_TAPS_1D` draw that line.

Under CPU autocast to bfloat16 (``--precision mixed``) the convolutions here run instead in
the channels-last layout with cached bfloat16 weights (:func:`channels_last_bfloat16`), the 1-D
ones as 2-D ones over a ``[B, C, 1, L]`` view: oneDNN's bfloat16 kernels (AMX, AVX512-BF16)
want that layout, and each output, with the channels innermost, feeds the next convolution
without a copy. On a Xeon with AMX, 512- to 64-channel HiFi-GAN convolutions ran 1.4-9x faster
than ``conv1d`` under autocast, and the whole VAE decoder 1.9x faster than channels-first
(``benchmarks/RESULTS.md``). Signals longer than :data:`MAX_POSITIONS` are convolved in pieces.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

POINTS = (0.0, 1.0, -1.0, 2.0, -2.0, 0.5)
"""Finite evaluation points, in order of use; infinity is always the last point."""

MIN_CHANNELS = 512
"""Narrower convolutions run direct: their transforms cost more than the products they save."""

MIN_TAPS_1D = 7
"""Shorter 1-D kernels run direct (a 3-tap kernel saves too few products)."""

MAX_POSITIONS = 65536
"""Longest signal a channels-last bfloat16 1-D convolution is handed in one piece; longer ones
run as a batch of overlapping pieces of this many outputs (:func:`conv1d_channels_last`).
oneDNN took ~0.12 s to create each such convolution over the 163 872 samples of a vocoder window
(32 channels, Xeon with AMX) against ~0.01 s for pieces of 65 536: 1.3 s of a window's first
decode; the pieces cost one copy of the input."""


_direct = False


@contextlib.contextmanager
def direct() -> Iterator[None]:
    """Run every convolution the direct way inside this context (the reference formulation,
    for tests and A/B timing)."""
    global _direct
    previous, _direct = _direct, True
    try:
        yield
    finally:
        _direct = previous


def enabled() -> bool:
    """Whether the inference shortcuts may run: outside autograd and outside :func:`direct`."""
    return not _direct and not torch.is_grad_enabled()


@functools.cache
def _matrices(m: int, r: int) -> tuple[Tensor, Tensor, Tensor]:
    """``(G [n, r], B [n, m], A [n, n])`` in float64, ``n = m + r - 1``: the correlation
    ``y[u] = sum_i g[i] d[u + i]`` (u < m) equals ``B.T @ ((G @ g) * (A.T @ d))``.

    G and B evaluate a polynomial of r and m coefficients at the points (infinity: the
    leading coefficient), A interpolates the n coefficients of their product from its values
    (the inverse Vandermonde matrix); the correlation is the transpose of that product.
    """
    n = m + r - 1
    if n - 1 > len(POINTS):
        raise ValueError(f"Toom-Cook F({m}, {r}) needs {n - 1} finite points, only {len(POINTS)} are defined")
    points = POINTS[: n - 1]

    def vandermonde(size: int) -> Tensor:
        rows = [[a**j for j in range(size)] for a in points] + [[0.0] * (size - 1) + [1.0]]
        return torch.tensor(rows, dtype=torch.float64)

    return vandermonde(r), vandermonde(m), torch.linalg.inv(vandermonde(n))


def worth_it(x: Tensor, weight: Tensor) -> bool:
    """Whether the Toom-Cook convolution beats the direct one for ``x`` and ``weight``:
    float32 on the CPU outside autocast, :func:`enabled`, at least :data:`MIN_CHANNELS` in and out.

    Under autocast (``--precision bfloat16``) the direct convolution runs: the transforms'
    values would be rounded to 8 significant bits before the products, and a bfloat16
    convolution is already about twice as fast as the float32 Toom-Cook products.
    """
    return (
        enabled()
        and x.device.type == "cpu"
        and not torch.is_autocast_enabled("cpu")
        and x.dtype == weight.dtype == torch.float32
        and min(weight.shape[0], weight.shape[1]) >= MIN_CHANNELS
    )


def _valid_correlation(s: Tensor, weight: Tensor, m: int, r: int) -> Tensor:
    """Correlation along dim 2 without padding: ``s [B, Cin, N, *W]``, ``weight [Cout, Cin, k,
    *kw]`` (the trailing axis, if any, is convolved directly with padding ``kw // 2``) ->
    ``[B, Cout, N - k + 1, *W]``, no bias."""
    batch, channels, length = s.shape[:3]
    out_channels, _, taps = weight.shape[:3]
    trailing = s.shape[3:]
    ones = (1,) * len(trailing)
    conv = F.conv2d if trailing else F.conv1d
    n, chunks = m + r - 1, -(-taps // r)
    outputs = length - taps + 1
    tiles = -(-outputs // m)
    g, b, a = (t.to(s.dtype) for t in _matrices(m, r))
    s = F.pad(s, (0, 0) * len(trailing) + (0, (tiles + chunks - 1) * m + n - m - length))
    # input transform, one depthwise strided pass: v[:, c * n + p, t] = sum_j a[j, p] s[:, c, m t + j]
    transform = a.t().reshape(n, 1, n, *ones).repeat(channels, 1, 1, *ones)
    v = conv(s, transform, stride=(m, *ones), groups=channels)
    v = v.unflatten(1, (channels, n)).transpose(1, 2).flatten(1, 2)  # point-major: p * Cin + c
    # filter transform: u[p * Cout + o, i, chunk] = sum_j g[p, j] weight[o, i, chunk * r + j]
    chunked = F.pad(weight, (0, 0) * len(trailing) + (0, chunks * r - taps)).unflatten(2, (chunks, r))
    u = torch.einsum("pj,oicj...->poic...", g, chunked).flatten(0, 1)
    padding = (0, *(k // 2 for k in weight.shape[3:])) if trailing else 0
    products = conv(v, u, padding=padding, groups=n)  # [B, n * Cout, tiles, *W]: the channel sums per point
    # output transform: y[:, o, m t + i] = sum_p b[p, i] products[:, p * Cout + o, t]
    y = torch.einsum("pi,bpot...->boti...", b, products.unflatten(1, (n, out_channels)))
    return y.reshape(batch, out_channels, tiles * m, *trailing)[:, :, :outputs]


def toom_cook_conv1d(x: Tensor, weight: Tensor, bias: Tensor | None, dilation: int = 1) -> Tensor:
    """``F.conv1d(x, weight, bias, padding=dilation * (k - 1) // 2, dilation=dilation)`` for odd
    ``k``: ``x [B, Cin, L]``, ``weight [Cout, Cin, k]`` -> ``[B, Cout, L]``, via F(4, 4)."""
    batch, _, length = x.shape
    taps = weight.shape[2]
    if taps % 2 == 0:
        raise ValueError(f"toom_cook_conv1d: 'same' padding needs an odd kernel, got {taps} taps")
    pad = dilation * (taps - 1) // 2
    phase_length = -(-length // dilation)  # outputs per phase
    padded = F.pad(x, (pad, dilation * (phase_length + taps - 1) - length - pad))
    if dilation > 1:  # phase q holds samples q, q + d, q + 2d, ...: [B * d, Cin, L / d + k - 1]
        padded = padded.unflatten(2, (-1, dilation)).permute(0, 3, 1, 2).flatten(0, 1)
    y = _valid_correlation(padded, weight, m=4, r=4)
    if dilation > 1:
        y = y.unflatten(0, (batch, dilation)).permute(0, 2, 3, 1).flatten(2, 3)
    y = y[:, :, :length]
    return y if bias is None else y + bias[:, None]


def toom_cook_conv2d(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """``F.conv2d(x, weight, bias, padding=1)`` for a 3x3 ``weight [Cout, Cin, 3, 3]``:
    ``x [B, Cin, H, W]`` -> ``[B, Cout, H, W]``, via F(4, 3) along H (time) and direct along W."""
    if weight.shape[2:] != (3, 3):
        raise ValueError(f"toom_cook_conv2d takes 3x3 kernels, got {tuple(weight.shape[2:])}")
    y = _valid_correlation(F.pad(x, (0, 0, 1, 1)), weight, m=4, r=3)
    return y if bias is None else y + bias[:, None, None]


def channels_last_bfloat16(x: Tensor) -> bool:
    """Whether a convolution of ``x`` runs in bfloat16 in the channels-last layout (a 1-D one as
    a 2-D one): inference on the CPU under autocast to bfloat16, outside :func:`direct`."""
    return (
        enabled()
        and x.device.type == "cpu"
        and torch.is_autocast_enabled("cpu")
        and torch.get_autocast_dtype("cpu") == torch.bfloat16
    )


def _as_channels_last(x: Tensor) -> Tensor:
    """``[B, C, H, W]``, or ``[B, C, L]`` seen as ``[B, C, 1, L]`` (an input, or a weight) ->
    bfloat16 in channels-last layout (no copy when ``x`` is bfloat16 with the channels innermost,
    as this module's outputs are)."""
    x = x.to(torch.bfloat16)
    return (x.unsqueeze(2) if x.ndim == 3 else x).contiguous(memory_format=torch.channels_last)


def conv1d_channels_last(
    x: Tensor, weight: Tensor, bias: Tensor | None, stride: int = 1, padding: int = 0, dilation: int = 1, groups: int = 1
) -> Tensor:
    """``F.conv1d`` of ``x [B, Cin, L]`` in bfloat16 as a channels-last 2-D convolution ->
    ``[B, Cout, L_out]`` with the channels innermost; ``weight`` and ``bias`` as
    :class:`_ChannelsLastWeights` gives them (``[Cout, Cin / groups, 1, k]`` channels-last).
    A stride-1 convolution of more than :data:`MAX_POSITIONS` outputs runs as a batch of pieces
    of that many outputs, each with its ``dilation * (k - 1)`` inputs of overlap: the same
    products, the same result."""
    x = _as_channels_last(x)
    reach = dilation * (weight.shape[3] - 1)
    outputs = x.shape[3] + 2 * padding - reach
    if stride != 1 or outputs <= MAX_POSITIONS:
        return F.conv2d(x, weight, bias, (1, stride), (0, padding), (1, dilation), groups).squeeze(2)
    batch, pieces = x.shape[0], -(-outputs // MAX_POSITIONS)
    padded = F.pad(x, (padding, padding + pieces * MAX_POSITIONS - outputs))
    windows = padded.unfold(3, MAX_POSITIONS + reach, MAX_POSITIONS).permute(0, 3, 1, 2, 4).flatten(0, 1)
    y = F.conv2d(windows.contiguous(memory_format=torch.channels_last), weight, bias, 1, 0, (1, dilation), groups)
    # [B * pieces, Cout, 1, P] channels-last is [B, pieces * P, Cout] in memory: a view
    y = y.permute(0, 2, 3, 1).reshape(batch, pieces * MAX_POSITIONS, -1).transpose(1, 2)
    return y[:, :, :outputs]


class _ChannelsLastWeights:
    """Mixin of the convolutions with a channels-last bfloat16 path: whether an input takes it, and
    the module's ``weight`` (and ``bias``) in bfloat16 for it, the weight channels-last (a 1-D one
    as ``[O, I, 1, k]``), made once and again only when the parameters change (their version)."""

    _cached: tuple[tuple[int, ...], Tensor, Tensor | None] | None = None

    def _runs_channels_last(self, x: Tensor) -> bool:
        """Whether this convolution of ``x`` takes the channels-last bfloat16 path
        (:func:`channels_last_bfloat16`, zero padding given as numbers)."""
        return channels_last_bfloat16(x) and self.padding_mode == "zeros" and isinstance(self.padding, tuple)  # type: ignore[attr-defined]

    def _bfloat16_parameters(self) -> tuple[Tensor, Tensor | None]:
        weight: Tensor = self.weight  # type: ignore[attr-defined]
        bias: Tensor | None = self.bias  # type: ignore[attr-defined]

        def convert() -> tuple[Tensor, Tensor | None]:
            return _as_channels_last(weight.detach()), None if bias is None else bias.detach().to(torch.bfloat16)

        if weight.is_inference() or (bias is not None and bias.is_inference()):
            return convert()  # made in inference mode: no version counter to follow, not cached
        key = (weight.data_ptr(), weight._version, -1 if bias is None else bias._version)
        if self._cached is None or self._cached[0] != key:
            self._cached = (key, *convert())
        return self._cached[1], self._cached[2]


class Conv1d(_ChannelsLastWeights, nn.Conv1d):
    """``nn.Conv1d`` that runs :func:`toom_cook_conv1d` where :func:`worth_it` says so and the
    convolution is a plain 'same' one (stride 1, odd kernel of :data:`MIN_TAPS_1D`+ taps), and
    as a channels-last 2-D convolution under bfloat16 autocast (:func:`channels_last_bfloat16`;
    zero padding only); same parameters and state-dict keys."""

    def forward(self, x: Tensor) -> Tensor:
        if self._runs_channels_last(x):
            weight, bias = self._bfloat16_parameters()
            return conv1d_channels_last(x, weight, bias, self.stride[0], self.padding[0], self.dilation[0], self.groups)
        same = (self.dilation[0] * (self.kernel_size[0] - 1) // 2,)
        plain = self.stride == (1,) and self.groups == 1 and self.padding == same
        if worth_it(x, self.weight) and self.kernel_size[0] >= MIN_TAPS_1D and plain:
            return toom_cook_conv1d(x, self.weight, self.bias, self.dilation[0])
        return super().forward(x)


class ConvTranspose1d(_ChannelsLastWeights, nn.ConvTranspose1d):
    """``nn.ConvTranspose1d`` that runs as a channels-last 2-D transposed convolution under
    bfloat16 autocast (:func:`channels_last_bfloat16`); same parameters and state-dict keys."""

    def forward(self, x: Tensor, output_size: list[int] | None = None) -> Tensor:
        if self._runs_channels_last(x) and output_size is None:
            weight, bias = self._bfloat16_parameters()
            y = F.conv_transpose2d(
                _as_channels_last(x), weight, bias, (1, self.stride[0]), (0, self.padding[0]),
                (0, self.output_padding[0]), self.groups, (1, self.dilation[0]),
            )
            return y.squeeze(2)
        return super().forward(x, output_size)


class Conv2d(_ChannelsLastWeights, nn.Conv2d):
    """``nn.Conv2d`` that runs :func:`toom_cook_conv2d` where :func:`worth_it` says so and the
    convolution is a plain 3x3 one (stride 1, padding 1), and channels-last under bfloat16
    autocast (:func:`channels_last_bfloat16`; zero padding only); same parameters and state-dict
    keys."""

    def forward(self, x: Tensor) -> Tensor:
        if self._runs_channels_last(x):
            weight, bias = self._bfloat16_parameters()
            return F.conv2d(_as_channels_last(x), weight, bias, self.stride, self.padding, self.dilation, self.groups)
        plain = self.stride == self.padding == self.dilation == (1, 1) and self.groups == 1
        if worth_it(x, self.weight) and self.kernel_size == (3, 3) and plain:
            return toom_cook_conv2d(x, self.weight, self.bias)
        return super().forward(x)
