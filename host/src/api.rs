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
use axum::routing::get;
use serde::Deserialize;
use serde_json::json;

use crate::error::{Error, ErrorKind};
use crate::hls::Hls;
use crate::ingest::Camera;

/// What the handlers share.
#[derive(Clone, Debug)]
pub struct AppState {
    pub cameras: Arc<Vec<Arc<Camera>>>,
    pub hls: Arc<Hls>,
    pub started: Instant,
}

impl AppState {
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
        .route("/assets/hls.min.js", get(hls_js))
        .route("/api/health", get(health))
        .route("/api/cameras", get(list_cameras))
        .route("/api/cameras/{id}", get(get_camera))
        .route("/cameras/{id}/hls/{file}", get(hls_file))
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
    })
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
        "cameras": s.cameras.len(),
        "camera_states": by_state,
        "hls_muxers": s.hls.active(),
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
        return Ok(media("video/mp4", b));
    }
    if let Some(n) = file
        .strip_prefix("seg-")
        .and_then(|r| r.strip_suffix(".m4s"))
    {
        let n: u64 = n.parse().map_err(|_| not_found())?;
        let b = s.hls.segment(&cam, n).await?;
        return Ok(media("video/iso.segment", b));
    }
    if let Some(r) = file
        .strip_prefix("part-")
        .and_then(|r| r.strip_suffix(".m4s"))
    {
        let (m, p) = r.split_once('.').ok_or_else(not_found)?;
        let m: u64 = m.parse().map_err(|_| not_found())?;
        let p: usize = p.parse().map_err(|_| not_found())?;
        let b = s.hls.part(&cam, m, p).await?;
        return Ok(media("video/iso.segment", b));
    }
    Err(ApiError(Error::new(
        ErrorKind::NotFound,
        format!("no HLS resource {file:?}"),
    )))
}

const HLS_JS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/hls.min.js"));

async fn hls_js() -> Response {
    media("text/javascript", HLS_JS)
}

async fn index() -> Html<&'static str> {
    Html(include_str!("../web/index.html"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{CameraConfig, HlsConfig, Mode, Transport};
    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    fn state() -> AppState {
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
        });
        AppState {
            cameras: Arc::new(vec![cam]),
            hls: Hls::new(HlsConfig::default()),
            started: Instant::now(),
        }
    }

    async fn check(uri: &str, status: StatusCode, body_contains: &str) {
        let r = router(state())
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
