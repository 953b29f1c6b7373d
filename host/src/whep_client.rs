//! A WHEP client (the `webrtc` crate as the viewer): plays a WHEP endpoint for a
//! while, depacketizes the H.264 and optionally decodes it. Behind
//! `vigil probe whep <url>` (check a server from the command line), the
//! integration tests (a second WebRTC peer beside Chromium) and the egress
//! benchmark (many viewers at once).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rtc::media::io::sample_builder::SampleBuilder;
use rtc::peer_connection::configuration::media_engine::MIME_TYPE_H264;
use rtc::rtp::codec::h264::H264Packet;
use rtc::rtp_transceiver::rtp_sender::{RTCRtpCodec, RTCRtpCodecParameters, RtpCodecKind};
use rtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit};
use tokio::sync::mpsc;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    MediaEngine, PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler,
    RTCIceGatheringState, RTCPeerConnectionState, RTCSessionDescription, Registry,
    SettingEngineBuilder, register_default_interceptors,
};

/// What a probe saw.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct ProbeReport {
    /// POST → 201 round trip.
    pub answer_ms: f64,
    /// POST → first complete access unit.
    pub first_frame_ms: Option<f64>,
    pub frames: u64,
    pub key_frames: u64,
    pub bytes: u64,
    /// Seconds between the first and the last frame received.
    pub media_seconds: f64,
    pub decoded: u64,
    pub decode_errors: u64,
    pub width: u32,
    pub height: u32,
}

/// Options of a probe.
#[derive(Clone, Debug)]
pub struct ProbeOptions {
    /// How long to play after the first frame.
    pub duration: Duration,
    /// Decode every frame with openh264 (costs CPU; off for load tests).
    pub decode: bool,
    /// Local address for the client's UDP socket.
    pub bind: String,
    /// Send `DELETE` at the end (a well-behaved viewer); false simulates a viewer
    /// that vanishes.
    pub delete: bool,
}

impl Default for ProbeOptions {
    fn default() -> Self {
        Self {
            duration: Duration::from_secs(5),
            decode: true,
            bind: "127.0.0.1:0".into(),
            delete: true,
        }
    }
}

struct Events {
    gathered: mpsc::Sender<()>,
    tracks: mpsc::UnboundedSender<Arc<dyn TrackRemote>>,
    state: mpsc::UnboundedSender<RTCPeerConnectionState>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Events {
    async fn on_ice_gathering_state_change(&self, s: RTCIceGatheringState) {
        if s == RTCIceGatheringState::Complete {
            let _ = self.gathered.try_send(());
        }
    }
    async fn on_track(&self, t: Arc<dyn TrackRemote>) {
        let _ = self.tracks.send(t);
    }
    async fn on_connection_state_change(&self, s: RTCPeerConnectionState) {
        let _ = self.state.send(s);
    }
}

fn err(what: &str) -> impl Fn(webrtc::error::Error) -> anyhow::Error + '_ {
    move |e| anyhow::anyhow!("{what}: {e}")
}

/// Plays `url` (a WHEP endpoint, e.g. `http://host:8080/cameras/lobby/whep`).
pub async fn probe(url: &str, opts: &ProbeOptions) -> anyhow::Result<ProbeReport> {
    let mut media = MediaEngine::default();
    for (pt, profile) in [(102u8, "42e01f"), (104, "4d001f"), (106, "64001f")] {
        media
            .register_codec(
                RTCRtpCodecParameters {
                    rtp_codec: RTCRtpCodec {
                        mime_type: MIME_TYPE_H264.into(),
                        clock_rate: 90_000,
                        channels: 0,
                        sdp_fmtp_line: format!(
                            "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id={profile}"
                        ),
                        rtcp_feedback: vec![],
                    },
                    payload_type: pt,
                },
                RtpCodecKind::Video,
            )
            .map_err(err("register H.264"))?;
    }
    let registry =
        register_default_interceptors(Registry::new(), &mut media).map_err(err("interceptors"))?;
    let (gtx, mut grx) = mpsc::channel(1);
    let (ttx, mut trx) = mpsc::unbounded_channel();
    let (stx, mut srx) = mpsc::unbounded_channel();
    let pc: Arc<dyn PeerConnection> = Arc::new(
        PeerConnectionBuilder::new()
            .with_media_engine(media)
            .with_interceptor_registry(registry)
            .with_setting_engine(
                SettingEngineBuilder::new()
                    .with_multicast_dns_mode(rtc::ice::mdns::MulticastDnsMode::Disabled)
                    .build(),
            )
            .with_handler(Arc::new(Events {
                gathered: gtx,
                tracks: ttx,
                state: stx,
            }))
            .with_udp_addrs(vec![opts.bind.clone()])
            .build()
            .await
            .map_err(err("peer connection"))?,
    );
    let mut session_url = None;
    let result = run(
        &pc,
        url,
        opts,
        &mut grx,
        &mut trx,
        &mut srx,
        &mut session_url,
    )
    .await;
    // End the session on every path once it exists, unless told to vanish.
    if opts.delete
        && let Some(u) = session_url
        && let Ok(req) = hyper::Request::delete(u).body(Full::new(Bytes::new()))
    {
        let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
        let _ = client.request(req).await;
    }
    let _ = pc.close().await;
    result
}

