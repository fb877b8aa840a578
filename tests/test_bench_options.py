"""The benchmarks' options use the project's names (``--semantic-vocab-size``, ``-o/--output``);
the old spellings still parse into the same setting, with a deprecation warning on stderr."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from benchmarks import bench_codec, bench_kmeans, bench_samplers, data, quality, stages


@pytest.mark.parametrize(
    ("parser", "argv", "old", "dest", "value"),
    [
        (bench_codec.build_parser, [], "--vocab", "semantic_vocab_size", "4096"),
        (bench_kmeans.build_parser, ["engines"], "--k", "semantic_vocab_size", "512"),
        (bench_kmeans.build_parser, ["scale-n"], "--k", "semantic_vocab_size", "512"),
        (bench_kmeans.build_parser, ["gpu"], "--k", "semantic_vocab_size", "512"),
        (bench_kmeans.build_parser, ["scale-k"], "--ks", "semantic_vocab_sizes", "64,128"),
    ],
)
def test_the_vocabulary_size_option_and_its_old_spelling(capsys, parser, argv: list[str], old: str, dest: str, value: str) -> None:
    new = "--" + dest.replace("_", "-")
    args = parser().parse_args([*argv, new, value])
    expected = getattr(args, dest)
    assert str(expected) == value and not capsys.readouterr().err
    args = parser().parse_args([*argv, old, value])
    assert getattr(args, dest) == expected
    err = capsys.readouterr().err
    assert f"{old} is deprecated" in err and f"use {new}" in err


def test_the_kmeans_scaling_point_passes_the_new_option() -> None:
    args = bench_kmeans.build_parser().parse_args(["point", "--shards", "s", "--shard-count", "1", "--semantic-vocab-size", "8", "--iters", "1"])
    assert args.semantic_vocab_size == 8


class _Parsed(Exception):
    """Raised in place of running a benchmark once its options are parsed."""


@pytest.mark.parametrize("module", [bench_samplers, data, quality, stages])
def test_the_output_folder_option_and_its_old_spelling(capsys, monkeypatch, module, tmp_path: Path) -> None:
    parse = argparse.ArgumentParser.parse_args
    parsed = []

    def parse_only(self, args=None, namespace=None):
        parsed.append(parse(self, args, namespace))
        raise _Parsed

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", parse_only)
    for option in ("-o", "--output", "--out"):
        with pytest.raises(_Parsed):
            module.main([option, str(tmp_path)])
    assert [args.out for args in parsed] == [tmp_path] * 3
    err = capsys.readouterr().err
    assert err.count("--out is deprecated") == 1 and "use --output" in err
