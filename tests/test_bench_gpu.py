"""The GPU speed script runs end to end (on the CPU, with the tiny model in place of the full one)."""

from __future__ import annotations

import pytest
import torch

from benchmarks import bench_gpu
from tiny import tiny_model


def test_gpu_script_prints_one_row_per_setting(one_thread, monkeypatch, capsys):
    monkeypatch.setattr(bench_gpu, "build", lambda tiny: tiny_model())
    argv = ["--device", "cpu", "--seconds", "3", "--batch-sizes", "1", "2", "--precisions", "float32", "bfloat16",
            "--decode", "unipc:2", "ddim:5"]
    assert bench_gpu.main(argv) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ") and "RTF" not in line]
    assert len(rows) == 2 * 2 * 2
    assert rows[0].startswith("| float32 | 1 | unipc 2 |") and rows[-1].startswith("| bfloat16 | 2 | ddim 5 |")


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present")
def test_gpu_script_without_cuda_says_so(capsys):
    assert bench_gpu.main([]) == 2
    assert "no CUDA device" in capsys.readouterr().err
