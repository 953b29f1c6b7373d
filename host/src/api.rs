//! The HTTP surface: JSON API, HLS endpoints and the minimal web page.
//! The only module that knows HTTP; [`status_of`] is the one place an error kind
//! becomes an HTTP status. Built by a plain function ([`router`]) so tests drive it
//! with `oneshot`, no socket needed.

use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;

use crate::error::{Error, ErrorKind};
use crate::hls::Hls;
use crate::ingest::Camera;
use crate::mjpeg::Mjpeg;
use crate::snapshot::Snapshots;
use crate::stats::Protocol;

/// What the handlers share.
#[derive(Clone, Debug)]
pub struct AppState {
    pub cameras: Arc<Vec<Arc<Camera>>>,
    pub hls: Arc<Hls>,
    pub snapshots: Arc<Snapshots>,
    pub mjpeg: Arc<Mjpeg>,
    pub whep: Arc<crate::whep::Whep>,
    pub events: Arc<crate::events::Events>,
    pub plugins: Arc<crate::plugins::Plugins>,
    pub started: Instant,
}

impl AppState {
    /// The camera with this id, or a 404 naming it.
    pub fn camera_arc(&self, id: &str) -> Result<Arc<Camera>, ApiError> {
        self.camera(id).cloned()
    }

    fn camera(&self, id: &str) -> Result<&Arc<Camera>, ApiError> {
        self.cameras
            .iter()
            .find(|c| c.config.id == id)
            .ok_or_else(|| {
                ApiError(Error::new(
                    ErrorKind::NotFound,
                    format!("no camera with id {id:?}"),
                ))
            })
    }
}

/// An error as a JSON response.
#[derive(Debug)]
pub struct ApiError(pub Error);

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        Self(e)
    }
}

/// The one mapping from error kind to HTTP status.
pub fn status_of(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::InvalidArgument => StatusCode::BAD_REQUEST,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::Unauthenticated => StatusCode::UNAUTHORIZED,
        ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        ErrorKind::Protocol => StatusCode::BAD_GATEWAY,
        ErrorKind::FailedPrecondition => StatusCode::PRECONDITION_FAILED,
        ErrorKind::InvalidConfig => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = status_of(self.0.kind());
        if status.is_server_error() {
            tracing::warn!(error = %self.0, "request failed");
        }
        let body = json!({ "error": { "kind": self.0.kind(), "message": self.0.to_string() } });
        let mut r = (status, Json(body)).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        r
    }
}

/// Builds the router.
pub fn router(state: AppState) -> axum::Router {
    axum::Router::new()
        .route("/", get(index))
        .route("/favicon.ico", get(|| async { StatusCode::NO_CONTENT }))
        .route("/assets/hls.min.js", get(hls_js))
        // The dashboard's and the player page's own files, embedded.
        .route(
            "/assets/player.js",
            get(|| async { media("text/javascript", include_str!("../web/player.js")) }),
        )
        .route(
            "/assets/dashboard.js",
            get(|| async { media("text/javascript", include_str!("../web/dashboard.js")) }),
        )
        .route(
            "/assets/dashboard.css",
            get(|| async { media("text/css", include_str!("../web/dashboard.css")) }),
        )
        .route("/api/health", get(health))
        .route("/api/cameras", get(list_cameras))
        .route("/api/cameras/{id}", get(get_camera))
        .route(
            "/api/cameras/{id}/plugins",
            get(crate::api_plugins::camera_plugins),
        )
        .route(
            "/api/cameras/{id}/plugins/{plugin}",
            get(crate::api_plugins::get_camera_plugin)
                .put(crate::api_plugins::put_camera_plugin)
                .delete(crate::api_plugins::delete_camera_plugin),
        )
        .route("/api/plugins", get(crate::api_plugins::list_plugins))
        .route("/api/plugins/{id}", get(crate::api_plugins::get_plugin))
        .route(
            "/api/plugins/{id}/reload",
            post(crate::api_plugins::reload_plugin),
        )
        .route(
            "/api/events",
            get(crate::api_plugins::list_events).post(crate::api_plugins::post_event),
        )
        .route("/api/events/stream", get(crate::api_plugins::stream_events))
        .route("/api/events/{id}", get(crate::api_plugins::get_event))
        .route(
            "/api/events/{id}/snapshot.jpg",
            get(crate::api_plugins::event_snapshot),
        )
        .route("/cameras/{id}/hls/{file}", get(hls_file))
        .route("/cameras/{id}/snapshot.jpg", get(snapshot))
        .route("/cameras/{id}/mjpeg", get(mjpeg))
        .route("/cameras/{id}/player", get(player))
        .route("/cameras/{id}/whep", post(whep_offer).options(whep_options))
        .route(
            "/cameras/{id}/whep/{session}",
            axum::routing::delete(whep_delete)
                .patch(whep_patch)
                .options(whep_options),
        )
        .route("/metrics", get(metrics))
        .layer(axum::extract::DefaultBodyLimit::max(64 * 1024))
        .fallback(|| async { ApiError(Error::new(ErrorKind::NotFound, "no such endpoint")) })
        .with_state(state)
}

