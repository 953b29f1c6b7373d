//! WebRTC playback over WHEP (RFC 9725) with the `webrtc` crate: the only module
//! that imports it. Knows nothing of HTTP (the API maps results to responses).
//!
//! A session answers the viewer's offer with a send-only H.264 track (passthrough,
//! no transcoding) and, when the camera sends G.711, a PCMU/PCMA track. Once ICE
//! and DTLS connect, a task feeds it from the camera's broadcaster, starting at the
//! cached GOP so the picture appears at once. The cached GOP is sent as a burst with
//! its RTP timestamps compressed, so the browser's jitter buffer does not hold the
//! live frames back by a GOP. A session ends on `DELETE`, on ICE/DTLS failure, when
//! it does not connect within `connect_timeout`, or at shutdown.
//!
//! Limits of `webrtc` 0.21 that shape the config: every session binds its own UDP
//! sockets (no single shared port: use `port_range`), and 1:1 NAT is done here by
//! rewriting the answer's host candidates (`public_ips`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::media_engine::{
    MIME_TYPE_H264, MIME_TYPE_PCMA, MIME_TYPE_PCMU,
};
use rtc::rtp::packetizer::Payloader;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters, RTCRtpEncodingParameters,
    RtpCodecKind,
};
use tokio::sync::{mpsc, watch};
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::peer_connection::{
    MediaEngine, PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler,
    RTCConfigurationBuilder, RTCIceCandidateInit, RTCIceGatheringState, RTCIceServer,
    RTCPeerConnectionState, RTCSessionDescription, Registry, SettingEngineBuilder,
    register_default_interceptors,
};

use crate::config::WebrtcConfig;
use crate::error::{Error, ErrorKind, Result};
use crate::ingest::Camera;
use crate::media::{AudioCodec, Frame, Recv, TrackKind, VideoCodec, write_annex_b};
use crate::stats::{OwnedViewerGuard, Protocol};

/// RTP payload size limit: 1200-byte packets fit any path MTU with room for SRTP.
const MTU: usize = 1200;
const VIDEO_CLOCK: u32 = 90_000;

/// What the API shows of a session.
#[derive(Clone, Debug, serde::Serialize)]
pub struct SessionInfo {
    pub id: String,
    pub camera: String,
    pub state: String,
    pub age_s: f64,
    pub bytes_sent: u64,
}

struct Session {
    id: String,
    camera: String,
    pc: Arc<dyn PeerConnection>,
    stop: watch::Sender<bool>,
    created: Instant,
    state: Mutex<RTCPeerConnectionState>,
    bytes: AtomicU64,
    /// The viewer's ICE username fragment (to tell trickle from ICE restart).
    ufrag: Option<String>,
    /// Held for the session's life: counts against the caps.
    _slot: Slot,
}

/// Sessions admitted (answered or being answered), for the caps. A slot is taken
/// before any await and released when its holder drops, so concurrent offers
/// cannot overshoot the caps and a cancelled request gives its slot back.
#[derive(Debug, Default)]
struct Slots {
    total: usize,
    per_camera: HashMap<String, usize>,
}

#[derive(Debug)]
struct Slot {
    slots: Arc<Mutex<Slots>>,
    camera: String,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut s = self.slots.lock().unwrap();
        s.total = s.total.saturating_sub(1);
        if let Some(n) = s.per_camera.get_mut(&self.camera) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                s.per_camera.remove(&self.camera);
            }
        }
    }
}

/// Closes a peer connection that was built but never became a session (error,
/// or the request was cancelled): without `close()` its driver task and sockets
/// would live on.
struct CloseOnDrop(Option<Arc<dyn PeerConnection>>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        if let Some(pc) = self.0.take()
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            rt.spawn(async move {
                let _ = pc.close().await;
            });
        }
    }
}

/// All WHEP sessions of the host.
pub struct Whep {
    cfg: WebrtcConfig,
    sessions: Mutex<HashMap<String, Arc<Session>>>,
    slots: Arc<Mutex<Slots>>,
    next_port: AtomicU32,
    opened: AtomicU64,
    closed: AtomicU64,
}

impl std::fmt::Debug for Whep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Whep")
            .field("sessions", &self.count())
            .finish()
    }
}

/// Global session counters.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct WhepStats {
    pub sessions: usize,
    pub opened: u64,
    pub closed: u64,
}

/// The parts of an offer that decide whether it can be answered.
#[derive(Debug, PartialEq, Eq)]
struct OfferSummary {
    has_video: bool,
    /// H.264 payload types with packetization-mode=1.
    h264_mode1: usize,
    /// H.264 payload types offered in any mode.
    h264_any: usize,
    /// Video codec names offered (for error messages).
    video_codecs: Vec<String>,
    audio_pcmu: bool,
    audio_pcma: bool,
}

