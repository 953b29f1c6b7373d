#!/usr/bin/env bash
# Runs the demo: simulated cameras, the host, the web page. Extra args go to `vigil demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
scripts/setup.sh
scripts/build-plugins.sh
exec cargo run --quiet -p vigil -- demo --plugins "$CARGO_TARGET_DIR/wasm32-wasip2/release" "$@"
