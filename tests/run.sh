#!/usr/bin/env bash
# Install what the tests need into .venv, lint with ruff, type-check the core with mypy
# (settings of both in pyproject.toml) and run the default test suite. Extra pytest arguments are passed through (e.g. `bash tests/run.sh -m slow`).
set -euo pipefail
cd "$(dirname "$0")/.."
# Classic codecs and audio tools of the benchmark tests (Debian); skipped where apt is unavailable.
tools="codec2 opus-tools ffmpeg fluidsynth sox"
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  for tool in c2enc opusenc ffmpeg fluidsynth sox; do
    if ! command -v "$tool" >/dev/null; then
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $tools >/dev/null
      break
    fi
  done
fi
python3 -m venv .venv
. .venv/bin/activate
pip install -q torch==2.13.0
pip install -q -e ".[test,bench]"
export HF_HUB_OFFLINE=1 NUMBA_NUM_THREADS=2
ruff check .
python tests/typecheck.py
set +e
python -m pytest "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "pytest collected no tests: failing" >&2
  exit 1
fi
exit "$rc"
