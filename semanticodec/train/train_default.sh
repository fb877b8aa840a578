#!/usr/bin/env bash
# Train the small default model from scratch on the Debian training corpus, stage by stage,
# exactly as the bundled semanticodec/data/default_model.safetensors was made (see
# semanticodec/data/MODEL_CARD.md for the times measured on 2 CPU cores).
# Usage: bash semanticodec/train/train_default.sh [RUN_DIR]   (default runs/default; resumable: rerun it)
# Set DEVICE=cuda to train on a GPU; multi-GPU: prefix a stage with `torchrun --nproc_per_node N -m`.
set -euo pipefail
cd "$(dirname "$0")/../.."
. .venv/bin/activate
run="${1:-runs/default}"
data="${SEMANTICODEC_TRAIN_DATA:-$HOME/.cache/semanticodec-bench/corpus-train}"
weights=speech=0.5,music=0.3,sound=0.2
common=(--data "$data" --domain-weights "$weights" ${DEVICE:+--device "$DEVICE"})
[ -f "$data/manifest.json" ] || python -m benchmarks.data --split train --output "$data"
semanticodec train mae "${common[@]}" -o "$run/mae"
semanticodec train codebook "${common[@]}" -o "$run/codebook" --mae "$run/mae/mae.safetensors"
semanticodec train vae "${common[@]}" -o "$run/vae" --train-steps 1200 --batch-size 8
semanticodec train vocoder "${common[@]}" -o "$run/vocoder" --train-steps 6400
semanticodec train ldm "${common[@]}" -o "$run/ldm" --train-steps 4200 --mae "$run/mae/mae.safetensors" \
  --vae "$run/vae/vae.safetensors" --codebook "$run/codebook/codebook_2048_0.npy"
semanticodec train assemble --codebook "$run/codebook/codebook_2048_0.npy" -o "$run/default_model.safetensors" --force \
  "$run/mae/mae.safetensors" "$run/vae/vae.safetensors" "$run/vocoder/vocoder.safetensors" "$run/ldm/ldm.safetensors"
# Entropy tables of the new model's tokens, stored in its weights file (the bundled tables were
# learned from a 2.7 h random part of the corpus, see MODEL_CARD.md).
semanticodec tokenize "$data" -o "$run/tokens" --checkpoint "$run/default_model.safetensors" --no-progress ${DEVICE:+--device "$DEVICE"}
semanticodec learn-tables "$run/tokens" --into "$run/default_model.safetensors"
echo "model: $run/default_model.safetensors"
