//! Plugins against real video and real peers: motion on the camera simulator and
//! on a still GStreamer picture, zones from synthetic detections, webhook to a
//! local HTTP receiver (and denied elsewhere), misbehaving plugins contained,
//! configuration errors, hot operations next to a live LL-HLS reader, the event
//! store's queries and its durability under `kill -9`.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::*;

/// A plugin built by scripts/build-plugins.sh.
pub(crate) fn wasm(name: &str) -> String {
    let exe = std::env::current_exe().unwrap();
    let target = exe.parent().unwrap().parent().unwrap().parent().unwrap();
    let p = target
        .join("wasm32-wasip2/release")
        .join(format!("{name}.wasm"));
    assert!(
        p.exists(),
        "{} is missing: run scripts/build-plugins.sh (scripts/test.sh does)",
        p.display()
    );
    p.display().to_string()
}

pub(crate) async fn plugin_status(
    host: &vigil::app::Host,
    camera: &str,
    plugin: &str,
) -> serde_json::Value {
    get_json(&format!(
        "http://{}/api/cameras/{camera}/plugins/{plugin}",
        host.addr
    ))
    .await
}

pub(crate) async fn events(host: &vigil::app::Host, query: &str) -> Vec<serde_json::Value> {
    get_json(&format!("http://{}/api/events?{query}", host.addr)).await["events"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn motion_fires_on_moving_video_and_not_on_a_still_picture() {
    let sim = start_camsim(1, false).await;
    let gst = GstServer::start(&[("still", "h264")], &["--pattern", "colors"]);
    let host = start_host(&format!(
        "[[plugin]]\nid = \"motion\"\npath = \"{}\"\n\
         [[camera]]\nid = \"moving\"\nurl = \"{}\"\n[[camera.plugin]]\nid = \"motion\"\n\
         [[camera]]\nid = \"still\"\nurl = \"{}\"\n[[camera.plugin]]\nid = \"motion\"\n",
        wasm("vigil_plugin_motion"),
        sim.url(0),
        gst.url("still")
    ))
    .await;
    wait_state(&host, "moving", "streaming", Duration::from_secs(20)).await;
    wait_state(&host, "still", "streaming", Duration::from_secs(20)).await;
    let moving = wait_for(
        "motion events on the moving camera",
        Duration::from_secs(15),
        || async {
            let e = events(&host, "camera=moving&kind=motion").await;
            (e.len() >= 3).then_some(e)
        },
    )
    .await;
    let first = &moving[0];
    assert_eq!(first["plugin"], "motion");
    assert!(first["has_snapshot"] == true, "{first}");
    let d = &first["detections"][0];
    assert_eq!(d["label"], "motion");
    assert!(d["bbox"]["width"].as_f64().unwrap() > 0.0, "{first}");
    // The snapshot attached to the event is a JPEG.
    let (st, ct, jpeg) = get(&format!(
        "http://{}/api/events/{}/snapshot.jpg",
        host.addr,
        first["id"].as_str().unwrap()
    ))
    .await;
    assert_eq!((st, ct.as_str()), (200, "image/jpeg"));
    assert_eq!(&jpeg[..2], &[0xff, 0xd8]);
    // The still camera had frames analysed (a few seconds' worth) and no motion.
    let s = wait_for(
        "ten analysed frames on the still camera",
        Duration::from_secs(15),
        || async {
            let s = plugin_status(&host, "still", "motion").await;
            (s["calls"].as_u64().unwrap_or(0) >= 10).then_some(s)
        },
    )
    .await;
    assert_eq!(s["state"], "running");
    assert!(
        events(&host, "camera=still").await.is_empty(),
        "motion on a still picture"
    );
    let m = plugin_status(&host, "moving", "motion").await;
    eprintln!(
        "motion: {} calls, mean {:.2} ms, max {:.2} ms, {} dropped",
        m["calls"],
        m["mean_call_ms"].as_f64().unwrap_or(0.0),
        m["max_call_ms"],
        m["dropped"]
    );
    host.stop().await;
    sim.shutdown().await;
}

async fn post_event(host: &vigil::app::Host, body: serde_json::Value) -> serde_json::Value {
    let (st, _, b) = request(
        "POST",
        &format!("http://{}/api/events", host.addr),
        Some("application/json"),
        &body.to_string(),
    )
    .await;
    assert_eq!(st, 201, "{}", String::from_utf8_lossy(&b));
    serde_json::from_slice(&b).unwrap()
}

fn person(track: u64, x: f32, y: f32) -> serde_json::Value {
    // A 0.1 × 0.2 box whose bottom centre is (x, y).
    serde_json::json!({"label": "person", "score": 0.9, "track_id": track,
        "bbox": {"x": x - 0.05, "y": y - 0.2, "width": 0.1, "height": 0.2}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zones_turn_detections_into_enter_cross_and_loiter_events() {
    let sim = start_camsim(1, false).await;
    let host = start_host(&format!(
        "[[plugin]]\nid = \"zones\"\npath = \"{}\"\n\
         [[camera]]\nid = \"door\"\nurl = \"{}\"\n[[camera.plugin]]\nid = \"zones\"\n\
         config = {{ loiter_seconds = 1, zones = [{{ name = \"porch\", polygon = [[0.6, 0.5], [0.9, 0.5], [0.9, 0.9], [0.6, 0.9]] }}], lines = [{{ name = \"gate\", a = [0.5, 0.0], b = [0.5, 1.0] }}] }}\n",
        wasm("vigil_plugin_zones"),
        sim.url(0)
    ))
    .await;
    assert_eq!(
        plugin_status(&host, "door", "zones").await["state"],
        "running"
    );
    // Person 7 walks from the left, across the gate, into the porch, and stays.
    for (x, y) in [(0.2, 0.7), (0.4, 0.7), (0.55, 0.7), (0.7, 0.7)] {
        post_event(&host, serde_json::json!({"camera": "door", "kind": "person", "source": "detector", "detections": [person(7, x, y)]})).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let derived = wait_for("loitering", Duration::from_secs(10), || async {
        let e = events(&host, "camera=door&plugin=zones").await;
        e.iter().any(|e| e["kind"] == "loitering").then_some(e)
    })
    .await;
    let kinds: Vec<&str> = derived
        .iter()
        .rev()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    eprintln!("zones: {kinds:?}");
    let attr = |e: &serde_json::Value, k: &str| {
        e["attributes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a[0] == k)
            .map(|a| a[1].as_str().unwrap().to_string())
    };
    let cross = derived
        .iter()
        .find(|e| e["kind"] == "line-crossing")
        .expect("a line-crossing event");
    assert_eq!(attr(cross, "line").as_deref(), Some("gate"));
    assert_eq!(attr(cross, "direction").as_deref(), Some("left-to-right"));
    let enter = derived
        .iter()
        .find(|e| e["kind"] == "zone-enter")
        .expect("a zone-enter event");
    assert_eq!(attr(enter, "zone").as_deref(), Some("porch"));
    assert_eq!(attr(enter, "object").as_deref(), Some("track:7"));
    assert_eq!(
        kinds.iter().filter(|k| **k == "line-crossing").count(),
        1,
        "{kinds:?}"
    );
    assert_eq!(
        kinds.iter().filter(|k| **k == "zone-enter").count(),
        1,
        "{kinds:?}"
    );
    // Order: the crossing came before entering the porch, loitering last.
    let pos = |k: &str| kinds.iter().position(|x| *x == k).unwrap();
    assert!(
        pos("line-crossing") < pos("zone-enter") && pos("zone-enter") < pos("loitering"),
        "{kinds:?}"
    );
    host.stop().await;
    sim.shutdown().await;
}

/// A tiny HTTP/1.1 receiver: counts POSTs, keeps their bodies, answers 200.
async fn receiver() -> (u16, Arc<std::sync::Mutex<Vec<String>>>) {
    receiver_failing_first(0).await
}

/// [`receiver`] that answers 503 to its first `failures` requests (bodies of
/// those are kept too).
async fn receiver_failing_first(failures: usize) -> (u16, Arc<std::sync::Mutex<Vec<String>>>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let bodies = Arc::new(std::sync::Mutex::new(Vec::new()));
    let b2 = bodies.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let bodies = b2.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 8192];
                loop {
                    let Ok(n) = s.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                        continue;
                    };
                    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    if buf.len() < end + 4 + len {
                        continue;
                    }
                    bodies
                        .lock()
                        .unwrap()
                        .push(String::from_utf8_lossy(&buf[end + 4..end + 4 + len]).into_owned());
                    buf.drain(..end + 4 + len);
                    let n = bodies.lock().unwrap().len();
                    let answer: &[u8] = if n <= failures {
                        b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 4\r\n\r\nbusy"
                    } else {
                        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
                    };
                    let _ = s.write_all(answer).await;
                }
            });
        }
    });
    (port, bodies)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_delivers_to_allowed_hosts_and_is_denied_elsewhere() {
    let sim = start_camsim(2, false).await;
    let (port, bodies) = receiver().await;
    let (other_port, other_bodies) = receiver().await;
    let (flaky_port, flaky_bodies) = receiver_failing_first(2).await;
    let dead_port = free_port();
    // A receiver that accepts connections and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            held.push(s);
        }
    });
    let host = start_host(&format!(
        "[[plugin]]\nid = \"webhook\"\npath = \"{w}\"\ngrants = [\"http\"]\nhttp_allow = [\"127.0.0.1\"]\ncall_timeout_ms = 10000\n\
         [[plugin]]\nid = \"webhook-ungranted\"\npath = \"{w}\"\ncall_timeout_ms = 10000\n\
         [[plugin]]\nid = \"webhook-retry\"\npath = \"{w}\"\ngrants = [\"http\"]\nhttp_allow = [\"127.0.0.1:{flaky_port}\", \"127.0.0.1:{dead_port}\"]\n\
         [[plugin]]\nid = \"webhook-dead\"\npath = \"{w}\"\ngrants = [\"http\"]\nhttp_allow = [\"127.0.0.1:{dead_port}\"]\n\
         [[plugin]]\nid = \"webhook-silent\"\npath = \"{w}\"\ngrants = [\"http\"]\nhttp_allow = [\"127.0.0.1:{silent_port}\"]\n\
         [[camera]]\nid = \"a\"\nurl = \"{}\"\n\
         [[camera.plugin]]\nid = \"webhook\"\nconfig = {{ url = \"http://127.0.0.1:{port}/hook\", kinds = [\"alarm\"] }}\n\
         [[camera]]\nid = \"b\"\nurl = \"{}\"\n\
         [[camera.plugin]]\nid = \"webhook\"\nconfig = {{ url = \"http://localhost:{other_port}/hook\", retries = 1 }}\n\
         [[camera.plugin]]\nid = \"webhook-ungranted\"\nconfig = {{ url = \"http://127.0.0.1:{other_port}/hook\", retries = 0 }}\n\
         [[camera.plugin]]\nid = \"webhook-retry\"\nconfig = {{ url = \"http://127.0.0.1:{flaky_port}/hook\", backoff_ms = 50 }}\n\
         [[camera.plugin]]\nid = \"webhook-dead\"\nconfig = {{ url = \"http://127.0.0.1:{dead_port}/hook\", retries = 10, backoff_ms = 100 }}\n\
         [[camera.plugin]]\nid = \"webhook-silent\"\nconfig = {{ url = \"http://127.0.0.1:{silent_port}/hook\" }}\n",
        sim.url(0),
        sim.url(1),
        w = wasm("vigil_plugin_webhook"),
    ))
    .await;
    post_event(
        &host,
        serde_json::json!({"camera": "a", "kind": "alarm", "attributes": [["door", "front"]]}),
    )
    .await;
    post_event(&host, serde_json::json!({"camera": "a", "kind": "chatter"})).await;
    post_event(&host, serde_json::json!({"camera": "b", "kind": "alarm"})).await;
    let got = wait_for("the webhook delivery", Duration::from_secs(10), || async {
        let b = bodies.lock().unwrap().clone();
        (!b.is_empty()).then_some(b)
    })
    .await;
    let body: serde_json::Value = serde_json::from_str(&got[0]).unwrap();
    assert_eq!(body["kind"], "alarm");
    assert_eq!(body["camera"], "a");
    assert_eq!(body["attributes"]["door"], "front");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        bodies.lock().unwrap().len(),
        1,
        "only kinds = [alarm] is delivered"
    );
    // Camera b: `localhost` is not on the allow-list, and the second plugin has no
    // http grant at all: both denied, nothing delivered, the instances keep running.
    let denied = wait_for("the denials", Duration::from_secs(10), || async {
        let s = plugin_status(&host, "b", "webhook").await;
        (s["errors"].as_u64() >= Some(1)).then_some(s)
    })
    .await;
    assert!(
        denied["last_error"].as_str().unwrap().contains("denied"),
        "{denied}"
    );
    assert_eq!(denied["state"], "running");
    assert!(denied["http_denied"].as_u64().unwrap() >= 1, "{denied}");
    let ungranted = wait_for("the ungranted denial", Duration::from_secs(10), || async {
        let s = plugin_status(&host, "b", "webhook-ungranted").await;
        (s["errors"].as_u64() >= Some(1)).then_some(s)
    })
    .await;
    assert!(
        ungranted["last_error"].as_str().unwrap().contains("denied"),
        "{ungranted}"
    );
    assert!(
        other_bodies.lock().unwrap().is_empty(),
        "a denied request was delivered"
    );
    // Retries with backoff within the default 1 s deadline: two 503s, then
    // delivered (three attempts at the receiver).
    let flaky = wait_for("the retried delivery", Duration::from_secs(10), || async {
        let b = flaky_bodies.lock().unwrap().clone();
        (b.len() >= 3).then_some(b)
    })
    .await;
    assert!(
        flaky.iter().all(|b| b.contains("\"camera\":\"b\"")),
        "{flaky:?}"
    );
    let s = plugin_status(&host, "b", "webhook-retry").await;
    assert_eq!(
        (s["errors"].as_u64(), s["traps"].as_u64()),
        (Some(0), Some(0)),
        "{s}"
    );
    // A receiver that is down: the plugin gives up within its time budget with a
    // clear error, and is not interrupted by the deadline (no trap, no restart).
    let dead = wait_for("the give-up", Duration::from_secs(10), || async {
        let s = plugin_status(&host, "b", "webhook-dead").await;
        (s["errors"].as_u64() >= Some(1)).then_some(s)
    })
    .await;
    let err = dead["last_error"].as_str().unwrap();
    assert!(
        err.contains("gave up after") && err.contains(&dead_port.to_string()),
        "{err}"
    );
    assert_eq!(
        (dead["traps"].as_u64(), dead["restarts"].as_u64()),
        (Some(0), Some(0)),
        "{dead}"
    );
    assert_eq!(dead["state"], "running");
    eprintln!("webhook to a dead receiver: {err}");
    // One that never answers: the request times out within the budget too.
    let silent = wait_for("the silent give-up", Duration::from_secs(10), || async {
        let s = plugin_status(&host, "b", "webhook-silent").await;
        (s["errors"].as_u64() >= Some(1)).then_some(s)
    })
    .await;
    let err = silent["last_error"].as_str().unwrap();
    assert!(err.contains("gave up after"), "{err}");
    assert_eq!(
        (silent["traps"].as_u64(), silent["restarts"].as_u64()),
        (Some(0), Some(0)),
        "{silent}"
    );
    eprintln!("webhook to a silent receiver: {err}");
    host.stop().await;
    sim.shutdown().await;
}