fn camera_json(state: &AppState, c: &Camera) -> serde_json::Value {
    let st = c.status();
    let hls = state.hls.existing(&c.config.id).map(|s| s.stats());
    json!({
        "id": c.config.id,
        "name": c.config.name,
        "url": c.config.display_url(),
        "transport": c.config.transport,
        "mode": c.config.mode,
        "state": st.state,
        "last_error": st.last_error,
        "last_error_kind": st.last_error_kind,
        "last_error_at": st.last_error_at,
        "codec": st.codec,
        "codec_string": st.codec_string,
        "width": st.width,
        "height": st.height,
        "audio": st.audio,
        "fps": st.fps,
        "bitrate_kbps": st.bitrate_kbps,
        "reconnects": st.reconnects,
        "frames": st.frames,
        "bytes": st.bytes,
        "consumers": c.broadcaster.subscriber_count(),
        "gop_cache_bytes": c.broadcaster.cached_bytes(),
        "hls": hls,
        "mjpeg": state.mjpeg.stats(&c.config.id),
        "webrtc_sessions": state.whep.sessions(&c.config.id),
        "outputs": outputs_json(state, c),
        "analytics": state.plugins.frame_path(&c.config.id),
    })
}

/// Viewers, bytes and sessions by protocol. HLS is stateless: its viewers are the
/// LL-HLS clients holding a blocking playlist request right now.
fn outputs_json(state: &AppState, c: &Camera) -> serde_json::Value {
    let mut m = serde_json::Map::new();
    for p in Protocol::ALL {
        let mut counts = c.outputs.get(p).counts();
        if p == Protocol::Hls {
            counts.viewers = state
                .hls
                .existing(&c.config.id)
                .map_or(0, |s| s.stats().waiting_requests as i64);
        }
        m.insert(
            p.name().into(),
            serde_json::to_value(counts).unwrap_or_default(),
        );
    }
    serde_json::Value::Object(m)
}

async fn list_cameras(State(s): State<AppState>) -> Json<serde_json::Value> {
    Json(serde_json::Value::Array(
        s.cameras.iter().map(|c| camera_json(&s, c)).collect(),
    ))
}

async fn get_camera(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let c = s.camera(&id)?;
    Ok(Json(camera_json(&s, c)))
}

async fn health(State(s): State<AppState>) -> Json<serde_json::Value> {
    let mut by_state = std::collections::BTreeMap::<String, usize>::new();
    for c in s.cameras.iter() {
        let st = serde_json::to_value(c.status().state).unwrap_or_default();
        *by_state
            .entry(st.as_str().unwrap_or("?").to_string())
            .or_default() += 1;
    }
    Json(json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_s": s.started.elapsed().as_secs_f64(),
        "server_time_ms": crate::events::now_ms(),
        "cameras": s.cameras.len(),
        "camera_states": by_state,
        "hls_muxers": s.hls.active(),
        "mjpeg_encoders": s.mjpeg.active(),
        "webrtc": s.whep.stats(),
    }))
}

#[derive(Deserialize)]
struct HlsQuery {
    #[serde(rename = "_HLS_msn")]
    msn: Option<String>,
    #[serde(rename = "_HLS_part")]
    part: Option<String>,
}

fn bad(msg: String) -> ApiError {
    ApiError(Error::new(ErrorKind::InvalidArgument, msg))
}

fn media(content_type: &'static str, body: impl IntoResponse) -> Response {
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    r
}