/// Reads the media sections of an offer (already checked to parse as SDP).
fn summarize_offer(sdp: &str) -> OfferSummary {
    let mut s = OfferSummary {
        has_video: false,
        h264_mode1: 0,
        h264_any: 0,
        video_codecs: Vec::new(),
        audio_pcmu: false,
        audio_pcma: false,
    };
    let mut media = "";
    let mut h264_pts: Vec<String> = Vec::new();
    for line in sdp.lines().map(str::trim) {
        if let Some(m) = line.strip_prefix("m=") {
            media = m.split_whitespace().next().unwrap_or("");
            if media == "video" {
                s.has_video = true;
            }
        } else if let Some(rest) = line.strip_prefix("a=rtpmap:") {
            let mut it = rest.split_whitespace();
            let (Some(pt), Some(enc)) = (it.next(), it.next()) else {
                continue;
            };
            let name = enc.split('/').next().unwrap_or("").to_ascii_uppercase();
            match media {
                "video" => {
                    if name == "H264" {
                        s.h264_any += 1;
                        h264_pts.push(pt.to_string());
                    }
                    if !matches!(name.as_str(), "RTX" | "RED" | "ULPFEC" | "FLEXFEC-03")
                        && !s.video_codecs.contains(&name)
                    {
                        s.video_codecs.push(name);
                    }
                }
                "audio" => match name.as_str() {
                    "PCMU" => s.audio_pcmu = true,
                    "PCMA" => s.audio_pcma = true,
                    _ => {}
                },
                _ => {}
            }
        } else if let Some(rest) = line.strip_prefix("a=fmtp:") {
            let (pt, params) = rest.split_once(' ').unwrap_or((rest, ""));
            if media == "video"
                && h264_pts.iter().any(|p| p == pt)
                && params.contains("packetization-mode=1")
            {
                s.h264_mode1 += 1;
            }
        }
    }
    s
}

/// Routes [`PeerConnectionEventHandler`] callbacks into channels (callbacks run on the
/// connection's driver task and must not block).
struct Events {
    gathered: mpsc::Sender<()>,
    state: mpsc::UnboundedSender<RTCPeerConnectionState>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Events {
    async fn on_ice_gathering_state_change(&self, s: RTCIceGatheringState) {
        if s == RTCIceGatheringState::Complete {
            let _ = self.gathered.try_send(());
        }
    }
    async fn on_connection_state_change(&self, s: RTCPeerConnectionState) {
        let _ = self.state.send(s);
    }
}

/// A negotiated outgoing track.
struct OutTrack {
    track: Arc<TrackLocalStaticRTP>,
    ssrc: u32,
    pt: u8,
}

fn codec(mime: &str, clock_rate: u32, fmtp: String) -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: mime.to_string(),
        clock_rate,
        channels: 0,
        sdp_fmtp_line: fmtp,
        rtcp_feedback: vec![],
    }
}

fn new_track(
    kind: RtpCodecKind,
    codec: RTCRtpCodec,
    camera: &str,
) -> Result<(Arc<TrackLocalStaticRTP>, u32)> {
    let ssrc = rand::random::<u32>();
    let label = if kind == RtpCodecKind::Video {
        "video"
    } else {
        "audio"
    };
    let track = MediaStreamTrack::new(
        format!("vigil-{camera}"),
        format!("{camera}-{label}"),
        label.to_string(),
        kind,
        vec![RTCRtpEncodingParameters {
            rtp_coding_parameters: RTCRtpCodingParameters {
                ssrc: Some(ssrc),
                ..Default::default()
            },
            codec,
            ..Default::default()
        }],
    );
    Ok((Arc::new(TrackLocalStaticRTP::new(track)), ssrc))
}

fn internal(what: &str) -> impl Fn(webrtc::error::Error) -> Error + '_ {
    move |e| Error::new(ErrorKind::Internal, format!("WebRTC: {what}: {e}"))
}

impl Whep {
    pub fn new(cfg: WebrtcConfig) -> Arc<Self> {
        Arc::new(Self {
            cfg,
            sessions: Mutex::new(HashMap::new()),
            slots: Arc::default(),
            next_port: AtomicU32::new(0),
            opened: AtomicU64::new(0),
            closed: AtomicU64::new(0),
        })
    }

    pub fn count(&self) -> usize {
        self.sessions.lock().unwrap().len()
    }

