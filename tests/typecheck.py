"""Run mypy on the typed core (the modules and settings of ``[tool.mypy]`` in pyproject.toml).

``bitstream/`` and ``kmeans/`` are installed inside the ``semanticodec`` package by the build's
package mapping (``[tool.setuptools.package-dir]``), which mypy cannot follow: it reads the
package from ``build/mypy``, a tree of symbolic links in the installed layout made here (its
``mypy_path``), and the paths it reports are mapped back to the repository's files.

    python tests/typecheck.py [mypy options]
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools.config.pyprojecttoml import read_configuration

ROOT = Path(__file__).resolve().parents[1]
TREE = ROOT / "build" / "mypy"


def link_tree(tree: Path = TREE) -> dict[str, str]:
    """Lay out ``semanticodec`` under ``tree`` as installed (replacing what is there); returns
    the path prefixes mypy reports (relative to the repository) and the repository folders they
    stand for."""
    mapping = read_configuration(ROOT / "pyproject.toml")["tool"]["setuptools"]["package-dir"]
    shutil.rmtree(tree, ignore_errors=True)
    package = tree / "semanticodec"
    package.mkdir(parents=True)
    for entry in (ROOT / "semanticodec").iterdir():
        (package / entry.name).symlink_to(entry)
    links = {package: "semanticodec"}
    for name, folder in mapping.items():
        link = tree.joinpath(*name.split("."))
        link.symlink_to(ROOT / folder)
        links[link] = folder
    return {f"{Path(os.path.relpath(link, ROOT)).as_posix()}/": f"{folder}/" for link, folder in links.items()}


def main(argv: list[str]) -> int:
    folders = sorted(link_tree().items(), key=lambda item: -len(item[0]))
    done = subprocess.run([sys.executable, "-m", "mypy", *argv], cwd=ROOT, capture_output=True, text=True, env=os.environ)
    for line in done.stdout.splitlines():
        for prefix, folder in folders:
            if line.startswith(prefix):
                line = folder + line[len(prefix) :]
                break
        print(line)
    print(done.stderr, end="", file=sys.stderr)
    return done.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
