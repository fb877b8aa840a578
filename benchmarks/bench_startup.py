"""Start-up time of the light ``semanticodec`` commands (``--help``, ``info``, ``pack``, ``unpack``).

Each command is run as a fresh process ``RUNS`` times (after one warm-up run); the table gives
the median wall time (min and max beside it), the median CPU time (user + system of the
process, which a busy machine inflates far less than the wall time), the median wall time
relative to ``python -c "import torch"`` measured in the same run (the cost every command paid
when each of them imported the model code), and which heavy modules the command imports (from
one ``python -X importtime`` run).

    python -m benchmarks.bench_startup [--runs 10] [--scdc FILE]

``--scdc`` times ``info`` on an existing file (default: one packed from the bundled
``semanticodec/data/example_tokens.npy`` by the ``pack`` command being timed).
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HEAVY = ("torch", "faiss", "numba", "scipy")
"""Modules whose import the light commands should avoid."""

EXAMPLE_TOKENS = Path(__file__).resolve().parent.parent / "semanticodec" / "data" / "example_tokens.npy"


def _cpu_of_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _times(command: list[str], runs: int) -> tuple[list[float], list[float]]:
    """Wall and CPU seconds of ``runs`` runs of ``command``."""
    subprocess.run(command, capture_output=True, check=True)  # warm-up (file cache, bytecode)
    wall, cpu = [], []
    for _ in range(runs):
        start, start_cpu = time.perf_counter(), _cpu_of_children()
        subprocess.run(command, capture_output=True, check=True)
        wall.append(time.perf_counter() - start)
        cpu.append(_cpu_of_children() - start_cpu)
    return wall, cpu


def _imported(command: list[str]) -> list[str]:
    """Heavy top-level modules that ``command`` (a ``python ...`` command line) imports."""
    result = subprocess.run([command[0], "-X", "importtime", *command[1:]], capture_output=True, text=True, check=True)
    names = {line.rsplit("|", 1)[-1].strip().split(".")[0] for line in result.stderr.splitlines() if "|" in line}
    return [name for name in HEAVY if name in names]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="timed runs per command (default 10)")
    parser.add_argument("--scdc", type=Path, help="an existing .scdc file for `info` (default: packed from the example tokens)")
    args = parser.parse_args(argv)
    python = sys.executable
    cli = [python, "-m", "semanticodec"]
    with tempfile.TemporaryDirectory() as tmp:
        packed = Path(tmp, "example.scdc")
        pack = [*cli, "pack", str(EXAMPLE_TOKENS), str(packed), "--token-rate", "100", "--semantic-vocab-size", "16384", "--force"]
        scdc = args.scdc or packed
        if args.scdc is None:
            subprocess.run(pack, capture_output=True, check=True)
        commands = {
            'python -c "pass"': [python, "-c", "pass"],
            'python -c "import torch"': [python, "-c", "import torch"],
            "semanticodec --help": [*cli, "--help"],
            "semanticodec info FILE": [*cli, "info", str(scdc)],
            "semanticodec info --json FILE": [*cli, "info", "--json", str(scdc)],
            "semanticodec pack TOKENS FILE": pack,
            "semanticodec unpack FILE TOKENS": [*cli, "unpack", str(packed), str(Path(tmp, "tokens.npy")), "--force"],
        }
        if args.scdc is not None:
            del commands["semanticodec pack TOKENS FILE"], commands["semanticodec unpack FILE TOKENS"]
        rows = {name: _times(command, args.runs) for name, command in commands.items()}
        imports = {name: _imported(command) for name, command in commands.items()}
    torch_median = statistics.median(rows['python -c "import torch"'][0])
    print("| command | median wall (s) | min | max | median CPU (s) | wall / import torch | heavy imports |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for name, (wall, cpu) in rows.items():
        median = statistics.median(wall)
        heavy = ", ".join(imports[name]) or "none"
        print(
            f"| `{name}` | {median:.3f} | {min(wall):.3f} | {max(wall):.3f} | {statistics.median(cpu):.3f} "
            f"| {median / torch_median:.2f} | {heavy} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