    pub fn count_for(&self, camera: &str) -> usize {
        self.sessions
            .lock()
            .unwrap()
            .values()
            .filter(|s| s.camera == camera)
            .count()
    }

    pub fn stats(&self) -> WhepStats {
        WhepStats {
            sessions: self.count(),
            opened: self.opened.load(Ordering::Relaxed),
            closed: self.closed.load(Ordering::Relaxed),
        }
    }

    pub fn sessions(&self, camera: &str) -> Vec<SessionInfo> {
        self.sessions
            .lock()
            .unwrap()
            .values()
            .filter(|s| s.camera == camera)
            .map(|s| SessionInfo {
                id: s.id.clone(),
                camera: s.camera.clone(),
                state: s.state.lock().unwrap().to_string(),
                age_s: s.created.elapsed().as_secs_f64(),
                bytes_sent: s.bytes.load(Ordering::Relaxed),
            })
            .collect()
    }

    /// The configured ICE servers, for `Link` headers.
    pub fn ice_servers(&self) -> &[crate::config::IceServer] {
        &self.cfg.ice_servers
    }

    /// UDP socket addresses for a new session: one per configured IP, on the next
    /// port of the range (or an ephemeral port).
    fn udp_addrs(&self) -> Vec<String> {
        let port = match self.cfg.ports {
            Some((lo, hi)) => {
                let span = u32::from(hi - lo) + 1;
                lo + (self.next_port.fetch_add(1, Ordering::Relaxed) % span) as u16
            }
            None => 0,
        };
        self.cfg
            .addresses
            .iter()
            .map(|ip| match ip {
                IpAddr::V4(v4) => format!("{v4}:{port}"),
                IpAddr::V6(v6) => format!("[{v6}]:{port}"),
            })
            .collect()
    }

    /// Takes a session slot or says which cap is reached.
    fn reserve(&self, camera: &str) -> Result<Slot> {
        let mut s = self.slots.lock().unwrap();
        if s.total >= self.cfg.max_sessions {
            return Err(Error::new(
                ErrorKind::Unavailable,
                format!(
                    "WebRTC session limit reached ({} sessions on this host)",
                    self.cfg.max_sessions
                ),
            ));
        }
        let here = s.per_camera.get(camera).copied().unwrap_or(0);
        if here >= self.cfg.max_sessions_per_camera {
            return Err(Error::new(
                ErrorKind::Unavailable,
                format!(
                    "WebRTC session limit reached for camera {camera} ({} sessions)",
                    self.cfg.max_sessions_per_camera
                ),
            ));
        }
        s.total += 1;
        *s.per_camera.entry(camera.to_string()).or_default() += 1;
        Ok(Slot {
            slots: self.slots.clone(),
            camera: camera.to_string(),
        })
    }

    /// Answers a WHEP offer; returns the session id and the answer SDP. Runs as its
    /// own task, so a viewer that hangs up mid-request cannot cut it short halfway.
    pub async fn offer(
        self: &Arc<Self>,
        cam: &Arc<Camera>,
        offer: String,
    ) -> Result<(String, String)> {
        let (this, cam) = (self.clone(), cam.clone());
        tokio::spawn(async move { this.answer(&cam, offer).await })
            .await
            .map_err(|e| Error::new(ErrorKind::Internal, format!("WHEP offer task failed: {e}")))?
    }

