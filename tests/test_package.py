"""Packaging and layering: only ``semanticodec`` is installed at the top level (``bitstream/``
and ``kmeans/`` are installed inside it), its data files exist, and the light parts of the
package do not load the heavy ones."""

from __future__ import annotations

import ast
import importlib.util
import os
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


def _module_files() -> dict[str, Path]:
    """Installed module name -> source file, for every module of the package (the folders
    mapped into it included)."""
    setup = read_configuration(ROOT / "pyproject.toml")["tool"]["setuptools"]
    folders = {"semanticodec": ROOT / "semanticodec", **{k: ROOT / v for k, v in setup["package-dir"].items()}}
    modules = {}
    for package, folder in folders.items():
        for path in folder.rglob("*.py"):
            parts = path.relative_to(folder).with_suffix("").parts
            modules[".".join([package, *parts[: -1 if parts[-1] == "__init__" else None]])] = path
    return modules


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the package modules it imports anywhere in its code: at the top, inside
    functions and under ``TYPE_CHECKING`` alike (``from package import name`` counts as an
    import of the submodule ``package.name`` when there is one)."""

    def resolve(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1]) if node.level else ""
                module = ".".join(filter(None, [base, node.module]))
                targets |= {f"{module}.{a.name}" if f"{module}.{a.name}" in modules else module for a in node.names}
        graph[name] = {r for r in map(resolve, targets) if r is not None and r != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in sorted(graph.get(node, ())):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = [stack.pop()]
            while component[-1] != node:
                component.append(stack.pop())
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_import_graph_has_no_cycle_even_through_imports_inside_functions() -> None:
    """A cycle hidden by importing inside a function is still a cycle: the layering is one-way."""
    graph = import_graph(_module_files())
    assert "semanticodec.bitstream.resync" in graph["semanticodec.bitstream.stream"]  # the graph sees imports
    assert not cycles(graph), f"import cycles: {cycles(graph)}"


def test_the_cycle_check_finds_a_cycle_through_a_function_level_import(tmp_path: Path) -> None:
    modules = {"semanticodec.low": tmp_path / "low.py", "semanticodec.high": tmp_path / "high.py", "semanticodec.leaf": tmp_path / "leaf.py"}
    modules["semanticodec.high"].write_text("from semanticodec import leaf\nfrom semanticodec.low import thing\n")
    modules["semanticodec.low"].write_text("def thing():\n    from semanticodec.high import other\n")
    modules["semanticodec.leaf"].write_text("import numpy\n")
    graph = import_graph(modules)
    assert graph == {"semanticodec.high": {"semanticodec.leaf", "semanticodec.low"}, "semanticodec.low": {"semanticodec.high"}, "semanticodec.leaf": set()}
    assert cycles(graph) == [["semanticodec.high", "semanticodec.low"]]


def test_the_typecheck_tree_lays_out_every_module_as_installed(tmp_path: Path) -> None:
    """mypy reads the package from the tree of links that tests/typecheck.py makes: every
    installed module must be found there under its installed name, and the paths mypy reports
    map back to the repository's files."""
    spec = importlib.util.spec_from_file_location("typecheck", ROOT / "tests" / "typecheck.py")
    typecheck = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(typecheck)
    tree = tmp_path / "mypy"
    prefixes = typecheck.link_tree(tree)
    for name, path in _module_files().items():
        parts = name.split(".")
        laid = tree.joinpath(*parts, "__init__.py") if path.name == "__init__.py" else tree.joinpath(*parts[:-1], f"{parts[-1]}.py")
        assert laid.resolve() == path.resolve(), name
    reported = Path(os.path.relpath(tree / "semanticodec" / "bitstream" / "stream.py", ROOT)).as_posix()
    prefix = max((p for p in prefixes if reported.startswith(p)), key=len)
    assert prefixes[prefix] + reported[len(prefix) :] == "bitstream/stream.py"


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
