#!/usr/bin/env bash
# The ldm stage on a GPU lent for minutes (the `device` tool): `prepare` here, `run` there.
#
#   bash semanticodec/train/gpu_burst.sh prepare TRAIN_PACK_OPTIONS...   # here: .burst/pack and .burst/wheels
#   bash semanticodec/train/gpu_burst.sh run OUT [MINUTES] [TRAIN_BURST_OPTIONS...]   # there (default 8 minutes)
#
# prepare: writes the travel pack .burst/pack (`semanticodec train pack`, options passed through,
# e.g. those of the `train ldm` run to continue plus --init RUN/checkpoint.pt) and downloads, for
# CPython 3.12 on x86-64, the wheels that the GPU machine lacks: soundfile (its bundled libsndfile
# decodes Opus) and cffi. .burst/ is git-ignored; name it in the run's carry list.
# run: installs those wheels into a temporary folder, lets Python import the package from this
# checkout without installing it (a folder of links maps bitstream/ and kmeans/ into the package,
# as pyproject.toml's package-dir does), and trains (`semanticodec train burst`) into OUT.
# PACK (default .burst/pack), PYTHON (default python3) and DEVICE (default cuda) may be set.
set -euo pipefail
cd "$(dirname "$0")/../.."
verb="${1:-}"
shift || true
case "$verb" in
prepare)
  . .venv/bin/activate
  mkdir -p .burst
  semanticodec train pack "$@" -o .burst/pack --force
  rm -rf .burst/wheels
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .burst/wheels soundfile==0.14.0 cffi==2.1.1
  du -sh .burst/pack .burst/wheels
  ;;
run)
  [ $# -ge 1 ] || { echo "usage: bash semanticodec/train/gpu_burst.sh run OUT [MINUTES] [options]" >&2; exit 2; }
  out="$1"
  minutes="${2:-8}"
  shift $(($# >= 2 ? 2 : 1))
  python="${PYTHON:-python3}"
  site="$(mktemp -d "${TMPDIR:-/tmp}/semanticodec-burst.XXXXXX")"
  trap 'rm -rf "$site"' EXIT
  if compgen -G ".burst/wheels/*.whl" >/dev/null; then
    "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$site/wheels" .burst/wheels/*.whl
  fi
  mkdir -p "$site/src/semanticodec"
  ln -s "$PWD"/semanticodec/* "$site/src/semanticodec/"
  ln -s "$PWD/bitstream" "$PWD/kmeans" "$site/src/semanticodec/"
  export PYTHONPATH="$site/src:$site/wheels${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
  mkdir -p "$out"
  "$python" -P -c "import semanticodec.kmeans as k, soundfile as s, torch; print('semanticodec', k.__file__, '| soundfile', s.__file__, \
'| libsndfile', s.__libsndfile_version__, '| torch', torch.__version__, '| cuda', torch.cuda.is_available())"
  "$python" -P -m semanticodec train burst "${PACK:-.burst/pack}" -o "$out" --minutes "$minutes" --device "${DEVICE:-cuda}" \
    --no-progress "$@" 2>&1 | tee "$out/burst.log"
  ;;
*)
  echo "usage: bash semanticodec/train/gpu_burst.sh prepare|run ..." >&2
  exit 2
  ;;
esac
