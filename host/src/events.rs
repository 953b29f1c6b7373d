//! Events: the typed record, the SQLite store (WAL, in `data_dir`) and the
//! in-process bus that fans events out to live subscribers (SSE) and to rule and
//! output plugins.
//!
//! Writes go through one writer thread that commits in small batches and only
//! then acknowledges: an event the store acknowledged survives `kill -9` (WAL,
//! committed). Producers send through a bounded queue and are told when it is full
//! — an event is never dropped silently. Knows nothing of HTTP or Wasmtime.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::error::{Error, ErrorKind, Result};

/// How serious an event is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

impl Severity {
    fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }

    fn parse(s: &str) -> Severity {
        match s {
            "warning" => Severity::Warning,
            "critical" => Severity::Critical,
            _ => Severity::Info,
        }
    }
}

/// A rectangle in normalized picture coordinates (0–1, origin top left).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct BBox {
    pub x: f32,
    pub y: f32,
    pub width: f32,
    pub height: f32,
}

/// One detected object or region.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Detection {
    pub label: String,
    pub score: f32,
    pub bbox: BBox,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub track_id: Option<u64>,
}

/// An event as stored and served.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Time-ordered unique id.
    pub id: String,
    pub camera: String,
    pub plugin: String,
    pub kind: String,
    pub severity: Severity,
    /// Camera media time (ns) of the start and end, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_start_ns: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_end_ns: Option<i64>,
    /// When the host received the frame at `media_start_ns`, ms since the UNIX
    /// epoch (when known): what viewers line the event up with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_wall_ms: Option<u64>,
    /// When the host received it, ms since the UNIX epoch.
    pub wall_ms: u64,
    #[serde(default)]
    pub detections: Vec<Detection>,
    #[serde(default)]
    pub attributes: Vec<(String, String)>,
    #[serde(default)]
    pub has_snapshot: bool,
}

/// Milliseconds since the UNIX epoch, now.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A new time-ordered id: milliseconds, then a per-process counter, then random
/// bits (so ids from restarts and other hosts do not collide).
pub fn new_id(wall_ms: u64) -> String {
    let c = COUNTER.fetch_add(1, Ordering::Relaxed) & 0xff_ffff;
    format!("{wall_ms:012x}{c:06x}{:08x}", rand::random::<u32>())
}

/// Limits of events a producer may send.
pub const MAX_DETECTIONS: usize = 256;
pub const MAX_ATTRIBUTES: usize = 64;
pub const MAX_TEXT: usize = 256;
pub const MAX_ATTRIBUTE_VALUE: usize = 4096;

impl Event {
    /// Checks an event from an untrusted producer (a plugin, the API): sizes and
    /// coordinates. The error names the field.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::new(ErrorKind::InvalidArgument, m));
        if self.kind.is_empty() || self.kind.len() > MAX_TEXT {
            return bad(format!("kind must be 1 to {MAX_TEXT} bytes"));
        }
        if self.detections.len() > MAX_DETECTIONS {
            return bad(format!(
                "{} detections; at most {MAX_DETECTIONS} per event",
                self.detections.len()
            ));
        }
        if self.attributes.len() > MAX_ATTRIBUTES {
            return bad(format!(
                "{} attributes; at most {MAX_ATTRIBUTES} per event",
                self.attributes.len()
            ));
        }
        for (i, d) in self.detections.iter().enumerate() {
            if d.label.len() > MAX_TEXT {
                return bad(format!(
                    "detections[{i}].label is longer than {MAX_TEXT} bytes"
                ));
            }
            let b = d.bbox;
            let ok = |v: f32| v.is_finite() && (-0.01..=1.01).contains(&v);
            if !(ok(b.x) && ok(b.y) && ok(b.width) && ok(b.height)) {
                return bad(format!("detections[{i}].bbox is outside 0..1: {b:?}"));
            }
            if !(d.score.is_finite() && (0.0..=1.0).contains(&d.score)) {
                return bad(format!("detections[{i}].score {} is outside 0..1", d.score));
            }
        }
        for (k, v) in &self.attributes {
            if k.is_empty() || k.len() > MAX_TEXT || v.len() > MAX_ATTRIBUTE_VALUE {
                return bad(format!(
                    "attribute {k:?}: keys are 1 to {MAX_TEXT} bytes, values at most {MAX_ATTRIBUTE_VALUE}"
                ));
            }
        }
        Ok(())
    }
}