async fn hls_file(
    State(s): State<AppState>,
    Path((id, file)): Path<(String, String)>,
    Query(q): Query<HlsQuery>,
) -> Result<Response, ApiError> {
    let cam = s.camera(&id)?.clone();
    if file == "index.m3u8" {
        let msn = q
            .msn
            .map(|v| {
                v.parse::<u64>()
                    .map_err(|_| bad(format!("_HLS_msn={v:?} is not a number")))
            })
            .transpose()?;
        let part = q
            .part
            .map(|v| {
                v.parse::<usize>()
                    .map_err(|_| bad(format!("_HLS_part={v:?} is not a number")))
            })
            .transpose()?;
        if part.is_some() && msn.is_none() {
            return Err(bad("_HLS_part requires _HLS_msn".into()));
        }
        let pl = s.hls.playlist(&cam, msn, part).await?;
        let mut r = media("application/vnd.apple.mpegurl", pl);
        r.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        return Ok(r);
    }
    let not_found = || bad(format!("no HLS resource {file:?}"));
    if let Some(g) = file
        .strip_prefix("init-")
        .and_then(|r| r.strip_suffix(".mp4"))
    {
        let g: u64 = g.parse().map_err(|_| not_found())?;
        let b = s.hls.init(&cam, g).await?;
        cam.outputs.get(Protocol::Hls).add_bytes(b.len());
        return Ok(media("video/mp4", b));
    }
    if let Some(n) = file
        .strip_prefix("seg-")
        .and_then(|r| r.strip_suffix(".m4s"))
    {
        let n: u64 = n.parse().map_err(|_| not_found())?;
        let b = s.hls.segment(&cam, n).await?;
        cam.outputs.get(Protocol::Hls).add_bytes(b.len());
        return Ok(media("video/iso.segment", b));
    }
    if let Some(r) = file
        .strip_prefix("part-")
        .and_then(|r| r.strip_suffix(".m4s"))
    {
        let seq: u32 = r.parse().map_err(|_| not_found())?;
        let b = s.hls.part(&cam, seq).await?;
        cam.outputs.get(Protocol::Hls).add_bytes(b.len());
        return Ok(media("video/iso.segment", b));
    }
    Err(ApiError(Error::new(
        ErrorKind::NotFound,
        format!("no HLS resource {file:?}"),
    )))
}

#[derive(Deserialize)]
struct SnapshotQuery {
    width: Option<String>,
}

async fn snapshot(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<SnapshotQuery>,
) -> Result<Response, ApiError> {
    let cam = s.camera(&id)?.clone();
    let width = q
        .width
        .map(|w| {
            w.parse::<u32>()
                .map_err(|_| bad(format!("width={w:?} is not a number")))
        })
        .transpose()?;
    let jpeg = s.snapshots.jpeg(&cam, width).await?;
    let stats = cam.outputs.get(Protocol::Snapshot);
    stats
        .sessions_opened
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    stats
        .sessions_closed
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    stats.add_bytes(jpeg.len());
    let mut r = media("image/jpeg", jpeg);
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(r)
}

#[derive(Deserialize)]
struct MjpegQuery {
    fps: Option<String>,
}

/// `multipart/x-mixed-replace` JPEG stream. `?fps=` lowers the rate for this viewer
/// (the camera's encoder runs at `[mjpeg] fps`).
async fn mjpeg(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<MjpegQuery>,
) -> Result<Response, ApiError> {
    let cam = s.camera(&id)?.clone();
    let fps = q
        .fps
        .map(|f| match f.parse::<f64>() {
            Ok(v) if (0.1..=60.0).contains(&v) => Ok(v),
            _ => Err(bad(format!("fps={f:?} is not a number in 0.1..=60"))),
        })
        .transpose()?;
    let rx = s.mjpeg.subscribe(&cam)?;
    let guard = crate::stats::OwnedViewerGuard::new(cam.clone(), Protocol::Mjpeg);
    let min_gap = fps.map(|f| std::time::Duration::from_secs_f64(1.0 / f));
    let state = (rx, guard, None::<Instant>);
    let body = futures::stream::unfold(state, move |(mut rx, guard, mut last)| async move {
        loop {
            rx.changed().await.ok()?;
            let Some(jpeg) = rx.borrow_and_update().clone() else {
                continue;
            };
            if let (Some(gap), Some(t)) = (min_gap, last)
                && t.elapsed() < gap
            {
                continue;
            }
            last = Some(Instant::now());
            let mut part = Vec::with_capacity(jpeg.len() + 96);
            part.extend_from_slice(
                format!(
                    "--frame\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\n\r\n",
                    jpeg.len()
                )
                .as_bytes(),
            );
            part.extend_from_slice(&jpeg);
            part.extend_from_slice(b"\r\n");
            guard.stats().add_bytes(part.len());
            return Some((
                Ok::<_, std::convert::Infallible>(bytes::Bytes::from(part)),
                (rx, guard, last),
            ));
        }
    });
    let mut r = axum::body::Body::from_stream(body).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("multipart/x-mixed-replace; boundary=frame"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    Ok(r)
}

/// CORS for WHEP: players on other origins may embed streams.
fn whep_cors(h: &mut axum::http::HeaderMap) {
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("POST, PATCH, DELETE, OPTIONS"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("Content-Type, If-Match, Authorization"),
    );
    h.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("Location, Link"),
    );
}

