#!/usr/bin/env bash
# GPU checks of onlyif on one lent GPU machine (bench/README.md, "GPU checks"). From the repo root there:
#   bash bench/gpu_check.sh [--only a,b] [--budget SECONDS]
# First unpacks the carried packages into $SITE: the wheels in $CARRY (pydantic, jsonschema, transformers, ...) and
# its *.tar.xz (a Ray 2.60 cut down to core/Train/Tune/Data, DeepSpeed's installed files), which the image lacks.
# Then bench/gpu_check.py runs each check in its own process and writes checks.log and summary.json under $OUT.
set -u
OUT=${OUT:-/tmp/onlyif-gpu-out}
SRC=${SRC:-$PWD}
CARRY=${CARRY:-$SRC/.whl/carry}
SITE=${SITE:-/tmp/site}
PY=${PY:-python3}
mkdir -p "$OUT" "$SITE"
t0=$SECONDS
if [ ! -e "$SITE/.unpacked" ]; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" "$CARRY"/*.whl || exit 1
  for t in "$CARRY"/*.tar.xz; do tar -xJf "$t" -C "$SITE" || exit 1; done
  touch "$SITE/.unpacked"
fi
echo "unpacked in $((SECONDS - t0)) s"
export PYTHONPATH="$SRC:$SITE" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export RAY_AUTH_MODE=disabled RAY_USAGE_STATS_ENABLED=0 RAY_DEDUP_LOGS=0 TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0}
exec "$PY" "$SRC/bench/gpu_check.py" --out "$OUT" "$@"