/// `[events]` settings.
#[derive(Clone, Debug)]
pub struct StoreConfig {
    /// Events older than this are deleted.
    pub max_age: Duration,
    /// At most this many events are kept (oldest go first).
    pub max_events: u64,
    /// Producers wait for at most this many events queued for the writer.
    pub queue: usize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            max_age: Duration::from_secs(30 * 86_400),
            max_events: 1_000_000,
            queue: 4096,
        }
    }
}

/// A query of stored events (newest first).
#[derive(Clone, Debug, Default)]
pub struct Query {
    pub camera: Option<String>,
    pub kind: Option<String>,
    pub plugin: Option<String>,
    /// Wall time range, ms since the UNIX epoch, inclusive.
    pub since_ms: Option<u64>,
    pub until_ms: Option<u64>,
    pub limit: usize,
    /// Continue after this cursor (from a previous page).
    pub cursor: Option<String>,
}

/// A page of events.
#[derive(Clone, Debug, Serialize)]
pub struct Page {
    pub events: Vec<Event>,
    /// Pass as `cursor` for the next (older) page; absent on the last page.
    pub next_cursor: Option<String>,
}

struct Write {
    event: Event,
    snapshot: Option<Bytes>,
    ack: Option<oneshot::Sender<Result<()>>>,
}

/// The event store and bus.
pub struct Events {
    tx: mpsc::Sender<Write>,
    bus: broadcast::Sender<Arc<Event>>,
    path: std::path::PathBuf,
    stored: Arc<AtomicU64>,
    rejected: AtomicU64,
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Events").field("path", &self.path).finish()
    }
}

fn sql_err(what: &str) -> impl Fn(rusqlite::Error) -> Error + '_ {
    move |e| Error::new(ErrorKind::Internal, format!("event store: {what}: {e}"))
}

fn open(path: &Path) -> Result<Connection> {
    let conn = Connection::open(path).map_err(sql_err("open"))?;
    conn.execute_batch(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = NORMAL;
         PRAGMA busy_timeout = 5000;
         CREATE TABLE IF NOT EXISTS events (
             seq INTEGER PRIMARY KEY AUTOINCREMENT,
             id TEXT NOT NULL UNIQUE,
             camera TEXT NOT NULL,
             plugin TEXT NOT NULL,
             kind TEXT NOT NULL,
             severity TEXT NOT NULL,
             wall_ms INTEGER NOT NULL,
             media_start_ns INTEGER,
             media_end_ns INTEGER,
             body TEXT NOT NULL,
             snapshot BLOB
         );
         CREATE INDEX IF NOT EXISTS events_camera ON events (camera, seq);
         CREATE INDEX IF NOT EXISTS events_kind ON events (kind, seq);
         CREATE INDEX IF NOT EXISTS events_wall ON events (wall_ms);",
    )
    .map_err(sql_err("create schema"))?;
    Ok(conn)
}

#[derive(Serialize, Deserialize)]
struct Body {
    detections: Vec<Detection>,
    attributes: Vec<(String, String)>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    media_wall_ms: Option<u64>,
}