async fn whep_options() -> Response {
    let mut r = StatusCode::NO_CONTENT.into_response();
    whep_cors(r.headers_mut());
    r.headers_mut()
        .insert("accept-post", HeaderValue::from_static("application/sdp"));
    r
}

fn content_type_is(headers: &axum::http::HeaderMap, want: &str) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case(want))
}

fn unsupported_media_type(want: &str) -> Response {
    let body = json!({ "error": { "kind": "invalid_argument", "message": format!("expected Content-Type: {want}") } });
    (StatusCode::UNSUPPORTED_MEDIA_TYPE, Json(body)).into_response()
}

/// WHEP: `application/sdp` offer in, `201 Created` with the answer and the session
/// URL in `Location` (RFC 9725).
async fn whep_offer(
    State(s): State<AppState>,
    Path(id): Path<String>,
    headers: axum::http::HeaderMap,
    body: String,
) -> Result<Response, ApiError> {
    let cam = s.camera(&id)?.clone();
    if !content_type_is(&headers, "application/sdp") {
        return Ok(unsupported_media_type("application/sdp"));
    }
    let (session, answer) = s.whep.offer(&cam, body).await?;
    let mut r = (StatusCode::CREATED, answer).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/sdp"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("/cameras/{id}/whep/{session}")) {
        h.insert(header::LOCATION, v);
    }
    for server in s.whep.ice_servers() {
        for url in &server.urls {
            let mut link = format!("<{url}>; rel=\"ice-server\"");
            if !server.username.is_empty() {
                link.push_str(&format!(
                    "; username=\"{}\"; credential=\"{}\"; credential-type=\"password\"",
                    server.username, server.credential
                ));
            }
            if let Ok(v) = HeaderValue::from_str(&link) {
                h.append(header::LINK, v);
            }
        }
    }
    whep_cors(h);
    Ok(r)
}

