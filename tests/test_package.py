"""Packaging and layering: only ``semanticodec`` is installed at the top level (``bitstream/``
and ``kmeans/`` are installed inside it), its data files exist, and the light parts of the
package do not load the heavy ones."""

from __future__ import annotations

import re
import subprocess
import sys
from importlib import resources
from pathlib import Path

import numpy as np
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



def test_the_format_and_the_light_commands_load_no_model_code(tmp_path: Path) -> None:
    tokens = np.load(ROOT / "semanticodec" / "data" / "example_tokens.npy")
    path = tmp_path / "example.scdc"
    path.write_bytes(bitstream.encode(tokens, bitstream.Header(100, 16384)))
    heavy = {"torch", "faiss", "numba", "scipy", "huggingface_hub", "semanticodec.model", "semanticodec.codec"}
    assert not heavy & _imports("import semanticodec.cli; semanticodec.cli.build_parser()")
    pack = ["pack", str(tmp_path / "t.npy"), str(tmp_path / "p.scdc"), "--token-rate", "100", "--semantic-vocab-size", "16384"]
    for argv in (["--help"], ["pack", "--help"], ["info", str(path)], ["unpack", str(path), str(tmp_path / "t.npy")], pack):
        loaded = _imports(f"from semanticodec.cli import main\nassert main({argv!r}) == 0")
        assert not heavy & loaded, f"semanticodec {argv[0]} loads {sorted(heavy & loaded)}"


def test_the_readme_layout_lists_every_module() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    bullets = text[text.index("## Layout") :].split("\n- ")
    folders = {"bitstream": "semanticodec.bitstream", "kmeans": "semanticodec.kmeans", "benchmarks": "`benchmarks/`"}
    sections = {folder: next(b for b in bullets if marker in b) for folder, marker in folders.items()}
    package = "\n".join(b for b in bullets if b not in sections.values())
    missing = []
    for folder in ("semanticodec", *folders):
        for path in sorted((ROOT / folder).rglob("*.py")):
            if path.name == "__init__.py":
                continue
            relative = path.relative_to(ROOT / folder).as_posix()
            where = sections.get(folder, package)
            name = relative if relative.startswith("nn/") else path.name
            if f"`{name}`" not in where and not (path.name.startswith("bench_") and "bench_*.py" in where):
                missing.append(f"{folder}/{relative}")
    assert not missing, f"README.md's Layout section does not list {missing}"


def test_the_readme_names_scripts_that_exist_and_ci_runs_its_test_command() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    named = set(re.findall(r"\bbash ([\w./-]+\.sh)\b", text))
    assert named, "README.md names no script"
    assert not [name for name in named if not (ROOT / name).is_file()], f"README.md names missing scripts: {sorted(named)}"
    ci = re.findall(r"^bash (\S+)$", (ROOT / ".ci" / "run").read_text(encoding="utf-8"), re.M)
    first_block = text[text.index("```bash\n") : text.index("```\n", text.index("```bash\n"))]
    assert len(ci) == 1 and f"bash {ci[0]}" in first_block, f".ci/run runs {ci}, not the README's test command"