impl Events {
    /// Opens (creating) `dir/events.db` and starts the writer thread.
    pub fn open(dir: &Path, cfg: StoreConfig) -> Result<Arc<Self>> {
        std::fs::create_dir_all(dir).map_err(|e| {
            Error::new(
                ErrorKind::Unavailable,
                format!("cannot create {}: {e}", dir.display()),
            )
        })?;
        let path = dir.join("events.db");
        let conn = open(&path)?;
        let (tx, rx) = mpsc::channel(cfg.queue.max(1));
        let (bus, _) = broadcast::channel(4096);
        let stored = Arc::new(AtomicU64::new(0));
        let events = Arc::new(Self {
            tx,
            bus: bus.clone(),
            path: path.clone(),
            stored: stored.clone(),
            rejected: AtomicU64::new(0),
        });
        // Retention on its own connection, every minute (and now), whether or not
        // anything is being written; it ends with the store.
        let rconn = open(&path)?;
        let weak = Arc::downgrade(&events);
        let rcfg = cfg.clone();
        std::thread::Builder::new()
            .name("event-retention".into())
            .spawn(move || {
                'run: while weak.strong_count() > 0 {
                    retain(&rconn, &rcfg);
                    for _ in 0..60 {
                        std::thread::sleep(Duration::from_secs(1));
                        if weak.strong_count() == 0 {
                            break 'run;
                        }
                    }
                }
            })
            .map_err(|e| Error::new(ErrorKind::Internal, format!("event store thread: {e}")))?;
        std::thread::Builder::new()
            .name("event-store".into())
            .spawn(move || writer(conn, rx, bus, stored))
            .map_err(|e| Error::new(ErrorKind::Internal, format!("event store thread: {e}")))?;
        Ok(events)
    }

    /// Validates, stores and publishes an event; returns once it is committed.
    pub async fn store(&self, event: Event, snapshot: Option<Bytes>) -> Result<Event> {
        event.validate()?;
        let (ack, done) = oneshot::channel();
        let mut e = event.clone();
        e.has_snapshot = snapshot.is_some();
        self.tx
            .send(Write {
                event: e.clone(),
                snapshot,
                ack: Some(ack),
            })
            .await
            .map_err(|_| Error::new(ErrorKind::Unavailable, "the event store has stopped"))?;
        done.await
            .map_err(|_| Error::new(ErrorKind::Unavailable, "the event store has stopped"))??;
        Ok(e)
    }

    /// Validates and stores an event, waiting for the commit but not for room in
    /// the queue: a full queue fails at once (for plugins, whose calls have
    /// deadlines). `Ok` means committed.
    pub async fn store_or_refuse(&self, event: Event, snapshot: Option<Bytes>) -> Result<()> {
        event.validate()?;
        let (ack, done) = oneshot::channel();
        let mut e = event;
        e.has_snapshot = snapshot.is_some();
        self.tx
            .try_send(Write {
                event: e,
                snapshot,
                ack: Some(ack),
            })
            .map_err(|err| self.refused(err))?;
        done.await
            .map_err(|_| Error::new(ErrorKind::Unavailable, "the event store has stopped"))?
    }

    fn refused<T>(&self, err: mpsc::error::TrySendError<T>) -> Error {
        self.rejected.fetch_add(1, Ordering::Relaxed);
        match err {
            mpsc::error::TrySendError::Full(_) => Error::new(
                ErrorKind::Unavailable,
                "event store queue is full: events are coming faster than they can be stored",
            ),
            mpsc::error::TrySendError::Closed(_) => {
                Error::new(ErrorKind::Unavailable, "the event store has stopped")
            }
        }
    }

    /// Live events, after they are stored.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.bus.subscribe()
    }

    /// Events stored since start and events refused because the queue was full.
    pub fn counters(&self) -> (u64, u64) {
        (
            self.stored.load(Ordering::Relaxed),
            self.rejected.load(Ordering::Relaxed),
        )
    }

    /// Runs a query (on a blocking thread, with its own read connection: WAL lets
    /// it run beside the writer).
    pub async fn query(&self, q: Query) -> Result<Page> {
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || query(&path, &q))
            .await
            .map_err(|e| Error::new(ErrorKind::Internal, format!("query task: {e}")))?
    }

    /// One event by id.
    pub async fn get(&self, id: String) -> Result<Option<Event>> {
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || -> Result<Option<Event>> {
            let conn = Connection::open(&path).map_err(sql_err("open"))?;
            conn.query_row(
                "SELECT seq, id, camera, plugin, kind, severity, wall_ms, media_start_ns, media_end_ns, body, snapshot IS NOT NULL FROM events WHERE id = ?1",
                params![id],
                row_to_event,
            )
            .optional()
            .map_err(sql_err("get"))
            .map(|o| o.map(|(_, e)| e))
        })
        .await
        .map_err(|e| Error::new(ErrorKind::Internal, format!("query task: {e}")))?
    }

    /// The snapshot JPEG stored with an event.
    pub async fn snapshot(&self, id: String) -> Result<Option<Bytes>> {
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || -> Result<Option<Bytes>> {
            let conn = Connection::open(&path).map_err(sql_err("open"))?;
            conn.query_row(
                "SELECT snapshot FROM events WHERE id = ?1",
                params![id],
                |r| r.get::<_, Option<Vec<u8>>>(0),
            )
            .optional()
            .map_err(sql_err("snapshot"))
            .map(|o| o.flatten().map(Bytes::from))
        })
        .await
        .map_err(|e| Error::new(ErrorKind::Internal, format!("query task: {e}")))?
    }
}

