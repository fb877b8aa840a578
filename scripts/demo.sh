#!/usr/bin/env bash
# Install the package into .venv and run the main job: compress a bundled clip into a .scdc
# file, show its header, decompress it, and unpack its tokens. It uses the small default model
# shipped in the package (--model small: no download); `--token-rate 100 --semantic-vocab-size 16384` instead
# fetches the official weights on first use (2.4 GB, see README: Weights).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
. .venv/bin/activate
pip install -q torch==2.13.0
pip install -q -e .
out="${TMPDIR:-/tmp}/semanticodec-demo"
mkdir -p "$out"
clip=semanticodec/data/example.flac
semanticodec compress "$clip" "$out/example.scdc" --model small --force
semanticodec info "$out/example.scdc"
semanticodec decompress "$out/example.scdc" "$out/example.wav" --model small --force
semanticodec unpack "$out/example.scdc" "$out/example_tokens.npy" --force
python -c "import numpy as np; t = np.load('$out/example_tokens.npy'); print('tokens:', t.shape, 'token pairs (semantic, acoustic)')"
echo "decoded audio: $out/example.wav"
