"""Packaging and layering: only ``semanticodec`` is installed at the top level (``bitstream/``
and ``kmeans/`` are installed inside it), its data files exist, and the light parts of the
package do not load the heavy ones."""

from __future__ import annotations

import re
import subprocess
import sys
from importlib import resources
from pathlib import Path

from setuptools.config.pyprojecttoml import read_configuration

import semanticodec
from semanticodec import bitstream, kmeans

ROOT = Path(__file__).resolve().parents[1]


def test_only_semanticodec_is_installed_at_the_top_level() -> None:
    setup = read_configuration(ROOT / "pyproject.toml")["tool"]["setuptools"]
    packages = set(setup["packages"])
    assert {name.split(".")[0] for name in packages} == {"semanticodec"}
    folders = {"semanticodec": ROOT / "semanticodec", **{k: ROOT / v for k, v in setup["package-dir"].items()}}
    found = set()
    for name, folder in folders.items():
        found |= {".".join([name, *p.parent.relative_to(folder).parts]) for p in folder.rglob("__init__.py")}
    assert found == packages, f"packages on disk {sorted(found)} != packages installed {sorted(packages)}"
    assert Path(bitstream.__file__).parent == ROOT / "bitstream" and Path(kmeans.__file__).parent == ROOT / "kmeans"


def test_no_module_imports_the_bare_folder_names() -> None:
    pattern = re.compile(r"^\s*(from|import) (bitstream|kmeans)\b", re.M)
    offenders = [
        str(p.relative_to(ROOT))
        for folder in ("semanticodec", "bitstream", "kmeans", "tests", "benchmarks")
        for p in (ROOT / folder).rglob("*.py")
        if pattern.search(p.read_text(encoding="utf-8"))
    ]
    assert not offenders, f"import semanticodec.bitstream / semanticodec.kmeans instead: {offenders}"


def test_package_data_is_present() -> None:
    data = resources.files("semanticodec")
    for name in ("data/example_tokens.npy", "data/example.flac", "data/default_model.safetensors", "schema/official_tr100.json.gz"):
        assert data.joinpath(name).is_file(), name
    assert resources.files("semanticodec.bitstream").joinpath("FORMAT.md").is_file()
    assert semanticodec.__version__ == read_configuration(ROOT / "pyproject.toml")["project"]["version"]


def _imports(code: str) -> set[str]:
    """Top-level names of the modules a fresh interpreter has loaded after running ``code``."""
    script = f"{code}\nimport sys\nprint(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=ROOT)
    return set(out.stdout.split())


def test_inference_loads_neither_faiss_nor_the_kmeans_trainer() -> None:
    loaded = _imports("import semanticodec.codec, semanticodec.streaming")
    assert "torch" in loaded
    assert not {"faiss", "semanticodec.kmeans.trainer", "semanticodec.kmeans.engines", "semanticodec.train"} & loaded