fn row_to_event(r: &rusqlite::Row<'_>) -> rusqlite::Result<(i64, Event)> {
    let body: String = r.get(9)?;
    let body: Body = serde_json::from_str(&body).unwrap_or(Body {
        detections: Vec::new(),
        attributes: Vec::new(),
        media_wall_ms: None,
    });
    Ok((
        r.get(0)?,
        Event {
            id: r.get(1)?,
            camera: r.get(2)?,
            plugin: r.get(3)?,
            kind: r.get(4)?,
            severity: Severity::parse(&r.get::<_, String>(5)?),
            wall_ms: r.get::<_, i64>(6)? as u64,
            media_start_ns: r.get(7)?,
            media_end_ns: r.get(8)?,
            media_wall_ms: body.media_wall_ms,
            detections: body.detections,
            attributes: body.attributes,
            has_snapshot: r.get(10)?,
        },
    ))
}

fn query(path: &Path, q: &Query) -> Result<Page> {
    let conn = Connection::open(path).map_err(sql_err("open"))?;
    let limit = q.limit.clamp(1, 1000);
    let before: Option<i64> = match &q.cursor {
        None => None,
        Some(c) => Some(c.parse::<i64>().map_err(|_| {
            Error::new(
                ErrorKind::InvalidArgument,
                format!("cursor {c:?} is not one this server gave out"),
            )
        })?),
    };
    let mut sql = String::from(
        "SELECT seq, id, camera, plugin, kind, severity, wall_ms, media_start_ns, media_end_ns, body, snapshot IS NOT NULL FROM events WHERE 1=1",
    );
    let mut args: Vec<rusqlite::types::Value> = Vec::new();
    let mut add = |cond: &str, v: rusqlite::types::Value| {
        args.push(v);
        sql.push_str(&format!(" AND {cond} ?{}", args.len()));
    };
    if let Some(c) = &q.camera {
        add("camera =", c.clone().into());
    }
    if let Some(k) = &q.kind {
        add("kind =", k.clone().into());
    }
    if let Some(p) = &q.plugin {
        add("plugin =", p.clone().into());
    }
    if let Some(s) = q.since_ms {
        add("wall_ms >=", (s as i64).into());
    }
    if let Some(u) = q.until_ms {
        add("wall_ms <=", (u as i64).into());
    }
    if let Some(b) = before {
        add("seq <", b.into());
    }
    sql.push_str(&format!(" ORDER BY seq DESC LIMIT {}", limit + 1));
    let mut stmt = conn.prepare(&sql).map_err(sql_err("query"))?;
    let rows = stmt
        .query_map(rusqlite::params_from_iter(args), row_to_event)
        .map_err(sql_err("query"))?;
    // One row more than asked tells whether another page exists.
    let mut events = Vec::with_capacity(limit + 1);
    let mut last_seq = None;
    let mut more = false;
    for r in rows {
        let (seq, e) = r.map_err(sql_err("row"))?;
        if events.len() == limit {
            more = true;
            break;
        }
        last_seq = Some(seq);
        events.push(e);
    }
    let next_cursor = if more {
        last_seq.map(|s| s.to_string())
    } else {
        None
    };
    Ok(Page {
        events,
        next_cursor,
    })
}

