"""The decode-speed benchmark's stage variants switch what they name."""

from __future__ import annotations

import pytest
import torch

from benchmarks import bench_decode
from semanticodec.nn import fastconv


@pytest.mark.parametrize(
    ("variant", "autocast", "shortcuts"),
    [("direct", False, False), ("fast", False, True), ("bfloat16 direct", True, False), ("bfloat16", True, True)],
)
def test_stage_variants(variant: str, autocast: bool, shortcuts: bool) -> None:
    with torch.inference_mode(), bench_decode._variant(variant):
        assert torch.is_autocast_enabled("cpu") is autocast
        assert fastconv.enabled() is shortcuts
    assert not torch.is_autocast_enabled("cpu") and variant in bench_decode.STAGE_VARIANTS
