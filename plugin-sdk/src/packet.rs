//! Encoded media for output plugins.

use crate::wit::types;

/// A media track.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Track {
    /// H.264 or H.265 video.
    Video,
    /// AAC or G.711 audio.
    Audio,
}

/// An encoded frame as the camera sent it (no decoding, no transcoding), for
/// [`crate::OutputPlugin::on_packet`]. Ask for packets with
/// [`crate::Manifest::packets`].
///
/// ```
/// use vigil_plugin_sdk::{Packet, Track};
/// let p = Packet {
///     track: Track::Video,
///     codec: "h264".into(),
///     pts_ns: 66_666_667,
///     key: true,
///     generation: 1,
///     data: vec![0, 0, 0, 1, 0x67],
/// };
/// assert!(p.is_video() && p.key);
/// assert_eq!(p.pts_ms(), 66);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packet {
    /// Video or audio.
    pub track: Track,
    /// `h264`, `h265`, `aac`, `pcmu` or `pcma`.
    pub codec: String,
    /// Presentation time on the camera's clock, nanoseconds (restarts with a new
    /// [`Packet::generation`]).
    pub pts_ns: i64,
    /// Video: a key frame a decoder can start at. Audio: always true.
    pub key: bool,
    /// Increases when the stream starts over with new parameters (a reconnect, a
    /// resolution change).
    pub generation: u64,
    /// Video: one access unit in Annex B form, with the parameter sets in front of
    /// every key frame. Audio: one raw AAC frame or a run of G.711 samples.
    pub data: Vec<u8>,
}

impl Packet {
    /// Whether this is a video packet.
    ///
    /// ```
    /// # use vigil_plugin_sdk::{Packet, Track};
    /// let p = Packet { track: Track::Audio, codec: "aac".into(), pts_ns: 0, key: true, generation: 1, data: vec![] };
    /// assert!(!p.is_video());
    /// ```
    pub fn is_video(&self) -> bool {
        self.track == Track::Video
    }

    /// The presentation time in milliseconds.
    ///
    /// ```
    /// # use vigil_plugin_sdk::{Packet, Track};
    /// let p = Packet { track: Track::Video, codec: "h264".into(), pts_ns: 2_500_000_000, key: false, generation: 1, data: vec![] };
    /// assert_eq!(p.pts_ms(), 2500);
    /// ```
    pub fn pts_ms(&self) -> i64 {
        self.pts_ns / 1_000_000
    }

    pub(crate) fn from_wit(p: types::Packet) -> Self {
        Packet {
            track: match p.track {
                types::Track::Video => Track::Video,
                types::Track::Audio => Track::Audio,
            },
            codec: p.codec,
            pts_ns: p.pts_ns,
            key: p.key,
            generation: p.generation,
            data: p.data,
        }
    }
}
