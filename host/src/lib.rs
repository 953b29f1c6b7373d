//! Vigil: a video management system host.
//!
//! Bird's-eye view and invariants live in `ARCHITECTURE.md` at the repository root.
//! Module map:
//! - [`config`]: the `vigil.toml` model and its validation (knows nothing of media).
//! - [`media`]: frames, stream parameters and the per-camera [`media::Broadcaster`]
//!   (knows nothing of RTSP, HTTP or files).
//! - [`ingest`]: RTSP sources via `retina` and the per-camera supervisor.
//! - [`hls`]: the fMP4/CMAF muxer and LL-HLS playlists.
//! - [`codec`]: H.264 decoding, scaling and JPEG encoding (openh264, libjpeg-turbo).
//! - [`snapshot`], [`mjpeg`]: JPEG outputs built on [`codec`].
//! - [`stats`]: per-camera output counters.
//! - [`whep`]: WebRTC playback (WHEP) with the `webrtc` crate; [`whep_client`] the
//!   viewer side, for `vigil probe`, tests and benchmarks.
//! - [`api`]: the HTTP surface (JSON API, HLS endpoints, the minimal web page).
//! - [`camsim`]: the RTSP camera simulator used by the demo, tests and benchmarks.
//! - [`app`]: wiring: builds cameras from config and runs the server.

pub mod api;
pub mod api_plugins;
pub mod app;
pub mod camsim;
pub mod codec;
pub mod config;
pub mod error;
pub mod events;
pub mod hls;
pub mod inference;
pub mod ingest;
pub mod media;
pub mod mjpeg;
pub mod plugins;
pub mod snapshot;
pub mod stats;
pub mod whep;
pub mod whep_client;
