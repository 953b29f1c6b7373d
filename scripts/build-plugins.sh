#!/usr/bin/env bash
# Builds the example plugins, the plugin template (plugin-sdk/template) and the
# test plugins as WebAssembly components into
# $CARGO_TARGET_DIR/wasm32-wasip2/release/*.wasm.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
cargo build --quiet --target wasm32-wasip2 --release \
  -p vigil-plugin-motion -p vigil-plugin-zones -p vigil-plugin-webhook -p vigil-plugin-detect \
  -p vigil-plugin-template \
  -p vigil-test-plugin-misbehave -p vigil-test-plugin-recorder
