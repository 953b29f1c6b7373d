//! The camera simulator: an RTSP server (RFC 2326 subset, RTP over TCP interleaved)
//! serving N H.264 streams at `/cam0`, `/cam1`, … from a generated test pattern or an
//! H.264 file, looping with continuous timestamps.
//!
//! Cheap by construction: the picture sequence is encoded once at start-up and
//! pre-packetized ([`h264::Frame`]); a session's per-frame work is one copy, a few
//! header patches and one `write`. With `--stamp`, one live encoder thread renders the
//! wall-clock time into every frame (see [`picture`]) and all sessions share its output.
//!
//! This is a test and benchmark tool, not part of the host's media path: it knows
//! nothing of the broadcaster, HLS or the API.

mod encode;
mod h264;
mod picture;

pub use picture::decode_stamp;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, anyhow, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, watch};

use encode::{LiveFrame, Settings};
use h264::Clip;

/// Options of `vigil camsim`.
#[derive(Debug, Clone, clap::Args)]
pub struct CamsimArgs {
    /// RTSP listen address.
    #[arg(long, default_value = "127.0.0.1:8554")]
    pub listen: SocketAddr,
    /// Number of streams, served at /cam0 … /cam{N-1}.
    #[arg(long, default_value_t = 4)]
    pub streams: usize,
    /// Picture width of the generated pattern (even).
    #[arg(long, default_value_t = 640)]
    pub width: u32,
    /// Picture height of the generated pattern (even).
    #[arg(long, default_value_t = 360)]
    pub height: u32,
    /// Frames per second.
    #[arg(long, default_value_t = 15)]
    pub fps: u32,
    /// Frames per GOP (key frame interval); defaults to one second of frames.
    #[arg(long)]
    pub gop: Option<u32>,
    /// Target bitrate of the generated pattern, kbit/s.
    #[arg(long, default_value_t = 500)]
    pub bitrate_kbps: u32,
    /// Loop this H.264 file instead of the pattern: an Annex B elementary stream
    /// (`.h264`/`.264`), or any container ffmpeg reads (its H.264 video is copied out).
    #[arg(long)]
    pub input: Option<PathBuf>,
    /// Stamp the wall-clock time into every frame (live encoding; for latency
    /// measurements, see `decode_stamp`).
    #[arg(long)]
    pub stamp: bool,
}

impl Default for CamsimArgs {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            streams: 1,
            width: 640,
            height: 360,
            fps: 15,
            gop: None,
            bitrate_kbps: 500,
            input: None,
            stamp: false,
        }
    }
}

/// Counters of a running simulator.
#[derive(Debug, Default)]
pub struct CamsimStats {
    /// RTSP connections currently open.
    pub connections: AtomicUsize,
    /// Sessions currently playing.
    pub playing: AtomicUsize,
    /// Frames written to clients.
    pub frames_sent: AtomicU64,
    /// Frames skipped because a client could not keep up.
    pub frames_skipped: AtomicU64,
    /// TEARDOWN requests received.
    pub teardowns: AtomicU64,
}

/// What sessions send.
enum Source {
    /// A pre-encoded loop; each session plays it from its first frame.
    Loop(Clip),
    /// The live stamping encoder; sessions join at its next key frame.
    Live {
        rx: broadcast::Receiver<Arc<LiveFrame>>,
        sps: Vec<u8>,
        pps: Vec<u8>,
    },
}

impl Source {
    fn parameter_sets(&self) -> (&[u8], &[u8]) {
        match self {
            Source::Loop(c) => (&c.sps, &c.pps),
            Source::Live { sps, pps, .. } => (sps, pps),
        }
    }
}

struct Shared {
    source: Source,
    streams: usize,
    fps: u32,
    stats: Arc<CamsimStats>,
    shutdown: watch::Receiver<bool>,
}

/// A running simulator.
pub struct Camsim {
    addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    accept: tokio::task::JoinHandle<()>,
    live_thread: Option<std::thread::JoinHandle<()>>,
    stats: Arc<CamsimStats>,
}

impl std::fmt::Debug for Camsim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Camsim").field("addr", &self.addr).finish()
    }
}

