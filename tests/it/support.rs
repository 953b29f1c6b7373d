//! Shared helpers: peers (GStreamer RTSP server), an HTTP client, polling.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// A GStreamer RTSP server on loopback, killed on drop.
pub struct GstServer {
    child: Child,
    pub port: u16,
    args: Vec<String>,
}

impl GstServer {
    /// Starts the fixture with `--mount NAME=KIND` for each pair and extra args.
    pub fn start(mounts: &[(&str, &str)], extra: &[&str]) -> GstServer {
        Self::start_on(0, mounts, extra)
    }

    pub fn start_on(port: u16, mounts: &[(&str, &str)], extra: &[&str]) -> GstServer {
        let mut args = vec![
            repo_root()
                .join("tests/fixtures/gst_rtsp_server.py")
                .display()
                .to_string(),
            "--port".into(),
            port.to_string(),
        ];
        for (name, kind) in mounts {
            args.push("--mount".into());
            args.push(format!("{name}={kind}"));
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut child = Command::new("/usr/bin/python3")
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start /usr/bin/python3 gst_rtsp_server.py (run scripts/setup.sh)");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .expect("read READY line");
        let port = line
            .trim()
            .strip_prefix("READY ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("gst server did not start: {line:?}"));
        GstServer { child, port, args }
    }

    pub fn url(&self, mount: &str) -> String {
        format!("rtsp://127.0.0.1:{}/{mount}", self.port)
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the same server again on the same port (retrying while the old
    /// socket is released); returns when it accepts connections.
    pub fn restart(&mut self) {
        self.stop();
        let mut args = self.args.clone();
        args[2] = self.port.to_string();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let mut child = Command::new("/usr/bin/python3")
                .args(&args)
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("restart gst server");
            let mut line = String::new();
            let _ = BufReader::new(child.stdout.take().unwrap()).read_line(&mut line);
            if line.starts_with("READY ") {
                self.child = child;
                return;
            }
            let _ = child.kill();
            let _ = child.wait();
            assert!(
                Instant::now() < deadline,
                "could not restart gst server on port {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for GstServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// An HTTP request with an optional body; returns status, headers and body.
pub async fn request(
    method: &str,
    url: &str,
    content_type: Option<&str>,
    body: &str,
) -> (u16, hyper::HeaderMap, Bytes) {
    let client = Client::builder(TokioExecutor::new()).build_http::<http_body_util::Full<Bytes>>();
    let mut req = hyper::Request::builder().method(method).uri(url);
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    let req = req
        .body(http_body_util::Full::new(Bytes::from(body.to_string())))
        .unwrap();
    let r = client
        .request(req)
        .await
        .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let body = r.into_body().collect().await.unwrap().to_bytes();
    (status, headers, body)
}

/// GET `url`; returns status, content type and body.
pub async fn get(url: &str) -> (u16, String, Bytes) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let r = client
        .get(url.parse().unwrap())
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = r.status().as_u16();
    let ct = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap_or("").to_string())
        .unwrap_or_default();
    let body = r.into_body().collect().await.unwrap().to_bytes();
    (status, ct, body)
}

pub async fn get_json(url: &str) -> serde_json::Value {
    let (status, _, body) = get(url).await;
    assert_eq!(status, 200, "GET {url}: {}", String::from_utf8_lossy(&body));
    serde_json::from_slice(&body).unwrap()
}

/// Polls `f` every 100 ms until it returns Some or `timeout` passes.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Ingest settings for tests: quick retries, short timeouts.
pub const TEST_INGEST: &str =
    "[ingest]\nretry_initial_ms = 100\nretry_max_ms = 500\nread_timeout_s = 3\n";

/// A host in this process with the given `[[camera]]` entries (TOML text) and the
/// test ingest settings.
pub async fn start_host(cameras_toml: &str) -> vigil::app::Host {
    start_host_config(&format!("{TEST_INGEST}{cameras_toml}")).await
}

/// A host in this process from config text (its `[server]` table is supplied,
/// with a data directory of its own so hosts in parallel tests share no events).
pub async fn start_host_config(toml: &str) -> vigil::app::Host {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    start_host_in(&scratch_dir(&format!("host{n}")), toml).await
}

/// A host in this process keeping its data (events, plugin files) in `data`.
pub async fn start_host_in(data: &std::path::Path, toml: &str) -> vigil::app::Host {
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\ndata_dir = \"{}\"\n{toml}",
        data.display()
    );
    let cfg = vigil::config::parse("test.toml", &text).expect("test config");
    vigil::app::Host::start(cfg).await.expect("start host")
}

/// A camera simulator in this process.
pub async fn start_camsim(streams: usize, stamp: bool) -> vigil::camsim::Camsim {
    vigil::camsim::Camsim::start(&vigil::camsim::CamsimArgs {
        listen: "127.0.0.1:0".parse().unwrap(),
        streams,
        stamp,
        ..Default::default()
    })
    .await
    .expect("start camsim")
}

/// A loopback port that nothing listens on (bound, then released).
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

pub async fn camera(host: &vigil::app::Host, id: &str) -> serde_json::Value {
    get_json(&format!("http://{}/api/cameras/{id}", host.addr)).await
}

/// Waits for a camera to reach `state`, returning its JSON.
pub async fn wait_state(
    host: &vigil::app::Host,
    id: &str,
    state: &str,
    timeout: Duration,
) -> serde_json::Value {
    wait_for(&format!("camera {id} to be {state}"), timeout, || async {
        let c = camera(host, id).await;
        (c["state"] == state).then_some(c)
    })
    .await
}

/// Path of the `vigil` binary built beside this test binary (the README's test
/// command builds every target first).
pub fn vigil_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let bin = exe.parent().unwrap().parent().unwrap().join("vigil");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build --workspace` first (scripts/test.sh does)",
        bin.display()
    );
    bin
}

/// A fresh scratch directory under the system temp dir.
pub fn scratch_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("vigil-it-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Where tests leave artifacts (screenshots) for people to look at.
pub fn artifacts_dir() -> PathBuf {
    let d = repo_root().join("artifacts");
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Runs `tests/browser/drive.mjs <args>` (headless Chromium through playwright-core)
/// and returns its JSON report.
pub async fn drive_browser(args: Vec<String>) -> serde_json::Value {
    let dir = repo_root().join("tests/browser");
    assert!(
        dir.join("node_modules/playwright-core").exists(),
        "playwright-core is not installed: run scripts/setup.sh (scripts/test.sh does)"
    );
    let out = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg(dir.join("drive.mjs"))
            .args(&args)
            .stdin(Stdio::null())
            .output()
            .expect("run node")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|e| {
        panic!(
            "browser driver gave no JSON ({e}): {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// Mean and standard deviation of the luma of a PNG file (RGB or RGBA, 8-bit).
pub fn png_luma_stats(path: &std::path::Path) -> (f64, f64) {
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    let channels = info.color_type.samples();
    assert!(
        channels >= 3,
        "unexpected PNG colour type {:?}",
        info.color_type
    );
    let px: Vec<f64> = buf[..info.buffer_size()]
        .chunks(channels)
        .map(|p| (f64::from(p[0]) + f64::from(p[1]) + f64::from(p[2])) / 3.0)
        .collect();
    let mean = px.iter().sum::<f64>() / px.len() as f64;
    let var = px.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / px.len() as f64;
    (mean, var.sqrt())
}

/// RSS of a process in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

/// A headless Chromium page driven command by command (`tests/browser/remote.mjs`,
/// playwright-core with Debian's Chromium). Killed on drop.
pub struct Page {
    child: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    lines: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
}

impl Page {
    pub async fn open() -> Page {
        let dir = repo_root().join("tests/browser");
        assert!(
            dir.join("node_modules/playwright-core").exists(),
            "playwright-core is not installed: run scripts/setup.sh (scripts/test.sh does)"
        );
        let mut child = tokio::process::Command::new("node")
            .arg(dir.join("remote.mjs"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("run node");
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        use tokio::io::AsyncBufReadExt;
        Page {
            child,
            stdin,
            lines: tokio::io::BufReader::new(stdout).lines(),
        }
    }

    /// Sends one command; `Err` with the driver's message (and the page's last
    /// console lines) when it failed.
    pub async fn cmd(&mut self, c: serde_json::Value) -> Result<serde_json::Value, String> {
        use tokio::io::AsyncWriteExt;
        let mut line = c.to_string();
        line.push('\n');
        self.stdin.write_all(line.as_bytes()).await.unwrap();
        self.stdin.flush().await.unwrap();
        let answer = tokio::time::timeout(Duration::from_secs(120), self.lines.next_line())
            .await
            .expect("browser driver answered within 120 s")
            .unwrap()
            .expect("browser driver exited");
        let v: serde_json::Value = serde_json::from_str(&answer)
            .unwrap_or_else(|e| panic!("browser driver said {answer:?}: {e}"));
        if v["ok"] == true {
            Ok(v["value"].clone())
        } else {
            Err(format!("{}\npage log: {}", v["error"], v["logs"]))
        }
    }

    pub async fn goto(&mut self, url: &str) {
        self.cmd(serde_json::json!({"op": "goto", "url": url}))
            .await
            .unwrap_or_else(|e| panic!("goto {url}: {e}"));
    }

    /// Evaluates a JavaScript expression in the page (its value as JSON).
    pub async fn eval(&mut self, js: &str) -> serde_json::Value {
        self.cmd(serde_json::json!({"op": "eval", "js": js}))
            .await
            .unwrap_or_else(|e| panic!("eval {js}: {e}"))
    }

    /// Waits until a JavaScript expression is truthy; its value.
    pub async fn wait(&mut self, what: &str, js: &str, timeout: Duration) -> serde_json::Value {
        match self
            .cmd(serde_json::json!({"op": "wait", "js": js, "ms": timeout.as_millis() as u64}))
            .await
        {
            Ok(v) => v,
            Err(e) => {
                let state = self
                    .cmd(serde_json::json!({"op": "eval", "js": "JSON.stringify({tiles: Object.fromEntries(Object.entries(window.dash?.tiles || {}).map(([k, t]) => [k, {state: t.player?.state, protocol: t.player?.protocol, error: t.player?.error, errors: t.player?.errors, frames: t.player?.frames, boxes: t.overlay?.boxes}])), sse: window.dash?.sse})"}))
                    .await;
                panic!("waiting for {what}: {e}\ndashboard state: {state:?}")
            }
        }
    }

    pub async fn click(&mut self, selector: &str) {
        self.cmd(serde_json::json!({"op": "click", "selector": selector}))
            .await
            .unwrap_or_else(|e| panic!("click {selector}: {e}"));
    }

    pub async fn fill(&mut self, selector: &str, value: &str) {
        self.cmd(serde_json::json!({"op": "fill", "selector": selector, "value": value}))
            .await
            .unwrap_or_else(|e| panic!("fill {selector}: {e}"));
    }

    pub async fn select(&mut self, selector: &str, value: &str) {
        self.cmd(serde_json::json!({"op": "select", "selector": selector, "value": value}))
            .await
            .unwrap_or_else(|e| panic!("select {selector}: {e}"));
    }

    pub async fn press(&mut self, key: &str) {
        self.cmd(serde_json::json!({"op": "press", "key": key}))
            .await
            .unwrap_or_else(|e| panic!("press {key}: {e}"));
    }

    /// Screenshot of the page, or of the element `selector` when given.
    pub async fn screenshot(&mut self, path: &std::path::Path, selector: Option<&str>) {
        let mut c = serde_json::json!({"op": "screenshot", "path": path});
        if let Some(s) = selector {
            c["selector"] = s.into();
        }
        self.cmd(c)
            .await
            .unwrap_or_else(|e| panic!("screenshot: {e}"));
    }

    pub async fn close(mut self) {
        let _ = self.cmd(serde_json::json!({"op": "close"})).await;
        let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
    }
}
