//! The dashboard (`GET /`) in headless Chromium (`tests/browser/remote.mjs`):
//! the live grid over WHEP with keyboard navigation and streams stopped out of
//! view, enabling a plugin through its schema form (and a refused field), detection
//! boxes and zones over the live tile, an outage shown and recovered from without
//! a reload. Screenshots go to `artifacts/`.

use std::time::Duration;

use crate::detect::{models_dir, people_clip};
use crate::plugins::wasm;
use crate::support::*;

/// Frames each tile has shown, by camera.
async fn frames(page: &mut Page) -> serde_json::Value {
    page.eval("Object.fromEntries(Object.entries(dash.tiles).map(([k, t]) => [k, t.player ? t.player.frames : -1]))")
        .await
}

/// Luma standard deviation of what a tile's media element shows (a canvas copy).
const TILE_STD: &str = "(id) => { const el = dash.tiles[id].player.el; const w = el.videoWidth || el.naturalWidth, h = el.videoHeight || el.naturalHeight; \
    const c = document.createElement('canvas'); c.width = 160; c.height = 90; const x = c.getContext('2d'); x.drawImage(el, 0, 0, 160, 90); \
    const d = x.getImageData(0, 0, 160, 90).data; let s = 0, q = 0, n = 0; for (let i = 0; i < d.length; i += 4) { const y = (d[i] + d[i+1] + d[i+2]) / 3; s += y; q += y * y; n++; } \
    const m = s / n; return { w, h, std: Math.sqrt(Math.max(0, q / n - m * m)) }; }";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grid_of_four_cameras_plays_navigates_and_stops_out_of_view() {
    let gst = GstServer::start(&[("g1", "h264"), ("g2", "h264")], &[]);
    let sim = start_camsim(2, false).await;
    let host = start_host(&format!(
        "[[camera]]\nid = \"gst-1\"\nurl = \"{}\"\n[[camera]]\nid = \"gst-2\"\nurl = \"{}\"\n\
         [[camera]]\nid = \"sim-1\"\nurl = \"{}\"\n[[camera]]\nid = \"sim-2\"\nurl = \"{}\"\n",
        gst.url("g1"),
        gst.url("g2"),
        sim.url(0),
        sim.url(1)
    ))
    .await;
    for id in ["gst-1", "gst-2", "sim-1", "sim-2"] {
        wait_state(&host, id, "streaming", Duration::from_secs(20)).await;
    }
    let mut page = Page::open().await;
    page.goto(&format!("http://{}/", host.addr)).await;
    page.wait(
        "four tiles playing",
        "Object.values(dash.tiles).length === 4 && Object.values(dash.tiles).every(t => t.player && t.player.state === 'playing')",
        Duration::from_secs(30),
    )
    .await;
    // All four advance, over WebRTC (the default), with real pictures.
    let before = frames(&mut page).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = frames(&mut page).await;
    for id in ["gst-1", "gst-2", "sim-1", "sim-2"] {
        let (a, b) = (before[id].as_i64().unwrap(), after[id].as_i64().unwrap());
        assert!(b >= a + 20, "{id} did not advance: {a} → {b} frames");
        let proto = page
            .eval(&format!("dash.tiles['{id}'].player.protocol"))
            .await;
        assert_eq!(proto, "whep", "{id}");
        let pic = page.eval(&format!("({TILE_STD})('{id}')")).await;
        assert!(
            pic["std"].as_f64().unwrap() > 10.0,
            "{id} looks blank: {pic}"
        );
    }
    let c = camera(&host, "sim-1").await;
    assert_eq!(c["outputs"]["webrtc"]["viewers"], 1, "{c}");
    let shot = artifacts_dir().join("dashboard-grid.png");
    page.screenshot(&shot, None).await;
    let (mean, std) = png_luma_stats(&shot);
    assert!(
        std > 20.0,
        "grid screenshot looks blank: mean {mean:.1}, std {std:.1}"
    );
    eprintln!(
        "grid: frames in 3 s {before} → {after}; screenshot luma mean {mean:.1} std {std:.1}"
    );

    // Keyboard: arrows move between tiles, Enter opens the large view, Escape closes.
    page.eval("document.querySelector('#grid .tile').focus()")
        .await;
    page.press("ArrowRight").await;
    let focused = page.eval("document.activeElement.dataset.camera").await;
    assert_eq!(focused, "gst-2");
    page.press("Enter").await;
    page.wait(
        "the focus view playing",
        "!document.querySelector('#focus').hidden && dash.focus && dash.focus.player.state === 'playing'",
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(page.eval("dash.focus.id").await, "gst-2");
    // Behind the large view, the grid's streams stop.
    assert_eq!(
        page.eval("Object.values(dash.tiles).filter(t => t.player).length")
            .await,
        0
    );
    page.press("Escape").await;
    page.wait(
        "the grid playing again",
        "document.querySelector('#focus').hidden && Object.values(dash.tiles).every(t => t.player && t.player.state === 'playing')",
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(
        page.eval("document.activeElement.dataset.camera").await,
        "gst-2"
    );

    // The filter: only matching tiles exist (the others' streams are gone).
    page.fill("#filter", "sim").await;
    page.wait(
        "two tiles",
        "Object.keys(dash.tiles).sort().join() === 'sim-1,sim-2'",
        Duration::from_secs(5),
    )
    .await;
    page.fill("#filter", "").await;
    page.wait(
        "four tiles playing",
        "Object.values(dash.tiles).length === 4 && Object.values(dash.tiles).every(t => t.player && t.player.state === 'playing')",
        Duration::from_secs(30),
    )
    .await;
    // Tiles scrolled out of view stop their streams, and the host sees the
    // viewers leave.
    page.eval("document.querySelector('#grid').style.marginTop = '6000px'")
        .await;
    page.wait(
        "no stream out of view",
        "Object.values(dash.tiles).every(t => !t.player)",
        Duration::from_secs(5),
    )
    .await;
    wait_for("WebRTC viewers gone", Duration::from_secs(10), || async {
        let c = camera(&host, "sim-1").await;
        (c["outputs"]["webrtc"]["viewers"] == 0).then_some(())
    })
    .await;
    page.eval("document.querySelector('#grid').style.marginTop = ''")
        .await;
    page.wait(
        "streams back in view",
        "Object.values(dash.tiles).every(t => t.player && t.player.state === 'playing')",
        Duration::from_secs(30),
    )
    .await;
    // No script error on the way.
    let errors = page.eval("dash.errors").await;
    assert_eq!(errors, serde_json::json!([]));
    page.close().await;
    host.stop().await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enabling_motion_through_the_form_shows_events_and_field_errors() {
    let sim = start_camsim(1, false).await;
    let host = start_host(&format!(
        "[[plugin]]\nid = \"motion\"\npath = \"{}\"\n[[camera]]\nid = \"yard\"\nurl = \"{}\"\n",
        wasm("vigil_plugin_motion"),
        sim.url(0)
    ))
    .await;
    wait_state(&host, "yard", "streaming", Duration::from_secs(20)).await;
    let mut page = Page::open().await;
    page.goto(&format!("http://{}/#plugins", host.addr)).await;
    page.wait(
        "the motion plugin listed",
        "document.querySelector('.card[data-plugin=motion]') && document.querySelector('#pl-enable option[value=motion]') && document.querySelector('#pl-camera').value === 'yard'",
        Duration::from_secs(10),
    )
    .await;
    let card = page
        .eval("document.querySelector('.card[data-plugin=motion]').textContent")
        .await;
    assert!(
        card.as_str().unwrap().contains("analytics plugin"),
        "{card}"
    );
    page.select("#pl-enable", "motion").await;
    page.click("#pl-enable-btn").await;
    page.wait(
        "the form",
        "document.querySelector('#plugin-form #f-threshold')",
        Duration::from_secs(5),
    )
    .await;
    // Defaults from the schema are filled in.
    assert_eq!(
        page.eval("document.querySelector('#f-threshold').value")
            .await,
        "25"
    );
    // Out of range: refused by the schema, shown next to the field, nothing enabled.
    page.fill("#f-threshold", "999").await;
    page.click("#plugin-form button[type=submit]").await;
    let err = page
        .wait(
            "the field error",
            "document.querySelector('#plugin-form').dataset.result === 'error' && document.querySelector('.field[data-field=threshold] .field-error').textContent",
            Duration::from_secs(10),
        )
        .await;
    let err = err.as_str().unwrap().to_string();
    assert!(err.contains("threshold") && err.contains("999"), "{err}");
    assert!(
        page.eval(
            "document.querySelector('.field[data-field=threshold]').classList.contains('invalid')"
        )
        .await
            == true
    );
    // Not a number: caught in the form before anything is sent.
    page.fill("#f-threshold", "lots").await;
    page.click("#plugin-form button[type=submit]").await;
    let err2 = page
        .wait(
            "the second field error",
            "(document.querySelector('.field[data-field=threshold] .field-error').textContent.includes('lots')) && document.querySelector('.field[data-field=threshold] .field-error').textContent",
            Duration::from_secs(5),
        )
        .await;
    assert!(err2.as_str().unwrap().contains("not a number"), "{err2}");
    let (st, _, _) = get(&format!(
        "http://{}/api/cameras/yard/plugins/motion",
        host.addr
    ))
    .await;
    assert_eq!(st, 404, "a refused form must not enable the plugin");
    // A good configuration: enabled, and motion events reach the live feed.
    page.fill("#f-threshold", "20").await;
    page.fill("#f-min_area", "0.001").await;
    page.click("#plugin-form button[type=submit]").await;
    page.wait(
        "enabled",
        "document.querySelector('#plugin-form').dataset.result === 'ok'",
        Duration::from_secs(10),
    )
    .await;
    let t0 = std::time::Instant::now();
    page.wait(
        "a motion event in the live feed",
        "document.querySelector('#feed li[data-kind=motion][data-camera=yard]')",
        Duration::from_secs(10),
    )
    .await;
    eprintln!(
        "motion: first event in the feed {:?} after enabling",
        t0.elapsed()
    );
    page.wait(
        "the instance running in the table",
        "document.querySelector('#instance-rows tr[data-plugin=motion] .state-running')",
        Duration::from_secs(5),
    )
    .await;
    let s = crate::plugins::plugin_status(&host, "yard", "motion").await;
    assert_eq!(s["config"]["threshold"], 20, "{s}");
    // Clicking the event shows it.
    page.click("#feed li[data-kind=motion]").await;
    page.wait(
        "the event shown",
        "!document.querySelector('#event-detail').hidden && document.querySelector('#ev-title').textContent.includes('motion')",
        Duration::from_secs(5),
    )
    .await;
    page.press("Escape").await;
    // Reconfigure from the table: the form comes back filled with the running
    // configuration; the change reaches the instance.
    page.click("#instance-rows tr[data-plugin=motion] button:text('Reconfigure')")
        .await;
    page.wait(
        "the form with the running configuration",
        "document.querySelector('#plugin-form #f-threshold') && document.querySelector('#f-threshold').value === '20' && document.querySelector('#f-min_area').value === '0.001'",
        Duration::from_secs(5),
    )
    .await;
    page.fill("#f-threshold", "30").await;
    page.click("#plugin-form button[type=submit]").await;
    page.wait(
        "applied",
        "document.querySelector('#plugin-form').dataset.result === 'ok'",
        Duration::from_secs(10),
    )
    .await;
    let s = crate::plugins::plugin_status(&host, "yard", "motion").await;
    assert_eq!(s["config"]["threshold"], 30, "{s}");
    // Disable: the instance goes away.
    page.click("#instance-rows tr[data-plugin=motion] button:text('Disable')")
        .await;
    page.wait(
        "no instance left in the table",
        "!document.querySelector('#instance-rows tr[data-plugin=motion]')",
        Duration::from_secs(10),
    )
    .await;
    let (st, _, _) = get(&format!(
        "http://{}/api/cameras/yard/plugins/motion",
        host.addr
    ))
    .await;
    assert_eq!(st, 404);
    page.close().await;
    host.stop().await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detection_boxes_and_zones_are_drawn_on_the_live_tile() {
    let dir = scratch_dir("dashboard-detect");
    let people = people_clip(&dir);
    let gst = GstServer::start(&[("people", &format!("file:{}", people.display()))], &[]);
    let host = start_host_in(
        &dir.join("data"),
        &format!(
            "[inference]\nmodels_dir = \"{}\"\n\
             [[plugin]]\nid = \"detect\"\npath = \"{}\"\ngrants = [\"inference\"]\n\
             [[plugin]]\nid = \"zones\"\npath = \"{}\"\n\
             [[camera]]\nid = \"people\"\nurl = \"{}\"\n\
             [[camera.plugin]]\nid = \"detect\"\nconfig = {{ fps = 2, motion_gate = false }}\n\
             [[camera.plugin]]\nid = \"zones\"\nconfig = {{ zones = [{{ name = \"walkway\", polygon = [[0.1, 0.5], [0.9, 0.5], [0.9, 0.95], [0.1, 0.95]] }}], lines = [{{ name = \"gate\", a = [0.5, 0.3], b = [0.5, 0.9] }}] }}\n",
            models_dir().display(),
            wasm("vigil_plugin_detect"),
            wasm("vigil_plugin_zones"),
            gst.url("people"),
        ),
    )
    .await;
    wait_state(&host, "people", "streaming", Duration::from_secs(20)).await;
    let mut page = Page::open().await;
    page.goto(&format!("http://{}/", host.addr)).await;
    page.wait(
        "the tile playing",
        "dash.tiles.people && dash.tiles.people.player && dash.tiles.people.player.state === 'playing'",
        Duration::from_secs(30),
    )
    .await;
    let drawn = page
        .wait(
            "boxes over the live tile",
            "(() => { const o = dash.tiles.people.overlay; return o.boxes >= 2 && o.zones >= 2 && { boxes: o.boxes, zones: o.zones, age: o.age }; })()",
            Duration::from_secs(30),
        )
        .await;
    eprintln!("overlay: {drawn}");
    // In step with the picture: the boxes drawn belong to a frame well under
    // the fade-out (3 s) before the one on screen; over WebRTC the event can
    // only exist once the model ran (detect at 2 fps, about 0.1-0.3 s per run).
    assert!(drawn["age"].as_f64().unwrap() < 1500.0, "{drawn}");
    // The overlay really has ink in the person boxes' colour (box outlines and
    // label backgrounds; zones are drawn in another colour).
    let ink = page
        .eval("(() => { const c = dash.tiles.people.overlay.canvas; const col = colourOf('person'); const [r, g, b] = [1, 3, 5].map(i => parseInt(col.slice(i, i + 2), 16)); \
               const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; let n = 0; \
               for (let i = 0; i < d.length; i += 4) if (d[i + 3] > 200 && Math.abs(d[i] - r) < 10 && Math.abs(d[i + 1] - g) < 10 && Math.abs(d[i + 2] - b) < 10) n++; return n; })()")
        .await;
    assert!(
        ink.as_u64().unwrap() > 500,
        "no person boxes on the overlay: {ink}"
    );
    let shot = artifacts_dir().join("dashboard-detections.png");
    page.screenshot(&shot, Some(".tile[data-camera=people]"))
        .await;
    let (_, std) = png_luma_stats(&shot);
    assert!(std > 20.0, "tile screenshot looks blank: std {std:.1}");

    // The timeline finds the detections; one opens with its snapshot and boxes.
    page.click("#tabs button[data-view=events]").await;
    page.fill("#event-search input[name=kind]", "detection")
        .await;
    page.click("#event-search button[type=submit]").await;
    page.wait(
        "detection rows",
        "document.querySelectorAll('#event-rows tr[data-event]').length >= 1 && [...document.querySelectorAll('#event-rows tr td:nth-child(3)')].every(td => td.textContent === 'detection')",
        Duration::from_secs(10),
    )
    .await;
    page.click("#event-rows tr[data-event]").await;
    let img = page
        .wait(
            "the snapshot",
            "(() => { const i = document.querySelector('#ev-img'); return !document.querySelector('#event-detail').hidden && i.complete && i.naturalWidth > 0 && [i.naturalWidth, i.naturalHeight]; })()",
            Duration::from_secs(10),
        )
        .await;
    // Snapshots keep the camera's shape (768×576, 4:3).
    let (w, h) = (img[0].as_f64().unwrap(), img[1].as_f64().unwrap());
    assert!((w / h - 768.0 / 576.0).abs() < 0.01, "{img}");
    let ev_boxes = page.eval("(() => { const c = document.querySelector('#ev-boxes'); const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++; return n; })()").await;
    assert!(
        ev_boxes.as_u64().unwrap() > 200,
        "no boxes drawn on the snapshot: {ev_boxes}"
    );
    page.close().await;
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_camera_outage_shows_its_reason_and_recovers_without_reload() {
    let mut gst = GstServer::start(&[("a", "h264")], &[]);
    let sim = start_camsim(1, false).await;
    let host = start_host(&format!(
        "[[camera]]\nid = \"flaky\"\nurl = \"{}\"\n[[camera]]\nid = \"steady\"\nurl = \"{}\"\n",
        gst.url("a"),
        sim.url(0)
    ))
    .await;
    wait_state(&host, "flaky", "streaming", Duration::from_secs(20)).await;
    wait_state(&host, "steady", "streaming", Duration::from_secs(20)).await;
    let mut page = Page::open().await;
    page.goto(&format!("http://{}/", host.addr)).await;
    page.wait(
        "both playing",
        "Object.values(dash.tiles).length === 2 && Object.values(dash.tiles).every(t => t.player && t.player.state === 'playing')",
        Duration::from_secs(30),
    )
    .await;
    page.eval("window.__sameLoad = 'yes'").await;

    gst.stop();
    let reason = page
        .wait(
            "the reason in the tile",
            "(() => { const r = document.querySelector('.tile[data-camera=flaky] .reason'); return !r.hidden && r.textContent; })()",
            Duration::from_secs(15),
        )
        .await;
    let reason = reason.as_str().unwrap().to_string();
    assert!(
        reason.starts_with("retrying") || reason.starts_with("failed"),
        "{reason}"
    );
    assert!(
        reason.contains("flaky") && reason.contains(&gst.url("a")),
        "{reason}"
    );
    let shot = artifacts_dir().join("dashboard-outage.png");
    page.screenshot(&shot, None).await;
    // The other camera keeps playing.
    let f0 = page
        .eval("dash.tiles.steady.player.frames")
        .await
        .as_i64()
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let f1 = page
        .eval("dash.tiles.steady.player.frames")
        .await
        .as_i64()
        .unwrap();
    assert!(
        f1 > f0 + 10,
        "steady stalled during the outage: {f0} → {f1}"
    );

    gst.restart();
    wait_state(&host, "flaky", "streaming", Duration::from_secs(15)).await;
    let back = std::time::Instant::now();
    page.wait(
        "flaky playing again",
        "(() => { const t = dash.tiles.flaky; const r = t.el.querySelector('.reason'); return t.player && t.player.state === 'playing' && r.hidden && performance.now() - t.player.lastProgress < 500; })()",
        Duration::from_secs(30),
    )
    .await;
    // The tile must keep moving, not just show a picture: a 2-s window with
    // more than 10 new frames (the camera sends 15 fps), within 20 s. The
    // WebRTC session that continues across the camera's restart now and then
    // stops decoding after the first pictures (an open bug: Chromium reports
    // every packet received and none lost, but no frames decoded); the
    // dashboard then starts a new session by itself after 5 s without
    // progress, still without a reload, and that is what this allows.
    const FRAMES: &str = "dash.tiles.flaky.player.frames";
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut windows = Vec::new();
    loop {
        let f0 = page.eval(FRAMES).await.as_i64().unwrap();
        tokio::time::sleep(Duration::from_secs(2)).await;
        let f1 = page.eval(FRAMES).await.as_i64().unwrap();
        windows.push((f0, f1));
        if f1 > f0 + 10 {
            break;
        }
        if std::time::Instant::now() > deadline {
            let dbg = page.eval("(async () => { const p = dash.tiles.flaky.player; const out = {errors: p.errors, protocol: p.protocol, run: p.run, state: p.state}; if (p.pc) { const s = await p.pc.getStats(); s.forEach(x => { if (x.type === 'inbound-rtp' && x.kind === 'video') out.rtp = {packets: x.packetsReceived, decoded: x.framesDecoded, dropped: x.framesDropped, keyframes: x.keyFramesDecoded, pli: x.pliCount, nack: x.nackCount, lost: x.packetsLost, jb: x.jitterBufferDelay, jbe: x.jitterBufferEmittedCount}; }); } return out; })()").await;
            panic!(
                "flaky does not advance after recovery: frames in 2-s windows {windows:?}; {dbg} camera {}",
                camera(&host, "flaky").await
            );
        }
    }
    assert_eq!(
        page.eval("window.__sameLoad").await,
        "yes",
        "the page was reloaded"
    );
    eprintln!(
        "outage: tile playing again {:?} after the camera streamed; frames in 2-s windows {windows:?}, player run {}",
        back.elapsed(),
        page.eval("dash.tiles.flaky.player.run").await
    );
    page.close().await;
    host.stop().await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_and_twenty_cameras_are_paged_and_filtered() {
    let sim = start_camsim(4, false).await;
    let mut toml = String::new();
    for i in 1..=120 {
        toml.push_str(&format!(
            "[[camera]]\nid = \"cam-{i:03}\"\nurl = \"{}\"\n",
            sim.url((i - 1) % 4)
        ));
    }
    let host = start_host(&toml).await;
    let mut page = Page::open().await;
    page.goto(&format!("http://{}/?per_page=9", host.addr))
        .await;
    // Tiles in view play; those below the fold (9 tiles in two columns) have no
    // stream until scrolled to.
    let all_playing = "Object.values(dash.tiles).length === 9 && Object.values(dash.tiles).filter(t => t.visible).length >= 4 && Object.values(dash.tiles).every(t => t.visible ? (t.player && t.player.state === 'playing') : !t.player)";
    page.wait("page 1 playing", all_playing, Duration::from_secs(60))
        .await;
    assert_eq!(
        page.eval("document.querySelector('#page-label').textContent")
            .await,
        "page 1 of 14 · 120 cameras"
    );
    assert_eq!(
        page.eval("Object.keys(dash.tiles).sort().join()").await,
        "cam-001,cam-002,cam-003,cam-004,cam-005,cam-006,cam-007,cam-008,cam-009"
    );
    // Next page with the keyboard: the first page's streams end, the next play.
    page.eval("document.querySelector('#grid .tile').focus()")
        .await;
    page.press("PageDown").await;
    page.wait(
        "page 2 playing",
        &format!("Object.keys(dash.tiles).sort()[0] === 'cam-010' && {all_playing}"),
        Duration::from_secs(60),
    )
    .await;
    let shown = page
        .eval("Object.values(dash.tiles).filter(t => t.visible).map(t => t.id).sort()")
        .await;
    let shown: Vec<String> = serde_json::from_value(shown).unwrap();
    let viewers = wait_for("only page 2 watched", Duration::from_secs(15), || async {
        let cams = get_json(&format!("http://{}/api/cameras", host.addr)).await;
        let watched: Vec<String> = cams
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["outputs"]["webrtc"]["viewers"].as_u64().unwrap_or(0) > 0)
            .map(|c| c["id"].as_str().unwrap().to_string())
            .collect();
        (watched == shown).then_some(watched)
    })
    .await;
    assert_eq!(
        viewers.first().map(String::as_str),
        Some("cam-010"),
        "{viewers:?}"
    );
    // Scrolled into view, the rest of the page plays too.
    page.eval("document.querySelector('.tile[data-camera=cam-018]').scrollIntoView()")
        .await;
    page.wait(
        "the last tile of the page playing",
        "dash.tiles['cam-018'].player && dash.tiles['cam-018'].player.state === 'playing'",
        Duration::from_secs(30),
    )
    .await;
    // The filter narrows the set; pages follow it.
    page.fill("#filter", "cam-11").await;
    page.wait(
        "the filtered page",
        "document.querySelector('#page-label').textContent === 'page 1 of 2 · 10 cameras' && Object.keys(dash.tiles).sort()[0] === 'cam-110'",
        Duration::from_secs(5),
    )
    .await;
    page.fill("#filter", "").await;
    page.select("#state-filter", "problems").await;
    page.wait(
        "nothing with problems",
        "Object.keys(dash.tiles).length === 0 && !document.querySelector('#grid-empty').hidden",
        Duration::from_secs(5),
    )
    .await;
    page.close().await;
    host.stop().await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tiles_fall_back_from_webrtc_to_ll_hls_and_play_mjpeg_on_request() {
    let sim = start_camsim(2, false).await;
    // One WebRTC session on the host: the second tile is refused (503) and falls back.
    let host = start_host(&format!(
        "[webrtc]\nmax_sessions = 1\n[[camera]]\nid = \"one\"\nurl = \"{}\"\n[[camera]]\nid = \"two\"\nurl = \"{}\"\n",
        sim.url(0),
        sim.url(1)
    ))
    .await;
    wait_state(&host, "one", "streaming", Duration::from_secs(20)).await;
    wait_state(&host, "two", "streaming", Duration::from_secs(20)).await;
    let mut page = Page::open().await;
    page.goto(&format!("http://{}/", host.addr)).await;
    let protocols = page
        .wait(
            "both tiles playing, one over LL-HLS",
            "Object.values(dash.tiles).length === 2 && Object.values(dash.tiles).every(t => t.player && t.player.state === 'playing') && Object.values(dash.tiles).map(t => t.player.protocol).sort().join()",
            Duration::from_secs(45),
        )
        .await;
    assert_eq!(protocols, "hls,whep");
    let errors = page
        .eval("Object.values(dash.tiles).find(t => t.player.protocol === 'hls').player.errors")
        .await;
    assert!(
        errors[0].as_str().unwrap().starts_with("whep: WHEP 503"),
        "{errors}"
    );
    // The LL-HLS tile advances.
    let hls_time =
        "Object.values(dash.tiles).find(t => t.player.protocol === 'hls').player.currentTime()";
    let t0 = page.eval(hls_time).await.as_f64().unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let t1 = page.eval(hls_time).await.as_f64().unwrap();
    assert!(t1 > t0 + 1.0, "LL-HLS tile stalled: {t0} → {t1}");
    // MJPEG when asked for.
    page.select("#protocol", "mjpeg").await;
    page.wait(
        "both tiles on MJPEG",
        "Object.values(dash.tiles).every(t => t.player && t.player.state === 'playing' && t.player.protocol === 'mjpeg' && t.player.el.naturalWidth === 640)",
        Duration::from_secs(20),
    )
    .await;
    wait_for("MJPEG viewers", Duration::from_secs(10), || async {
        let c = camera(&host, "two").await;
        (c["outputs"]["mjpeg"]["viewers"] == 1 && c["outputs"]["webrtc"]["viewers"] == 0)
            .then_some(())
    })
    .await;
    // And it stays on the one MJPEG session (Chromium reports only the first
    // picture of an MJPEG stream: that must not look like a stall).
    tokio::time::sleep(Duration::from_secs(8)).await;
    let c = camera(&host, "two").await;
    assert_eq!(c["outputs"]["mjpeg"]["sessions_opened"], 1, "{c}");
    assert_eq!(c["outputs"]["mjpeg"]["viewers"], 1, "{c}");
    page.close().await;
    host.stop().await;
    sim.shutdown().await;
}