    async fn answer(
        self: &Arc<Self>,
        cam: &Arc<Camera>,
        offer: String,
    ) -> Result<(String, String)> {
        let id = &cam.config.id;
        let desc = RTCSessionDescription::offer(offer.clone()).map_err(|e| {
            Error::new(
                ErrorKind::InvalidArgument,
                format!("malformed SDP offer: {e}"),
            )
        })?;
        let summary = summarize_offer(&offer);
        if !summary.has_video {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                "the offer has no video media section (m=video); WHEP here plays video",
            ));
        }
        if summary.h264_mode1 == 0 {
            let offered = if summary.video_codecs.is_empty() {
                "none".to_string()
            } else {
                summary.video_codecs.join(", ")
            };
            let why = if summary.h264_any > 0 {
                "H.264 is offered only without packetization-mode=1"
            } else {
                "the offer has no H.264"
            };
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!(
                    "{why} (offered video codecs: {offered}); camera video is sent as H.264 \
                     (packetization-mode=1) without transcoding"
                ),
            ));
        }
        let info = cam.broadcaster.latest_info();
        if let Some(i) = &info
            && i.video.codec != VideoCodec::H264
        {
            return Err(Error::new(
                ErrorKind::FailedPrecondition,
                format!(
                    "camera {id} streams H.265; WebRTC playback needs an H.264 camera (use LL-HLS)"
                ),
            ));
        }
        let slot = self.reserve(id)?;

        // Codecs: the camera's H.264 profile (browsers decode any profile they offer),
        // and its G.711 if it has some and the viewer offers it.
        let profile = info
            .as_ref()
            .and_then(|i| {
                i.video
                    .sps
                    .get(1..4)
                    .map(|b| format!("{:02x}{:02x}{:02x}", b[0], b[1], b[2]))
            })
            .unwrap_or_else(|| "42e01f".into());
        let video_codec = codec(
            MIME_TYPE_H264,
            VIDEO_CLOCK,
            format!("level-asymmetry-allowed=1;packetization-mode=1;profile-level-id={profile}"),
        );
        let audio = info
            .as_ref()
            .and_then(|i| i.audio.as_ref())
            .and_then(|a| match a.codec {
                AudioCodec::Pcmu if summary.audio_pcmu => {
                    Some((MIME_TYPE_PCMU, 0u8, a.sample_rate))
                }
                AudioCodec::Pcma if summary.audio_pcma => {
                    Some((MIME_TYPE_PCMA, 8u8, a.sample_rate))
                }
                _ => None,
            });
        let mut media = MediaEngine::default();
        media
            .register_codec(
                RTCRtpCodecParameters {
                    rtp_codec: video_codec.clone(),
                    payload_type: 102,
                },
                RtpCodecKind::Video,
            )
            .map_err(internal("register H.264"))?;
        let audio_codec = audio.map(|(mime, pt, rate)| (codec(mime, rate, String::new()), pt));
        if let Some((c, pt)) = &audio_codec {
            media
                .register_codec(
                    RTCRtpCodecParameters {
                        rtp_codec: c.clone(),
                        payload_type: *pt,
                    },
                    RtpCodecKind::Audio,
                )
                .map_err(internal("register G.711"))?;
        }
        let settings = SettingEngineBuilder::new()
            .with_multicast_dns_mode(rtc::ice::mdns::MulticastDnsMode::Disabled)
            .with_ice_timeouts(
                Some(Duration::from_secs(4)),
                Some(Duration::from_secs(8)),
                Some(Duration::from_secs(2)),
            )
            .build();
        let config = RTCConfigurationBuilder::new()
            .with_ice_servers(
                self.cfg
                    .ice_servers
                    .iter()
                    .map(|s| RTCIceServer {
                        urls: s.urls.clone(),
                        username: s.username.clone(),
                        credential: s.credential.clone(),
                    })
                    .collect(),
            )
            .build();
        let (gtx, mut grx) = mpsc::channel(1);
        let (stx, srx) = mpsc::unbounded_channel();
        let mut build_err = None;
        let mut pc = None;
        // A port of the range may be taken (by another program): try a few.
        for _ in 0..4 {
            let mut media = media.clone();
            let registry = register_default_interceptors(Registry::new(), &mut media)
                .map_err(internal("interceptors"))?;
            let built = PeerConnectionBuilder::new()
                .with_configuration(config.clone())
                .with_media_engine(media)
                .with_interceptor_registry(registry)
                .with_setting_engine(settings.clone())
                .with_handler(Arc::new(Events {
                    gathered: gtx.clone(),
                    state: stx.clone(),
                }))
                .with_udp_addrs(self.udp_addrs())
                .build()
                .await;
            match built {
                Ok(p) => {
                    pc = Some(Arc::new(p) as Arc<dyn PeerConnection>);
                    break;
                }
                Err(e) => build_err = Some(e),
            }
        }
        let pc = pc.ok_or_else(|| {
            Error::new(
                ErrorKind::Unavailable,
                format!(
                    "WebRTC: cannot open UDP sockets on {:?}: {}",
                    self.cfg.addresses,
                    build_err.map(|e| e.to_string()).unwrap_or_default()
                ),
            )
        })?;
        let mut guard = CloseOnDrop(Some(pc.clone()));
        match self
            .negotiate(cam, &pc, desc, video_codec, audio_codec, &mut grx)
            .await
        {
            Ok((video, audio, answer)) => {
                let session_id = format!("{:032x}", rand::random::<u128>());
                let (stop, stop_rx) = watch::channel(false);
                let session = Arc::new(Session {
                    id: session_id.clone(),
                    camera: id.clone(),
                    pc: pc.clone(),
                    stop,
                    created: Instant::now(),
                    state: Mutex::new(RTCPeerConnectionState::New),
                    bytes: AtomicU64::new(0),
                    ufrag: sdp_attribute(&offer, "ice-ufrag"),
                    _slot: slot,
                });
                guard.0 = None;
                self.sessions
                    .lock()
                    .unwrap()
                    .insert(session_id.clone(), session.clone());
                self.opened.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(run_session(
                    self.clone(),
                    cam.clone(),
                    session,
                    srx,
                    stop_rx,
                    video,
                    audio,
                ));
                Ok((session_id, self.rewrite_candidates(&answer)))
            }
            Err(e) => Err(e),
        }
    }

    async fn negotiate(
        &self,
        cam: &Camera,
        pc: &Arc<dyn PeerConnection>,
        offer: RTCSessionDescription,
        video_codec: RTCRtpCodec,
        audio_codec: Option<(RTCRtpCodec, u8)>,
        gathered: &mut mpsc::Receiver<()>,
    ) -> Result<(OutTrack, Option<OutTrack>, String)> {
        let id = &cam.config.id;
        let (vtrack, vssrc) = new_track(RtpCodecKind::Video, video_codec, id)?;
        let vsender = pc
            .add_track(vtrack.clone() as Arc<dyn TrackLocal>)
            .await
            .map_err(internal("add video track"))?;
        let audio = match audio_codec {
            Some((c, _)) => {
                let (t, ssrc) = new_track(RtpCodecKind::Audio, c, id)?;
                let sender = pc
                    .add_track(t.clone() as Arc<dyn TrackLocal>)
                    .await
                    .map_err(internal("add audio track"))?;
                Some((t, ssrc, sender))
            }
            None => None,
        };
        pc.set_remote_description(offer).await.map_err(|e| {
            Error::new(
                ErrorKind::InvalidArgument,
                format!("cannot apply the SDP offer: {e}"),
            )
        })?;
        let vpt = vsender
            .get_parameters()
            .await
            .map_err(internal("sender parameters"))?
            .rtp_parameters
            .codecs
            .iter()
            .find(|c| c.rtp_codec.sdp_fmtp_line.contains("packetization-mode=1"))
            .map(|c| c.payload_type)
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::InvalidArgument,
                    "the offer's video cannot receive H.264 with packetization-mode=1",
                )
            })?;
        let mut audio_out = None;
        if let Some((t, ssrc, sender)) = audio {
            let pt = sender
                .get_parameters()
                .await
                .ok()
                .and_then(|p| p.rtp_parameters.codecs.first().map(|c| c.payload_type));
            if let Some(pt) = pt {
                audio_out = Some(OutTrack { track: t, ssrc, pt });
            }
        }
        let answer = pc.create_answer(None).await.map_err(|e| {
            Error::new(
                ErrorKind::InvalidArgument,
                format!("cannot answer the offer: {e}"),
            )
        })?;
        pc.set_local_description(answer)
            .await
            .map_err(internal("set local description"))?;
        // Non-trickle answer: wait for host (and STUN/TURN) candidates, bounded.
        let _ = tokio::time::timeout(Duration::from_secs(3), gathered.recv()).await;
        let sdp = pc
            .local_description()
            .await
            .map(|d| d.sdp)
            .ok_or_else(|| Error::new(ErrorKind::Internal, "WebRTC: no local description"))?;
        Ok((
            OutTrack {
                track: vtrack,
                ssrc: vssrc,
                pt: vpt,
            },
            audio_out,
            sdp,
        ))
    }

    /// 1:1 NAT: announce the public IP instead of non-loopback host candidates' IPs.
    fn rewrite_candidates(&self, sdp: &str) -> String {
        let Some(public) = self.cfg.public_ips.first() else {
            return sdp.to_string();
        };
        let mut out = String::with_capacity(sdp.len() + 64);
        for line in sdp.split_inclusive('\n') {
            if let Some(rest) = line.strip_prefix("a=candidate:") {
                let mut f: Vec<&str> = rest.trim_end().split(' ').collect();
                if f.len() > 7
                    && f[6] == "typ"
                    && f[7] == "host"
                    && f[4]
                        .parse::<IpAddr>()
                        .is_ok_and(|ip| !ip.is_loopback() && ip.is_ipv4() == public.is_ipv4())
                {
                    let p = public.to_string();
                    f[4] = &p;
                    out.push_str("a=candidate:");
                    out.push_str(&f.join(" "));
                    out.push_str("\r\n");
                    continue;
                }
            }
            out.push_str(line);
        }
        out
    }

    /// Ends a session (`DELETE`).
    pub async fn delete(&self, camera: &str, session: &str) -> Result<()> {
        let s = self
            .sessions
            .lock()
            .unwrap()
            .get(session)
            .filter(|s| s.camera == camera)
            .cloned()
            .ok_or_else(|| not_found(camera, session))?;
        s.stop.send_replace(true);
        // Close now so the viewer sees it at once; the session task cleans up.
        let _ = s.pc.close().await;
        self.remove(&s);
        Ok(())
    }

    /// Trickle ICE (`PATCH` with `application/trickle-ice-sdpfrag`): adds the
    /// viewer's candidates. ICE restarts are not supported.
    pub async fn patch(&self, camera: &str, session: &str, frag: &str) -> Result<()> {
        let s = self
            .sessions
            .lock()
            .unwrap()
            .get(session)
            .filter(|s| s.camera == camera)
            .cloned()
            .ok_or_else(|| not_found(camera, session))?;
        // A new ufrag means an ICE restart, which this server does not do.
        if sdp_attribute(frag, "ice-ufrag").is_some_and(|u| Some(&u) != s.ufrag.as_ref()) {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                "ICE restart is not supported; start a new session",
            ));
        }
        for line in frag.lines().map(str::trim) {
            if let Some(c) = line.strip_prefix("a=candidate:") {
                s.pc.add_ice_candidate(RTCIceCandidateInit {
                    candidate: format!("candidate:{c}"),
                    ..Default::default()
                })
                .await
                .map_err(|e| {
                    Error::new(
                        ErrorKind::InvalidArgument,
                        format!("bad ICE candidate {c:?}: {e}"),
                    )
                })?;
            }
        }
        Ok(())
    }

    fn remove(&self, s: &Session) {
        if self.sessions.lock().unwrap().remove(&s.id).is_some() {
            self.closed.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Closes every session (shutdown).
    pub async fn close_all(&self) {
        let all: Vec<Arc<Session>> = self
            .sessions
            .lock()
            .unwrap()
            .drain()
            .map(|(_, s)| s)
            .collect();
        for s in all {
            s.stop.send_replace(true);
            let _ = s.pc.close().await;
            self.closed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The first `a=<name>:` value in SDP text.
fn sdp_attribute(sdp: &str, name: &str) -> Option<String> {
    let prefix = format!("a={name}:");
    sdp.lines()
        .find_map(|l| l.trim().strip_prefix(&prefix).map(|v| v.trim().to_string()))
}

fn not_found(camera: &str, session: &str) -> Error {
    Error::new(
        ErrorKind::NotFound,
        format!("no WebRTC session {session:?} on camera {camera}"),
    )
}

/// Maps camera presentation times to RTP timestamps for one session.
struct Clock {
    base: u32,
    /// Offset from camera pts (per generation) to RTP time; `None` until the first
    /// live frame.
    offset: Option<(u64, i64)>,
    /// RTP time of the last frame sent, and when the host received that frame.
    last: Option<u32>,
    last_received: Option<Instant>,
    burst: u32,
}

impl Clock {
    fn new() -> Self {
        Self {
            base: rand::random(),
            offset: None,
            last: None,
            last_received: None,
            burst: 0,
        }
    }

    /// RTP timestamp for a frame; `burst` frames (already cached at subscribe time)
    /// get timestamps one tick apart, so they render at once instead of setting
    /// the playout delay.
    fn video_ts(&mut self, f: &Frame, burst: bool) -> u32 {
        let ts = if burst && self.offset.is_none() {
            self.burst += 1;
            self.base.wrapping_add(self.burst)
        } else {
            let gen_ok = self.offset.is_some_and(|(g, _)| g == f.info.generation);
            if !gen_ok {
                // First live frame: continue one frame interval after the last
                // (burst) timestamp. A new generation (the camera reconnected):
                // continue by the time that really passed, as a camera that went
                // quiet would, so the viewer's jitter buffer keeps its clock
                // instead of finding every frame seconds late.
                let step = match (self.offset, self.last_received) {
                    (Some(_), Some(at)) => {
                        // Capped at an hour: far below the 2^31 ticks receivers
                        // read as a backward jump.
                        let gap = f.received.saturating_duration_since(at).as_secs_f64();
                        ((gap.min(3600.0) * f64::from(VIDEO_CLOCK)) as u32).max(VIDEO_CLOCK / 30)
                    }
                    _ => VIDEO_CLOCK / 30,
                };
                let after = self.last.map_or(self.base, |l| l.wrapping_add(step));
                self.offset = Some((f.info.generation, i64::from(after) - f.pts));
            }
            let (_, off) = self.offset.unwrap_or((0, 0));
            (f.pts + off) as u32
        };
        self.last = Some(ts);
        self.last_received = Some(f.received);
        ts
    }
}

/// Resolves once the session is asked to stop.
async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

/// Runs one session: waits for the connection, then feeds it until it ends.
async fn run_session(
    whep: Arc<Whep>,
    cam: Arc<Camera>,
    session: Arc<Session>,
    mut states: mpsc::UnboundedReceiver<RTCPeerConnectionState>,
    mut stop: watch::Receiver<bool>,
    video: OutTrack,
    audio: Option<OutTrack>,
) {
    let camera = cam.config.id.clone();
    let set_state = |s: RTCPeerConnectionState| *session.state.lock().unwrap() = s;
    // 1. Connect (ICE + DTLS), bounded.
    let connected = tokio::time::timeout(whep.cfg.connect_timeout, async {
        loop {
            tokio::select! {
                s = states.recv() => match s {
                    Some(RTCPeerConnectionState::Connected) => {
                        set_state(RTCPeerConnectionState::Connected);
                        return true;
                    }
                    Some(RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed) | None => return false,
                    Some(other) => set_state(other),
                },
                _ = stopped(&mut stop) => return false,
            }
        }
    })
    .await;
    if !matches!(connected, Ok(true)) {
        tracing::debug!(camera = %camera, session = %session.id, "WebRTC session did not connect");
        let _ = session.pc.close().await;
        whep.remove(&session);
        return;
    }
    // 2. Feed it.
    let guard = OwnedViewerGuard::new(cam.clone(), Protocol::Webrtc);
    let mut sub = cam.broadcaster.subscribe();
    let subscribed = Instant::now();
    let mut clock = Clock::new();
    let mut payloader = rtc::rtp::codec::h264::H264Payloader::default();
    let mut vseq: u16 = rand::random();
    let mut aseq: u16 = rand::random();
    // Audio RTP time: anchored per stream generation (a reconnect restarts pts),
    // continuing from the last timestamp sent.
    let mut aanchor: Option<(u64, i64, u32)> = None;
    let mut alast: u32 = rand::random();
    let mut alast_at: Option<Instant> = None;
    let mut annexb = Vec::with_capacity(64 * 1024);
    let mut need_key = false;
    let end = loop {
        tokio::select! {
            r = sub.recv() => match r {
                None => break "camera removed",
                Some(Recv::Lagged { .. }) => need_key = true,
                Some(Recv::Frame(f)) if f.track == TrackKind::Video => {
                    if f.info.video.codec != VideoCodec::H264 {
                        break "the camera now streams H.265, which WebRTC here does not carry";
                    }
                    if need_key && !f.key {
                        continue;
                    }
                    need_key = false;
                    annexb.clear();
                    write_annex_b(&f, true, &mut annexb);
                    let ts = clock.video_ts(&f, f.received < subscribed);
                    let payloads = match payloader.payload(MTU - 12, &Bytes::copy_from_slice(&annexb)) {
                        Ok(p) => p,
                        Err(e) => {
                            tracing::debug!(camera = %camera, "H.264 payloader: {e}");
                            continue;
                        }
                    };
                    let n = payloads.len();
                    let mut sent = 0usize;
                    let mut failed = false;
                    for (i, payload) in payloads.into_iter().enumerate() {
                        sent += payload.len() + 12;
                        let pkt = rtc::rtp::Packet {
                            header: rtc::rtp::Header {
                                version: 2,
                                marker: i + 1 == n,
                                payload_type: video.pt,
                                sequence_number: vseq,
                                timestamp: ts,
                                ssrc: video.ssrc,
                                ..Default::default()
                            },
                            payload,
                        };
                        vseq = vseq.wrapping_add(1);
                        if video.track.write_rtp(pkt).await.is_err() {
                            failed = true;
                            break;
                        }
                    }
                    if failed {
                        break "the connection closed";
                    }
                    session.bytes.fetch_add(sent as u64, Ordering::Relaxed);
                    guard.stats().add_bytes(sent);
                }
                Some(Recv::Frame(f)) => {
                    // G.711: one packet per frame; nothing from before the subscription.
                    let Some(a) = &audio else { continue };
                    if f.received < subscribed {
                        continue;
                    }
                    let (_, first, base) = match aanchor {
                        Some(a) if a.0 == f.info.generation => a,
                        _ => {
                            // A new session of the camera continues by the time
                            // that passed (8 kHz G.711 clock), at least one packet.
                            let gap = alast_at.map_or(0.0, |t| {
                                f.received.saturating_duration_since(t).as_secs_f64()
                            });
                            let step = ((gap.min(3600.0) * 8000.0) as u32).max(160);
                            let a = (f.info.generation, f.pts, alast.wrapping_add(step));
                            aanchor = Some(a);
                            a
                        }
                    };
                    let ts = base.wrapping_add(f.pts.wrapping_sub(first) as u32);
                    alast = ts;
                    alast_at = Some(f.received);
                    let pkt = rtc::rtp::Packet {
                        header: rtc::rtp::Header {
                            version: 2,
                            marker: false,
                            payload_type: a.pt,
                            sequence_number: aseq,
                            timestamp: ts,
                            ssrc: a.ssrc,
                            ..Default::default()
                        },
                        payload: f.data.clone(),
                    };
                    aseq = aseq.wrapping_add(1);
                    let len = f.data.len() + 12;
                    if a.track.write_rtp(pkt).await.is_err() {
                        break "the connection closed";
                    }
                    session.bytes.fetch_add(len as u64, Ordering::Relaxed);
                    guard.stats().add_bytes(len);
                }
            },
            s = states.recv() => match s {
                Some(RTCPeerConnectionState::Failed) => break "ICE/DTLS failed",
                Some(RTCPeerConnectionState::Closed) | None => break "closed",
                Some(other) => set_state(other),
            },
            _ = stopped(&mut stop) => break "deleted",
        }
    };
    tracing::debug!(camera = %camera, session = %session.id, reason = end, "WebRTC session ended");
    let _ = session.pc.close().await;
    whep.remove(&session);
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHROME_LIKE: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
        m=audio 9 UDP/TLS/RTP/SAVPF 111 0 8\r\na=rtpmap:111 opus/48000/2\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n\
        m=video 9 UDP/TLS/RTP/SAVPF 96 97 102 103 127\r\na=rtpmap:96 VP8/90000\r\na=rtpmap:97 rtx/90000\r\n\
        a=rtpmap:102 H264/90000\r\na=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f\r\n\
        a=rtpmap:103 H264/90000\r\na=fmtp:103 level-asymmetry-allowed=1;packetization-mode=0;profile-level-id=42001f\r\n\
        a=rtpmap:127 AV1/90000\r\n";

    #[test]
    fn summarizes_offers() {
        let s = summarize_offer(CHROME_LIKE);
        assert!(s.has_video && s.audio_pcmu && s.audio_pcma);
        assert_eq!((s.h264_mode1, s.h264_any), (1, 2));
        assert_eq!(s.video_codecs, vec!["VP8", "H264", "AV1"]);
        let vp8_only = CHROME_LIKE
            .lines()
            .filter(|l| !l.contains("H264") && !l.contains("fmtp:10"))
            .collect::<Vec<_>>()
            .join("\r\n");
        let s = summarize_offer(&vp8_only);
        assert_eq!((s.h264_mode1, s.h264_any), (0, 0));
        let audio_only: String = CHROME_LIKE.split("m=video").next().unwrap().to_string();
        assert!(!summarize_offer(&audio_only).has_video);
    }

    #[test]
    fn burst_frames_get_compressed_timestamps() {
        let info = crate::media::tests::info();
        let t0 = Instant::now();
        let at = |pts: i64, gen_: u64, ms: u64| Frame {
            track: TrackKind::Video,
            pts,
            key: false,
            data: Bytes::new(),
            info: Arc::new(crate::media::StreamInfo {
                generation: gen_,
                ..(*info).clone()
            }),
            received: t0 + Duration::from_millis(ms),
        };
        let f = |pts: i64, gen_: u64| at(pts, gen_, 0);
        let mut c = Clock::new();
        let b = c.base;
        assert_eq!(c.video_ts(&f(0, 1), true), b.wrapping_add(1));
        assert_eq!(c.video_ts(&f(6000, 1), true), b.wrapping_add(2));
        // Live frames continue one 30 fps interval later, then follow pts.
        let l0 = c.video_ts(&f(12000, 1), false);
        assert_eq!(l0, b.wrapping_add(2 + 3000));
        assert_eq!(c.video_ts(&f(18000, 1), false), l0.wrapping_add(6000));
        // A reconnect restarts pts: timestamps keep increasing, by the time
        // that passed (5 s here) at least one frame interval.
        let r = c.video_ts(&at(0, 2, 5000), false);
        assert_eq!(r, l0.wrapping_add(6000 + 5 * 90_000));
        assert_eq!(c.video_ts(&at(6000, 2, 5066), false), r.wrapping_add(6000));
        let q = c.video_ts(&at(0, 3, 5066), false);
        assert_eq!(q, r.wrapping_add(6000 + 3000));
    }
}
