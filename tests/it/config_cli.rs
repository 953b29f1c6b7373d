//! The `vigil` binary: malformed config files exit non-zero naming file, line and
//! key; credentials never reach the logs; `vigil demo` serves its cameras.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::*;

/// Runs `vigil <cmd> --config <file with text>`; returns (exit code, stderr).
fn run_config(cmd: &str, name: &str, text: &str) -> (i32, String) {
    let dir = scratch_dir(&format!("cfg-{cmd}-{}", name.replace('.', "_")));
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    let out = Command::new(vigil_bin())
        .args([cmd, "--config"])
        .arg(&path)
        .env("VIGIL_LOG", "info")
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// One bad config: `vigil run` must exit 2 with `<path>:<line>: <key>: <reason>`.
fn check(text: &str, line: usize, key: &str, reason: &str) {
    let (code, stderr) = run_config("run", "site.toml", text);
    assert_eq!(code, 2, "exit code for {text:?}: {stderr}");
    let expect = format!("site.toml:{line}: {key}: ");
    assert!(
        stderr.contains(&expect),
        "expected {expect:?} in {stderr:?}"
    );
    assert!(stderr.contains(reason), "expected {reason:?} in {stderr:?}");
    assert!(!stderr.contains("hunter2"), "credentials leaked: {stderr}");
}

#[test]
fn malformed_configs_name_file_line_and_key() {
    let cam = "[[camera]]\nid = \"lobby\"\nurl = \"rtsp://admin:hunter2@127.0.0.1:8554/lobby\"\n";
    // Unknown key.
    check(
        &format!("{cam}colour = \"red\"\n"),
        4,
        "camera.colour",
        "unknown field `colour`",
    );
    check(
        "[server]\nlisten = \"127.0.0.1:8080\"\ndata_dri = \"x\"\n",
        3,
        "server.data_dri",
        "unknown field",
    );
    // Bad id.
    check(
        "[[camera]]\nid = \"Lobby Cam\"\nurl = \"rtsp://h/x\"\n",
        2,
        "camera.id",
        "not a valid id",
    );
    // Duplicate id.
    check(
        &format!("{cam}\n{cam}"),
        6,
        "camera.id",
        "duplicate id \"lobby\" (first defined on line 2)",
    );
    // Bad URL: scheme, syntax, port; never echoing the password.
    check(
        "[[camera]]\nid = \"a\"\nurl = \"http://admin:hunter2@cam/x\"\n",
        3,
        "camera.url",
        "only rtsp:// is supported",
    );
    check(
        "[[camera]]\nid = \"a\"\nurl = \"rtsp://admin:hunter2@cam:65536/x\"\n",
        3,
        "camera.url",
        "invalid port",
    );
    check(
        "[[camera]]\nid = \"a\"\nurl = \"not a url\"\n",
        3,
        "camera.url",
        "not a valid URL",
    );
    // Bad listen port.
    check(
        "[server]\nlisten = \"127.0.0.1:99999\"\n",
        2,
        "server.listen",
        "not an address:port",
    );
    // Bad enum value, wrong type, TOML syntax.
    check(
        "[[camera]]\nid = \"a\"\nurl = \"rtsp://h/x\"\ntransport = \"sctp\"\n",
        4,
        "camera.transport",
        "sctp",
    );
    check(
        "[hls]\npart_target_ms = \"fast\"\n",
        2,
        "hls.part_target_ms",
        "invalid type",
    );
    check("[server]\nlisten = \n", 2, "server.listen", "");
}

#[test]
fn check_config_accepts_good_and_missing_file_is_clear() {
    let (code, stderr) = run_config(
        "check-config",
        "good.toml",
        "[server]\nlisten = \"127.0.0.1:0\"\n[[camera]]\nid = \"a\"\nurl = \"rtsp://u:hunter2@h/x\"\n",
    );
    assert_eq!(code, 0, "{stderr}");
    let out = Command::new(vigil_bin())
        .args(["run", "--config", "/nonexistent/vigil.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("/nonexistent/vigil.toml") && stderr.contains("cannot read"),
        "{stderr}"
    );
}

/// The real binary against a GStreamer server that rejects the password: the
/// failure is visible in the API, and neither logs nor API carry the password.
#[test]
fn wrong_password_never_reaches_logs() {
    let gst = GstServer::start(
        &[("cam", "h264")],
        &["--user", "op", "--password", "right-pw"],
    );
    let port = free_port();
    let dir = scratch_dir("wrongpw");
    let cfg = dir.join("vigil.toml");
    std::fs::write(
        &cfg,
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\ndata_dir = \"{}\"\n\
             [[camera]]\nid = \"door\"\nurl = \"rtsp://op:hunter2-wrong@127.0.0.1:{}/cam\"\n",
            dir.join("data").display(),
            gst.port
        ),
    )
    .unwrap();
    let mut child = Command::new(vigil_bin())
        .args(["run", "--config"])
        .arg(&cfg)
        .env("VIGIL_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let log = std::thread::spawn(move || {
        BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<_>>()
            .join("\n")
    });
    let rt = tokio::runtime::Runtime::new().unwrap();
    let api = rt.block_on(async {
        let url = format!("http://127.0.0.1:{port}/api/cameras/door");
        wait_for("the camera to fail", Duration::from_secs(20), || async {
            let client_ok = tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok();
            if !client_ok {
                return None;
            }
            let c = get_json(&url).await;
            (c["state"] == "failed").then_some(c.to_string())
        })
        .await
    });
    // SIGTERM: a clean shutdown.
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait().unwrap();
    let log = log.join().unwrap();
    assert!(status.success(), "exit after SIGTERM: {status:?}\n{log}");
    assert!(api.contains("unauthorized"), "{api}");
    assert!(log.contains("camera session failed"), "{log}");
    assert!(!api.contains("hunter2"), "password in API: {api}");
    assert!(!log.contains("hunter2"), "password in logs: {log}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `vigil demo` (the README's first command runs it) starts simulated cameras that
/// stream, prints the URL to open, and exits cleanly after `--duration-s`.
#[test]
fn demo_runs_and_prints_its_url() {
    let port = free_port();
    let data = scratch_dir("demo");
    let mut child = Command::new(vigil_bin())
        .args([
            "demo",
            "--data-dir",
            data.to_str().unwrap(),
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--cameras",
            "3",
            "--duration-s",
            "8",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut text = String::new();
    while !text.contains("open http://") {
        let mut line = String::new();
        if out.read_line(&mut line).unwrap() == 0 {
            break;
        }
        text.push_str(&line);
    }
    assert!(
        text.contains(&format!("open http://127.0.0.1:{port}/")),
        "{text}"
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        wait_for("demo cameras to stream", Duration::from_secs(6), || async {
            let cams = get_json(&format!("http://127.0.0.1:{port}/api/cameras")).await;
            let cams = cams.as_array().unwrap().clone();
            let streaming = cams.iter().filter(|c| c["state"] == "streaming").count();
            // The last demo camera is on-demand: idle until someone watches.
            (cams.len() == 3 && streaming == 2).then_some(())
        })
        .await;
        let (status, _, page) = get(&format!("http://127.0.0.1:{port}/")).await;
        assert_eq!(status, 200);
        assert!(String::from_utf8_lossy(&page).contains("hls"));
    });
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    // Its events went where it was told.
    assert!(data.join("events.db").exists());
    let _ = std::fs::remove_dir_all(&data);
}