fn writer(
    mut conn: Connection,
    mut rx: mpsc::Receiver<Write>,
    bus: broadcast::Sender<Arc<Event>>,
    stored: Arc<AtomicU64>,
) {
    let mut batch: Vec<Write> = Vec::with_capacity(256);
    loop {
        // Wait for one write, then take what else is queued (up to a batch).
        let Some(first) = rx.blocking_recv() else {
            break;
        };
        batch.push(first);
        while batch.len() < 256 {
            match rx.try_recv() {
                Ok(w) => batch.push(w),
                Err(_) => break,
            }
        }
        let result = (|| -> rusqlite::Result<()> {
            let tx = conn.transaction()?;
            {
                let mut stmt = tx.prepare_cached(
                    "INSERT INTO events (id, camera, plugin, kind, severity, wall_ms, media_start_ns, media_end_ns, body, snapshot)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                )?;
                for w in &batch {
                    let e = &w.event;
                    let body = serde_json::to_string(&Body {
                        detections: e.detections.clone(),
                        attributes: e.attributes.clone(),
                        media_wall_ms: e.media_wall_ms,
                    })
                    .unwrap_or_else(|_| "{\"detections\":[],\"attributes\":[]}".into());
                    stmt.execute(params![
                        e.id,
                        e.camera,
                        e.plugin,
                        e.kind,
                        e.severity.as_str(),
                        e.wall_ms as i64,
                        e.media_start_ns,
                        e.media_end_ns,
                        body,
                        w.snapshot.as_deref(),
                    ])?;
                }
            }
            tx.commit()
        })();
        let n = batch.len() as u64;
        for w in batch.drain(..) {
            match &result {
                Ok(()) => {
                    let _ = bus.send(Arc::new(w.event));
                    if let Some(ack) = w.ack {
                        let _ = ack.send(Ok(()));
                    }
                }
                Err(e) => {
                    if let Some(ack) = w.ack {
                        let _ = ack.send(Err(Error::new(
                            ErrorKind::Internal,
                            format!("event store: insert: {e}"),
                        )));
                    }
                }
            }
        }
        match &result {
            Ok(()) => {
                stored.fetch_add(n, Ordering::Relaxed);
            }
            Err(e) => tracing::error!("event store: batch of {n} not stored: {e}"),
        }
    }
}

/// Deletes events beyond the age and count limits.
fn retain(conn: &Connection, cfg: &StoreConfig) {
    let cutoff = now_ms().saturating_sub(cfg.max_age.as_millis() as u64) as i64;
    let r1 = conn.execute("DELETE FROM events WHERE wall_ms < ?1", params![cutoff]);
    let r2 = conn.execute(
        "DELETE FROM events WHERE seq <= (SELECT seq FROM events ORDER BY seq DESC LIMIT 1 OFFSET ?1)",
        params![cfg.max_events as i64],
    );
    if let Err(e) = r1.and(r2) {
        tracing::warn!("event store: retention: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(camera: &str, kind: &str, wall_ms: u64) -> Event {
        Event {
            id: new_id(wall_ms),
            camera: camera.into(),
            plugin: "test".into(),
            kind: kind.into(),
            severity: Severity::Info,
            media_start_ns: Some(1),
            media_end_ns: None,
            media_wall_ms: None,
            wall_ms,
            detections: vec![Detection {
                label: "person".into(),
                score: 0.9,
                bbox: BBox {
                    x: 0.1,
                    y: 0.2,
                    width: 0.3,
                    height: 0.4,
                },
                track_id: Some(7),
            }],
            attributes: vec![("zone".into(), "door".into())],
            has_snapshot: false,
        }
    }

    #[tokio::test]
    async fn stores_queries_pages_and_snapshots() {
        let dir = std::env::temp_dir().join(format!("vigil-events-{}", rand::random::<u64>()));
        // Test times are in 1970: keep them from the retention thread.
        let cfg = StoreConfig {
            max_age: Duration::from_secs(100 * 365 * 86_400),
            ..StoreConfig::default()
        };
        let store = Events::open(&dir, cfg).unwrap();
        let mut live = store.subscribe();
        for i in 0..25u64 {
            let cam = if i % 2 == 0 { "a" } else { "b" };
            let kind = if i % 5 == 0 { "zone-enter" } else { "motion" };
            store.store(ev(cam, kind, 1_000 + i), None).await.unwrap();
        }
        let snap = store
            .store(
                ev("a", "motion", 2_000),
                Some(Bytes::from_static(b"\xff\xd8jpeg")),
            )
            .await
            .unwrap();
        assert!(snap.has_snapshot);
        assert_eq!(live.recv().await.unwrap().wall_ms, 1_000);

        let all = store
            .query(Query {
                limit: 100,
                ..Query::default()
            })
            .await
            .unwrap();
        assert_eq!(all.events.len(), 26);
        assert_eq!(all.events[0].wall_ms, 2_000, "newest first");
        assert!(all.next_cursor.is_none());

        let a = store
            .query(Query {
                camera: Some("a".into()),
                limit: 100,
                ..Query::default()
            })
            .await
            .unwrap();
        assert_eq!(a.events.len(), 14);
        let enter = store
            .query(Query {
                kind: Some("zone-enter".into()),
                limit: 100,
                ..Query::default()
            })
            .await
            .unwrap();
        assert_eq!(enter.events.len(), 5);
        let range = store
            .query(Query {
                since_ms: Some(1_005),
                until_ms: Some(1_009),
                limit: 100,
                ..Query::default()
            })
            .await
            .unwrap();
        assert_eq!(range.events.len(), 5);

        // Pages of 10 walk through everything exactly once.
        let mut seen = Vec::new();
        let mut cursor = None;
        loop {
            let p = store
                .query(Query {
                    limit: 10,
                    cursor: cursor.clone(),
                    ..Query::default()
                })
                .await
                .unwrap();
            seen.extend(p.events.iter().map(|e| e.id.clone()));
            match p.next_cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        let mut dedup = seen.clone();
        dedup.dedup();
        assert_eq!(seen.len(), 26);
        assert_eq!(dedup.len(), 26);

        assert_eq!(
            store.snapshot(snap.id.clone()).await.unwrap().unwrap(),
            Bytes::from_static(b"\xff\xd8jpeg")
        );
        assert!(
            store
                .snapshot(all.events[5].id.clone())
                .await
                .unwrap()
                .is_none()
        );
        assert_eq!(
            store.get(snap.id.clone()).await.unwrap().unwrap().id,
            snap.id
        );
        assert!(
            store
                .query(Query {
                    cursor: Some("x".into()),
                    limit: 5,
                    ..Query::default()
                })
                .await
                .is_err()
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn retention_by_age_and_count() {
        let dir = std::env::temp_dir().join(format!("vigil-events-{}", rand::random::<u64>()));
        let cfg = StoreConfig {
            max_age: Duration::from_secs(3600),
            max_events: 5,
            ..StoreConfig::default()
        };
        let store = Events::open(&dir, cfg.clone()).unwrap();
        let now = now_ms();
        // Two from yesterday, eight from the last minute.
        for i in 0..10u64 {
            let t = if i < 2 {
                now - 86_400_000
            } else {
                now - 60_000 + i
            };
            store.store(ev("a", "motion", t), None).await.unwrap();
        }
        let conn = open(&dir.join("events.db")).unwrap();
        retain(&conn, &cfg);
        let left = store
            .query(Query {
                limit: 100,
                ..Query::default()
            })
            .await
            .unwrap()
            .events;
        assert_eq!(left.len(), 5, "count limit");
        assert!(
            left.iter().all(|e| e.wall_ms > now - 3_600_000),
            "age limit"
        );
        assert_eq!(left[0].wall_ms, now - 60_000 + 9, "the newest stay");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn validation_names_the_field() {
        let mut e = ev("a", "motion", 1);
        e.detections[0].bbox.x = 3.0;
        assert!(
            e.validate()
                .unwrap_err()
                .to_string()
                .contains("detections[0].bbox")
        );
        let mut e = ev("a", "", 1);
        e.kind.clear();
        assert!(e.validate().unwrap_err().to_string().contains("kind"));
        let mut e = ev("a", "motion", 1);
        e.detections = vec![e.detections[0].clone(); MAX_DETECTIONS + 1];
        assert!(
            e.validate()
                .unwrap_err()
                .to_string()
                .contains("detections; at most")
        );
        let mut e = ev("a", "motion", 1);
        e.detections[0].score = f32::NAN;
        assert!(e.validate().unwrap_err().to_string().contains("score"));
    }
}
