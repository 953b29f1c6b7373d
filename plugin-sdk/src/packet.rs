//! Encoded media for output plugins.

use crate::wit::types;

/// A media track: which kind of [`Packet`] this is.
///
/// ```
/// use vigil_plugin_sdk::{Packet, Track};
/// fn extension(p: &Packet) -> &'static str {
///     match p.track {
///         Track::Video => "h264",
///         Track::Audio => "aac",
///     }
/// }
/// let p = Packet { track: Track::Audio, codec: "aac".into(), pts_ns: 0, key: true, generation: 1, data: vec![] };
/// assert_eq!(extension(&p), "aac");
/// ```
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
/// Packets arrive in the camera's order, starting at a video key frame (audio
/// too waits for it when video is asked for). When the plugin falls behind, the
/// host drops packets and resumes video at the next key frame, so a plugin
/// never gets a group of pictures with a hole in it; watch
/// [`Packet::generation`] to know when the stream started over.
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
    /// resolution change): a recorder starts a new file, a decoder resets. The
    /// first packet of a new generation is a key frame.
    pub generation: u64,
    /// Video: one access unit in Annex B form (start codes), with the parameter
    /// sets (VPS/SPS/PPS) in front of every key frame, so each key frame can be
    /// decoded on its own. Audio: one raw AAC frame (no ADTS header) or a run of
    /// G.711 samples.
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

    /// The presentation time in milliseconds (rounded towards zero).
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
