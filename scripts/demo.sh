#!/usr/bin/env bash
# Runs the demo: simulated cameras, the host, the web page, the example plugins
# (motion, zones) and object detection on a camera that loops real footage with
# people (vtest.avi from Debian's opencv-doc). Extra args go to `vigil demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
scripts/setup.sh
scripts/build-plugins.sh
people="$CARGO_TARGET_DIR/demo-people.mp4"
vtest=/usr/share/doc/opencv-doc/examples/data/vtest.avi
if [ ! -f "$people" ] && [ -f "$vtest" ]; then
  ffmpeg -v error -y -i "$vtest" -c:v libx264 -bf 0 -g 10 -pix_fmt yuv420p -an "$people"
fi
extra=()
if [ -f "$people" ]; then
  extra=(--people-clip "$people" --models-dir "${VIGIL_CACHE:-$HOME/.cache/vigil}/models")
fi
exec cargo run --quiet -p vigil -- demo --plugins "$CARGO_TARGET_DIR/wasm32-wasip2/release" "${extra[@]}" "$@"
