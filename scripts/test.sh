#!/usr/bin/env bash
# Runs the whole test suite: unit tests of every crate and the integration tests
# against real peers (GStreamer RTSP server, ffmpeg/ffprobe).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
scripts/setup.sh
# Build everything once, in the one dev profile, then run.
scripts/build-plugins.sh
cargo build --workspace --all-targets --quiet
cargo test --workspace --no-fail-fast -- --test-threads="${VIGIL_TEST_THREADS:-4}"
