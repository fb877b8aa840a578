#!/usr/bin/env bash
# Install what the tests need into .venv and run the default test suite.
# Extra pytest arguments are passed through (e.g. `bash scripts/test.sh -m slow`).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
. .venv/bin/activate
pip install -q torch==2.13.0
pip install -q -e ".[test]"
export HF_HUB_OFFLINE=1 NUMBA_NUM_THREADS=2
set +e
python -m pytest "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "pytest collected no tests: failing" >&2
  exit 1
fi
exit "$rc"