impl Camsim {
    /// Encodes (or loads) the pictures and starts serving.
    pub async fn start(args: &CamsimArgs) -> anyhow::Result<Camsim> {
        let settings = validate(args)?;
        let (shutdown, shutdown_rx) = watch::channel(false);
        let (source, live_thread) = if args.stamp {
            if args.input.is_some() {
                bail!("--stamp renders its own pictures and cannot be combined with --input");
            }
            let live = encode::start_live(settings, shutdown_rx.clone())?;
            (
                Source::Live {
                    rx: live.rx,
                    sps: live.sps,
                    pps: live.pps,
                },
                Some(live.thread),
            )
        } else {
            let clip = match &args.input {
                Some(path) => {
                    let path = path.clone();
                    tokio::task::spawn_blocking(move || load_input(&path)).await??
                }
                None => {
                    tokio::task::spawn_blocking(move || encode::encode_loop(&settings)).await??
                }
            };
            (Source::Loop(clip), None)
        };
        let listener = TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("camsim: cannot listen on {}", args.listen))?;
        let addr = listener.local_addr()?;
        let stats = Arc::new(CamsimStats::default());
        let shared = Arc::new(Shared {
            source,
            streams: args.streams,
            fps: settings.fps,
            stats: stats.clone(),
            shutdown: shutdown_rx,
        });
        let accept = tokio::spawn(accept_loop(listener, shared));
        Ok(Camsim {
            addr,
            shutdown,
            accept,
            live_thread,
            stats,
        })
    }

    /// The RTSP URL of stream `i`.
    pub fn url(&self, i: usize) -> String {
        format!("rtsp://{}/cam{i}", self.addr)
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Live counters.
    pub fn stats(&self) -> &CamsimStats {
        &self.stats
    }

    /// Stops accepting, ends every session and the live encoder.
    pub async fn shutdown(self) {
        self.shutdown.send_replace(true);
        self.accept.abort();
        let _ = self.accept.await;
        if let Some(t) = self.live_thread {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
    }
}

fn validate(args: &CamsimArgs) -> anyhow::Result<Settings> {
    if args.streams == 0 || args.streams > 100_000 {
        bail!(
            "--streams must be between 1 and 100000 (got {})",
            args.streams
        );
    }
    if !(1..=120).contains(&args.fps) {
        bail!("--fps must be between 1 and 120 (got {})", args.fps);
    }
    if !args.width.is_multiple_of(2)
        || !args.height.is_multiple_of(2)
        || args.width < 16
        || args.height < 16
    {
        bail!(
            "--width and --height must be even and at least 16 (got {}x{})",
            args.width,
            args.height
        );
    }
    if args.width > 4096 || args.height > 2304 {
        bail!("{}x{} is larger than 4096x2304", args.width, args.height);
    }
    let gop = args.gop.unwrap_or(args.fps);
    if !(1..=1000).contains(&gop) {
        bail!("--gop must be between 1 and 1000 frames (got {gop})");
    }
    if !(10..=100_000).contains(&args.bitrate_kbps) {
        bail!(
            "--bitrate-kbps must be between 10 and 100000 (got {})",
            args.bitrate_kbps
        );
    }
    if args.stamp && !picture::stamp_fits(args.width, args.height) {
        bail!(
            "{}x{} is too small to carry the time stamp",
            args.width,
            args.height
        );
    }
    Ok(Settings {
        width: args.width,
        height: args.height,
        fps: args.fps,
        gop,
        bitrate_kbps: args.bitrate_kbps,
    })
}

/// Reads an H.264 clip: Annex B directly, anything else through ffmpeg (stream copy,
/// converted to Annex B).
fn load_input(path: &std::path::Path) -> anyhow::Result<Clip> {
    let data = read_annex_b(path)?;
    h264::clip_from_annex_b(&data).with_context(|| format!("{}", path.display()))
}

/// SPS, PPS, and access units (each a list of NAL units).
pub type H264File = (Vec<u8>, Vec<u8>, Vec<Vec<Vec<u8>>>);

/// An H.264 file's video as access units, each a list of NAL units (no start
/// codes), starting at the first IDR, with the SPS and PPS in effect. Used by the
/// offline plugin runner.
pub fn read_access_units(path: &std::path::Path) -> anyhow::Result<H264File> {
    let data = read_annex_b(path)?;
    let nals = h264::split_annex_b(&data);
    if nals.is_empty() {
        bail!("{}: no H.264 video found", path.display());
    }
    let aus = h264::split_access_units(&nals);
    let (mut sps, mut pps) = (None, None);
    let mut out = Vec::new();
    for au in aus {
        let mut keep = Vec::new();
        let mut idr = false;
        for nal in au {
            match h264::nal_unit_type(nal) {
                h264::nal_type::SPS => sps = Some(nal.to_vec()),
                h264::nal_type::PPS => pps = Some(nal.to_vec()),
                h264::nal_type::AUD | h264::nal_type::FILLER => {}
                t => {
                    idr |= t == h264::nal_type::IDR;
                    keep.push(nal.to_vec());
                }
            }
        }
        if keep.is_empty() || (out.is_empty() && !idr) {
            continue;
        }
        out.push(keep);
    }
    match (sps, pps) {
        (Some(s), Some(p)) if !out.is_empty() => Ok((s, p, out)),
        _ => bail!(
            "{}: no decodable H.264 (SPS, PPS and an IDR picture)",
            path.display()
        ),
    }
}

fn read_annex_b(path: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    let data = if matches!(ext.as_str(), "h264" | "264" | "avc") {
        std::fs::read(path).with_context(|| format!("reading {}", path.display()))?
    } else {
        if !path.exists() {
            bail!("{}: no such file", path.display());
        }
        let out = std::process::Command::new("ffmpeg")
            .args(["-nostdin", "-v", "error", "-i"])
            .arg(path)
            .args([
                "-map",
                "0:v:0",
                "-c:v",
                "copy",
                "-bsf:v",
                "h264_mp4toannexb",
                "-f",
                "h264",
                "-",
            ])
            .output()
            .map_err(|e| {
                anyhow!(
                    "{}: cannot run ffmpeg to read it ({e}); give an Annex B .h264 file instead",
                    path.display()
                )
            })?;
        if !out.status.success() {
            bail!(
                "{}: ffmpeg could not extract H.264 video: {}",
                path.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        out.stdout
    };
    Ok(data)
}

/// `vigil camsim`: serve until Ctrl-C.
pub async fn run(args: CamsimArgs) -> anyhow::Result<()> {
    let sim = Camsim::start(&args).await?;
    println!(
        "camsim: {} streams at {} … {}",
        args.streams,
        sim.url(0),
        sim.url(args.streams - 1)
    );
    crate::app::shutdown_signal().await;
    sim.shutdown().await;
    Ok(())
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut shutdown = shared.shutdown.clone();
    loop {
        tokio::select! {
            r = listener.accept() => match r {
                Ok((sock, _)) => {
                    let _ = sock.set_nodelay(true);
                    let shared = shared.clone();
                    tokio::spawn(async move {
                        shared.stats.connections.fetch_add(1, Ordering::Relaxed);
                        let r = Connection::new(sock, shared.clone()).run().await;
                        shared.stats.connections.fetch_sub(1, Ordering::Relaxed);
                        if let Err(e) = r {
                            tracing::debug!("camsim connection ended: {e:#}");
                        }
                    });
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!("camsim accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = stopped(&mut shutdown) => return,
        }
    }
}

/// Resolves once shutdown is requested (or its sender is gone).
async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

/// A parsed RTSP request.
#[derive(Debug)]
struct Request {
    method: String,
    uri: String,
    headers: Vec<(String, String)>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

const MAX_REQUEST: usize = 16 * 1024;

/// Parses one message from the front of `buf`: `Ok(None)` if incomplete; interleaved
/// binary frames from the client (RTCP receiver reports) are consumed and skipped.
fn parse_message(buf: &mut Vec<u8>) -> anyhow::Result<Option<Request>> {
    loop {
        if buf.first() == Some(&b'$') {
            if buf.len() < 4 {
                return Ok(None);
            }
            let len = 4 + usize::from(u16::from_be_bytes([buf[2], buf[3]]));
            if buf.len() < len {
                return Ok(None);
            }
            buf.drain(..len);
            continue;
        }
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            if buf.len() > MAX_REQUEST {
                bail!("request header longer than {MAX_REQUEST} bytes");
            }
            return Ok(None);
        };
        let head = std::str::from_utf8(&buf[..end]).context("request is not UTF-8")?;
        let mut lines = head.split("\r\n");
        let first = lines.next().unwrap_or("");
        let mut parts = first.split_whitespace();
        let (Some(method), Some(uri), Some(version)) = (parts.next(), parts.next(), parts.next())
        else {
            bail!("malformed request line {first:?}");
        };
        if !version.starts_with("RTSP/1.") {
            bail!("not an RTSP/1.x request: {first:?}");
        }
        let mut headers = Vec::new();
        for l in lines {
            if let Some((k, v)) = l.split_once(':') {
                headers.push((k.trim().to_string(), v.trim().to_string()));
            }
        }
        let req = Request {
            method: method.to_string(),
            uri: uri.to_string(),
            headers,
        };
        let body = req
            .header("Content-Length")
            .map(|v| v.parse::<usize>())
            .transpose()
            .context("bad Content-Length")?
            .unwrap_or(0);
        if body > MAX_REQUEST {
            bail!("request body of {body} bytes is too large");
        }
        if buf.len() < end + 4 + body {
            return Ok(None);
        }
        buf.drain(..end + 4 + body);
        return Ok(Some(req));
    }
}

/// The stream index named by a request URI (`rtsp://host/cam3`, `/cam3/`,
/// `/cam3/trackID=0`).
fn stream_of(uri: &str, streams: usize) -> Option<usize> {
    let path = match uri.find("://") {
        Some(i) => {
            let rest = &uri[i + 3..];
            &rest[rest.find('/').unwrap_or(rest.len())..]
        }
        None => uri,
    };
    let path = path.split(['?', '#']).next().unwrap_or("");
    let mut segs = path.split('/').filter(|s| !s.is_empty());
    let first = segs.next()?;
    match segs.next() {
        None => {}
        Some(s) if s.starts_with("trackID=") => {}
        Some(_) => return None,
    }
    let n: usize = first.strip_prefix("cam")?.parse().ok()?;
    (n < streams).then_some(n)
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum State {
    Init,
    Ready,
    Playing,
}

struct Connection {
    sock: TcpStream,
    shared: Arc<Shared>,
    inbuf: Vec<u8>,
    outbuf: Vec<u8>,
    state: State,
    session_id: String,
    stream: Option<usize>,
    rtp_channel: u8,
    ssrc: u32,
    seq: u16,
    ts_base: u32,
    packets: u32,
    octets: u32,
}

impl Connection {
    fn new(sock: TcpStream, shared: Arc<Shared>) -> Self {
        Self {
            sock,
            shared,
            inbuf: Vec::with_capacity(2048),
            outbuf: Vec::with_capacity(16 * 1024),
            state: State::Init,
            session_id: format!("{:016x}", rand::random::<u64>()),
            stream: None,
            rtp_channel: 0,
            ssrc: rand::random(),
            seq: rand::random(),
            ts_base: rand::random(),
            packets: 0,
            octets: 0,
        }
    }

    async fn run(mut self) -> anyhow::Result<()> {
        let mut shutdown = self.shared.shutdown.clone();
        // Requests before PLAY.
        while self.state != State::Playing {
            let req = tokio::select! {
                r = self.read_request(Duration::from_secs(30)) => r?,
                _ = stopped(&mut shutdown) => return Ok(()),
            };
            let Some(req) = req else { return Ok(()) };
            if !self.handle(req).await? {
                return Ok(());
            }
        }
        self.shared.stats.playing.fetch_add(1, Ordering::Relaxed);
        let r = self.play(&mut shutdown).await;
        self.shared.stats.playing.fetch_sub(1, Ordering::Relaxed);
        r
    }

    /// Reads one request; `None` on a clean close.
    async fn read_request(&mut self, timeout: Duration) -> anyhow::Result<Option<Request>> {
        loop {
            if let Some(r) = parse_message(&mut self.inbuf)? {
                return Ok(Some(r));
            }
            let n = tokio::time::timeout(timeout, self.sock.read_buf(&mut self.inbuf))
                .await
                .map_err(|_| anyhow!("client idle for {timeout:?}"))??;
            if n == 0 {
                return Ok(None);
            }
        }
    }

    async fn respond(
        &mut self,
        cseq: &str,
        status: &str,
        headers: &[(&str, String)],
        body: &str,
    ) -> anyhow::Result<()> {
        let mut r = format!("RTSP/1.0 {status}\r\nCSeq: {cseq}\r\nServer: vigil-camsim\r\n");
        for (k, v) in headers {
            r.push_str(&format!("{k}: {v}\r\n"));
        }
        if !body.is_empty() {
            r.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        r.push_str("\r\n");
        r.push_str(body);
        self.sock.write_all(r.as_bytes()).await?;
        Ok(())
    }

    /// Handles a request; returns false when the connection should close.
    async fn handle(&mut self, req: Request) -> anyhow::Result<bool> {
        let cseq = req.header("CSeq").unwrap_or("0").to_string();
        let session = [("Session", format!("{};timeout=60", self.session_id))];
        match req.method.as_str() {
            "OPTIONS" => {
                let h = [(
                    "Public",
                    "OPTIONS, DESCRIBE, SETUP, PLAY, TEARDOWN, GET_PARAMETER, SET_PARAMETER"
                        .to_string(),
                )];
                self.respond(&cseq, "200 OK", &h, "").await?;
            }
            "GET_PARAMETER" | "SET_PARAMETER" => {
                self.respond(&cseq, "200 OK", &session, "").await?;
            }
            "DESCRIBE" => {
                let Some(n) = stream_of(&req.uri, self.shared.streams) else {
                    self.respond(&cseq, "404 Not Found", &[], "").await?;
                    return Ok(true);
                };
                let base = req.uri.trim_end_matches('/').to_string();
                let sdp = self.sdp(n);
                let h = [
                    ("Content-Type", "application/sdp".to_string()),
                    ("Content-Base", format!("{base}/")),
                ];
                self.respond(&cseq, "200 OK", &h, &sdp).await?;
            }
            "SETUP" => {
                let Some(n) = stream_of(&req.uri, self.shared.streams) else {
                    self.respond(&cseq, "404 Not Found", &[], "").await?;
                    return Ok(true);
                };
                let transport = req.header("Transport").unwrap_or("");
                let Some(channel) = interleaved_channel(transport) else {
                    // Only TCP interleaved: the simulator exists to be cheap at scale.
                    self.respond(&cseq, "461 Unsupported Transport", &[], "")
                        .await?;
                    return Ok(true);
                };
                self.stream = Some(n);
                self.rtp_channel = channel;
                self.state = State::Ready;
                let h = [
                    session[0].clone(),
                    (
                        "Transport",
                        format!(
                            "RTP/AVP/TCP;unicast;interleaved={}-{};ssrc={:08X}",
                            channel,
                            channel.wrapping_add(1),
                            self.ssrc
                        ),
                    ),
                ];
                self.respond(&cseq, "200 OK", &h, "").await?;
            }
            "PLAY" => {
                if self.state != State::Ready {
                    self.respond(&cseq, "455 Method Not Valid in This State", &[], "")
                        .await?;
                    return Ok(true);
                }
                let base = req.uri.trim_end_matches('/').to_string();
                let h = [
                    session[0].clone(),
                    ("Range", "npt=0.000-".to_string()),
                    (
                        "RTP-Info",
                        format!(
                            "url={base}/trackID=0;seq={};rtptime={}",
                            self.seq, self.ts_base
                        ),
                    ),
                ];
                self.respond(&cseq, "200 OK", &h, "").await?;
                self.state = State::Playing;
            }
            "TEARDOWN" => {
                self.shared.stats.teardowns.fetch_add(1, Ordering::Relaxed);
                self.respond(&cseq, "200 OK", &[], "").await?;
                return Ok(false);
            }
            _ => {
                self.respond(&cseq, "501 Not Implemented", &[], "").await?;
            }
        }
        Ok(true)
    }

    fn sdp(&self, n: usize) -> String {
        let (sps, pps) = self.shared.source.parameter_sets();
        format!(
            "v=0\r\no=- {id} 1 IN IP4 127.0.0.1\r\ns=Vigil camsim cam{n}\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\n\
             a=control:*\r\na=range:npt=now-\r\nm=video 0 RTP/AVP {pt}\r\na=rtpmap:{pt} H264/90000\r\n\
             a=fmtp:{pt} packetization-mode=1;profile-level-id={pli};sprop-parameter-sets={sps},{pps}\r\n\
             a=framerate:{fps}\r\na=control:trackID=0\r\n",
            id = rand::random::<u32>(),
            pt = h264::RTP_PAYLOAD_TYPE,
            pli = h264::profile_level_id(sps),
            sps = h264::base64(sps),
            pps = h264::base64(pps),
            fps = self.shared.fps,
        )
    }

    /// RTP timestamp of frame `index` (90 kHz clock).
    fn timestamp(&self, index: u64) -> u32 {
        let ticks = index * 90_000 / u64::from(self.shared.fps);
        self.ts_base.wrapping_add(ticks as u32)
    }

    async fn send_frame(&mut self, frame: &h264::Frame, index: u64) -> anyhow::Result<()> {
        self.outbuf.clear();
        let ts = self.timestamp(index);
        frame.write_to(
            &mut self.outbuf,
            self.rtp_channel,
            &mut self.seq,
            ts,
            self.ssrc,
        );
        self.packets = self.packets.wrapping_add(frame.packet_count() as u32);
        self.octets = self.octets.wrapping_add(frame.payload_octets());
        // A client that stops reading must not pin this session forever.
        tokio::time::timeout(Duration::from_secs(10), self.sock.write_all(&self.outbuf))
            .await
            .map_err(|_| anyhow!("client stopped reading"))??;
        self.shared
            .stats
            .frames_sent
            .fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// An RTCP sender report (RFC 3550 6.4.1) for the frame at `index`, sent now.
    async fn send_report(&mut self, index: u64) -> anyhow::Result<()> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let ntp_secs = now.as_secs() + 2_208_988_800;
        let ntp_frac = (u64::from(now.subsec_nanos()) << 32) / 1_000_000_000;
        let mut p = Vec::with_capacity(32);
        p.extend_from_slice(&[b'$', self.rtp_channel.wrapping_add(1), 0, 28]);
        p.extend_from_slice(&[0x80, 200, 0, 6]);
        p.extend_from_slice(&self.ssrc.to_be_bytes());
        p.extend_from_slice(&(ntp_secs as u32).to_be_bytes());
        p.extend_from_slice(&(ntp_frac as u32).to_be_bytes());
        p.extend_from_slice(&self.timestamp(index).to_be_bytes());
        p.extend_from_slice(&self.packets.to_be_bytes());
        p.extend_from_slice(&self.octets.to_be_bytes());
        self.sock.write_all(&p).await?;
        Ok(())
    }

    async fn play(&mut self, shutdown: &mut watch::Receiver<bool>) -> anyhow::Result<()> {
        let shared = self.shared.clone();
        match &shared.source {
            Source::Loop(clip) => self.play_loop(clip, shutdown).await,
            Source::Live { rx, .. } => self.play_live(rx.resubscribe(), shutdown).await,
        }
    }

    /// Plays the pre-encoded loop from its first (key) frame, paced by the session's
    /// own clock. A client that cannot keep up skips to the next key frame.
    async fn play_loop(
        &mut self,
        clip: &Clip,
        shutdown: &mut watch::Receiver<bool>,
    ) -> anyhow::Result<()> {
        let fps = u64::from(self.shared.fps);
        let period = Duration::from_nanos(1_000_000_000 / fps);
        let start = tokio::time::Instant::now();
        let mut tick = tokio::time::interval_at(start, period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut next_index = 0u64;
        let mut need_key = false;
        let mut next_report = Instant::now() + Duration::from_secs(1);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    let due = (start.elapsed().as_nanos() / period.as_nanos()) as u64;
                    if due > next_index {
                        // Missed frames (the client or this machine was slow).
                        self.shared.stats.frames_skipped.fetch_add(due - next_index, Ordering::Relaxed);
                        need_key = true;
                        next_index = due;
                    }
                    let index = next_index;
                    next_index += 1;
                    let frame = &clip.frames[(index % clip.frames.len() as u64) as usize];
                    if need_key && !frame.idr {
                        self.shared.stats.frames_skipped.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    need_key = false;
                    self.send_frame(frame, index).await?;
                    if Instant::now() >= next_report {
                        self.send_report(index).await?;
                        next_report = Instant::now() + Duration::from_secs(5);
                    }
                }
                r = self.sock.read_buf(&mut self.inbuf) => {
                    if r? == 0 {
                        return Ok(());
                    }
                    if !self.handle_while_playing().await? {
                        return Ok(());
                    }
                }
                _ = stopped(shutdown) => return Ok(()),
            }
        }
    }

    /// Forwards the live encoder's frames, starting at its next key frame.
    async fn play_live(
        &mut self,
        mut rx: broadcast::Receiver<Arc<LiveFrame>>,
        shutdown: &mut watch::Receiver<bool>,
    ) -> anyhow::Result<()> {
        let mut need_key = true;
        let mut first: Option<u64> = None;
        let mut next_report = Instant::now() + Duration::from_secs(1);
        loop {
            tokio::select! {
                r = rx.recv() => match r {
                    Ok(f) => {
                        if need_key && !f.frame.idr {
                            continue;
                        }
                        need_key = false;
                        let base = *first.get_or_insert(f.index);
                        let index = f.index - base;
                        self.send_frame(&f.frame, index).await?;
                        if Instant::now() >= next_report {
                            self.send_report(index).await?;
                            next_report = Instant::now() + Duration::from_secs(5);
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        self.shared.stats.frames_skipped.fetch_add(n, Ordering::Relaxed);
                        need_key = true;
                    }
                    Err(broadcast::error::RecvError::Closed) => bail!("the live encoder stopped"),
                },
                r = self.sock.read_buf(&mut self.inbuf) => {
                    if r? == 0 {
                        return Ok(());
                    }
                    if !self.handle_while_playing().await? {
                        return Ok(());
                    }
                }
                _ = stopped(shutdown) => return Ok(()),
            }
        }
    }

    /// Answers keep-alives and TEARDOWN that arrive during PLAY.
    async fn handle_while_playing(&mut self) -> anyhow::Result<bool> {
        while let Some(req) = parse_message(&mut self.inbuf)? {
            if !self.handle(req).await? {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

/// The first channel of `interleaved=a-b` in a TCP transport spec, if it is one.
fn interleaved_channel(transport: &str) -> Option<u8> {
    transport.split(',').find_map(|spec| {
        let mut parts = spec.split(';');
        let proto = parts.next()?.trim();
        if !proto.eq_ignore_ascii_case("RTP/AVP/TCP") {
            return None;
        }
        let mut channel = Some(0);
        for p in parts {
            if let Some(v) = p.trim().strip_prefix("interleaved=") {
                channel = v.split('-').next()?.parse().ok();
            }
        }
        channel
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_requests_and_skips_interleaved_data() {
        let mut buf =
            b"$\x01\x00\x02abOPTIONS rtsp://h/cam0 RTSP/1.0\r\nCSeq: 3\r\n\r\nSETUP".to_vec();
        let r = parse_message(&mut buf).unwrap().unwrap();
        assert_eq!(r.method, "OPTIONS");
        assert_eq!(r.header("cseq"), Some("3"));
        assert_eq!(buf, b"SETUP");
        assert!(parse_message(&mut buf).unwrap().is_none());
        let mut bad = b"GARBAGE\r\n\r\n".to_vec();
        assert!(parse_message(&mut bad).is_err());
        let mut huge = vec![b'A'; MAX_REQUEST + 1];
        assert!(parse_message(&mut huge).is_err());
    }

    #[test]
    fn maps_uris_to_streams() {
        assert_eq!(stream_of("rtsp://127.0.0.1:8554/cam3", 4), Some(3));
        assert_eq!(stream_of("rtsp://127.0.0.1:8554/cam3/", 4), Some(3));
        assert_eq!(
            stream_of("rtsp://127.0.0.1:8554/cam3/trackID=0", 4),
            Some(3)
        );
        assert_eq!(stream_of("rtsp://127.0.0.1:8554/cam4", 4), None);
        assert_eq!(stream_of("rtsp://127.0.0.1:8554/other", 4), None);
        assert_eq!(stream_of("rtsp://127.0.0.1:8554/", 4), None);
        assert_eq!(stream_of("/cam0", 1), Some(0));
    }

    #[test]
    fn transport_channels() {
        assert_eq!(
            interleaved_channel("RTP/AVP/TCP;unicast;interleaved=2-3"),
            Some(2)
        );
        assert_eq!(
            interleaved_channel("RTP/AVP;unicast;client_port=5000-5001"),
            None
        );
        assert_eq!(
            interleaved_channel("RTP/AVP;unicast;client_port=1-2,RTP/AVP/TCP;interleaved=0-1"),
            Some(0)
        );
    }

    #[test]
    fn rejects_bad_settings_clearly() {
        let bad = |f: fn(&mut CamsimArgs), needle: &str| {
            let mut a = CamsimArgs::default();
            f(&mut a);
            let e = validate(&a).unwrap_err().to_string();
            assert!(e.contains(needle), "{e}");
        };
        bad(|a| a.streams = 0, "--streams");
        bad(|a| a.fps = 0, "--fps");
        bad(|a| a.width = 641, "even");
        bad(|a| a.gop = Some(0), "--gop");
        bad(|a| a.bitrate_kbps = 1, "--bitrate-kbps");
        assert!(validate(&CamsimArgs::default()).is_ok());
    }
}
