//! Integration tests of the vigil host against real peers: GStreamer's RTSP server
//! (`tests/fixtures/gst_rtsp_server.py` under Debian's python3), ffmpeg/ffprobe as
//! HLS clients, and our camera simulator. One binary, one module per area.
//! Every test dials loopback only.

mod support;

mod camsim;
mod config_cli;
mod hls;
mod ingest;