async fn run(
    pc: &Arc<dyn PeerConnection>,
    url: &str,
    opts: &ProbeOptions,
    grx: &mut mpsc::Receiver<()>,
    trx: &mut mpsc::UnboundedReceiver<Arc<dyn TrackRemote>>,
    srx: &mut mpsc::UnboundedReceiver<RTCPeerConnectionState>,
    session: &mut Option<String>,
) -> anyhow::Result<ProbeReport> {
    pc.add_transceiver_from_kind(
        RtpCodecKind::Video,
        Some(RTCRtpTransceiverInit {
            direction: RTCRtpTransceiverDirection::Recvonly,
            ..Default::default()
        }),
    )
    .await
    .map_err(err("transceiver"))?;
    let offer = pc.create_offer(None).await.map_err(err("offer"))?;
    pc.set_local_description(offer)
        .await
        .map_err(err("set local"))?;
    let _ = tokio::time::timeout(Duration::from_secs(3), grx.recv()).await;
    let offer = pc
        .local_description()
        .await
        .ok_or_else(|| anyhow::anyhow!("no local description"))?;

    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let t0 = Instant::now();
    let req = hyper::Request::post(url)
        .header("content-type", "application/sdp")
        .body(Full::new(Bytes::from(offer.sdp)))?;
    let resp = client.request(req).await?;
    let status = resp.status();
    let location = resp
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = resp.into_body().collect().await?.to_bytes();
    if status.as_u16() != 201 {
        anyhow::bail!(
            "WHEP POST {url}: {status}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    *session = location.map(|l| {
        if l.starts_with("http") {
            l
        } else {
            let origin = url.find("/cameras/").map_or(url, |i| &url[..i]);
            format!("{origin}{l}")
        }
    });
    let mut report = ProbeReport {
        answer_ms: t0.elapsed().as_secs_f64() * 1000.0,
        ..Default::default()
    };
    let answer = RTCSessionDescription::answer(String::from_utf8(body.to_vec())?)
        .map_err(err("answer SDP"))?;
    pc.set_remote_description(answer)
        .await
        .map_err(err("set remote"))?;

    let track = tokio::time::timeout(Duration::from_secs(10), trx.recv())
        .await
        .map_err(|_| anyhow::anyhow!("no track within 10 s"))?
        .ok_or_else(|| anyhow::anyhow!("connection closed before a track"))?;
    let mut builder = SampleBuilder::new(256, H264Packet::default(), 90_000);
    let mut decoder = if opts.decode {
        Some(openh264::decoder::Decoder::new()?)
    } else {
        None
    };
    let mut first: Option<Instant> = None;
    let mut last = Instant::now();
    let deadline = tokio::time::Instant::now() + opts.duration + Duration::from_secs(10);
    loop {
        if first.is_some_and(|f| f.elapsed() >= opts.duration) {
            break;
        }
        let ev = tokio::select! {
            ev = track.poll() => ev,
            s = srx.recv() => match s {
                Some(RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed) | None => {
                    anyhow::bail!("connection ended after {} frames", report.frames)
                }
                _ => continue,
            },
            _ = tokio::time::sleep_until(deadline) => anyhow::bail!("timed out after {} frames", report.frames),
        };
        let Some(ev) = ev else { break };
        let TrackRemoteEvent::OnRtpPacket(p) = ev else {
            continue;
        };
        report.bytes += p.payload.len() as u64 + 12;
        builder.push(Instant::now(), p);
        while let Some(sample) = builder.pop(Instant::now()) {
            let now = Instant::now();
            if first.is_none() {
                first = Some(now);
                report.first_frame_ms = Some(t0.elapsed().as_secs_f64() * 1000.0);
            }
            last = now;
            report.frames += 1;
            let data = &sample.data;
            let key = rtc_nals(data).any(|t| t == 5);
            report.key_frames += u64::from(key);
            if let Some(d) = decoder.as_mut() {
                match d.decode(data) {
                    Ok(Some(yuv)) => {
                        use openh264::formats::YUVSource;
                        let (w, h) = yuv.dimensions();
                        report.width = w as u32;
                        report.height = h as u32;
                        report.decoded += 1;
                    }
                    Ok(None) => {}
                    Err(_) => report.decode_errors += 1,
                }
            }
        }
    }
    report.media_seconds = first.map_or(0.0, |f| last.duration_since(f).as_secs_f64());
    Ok(report)
}

/// NAL unit types of an Annex B access unit.
fn rtc_nals(data: &[u8]) -> impl Iterator<Item = u8> + '_ {
    data.windows(4)
        .enumerate()
        .filter(|(_, w)| w[..3] == [0, 0, 1])
        .map(|(_, w)| w[3] & 0x1f)
}
