#!/usr/bin/env bash
# Runs the demo: simulated cameras, the host, the web page. Extra args go to `vigil demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
scripts/setup.sh
exec cargo run --quiet -p vigil -- demo "$@"
