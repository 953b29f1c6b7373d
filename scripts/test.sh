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
# The dashboard tests run Chromium with up to nine WebRTC streams each: alone, after
# the rest, so they do not starve the timing-sensitive tests of CPU on two cores.
status=0
cargo test --workspace --no-fail-fast -- --test-threads="${VIGIL_TEST_THREADS:-4}" --skip dashboard:: || status=$?
# (`--workspace --tests`: the same feature set as above, so nothing is rebuilt.)
cargo test --workspace --tests -- --test-threads=1 dashboard:: || status=$?
exit "$status"
