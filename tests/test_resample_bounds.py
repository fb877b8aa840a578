"""The resampler's cost is bounded for any sample rate (issue 14 item 7): an odd rate uses the
nearest ratio with at most MAX_PHASES polyphase branches; common rates keep their exact ratio."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from semanticodec.audio import MAX_PHASES, StreamResampler, _lowpass, resample, resample_ratio


@pytest.mark.parametrize("rate", [8000, 11025, 22050, 32000, 44100, 44056, 47952, 48000, 96000, 192000, 768000])
def test_common_rates_keep_their_exact_ratio(rate: int) -> None:
    ratio = Fraction(16000, rate)
    assert resample_ratio(rate, 16000) == (ratio.numerator, ratio.denominator)
    assert resample_ratio(16000, rate) == (ratio.denominator, ratio.numerator)


@pytest.mark.parametrize("rate", [767_999, 767_953, 1001, 99_991])
def test_odd_rates_are_bounded_and_accurate(rate: int) -> None:
    for orig, target in ((rate, 16000), (16000, rate)):
        up, down = resample_ratio(orig, target)
        assert max(up, down) <= MAX_PHASES and abs(up * orig / (target * down) - 1) < 1e-4
    up, down = resample_ratio(rate, 16000)
    assert len(_lowpass(up, down)) <= 128 * MAX_PHASES + 1
    t = np.arange(rate) / rate  # 1 s
    tone = min(rate, 16000) / 8  # well inside both bands
    out = resample(np.sin(2 * np.pi * tone * t).astype(np.float32), rate, 16000)
    assert len(out) == -(-len(t) * up // down)
    expected = np.sin(2 * np.pi * tone * np.arange(len(out)) / 16000 * (16000 * down / (up * rate)))
    np.testing.assert_allclose(out[1600:-1600], expected[1600:-1600], atol=2e-3)  # edges: the filter's reach


def test_stream_resampler_equals_resample_at_an_odd_rate() -> None:
    rate = 767_999
    x = np.random.default_rng(0).standard_normal(rate // 5).astype(np.float32)
    stream = StreamResampler(rate)
    chunks = [stream.push(x[i : i + 30_011], final=i + 30_011 >= len(x)) for i in range(0, len(x), 30_011)]
    np.testing.assert_allclose(np.concatenate(chunks), resample(x, rate), atol=1e-5)
