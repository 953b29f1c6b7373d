#!/usr/bin/env bash
# Installs what the demo and the tests need on a fresh Debian machine of this kind,
# skipping whatever is already present. Safe to run repeatedly.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
have() { command -v "$1" >/dev/null 2>&1; }
have nasm || need_apt+=(nasm)
have cmake || need_apt+=(cmake)   # builds libjpeg-turbo (turbojpeg crate)
have ffmpeg || need_apt+=(ffmpeg)
have ffprobe || need_apt+=(ffmpeg)
have gst-launch-1.0 || need_apt+=(gstreamer1.0-tools)
pkg_missing() { ! dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
for p in gstreamer1.0-rtsp gir1.2-gst-rtsp-server-1.0 python3-gi gir1.2-gstreamer-1.0 \
         gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad \
         gstreamer1.0-plugins-ugly gstreamer1.0-libav; do
  pkg_missing "$p" && need_apt+=("$p")
done
# Browser tests drive Debian's Chromium through playwright-core (never a downloaded browser).
have chromium || need_apt+=(chromium)
# Real footage with people for the detection tests (vtest.avi).
pkg_missing opencv-doc && need_apt+=(opencv-doc)
have node || need_apt+=(nodejs npm)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${need_apt[*]}"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

if have rustup && ! rustup target list --installed | grep -q '^wasm32-wasip2$'; then
  echo "setup: adding the wasm32-wasip2 target"
  rustup target add wasm32-wasip2
fi

if [ ! -f host/web/node_modules/hls.js/dist/hls.min.js ]; then
  echo "setup: installing front-end packages (hls.js) from npm"
  npm ci --prefix host/web --no-audit --no-fund >/dev/null
fi
if [ ! -d tests/browser/node_modules/playwright-core ]; then
  echo "setup: installing the browser-test driver (playwright-core) from npm"
  npm ci --prefix tests/browser --no-audit --no-fund >/dev/null
fi
# The object-detection model (converted from the original Darknet weights; cached,
# nothing downloads at run time). See docs/models/yolov3-tiny.md.
scripts/fetch-model.sh >/dev/null
