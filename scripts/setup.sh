#!/usr/bin/env bash
# Create .venv in the project root and install everything from the project's own files.
# Idempotent: a second run with unchanged requirements does nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
LLAMA_VERSION=0.3.36
CACHE="${CHAPERONE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/chaperone}"

if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  "$PYTHON" -m venv .venv
fi

stamp=.venv/.chaperone-installed
want="$(cat requirements.txt requirements-dev.txt constraints.txt scripts/setup.sh | sha256sum | cut -c1-16)"
if [ "$(cat "$stamp" 2>/dev/null || true)" = "$want" ]; then
  exit 0
fi

# llama-cpp-python compiles llama.cpp from source. A native build (-march=native) on CPUs with AMX
# (Sapphire Rapids and later) crashes in the AMX matmul kernel on virtual machines that do not grant AMX
# state, so on x86-64 we name the instruction sets ourselves from /proc/cpuinfo, AMX never among them.
# AVX-512 reads prompts ~1.5x faster than AVX2 here. The wheel is cached per variant and built once.
arch="$(uname -m)"
cpu_flags=" $(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null | cut -d: -f2) "
has() { [[ "$cpu_flags" == *" $1 "* ]]; }
if [ "$arch" = "x86_64" ] && has avx2 && has fma && has f16c; then
  variant="x86_64-avx2"
  llama_cmake="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON"
  if has avx512f && has avx512cd && has avx512vl && has avx512dq && has avx512bw; then
    variant="x86_64-avx512"; llama_cmake+=" -DGGML_AVX512=ON"
    if has avx512_vnni; then variant+="-vnni"; llama_cmake+=" -DGGML_AVX512_VNNI=ON"; fi
    if has avx512vbmi; then variant+="-vbmi"; llama_cmake+=" -DGGML_AVX512_VBMI=ON"; fi
    if has avx512_bf16; then variant+="-bf16"; llama_cmake+=" -DGGML_AVX512_BF16=ON"; fi
  fi
  if has avx_vnni; then variant+="-avxvnni"; llama_cmake+=" -DGGML_AVX_VNNI=ON"; fi
else
  variant="$arch-native"  # older x86 (no AMX either) or ARM: llama.cpp's own native build
  llama_cmake=""
fi
wheels="$CACHE/wheels/llama-cpp-python-$LLAMA_VERSION-$variant"
if ! ls "$wheels"/llama_cpp_python-"$LLAMA_VERSION"-*.whl >/dev/null 2>&1; then
  echo "setup: building llama-cpp-python $LLAMA_VERSION ($variant) from source, once: about 5 minutes on 2 cores"
  mkdir -p "$wheels"
  CMAKE_ARGS="$llama_cmake" .venv/bin/pip wheel --quiet --no-deps --no-cache-dir \
    "llama-cpp-python==$LLAMA_VERSION" -w "$wheels"
fi

echo "setup: installing requirements into .venv"
# The llama wheel first, forced: an existing .venv may hold the same version built for another variant.
.venv/bin/pip install --quiet --disable-pip-version-check --force-reinstall --no-deps \
  "$wheels"/llama_cpp_python-"$LLAMA_VERSION"-*.whl
.venv/bin/pip install --quiet --disable-pip-version-check --find-links "$wheels" -r requirements-dev.txt
echo "$want" > "$stamp"