async fn whep_delete(
    State(s): State<AppState>,
    Path((id, session)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    s.camera(&id)?;
    s.whep.delete(&id, &session).await?;
    let mut r = StatusCode::OK.into_response();
    whep_cors(r.headers_mut());
    Ok(r)
}

async fn whep_patch(
    State(s): State<AppState>,
    Path((id, session)): Path<(String, String)>,
    headers: axum::http::HeaderMap,
    body: String,
) -> Result<Response, ApiError> {
    s.camera(&id)?;
    if !content_type_is(&headers, "application/trickle-ice-sdpfrag") {
        return Ok(unsupported_media_type("application/trickle-ice-sdpfrag"));
    }
    s.whep.patch(&id, &session, &body).await?;
    let mut r = StatusCode::NO_CONTENT.into_response();
    whep_cors(r.headers_mut());
    Ok(r)
}

/// Prometheus text exposition (format 0.0.4).
async fn metrics(State(s): State<AppState>) -> Response {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(4096 + s.cameras.len() * 2048);
    let mut family =
        |name: &str, kind: &str, help: &str, rows: &mut dyn Iterator<Item = (String, String)>| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (labels, value) in rows {
                if labels.is_empty() {
                    let _ = writeln!(out, "{name} {value}");
                } else {
                    let _ = writeln!(out, "{name}{{{labels}}} {value}");
                }
            }
        };
    let cams = &s.cameras;
    let label = |c: &Camera| format!("camera=\"{}\"", c.config.id);
    family(
        "vigil_camera_streaming",
        "gauge",
        "1 if the camera is streaming, else 0.",
        &mut cams.iter().map(|c| {
            let up = c.status().state == crate::ingest::CameraState::Streaming;
            (label(c), u8::from(up).to_string())
        }),
    );
    family(
        "vigil_camera_frames_received_total",
        "counter",
        "Video frames received from the camera.",
        &mut cams
            .iter()
            .map(|c| (label(c), c.status().frames.to_string())),
    );
    family(
        "vigil_camera_bytes_received_total",
        "counter",
        "Video bytes received from the camera.",
        &mut cams
            .iter()
            .map(|c| (label(c), c.status().bytes.to_string())),
    );
    family(
        "vigil_camera_reconnects_total",
        "counter",
        "RTSP sessions started after the first.",
        &mut cams
            .iter()
            .map(|c| (label(c), c.status().reconnects.to_string())),
    );
    let per_proto = |f: &dyn Fn(&Camera, Protocol) -> String| -> Vec<(String, String)> {
        cams.iter()
            .flat_map(|c| {
                Protocol::ALL
                    .iter()
                    .map(move |&p| (format!("{},protocol=\"{}\"", label(c), p.name()), f(c, p)))
            })
            .collect()
    };
    let hls_viewers = |c: &Camera| {
        s.hls
            .existing(&c.config.id)
            .map_or(0, |h| h.stats().waiting_requests as i64)
    };
    family(
        "vigil_viewers",
        "gauge",
        "Viewers now by protocol (HLS: clients holding a blocking playlist request).",
        &mut per_proto(&|c, p| match p {
            Protocol::Hls => hls_viewers(c).to_string(),
            _ => c.outputs.get(p).counts().viewers.to_string(),
        })
        .into_iter(),
    );
    family(
        "vigil_bytes_sent_total",
        "counter",
        "Media bytes sent to viewers by protocol.",
        &mut per_proto(&|c, p| c.outputs.get(p).counts().bytes_sent.to_string()).into_iter(),
    );
    family(
        "vigil_sessions_opened_total",
        "counter",
        "Viewer sessions opened by protocol (snapshots: requests served).",
        &mut per_proto(&|c, p| c.outputs.get(p).counts().sessions_opened.to_string()).into_iter(),
    );
    family(
        "vigil_sessions_closed_total",
        "counter",
        "Viewer sessions closed by protocol.",
        &mut per_proto(&|c, p| c.outputs.get(p).counts().sessions_closed.to_string()).into_iter(),
    );
    family(
        "vigil_hls_part_latency_seconds",
        "gauge",
        "LL-HLS part availability latency (oldest frame arrival to part fetchable) over the last 1000 parts.",
        &mut cams
            .iter()
            .filter_map(|c| s.hls.existing(&c.config.id).map(|h| (c, h.stats())))
            .flat_map(|(c, st)| {
                [
                    ("0.5", st.part_latency_ms_p50),
                    ("0.99", st.part_latency_ms_p99),
                ]
                .into_iter()
                .filter_map(move |(q, v)| {
                    v.map(|v| {
                        (
                            format!("{},quantile=\"{q}\"", label(c)),
                            format!("{:.4}", v / 1000.0),
                        )
                    })
                })
            }),
    );
    // Plugins: one row per (camera, plugin) instance.
    let inst = s.plugins.instances(None);
    let ilabel = |i: &crate::plugins::InstanceStatus| {
        format!("camera=\"{}\",plugin=\"{}\"", i.camera, i.plugin)
    };
    type Counter = fn(&crate::plugins::InstanceStatus) -> u64;
    let counters: [(&str, &str, Counter); 9] = [
        (
            "vigil_plugin_calls_total",
            "Calls into the plugin (frames, events, ticks, configure).",
            |i| i.calls,
        ),
        (
            "vigil_plugin_errors_total",
            "Calls that returned an error (the instance goes on).",
            |i| i.errors,
        ),
        (
            "vigil_plugin_traps_total",
            "Calls that trapped or ran past their deadline (the instance restarts).",
            |i| i.traps,
        ),
        (
            "vigil_plugin_restarts_total",
            "Restarts of the instance after a failure.",
            |i| i.restarts,
        ),
        (
            "vigil_plugin_inputs_total",
            "Frames and events queued for the instance.",
            |i| i.inputs,
        ),
        (
            "vigil_plugin_inputs_dropped_total",
            "Inputs dropped (oldest first) because the instance was behind.",
            |i| i.dropped,
        ),
        (
            "vigil_plugin_events_emitted_total",
            "Events the instance emitted and the host accepted.",
            |i| i.events_emitted,
        ),
        (
            "vigil_plugin_events_rejected_total",
            "Events refused (over the rate budget, invalid, or the store full).",
            |i| i.events_rejected,
        ),
        (
            "vigil_plugin_http_denied_total",
            "Outbound HTTP requests denied (capability not granted or host not allow-listed); per plugin.",
            |i| i.http_denied,
        ),
    ];
    for (name, help, f) in counters {
        family(
            name,
            "counter",
            help,
            &mut inst.iter().map(|i| (ilabel(i), f(i).to_string())),
        );
    }
    family(
        "vigil_plugin_call_seconds_mean",
        "gauge",
        "Mean call time.",
        &mut inst.iter().map(|i| {
            (
                ilabel(i),
                format!("{:.6}", i.mean_call_ms.unwrap_or(0.0) / 1000.0),
            )
        }),
    );
    family(
        "vigil_plugin_call_seconds_max",
        "gauge",
        "Longest call.",
        &mut inst
            .iter()
            .map(|i| (ilabel(i), format!("{:.6}", i.max_call_ms / 1000.0))),
    );
    family(
        "vigil_plugin_memory_peak_bytes",
        "gauge",
        "Largest linear memory of the instance.",
        &mut inst
            .iter()
            .map(|i| (ilabel(i), i.memory_peak_bytes.to_string())),
    );
    family(
        "vigil_plugin_state",
        "gauge",
        "1 for the instance's current state (starting, running, restarting, quarantined, stopped).",
        &mut inst.iter().map(|i| {
            let st = serde_json::to_value(&i.state).unwrap_or_default();
            (
                format!(
                    "{},state=\"{}\"",
                    ilabel(i),
                    st.as_str().unwrap_or("unknown")
                ),
                "1".to_string(),
            )
        }),
    );
    let paths = s.plugins.frame_paths();
    family(
        "vigil_analytics_frames_decoded_total",
        "counter",
        "Frames decoded for analytics plugins.",
        &mut paths
            .iter()
            .map(|(c, p)| (format!("camera=\"{c}\""), p.frames_decoded.to_string())),
    );
    family(
        "vigil_analytics_frames_dropped_total",
        "counter",
        "Frames skipped before decoding because the analytics decoder was behind.",
        &mut paths
            .iter()
            .map(|(c, p)| (format!("camera=\"{c}\""), p.frames_dropped.to_string())),
    );
    family(
        "vigil_plugin_compilations_total",
        "counter",
        "Plugin binaries compiled (a binary already compiled is reused).",
        &mut std::iter::once((String::new(), s.plugins.compilations().to_string())),
    );
    let inf = &s.plugins.inference.stats;
    for (name, help, v) in [
        (
            "vigil_inference_runs_total",
            "Model runs on the inference pool.",
            inf.runs.load(std::sync::atomic::Ordering::Relaxed),
        ),
        (
            "vigil_inference_saturated_total",
            "Runs refused because the inference pool's queue was full (frames skipped).",
            inf.saturated.load(std::sync::atomic::Ordering::Relaxed),
        ),
        (
            "vigil_inference_failures_total",
            "Runs that failed.",
            inf.failures.load(std::sync::atomic::Ordering::Relaxed),
        ),
        (
            "vigil_inference_models_loaded_total",
            "Distinct models loaded (optimized once, shared).",
            inf.models_loaded.load(std::sync::atomic::Ordering::Relaxed),
        ),
    ] {
        family(
            name,
            "counter",
            help,
            &mut std::iter::once((String::new(), v.to_string())),
        );
    }
    family(
        "vigil_inference_run_seconds_total",
        "counter",
        "Time spent in model runs (input building included).",
        &mut std::iter::once((
            String::new(),
            format!(
                "{:.6}",
                inf.run_ns_total.load(std::sync::atomic::Ordering::Relaxed) as f64 / 1e9
            ),
        )),
    );
    let (stored, rejected) = s.events.counters();
    family(
        "vigil_events_stored_total",
        "counter",
        "Events committed to the store since start.",
        &mut std::iter::once((String::new(), stored.to_string())),
    );
    family(
        "vigil_events_rejected_total",
        "counter",
        "Events refused because the store's queue was full.",
        &mut std::iter::once((String::new(), rejected.to_string())),
    );
    let _ = writeln!(
        out,
        "# HELP vigil_uptime_seconds Seconds since the host started.\n# TYPE vigil_uptime_seconds gauge\nvigil_uptime_seconds {:.1}",
        s.started.elapsed().as_secs_f64()
    );
    let mut r = out.into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    r
}

