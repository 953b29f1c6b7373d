//! Integration tests of the vigil host against real peers: GStreamer's RTSP server
//! (`tests/fixtures/gst_rtsp_server.py` under Debian's python3), ffmpeg/ffprobe as
//! HLS clients, headless Chromium (Debian's, driven by playwright-core from
//! `tests/browser/`) for WHEP/LL-HLS/MJPEG, the `webrtc` crate as a second WebRTC
//! peer, and our camera simulator. One binary, one module per area.
//! Every test dials loopback only.

mod support;

mod camsim;
mod config_cli;
mod dashboard;
mod detect;
mod hls;
mod ingest;
mod live;
mod plugins;
