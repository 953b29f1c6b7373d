//! Encoded packets for output plugins that ask for them: a task per instance
//! reads the camera's broadcaster and queues video access units (Annex B, with
//! parameter sets before key frames) and/or audio frames. It starts at a key
//! frame. When the instance's inbox is full the task waits (a burst such as the
//! GOP cache at start is absorbed); if the plugin stays behind, the camera's ring
//! drops this reader's backlog and reports the lag. After a lag or a cleared
//! inbox (a restart) the missed packets are counted as drops and video resumes at
//! the next key frame; and every fresh instance (start, restart, new
//! configuration) skips queued packets until a video key frame. Events share the
//! inbox but never push a packet out (`Inbox::push_event` drops the oldest event,
//! or the new one). Nothing here can block ingest: the ring never waits for its
//! readers.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::bindings::analytics::vigil::plugin::types;
use super::instance::{Inbox, Input};
use super::runtime::PacketRequest;
use crate::ingest::Camera;
use crate::media::{AudioCodec, Frame, Recv, TrackKind, VideoCodec};

/// A packet on its way to a plugin.
#[derive(Debug)]
pub struct PacketInput {
    pub video: bool,
    pub codec: &'static str,
    pub pts_ns: i64,
    pub key: bool,
    pub generation: u64,
    pub data: Vec<u8>,
}

impl PacketInput {
    /// The host's frame as a plugin packet.
    pub fn from_frame(f: &Frame) -> Option<PacketInput> {
        let (video, codec, rate) = match f.track {
            TrackKind::Video => (
                true,
                match f.info.video.codec {
                    VideoCodec::H264 => "h264",
                    VideoCodec::H265 => "h265",
                },
                f.info.video.timescale,
            ),
            TrackKind::Audio => {
                let a = f.info.audio.as_ref()?;
                let codec = match a.codec {
                    AudioCodec::Aac => "aac",
                    AudioCodec::Pcmu => "pcmu",
                    AudioCodec::Pcma => "pcma",
                };
                (false, codec, a.sample_rate)
            }
        };
        let data = if video {
            let mut out = Vec::with_capacity(f.data.len() + 64);
            crate::media::write_annex_b(f, true, &mut out);
            out
        } else {
            f.data.to_vec()
        };
        Some(PacketInput {
            video,
            codec,
            pts_ns: (i128::from(f.pts) * 1_000_000_000 / i128::from(rate.max(1))) as i64,
            key: f.key,
            generation: f.info.generation,
            data,
        })
    }

    pub fn to_wit(&self) -> types::Packet {
        types::Packet {
            track: if self.video {
                types::Track::Video
            } else {
                types::Track::Audio
            },
            codec: self.codec.to_string(),
            pts_ns: self.pts_ns,
            key: self.key,
            generation: self.generation,
            data: self.data.clone(),
        }
    }
}

/// Feeds `inbox` with the camera's packets until aborted or the camera ends.
pub async fn pump(cam: Arc<Camera>, request: PacketRequest, inbox: Arc<Inbox>) {
    let mut sub = cam.broadcaster.subscribe();
    let mut need_key = true;
    let mut dropped = inbox.dropped.load(Ordering::Relaxed);
    while let Some(r) = sub.recv().await {
        let f = match r {
            Recv::Lagged { missed } => {
                // The plugin fell further behind than the camera's ring holds.
                dropped = inbox.dropped.fetch_add(missed, Ordering::Relaxed) + missed;
                need_key = true;
                continue;
            }
            Recv::Frame(f) => f,
        };
        let now_dropped = inbox.dropped.load(Ordering::Relaxed);
        if now_dropped != dropped {
            dropped = now_dropped;
            need_key = true;
        }
        let wanted = match f.track {
            TrackKind::Video => request.video,
            TrackKind::Audio => request.audio,
        };
        if f.track == TrackKind::Video && need_key {
            if !f.key {
                continue;
            }
            need_key = false;
        }
        // Audio waits for the first video key frame too (when video is wanted),
        // so a recording starts with both.
        if !wanted || (request.video && need_key) {
            continue;
        }
        if let Some(p) = PacketInput::from_frame(&f) {
            // Waits while the plugin's queue is full; the camera's ring keeps
            // going meanwhile and reports what this pump missed as `Lagged`.
            inbox.push_wait(Input::Packet(Arc::new(p))).await;
        }
    }
}
