//! Per-camera output counters (viewers, bytes, sessions by protocol), kept with
//! atomics by the output modules and read by the API and `/metrics`.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// An output protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Hls,
    Webrtc,
    Mjpeg,
    Snapshot,
}

impl Protocol {
    pub const ALL: [Protocol; 4] = [
        Protocol::Hls,
        Protocol::Webrtc,
        Protocol::Mjpeg,
        Protocol::Snapshot,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Protocol::Hls => "hls",
            Protocol::Webrtc => "webrtc",
            Protocol::Mjpeg => "mjpeg",
            Protocol::Snapshot => "snapshot",
        }
    }
}

/// Counters of one protocol on one camera.
#[derive(Debug, Default)]
pub struct ProtocolStats {
    /// Viewers now (WebRTC sessions, MJPEG connections). HLS is stateless: its
    /// viewers are estimated from blocking playlist requests, see `hls`.
    pub viewers: AtomicI64,
    pub bytes_sent: AtomicU64,
    pub sessions_opened: AtomicU64,
    pub sessions_closed: AtomicU64,
}

/// A snapshot of [`ProtocolStats`].
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct ProtocolCounts {
    pub viewers: i64,
    pub bytes_sent: u64,
    pub sessions_opened: u64,
    pub sessions_closed: u64,
}

impl ProtocolStats {
    pub fn counts(&self) -> ProtocolCounts {
        ProtocolCounts {
            viewers: self.viewers.load(Ordering::Relaxed),
            bytes_sent: self.bytes_sent.load(Ordering::Relaxed),
            sessions_opened: self.sessions_opened.load(Ordering::Relaxed),
            sessions_closed: self.sessions_closed.load(Ordering::Relaxed),
        }
    }

    fn begin(&self) {
        self.viewers.fetch_add(1, Ordering::Relaxed);
        self.sessions_opened.fetch_add(1, Ordering::Relaxed);
    }

    fn end(&self) {
        self.viewers.fetch_sub(1, Ordering::Relaxed);
        self.sessions_closed.fetch_add(1, Ordering::Relaxed);
    }

    pub fn add_bytes(&self, n: usize) {
        self.bytes_sent.fetch_add(n as u64, Ordering::Relaxed);
    }
}

/// All protocols of one camera.
#[derive(Debug, Default)]
pub struct OutputStats {
    hls: ProtocolStats,
    webrtc: ProtocolStats,
    mjpeg: ProtocolStats,
    snapshot: ProtocolStats,
}

impl OutputStats {
    pub fn get(&self, p: Protocol) -> &ProtocolStats {
        match p {
            Protocol::Hls => &self.hls,
            Protocol::Webrtc => &self.webrtc,
            Protocol::Mjpeg => &self.mjpeg,
            Protocol::Snapshot => &self.snapshot,
        }
    }

    /// Counts a viewer session until the guard drops.
    pub fn open(&self, p: Protocol) -> ViewerGuard<'_> {
        let s = self.get(p);
        s.begin();
        ViewerGuard(s)
    }
}

/// Ends a counted viewer session on drop.
#[derive(Debug)]
pub struct ViewerGuard<'a>(&'a ProtocolStats);

impl Drop for ViewerGuard<'_> {
    fn drop(&mut self) {
        self.0.end();
    }
}

/// Like [`ViewerGuard`] for sessions that outlive a borrow (owned `Arc`).
#[derive(Debug)]
pub struct OwnedViewerGuard {
    cam: std::sync::Arc<crate::ingest::Camera>,
    protocol: Protocol,
}

impl OwnedViewerGuard {
    pub fn new(cam: std::sync::Arc<crate::ingest::Camera>, protocol: Protocol) -> Self {
        cam.outputs.get(protocol).begin();
        Self { cam, protocol }
    }

    pub fn stats(&self) -> &ProtocolStats {
        self.cam.outputs.get(self.protocol)
    }
}

impl Drop for OwnedViewerGuard {
    fn drop(&mut self) {
        self.cam.outputs.get(self.protocol).end();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guards_count_sessions() {
        let o = OutputStats::default();
        {
            let _a = o.open(Protocol::Mjpeg);
            let _b = o.open(Protocol::Mjpeg);
            assert_eq!(o.get(Protocol::Mjpeg).counts().viewers, 2);
        }
        let c = o.get(Protocol::Mjpeg).counts();
        assert_eq!((c.viewers, c.sessions_opened, c.sessions_closed), (0, 2, 2));
        assert_eq!(o.get(Protocol::Webrtc).counts().sessions_opened, 0);
    }
}
