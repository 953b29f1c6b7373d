//! HTTP handlers for plugins and events (the JSON API part that knows the plugin
//! and event subsystems). Mapped to statuses through [`crate::api::status_of`].

use std::convert::Infallible;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use crate::api::{ApiError, AppState};
use crate::error::{Error, ErrorKind};
use crate::events::{self, Detection, Event, Query as EventQuery, Severity};

fn bad(msg: String) -> ApiError {
    ApiError(Error::new(ErrorKind::InvalidArgument, msg))
}

pub async fn list_plugins(State(s): State<AppState>) -> Json<serde_json::Value> {
    Json(json!(s.plugins.list()))
}

pub async fn get_plugin(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    Ok(Json(json!(s.plugins.plugin(&id)?)))
}

/// Loads the plugin's `.wasm` again and moves its instances to it.
pub async fn reload_plugin(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    Ok(Json(json!(s.plugins.reload(&id).await?)))
}

pub async fn camera_plugins(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let cam = s.camera_arc(&id)?;
    Ok(Json(json!(s.plugins.instances(Some(&cam.config.id)))))
}

pub async fn get_camera_plugin(
    State(s): State<AppState>,
    Path((id, plugin)): Path<(String, String)>,
) -> Result<Json<serde_json::Value>, ApiError> {
    s.camera_arc(&id)?;
    Ok(Json(json!(s.plugins.status(&id, &plugin)?)))
}

/// Enables or reconfigures a plugin on a camera; the body is its configuration
/// (JSON), checked against the plugin's schema (422 names the field).
pub async fn put_camera_plugin(
    State(s): State<AppState>,
    Path((id, plugin)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Result<axum::response::Response, ApiError> {
    let cam = s.camera_arc(&id)?;
    let config: serde_json::Value = if body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        serde_json::from_slice(&body).map_err(|e| bad(format!("the body is not JSON: {e}")))?
    };
    // Schema problems answer 422 with each field's reason as well (for forms).
    let problems = s.plugins.config_problems(&plugin, &config)?;
    if !problems.is_empty() {
        let message = crate::plugins::invalid_config_message(&plugin, &problems);
        let fields: Vec<serde_json::Value> = problems
            .iter()
            .map(|(at, e)| json!({ "pointer": at, "message": e }))
            .collect();
        return Ok((
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({ "error": { "kind": "invalid_config", "message": message, "fields": fields } })),
        )
            .into_response());
    }
    Ok(Json(json!(s.plugins.enable(&cam, &plugin, config).await?)).into_response())
}