/// Inter-frame arrival times (ms) of a camera's video over `secs`.
pub(crate) async fn frame_gaps(host: &vigil::app::Host, camera: &str, secs: u64) -> Vec<f64> {
    let cam = host
        .state
        .cameras
        .iter()
        .find(|c| c.config.id == camera)
        .unwrap()
        .clone();
    let mut sub = cam.broadcaster.subscribe();
    let mut last: Option<Instant> = None;
    let mut gaps = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while let Ok(Some(r)) = tokio::time::timeout_at(deadline, sub.recv()).await {
        if let vigil::media::Recv::Frame(f) = r
            && f.track == vigil::media::TrackKind::Video
        {
            if let Some(l) = last {
                gaps.push(f.received.duration_since(l).as_secs_f64() * 1000.0);
            }
            last = Some(f.received);
        }
    }
    gaps.sort_by(f64::total_cmp);
    gaps
}

pub(crate) fn p99(v: &[f64]) -> f64 {
    v[((v.len() - 1) as f64 * 0.99).round() as usize]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misbehaving_plugins_are_contained() {
    let sim = start_camsim(2, false).await;
    let bad = wasm("vigil_test_plugin_misbehave");
    let modes = [
        "loop",
        "grow",
        "trap",
        "flood",
        "huge",
        "capability",
        "sleep",
    ];
    let mut cfg = format!(
        "[plugins]\nevents_per_second = 20\n\
         [[plugin]]\nid = \"good\"\npath = \"{bad}\"\n\
         [[plugin]]\nid = \"motion\"\npath = \"{}\"\n",
        wasm("vigil_plugin_motion")
    );
    for m in modes {
        cfg.push_str(&format!(
            "[[plugin]]\nid = \"{m}\"\npath = \"{bad}\"\ncall_timeout_ms = 300\nmemory_mib = 32\n"
        ));
    }
    cfg.push_str(&format!(
        "[[camera]]\nid = \"victim\"\nurl = \"{}\"\n[[camera]]\nid = \"bystander\"\nurl = \"{}\"\n\
         [[camera.plugin]]\nid = \"good\"\nconfig = {{ mode = \"ok\" }}\n[[camera.plugin]]\nid = \"motion\"\n",
        sim.url(0),
        sim.url(1)
    ));
    let host = start_host(&cfg).await;
    wait_state(&host, "victim", "streaming", Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let baseline = frame_gaps(&host, "victim", 5).await;

    let base = format!("http://{}/api/cameras/victim/plugins", host.addr);
    for m in modes {
        let (st, _, b) = request(
            "PUT",
            &format!("{base}/{m}"),
            Some("application/json"),
            &format!("{{\"mode\":\"{m}\"}}"),
        )
        .await;
        assert_eq!(st, 200, "{m}: {}", String::from_utf8_lossy(&b));
    }
    let with_bad = frame_gaps(&host, "victim", 5).await;
    let (b99, w99) = (p99(&baseline), p99(&with_bad));
    eprintln!(
        "victim inter-frame p99: {b99:.1} ms without plugins, {w99:.1} ms with {} misbehaving ones ({} and {} frames)",
        modes.len(),
        baseline.len(),
        with_bad.len()
    );
    assert!(
        w99 - b99 <= 5.0,
        "ingest cadence changed: p99 {b99:.1} → {w99:.1} ms"
    );

    // Traps and deadlines: restarted, then quarantined, with a clear reason.
    for (m, needle) in [
        ("loop", "deadline"),
        ("grow", "memory"),
        ("trap", "trap"),
        ("sleep", "deadline"),
    ] {
        let s = wait_for(
            &format!("{m} to be quarantined"),
            Duration::from_secs(60),
            || async {
                let s = plugin_status(&host, "victim", m).await;
                (s["state"] == "quarantined").then_some(s)
            },
        )
        .await;
        let err = s["last_error"].as_str().unwrap_or_default();
        assert!(
            err.to_lowercase().contains(needle),
            "{m}: expected {needle:?} in {err:?}"
        );
        assert!(s["restarts"].as_u64().unwrap() >= 3, "{m}: {s}");
        eprintln!("{m}: quarantined after {} restarts: {err}", s["restarts"]);
    }
    // Flood: refused beyond the budget, the instance keeps running.
    let flood = plugin_status(&host, "victim", "flood").await;
    assert_eq!(flood["state"], "running", "{flood}");
    assert!(
        flood["events_rejected"].as_u64().unwrap() > 10_000,
        "{flood}"
    );
    // Huge list: refused with a reason naming the limit.
    let huge = wait_for(
        "the huge event refused",
        Duration::from_secs(20),
        || async {
            let s = plugin_status(&host, "victim", "huge").await;
            s["last_error"].is_string().then_some(s)
        },
    )
    .await;
    let herr = huge["last_error"].as_str().unwrap();
    assert!(
        herr.contains("detections") || herr.contains("memory"),
        "{huge}"
    );
    // Ungranted capabilities: domain errors, not traps.
    let cap = wait_for("the capability errors", Duration::from_secs(20), || async {
        let s = plugin_status(&host, "victim", "capability").await;
        s["last_error"].is_string().then_some(s)
    })
    .await;
    let cerr = cap["last_error"].as_str().unwrap();
    assert!(
        cerr.contains("not granted") && cerr.contains("denied"),
        "{cerr}"
    );
    assert_eq!(cap["state"], "running");
    assert_eq!(cap["traps"], 0, "{cap}");

    // The good plugins on the other camera kept working throughout.
    let before = plugin_status(&host, "bystander", "good").await["events_emitted"]
        .as_u64()
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let good = plugin_status(&host, "bystander", "good").await;
    assert!(good["events_emitted"].as_u64().unwrap() > before, "{good}");
    assert_eq!(good["restarts"], 0);
    assert_eq!(
        plugin_status(&host, "bystander", "motion").await["state"],
        "running"
    );
    // A plugin that refuses its configuration in `new` (beyond what its schema
    // checks) is not enabled: 422 with its reason, no instance left behind.
    let url = format!("http://{}/api/cameras/bystander/plugins/trap", host.addr);
    let (st, _, b) = request(
        "PUT",
        &url,
        Some("application/json"),
        r#"{"mode":"refuse"}"#,
    )
    .await;
    let text = String::from_utf8_lossy(&b);
    assert_eq!(st, 422, "{text}");
    assert!(text.contains("refused on purpose"), "{text}");
    let (st, _, _) = get(&url).await;
    assert_eq!(st, 404, "a refused enablement left an instance");
    // Flood events were not lost silently: every refusal was counted, the store
    // holds what was accepted.
    let h = get_json(&format!("http://{}/api/health", host.addr)).await;
    assert_eq!(h["status"], "ok");
    // Nine [[plugin]]s, two distinct binaries: compiled twice.
    let (_, _, m) = get(&format!("http://{}/metrics", host.addr)).await;
    let m = String::from_utf8_lossy(&m);
    assert!(m.contains("\nvigil_plugin_compilations_total 2\n"), "{m}");
    host.stop().await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_api_validates_and_hot_swaps_without_a_gap() {
    let sim = start_camsim(2, false).await;
    // A copy of the motion plugin we can "upgrade" in place.
    let dir = scratch_dir("hot-plugins");
    let path = dir.join("motion.wasm");
    std::fs::copy(wasm("vigil_plugin_motion"), &path).unwrap();
    let host = start_host(&format!(
        "[[plugin]]\nid = \"motion\"\npath = \"{}\"\n[[camera]]\nid = \"a\"\nurl = \"{}\"\n[[camera]]\nid = \"b\"\nurl = \"{}\"\n",
        path.display(),
        sim.url(0),
        sim.url(1)
    ))
    .await;
    wait_state(&host, "a", "streaming", Duration::from_secs(20)).await;
    wait_state(&host, "b", "streaming", Duration::from_secs(20)).await;
    let list = get_json(&format!("http://{}/api/plugins", host.addr)).await;
    let m = &list[0];
    assert_eq!(m["manifest"]["kind"], "analytics", "{list}");
    assert_eq!(
        m["manifest"]["config_schema"]["properties"]["threshold"]["maximum"],
        255
    );
    assert_eq!(m["manifest"]["capabilities"], serde_json::json!([]));

    let url = format!("http://{}/api/cameras/a/plugins/motion", host.addr);
    // Invalid configurations: 422 naming the field.
    for (cfg, field) in [
        (r#"{"threshold": 999}"#, "/threshold"),
        (r#"{"colour": 1}"#, "colour"),
        (r#"{"min_area": "lots"}"#, "/min_area"),
    ] {
        let (st, _, b) = request("PUT", &url, Some("application/json"), cfg).await;
        let text = String::from_utf8_lossy(&b);
        assert_eq!(st, 422, "{cfg}: {text}");
        assert!(text.contains(field), "{cfg}: expected {field:?} in {text}");
    }
    let (st, _, b) = request("PUT", &url, Some("application/json"), "not json").await;
    assert_eq!(st, 400, "{}", String::from_utf8_lossy(&b));
    let (st, _, _) = request(
        "PUT",
        &format!("http://{}/api/cameras/a/plugins/nope", host.addr),
        Some("application/json"),
        "{}",
    )
    .await;
    assert_eq!(st, 404);

    // An LL-HLS reader on camera b follows the parts (blocking requests, like a
    // player) while camera a's plugin is enabled, reconfigured, upgraded, disabled.
    let hls = format!("http://{}/cameras/b/hls", host.addr);
    get(&format!("{hls}/index.m3u8")).await;
    let stop = Arc::new(AtomicUsize::new(0));
    let reader = {
        let (hls, stop) = (hls.clone(), stop.clone());
        tokio::spawn(async move {
            let (_, _, pl) = get(&format!("{hls}/index.m3u8")).await;
            let pl = String::from_utf8_lossy(&pl).to_string();
            let hint = pl
                .lines()
                .find(|l| l.starts_with("#EXT-X-PRELOAD-HINT"))
                .unwrap();
            let mut n: u64 = hint
                .split("part-")
                .nth(1)
                .unwrap()
                .split('.')
                .next()
                .unwrap()
                .parse()
                .unwrap();
            let mut gaps = Vec::new();
            let mut last = Instant::now();
            while stop.load(Ordering::Relaxed) == 0 {
                let (st, _, b) = get(&format!("{hls}/part-{n}.m4s")).await;
                assert_eq!(st, 200, "part {n}");
                assert_eq!(&b[4..8], b"moof");
                gaps.push(last.elapsed());
                last = Instant::now();
                n += 1;
            }
            gaps
        })
    };
    let ops_started = Instant::now();
    let (st, _, b) = request(
        "PUT",
        &url,
        Some("application/json"),
        r#"{"threshold": 30}"#,
    )
    .await;
    assert_eq!(st, 200, "{}", String::from_utf8_lossy(&b));
    let s: serde_json::Value = serde_json::from_slice(&b).unwrap();
    assert_eq!(s["state"], "running", "{s}");
    let (st, _, b) = request(
        "PUT",
        &url,
        Some("application/json"),
        r#"{"threshold": 40, "cooldown_ms": 0}"#,
    )
    .await;
    assert_eq!(st, 200);
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&b).unwrap()["config"]["threshold"],
        40
    );
    // Upgrades refused: another kind of plugin, or a schema that refuses the
    // enabled configuration. The running version stays.
    let reload = format!("http://{}/api/plugins/motion/reload", host.addr);
    let digest0 =
        get_json(&format!("http://{}/api/plugins/motion", host.addr)).await["digest"].clone();
    for (other, needle) in [
        ("vigil_plugin_zones", "a rule plugin"),
        ("vigil_test_plugin_misbehave", "mode"),
    ] {
        std::fs::copy(wasm(other), &path).unwrap();
        let (st, _, b) = request("POST", &reload, None, "").await;
        let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(st, 422, "{other}: {v}");
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(
            msg.contains(needle) && msg.contains("camera \"a\""),
            "{other}: {msg}"
        );
    }
    // Upgrade: a new build of motion at the same path (the same code with a custom
    // section appended: other bytes, another digest, a real recompile).
    let mut bytes = std::fs::read(wasm("vigil_plugin_motion")).unwrap();
    let (name, payload) = (b"vigil-test-build", b"2");
    bytes.extend_from_slice(&[0, (1 + name.len() + payload.len()) as u8, name.len() as u8]);
    bytes.extend_from_slice(name);
    bytes.extend_from_slice(payload);
    std::fs::write(&path, &bytes).unwrap();
    let (st, _, b) = request("POST", &reload, None, "").await;
    assert_eq!(st, 200, "{}", String::from_utf8_lossy(&b));
    let info: serde_json::Value = serde_json::from_slice(&b).unwrap();
    assert_ne!(info["digest"], digest0, "{info}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let s = plugin_status(&host, "a", "motion").await;
    assert_eq!(s["state"], "running", "{s}");
    assert_eq!(
        s["config"]["threshold"], 40,
        "the upgrade kept the configuration: {s}"
    );
    let calls = s["calls"].as_u64().unwrap();
    wait_for(
        "the upgraded instance to analyse frames",
        Duration::from_secs(5),
        || async {
            (plugin_status(&host, "a", "motion").await["calls"].as_u64() > Some(calls))
                .then_some(())
        },
    )
    .await;
    let (st, _, _) = request("DELETE", &url, None, "").await;
    assert_eq!(st, 204);
    let (st, _, _) = request("GET", &url, None, "").await;
    assert_eq!(st, 404);
    let ops = ops_started.elapsed();
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(1, Ordering::Relaxed);
    let gaps = reader.await.unwrap();
    let max = gaps.iter().skip(1).max().copied().unwrap_or_default();
    eprintln!(
        "hot ops took {ops:?}; the LL-HLS reader got {} parts, longest wait {max:?}",
        gaps.len()
    );
    assert!(gaps.len() >= 5, "{gaps:?}");
    assert!(
        max < Duration::from_millis(600),
        "the reader waited {max:?} for a part"
    );
    let b = camera(&host, "b").await;
    assert_eq!(b["reconnects"], 0);
    host.stop().await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_queries_filter_and_page() {
    let sim = start_camsim(2, false).await;
    let host = start_host(&format!(
        "[[camera]]\nid = \"a\"\nurl = \"{}\"\n[[camera]]\nid = \"b\"\nurl = \"{}\"\n",
        sim.url(0),
        sim.url(1)
    ))
    .await;
    let t0 = vigil::events::now_ms();
    for i in 0..30 {
        let cam = if i % 3 == 0 { "b" } else { "a" };
        let kind = if i % 2 == 0 { "door" } else { "window" };
        post_event(
            &host,
            serde_json::json!({"camera": cam, "kind": kind, "attributes": [["i", i.to_string()]]}),
        )
        .await;
    }
    let t1 = vigil::events::now_ms();
    assert_eq!(events(&host, "limit=1000").await.len(), 30);
    assert_eq!(events(&host, "camera=b").await.len(), 10);
    assert_eq!(events(&host, "camera=a&kind=door").await.len(), 10);
    assert_eq!(
        events(&host, &format!("since={t0}&until={t1}")).await.len(),
        30
    );
    assert_eq!(events(&host, &format!("since={}", t1 + 1)).await.len(), 0);
    // Pages of 7 walk all events once, newest first.
    let mut seen = Vec::new();
    let mut cursor = String::new();
    loop {
        let page = get_json(&format!("http://{}/api/events?limit=7{cursor}", host.addr)).await;
        seen.extend(page["events"].as_array().unwrap().iter().map(|e| {
            e["attributes"][0][1]
                .as_str()
                .unwrap()
                .parse::<u32>()
                .unwrap()
        }));
        match page["next_cursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(seen, (0..30).rev().collect::<Vec<_>>());
    for (q, needle) in [
        ("limit=0", "limit"),
        ("since=yesterday", "since"),
        ("cursor=zzz", "cursor"),
    ] {
        let (st, _, b) = get(&format!("http://{}/api/events?{q}", host.addr)).await;
        assert_eq!(st, 400, "{q}");
        assert!(String::from_utf8_lossy(&b).contains(needle), "{q}");
    }
    let (st, _, _) = request(
        "POST",
        &format!("http://{}/api/events", host.addr),
        Some("application/json"),
        r#"{"camera":"nope","kind":"x"}"#,
    )
    .await;
    assert_eq!(st, 404);
    let (st, _, b) = request(
        "POST",
        &format!("http://{}/api/events", host.addr),
        Some("application/json"),
        r#"{"camera":"a","kind":"x","detections":[{"label":"p","score":0.5,"bbox":{"x":2,"y":0,"width":1,"height":1}}]}"#,
    )
    .await;
    assert_eq!(st, 400);
    assert!(String::from_utf8_lossy(&b).contains("detections[0].bbox"));
    host.stop().await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_event_stream_delivers_events() {
    let sim = start_camsim(1, false).await;
    let host = start_host(&format!(
        "[[camera]]\nid = \"a\"\nurl = \"{}\"\n",
        sim.url(0)
    ))
    .await;
    let addr = host.addr;
    let reader = tokio::spawn(async move {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /api/events/stream?kind=ring HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let mut chunk = [0u8; 4096];
            let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut chunk))
                .await
                .unwrap()
                .unwrap();
            buf.extend_from_slice(&chunk[..n]);
            if String::from_utf8_lossy(&buf)
                .matches("event: event")
                .count()
                >= 2
            {
                break;
            }
        }
        String::from_utf8_lossy(&buf).to_string()
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    post_event(&host, serde_json::json!({"camera": "a", "kind": "knock"})).await;
    post_event(&host, serde_json::json!({"camera": "a", "kind": "ring"})).await;
    post_event(&host, serde_json::json!({"camera": "a", "kind": "ring"})).await;
    let text = reader.await.unwrap();
    assert!(text.contains("text/event-stream"), "{text}");
    assert_eq!(text.matches("event: event").count(), 2, "{text}");
    assert!(
        !text.contains("knock"),
        "the kind filter let another kind through: {text}"
    );
    host.stop().await;
    sim.shutdown().await;
}

/// A host process, for the crash test.
fn spawn_host(dir: &std::path::Path, port: u16, camsim_url: &str) -> Child {
    let cfg = dir.join("vigil.toml");
    std::fs::write(
        &cfg,
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\ndata_dir = \"{}\"\n[[camera]]\nid = \"a\"\nurl = \"{camsim_url}\"\n",
            dir.join("data").display()
        ),
    )
    .unwrap();
    Command::new(vigil_bin())
        .args(["run", "--config"])
        .arg(&cfg)
        .env("VIGIL_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loses_no_acknowledged_event() {
    let sim = start_camsim(1, false).await;
    let dir = scratch_dir("kill9");
    let port = free_port();
    let mut child = spawn_host(&dir, port, &sim.url(0));
    let base = format!("http://127.0.0.1:{port}");
    wait_for("the host", Duration::from_secs(20), || async {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()
            .map(|_| ())
    })
    .await;
    // Four writers post as fast as they can; each keeps the ids the host acknowledged.
    let acked = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let mut writers = Vec::new();
    for w in 0..4 {
        let (base, acked) = (base.clone(), acked.clone());
        writers.push(tokio::spawn(async move {
            let client =
                hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                    .build_http::<http_body_util::Full<bytes::Bytes>>();
            for i in 0.. {
                let body = format!(
                    r#"{{"camera":"a","kind":"burst","attributes":[["w","{w}"],["i","{i}"]]}}"#
                );
                let req = hyper::Request::post(format!("{base}/api/events"))
                    .header("content-type", "application/json")
                    .body(http_body_util::Full::new(bytes::Bytes::from(body)))
                    .unwrap();
                let Ok(resp) = client.request(req).await else {
                    break;
                };
                if resp.status() != 201 {
                    break;
                }
                use http_body_util::BodyExt;
                let Ok(b) = resp.into_body().collect().await else {
                    break;
                };
                let v: serde_json::Value = serde_json::from_slice(&b.to_bytes()).unwrap();
                acked
                    .lock()
                    .unwrap()
                    .push(v["id"].as_str().unwrap().to_string());
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // SIGKILL in the middle of the burst.
    let _ = Command::new("kill")
        .args(["-9", &child.id().to_string()])
        .status();
    let _ = child.wait();
    for w in writers {
        let _ = w.await;
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() > 50,
        "only {} events acknowledged before the kill",
        acked.len()
    );
    // Restart on the same data directory: every acknowledged event is there.
    let port2 = free_port();
    let mut child2 = spawn_host(&dir, port2, &sim.url(0));
    let base2 = format!("http://127.0.0.1:{port2}");
    wait_for("the restarted host", Duration::from_secs(20), || async {
        tokio::net::TcpStream::connect(("127.0.0.1", port2))
            .await
            .ok()
            .map(|_| ())
    })
    .await;
    let mut stored = std::collections::HashSet::new();
    let mut cursor = String::new();
    loop {
        let page = get_json(&format!("{base2}/api/events?limit=1000&kind=burst{cursor}")).await;
        stored.extend(
            page["events"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["id"].as_str().unwrap().to_string()),
        );
        match page["next_cursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => break,
        }
    }
    let lost: Vec<&String> = acked.iter().filter(|id| !stored.contains(*id)).collect();
    eprintln!(
        "kill -9: {} acknowledged, {} stored after restart, {} lost",
        acked.len(),
        stored.len(),
        lost.len()
    );
    assert!(
        lost.is_empty(),
        "{} acknowledged events lost, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(3)]
    );
    let _ = child2.kill();
    let _ = child2.wait();
    sim.shutdown().await;
}

/// The stable part of an event printed by `vigil plugin run`: no ids, wall times
/// or scores (which depend on the clock or on SIMD rounding in scaling).
fn golden_line(e: &serde_json::Value) -> String {
    let dets: Vec<serde_json::Value> = e["detections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            let r = |k: &str| (d["bbox"][k].as_f64().unwrap() * 1000.0).round() / 1000.0;
            serde_json::json!({"label": d["label"], "track_id": d["track_id"],
                "bbox": [r("x"), r("y"), r("width"), r("height")]})
        })
        .collect();
    let attrs: Vec<&serde_json::Value> = e["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a[0] != "area")
        .collect();
    serde_json::json!({"kind": e["kind"], "severity": e["severity"], "media_start_ns": e["media_start_ns"],
        "detections": dets, "attributes": attrs})
    .to_string()
}

/// Runs `vigil plugin run` and compares its events with a golden file
/// (`VIGIL_BLESS=1` rewrites it).
fn check_golden(plugin: &str, args: &[&str], golden: &str) {
    let fixtures = repo_root().join("tests/fixtures");
    let out = Command::new(vigil_bin())
        .current_dir(&fixtures)
        .args(["plugin", "run", &wasm(plugin)])
        .args(args)
        .env("VIGIL_LOG", "warn")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "vigil plugin run {plugin}: {stderr}");
    let got: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| golden_line(&serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))))
        .collect();
    let path = fixtures.join("golden").join(golden);
    if std::env::var_os("VIGIL_BLESS").is_some() {
        std::fs::write(&path, got.join("\n") + "\n").unwrap();
    }
    let want: Vec<String> = std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    assert!(!want.is_empty());
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(g, w, "{golden}: event {i} differs");
    }
    assert_eq!(
        got.len(),
        want.len(),
        "{golden}: {} events, golden has {}:\n{}",
        got.len(),
        want.len(),
        got.join("\n")
    );
}

#[test]
fn offline_runner_matches_golden_events() {
    // A white box crosses a grey picture for 2 s, then stands still for 2 s.
    check_golden(
        "vigil_plugin_motion",
        &[
            "--input",
            "moving-box.mp4",
            "--config",
            r#"{"cooldown_ms": 0}"#,
        ],
        "motion-moving-box.jsonl",
    );
    // A person walks over the gate into the porch, stays, and walks back out;
    // a car (not a selected label) is ignored.
    check_golden(
        "vigil_plugin_zones",
        &[
            "--input",
            "golden/zones-walk.events.jsonl",
            "--config",
            "@golden/zones-walk.config.json",
        ],
        "zones-walk.jsonl",
    );
    // Bad input: a named error, non-zero exit.
    let out = Command::new(vigil_bin())
        .args([
            "plugin",
            "run",
            &wasm("vigil_plugin_zones"),
            "--input",
            "/nonexistent.jsonl",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent.jsonl"));
    let out = Command::new(vigil_bin())
        .args([
            "plugin",
            "run",
            &wasm("vigil_plugin_motion"),
            "--input",
            "x.mp4",
            "--config",
            r#"{"threshold": 0}"#,
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/threshold"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frame_path_decodes_only_where_needed_drops_oldest_and_scopes_files() {
    let sim = start_camsim(2, false).await;
    let data = scratch_dir("frame-path");
    let bad = wasm("vigil_test_plugin_misbehave");
    let host = start_host_in(
        &data,
        &format!(
            "{TEST_INGEST}\
             [[plugin]]\nid = \"slow\"\npath = \"{bad}\"\nqueue = 2\n\
             [[plugin]]\nid = \"files\"\npath = \"{bad}\"\ngrants = [\"files\"]\n\
             [[plugin]]\nid = \"files-ungranted\"\npath = \"{bad}\"\n\
             [[plugin]]\nid = \"zones\"\npath = \"{}\"\n\
             [[camera]]\nid = \"a\"\nurl = \"{}\"\n\
             [[camera.plugin]]\nid = \"slow\"\nconfig = {{ mode = \"slow\", ms = 500 }}\n\
             [[camera.plugin]]\nid = \"files\"\nconfig = {{ mode = \"files\" }}\n\
             [[camera.plugin]]\nid = \"files-ungranted\"\nconfig = {{ mode = \"files\" }}\n\
             [[camera]]\nid = \"b\"\nurl = \"{}\"\n\
             [[camera.plugin]]\nid = \"zones\"\n",
            wasm("vigil_plugin_zones"),
            sim.url(0),
            sim.url(1)
        ),
    )
    .await;
    wait_state(&host, "a", "streaming", Duration::from_secs(20)).await;
    wait_state(&host, "b", "streaming", Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    // Camera b has only a rule plugin: nothing decodes its video.
    assert!(camera(&host, "b").await["analytics"].is_null());
    let a = camera(&host, "a").await;
    let decoded = a["analytics"]["frames_decoded"].as_u64().unwrap();
    assert!(decoded >= 30, "{a}");
    assert_eq!(a["analytics"]["consumers"], 3);
    // The slow instance (500 ms per frame, 5 frames/s wanted, queue of 2) keeps
    // running and drops its oldest frames; the others are not held up.
    let slow = plugin_status(&host, "a", "slow").await;
    eprintln!(
        "slow: {} inputs, {} calls, {} dropped; frames decoded: {decoded}",
        slow["inputs"], slow["calls"], slow["dropped"]
    );
    assert_eq!(slow["state"], "running", "{slow}");
    assert_eq!(slow["traps"], 0, "{slow}");
    assert!(slow["dropped"].as_u64().unwrap() >= 5, "{slow}");
    let files = plugin_status(&host, "a", "files").await;
    assert!(files["calls"].as_u64().unwrap() >= 10, "{files}");
    assert!(files["last_error"].is_null(), "{files}");
    assert_eq!(files["dropped"], 0, "{files}");
    // Its files are in its own directory, and nowhere else.
    let dir = data.join("plugin-files/files/a");
    let n: u64 = std::fs::read_to_string(dir.join("a.txt"))
        .unwrap()
        .parse()
        .unwrap();
    assert!(n >= 10, "{n}");
    assert!(!data.join("plugin-files/files/escaped.txt").exists());
    let ungranted = plugin_status(&host, "a", "files-ungranted").await;
    assert!(
        ungranted["last_error"]
            .as_str()
            .unwrap_or_default()
            .contains("write /data: Err"),
        "{ungranted}"
    );
    assert!(!data.join("plugin-files/files-ungranted").exists());
    // The numbers are in /metrics.
    let (_, _, m) = get(&format!("http://{}/metrics", host.addr)).await;
    let m = String::from_utf8_lossy(&m);
    let line = m
        .lines()
        .find(|l| l.starts_with("vigil_plugin_inputs_dropped_total{camera=\"a\",plugin=\"slow\"}"))
        .unwrap();
    assert!(
        line.split(' ').nth(1).unwrap().parse::<u64>().unwrap() >= 5,
        "{line}"
    );
    assert!(
        m.contains("vigil_plugin_state{camera=\"b\",plugin=\"zones\",state=\"running\"} 1"),
        "{m}"
    );
    assert!(m.contains("vigil_analytics_frames_decoded_total{camera=\"a\"}"));
    // Disabling the last frame consumer stops the decoding.
    for p in ["slow", "files", "files-ungranted"] {
        let (st, _, _) = request(
            "DELETE",
            &format!("http://{}/api/cameras/a/plugins/{p}", host.addr),
            None,
            "",
        )
        .await;
        assert_eq!(st, 204);
    }
    assert!(camera(&host, "a").await["analytics"].is_null());
    host.stop().await;
    sim.shutdown().await;
}

/// An output plugin that asked for encoded packets gets the camera's H.264 as
/// Annex B (parameter sets before each key frame) and its AAC, without the host
/// decoding anything; what it writes through its `files` grant plays in ffmpeg.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_plugins_get_encoded_packets_that_play() {
    let gst = GstServer::start(&[("av", "h264+aac")], &[]);
    let data = scratch_dir("packets");
    let host = start_host_in(
        &data,
        &format!(
            "{TEST_INGEST}\
             [[plugin]]\nid = \"recorder\"\npath = \"{}\"\ngrants = [\"files\"]\n\
             [[camera]]\nid = \"av\"\nurl = \"{}\"\n\
             [[camera.plugin]]\nid = \"recorder\"\nconfig = {{ audio = true }}\n",
            wasm("vigil_test_plugin_recorder"),
            gst.url("av")
        ),
    )
    .await;
    wait_state(&host, "av", "streaming", Duration::from_secs(20)).await;
    let dir = data.join("plugin-files/recorder/av");
    tokio::time::sleep(Duration::from_secs(5)).await;
    let s = plugin_status(&host, "av", "recorder").await;
    assert_eq!(s["state"], "running", "{s}");
    assert!(s["last_error"].is_null(), "{s}");
    assert_eq!(s["dropped"], 0, "{s}");
    // Packets only: nothing decodes this camera's video.
    assert!(camera(&host, "av").await["analytics"].is_null());
    host.stop().await;
    // One file per stream generation (a reconnect starts a new one): the largest.
    let file = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "h264"))
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap_or_else(|| panic!("no .h264 in {}", dir.display()));
    let probe = Command::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-select_streams", "v:0"])
        .args([
            "-show_entries",
            "stream=codec_name,width,height,nb_read_frames",
        ])
        .args(["-of", "json"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(probe.status.success(), "{probe:?}");
    let p: serde_json::Value = serde_json::from_slice(&probe.stdout).unwrap();
    let v = &p["streams"][0];
    assert_eq!(v["codec_name"], "h264", "{p}");
    assert_eq!(
        (v["width"].as_u64(), v["height"].as_u64()),
        (Some(640), Some(360))
    );
    let frames: u64 = v["nb_read_frames"].as_str().unwrap().parse().unwrap();
    assert!(frames >= 60, "{frames} frames in {}", file.display());
    let decode = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(&file)
        .args(["-f", "null", "-"])
        .output()
        .unwrap();
    assert!(decode.status.success());
    let errors = String::from_utf8_lossy(&decode.stderr);
    assert!(errors.trim().is_empty(), "decode errors: {errors}");
    // Audio packets came too: AAC access units with increasing timestamps.
    let log = std::fs::read_to_string(dir.join("audio.log")).unwrap();
    let pts: Vec<u64> = log
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            assert_eq!(f[0], "aac", "{l}");
            assert!(f[2].parse::<usize>().unwrap() > 0, "{l}");
            f[1].parse().unwrap()
        })
        .collect();
    assert!(pts.len() >= 100, "{} audio packets", pts.len());
    assert!(
        pts.windows(2).all(|w| w[1] > w[0]),
        "audio pts not increasing"
    );
    let _ = std::fs::remove_dir_all(&data);
    eprintln!(
        "recorder: {frames} video frames decoded by ffmpeg, {} audio packets, {} calls",
        pts.len(),
        s["calls"]
    );
}