const HLS_JS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/hls.min.js"));

async fn hls_js() -> Response {
    media("text/javascript", HLS_JS)
}

/// The embeddable player page (`?protocol=whep|hls|mjpeg|auto`).
async fn player(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Html<&'static str>, ApiError> {
    s.camera(&id)?;
    Ok(Html(include_str!("../web/player.html")))
}

/// The dashboard (`host/web/dashboard.*`, embedded).
async fn index() -> Html<&'static str> {
    Html(include_str!("../web/dashboard.html"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{CameraConfig, HlsConfig, Mode, Transport};
    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    async fn state() -> AppState {
        let (url, username, password) =
            crate::config::parse_camera_url("rtsp://admin:hunter2@127.0.0.1:1/x").unwrap();
        let cam = Camera::new(CameraConfig {
            id: "lobby".into(),
            name: "Lobby".into(),
            url,
            username,
            password,
            transport: Transport::Tcp,
            mode: Mode::Always,
            plugins: Vec::new(),
        });
        let dir = std::env::temp_dir().join(format!("vigil-api-{}", rand::random::<u64>()));
        let events = crate::events::Events::open(&dir, Default::default()).unwrap();
        AppState {
            cameras: Arc::new(vec![cam]),
            hls: Hls::new(HlsConfig::default()),
            snapshots: crate::snapshot::Snapshots::new(Default::default()),
            mjpeg: crate::mjpeg::Mjpeg::new(Default::default()),
            whep: crate::whep::Whep::new(Default::default()),
            events: events.clone(),
            plugins: crate::plugins::Plugins::start(Default::default(), &[], events, dir)
                .await
                .unwrap(),
            started: Instant::now(),
        }
    }

    async fn check(uri: &str, status: StatusCode, body_contains: &str) {
        let r = router(state().await)
            .oneshot(Request::get(uri).body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(r.status(), status, "{uri}");
        let b =
            String::from_utf8(r.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
        assert!(b.contains(body_contains), "{uri}: {b}");
        assert!(!b.contains("hunter2"), "credentials leaked by {uri}: {b}");
    }

    #[tokio::test]
    async fn routes() {
        check(
            "/api/cameras",
            StatusCode::OK,
            "\"url\":\"rtsp://***@127.0.0.1:1/x\"",
        )
        .await;
        check(
            "/api/cameras/lobby",
            StatusCode::OK,
            "\"state\":\"connecting\"",
        )
        .await;
        check(
            "/api/cameras/nope",
            StatusCode::NOT_FOUND,
            "no camera with id \\\"nope\\\"",
        )
        .await;
        check(
            "/cameras/nope/hls/index.m3u8",
            StatusCode::NOT_FOUND,
            "\"kind\":\"not_found\"",
        )
        .await;
        check("/api/health", StatusCode::OK, "\"status\":\"ok\"").await;
        check("/nowhere", StatusCode::NOT_FOUND, "no such endpoint").await;
        check(
            "/cameras/lobby/hls/index.m3u8?_HLS_msn=x",
            StatusCode::BAD_REQUEST,
            "_HLS_msn",
        )
        .await;
        check(
            "/cameras/lobby/hls/index.m3u8?_HLS_part=1",
            StatusCode::BAD_REQUEST,
            "requires _HLS_msn",
        )
        .await;
        check(
            "/cameras/lobby/hls/seg-x.m4s",
            StatusCode::BAD_REQUEST,
            "no HLS resource",
        )
        .await;
        check("/", StatusCode::OK, "hls.min.js").await;
    }
}