pub async fn delete_camera_plugin(
    State(s): State<AppState>,
    Path((id, plugin)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    s.camera_arc(&id)?;
    s.plugins.disable(&id, &plugin).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
pub struct EventsParams {
    camera: Option<String>,
    kind: Option<String>,
    plugin: Option<String>,
    since: Option<String>,
    until: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

/// A time: milliseconds since the UNIX epoch, or RFC 3339 (`2026-11-26T10:00:00Z`).
fn parse_time(name: &str, v: &str) -> Result<u64, ApiError> {
    if let Ok(ms) = v.parse::<u64>() {
        return Ok(ms);
    }
    parse_rfc3339(v).ok_or_else(|| {
        bad(format!(
            "{name}={v:?} is neither milliseconds since 1970 nor an RFC 3339 time"
        ))
    })
}

fn parse_rfc3339(v: &str) -> Option<u64> {
    // YYYY-MM-DDTHH:MM:SS[.fff](Z|±HH:MM)
    let b = v.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !(b[10] == b'T' || b[10] == b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| v.get(r)?.parse::<i64>().ok();
    let (y, mo, d, h, mi, s) = (
        num(0..4)?,
        num(5..7)?,
        num(8..10)?,
        num(11..13)?,
        num(14..16)?,
        num(17..19)?,
    );
    let mut rest = &v[19..];
    let mut ms = 0i64;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits: String = frac.chars().take_while(char::is_ascii_digit).collect();
        ms = format!("{:0<3}", &digits[..digits.len().min(3)])
            .parse()
            .ok()?;
        rest = &frac[digits.len()..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        o if o.len() == 6 && (o.starts_with('+') || o.starts_with('-')) => {
            let sign = if o.starts_with('-') { -1 } else { 1 };
            sign * (o[1..3].parse::<i64>().ok()? * 60 + o[4..6].parse::<i64>().ok()?)
        }
        _ => return None,
    };
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    // Days from civil (proleptic Gregorian), Howard Hinnant's algorithm.
    let y2 = if mo <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + h * 3600 + mi * 60 + s - offset * 60;
    u64::try_from(secs * 1000 + ms).ok()
}

pub async fn list_events(
    State(s): State<AppState>,
    Query(p): Query<EventsParams>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let limit = match p.limit {
        None => 100,
        Some(l) => match l.parse::<usize>() {
            Ok(n) if (1..=1000).contains(&n) => n,
            _ => return Err(bad(format!("limit={l:?} is not a number in 1..=1000"))),
        },
    };
    let q = EventQuery {
        camera: p.camera,
        kind: p.kind,
        plugin: p.plugin,
        since_ms: p
            .since
            .as_deref()
            .map(|v| parse_time("since", v))
            .transpose()?,
        until_ms: p
            .until
            .as_deref()
            .map(|v| parse_time("until", v))
            .transpose()?,
        limit,
        cursor: p.cursor,
    };
    Ok(Json(json!(s.events.query(q).await?)))
}

pub async fn get_event(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let e = s.events.get(id.clone()).await?.ok_or_else(|| {
        ApiError(Error::new(
            ErrorKind::NotFound,
            format!("no event with id {id:?}"),
        ))
    })?;
    Ok(Json(json!(e)))
}

pub async fn event_snapshot(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let jpeg = s.events.snapshot(id.clone()).await?.ok_or_else(|| {
        ApiError(Error::new(
            ErrorKind::NotFound,
            format!("event {id:?} has no snapshot (or does not exist)"),
        ))
    })?;
    let mut r = jpeg.into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("image/jpeg"));
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("max-age=86400, immutable"),
    );
    Ok(r)
}

/// An event from outside (another system, a script): stored, then answered.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExternalEvent {
    camera: String,
    kind: String,
    #[serde(default = "default_source")]
    source: String,
    #[serde(default)]
    severity: Option<Severity>,
    #[serde(default)]
    detections: Vec<Detection>,
    #[serde(default)]
    attributes: Vec<(String, String)>,
}

fn default_source() -> String {
    "api".into()
}

pub async fn post_event(
    State(s): State<AppState>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let e: ExternalEvent = serde_json::from_slice(&body).map_err(|e| bad(format!("event: {e}")))?;
    s.camera_arc(&e.camera)?;
    let wall_ms = events::now_ms();
    let stored = s
        .events
        .store(
            Event {
                id: events::new_id(wall_ms),
                camera: e.camera,
                plugin: e.source,
                kind: e.kind,
                severity: e.severity.unwrap_or(Severity::Info),
                media_start_ns: None,
                media_end_ns: None,
                media_wall_ms: None,
                wall_ms,
                detections: e.detections,
                attributes: e.attributes,
                has_snapshot: false,
            },
            None,
        )
        .await?;
    Ok((StatusCode::CREATED, Json(json!(stored))).into_response())
}

#[derive(Debug, Deserialize)]
pub struct StreamParams {
    camera: Option<String>,
    kind: Option<String>,
}

/// Live events as Server-Sent Events (`event: event`, JSON data). A client that
/// falls behind gets `event: lagged` with how many it missed.
pub async fn stream_events(
    State(s): State<AppState>,
    Query(p): Query<StreamParams>,
) -> Sse<impl futures::Stream<Item = Result<SseEvent, Infallible>>> {
    let rx = s.events.subscribe();
    let stream = futures::stream::unfold((rx, p), |(mut rx, p)| async move {
        loop {
            match rx.recv().await {
                Ok(e) => {
                    if p.camera.as_ref().is_some_and(|c| c != &e.camera)
                        || p.kind.as_ref().is_some_and(|k| k != &e.kind)
                    {
                        continue;
                    }
                    let data = serde_json::to_string(&*e).unwrap_or_default();
                    return Some((
                        Ok(SseEvent::default()
                            .event("event")
                            .id(e.id.clone())
                            .data(data)),
                        (rx, p),
                    ));
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    return Some((
                        Ok(SseEvent::default()
                            .event("lagged")
                            .data(json!({"missed": n}).to_string())),
                        (rx, p),
                    ));
                }
                Err(_) => return None,
            }
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

#[cfg(test)]
mod tests {
    use super::parse_rfc3339;

    #[test]
    fn parses_rfc3339() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339("2025-11-24T16:00:00.123Z"),
            Some(1_764_000_000_123)
        );
        assert_eq!(
            parse_rfc3339("2025-11-24T17:00:00+01:00"),
            Some(1_764_000_000_000)
        );
        assert_eq!(parse_rfc3339("2025-13-24T17:00:00Z"), None);
        assert_eq!(parse_rfc3339("yesterday"), None);
    }
}
