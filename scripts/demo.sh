#!/usr/bin/env bash
# Install the package into .venv and run the main job.
# With SemantiCodec weights configured (SEMANTICODEC_CHECKPOINT, or the official files in the
# Hugging Face cache) it compresses and decompresses a bundled clip; without weights it packs
# the bundled example tokens into a .scdc file, shows its header and unpacks it again.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
. .venv/bin/activate
pip install -q torch==2.13.0
pip install -q -e .
out="${TMPDIR:-/tmp}/semanticodec-demo"
mkdir -p "$out"
if python -c "from semanticodec.weights import load_model; load_model()" >/dev/null 2>&1; then
  clip=semanticodec/data/example.flac
  semanticodec compress "$clip" "$out/example.scdc" --force
  semanticodec info "$out/example.scdc"
  semanticodec decompress "$out/example.scdc" "$out/example.wav" --force
  echo "decoded audio: $out/example.wav"
else
  echo "No SemantiCodec weights configured: showing the bitstream on the bundled example tokens."
  semanticodec pack semanticodec/data/example_tokens.npy "$out/example.scdc" --token-rate 100 --semantic-vocab 16384 --force
  semanticodec info "$out/example.scdc"
  semanticodec unpack "$out/example.scdc" "$out/example_tokens.npy" --force
  python -c "import numpy as np; a = np.load('semanticodec/data/example_tokens.npy'); b = np.load('$out/example_tokens.npy'); assert (a == b).all(); print('round trip OK:', b.shape, 'token pairs')"
fi
