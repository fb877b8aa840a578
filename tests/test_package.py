"""Packaging: the three top-level packages come from this distribution, and its data files exist."""

from __future__ import annotations

from importlib import metadata, resources
from pathlib import Path

import bitstream
import kmeans
import semanticodec


def test_top_level_packages_are_ours() -> None:
    root = Path(semanticodec.__file__).resolve().parent.parent
    for module in (kmeans, bitstream):
        assert Path(module.__file__).resolve().parent.parent == root, f"{module.__name__} comes from {module.__file__}"
    others = []
    for dist in metadata.distributions():
        if dist.metadata["Name"] == "semanticodec":
            continue
        tops = set((dist.read_text("top_level.txt") or "").split())
        tops |= {f.parts[0] for f in dist.files or () if len(f.parts) > 1 and f.suffix == ".py"}
        others += [(dist.metadata["Name"], name) for name in sorted(tops) if name in ("kmeans", "bitstream", "semanticodec")]
    assert not others, f"installed distributions also provide {others}"


def test_package_data_is_present() -> None:
    data = resources.files("semanticodec")
    for name in ("data/example_tokens.npy", "data/example.flac", "schema/official_tr100.json.gz"):
        assert data.joinpath(name).is_file(), name
    assert resources.files("bitstream").joinpath("FORMAT.md").is_file()
